//! Hardening of the REST API server (issue 16, items 1, 4, 13 and 14): the
//! real `automate api` binary on 127.0.0.1, configured through `api:` of
//! its config file, talked to over raw TCP so the tests can stall, send
//! half a request, or lie in the `Host` header.
//!
//! Every wait is bounded (socket read timeouts); nothing asserts on
//! durations.

use automate_engine::{AttrValue, Attributes};
use automate_redb::RedbStore;
use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::process::output_ok;
use crate::common::{manifest, shipped_datastore};
use automate_vmdb::ObjectStore;

const TOKEN: &str = "harden-api-token";
/// The longest any single read may wait (a bound, not an assertion).
const READ_BOUND: Duration = Duration::from_secs(30);

/// A running `automate api` (and the temp dir it made, if any); killed on
/// drop.
struct Api {
    child: Child,
    addr: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Api {
    fn drop(&mut self) {
        // SIGTERM, so the store is closed cleanly for the read-only
        // `events list` some tests run after the server.
        let _ = super::common::terminate(&mut self.child);
    }
}

fn db(dir: &Path) -> std::path::PathBuf {
    dir.join("automate.redb")
}

/// Starts `automate api` on `dir`'s store with `api_extra` (YAML lines at
/// the indentation of `api:`'s keys) in its config file.
fn spawn_in(dir: &Path, api_extra: &str) -> Api {
    let config = dir.join("automate.yaml");
    let yaml = format!(
        "providers:\n  - {{name: rhevm01, type: RHEVM, hostname: r, userid: u, \
         catcher: {{kind: simulate, seed: 1, rate: 1}}}}\napi:\n  token: {TOKEN}\n{api_extra}"
    );
    std::fs::write(&config, yaml).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(shipped_datastore())
        .arg("--db")
        .arg(db(dir))
        .args(["api", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env_remove("AUTOMATE_API_TOKEN")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("automate api starts");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let addr = line
        .trim()
        .strip_prefix("automate api: listening on http://")
        .and_then(|u| u.strip_suffix("/api"))
        .map(str::to_string);
    let Some(addr) = addr else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("automate api printed {line:?}");
    };
    Api {
        child,
        addr,
        _dir: None,
    }
}

fn spawn(api_extra: &str) -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut api = spawn_in(dir.path(), api_extra);
    api._dir = Some(dir);
    api
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(READ_BOUND)).expect("timeout");
    s
}

/// Reads until the server closes the connection. `Ok(bytes)` when it did
/// (EOF or reset); `Err` when the bounded wait ran out with it still open.
fn read_until_closed(s: &mut TcpStream) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(got)
            }
            Err(_) => return Ok(got),
        }
    }
}

/// A parsed answer: status and JSON body.
fn parse_answer(bytes: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, v)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// One request on its own connection (`Connection: close`), with extra
/// header lines (`Host` defaults to the server's address).
fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let mut s = connect(addr);
    let host = extra
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or(addr, |(_, v)| *v);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Auth-Token: {TOKEN}\r\n\
         Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).expect("write");
    let got = read_until_closed(&mut s).expect("the server answers and closes");
    parse_answer(&got)
}

/// The error's message names the limit: its value and its config key.
fn assert_names_limit(v: &Value, value: &str, key: &str) {
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(value) && message.contains(key), "{v}");
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    exchange(addr, "GET", path, &[], b"")
}

fn health_is_ok(addr: &str) {
    let (status, v) = get(addr, "/api/health");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "ok", "{v}");
}

/// Opens `n` connections that each send half a request header and stall.
fn stalled(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Half: ")
                .expect("half a header");
            s
        })
        .collect()
}

