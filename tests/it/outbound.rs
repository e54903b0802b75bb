//! Outbound actions of methods (issue 20 §2, `automate_methods::outbound`):
//! `evm.http` against a local HTTP server (allowed host with JSON both
//! ways, a host off the allow-list, a slow server, an oversize answer),
//! `send_email` through a local SMTP sink, `create_notification` stored in
//! redb (listed by `GET /api/notifications`) and in PostgreSQL,
//! `create_automation_request`, `field_timeout` and `set_stats` /
//! `ansible_stats_vars`. Every server is on 127.0.0.1.

use automate_engine::{AttrValue, Engine, Level, Workspace};
use automate_methods::outbound::{HttpSettings, Outbound, SmtpSettings};
use automate_redb::RedbStore;
use automate_vmdb::{ObjectStore, VmdbRef};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{attrs, control_engine, manifest};

/// The shipped datastore plus a domain `Outbound` whose class
/// `/Test/Out` has one Rhai method per `(name, body)`.
pub(crate) fn datastore(dir: &Path, methods: &[(&str, &str)]) -> std::path::PathBuf {
    let root = dir.join("datastore");
    crate::common::process::copy_dir(&manifest("datastore"), &root);
    let domain = root.join("Outbound");
    let class = domain.join("Test/Out.class");
    std::fs::create_dir_all(class.join("__methods__")).unwrap();
    std::fs::write(
        domain.join("__domain__.yaml"),
        "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: Outbound\n    \
         description: Outbound tests\n    display_name:\n    priority: 20\n    enabled: true\n    \
         tenant_id: 1\n    source: user\n    top_level_namespace:\n",
    )
    .unwrap();
    std::fs::write(
        domain.join("Test/__namespace__.yaml"),
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Test\n    \
         description:\n    display_name:\n    priority:\n    enabled:\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__class__.yaml"),
        "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    \
         display_name:\n    name: Out\n    type:\n    inherits:\n    visibility:\n    owner:\n  \
         schema: []\n",
    )
    .unwrap();
    for (name, body) in methods {
        std::fs::write(
            class.join(format!("__methods__/{name}.yaml")),
            format!(
                "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n    \
                 display_name:\n    description:\n    scope: instance\n    language: rhai\n    \
                 location: inline\n    relative_path: Test/Out/{name}\n  inputs: []\n"
            ),
        )
        .unwrap();
        std::fs::write(class.join(format!("__methods__/{name}.rhai")), body).unwrap();
    }
    root
}

fn run(engine: &Engine, method: &str, args: &[(&str, &str)]) -> Workspace {
    let args: Vec<(String, String)> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    engine.run_method(&format!("/Test/Out/{method}"), &args).0
}

fn dump(ws: &Workspace) -> String {
    ws.trace_lines().join("\n")
}

fn line(ws: &Workspace, needle: &str) -> Option<Level> {
    ws.trace
        .iter()
        .find(|l| l.text.contains(needle))
        .map(|l| l.level)
}

fn attr(ws: &Workspace, name: &str) -> String {
    ws.root_attr(name)
        .map(AttrValue::to_text)
        .unwrap_or_default()
}

/// A one-shot HTTP server on 127.0.0.1: for each connection, reads the
/// request and gives it to `answer`, which writes the answer. Returns its
/// port and the requests it saw.
pub(crate) fn http_server(
    answer: impl Fn(&str, &mut TcpStream) + Send + 'static,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let req = read_request(&mut conn);
            log.lock().unwrap().push(req.clone());
            answer(&req, &mut conn);
        }
    });
    (port, seen)
}

/// The request head and its body (by `Content-Length`).
fn read_request(conn: &mut TcpStream) -> String {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        let end = l == "\r\n";
        head.push_str(&l);
        if end {
            break;
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).unwrap();
    head + String::from_utf8_lossy(&body).as_ref()
}

