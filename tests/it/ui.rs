//! The web UI (`crates/ui`) on the real `automate api` binary, on
//! 127.0.0.1, over a datastore holding the ManageIQ fixture domain (1,401
//! files) and `Custom`, a small user domain that overlays one of its
//! instances and adds a Rhai method.
//!
//! `ui_over_http` speaks HTTP to it (redirects, the cookie's attributes,
//! CSRF refusals, logout). `ui_in_a_real_browser` runs
//! `tests/ui/explorer.mjs` with `node`: Debian's `chromium` driven by
//! `playwright-core`, `axe-core` injected into every page; it writes the
//! screenshots to `docs/ui/`. It skips with a printed reason when
//! chromium or `tests/ui/node_modules` is missing, unless
//! `AUTOMATE_TEST_UI=1` (which `.ci/run` sets after installing them).

use super::common::process::wait_listening;
use super::datastore::fixture_dir;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) const TOKEN: &str = "ui-test-token-0123456789";

/// A datastore root with the ManageIQ fixture imported and the `Custom`
/// domain (priority 10) overlaying `/System/Event/EmsEvent/RHEVM/USER_RUN_VM`
/// with a changed `rel5` and adding the Rhai method `log_run`.
pub(crate) fn ui_datastore(root: &Path) -> Option<()> {
    let fixture = fixture_dir()?;
    automate_datastore::import::import(
        root,
        &fixture,
        &automate_datastore::import::ImportOptions::default(),
    )
    .expect("import the fixture");
    let custom = root.join("Custom");
    let ns = custom.join("System/Event/EmsEvent");
    let class = ns.join("RHEVM.class");
    std::fs::create_dir_all(class.join("__methods__")).unwrap();
    std::fs::write(
        custom.join("__domain__.yaml"),
        "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: Custom\n    \
         description: The UI test's overlay\n    display_name:\n    priority: 10\n    enabled: true\n    \
         tenant_id: 1\n    source: user\n    top_level_namespace:\n",
    )
    .unwrap();
    for rel in [
        "System/__namespace__.yaml",
        "System/Event/__namespace__.yaml",
        "System/Event/EmsEvent/__namespace__.yaml",
        "System/Event/EmsEvent/RHEVM.class/__class__.yaml",
    ] {
        std::fs::copy(fixture.join(rel), custom.join(rel)).unwrap();
    }
    let inst =
        std::fs::read_to_string(fixture.join("System/Event/EmsEvent/RHEVM.class/user_run_vm.yaml"))
            .unwrap()
            .replace("event_action_refresh?", "event_action_refresh_sync?");
    std::fs::write(class.join("user_run_vm.yaml"), inst).unwrap();
    std::fs::write(
        class.join("__methods__/log_run.yaml"),
        "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: log_run\n    \
         display_name:\n    description: Logs the VM a USER_RUN_VM started\n    scope: instance\n    \
         language: rhai\n    location: inline\n  inputs:\n  - field:\n      aetype:\n      \
         name: level\n      datatype: string\n      priority: 1\n      default_value: info\n      \
         substitute: false\n      message: create\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__methods__/log_run.rhai"),
        "// Logs the VM a USER_RUN_VM event started.\nlet vm = evm.root[\"vm\"];\n\
         let level = evm.inputs[\"level\"];\nif vm == () {\n    evm.log(\"warn\", \"no VM <in> the event\");\n    \
         return MIQ_WARN;\n}\nevm.log(level, `VM ${vm.name} started (${42 + 1} times)`);\nMIQ_OK\n",
    )
    .unwrap();
    Some(())
}

/// A temp dir holding `datastore/` made by [`ui_datastore`]: the dir
/// (removed when dropped) and the datastore root; `None` when the fixture
/// is absent (the test skips).
pub(crate) fn ui_root() -> Option<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("datastore");
    std::fs::create_dir_all(&root).unwrap();
    ui_datastore(&root)?;
    Some((dir, root))
}

/// `automate api` on `root`, answering to [`TOKEN`]; the child and its
/// base URL.
pub(crate) fn start_api(dir: &Path, root: &Path) -> (Child, String) {
    let port = super::common::process::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(root)
        .arg("--db")
        .arg(dir.join("ui.redb"))
        .args(["api", "--listen", &format!("127.0.0.1:{port}")])
        .env("AUTOMATE_API_TOKEN", TOKEN)
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_SERVER")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start automate api");
    wait_listening(&mut child, port, Duration::from_secs(60), || {
        "automate api did not start".into()
    });
    (child, format!("http://127.0.0.1:{port}"))
}

