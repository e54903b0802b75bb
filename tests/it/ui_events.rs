//! The web UI's Events pages (`crates/ui/src/events.rs`) on the real
//! `automate run` binary, on 127.0.0.1: the shipped datastore with the
//! policies of `tests/data/control/match`, an `http` catcher provider
//! `rhevm01`, and delivery recording on (`events: {trace: {enabled:
//! true}}`).
//!
//! Over HTTP: the list and its filters, the session-authenticated live
//! stream `/ui/events/stream` (the REST API's stream, without the API
//! token), an event's page with its outcome and trace (the Simulation page's
//! tree), and the page of an
//! event recorded with recording off. Then, when a browser is here (see
//! `tests/it/ui.rs`), `tests/ui/events.mjs`: an event sent through the API
//! appears live, its page shows its trace and outcome, the filters narrow
//! the list, pause holds rows back, axe passes, and ~2,000 events/s flow
//! for ~10 s while the page's responsiveness is measured and printed.

use super::common::manifest;
use super::common::process::{copy_dir, free_port, wait_listening};
use super::ui::{browser_ready, browser_script, header, http, login, Killed, TOKEN};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The site: the datastore with the `match` policies, and the config.
pub(crate) fn site(dir: &Path, port: u16) {
    let root = dir.join("datastore");
    copy_dir(&manifest("datastore"), &root);
    let control = root.join("control");
    let _ = std::fs::remove_dir_all(&control);
    copy_dir(&manifest("tests/data/control/match"), &control);
    std::fs::write(
        dir.join("automate.yaml"),
        format!(
            "providers:\n  - {{name: rhevm01, type: RHEVM, hostname: r, userid: u, catcher: {{kind: http}}}}\n\
             workers: 2\napi: {{listen: '127.0.0.1:{port}', token: {TOKEN}}}\n\
             events: {{trace: {{enabled: true}}}}\n"
        ),
    )
    .unwrap();
}

/// `automate run` on the site; the child and its base URL. The binary is
/// this build's, or `AUTOMATE_UI_BIN` (a release build, to measure the
/// page under the storm at the rate the issue names: a debug build
/// accepts ~800 events/s here).
pub(crate) fn start_run(dir: &Path, port: u16) -> (Killed, String) {
    let bin = std::env::var("AUTOMATE_UI_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_automate").to_string());
    let mut child = Command::new(bin)
        .current_dir(dir)
        .arg("--datastore")
        .arg(dir.join("datastore"))
        .arg("--db")
        .arg(dir.join("automate.redb"))
        .args(["run", "--config", "automate.yaml"])
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_API_TOKEN")
        .env_remove("AUTOMATE_SERVER")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start automate run");
    wait_listening(&mut child, port, Duration::from_secs(60), || {
        "automate run did not start".into()
    });
    (Killed(child), format!("http://127.0.0.1:{port}"))
}

/// `POST /api/event_streams` `send`: the event handled now; its id.
fn send(base: &str, event_type: &str, vm: &str, chain: &str) -> i64 {
    let body = json!({"action": "send",
        "provider": {"name": "rhevm01", "type": "RHEVM", "hostname": "r", "userid": "u"},
        "event": {"event_type": event_type, "timestamp": automate_core::time::iso8601(automate_core::time::now_ms()),
            "chain_id": chain, "vm_ems_ref": format!("/api/vms/{vm}"), "vm_name": vm,
            "full_data": {"name": event_type, "vm": {"name": vm}, "note": "<b>not markup</b>"}}})
    .to_string();
    let (s, _, answer) = http(
        base,
        "POST",
        "/api/event_streams",
        &[
            ("X-Auth-Token", TOKEN),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(s, 200, "{answer}");
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert!(v["error"].is_null(), "{v}");
    v["event_id"].as_i64().expect("event_id")
}

/// The status line and headers of a GET of the live stream (the body
/// never ends: only the head is read).
fn stream_head(base: &str, path: &str, cookie: Option<&str>) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{cookie}\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(tcp);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase())
}

