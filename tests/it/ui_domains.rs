//! The web UI's Domains page (ManageIQ's Import/Export) on the real
//! `automate api` binary over HTTP: enable/disable and priority written
//! to `__domain__.yaml` and seen by the REST API; the locked ManageIQ
//! domain refused; the export download byte-for-byte what `automate
//! export` writes; a zip upload previewed (nothing written) then
//! imported; a directory imported; a bad zip refused naming the file with
//! nothing changed; multipart forms without the CSRF token refused. And
//! `tests/ui/domains.mjs` in a real browser.

use super::ui::{
    browser_ready, browser_script, header, http, login, start_api, ui_root, Killed, FORM, TOKEN,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// One HTTP/1.1 exchange with a binary body: status, headers, body bytes.
fn http_bytes(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw_req = req.into_bytes();
    raw_req.extend_from_slice(body);
    s.write_all(&raw_req).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
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
    (status, headers, body)
}

const BOUNDARY: &str = "----automate-test-boundary-7d1f";

/// A multipart body of `fields` (name, value) and an optional file
/// `(field, file name, bytes)` after them.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((field, name, bytes)) = file {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n\
                 Content-Type: application/zip\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn domain_yaml(root: &Path, domain: &str) -> String {
    std::fs::read_to_string(root.join(domain).join("__domain__.yaml")).unwrap()
}

fn listing(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn domains_page_over_http() {
    let Some((dir, root)) = ui_root() else {
        return;
    };
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);
    let (s, h, _) = http(&base, "GET", "/ui/domains", &[], "");
    assert_eq!(
        (s, header(&h, "location")),
        (303, Some("/ui/login?next=/ui/domains"))
    );
    let (cookie, csrf) = login(&base);
    let with = [("Cookie", cookie.as_str())];
    let posting = [("Cookie", cookie.as_str()), FORM];
    let token = format!("csrf_token={csrf}");
    let page = |path: &str| {
        let (s, _, p) = http(&base, "GET", path, &with, "");
        assert_eq!(s, 200, "{path}: {p}");
        p
    };
    let api_domain = |name: &str| {
        let (s, _, body) = http(
            &base,
            "GET",
            &format!("/api/automate_domains/{name}"),
            &[("X-Auth-Token", TOKEN)],
            "",
        );
        assert_eq!(s, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };

    // The domains by priority; ManageIQ's actions disabled, with why.
    let p = page("/ui/domains");
    let custom = p.find("id=\"domain-Custom\"").expect("Custom");
    let miq = p.find("id=\"domain-ManageIQ\"").expect("ManageIQ");
    assert!(custom < miq, "highest priority first");
    assert!(
        p.contains("ManageIQ is the system domain: read-only, always enabled, priority 0"),
        "{p}"
    );
    assert!(p.contains("aria-describedby=\"why-ManageIQ\""), "{p}");
    assert!(p.contains("action=\"/ui/domains/Custom/disable\""), "{p}");
    assert!(
        !p.contains("action=\"/ui/domains/ManageIQ/disable\""),
        "{p}"
    );

    // Disable without the token: refused, nothing written.
    let before = domain_yaml(&root, "Custom");
    let (s, _, _) = http(&base, "POST", "/ui/domains/Custom/disable", &posting, "x=1");
    assert_eq!(s, 403);
    assert_eq!(domain_yaml(&root, "Custom"), before);

    // Disable, then enable: the file and the API follow.
    let (s, h, _) = http(
        &base,
        "POST",
        "/ui/domains/Custom/disable",
        &posting,
        &token,
    );
    assert_eq!((s, header(&h, "location")), (303, Some("/ui/domains")));
    assert!(domain_yaml(&root, "Custom").contains("enabled: false"));
    assert_eq!(api_domain("Custom")["enabled"], false);
    let p = page("/ui/domains");
    assert!(p.contains("Domain Custom disabled."), "{p}");
    assert!(p.contains("action=\"/ui/domains/Custom/enable\""), "{p}");
    let (s, _, _) = http(&base, "POST", "/ui/domains/Custom/enable", &posting, &token);
    assert_eq!(s, 303);
    assert!(domain_yaml(&root, "Custom").contains("enabled: true"));
    assert_eq!(api_domain("Custom")["enabled"], true);

    // Priority: a number; down below ManageIQ is refused with why.
    let (s, _, _) = http(
        &base,
        "POST",
        "/ui/domains/Custom/priority",
        &posting,
        &format!("{token}&priority=25"),
    );
    assert_eq!(s, 303);
    assert!(domain_yaml(&root, "Custom").contains("priority: 25"));
    assert_eq!(api_domain("Custom")["priority"], 25);
    assert!(page("/ui/domains").contains("Domain Custom given priority 25."));
    let (s, _, _) = http(
        &base,
        "POST",
        "/ui/domains/Custom/priority",
        &posting,
        &format!("{token}&move=down"),
    );
    assert_eq!(s, 303);
    let p = page("/ui/domains");
    assert!(
        p.contains("Domain Custom was not changed: Custom cannot go below ManageIQ (priority 0)"),
        "{p}"
    );
    let (s, _, _) = http(
        &base,
        "POST",
        "/ui/domains/Custom/priority",
        &posting,
        &format!("{token}&priority=high"),
    );
    assert_eq!(s, 303);
    assert!(page("/ui/domains").contains("priority: [high] is not an integer"));
    assert!(domain_yaml(&root, "Custom").contains("priority: 25"));

    // The locked domain: refused, its file untouched.
    let miq_before = domain_yaml(&root, "ManageIQ");
    let (s, _, _) = http(
        &base,
        "POST",
        "/ui/domains/ManageIQ/disable",
        &posting,
        &token,
    );
    assert_eq!(s, 303);
    let p = page("/ui/domains");
    assert!(
        p.contains("Domain ManageIQ was not changed: domain [ManageIQ] is system (read-only)"),
        "{p}"
    );
    assert_eq!(domain_yaml(&root, "ManageIQ"), miq_before);

    // Export: the bytes `automate export` writes.
    let (s, h, zip) = http_bytes(&base, "GET", "/ui/domains/Custom/export", &with, b"");
    assert_eq!(s, 200);
    assert_eq!(header(&h, "content-type"), Some("application/zip"));
    assert_eq!(
        header(&h, "content-disposition"),
        Some("attachment; filename=\"Custom.zip\"")
    );
    let cli_zip = dir.path().join("cli-Custom.zip");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(&root)
        .arg("export")
        .arg("Custom")
        .arg(&cli_zip)
        .env_remove("AUTOMATE_SERVER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(zip, std::fs::read(&cli_zip).unwrap(), "the same bytes");

    let multipart_headers = |cookie: &str| {
        [
            ("Cookie".to_string(), cookie.to_string()),
            (
                "Content-Type".to_string(),
                format!("multipart/form-data; boundary={BOUNDARY}"),
            ),
        ]
    };
    let mh = multipart_headers(&cookie);
    let mh: Vec<(&str, &str)> = mh.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // Multipart without the token first, or to another path: refused.
    let body = multipart(
        &[("domain", "Copy"), ("action", "import")],
        Some(("zip", "Custom.zip", &zip)),
    );
    let (s, _, _) = http_bytes(&base, "POST", "/ui/domains/import", &mh, &body);
    assert_eq!(s, 403);
    let body = multipart(
        &[("csrf_token", "0000"), ("action", "import")],
        Some(("zip", "Custom.zip", &zip)),
    );
    let (s, _, _) = http_bytes(&base, "POST", "/ui/domains/import", &mh, &body);
    assert_eq!(s, 403);
    let body = multipart(&[("csrf_token", &csrf)], None);
    let (s, _, _) = http_bytes(&base, "POST", "/ui/domains/reload", &mh, &body);
    assert_eq!(s, 403);
    assert!(!root.join("Copy").exists());

    // Preview the upload under a new name: the files it would add, nothing
    // written; then import it from the preview.
    let body = multipart(
        &[
            ("csrf_token", &csrf),
            ("domain", "Copy"),
            ("priority", "30"),
            ("action", "preview"),
        ],
        Some(("zip", "Custom.zip", &zip)),
    );
    let (s, _, preview) = http_bytes(&base, "POST", "/ui/domains/import", &mh, &body);
    let preview = String::from_utf8_lossy(&preview).into_owned();
    assert_eq!(s, 200, "{preview}");
    assert!(preview.contains("Import preview: Copy"), "{preview}");
    assert!(
        preview.contains("<td>add</td><td>method</td><td class=\"v\">System/Event/EmsEvent/RHEVM.class/__methods__/log_run.rhai</td>"),
        "{preview}"
    );
    assert!(!root.join("Copy").exists(), "a preview writes nothing");
    let stash = preview
        .split("name=\"stash\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the stashed upload")
        .to_string();
    let body = multipart(
        &[
            ("csrf_token", &csrf),
            ("stash", &stash),
            ("domain", "Copy"),
            ("priority", "30"),
            ("enabled", "keep"),
            ("action", "import"),
        ],
        None,
    );
    let (s, h, _) = http_bytes(&base, "POST", "/ui/domains/import", &mh, &body);
    assert_eq!((s, header(&h, "location")), (303, Some("/ui/domains")));
    let p = page("/ui/domains");
    assert!(
        p.contains("Imported domain Copy from the upload Custom.zip"),
        "{p}"
    );
    assert!(domain_yaml(&root, "Copy").contains("priority: 30"));
    assert_eq!(api_domain("Copy")["methods"], 1);
    // The stash is used once.
    let (s, _, _) = http_bytes(&base, "POST", "/ui/domains/import", &mh, &body);
    assert_eq!(s, 303);
    assert!(page("/ui/domains").contains("the previewed upload is gone"));

    // A directory on the server, imported under a new name.
    let src = root.join("Custom").display().to_string();
    let body = multipart(
        &[
            ("csrf_token", &csrf),
            ("path", &src),
            ("domain", "FromDir"),
            ("action", "import"),
        ],
        None,
    );
    let (s, _, _) = http_bytes(&base, "POST", "/ui/domains/import", &mh, &body);
    assert_eq!(s, 303);
    assert!(page("/ui/domains").contains("Imported domain FromDir"));
    assert_eq!(api_domain("FromDir")["instances"], 1);

    // A name clash without "replace": refused, naming the domain.
    let body = multipart(
        &[
            ("csrf_token", &csrf),
            ("domain", "Copy"),
            ("action", "import"),
        ],
        Some(("zip", "Custom.zip", &zip)),
    );
    let (s, _, _) = http_bytes(&base, "POST", "/ui/domains/import", &mh, &body);
    assert_eq!(s, 303);
    let p = page("/ui/domains");
    assert!(
        p.contains("Nothing was imported: the upload Custom.zip:"),
        "{p}"
    );
    assert!(p.contains("Copy"), "{p}");

    // A bad zip: a clear error naming the file; nothing changed.
    let before = listing(&root);
    let body = multipart(
        &[("csrf_token", &csrf), ("action", "import")],
        Some(("zip", "broken.zip", b"this is not a zip file")),
    );
    let (s, _, _) = http_bytes(&base, "POST", "/ui/domains/import", &mh, &body);
    assert_eq!(s, 303);
    let p = page("/ui/domains");
    assert!(
        p.contains("Nothing was imported: the upload broken.zip: "),
        "{p}"
    );
    assert!(p.contains("broken.zip"), "{p}");
    assert!(!p.contains("automate-upload-"), "no temporary path: {p}");
    assert_eq!(listing(&root), before, "nothing changed");

    // Neither a file nor a path.
    let body = multipart(&[("csrf_token", &csrf), ("action", "import")], None);
    let (s, _, _) = http_bytes(&base, "POST", "/ui/domains/import", &mh, &body);
    assert_eq!(s, 303);
    assert!(page("/ui/domains").contains("zip: choose a .zip file to upload"));

    // Reload.
    let (s, _, _) = http(&base, "POST", "/ui/domains/reload", &posting, &token);
    assert_eq!(s, 303);
    let p = page("/ui/domains");
    assert!(p.contains("Datastore reloaded"), "{p}");
}

#[test]
fn domains_in_a_real_browser() {
    let Some(ui_dir) = browser_ready() else {
        return;
    };
    let Some((dir, root)) = ui_root() else {
        return;
    };
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);
    browser_script(&ui_dir, "domains.mjs", &base, &[]);
    // The browser's import landed in the datastore.
    assert!(root.join("BrowserCopy/__domain__.yaml").is_file());
}