pub(crate) fn json_answer(conn: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

pub(crate) fn engine_with(root: &Path, store: Arc<dyn ObjectStore>, outbound: Outbound) -> Engine {
    let (mut engine, runner) = control_engine(root, store);
    engine.options.emit_tracing = false;
    runner.set_outbound(outbound);
    engine
}

fn allow(port: u16) -> Outbound {
    Outbound {
        http: HttpSettings {
            allow: vec![format!("127.0.0.1:{port}")],
            timeout: Duration::from_secs(5),
            max_response_bytes: 1000,
        },
        ..Outbound::default()
    }
}

const HTTP_METHODS: &[(&str, &str)] = &[
    (
        "http_post",
        r#"
let r = evm.http.post(evm.root["url"], #{name: "web01", cpus: 2},
    #{auth: #{user: "admin", password: "smartvm"}, headers: #{"X-Trace": "t1"}});
evm.root["status"] = r.status;
evm.root["id"] = r.json.id;
evm.root["echo"] = r.json.got.name;
evm.root["type"] = r.headers["content-type"];
"#,
    ),
    (
        "http_get",
        r#"
let r = evm.http.get(evm.root["url"], #{auth: #{bearer: "tok3n"}});
evm.root["status"] = r.status;
evm.root["body"] = r.body;
"#,
    ),
    (
        "http_delete",
        r#"
let r = evm.http.delete(evm.root["url"]);
evm.root["status"] = r.status;
"#,
    ),
];

#[test]
fn http_to_an_allowed_host_sends_and_reads_json() {
    let (port, seen) = http_server(|req, conn| {
        let body = req.split("\r\n\r\n").nth(1).unwrap_or("");
        let got: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let answer = serde_json::json!({"id": 42, "got": got}).to_string();
        json_answer(conn, "201 Created", &answer);
    });
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), HTTP_METHODS);
    let engine = engine_with(
        &root,
        Arc::new(automate_vmdb::MemoryStore::new()),
        allow(port),
    );
    let url = format!("http://127.0.0.1:{port}/api/cis");
    let ws = run(&engine, "http_post", &[("url", &url)]);
    assert_eq!(attr(&ws, "status"), "201", "{}", dump(&ws));
    assert_eq!(attr(&ws, "id"), "42");
    assert_eq!(attr(&ws, "echo"), "web01");
    assert_eq!(attr(&ws, "type"), "application/json");
    let req = seen.lock().unwrap()[0].clone();
    assert!(req.starts_with("POST /api/cis HTTP/1.1"), "{req}");
    let lower = req.to_ascii_lowercase();
    // admin:smartvm
    assert!(
        lower.contains("authorization: basic ywrtaw46c21hcnr2bq=="),
        "{req}"
    );
    assert!(lower.contains("x-trace: t1"), "{req}");
    assert!(lower.contains("content-type: application/json"), "{req}");
    // Rhai maps are ordered by key.
    assert!(req.contains(r#"{"cpus":2,"name":"web01"}"#), "{req}");
    // What was sent is in automation.log at ManageIQ's level for
    // `<AEMethod ...>` lines, without the credentials.
    assert_eq!(
        line(&ws, &format!("<AEMethod http_post> HTTP POST {url} (")),
        Some(Level::Info),
        "{}",
        dump(&ws)
    );
    assert_eq!(
        line(
            &ws,
            &format!("<AEMethod http_post> HTTP POST {url} answered 201")
        ),
        Some(Level::Info)
    );
    assert!(!dump(&ws).contains("smartvm"));

    // Bearer auth; a 404 is an answer, not an error.
    let ws = run(&engine, "http_get", &[("url", &url)]);
    assert_eq!(attr(&ws, "status"), "201", "{}", dump(&ws));
    let req = seen.lock().unwrap()[1].clone();
    assert!(req.starts_with("GET /api/cis HTTP/1.1"), "{req}");
    assert!(
        req.to_ascii_lowercase()
            .contains("authorization: bearer tok3n"),
        "{req}"
    );
    let ws = run(&engine, "http_delete", &[("url", &url)]);
    assert_eq!(attr(&ws, "status"), "201", "{}", dump(&ws));
    assert!(seen.lock().unwrap()[2].starts_with("DELETE /api/cis HTTP/1.1"));
}

#[test]
fn http_off_the_allow_list_is_refused_before_connecting() {
    let (port, seen) = http_server(|_, conn| json_answer(conn, "200 OK", "{}"));
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), HTTP_METHODS);
    // Only another port of 127.0.0.1 is allowed.
    let engine = engine_with(
        &root,
        Arc::new(automate_vmdb::MemoryStore::new()),
        allow(port.wrapping_add(1).max(1)),
    );
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://localhost:{port}/x"),
    ] {
        let (ws, err) = engine.run_method("/Test/Out/http_get", &[("url".into(), url.clone())]);
        assert!(err.is_some(), "{}", dump(&ws));
        let want = format!("is not on methods.http.allow in automate.yaml: refused GET {url}");
        assert_eq!(line(&ws, &want), Some(Level::Error), "{}", dump(&ws));
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn http_to_a_slow_server_times_out() {
    let (port, _) = http_server(|_, conn| {
        std::thread::sleep(Duration::from_secs(3));
        json_answer(conn, "200 OK", "{}");
    });
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), HTTP_METHODS);
    let mut outbound = allow(port);
    outbound.http.timeout = Duration::from_millis(300);
    let engine = engine_with(&root, Arc::new(automate_vmdb::MemoryStore::new()), outbound);
    let url = format!("http://127.0.0.1:{port}/slow");
    let (ws, err) = engine.run_method("/Test/Out/http_get", &[("url".into(), url.clone())]);
    assert!(err.is_some(), "{}", dump(&ws));
    assert_eq!(
        line(&ws, &format!("evm.http: GET {url}: no answer within 0.3s")),
        Some(Level::Error),
        "{}",
        dump(&ws)
    );
    assert!(line(&ws, "timed out").is_some());
}