#[test]
fn the_events_pages_list_filter_stream_and_trace_events() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    site(dir.path(), port);
    let (_child, base) = start_run(dir.path(), port);

    // Every Events page without the session leads to the login form.
    for p in ["/ui/events", "/ui/events/1", "/ui/events/stream"] {
        let (s, h, _) = http(&base, "GET", p, &[], "");
        assert_eq!(s, 303, "{p}");
        assert!(
            header(&h, "location").is_some_and(|l| l.starts_with("/ui/login?next=/ui/events")),
            "{p}: {h:?}"
        );
    }
    let (cookie, _) = login(&base);
    let with = [("Cookie", cookie.as_str())];

    // No event yet: the empty list, live.
    let (s, _, page) = http(&base, "GET", "/ui/events", &with, "");
    assert_eq!(s, 200);
    assert!(page.contains("No events match."), "{page}");
    assert!(page.contains("data-stream=\"/ui/events/stream\""), "{page}");
    assert!(
        page.contains("/ui/static/events-"),
        "the live script: {page}"
    );
    assert!(page.contains(">Events</a>"), "in the navigation: {page}");

    // The session's stream: the API's server-sent events, no token.
    let (s, head) = stream_head(&base, "/ui/events/stream?type=USER_RUN_VM", Some(&cookie));
    assert_eq!(s, 200, "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let (s, _) = stream_head(&base, "/ui/events/stream?colour=red", Some(&cookie));
    assert_eq!(s, 400);
    let (s, _) = stream_head(&base, "/api/events/stream", Some(&cookie));
    assert_eq!(s, 401, "the API's own stream still wants the token");

    // Events through the API: handled now, recorded.
    let run = send(&base, "USER_RUN_VM", "prod-http01", "h1");
    let down = send(&base, "VM_DOWN", "dev-http02", "h2");

    let (s, _, page) = http(&base, "GET", "/ui/events", &with, "");
    assert_eq!(s, 200);
    let (at_run, at_down) = (
        page.find(&format!("/ui/events/{run}\"")).expect("the run"),
        page.find(&format!("/ui/events/{down}\""))
            .expect("the down"),
    );
    assert!(at_down < at_run, "newest first");
    assert!(
        page.contains("raised vm_start; policies tag_prod"),
        "{page}"
    );
    // The MiqEvent its delivery raised is listed too; its page says where
    // its delivery is.
    let miq = page
        .split("\">vm_start</a>")
        .next()
        .and_then(|h| h.rsplit("/ui/events/").next())
        .expect("the MiqEvent vm_start listed")
        .to_string();
    let (s, _, miq_page) = http(&base, "GET", &format!("/ui/events/{miq}"), &with, "");
    assert_eq!(s, 200);
    assert!(
        miq_page.contains("MiqEvent has no delivery record of its own"),
        "{miq_page}"
    );
    assert!(
        page.contains("<option selected>rhevm01</option>")
            || page.contains("<option>rhevm01</option>"),
        "{page}"
    );

    // Filters narrow the list.
    for (q, has, hasnt) in [
        ("type=VM_DOWN", down, run),
        ("vm=prod-http01", run, down),
        ("vm=%2Fapi%2Fvms%2Fdev-http02", down, run),
        ("provider=rhevm01&type=USER_RUN_VM&from=1h", run, down),
    ] {
        let (s, _, page) = http(&base, "GET", &format!("/ui/events?{q}"), &with, "");
        assert_eq!(s, 200, "{q}");
        assert!(page.contains(&format!("/ui/events/{has}\"")), "{q}: {page}");
        assert!(
            !page.contains(&format!("/ui/events/{hasnt}\"")),
            "{q}: {page}"
        );
    }
    let (_, _, page) = http(&base, "GET", "/ui/events?provider=nosuch", &with, "");
    assert!(page.contains("No events match."), "{page}");
    // A range with an end: no live updates.
    let (_, _, page) = http(&base, "GET", "/ui/events?to=2000-01-01", &with, "");
    assert!(page.contains("No events match."), "{page}");
    assert!(page.contains("the time range has an end"), "{page}");
    assert!(!page.contains("data-stream"), "{page}");
    // Bad filters: 400 naming them.
    for (q, says) in [
        ("from=soon", "from &#34;soon&#34;"),
        ("page=0", "page: &#34;0&#34; is not a page number"),
        ("colour=red", "colour: unknown filter"),
        ("from=2026-12-02&to=2026-12-01", "is after to"),
    ] {
        let (s, _, page) = http(&base, "GET", &format!("/ui/events?{q}"), &with, "");
        assert_eq!(s, 400, "{q}");
        assert!(page.contains(says), "{q}: {page}");
    }

    // The event's page: outcome, objects, payload escaped, nested trace.
    let (s, _, page) = http(&base, "GET", &format!("/ui/events/{run}"), &with, "");
    assert_eq!(s, 200);
    assert!(
        page.contains(&format!("EmsEvent {run}: USER_RUN_VM")),
        "{page}"
    );
    assert!(page.contains("<code>vm_start</code>"), "{page}");
    assert!(
        page.contains("<th scope=\"row\">tag_prod</th><td>vm_start</td><td>true: actions ran</td>"),
        "{page}"
    );
    // The alert `started` wants a powered-off VM: evaluated, not fired.
    assert!(page.contains("<caption>Alerts fired</caption>"), "{page}");
    assert!(page.contains("Alert [started] condition false"), "{page}");
    // The trace: the Simulation page's tree (crates/ui/src/trace_tree.rs)
    // from the record's lines and their depths.
    assert!(page.contains("<ul class=\"trace-tree\">"), "{page}");
    assert!(
        page.contains("<li class=\"t-relationship missing\"><details open>"),
        "the .missing fallback highlighted: {page}"
    );
    assert!(
        page.contains("<span class=\"badge b-missing\">.missing fallback</span>"),
        "{page}"
    );
    assert!(
        page.contains(
            "<span class=\"tk k-meth\">Method</span> <code>/ManageIQ/System/event_handlers/event_action_policy</code> <span class=\"hint-inline\">[builtin]</span>"
        ),
        "the policy method a node: {page}"
    );
    assert!(
        page.contains("<span class=\"tk k-rel\">Relationship</span> <code>miqaedb:/System/Event/EmsEvent/RHEVM/USER_RUN_VM#create</code>"),
        "{page}"
    );
    assert!(
        page.contains("<pre class=\"log\">"),
        "the plain lines: {page}"
    );
    assert!(!page.contains("nesting inferred"), "depths kept: {page}");
    assert!(page.contains("prod-http01"), "the VM's name: {page}");
    assert!(
        page.contains("&#60;b&#62;not markup&#60;/b&#62;"),
        "full_data escaped: {page}"
    );
    assert!(!page.contains("<b>not markup</b>"), "{page}");
    assert!(page.contains("Event Raised [vm_start]"), "{page}");
    assert!(!page.contains("no-record"), "{page}");
    assert!(
        !page.contains("automate_trace"),
        "the record is not an attribute: {page}"
    );

    // Unknown and malformed ids.
    assert_eq!(http(&base, "GET", "/ui/events/999999", &with, "").0, 404);
    assert_eq!(http(&base, "GET", "/ui/events/abc", &with, "").0, 404);

    if let Some(ui_dir) = browser_ready() {
        let out = browser_script(&ui_dir, "events.mjs", &base, &[]);
        for line in out
            .lines()
            .filter(|l| l.contains("storm:") || l.contains("live:"))
        {
            eprintln!("ui_events: {line}");
        }
    }
}

#[test]
fn an_event_handled_with_recording_off_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    site(dir.path(), port);
    let cfg = dir.path().join("automate.yaml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("enabled: true", "enabled: false");
    std::fs::write(&cfg, text).unwrap();
    let (_child, base) = start_run(dir.path(), port);
    let (cookie, _) = login(&base);
    let id = send(&base, "USER_RUN_VM", "prod-off01", "off1");
    let (s, _, page) = http(
        &base,
        "GET",
        &format!("/ui/events/{id}"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(s, 200);
    assert!(page.contains("id=\"no-record\""), "{page}");
    assert!(page.contains("recording was off"), "{page}");
    assert!(page.contains("events.trace.enabled"), "{page}");
    assert!(!page.contains("trace-tree"), "{page}");
    // The payload is still there.
    assert!(page.contains("prod-off01"), "{page}");
    let (_, _, list) = http(&base, "GET", "/ui/events", &[("Cookie", &cookie)], "");
    assert!(list.contains("not recorded"), "{list}");
}
