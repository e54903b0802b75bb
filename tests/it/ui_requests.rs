//! The web UI's Requests and Retries pages on the real `automate api`
//! binary over HTTP (create a request from the form, approve and deny
//! with a reason, the request events shown, the field a bad form names,
//! a form without the CSRF token refused, a scheduled retry listed, also
//! in a real browser with `tests/ui/retries.mjs`), and
//! in a real browser on `automate run` (`tests/ui/requests.mjs`: create,
//! approve and watch a request finish as the service's retry runner
//! delivers its state machine's retries).
//!
//! The datastore is the shipped ManageIQ domain plus `tests/data/requests`
//! (`Req`: `/Test/Work/hello` and the retrying `/Test/Counter/default`).

use super::ui::{
    browser_ready, browser_script, header, http, login, start_api, Killed, FORM, TOKEN,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A datastore root with ManageIQ and `Req` imported.
pub(crate) fn requests_datastore(root: &Path) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for d in ["datastore/ManageIQ", "tests/data/requests/Req"] {
        automate_datastore::import::import(
            root,
            &manifest.join(d),
            &automate_datastore::import::ImportOptions::default(),
        )
        .expect("import");
    }
    // `/Test/Slow/default`: the Counter machine retrying in an hour, so
    // its retry stays scheduled (the service's retry runner leaves it).
    let counter = root.join("Req/Test/Counter.class");
    let slow = root.join("Req/Test/Slow.class");
    std::fs::create_dir_all(slow.join("__methods__")).unwrap();
    for rel in [
        "__class__.yaml",
        "default.yaml",
        "__methods__/bump.yaml",
        "__methods__/bump.rhai",
        "__methods__/done.yaml",
        "__methods__/done.rhai",
    ] {
        let text = std::fs::read_to_string(counter.join(rel))
            .unwrap()
            .replace("name: Counter", "name: Slow")
            .replace("\"0.05\"", "\"3600\"");
        std::fs::write(slow.join(rel), text).unwrap();
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The id a created request's 303 leads to.
fn created_id(status: u16, h: &[(String, String)], body: &str) -> String {
    assert_eq!(status, 303, "{body}");
    let to = header(h, "location").unwrap_or("").to_string();
    let id = to.strip_prefix("/ui/requests/").unwrap_or("").to_string();
    assert!(id.parse::<i64>().is_ok(), "{to}");
    id
}

/// Creates an auto-approved request of `/Test/Slow/default` from the
/// form (its machine retries in an hour, so a retry stays scheduled); its
/// id.
pub(crate) fn request_slow(base: &str, cookie: &str, csrf: &str) -> String {
    let body = form(&[
        ("csrf_token", csrf),
        ("namespace", "Test"),
        ("class", "Slow"),
        ("instance", "default"),
        ("auto_approve", "true"),
    ]);
    let (s, h, page) = http(
        base,
        "POST",
        "/ui/requests",
        &[("Cookie", cookie), FORM],
        &body,
    );
    created_id(s, &h, &page)
}

#[test]
fn requests_pages_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("datastore");
    std::fs::create_dir_all(&root).unwrap();
    requests_datastore(&root);
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);

    // Without a session: the login form.
    for page in [
        "/ui/requests",
        "/ui/requests/new",
        "/ui/requests/1",
        "/ui/retries",
    ] {
        let (s, h, _) = http(&base, "GET", page, &[], "");
        assert_eq!(s, 303, "{page}");
        assert!(header(&h, "location")
            .unwrap_or("")
            .starts_with("/ui/login?next=/ui/"));
    }
    let (cookie, csrf) = login(&base);
    let with = [("Cookie", cookie.as_str())];
    let posting = [("Cookie", cookie.as_str()), FORM];

    let (s, _, page) = http(&base, "GET", "/ui/requests", &with, "");
    assert_eq!(s, 200);
    assert!(page.contains("No request yet."), "{page}");
    assert!(
        page.contains("href=\"/ui/requests\" aria-current=\"page\""),
        "{page}"
    );
    // The list is paged: a bad page number is named; a page past the end
    // says so.
    let (s, _, page) = http(&base, "GET", "/ui/requests?page=x", &with, "");
    assert_eq!(s, 400);
    assert!(page.contains("page: `x` is not a page number"), "{page}");
    let (s, _, page) = http(&base, "GET", "/ui/requests?page=2", &with, "");
    assert_eq!(s, 200);
    assert!(page.contains("No request yet."), "{page}");
    let (s, _, page) = http(&base, "GET", "/ui/requests/new", &with, "");
    assert_eq!(s, 200);
    assert!(page.contains("name=\"attr_key_0\""), "{page}");

    // A form without the CSRF token creates nothing.
    let body = form(&[
        ("namespace", "Test"),
        ("class", "Work"),
        ("instance", "hello"),
    ]);
    let (s, _, _) = http(&base, "POST", "/ui/requests", &posting, &body);
    assert_eq!(s, 403);
    let (_, _, list) = http(&base, "GET", "/ui/requests", &with, "");
    assert!(list.contains("No request yet."), "{list}");

    // A bad field: the form again, naming it, its values kept.
    let body = form(&[
        ("csrf_token", &csrf),
        ("namespace", "Test"),
        ("class", "Work"),
        ("instance", "nope"),
        ("attr_key_0", "who"),
        ("attr_value_0", "Ada"),
    ]);
    let (s, _, page) = http(&base, "POST", "/ui/requests", &posting, &body);
    assert_eq!(s, 400, "{page}");
    assert!(
        page.contains("uri_parts.instance: no instance [nope]"),
        "{page}"
    );
    assert!(page.contains("value=\"Ada\""), "{page}");
    let body = form(&[("csrf_token", &csrf), ("attr_value_1", "orphan")]);
    let (s, _, page) = http(&base, "POST", "/ui/requests", &posting, &body);
    assert_eq!(s, 400);
    assert!(
        page.contains("attribute row 2: a value without a name"),
        "{page}"
    );

    // Create, then approve with a reason.
    let body = form(&[
        ("csrf_token", &csrf),
        ("namespace", "Test"),
        ("class", "Work"),
        ("instance", "hello"),
        ("attr_key_0", "who"),
        ("attr_value_0", "Ada"),
        ("user_name", "jdoe"),
    ]);
    let (s, h, page) = http(&base, "POST", "/ui/requests", &posting, &body);
    let id = created_id(s, &h, &page);
    let (s, _, page) = http(&base, "GET", &format!("/ui/requests/{id}"), &with, "");
    assert_eq!(s, 200);
    assert!(
        page.contains(&format!("Automation request {id} created")),
        "flash: {page}"
    );
    assert!(page.contains("pending_approval"), "{page}");
    assert!(
        page.contains("<th scope=\"row\">request_created</th>"),
        "{page}"
    );
    assert!(
        page.contains("<th scope=\"row\">who</th><td class=\"v\">Ada</td>"),
        "{page}"
    );
    assert!(page.contains("/Test/Work/hello"), "{page}");
    assert!(
        page.contains("hx-trigger=\"every 1s\""),
        "polls until finished: {page}"
    );
    // The flash shows once.
    let (_, _, again) = http(&base, "GET", &format!("/ui/requests/{id}"), &with, "");
    assert!(!again.contains("created ("), "{again}");

    // Approve without the token: refused, still pending.
    let (s, _, _) = http(
        &base,
        "POST",
        &format!("/ui/requests/{id}/approve"),
        &posting,
        "reason=ok",
    );
    assert_eq!(s, 403);
    // A deny needs a reason.
    let (s, h, _) = http(
        &base,
        "POST",
        &format!("/ui/requests/{id}/deny"),
        &posting,
        &form(&[("csrf_token", &csrf), ("reason", " ")]),
    );
    assert_eq!(
        (s, header(&h, "location")),
        (303, Some(&*format!("/ui/requests/{id}")))
    );
    let (_, _, page) = http(&base, "GET", &format!("/ui/requests/{id}"), &with, "");
    assert!(page.contains("reason: a deny needs a reason"), "{page}");
    assert!(page.contains("role=\"alert\""), "{page}");
    assert!(page.contains("pending_approval"), "{page}");

    let (s, h, _) = http(
        &base,
        "POST",
        &format!("/ui/requests/{id}/approve"),
        &posting,
        &form(&[("csrf_token", &csrf), ("reason", "looks fine")]),
    );
    assert_eq!(
        (s, header(&h, "location")),
        (303, Some(&*format!("/ui/requests/{id}")))
    );
    let (_, _, page) = http(&base, "GET", &format!("/ui/requests/{id}"), &with, "");
    assert!(
        page.contains(&format!("Request {id} approved: finished (Ok).")),
        "{page}"
    );
    for event in ["request_created", "request_approved", "request_starting"] {
        assert!(
            page.contains(&format!("<th scope=\"row\">{event}</th>")),
            "{event}: {page}"
        );
    }
    assert!(page.contains("AutomationTask"), "{page}");
    assert!(
        !page.contains("hx-trigger"),
        "no polling once finished: {page}"
    );
    assert!(
        page.contains("can no longer be approved or denied"),
        "{page}"
    );
    // The REST API sees the same request.
    let (s, _, json) = http(
        &base,
        "GET",
        &format!("/api/requests/{id}"),
        &[("X-Auth-Token", TOKEN)],
        "",
    );
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["approval_state"], "approved");
    assert_eq!(v["request_state"], "finished");
    assert_eq!(v["userid"], "jdoe");
    assert_eq!(v["options"]["attrs"]["who"], "Ada");

    // Another one denied with a reason.
    let (s, h, page) = http(&base, "POST", "/ui/requests", &posting, &body);
    let denied = created_id(s, &h, &page);
    let (s, _, _) = http(
        &base,
        "POST",
        &format!("/ui/requests/{denied}/deny"),
        &posting,
        &form(&[("csrf_token", &csrf), ("reason", "not today")]),
    );
    assert_eq!(s, 303);
    let (_, _, page) = http(&base, "GET", &format!("/ui/requests/{denied}"), &with, "");
    assert!(
        page.contains("<th scope=\"row\">request_denied</th>"),
        "{page}"
    );
    assert!(page.contains("Denied"), "{page}");
    assert!(page.contains("not today"), "{page}");

    // The list: both, newest first.
    let (_, _, list) = http(&base, "GET", "/ui/requests", &with, "");
    let a = list.find(&format!(">{denied}</a>")).expect("denied listed");
    let b = list.find(&format!(">{id}</a>")).expect("approved listed");
    assert!(a < b, "newest first");
    assert!(list.contains("jdoe"), "{list}");

    // A machine retrying in an hour: its retry is listed with its URI,
    // state and due time.
    let counter = request_slow(&base, &cookie, &csrf);
    let (_, _, page) = http(&base, "GET", &format!("/ui/requests/{counter}"), &with, "");
    assert!(page.contains("approved, active"), "{page}");
    let (s, _, page) = http(&base, "GET", "/ui/retries", &with, "");
    assert_eq!(s, 200);
    assert!(
        page.contains("/Test/Slow/default?AutomationTask%3A%3Aautomation_task="),
        "{page}"
    );
    assert!(page.contains("<td>scheduled</td>"), "{page}");
    assert!(page.contains("1 retries, soonest first"), "{page}");

    // An unknown request: 404 naming it.
    let (s, _, page) = http(&base, "GET", "/ui/requests/999999", &with, "");
    assert_eq!(s, 404, "{page}");

    // The retry in a real browser (`tests/ui/retries.mjs`, retries.png).
    if let Some(ui_dir) = browser_ready() {
        browser_script(&ui_dir, "retries.mjs", &base, &[]);
    }
}