#[test]
fn http_answers_larger_than_the_limit_are_refused() {
    let (port, _) = http_server(|_, conn| {
        let big = format!("\"{}\"", "x".repeat(5000));
        json_answer(conn, "200 OK", &big);
    });
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), HTTP_METHODS);
    let engine = engine_with(
        &root,
        Arc::new(automate_vmdb::MemoryStore::new()),
        allow(port),
    );
    let url = format!("http://127.0.0.1:{port}/big");
    let (ws, err) = engine.run_method("/Test/Out/http_get", &[("url".into(), url.clone())]);
    assert!(err.is_some(), "{}", dump(&ws));
    assert_eq!(
        line(
            &ws,
            &format!("evm.http: GET {url}: the answer is larger than methods.http.max_response_bytes (1000 bytes): refused")
        ),
        Some(Level::Error),
        "{}",
        dump(&ws)
    );
}

/// A tiny SMTP sink on 127.0.0.1: accepts one conversation per
/// connection and keeps each mail's envelope and data.
fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let out = mails.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let _ = conn.write_all(b"220 sink ESMTP\r\n");
            let mut mail = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 {
                    break;
                }
                let cmd = l.to_ascii_uppercase();
                if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                    let _ = conn.write_all(b"250-sink\r\n250 8BITMIME\r\n");
                } else if cmd.starts_with("MAIL") || cmd.starts_with("RCPT") {
                    mail.push_str(&l);
                    let _ = conn.write_all(b"250 OK\r\n");
                } else if cmd.starts_with("DATA") {
                    let _ = conn.write_all(b"354 go ahead\r\n");
                    loop {
                        let mut d = String::new();
                        if reader.read_line(&mut d).unwrap_or(0) == 0 || d == ".\r\n" {
                            break;
                        }
                        mail.push_str(&d);
                    }
                    out.lock().unwrap().push(std::mem::take(&mut mail));
                    let _ = conn.write_all(b"250 queued\r\n");
                } else if cmd.starts_with("QUIT") {
                    let _ = conn.write_all(b"221 bye\r\n");
                    break;
                } else {
                    let _ = conn.write_all(b"250 OK\r\n");
                }
            }
        }
    });
    (port, mails)
}