/// Item 1: a few hundred clients that send half a header do not keep
/// `/api/health` from answering, and each is closed after the header-read
/// timeout (as is an idle kept-alive connection).
#[test]
fn stalled_clients_are_closed_and_health_still_answers() {
    let api = spawn("  limits: {header_read_timeout_secs: 1}\n");
    let mut slow = stalled(&api.addr, 300);
    health_is_ok(&api.addr);

    // An idle keep-alive connection after a full answer is closed too.
    let mut idle = connect(&api.addr);
    idle.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let kept = read_until_closed(&mut idle);
    let kept = kept.expect("the idle kept-alive connection is closed");
    assert!(
        String::from_utf8_lossy(&kept).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&kept)
    );

    for (i, s) in slow.iter_mut().enumerate() {
        let closed = read_until_closed(s);
        assert!(closed.is_ok(), "stalled connection {i} is still open");
    }
    health_is_ok(&api.addr);
}

/// Item 1: past `max_connections` a connection is answered 503 (naming the
/// limit) and closed instead of waiting in the backlog; once the stalled
/// ones are closed by the header timeout, the server answers again.
#[test]
fn connections_past_the_cap_are_refused_then_served_again() {
    let api = spawn("  limits: {max_connections: 4, header_read_timeout_secs: 2}\n");
    let mut slow = stalled(&api.addr, 4);
    let mut refused = None;
    for _ in 0..20 {
        let mut s = connect(&api.addr);
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                refused = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                break;
            }
            // Served (one of the 4 had not been accepted yet): finish it
            // and try again.
            _ => {
                s.set_read_timeout(Some(READ_BOUND)).expect("timeout");
                let _ = s
                    .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let _ = read_until_closed(&mut s);
            }
        }
    }
    let refused = refused.expect("a connection past the cap is answered at once");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("api.limits.max_connections"), "{refused}");
    for s in &mut slow {
        assert!(
            read_until_closed(s).is_ok(),
            "a stalled connection stays open"
        );
    }
    health_is_ok(&api.addr);
}

/// Item 1: a header over `max_header_bytes`, or more headers than
/// `max_headers`, is answered 431 or the connection closed; the server
/// goes on.
#[test]
fn oversized_headers_get_431_or_a_close() {
    let api = spawn("  limits: {max_header_bytes: 4096, max_headers: 16}\n");
    let big = format!(
        "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /api/health HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for req in [big, many] {
        let mut s = connect(&api.addr);
        // The server may close before the whole header is written.
        let _ = s.write_all(req.as_bytes());
        let got = read_until_closed(&mut s).expect("the connection is closed");
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431"),
            "{text}"
        );
    }
    health_is_ok(&api.addr);
}

/// Item 1: a request whose body never finishes is answered 503 `timeout`
/// at the request deadline; a body over `max_body_bytes` is a 413 naming
/// the limit.
#[test]
fn slow_bodies_hit_the_deadline_and_big_ones_are_refused() {
    let api = spawn("  limits: {request_timeout_secs: 1, max_body_bytes: 4096}\n");
    let mut s = connect(&api.addr);
    let head = format!(
        "POST /api/automation_requests HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"uri_parts\""
    );
    s.write_all(head.as_bytes()).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n{") {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if let Ok(n) = s.read(&mut buf) {
        got.extend_from_slice(&buf[..n]);
    }
    let (status, v) = parse_answer(&got);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["kind"], "timeout", "{v}");
    assert_names_limit(&v, "1 s", "api.limits.request_timeout_secs");

    let body = vec![b' '; 5000];
    let (status, v) = exchange(&api.addr, "POST", "/api/automation_requests", &[], &body);
    assert_eq!(status, 413, "{v}");
    assert_names_limit(&v, "4096", "api.limits.max_body_bytes");
    health_is_ok(&api.addr);
}

fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A store with a provider and `vms` VMs.
fn seed_vms(dir: &Path, vms: i64) {
    let store = RedbStore::open(db(dir)).expect("open");
    store
        .insert(
            "ExtManagementSystem",
            1_000_000_000_001,
            attrs(&[("name", "rhevm01".into())]),
        )
        .expect("ems");
    for i in 0..vms {
        store
            .insert(
                "VmOrTemplate",
                1_000_000_000_100 + i,
                attrs(&[("name", format!("vm-{i}").into())]),
            )
            .expect("vm");
    }
}

