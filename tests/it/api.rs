//! The REST API (`src/api`, `docs/api.md`): a real server on 127.0.0.1
//! (port 0) over a real redb store in a temp dir and the shipped datastore,
//! called with a real HTTP client (ureq, and `curl` when installed).

use crate::common::{api_runtime, control_engine, serve_api};
use automate_engine::{AttrValue, Attributes};
use automate_redb::RedbStore;
use automate_vmdb::ObjectStore;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "s3cr3t-token";
const VM: i64 = 1_000_000_000_029;
const HOST: i64 = 1_000_000_000_002;
const EMS: i64 = 1_000_000_000_001;

/// A running API: its base URL, its store, and what keeps it alive.
struct Server {
    base: String,
    store: Arc<RedbStore>,
    stop: CancellationToken,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn datastore_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/datastore"))
}

fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Starts the API on the shipped datastore and a new store holding a
/// provider, a host, a VM and two events.
fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path().join("api.redb")).unwrap());
    store
        .insert(
            "ExtManagementSystem",
            EMS,
            attrs(&[("name", "rhevm01".into()), ("type", "RHEVM".into())]),
        )
        .unwrap();
    store
        .insert("Host", HOST, attrs(&[("name", "host01".into())]))
        .unwrap();
    store
        .insert(
            "VmOrTemplate",
            VM,
            attrs(&[
                ("name", "web-01".into()),
                ("power_state", "off".into()),
                ("ems_id", AttrValue::Int(EMS)),
            ]),
        )
        .unwrap();
    for (i, (t, ts)) in [
        ("USER_RUN_VM", "2026-01-01T00:00:01Z"),
        ("VM_DOWN", "2026-01-02T00:00:02Z"),
    ]
    .iter()
    .enumerate()
    {
        store
            .insert(
                "EmsEvent",
                1_000_000_003_170 + i as i64,
                attrs(&[
                    ("event_type", (*t).into()),
                    ("timestamp", (*ts).into()),
                    ("source", "RHEVM".into()),
                    ("dedup_key", "internal".into()),
                ]),
            )
            .unwrap();
    }
    let (engine, _runner) = control_engine(&datastore_dir(), store.clone());
    let rt = api_runtime();
    let stop = CancellationToken::new();
    let base = format!(
        "http://{}",
        serve_api(&rt, TOKEN, engine, store.clone(), &stop)
    );
    Server {
        base,
        store,
        stop,
        _rt: rt,
        _dir: dir,
    }
}

/// One exchange: (status, body as JSON). Every answer must be JSON.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<&[u8]>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let result = match method {
        "GET" | "DELETE" => {
            let mut req = if method == "GET" {
                agent.get(url)
            } else {
                agent.delete(url)
            };
            if let Some(t) = token {
                req = req.header("X-Auth-Token", t);
            }
            req.call()
        }
        _ => {
            let mut req = if method == "POST" {
                agent.post(url)
            } else {
                agent.put(url)
            };
            req = req.header("Content-Type", "application/json");
            if let Some(t) = token {
                req = req.header("X-Auth-Token", t);
            }
            req.send(body.unwrap_or(b""))
        }
    };
    let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"));
    (status, v)
}

impl Server {
    fn get(&self, path: &str) -> (u16, Value) {
        call("GET", &format!("{}{path}", self.base), Some(TOKEN), None)
    }

    /// `GET path`, which must answer 200; the body.
    fn get_ok(&self, path: &str) -> Value {
        let (status, v) = self.get(path);
        assert_eq!(status, 200, "{v}");
        v
    }

    /// `GET path`, which must answer the JSON error `want` of `kind`.
    fn get_error(&self, path: &str, want: u16, kind: &str) {
        let (status, v) = self.get(path);
        assert_error(status, &v, want, kind, path);
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let bytes = body.to_string().into_bytes();
        call(
            "POST",
            &format!("{}{path}", self.base),
            Some(TOKEN),
            Some(&bytes),
        )
    }