#[test]
fn send_email_goes_through_the_configured_relay_with_its_sender() {
    let (port, mails) = smtp_sink();
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(
        dir.path(),
        &[
            (
                "mail",
                r#"evm.root["sent"] = evm.execute("send_email", "ops@example.com", (), "VM web01 stopped", "It stopped.");"#,
            ),
            (
                "mail_no_relay",
                r#"evm.execute("send_email", "ops@example.com", "me@example.com", "s", "b");"#,
            ),
            ("unknown", r#"evm.execute("no_such_thing", 1);"#),
        ],
    );
    let mut smtp = SmtpSettings::new("127.0.0.1", port, "cfme@example.com");
    smtp.security = automate_methods::outbound::email::SmtpSecurity::None;
    let outbound = Outbound {
        smtp: Some(smtp),
        ..Outbound::default()
    };
    let engine = engine_with(&root, Arc::new(automate_vmdb::MemoryStore::new()), outbound);
    let ws = run(&engine, "mail", &[]);
    assert_eq!(attr(&ws, "sent"), "true", "{}", dump(&ws));
    let got = mails.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    // ManageIQ: no `from` is the configured sender.
    assert!(m.contains("MAIL FROM:<cfme@example.com>"), "{m}");
    assert!(m.contains("RCPT TO:<ops@example.com>"), "{m}");
    assert!(m.contains("Subject: VM web01 stopped"), "{m}");
    assert!(m.contains("It stopped."), "{m}");
    assert_eq!(
        line(
            &ws,
            &format!("<AEMethod mail> send_email to [ops@example.com] from [cfme@example.com] subject [VM web01 stopped] via 127.0.0.1:{port}")
        ),
        Some(Level::Info),
        "{}",
        dump(&ws)
    );

    // Without a relay: refused, naming the key to set.
    let plain = engine_with(
        &root,
        Arc::new(automate_vmdb::MemoryStore::new()),
        Outbound::default(),
    );
    let (ws, err) = plain.run_method("/Test/Out/mail_no_relay", &[]);
    assert!(err.is_some());
    assert!(
        line(&ws, "send_email is not configured: set methods.smtp").is_some(),
        "{}",
        dump(&ws)
    );
    // An unknown `execute` is ManageIQ's MethodNotFound.
    let (ws, err) = plain.run_method("/Test/Out/unknown", &[]);
    assert!(err.is_some());
    assert!(
        line(
            &ws,
            "MiqAeException::MethodNotFound: undefined method `no_such_thing' for MiqAeServiceMethods"
        )
        .is_some(),
        "{}",
        dump(&ws)
    );
}

const NOTIFY: &[(&str, &str)] = &[
    (
        "notify",
        r#"
let vm = evm.vmdb("vm", evm.root["vm_id"]);
let n = evm.create_notification(#{level: "warning", message: "disk low", subject: vm});
evm.root["notification"] = n.id;
evm.root["bad"] = evm.create_notification(#{level: "loud", subject: vm});
"#,
    ),
    (
        "notify_strict",
        r#"evm.create_notification_strict(#{message: "no subject"});"#,
    ),
];

fn notify_on(store: Arc<dyn ObjectStore>) -> (Engine, VmdbRef, i64) {
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), NOTIFY);
    let vm = store
        .create(
            "Vm",
            attrs(&[
                ("name", AttrValue::str("web01")),
                ("ems_id", AttrValue::Int(1)),
            ]),
        )
        .unwrap();
    let engine = engine_with(&root, store.clone(), Outbound::default());
    let ws = run(&engine, "notify", &[("vm_id", &vm.id.to_string())]);
    let id: i64 = attr(&ws, "notification").parse().unwrap_or_else(|_| {
        panic!("no notification: {}", dump(&ws));
    });
    // `create_notification` answers nil for an invalid type (ManageIQ's
    // rescue), with the reason logged.
    assert_eq!(attr(&ws, "bad"), "");
    assert_eq!(
        line(
            &ws,
            "Invalid notification type specified (automate_user_loud"
        ),
        Some(Level::Warn),
        "{}",
        dump(&ws)
    );
    assert!(
        line(
            &ws,
            &format!("Calling Create Notification type: automate_user_warning subject type: VmOrTemplate id: {} options: {{:message=>\"disk low\"}}", vm.id)
        )
        .is_some(),
        "{}",
        dump(&ws)
    );
    // `create_notification!` raises: no subject and no user.
    let (ws, err) = engine.run_method("/Test/Out/notify_strict", &[]);
    assert!(err.is_some(), "{}", dump(&ws));
    assert!(line(&ws, "Subject must be a valid Active Record object").is_some());
    // The datastore directory may go: the engine holds the index.
    drop(dir);
    (engine, vm, id)
}

fn check_stored(store: &dyn ObjectStore, vm: &VmdbRef, id: i64) {
    let n = store
        .load("Notification", id)
        .unwrap()
        .expect("the notification is stored");
    assert_eq!(n.class, "Notification");
    let get = |k: &str| n.attrs.get(k).cloned().unwrap_or(AttrValue::Nil);
    assert_eq!(
        get("notification_type"),
        AttrValue::str("automate_user_warning")
    );
    assert_eq!(get("level"), AttrValue::str("warning"));
    assert_eq!(get("audience"), AttrValue::str("user"));
    assert_eq!(get("message"), AttrValue::str("disk low"));
    assert_eq!(get("subject_type"), AttrValue::str("VmOrTemplate"));
    assert_eq!(get("subject_id"), AttrValue::Int(vm.id));
    assert_eq!(get("initiator"), AttrValue::str("admin"));
    assert_eq!(store.list("Notification").unwrap().len(), 1);
}

fn get_json(url: &str) -> serde_json::Value {
    let text = ureq::get(url)
        .header("X-Auth-Token", "t0ken")
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
}

#[test]
fn notifications_are_stored_in_redb_and_listed_by_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vmdb.redb");
    let store = Arc::new(RedbStore::open(&db).unwrap());
    let (engine, vm, id) = notify_on(store.clone());
    check_stored(&*store, &vm, id);

    let rt = crate::common::api_runtime();
    let stop = tokio_util::sync::CancellationToken::new();
    let addr = crate::common::serve_api(&rt, "t0ken", engine, store, &stop);
    let body = get_json(&format!("http://{addr}/api/notifications?expand=resources"));
    assert_eq!(body["name"], "notifications");
    assert_eq!(body["count"], 1);
    let n = &body["resources"][0];
    assert_eq!(n["id"], id.to_string());
    assert_eq!(n["type"], "Notification");
    assert_eq!(n["level"], "warning");
    assert_eq!(n["message"], "disk low");
    assert_eq!(n["subject_type"], "VmOrTemplate");
    assert_eq!(n["subject_id"], vm.id.to_string());
    let one = get_json(&format!("http://{addr}/api/notifications/{id}"));
    assert_eq!(one["notification_type"], "automate_user_warning");

    // `automate notifications list --json`: through the running service,
    // then from the store once it is closed; the same document.
    let cli = |remote: bool| {
        let mut cmd = crate::common::process::automate_on(&manifest("datastore"), &db);
        if remote {
            cmd.args(["--server", &format!("http://{addr}"), "--token", "t0ken"]);
        }
        let out = cmd
            .args(["notifications", "list", "--json"])
            .output()
            .expect("automate");
        let text = crate::common::process::stdout_ok(&out, "notifications list --json");
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    let remote = cli(true);
    assert_eq!(remote[0]["id"], id);
    assert_eq!(remote[0]["notification_type"], "automate_user_warning");
    assert_eq!(remote[0]["subject_id"], vm.id);
    assert_eq!(remote[0]["message"], "disk low");
    stop.cancel();
    drop(rt);
    let local = cli(false);
    assert_eq!(local, remote);
}

#[test]
fn notifications_are_stored_in_postgresql() {
    let Some(db) = automate_postgres::testing::TestDb::new("outbound_notifications") else {
        return;
    };
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    let (_engine, vm, id) = notify_on(store.clone());
    check_stored(&*store, &vm, id);
}

#[test]
fn a_method_creates_an_automation_request() {
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(
        dir.path(),
        &[(
            "request",
            r#"
let r = evm.execute("create_automation_request",
    #{namespace: "System", class_name: "Request", instance_name: "HelloWorld", attrs: #{who: "Ada"}},
    "jdoe", true);
evm.root["request"] = r.id;
"#,
        )],
    );
    let store = Arc::new(RedbStore::open(dir.path().join("vmdb.redb")).unwrap());
    let schedule: Arc<dyn automate_vmdb::Schedule> = Arc::new(store.schedule());
    let outbound = Outbound {
        requests: Some(Arc::new(automate_control::MethodRequests::new(schedule))),
        ..Outbound::default()
    };
    let engine = engine_with(&root, store.clone(), outbound);
    let ws = run(&engine, "request", &[]);
    let id: i64 = attr(&ws, "request")
        .parse()
        .unwrap_or_else(|_| panic!("no request: {}", dump(&ws)));
    let r = store
        .load("AutomationRequest", id)
        .unwrap()
        .expect("the request is stored");
    let get = |k: &str| r.attrs.get(k).map(AttrValue::to_text).unwrap_or_default();
    assert_eq!(get("userid"), "jdoe");
    // Auto-approved: its task ran HelloWorld and finished it.
    assert_eq!(get("approval_state"), "approved", "{:?}", r.attrs);
    assert_eq!(get("request_state"), "finished", "{:?}", r.attrs);
    assert!(
        line(
            &ws,
            "<AEMethod request> create_automation_request for [jdoe] auto_approve [true]"
        )
        .is_some(),
        "{}",
        dump(&ws)
    );
    // Without a request service (no running service): refused.
    let plain = engine_with(&root, store.clone(), Outbound::default());
    let (ws, err) = plain.run_method("/Test/Out/request", &[]);
    assert!(err.is_some());
    assert!(line(&ws, "create_automation_request is not configured").is_some());
}

#[test]
fn field_timeout_and_ansible_stats_are_manageiqs() {
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(
        dir.path(),
        &[
            (
                "timeout",
                r#"
evm.root["timeout"] = evm.field_timeout();
evm.set_stats(#{vm_ip: "10.0.0.5", tries: 2});
evm.set_state_var("unrelated", 1);
let stats = evm.ansible_stats_vars;
evm.root["ip"] = stats.vm_ip;
evm.root["n_stats"] = stats.len();
evm.root["raw"] = evm.get_state_var("ansible_stats_tries");
"#,
            ),
            ("no_retries", r#"evm.field_timeout();"#),
        ],
    );
    let engine = engine_with(
        &root,
        Arc::new(automate_vmdb::MemoryStore::new()),
        Outbound::default(),
    );
    let ws = run(
        &engine,
        "timeout",
        &[
            ("ae_state_max_retries", "3"),
            ("ae_retry_interval", "1.minute"),
        ],
    );
    assert_eq!(attr(&ws, "timeout"), "180", "{}", dump(&ws));
    assert_eq!(attr(&ws, "ip"), "10.0.0.5");
    assert_eq!(attr(&ws, "n_stats"), "2");
    assert_eq!(attr(&ws, "raw"), "2");
    let ws = run(&engine, "timeout", &[("ae_state_max_retries", "4")]);
    assert_eq!(attr(&ws, "timeout"), "4", "{}", dump(&ws));
    let (ws, err) = engine.run_method("/Test/Out/no_retries", &[]);
    assert!(err.is_some());
    assert!(
        line(&ws, "ae_state_max_retries is not set in automate field").is_some(),
        "{}",
        dump(&ws)
    );
}