fn hrefs(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let Some(h) = m.get("href").and_then(Value::as_str) {
                    out.push(h.to_string());
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    out
}

/// Creates one auto-approved HelloWorld request (200 expected).
fn create_hello(addr: &str) {
    let (status, v) = exchange(
        addr,
        "POST",
        "/api/automation_requests",
        &[],
        HELLO.as_bytes(),
    );
    assert_eq!(status, 200, "{v}");
}

const HELLO: &str = r#"{"uri_parts":{"namespace":"System","class":"Request","instance":"HelloWorld"},"requester":{"auto_approve":true}}"#;

/// Item 4: the `Host` header never reaches an `href`: links are paths, or
/// start with `api.public_url` when it is set.
#[test]
fn hostile_host_headers_never_reach_hrefs() {
    let evil = [("Host", "evil.example.com:666")];
    let dir = tempfile::tempdir().expect("tempdir");
    seed_vms(dir.path(), 2);
    let api = spawn_in(dir.path(), "");
    let mut seen = Vec::new();
    for (method, path, body) in [
        ("GET", "/api/vms", ""),
        ("GET", "/api/vms/1000000000100", ""),
        ("GET", "/api/providers", ""),
        ("GET", "/api/automate", ""),
        ("GET", "/api/automate/ManageIQ/System/Request", ""),
        ("POST", "/api/automation_requests", HELLO),
        ("GET", "/api/automation_requests", ""),
    ] {
        let (status, v) = exchange(&api.addr, method, path, &evil, body.as_bytes());
        assert_eq!(status, 200, "{method} {path}: {v}");
        let h = hrefs(&v);
        assert!(!h.is_empty(), "{method} {path}: no href in {v}");
        for href in &h {
            assert!(href.starts_with("/api/"), "{method} {path}: {href}");
        }
        seen.extend(h);
    }
    assert!(seen.iter().all(|h| !h.contains("evil")), "{seen:?}");
    drop(api);

    let api = spawn("  public_url: https://automate.example.com/\n");
    let (status, v) = exchange(&api.addr, "GET", "/api/automate", &evil, b"");
    assert_eq!(status, 200, "{v}");
    let h = hrefs(&v);
    assert!(!h.is_empty(), "{v}");
    for href in h {
        assert!(
            href.starts_with("https://automate.example.com/api/automate/"),
            "{href}"
        );
    }
}

/// Item 14: collections are pages (`default_limit` without `limit`, 400
/// over `max_limit`, `offset`), `count` stays the whole collection, and a
/// bulk create over `max_resources` is refused with a JSON error naming
/// the limit before anything is created.
#[test]
fn collections_are_paged_and_bulk_actions_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    seed_vms(dir.path(), 30);
    {
        let store = RedbStore::open(db(dir.path())).expect("open");
        for i in 0..30 {
            store
                .insert(
                    "EmsEvent",
                    1_000_000_003_000 + i,
                    attrs(&[
                        ("event_namespace", "EmsEvent".into()),
                        ("event_type", "USER_RUN_VM".into()),
                        ("timestamp", "2026-01-01T00:00:00.000Z".into()),
                        ("n", AttrValue::Int(i)),
                    ]),
                )
                .expect("event");
        }
    }
    let api = spawn_in(
        dir.path(),
        "  limits: {default_limit: 5, max_limit: 10, max_resources: 3}\n",
    );
    let ns = |v: &Value| -> Vec<i64> {
        v["resources"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["n"].as_i64()).collect())
            .unwrap_or_default()
    };

    let (status, v) = get(&api.addr, "/api/event_streams?expand=resources");
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["count"].as_i64(), v["subcount"].as_i64()),
        (Some(30), Some(5))
    );
    assert_eq!(ns(&v), vec![25, 26, 27, 28, 29], "the last 5, oldest first");

    let (_, v) = get(
        &api.addr,
        "/api/event_streams?limit=3&offset=3&expand=resources",
    );
    assert_eq!(ns(&v), vec![24, 25, 26], "the 3 before the last 3");

    let (status, v) = get(&api.addr, "/api/event_streams?limit=11");
    assert_eq!(status, 400, "{v}");
    assert_names_limit(&v, "10", "api.limits.max_limit");

    let (status, v) = get(&api.addr, "/api/vms?offset=28");
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["count"].as_i64(), v["subcount"].as_i64()),
        (Some(30), Some(2))
    );
    let (_, v) = get(&api.addr, "/api/vms");
    assert_eq!(v["subcount"].as_i64(), Some(5), "{v}");
    let (status, _) = get(&api.addr, "/api/vms?limit=1000");
    assert_eq!(status, 400);

    let resources = vec![serde_json::from_str::<Value>(HELLO).expect("json"); 4];
    let bulk = serde_json::json!({"action": "create", "resources": resources}).to_string();
    let (status, v) = exchange(
        &api.addr,
        "POST",
        "/api/automation_requests",
        &[],
        bulk.as_bytes(),
    );
    assert_eq!(status, 413, "{v}");
    assert_names_limit(&v, "3", "api.limits.max_resources");
    let (_, v) = get(&api.addr, "/api/automation_requests");
    assert_eq!(v["count"].as_i64(), Some(0), "nothing was created: {v}");

    for _ in 0..3 {
        create_hello(&api.addr);
    }
    let (_, all) = get(&api.addr, "/api/automation_requests");
    let (_, page) = get(&api.addr, "/api/automation_requests?offset=1&limit=1");
    assert_eq!(
        (all["count"].as_i64(), all["subcount"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(page["subcount"].as_i64(), Some(1), "{page}");
    assert_eq!(page["resources"][0]["href"], all["resources"][1]["href"]);
    assert!(page["resources"][0]["href"].is_string(), "{page}");
}

/// Item 13: every kind of event row is found by `since` — EmsEvent (ISO
/// 8601 from the catchers), MiqEvent (raised by a method, now ISO 8601 too,
/// and rows stored before in Ruby's `Time#to_s` text), RequestEvent (from a
/// real automation request) — through `automate events list --since` and
/// `GET /api/event_streams?since=`; rows older than `since` are left out
/// whatever their format.
#[test]
fn since_covers_every_kind_of_event_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let raised = {
        let store = Arc::new(RedbStore::open(db(dir.path())).expect("open"));
        let ems = 1_000_000_000_001;
        store
            .insert(
                "ExtManagementSystem",
                ems,
                attrs(&[("name", "rhevm01".into())]),
            )
            .expect("ems");
        store
            .insert(
                "Host",
                1_000_000_000_002,
                attrs(&[("name", "host01".into())]),
            )
            .expect("host");
        store
            .insert(
                "VmOrTemplate",
                1_000_000_000_029,
                attrs(&[
                    ("name", "web01".into()),
                    ("ems_id", AttrValue::Int(ems)),
                    ("host_id", AttrValue::Int(1_000_000_000_002)),
                ]),
            )
            .expect("vm");
        let rows = [
            (
                "EmsEvent",
                "EMS_NEW",
                automate_core::time::iso8601(now * 1000),
            ),
            (
                "EmsEvent",
                "EMS_OLD",
                "2013-01-01T00:00:00.000Z".to_string(),
            ),
            (
                "MiqEvent",
                "MIQ_OLD_FORMAT_NEW",
                automate_core::time::utc_text(now),
            ),
            (
                "MiqEvent",
                "MIQ_OLD_FORMAT_OLD",
                "2013-01-01 00:00:00 UTC".to_string(),
            ),
        ];
        for (i, (class, t, ts)) in rows.iter().enumerate() {
            store
                .insert(
                    class,
                    1_000_000_005_000 + i as i64,
                    attrs(&[
                        ("event_namespace", (*class).into()),
                        ("event_type", (*t).into()),
                        ("timestamp", ts.as_str().into()),
                    ]),
                )
                .expect("row");
        }
        // A MiqEvent raised by a method, as the product writes it.
        let (engine, runner) =
            crate::common::control_engine(&manifest("tests/data/methods/spec"), store.clone());
        let (ws, err) = engine.instantiate_traced("/EVM/AUTOMATE/raise", &[]);
        assert_eq!(err, None, "{}", ws.trace_lines().join("\n"));
        let id = match ws.root_attr("raised") {
            Some(AttrValue::Int(id)) => *id,
            other => panic!("raised: {other:?}"),
        };
        let row = store.load("MiqEvent", id).expect("load").expect("stored");
        let ts = row
            .attrs
            .get("timestamp")
            .map(AttrValue::to_text)
            .unwrap_or_default();
        assert!(
            ts.contains('T') && ts.ends_with('Z'),
            "a MiqEvent's timestamp is ISO 8601 like the EmsEvents': {ts}"
        );
        drop((engine, runner, ws));
        id.to_string()
    };

    let api = spawn_in(dir.path(), "");
    // A real request writes RequestEvent rows (request_created, ...).
    create_hello(&api.addr);
    let kinds = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| {
                format!(
                    "{}:{}",
                    r["event_namespace"].as_str().unwrap_or_default(),
                    r["event_type"].as_str().unwrap_or_default()
                )
            })
            .collect()
    };
    let check = |found: Vec<String>, via: &str| {
        for want in [
            "EmsEvent:EMS_NEW",
            "MiqEvent:MIQ_OLD_FORMAT_NEW",
            "MiqEvent:vm_start",
            "RequestEvent:request_created",
        ] {
            assert!(
                found.iter().any(|f| f == want),
                "{via}: {want} missing from {found:?}"
            );
        }
        for gone in ["EMS_OLD", "MIQ_OLD_FORMAT_OLD"] {
            assert!(
                !found.iter().any(|f| f.ends_with(gone)),
                "{via}: {gone} in {found:?}"
            );
        }
    };
    let (status, v) = get(&api.addr, "/api/event_streams?since=3600&expand=resources");
    assert_eq!(status, 200, "{v}");
    check(
        kinds(v["resources"].as_array().map_or(&[][..], |a| a)),
        "the API",
    );
    assert!(
        v["resources"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["id"].as_str() == Some(raised.as_str()))),
        "{v}"
    );
    drop(api);

    let out = output_ok(
        Command::new(env!("CARGO_BIN_EXE_automate"))
            .arg("--db")
            .arg(db(dir.path()))
            .args(["events", "list", "--since", "3600", "--json"])
            .env_remove("RUST_LOG"),
        "events list",
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    check(kinds(&rows), "events list --since");
}