    fn post_raw(&self, path: &str, body: &[u8]) -> (u16, Value) {
        call(
            "POST",
            &format!("{}{path}", self.base),
            Some(TOKEN),
            Some(body),
        )
    }

    /// The automation requests in the store.
    fn stored_requests(&self) -> usize {
        self.store.list("MiqRequest").unwrap().len()
    }

    /// Polls a request until it is finished (or 30 s pass).
    fn wait_finished(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, v) = self.get(&format!("/api/automation_requests/{id}"));
            assert_eq!(status, 200, "{v}");
            if v["request_state"] == "finished" || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn assert_error(status: u16, v: &Value, want: u16, kind: &str, what: &str) {
    assert_eq!(status, want, "{what}: {v}");
    assert_eq!(v["error"]["kind"], kind, "{what}: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
}

/// Whether the array `v[key]` holds the string `item`.
fn lists(v: &Value, key: &str, item: &str) -> bool {
    v[key].as_array().unwrap().contains(&json!(item))
}

/// The body of ManageIQ's "Trigger a single Automation Request" example,
/// pointed at the shipped `HelloWorld` instance.
fn manageiq_body() -> Value {
    json!({
        "version": "1.1",
        "uri_parts": {
            "namespace": "System",
            "class": "Request",
            "instance": "HelloWorld",
            "message": "create"
        },
        "parameters": {
            "who": "Ada",
            "var3": 1024,
            "var4": true
        },
        "requester": {
            "user_name": "admin",
            "auto_approve": true
        }
    })
}

#[test]
fn health_answers_without_a_token() {
    let s = start();
    let (status, v) = call("GET", &format!("{}/api/health", s.base), None, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["queue_depth"], 0);
}

#[test]
fn manageiq_request_body_creates_and_runs_a_request() {
    let s = start();
    let (status, v) = s.post("/api/automation_requests", &manageiq_body());
    assert_eq!(status, 200, "{v}");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{v}");
    let req = &results[0];
    assert_eq!(req["type"], "AutomationRequest", "{req}");
    assert_eq!(req["request_type"], "automation", "{req}");
    assert_eq!(req["approval_state"], "approved", "{req}");
    let id = req["id"].as_str().expect("a string id").to_string();
    assert!(req["href"]
        .as_str()
        .is_some_and(|h| h.ends_with(&format!("/api/automation_requests/{id}"))));

    let done = s.wait_finished(&id);
    assert_eq!(done["request_state"], "finished", "{done}");
    assert_eq!(done["status"], "Ok", "{done}");
    assert_eq!(done["userid"], "admin", "{done}");

    let (status, list) = s.get("/api/automation_requests?expand=resources");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["name"], "automation_requests");
    assert_eq!(list["count"], 1);
    assert_eq!(list["subcount"], 1);
    assert_eq!(list["resources"][0]["id"], id.as_str());

    // The same body as a `create` action with two resources.
    let (status, v) = s.post(
        "/api/automation_requests",
        &json!({"action": "create", "resources": [manageiq_body(), manageiq_body()]}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(s.stored_requests(), 3);
}

#[test]
fn requests_wait_for_approval_and_refuse_actions_in_the_wrong_state() {
    let s = start();
    let mut body = manageiq_body();
    body["requester"]["auto_approve"] = json!(false);
    let (status, v) = s.post("/api/automation_requests", &body);
    assert_eq!(status, 200, "{v}");
    let req = &v["results"][0];
    assert_eq!(req["approval_state"], "pending_approval", "{req}");
    let id = req["id"].as_str().unwrap().to_string();
    let path = format!("/api/automation_requests/{id}");

    // A deny needs a reason.
    let (status, v) = s.post(&path, &json!({"action": "deny"}));
    assert_error(status, &v, 400, "bad_request", "deny without a reason");
    let (status, v) = s.post(&path, &json!({"action": "deny", "reason": "not today"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"]["approval_state"], "denied", "{v}");
    // Denied: approving now is a conflict.
    let (status, v) = s.post(&path, &json!({"action": "approve", "reason": "ok"}));
    assert_error(status, &v, 409, "conflict", "approve after deny");
    let (status, v) = s.post(&path, &json!({"action": "cancel"}));
    assert_error(status, &v, 400, "bad_request", "unknown action");

    // Another one, approved later, runs.
    let (status, v) = s.post("/api/automation_requests", &body);
    assert_eq!(status, 200, "{v}");
    let id = v["results"][0]["id"].as_str().unwrap().to_string();
    let (status, v) = s.post(
        &format!("/api/automation_requests/{id}"),
        &json!({"action": "approve", "reason": "fine"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["approval_state"], "approved", "{v}");
    let done = s.wait_finished(&id);
    assert_eq!(done["request_state"], "finished", "{done}");
}

#[test]
fn curl_command_from_the_docs_creates_a_request() {
    let s = start();
    let found = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: curl is not on PATH");
        return;
    }
    // As in docs/api.md.
    let body = r#"{"version":"1.1","uri_parts":{"namespace":"System","class":"Request","instance":"HelloWorld","message":"create"},"parameters":{"who":"curl"},"requester":{"auto_approve":true}}"#;
    let out = std::process::Command::new("curl")
        .args(["-s", "-X", "POST", "-H"])
        .arg(format!("X-Auth-Token: {TOKEN}"))
        .args(["-H", "Content-Type: application/json", "-d", body])
        .arg(format!("{}/api/automation_requests", s.base))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(v["results"][0]["approval_state"], "approved", "{v}");
    assert_eq!(s.stored_requests(), 1);
}

#[test]
fn bad_input_is_a_json_error_stores_nothing_and_the_server_keeps_serving() {
    let s = start();
    let base = s.base.clone();
    let url = |p: &str| format!("{base}{p}");
    let good = manageiq_body().to_string().into_bytes();

    // Token: none, wrong, on every endpoint (health needs none).
    for (m, p) in [
        ("GET", "/api/automation_requests"),
        ("POST", "/api/automation_requests"),
        ("GET", "/api/automation_requests/1"),
        ("POST", "/api/automation_requests/1"),
        ("GET", "/api/event_streams"),
        ("GET", "/api/automate"),
        ("GET", "/api/automate/ManageIQ"),
        ("POST", "/api/automate/System/Request/HelloWorld"),
        ("GET", "/api/vms"),
        ("GET", "/api/hosts/1"),
        ("GET", "/api/providers"),
        ("POST", "/api/events"),
        ("GET", "/api/nowhere"),
    ] {
        for token in [None, Some("wrong")] {
            let (status, v) = call(m, &url(p), token, Some(&good));
            assert_error(
                status,
                &v,
                401,
                "unauthorized",
                &format!("{m} {p} {token:?}"),
            );
        }
    }

    // Unknown paths and objects.
    for p in [
        "/api/nowhere",
        "/api/vms/1/extra",
        "/api/automate_domains/NoDomain",
        "/api/automation_requests/1000000000999",
        "/api/vms/1000000000999",
        "/api/hosts/1000000000999",
        "/api/providers/1000000000999",
        "/api/event_streams/1000000000999",
        "/api/automate/NoDomain",
        "/api/automate/ManageIQ/NoNamespace",
        "/api/automate/ManageIQ/System/NoClass",
        "/api/automate/ManageIQ/System/Request/NoInstance",
    ] {
        s.get_error(p, 404, "not_found");
    }
    for p in [
        "/api/automate/System/NoClass/x",
        "/api/automate/NoNamespace/Request/HelloWorld",
        "/api/automate/ManageIQ/System/Process/NoInstance",
        "/api/automate/System/Process/NoInstance",
    ] {
        let (status, v) = s.post(p, &json!({"action": "resolve"}));
        assert_error(status, &v, 404, "not_found", p);
    }

    // Wrong methods.
    for (m, p) in [
        ("DELETE", "/api/vms"),
        ("POST", "/api/vms"),
        ("PUT", "/api/automation_requests"),
        ("GET", "/api/events"),
        ("POST", "/api/health"),
    ] {
        let (status, v) = call(m, &url(p), Some(TOKEN), Some(b"{}"));
        assert_error(status, &v, 405, "method_not_allowed", &format!("{m} {p}"));
    }

    // Malformed JSON, wrong types (the error names the field), unknown
    // namespace / class / instance.
    let bad_requests: Vec<(&[u8], &str, &str)> = vec![
        (b"{\"uri_parts\": ", "malformed_json", "JSON"),
        (b"not json", "malformed_json", "JSON"),
        (b"[1, 2]", "bad_request", "body"),
        (b"{}", "bad_request", "uri_parts"),
        (b"{\"uri_parts\": 7}", "bad_request", "uri_parts"),
        (
            b"{\"uri_parts\": {\"namespace\": 3, \"class\": \"Request\", \"instance\": \"HelloWorld\"}}",
            "bad_request",
            "uri_parts.namespace",
        ),
        (
            b"{\"uri_parts\": {\"namespace\": \"System\", \"class\": [], \"instance\": \"HelloWorld\"}}",
            "bad_request",
            "uri_parts.class",
        ),
        (
            b"{\"uri_parts\": {\"namespace\": \"System\", \"class\": \"Request\", \"instance\": \"HelloWorld\", \"message\": 1}}",
            "bad_request",
            "uri_parts.message",
        ),
        (
            b"{\"uri_parts\": {\"namespace\": \"System\", \"class\": \"Request\", \"instance\": \"HelloWorld\"}, \"parameters\": [1]}",
            "bad_request",
            "parameters",
        ),
        (
            b"{\"uri_parts\": {\"namespace\": \"System\", \"class\": \"Request\", \"instance\": \"HelloWorld\"}, \"requester\": {\"auto_approve\": 1}}",
            "bad_request",
            "requester.auto_approve",
        ),
        (
            b"{\"uri_parts\": {\"namespace\": \"Nowhere\", \"class\": \"Request\", \"instance\": \"HelloWorld\"}}",
            "bad_request",
            "uri_parts.namespace",
        ),
        (
            b"{\"uri_parts\": {\"namespace\": \"System\", \"class\": \"NoClass\", \"instance\": \"HelloWorld\"}}",
            "bad_request",
            "uri_parts.class",
        ),
        (
            b"{\"uri_parts\": {\"namespace\": \"System\", \"class\": \"Process\", \"instance\": \"NoInstance\"}}",
            "bad_request",
            "uri_parts.instance",
        ),
        (
            b"{\"action\": \"create\", \"resources\": [{\"uri_parts\": {\"namespace\": \"System\", \"class\": \"Request\", \"instance\": \"HelloWorld\"}}, {\"uri_parts\": {\"instance\": 5}}]}",
            "bad_request",
            "resources[1].uri_parts.instance",
        ),
        (b"{\"action\": \"explode\"}", "bad_request", "action"),
    ];
    for (body, kind, field) in &bad_requests {
        let (status, v) = s.post_raw("/api/automation_requests", body);
        let what = String::from_utf8_lossy(body);
        assert_error(status, &v, 400, kind, &what);
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(field), "{what}: {message} names {field}");
    }
    // Actions on a request: bad ids, types.
    let (status, v) = s.post_raw("/api/automation_requests/abc", b"{\"action\": \"approve\"}");
    assert_error(status, &v, 400, "bad_request", "non-numeric id");
    let (status, v) = s.post_raw("/api/automation_requests/1", b"{\"action\": 5}");
    assert_error(status, &v, 400, "bad_request", "action type");
    let (status, v) = s.post_raw(
        "/api/automation_requests/1000000000999",
        b"{\"action\": \"approve\"}",
    );
    assert_error(status, &v, 404, "not_found", "approve unknown");
    // Resolve: types.
    for (body, field) in [
        (json!({}), "action"),
        (json!({"action": "explode"}), "action"),
        (
            json!({"action": "resolve", "attributes": [1]}),
            "attributes",
        ),
        (
            json!({"action": "resolve", "attributes": {"who": {"a": 1}}}),
            "attributes.who",
        ),
        (json!({"action": "resolve", "message": 3}), "message"),
    ] {
        let (status, v) = s.post("/api/automate/System/Request/HelloWorld", &body);
        assert_error(status, &v, 400, "bad_request", &body.to_string());
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(field),
            "{v}"
        );
    }
    // Query parameters.
    for q in ["limit=x", "since=yesterday", "color=red"] {
        let (status, v) = s.get(&format!("/api/event_streams?{q}"));
        assert_error(status, &v, 400, "bad_request", q);
    }
    // Oversize bodies on every POST endpoint.
    let big = vec![b' '; (1 << 20) + 10];
    for p in [
        "/api/automation_requests",
        "/api/automation_requests/1",
        "/api/automate/System/Request/HelloWorld",
        "/api/events",
    ] {
        let (status, v) = s.post_raw(p, &big);
        assert_error(status, &v, 413, "payload_too_large", p);
    }

    // Nothing was stored.
    assert_eq!(s.stored_requests(), 0);
    assert_eq!(s.store.list("MiqRequestTask").unwrap().len(), 0);
    let (_, list) = s.get("/api/automation_requests");
    assert_eq!(list["count"], 0, "{list}");

    // And the server still serves good requests.
    let (status, v) = s.post_raw("/api/automation_requests", &good);
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.stored_requests(), 1);
    s.get_ok("/api/automate");
}

#[test]
fn automate_browses_the_datastore_and_resolves() {
    let s = start();
    let v = s.get_ok("/api/automate");
    assert_eq!(v["name"], "automate");
    let d = &v["resources"][0];
    assert_eq!(d["name"], "ManageIQ", "{v}");
    assert_eq!(d["enabled"], true);
    assert!(d["priority"].is_i64(), "{d}");

    let v = s.get_ok("/api/automate/ManageIQ");
    assert_eq!(v["kind"], "domain");
    assert!(lists(&v, "namespaces", "System"), "{v}");

    let v = s.get_ok("/api/automate/manageiq/system");
    assert_eq!(v["kind"], "namespace");
    assert!(lists(&v, "classes", "Request"), "{v}");

    let v = s.get_ok("/api/automate/ManageIQ/System/Request");
    assert_eq!(v["kind"], "class");
    assert!(v["schema"].as_array().is_some_and(|f| !f.is_empty()), "{v}");
    assert!(lists(&v, "instances", "HelloWorld"), "{v}");
    assert!(lists(&v, "methods", "hello_world"), "{v}");

    let v = s.get_ok("/api/automate/ManageIQ/System/Request/HelloWorld");
    assert_eq!(v["kind"], "instance");
    let meth1 = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "meth1")
        .cloned()
        .expect("meth1");
    assert_eq!(meth1["value"], "hello_world");
    assert_eq!(meth1["from_instance"], true);

    for path in [
        "/api/automate/System/Request/HelloWorld",
        "/api/automate/ManageIQ/System/Request/HelloWorld",
    ] {
        let (status, v) = s.post(
            path,
            &json!({"action": "resolve", "attributes": {"who": "Ada"}}),
        );
        assert_eq!(status, 200, "{v}");
        assert!(v["error"].is_null(), "{v}");
        assert_eq!(
            v["objects"][0]["attributes"]["hello_world"], "Hello, Ada!",
            "{v}"
        );
        let trace: Vec<&str> = v["trace"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["text"].as_str())
            .collect();
        assert!(trace.iter().any(|l| l.contains("Hello, Ada!")), "{trace:?}");
    }
}

#[test]
fn objects_and_event_streams_come_from_the_store() {
    let s = start();
    let v = s.get_ok("/api/vms?expand=resources");
    assert_eq!(
        (v["name"].clone(), v["count"].clone()),
        (json!("vms"), json!(1))
    );
    assert_eq!(v["resources"][0]["name"], "web-01");
    let v = s.get_ok(&format!("/api/vms/{VM}"));
    assert_eq!(v["id"], VM.to_string());
    assert_eq!(v["power_state"], "off");
    assert_eq!(
        v["ems_id"],
        EMS.to_string(),
        "ManageIQ shows *_id as strings"
    );
    let v = s.get_ok("/api/hosts?expand=resources");
    assert_eq!(v["resources"][0]["name"], "host01");
    let v = s.get_ok(&format!("/api/providers/{EMS}"));
    assert_eq!(v["name"], "rhevm01");

    let v = s.get_ok("/api/event_streams?expand=resources");
    assert_eq!(v["count"], 2);
    assert_eq!(v["subcount"], 2);
    assert!(v["resources"][0].get("dedup_key").is_none(), "{v}");
    let (_, v) = s.get("/api/event_streams?type=VM_DOWN&expand=resources");
    assert_eq!(v["subcount"], 1, "{v}");
    assert_eq!(v["resources"][0]["event_type"], "VM_DOWN");
    let (_, v) = s.get("/api/event_streams?since=2026-01-02T00:00:00Z");
    assert_eq!(v["subcount"], 1, "{v}");
    let (_, v) = s.get("/api/event_streams?limit=1&expand=resources");
    assert_eq!(v["subcount"], 1, "{v}");
    assert_eq!(v["resources"][0]["event_type"], "VM_DOWN", "the last one");
    let v = s.get_ok("/api/event_streams/1000000003170");
    assert_eq!(v["event_type"], "USER_RUN_VM");
}

#[test]
fn automate_api_command_serves_with_the_env_token() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(datastore_dir())
        .arg("--db")
        .arg(dir.path().join("api.redb"))
        .args(["api", "--listen", "127.0.0.1:0"])
        .env("AUTOMATE_API_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("automate api: listening on ")
        .and_then(|u| u.strip_suffix("/api"))
        .map(str::to_string);
    let result = base.map(|base| {
        let health = call("GET", &format!("{base}/api/health"), None, None);
        let domains = call("GET", &format!("{base}/api/automate"), Some(TOKEN), None);
        let denied = call("GET", &format!("{base}/api/automate"), None, None);
        (health, domains, denied)
    });
    let _ = child.kill();
    let _ = child.wait();
    let ((hs, _), (ds, dv), (ns, _)) = result.unwrap_or_else(|| panic!("printed {line:?}"));
    assert_eq!(hs, 200);
    assert_eq!(ds, 200, "{dv}");
    assert_eq!(dv["resources"][0]["name"], "ManageIQ");
    assert_eq!(ns, 401);
}

#[test]
fn pipeline_serves_the_whole_api_with_the_http_catcher() {
    let dir = tempfile::tempdir().unwrap();
    // A free port (bound, then released for the pipeline).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let yaml = format!(
        "providers:\n  - {{name: rhevm01, type: RHEVM, hostname: r, userid: u, catcher: {{kind: http}}}}\n\
         workers: 1\napi: {{listen: '127.0.0.1:{port}', token: {TOKEN}}}\n"
    );
    let cfg = automate_events::config::Config::from_yaml(&yaml, "api.yaml").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pipeline = rt
        .block_on(automate::cli::compose::start(
            &cfg,
            &datastore_dir(),
            &dir.path().join("run.redb"),
        ))
        .unwrap()
        .pipeline;
    let base = format!("http://127.0.0.1:{port}");
    let event = json!({"provider": "rhevm01", "event": {"event_type": "USER_RUN_VM",
        "timestamp": "2026-01-01T00:00:01Z", "vm_ems_ref": "/api/vms/1", "vm_name": "web-01"}});
    let body = event.to_string().into_bytes();
    let posted = call(
        "POST",
        &format!("{base}/api/events"),
        Some(TOKEN),
        Some(&body),
    );
    let health = call("GET", &format!("{base}/api/health"), None, None);
    let domains = call("GET", &format!("{base}/api/automate"), Some(TOKEN), None);
    let req = manageiq_body().to_string().into_bytes();
    let created = call(
        "POST",
        &format!("{base}/api/automation_requests"),
        Some(TOKEN),
        Some(&req),
    );
    // The event reaches the event stream once a worker has handled it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let (status, v) = call(
            "GET",
            &format!("{base}/api/event_streams?type=USER_RUN_VM"),
            Some(TOKEN),
            None,
        );
        if (status == 200 && v["subcount"] == 1) || Instant::now() > deadline {
            break (status, v);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let vms = call(
        "GET",
        &format!("{base}/api/vms?expand=resources"),
        Some(TOKEN),
        None,
    );
    rt.block_on(pipeline.shutdown());
    assert_eq!(posted.0, 202, "{}", posted.1);
    assert_eq!(posted.1, json!({"accepted": 1, "skipped": 0}));
    assert_eq!(health.0, 200, "{}", health.1);
    assert_eq!(domains.0, 200, "{}", domains.1);
    assert_eq!(created.0, 200, "{}", created.1);
    assert_eq!(created.1["results"][0]["approval_state"], "approved");
    assert_eq!(events.0, 200, "{}", events.1);
    assert_eq!(events.1["subcount"], 1, "{}", events.1);
    assert_eq!(vms.1["resources"][0]["name"], "web-01", "{}", vms.1);
}

#[test]
fn concurrent_requests_are_all_created_and_run() {
    let s = start();
    let url = format!("{}/api/automation_requests", s.base);
    let body = manageiq_body().to_string().into_bytes();
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|_| scope.spawn(|| call("POST", &url, Some(TOKEN), Some(&body))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ids = std::collections::BTreeSet::new();
    for (status, v) in &answers {
        assert_eq!(*status, 200, "{v}");
        assert_eq!(v["results"][0]["request_state"], "finished", "{v}");
        ids.insert(v["results"][0]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 24, "distinct ids");
    assert_eq!(s.stored_requests(), 24);
    let (_, list) = s.get("/api/automation_requests");
    assert_eq!(list["count"], 24, "{list}");
}

#[test]
fn undecodable_paths_and_queries_are_json_errors() {
    let s = start();
    for p in [
        "/api/vms/%FF",
        "/api/automation_requests/%FF",
        "/api/automate/%FF/x",
        "/api/event_streams?limit=%FF",
    ] {
        s.get_error(p, 400, "bad_request");
    }
    s.get_ok("/api/health");
}

/// Issue 22 §1: a resolve is a sandbox by default; `execute_methods: false`
/// lists the methods it did not run; `mode` and `execute_methods` are
/// checked.
#[test]
fn resolve_simulates_by_default_and_can_skip_methods() {
    let s = start();
    let path = "/api/automate/System/Request/HelloWorld";
    let (status, v) = s.post(path, &json!({"action": "resolve"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["mode"], "sandbox", "{v}");
    assert_eq!(v["diff"]["created"], json!([]), "{v}");
    assert_eq!(v["skipped_methods"], json!([]), "{v}");
    let (status, v) = s.post(
        path,
        &json!({"action": "resolve", "execute_methods": false, "mode": "commit"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["mode"], "commit", "{v}");
    assert_eq!(v["diff"], Value::Null, "{v}");
    let skipped = v["skipped_methods"].as_array().cloned().unwrap_or_default();
    assert!(
        skipped
            .iter()
            .any(|m| m.as_str().is_some_and(|m| m.ends_with("/hello_world"))),
        "{v}"
    );
    assert!(
        v["objects"][0]["attributes"]["hello_world"].is_null(),
        "{v}"
    );
    for (body, field) in [
        (json!({"action": "resolve", "mode": "dry"}), "mode"),
        (
            json!({"action": "resolve", "execute_methods": "no"}),
            "execute_methods",
        ),
    ] {
        let (status, v) = s.post(path, &body);
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v.to_string().contains(field), "{body}: {v}");
    }
    // The instantiate action the same way.
    let (status, v) = s.post(
        "/api/automate",
        &json!({"action": "instantiate", "uri": "/System/Request/HelloWorld",
                "execute_methods": false}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["document"]["mode"], "sandbox", "{v}");
    assert!(v["diff_lines"].as_array().is_some_and(Vec::is_empty), "{v}");
    assert!(
        v["skipped_methods"]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}