/// `automate run` with the API (and the UI) on a free port, workers and
/// its retry runner, on `root`.
pub(crate) fn start_run(dir: &Path, root: &Path) -> (Killed, String) {
    let port = super::common::process::free_port();
    std::fs::write(dir.join("empty.jsonl"), "").unwrap();
    std::fs::write(
        dir.join("automate.yaml"),
        format!(
            "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    \
             userid: admin@internal\n    catcher: {{kind: jsonl, path: empty.jsonl}}\n\
             workers: 1\napi: {{listen: '127.0.0.1:{port}', token: {TOKEN}}}\nlog: {{dir: log}}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_automate"))
        .current_dir(dir)
        .arg("--datastore")
        .arg(root)
        .arg("--db")
        .arg(dir.join("run.redb"))
        .args(["run", "--config", "automate.yaml"])
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_SERVER")
        .env_remove("AUTOMATE_API_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start automate run");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("automate run exited with {status} before listening");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "automate run did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child), format!("http://127.0.0.1:{port}"))
}

#[test]
fn requests_in_a_real_browser() {
    let Some(ui_dir) = browser_ready() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("datastore");
    std::fs::create_dir_all(&root).unwrap();
    requests_datastore(&root);
    let (_child, base) = start_run(dir.path(), &root);
    browser_script(&ui_dir, "requests.mjs", &base, &[]);
}