/// Item 1: a client that asks for a large answer and never reads it is
/// dropped after `write_timeout_secs`, which frees its connection: with
/// `max_connections: 1`, `/api/health` is served again.
#[test]
fn a_client_that_stops_reading_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = RedbStore::open(db(dir.path())).expect("open");
        let notes = "x".repeat(40_000);
        store
            .write_batch(|b| {
                for i in 0..300 {
                    b.insert(
                        "VmOrTemplate",
                        1_000_000_000_100 + i,
                        attrs(&[("notes", notes.as_str().into())]),
                    )?;
                }
                Ok(())
            })
            .expect("vms");
    }
    let api = spawn_in(
        dir.path(),
        "  limits: {max_connections: 1, write_timeout_secs: 1, header_read_timeout_secs: 60}\n",
    );
    // ~12 MB of answer, far more than the socket buffers take unread.
    let mut reader = connect(&api.addr);
    let req = format!(
        "GET /api/vms?expand=resources HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\n\r\n"
    );
    reader.write_all(req.as_bytes()).expect("write");
    let mut first = [0u8; 64];
    let n = reader.read(&mut first).expect("the answer starts");
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));

    let mut served = false;
    for _ in 0..60 {
        let mut probe = connect(&api.addr);
        probe
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        match probe.read(&mut buf) {
            // 503: the reader still holds the only connection.
            Ok(n) if n > 0 => {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            _ => {}
        }
        probe.set_read_timeout(Some(READ_BOUND)).expect("timeout");
        let _ =
            probe.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let got = read_until_closed(&mut probe).unwrap_or_default();
        if parse_answer(&got).0 == 200 {
            served = true;
            break;
        }
    }
    assert!(served, "the stalled reader's connection was never dropped");
    let rest = read_until_closed(&mut reader).expect("the reader's connection is closed");
    assert!(
        n + rest.len() < 12_000_000,
        "the reader got the whole answer ({} bytes)",
        n + rest.len()
    );
}