/// Kills the child when the test ends, passing or not.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 exchange (no redirect followed): status, headers (names
/// lower-cased) and body.
pub(crate) fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

pub(crate) fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(crate) const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// Signs in; the session cookie (`automate_session=...`) and the page's
/// CSRF token.
pub(crate) fn login(base: &str) -> (String, String) {
    let (status, h, _) = http(
        base,
        "POST",
        "/ui/login",
        &[FORM],
        &format!("token={TOKEN}&next=%2Fui%2Fexplorer"),
    );
    assert_eq!(status, 303);
    assert_eq!(header(&h, "location"), Some("/ui/explorer"));
    let set = header(&h, "set-cookie")
        .expect("a session cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: not Secure: {set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let (status, _, page) = http(base, "GET", "/ui/explorer", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    let csrf = page
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the logout form's CSRF token")
        .to_string();
    (cookie, csrf)
}

#[test]
fn ui_over_http() {
    let Some((dir, root)) = ui_root() else {
        return;
    };
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);

    // `/` and `/ui` lead to the Explorer; without a session, to the login.
    let (s, h, _) = http(&base, "GET", "/", &[], "");
    assert_eq!((s, header(&h, "location")), (303, Some("/ui")));
    for page in [
        "/ui/explorer",
        "/ui/explorer/domain/ManageIQ",
        "/ui/explorer/class/ManageIQ/System/Process",
        "/ui/explorer/instance/ManageIQ/System/Process/Event",
        "/ui/explorer/search?q=event",
        "/ui/explorer/resolve?path=/System/Process/Event",
        "/ui/explorer/children?path=/ManageIQ",
        "/ui/no-such-page",
    ] {
        let (s, h, _) = http(&base, "GET", page, &[], "");
        assert_eq!(s, 303, "{page}");
        let to = header(&h, "location").unwrap_or("");
        assert!(to.starts_with("/ui/login?next=/ui/"), "{page} -> {to}");
    }
    // htmx asks for a redirect, not a page.
    let (s, h, _) = http(
        &base,
        "GET",
        "/ui/explorer/children?path=/ManageIQ",
        &[("HX-Request", "true")],
        "",
    );
    assert_eq!((s, header(&h, "hx-redirect")), (401, Some("/ui/login")));
    // The REST API keeps its token check.
    assert_eq!(http(&base, "GET", "/api/automate", &[], "").0, 401);

    // The login form; a wrong token is refused.
    let (s, h, body) = http(&base, "GET", "/ui/login", &[], "");
    assert_eq!(s, 200);
    assert!(
        body.contains("<label for=\"token\">API token</label>"),
        "{body}"
    );
    let csp = header(&h, "content-security-policy").unwrap_or("");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let (s, h, body) = http(&base, "POST", "/ui/login", &[FORM], "token=wrong");
    assert_eq!(s, 401);
    assert!(header(&h, "set-cookie").is_none());
    assert!(body.contains("Invalid token"), "{body}");
    // `next` never leaves the UI.
    let (s, h, _) = http(
        &base,
        "POST",
        "/ui/login",
        &[FORM],
        &format!("token={TOKEN}&next=%2F%2Fevil.example%2Fui"),
    );
    assert_eq!((s, header(&h, "location")), (303, Some("/ui/explorer")));

    let (cookie, csrf) = login(&base);
    let with = [("Cookie", cookie.as_str())];
    let (s, _, page) = http(&base, "GET", "/ui/explorer", &with, "");
    assert_eq!(s, 200);
    let custom = page.find(">Custom</a>").expect("Custom listed");
    let miq = page.find(">ManageIQ</a>").expect("ManageIQ listed");
    assert!(custom < miq, "highest priority first");
    // The assets are served with a long cache, no session needed.
    let css = page
        .split("rel=\"stylesheet\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let (s, h, _) = http(&base, "GET", css, &[], "");
    assert_eq!(s, 200);
    assert!(header(&h, "cache-control")
        .unwrap_or("")
        .contains("immutable"));

    // The overlay: the instance shows the value ManageIQ's copy has.
    let (s, _, page) = http(
        &base,
        "GET",
        "/ui/explorer/instance/Custom/System/Event/EmsEvent/RHEVM/USER_RUN_VM",
        &with,
        "",
    );
    assert_eq!(s, 200);
    assert!(
        page.contains("event_action_refresh_sync?target=src_vm"),
        "{page}"
    );
    assert!(
        page.contains(
            "ManageIQ: /System/event_handlers/event_action_refresh?target=src_vm (instance)"
        ),
        "{page}"
    );
    // The method's source, highlighted and escaped.
    let (s, _, page) = http(
        &base,
        "GET",
        "/ui/explorer/method/Custom/System/Event/EmsEvent/RHEVM/log_run",
        &with,
        "",
    );
    assert_eq!(s, 200);
    assert!(page.contains("<span class=\"t-kw\">let</span>"), "{page}");
    assert!(page.contains("no VM &lt;in&gt; the event"), "{page}");
    // Resolution of a name no domain has: `.missing`.
    let (s, _, page) = http(
        &base,
        "GET",
        "/ui/explorer/resolve?path=/System/Event/EmsEvent/RHEVM/NO_SUCH_EVENT",
        &with,
        "",
    );
    assert_eq!(s, 200);
    assert!(page.contains("falls back to"), "{page}");
    assert!(
        page.contains("/ManageIQ/System/Event/EmsEvent/RHEVM/.missing"),
        "{page}"
    );

    // State-changing requests without the session's CSRF token: 403.
    let (s, _, _) = http(
        &base,
        "POST",
        "/ui/logout",
        &[("Cookie", &cookie), FORM],
        "x=1",
    );
    assert_eq!(s, 403);
    let (s, _, _) = http(
        &base,
        "POST",
        "/ui/logout",
        &[("Cookie", &cookie), FORM],
        "csrf_token=00000000",
    );
    assert_eq!(s, 403);
    let (s, _, _) = http(&base, "POST", "/ui/logout", &[("Cookie", &cookie)], "");
    assert_eq!(s, 403);
    assert_eq!(
        http(&base, "GET", "/ui/explorer", &with, "").0,
        200,
        "still signed in"
    );

    // Logout with the token ends the session.
    let (s, h, _) = http(
        &base,
        "POST",
        "/ui/logout",
        &[("Cookie", &cookie), FORM],
        &format!("csrf_token={csrf}"),
    );
    assert_eq!((s, header(&h, "location")), (303, Some("/ui/login")));
    assert!(header(&h, "set-cookie").unwrap_or("").contains("Max-Age=0"));
    assert_eq!(http(&base, "GET", "/ui/explorer", &with, "").0, 303);
}

/// Why the browser test cannot run here, if it cannot.
fn browser_missing(ui_dir: &Path) -> Option<String> {
    let chromium =
        std::env::var("AUTOMATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).is_file() {
        return Some(format!(
            "{chromium} is missing (apt-get install -y chromium)"
        ));
    }
    if !ui_dir.join("node_modules/playwright-core").is_dir()
        || !ui_dir.join("node_modules/axe-core").is_dir()
    {
        return Some(format!(
            "{}/node_modules is missing (npm ci in tests/ui)",
            ui_dir.display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    None
}

/// The `tests/ui` folder when the browser tests can run here; `None`
/// (after printing why) when they cannot and `AUTOMATE_TEST_UI` is not
/// `1`; panics when it is.
pub(crate) fn browser_ready() -> Option<PathBuf> {
    let ui_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    if let Some(why) = browser_missing(&ui_dir) {
        assert!(
            std::env::var("AUTOMATE_TEST_UI").as_deref() != Ok("1"),
            "AUTOMATE_TEST_UI=1 but {why}"
        );
        eprintln!("skipping the browser test: {why} (AUTOMATE_TEST_UI=1 makes it mandatory)");
        return None;
    }
    Some(ui_dir)
}

/// Runs `tests/ui/SCRIPT` with `node` against the UI at `base` (signing
/// in with [`TOKEN`], screenshots to `docs/ui/`), with `env` added; fails
/// the test unless it reports "browser: all cases passed". Its stdout.
pub(crate) fn browser_script(
    ui_dir: &Path,
    script: &str,
    base: &str,
    env: &[(&str, &str)],
) -> String {
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/ui");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(ui_dir.join(script))
        .env("AUTOMATE_UI_URL", base)
        .env("AUTOMATE_UI_TOKEN", TOKEN)
        .env("AUTOMATE_UI_SCREENSHOTS", &shots)
        .envs(env.iter().copied())
        .current_dir(ui_dir)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "{script} failed in the browser:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("browser: all cases passed"), "{stdout}");
    stdout
}

#[test]
fn ui_in_a_real_browser() {
    let Some(ui_dir) = browser_ready() else {
        return;
    };
    let Some((dir, root)) = ui_root() else {
        return;
    };
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);
    browser_script(&ui_dir, "explorer.mjs", &base, &[]);
}
