//! Hardening of what users send in (issue 16, items 3, 5, 9 and 16):
//! request parameters and resolve attributes that name a system key (one
//! request taking over another's task), durations and times from input that
//! overflowed, and configuration files with extreme numbers and bad names.
//! Real parts: the `automate` binary, a redb store in a temp dir, the REST
//! API on 127.0.0.1.

use crate::common::process::{stderr, stdout};
use automate_engine::{datatype, Engine};
use automate_redb::RedbStore;
use automate_requests::{NewRequest, Requests, REQUEST_CLASS};
use automate_vmdb::ObjectStore;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A temp dir whose datastore root holds the shipped ManageIQ domain and
/// the requests test domain (`/Test/Work/hello`, the retrying
/// `/Test/Counter/default`), imported with the real binary.
struct Env {
    tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("datastore");
        std::fs::create_dir_all(&root).expect("mkdir");
        let env = Env { tmp, root };
        for d in ["datastore/ManageIQ", "tests/data/requests/Req"] {
            let out = env.automate(&["import", manifest(d).to_str().expect("utf-8")]);
            assert!(out.status.success(), "import {d}: {}", stderr(&out));
        }
        env
    }

    fn automate(&self, args: &[&str]) -> Output {
        automate_at(self.tmp.path(), &self.root, args)
    }

    /// The request service over a redb store of its own.
    fn requests(&self) -> (Requests, Arc<RedbStore>, Engine) {
        let store =
            Arc::new(RedbStore::open(self.tmp.path().join("lib.redb")).expect("redb store"));
        let schedule = store.schedule();
        let (engine, _runner) = crate::common::control_engine(&self.root, store.clone());
        (
            Requests::new(engine.clone(), Arc::new(schedule)),
            store,
            engine,
        )
    }
}

/// `automate` with its logs and store in `dir`, on the datastore `root`.
fn automate_at(dir: &Path, root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_automate"))
        .current_dir(dir)
        .arg("--datastore")
        .arg(root)
        .arg("--db")
        .arg(dir.join("automate.redb"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_API_TOKEN")
        .output()
        .expect("run automate")
}

/// A panic in the binary exits 101 and prints "panicked".
fn assert_no_panic(o: &Output, what: &str) {
    assert_ne!(o.status.code(), Some(101), "{what} panicked: {}", stderr(o));
    assert!(!stderr(o).contains("panicked"), "{what}: {}", stderr(o));
}

fn new_request(class: &str, instance: &str, params: Value, auto: bool) -> NewRequest {
    NewRequest {
        namespace: "Test".into(),
        class: class.into(),
        instance: instance.into(),
        message: None,
        parameters: params.as_object().cloned().unwrap_or_default(),
        auto_approve: auto,
        userid: None,
    }
}

/// Item 3: the hijack. Request A's task retries (stays `active`); request
/// B names A's task in its parameters. B is refused, naming the key, in
/// every spelling of the attribute; and when such a parameter reaches the
/// task's URI anyway (a request stored before the check), the system's key
/// wins: B finishes B's task and A's stays active.
#[test]
fn a_request_cannot_take_over_another_requests_task() {
    let env = Env::new();
    let (requests, store, _engine) = env.requests();
    let a = requests
        .create(new_request("Counter", "default", json!({}), true))
        .expect("request A");
    assert_eq!(a.request_state, "active");
    let a_task = a.tasks[0].id;

    for key in [
        "AutomationTask::automation_task",
        "automationtask::AUTOMATION_TASK",
        "Foo::automation_task",
        "automation_task",
        "automation_task_id",
        "User::user",
        "MiqServer::miq_server",
        "MiqRequest::miq_request",
        "vmdb_object_type",
        "object_name",
        "EventStream::event_stream",
        "event_type",
        "ae_state",
        "ae_state_started",
    ] {
        let err = requests
            .create(new_request(
                "Work",
                "hello",
                json!({ key: a_task.to_string() }),
                true,
            ))
            .err()
            .unwrap_or_else(|| panic!("{key} was accepted"));
        assert_eq!(err.kind(), "bad_request", "{key}: {err}");
        assert!(
            err.to_string().contains(&format!("parameters.{key}")),
            "{key}: {err}"
        );
    }
    // Names that are not system keys still pass.
    let ok = requests
        .create(new_request("Work", "hello", json!({"who": "Ada"}), true))
        .expect("plain parameter");
    assert_eq!(ok.status, "Ok");

    // A request stored with the hijacking key (as before the check).
    let b = requests
        .create(new_request("Work", "hello", json!({"who": "Eve"}), false))
        .expect("request B");
    let b_ref = store.find(REQUEST_CLASS, b.id).unwrap().expect("stored B");
    let mut options = b.options.clone();
    options["attrs"]["AutomationTask::automation_task"] = json!(a_task.to_string());
    options["attrs"]["Foo::automation_task"] = json!(a_task.to_string());
    store
        .update(&b_ref, "options", datatype::from_json(&options))
        .expect("store B's options");
    let b = requests.approve(b.id, None).expect("approve B");
    assert_eq!(b.request_state, "finished", "{b:?}");
    assert_eq!(b.tasks[0].state, "finished", "{b:?}");
    let a = requests.get(a.id).expect("A");
    assert_eq!(a.request_state, "active", "A was taken over: {a:?}");
    assert_eq!(a.tasks[0].state, "active", "A's task was taken over: {a:?}");
}

/// Item 3 through the CLI: `request create --attr` refuses a system key
/// with exit 1, naming it, and stores nothing.
#[test]
fn request_create_refuses_a_system_key() {
    let env = Env::new();
    let out = env.automate(&[
        "request",
        "create",
        "/Test/Work/hello",
        "--attr",
        "AutomationTask::automation_task=1",
        "--auto-approve",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("AutomationTask::automation_task"),
        "{}",
        stderr(&out)
    );
    let list = env.automate(&["request", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(
        !stdout(&list).contains("/Test/Work/hello"),
        "{}",
        stdout(&list)
    );
    // A name with `?` would smuggle a query into the task's URI.
    let out = env.automate(&[
        "request",
        "create",
        "/Test/Work/hello?AutomationTask::automation_task=1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// Item 3 through the REST API: `POST /api/automation_requests` parameters
/// and resolve attributes naming a system key are 400s naming the key; a
/// query smuggled into the resolve path is refused too.
#[test]
fn the_api_refuses_system_keys() {
    const TOKEN: &str = "t0ken";
    let env = Env::new();
    let (_requests, store, engine) = env.requests();
    let rt = crate::common::api_runtime();
    let stop = tokio_util::sync::CancellationToken::new();
    let base = format!(
        "http://{}",
        crate::common::serve_api(&rt, TOKEN, engine, store.clone(), &stop)
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let post = |path: &str, body: Value| -> (u16, Value) {
        let mut resp = agent
            .post(&format!("{base}{path}"))
            .header("X-Auth-Token", TOKEN)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .expect("POST");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    let request = |params: Value| {
        json!({
            "uri_parts": {"namespace": "Test", "class": "Work", "instance": "hello"},
            "parameters": params,
            "requester": {"auto_approve": true}
        })
    };
    // A 400 whose error message names `key`.
    let refused = |path: &str, body: Value, key: &str| {
        let (status, v) = post(path, body);
        assert_eq!(status, 400, "{v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(key), "{v}");
    };
    refused(
        "/api/automation_requests",
        request(json!({"AutomationTask::automation_task": "1"})),
        "parameters.AutomationTask::automation_task",
    );
    refused(
        "/api/automation_requests",
        json!({"resources": [request(json!({"who": "Ada"})), request(json!({"vmdb_object_type": "x"}))], "action": "create"}),
        "resources[1].parameters.vmdb_object_type",
    );
    let (status, v) = post("/api/automation_requests", request(json!({"who": "Ada"})));
    assert!(status == 200 || status == 201, "{status} {v}");

    refused(
        "/api/automate/Test/Work/hello",
        json!({"action": "resolve", "attributes": {"User::user": "1"}}),
        "attributes.User::user",
    );
    let (status, v) = post(
        "/api/automate/Test/Work/hello%3FAutomationTask%3A%3Aautomation_task%3D1",
        json!({"action": "resolve"}),
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = post(
        "/api/automate/Test/Work/hello",
        json!({"action": "resolve", "attributes": {"who": "Ada"}}),
    );
    assert_eq!(status, 200, "{v}");
    stop.cancel();
}

/// Item 5: a retry interval from input that `Duration`/`SystemTime` cannot
/// hold panicked; now the delivery ends with an error naming the field,
/// through `instantiate` and through a request's task.
#[test]
fn retry_intervals_from_input_never_panic() {
    let env = Env::new();
    for interval in ["inf", "1e300", "15000000000000000000", "-1", "NaN"] {
        let uri = format!("/Test/Work/hello?ae_result=retry&ae_retry_interval={interval}");
        let out = env.automate(&["instantiate", "--quiet", &uri]);
        assert_no_panic(&out, &uri);
        assert_eq!(out.status.code(), Some(1), "{uri}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("ae_retry_interval: [{interval}]")),
            "{uri}: {}",
            stderr(&out)
        );
    }
    let out = env.automate(&[
        "request",
        "create",
        "/Test/Work/hello",
        "--attr",
        "ae_result=retry",
        "--attr",
        "ae_retry_interval=1e300",
        "--auto-approve",
        "--json",
    ]);
    assert_no_panic(&out, "request create");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    assert_eq!(v["request_state"], "finished", "{v} {}", stderr(&out));
    assert_eq!(v["status"], "Error", "{v}");
    // Nothing was scheduled.
    let list = env.automate(&["retries", "list"]);
    assert!(
        !stdout(&list).contains("/Test/Work/hello"),
        "{}",
        stdout(&list)
    );
}

/// Item 16: `ae_state_started` with a year beyond i64 days overflowed the
/// calendar (a panic in debug builds, a wrapped time in release); now it is
/// not a time, and the state runs.
#[test]
fn state_times_from_input_never_overflow() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = manifest("tests/data/engine/state_maxima");
    for started in [
        "9223372036854775807-01-01 00:00:00 UTC",
        "2026-01-01 00:00:9223372036854775807 UTC",
        "-9223372036854775808-99-99 99:99:99 UTC",
    ] {
        let uri = format!(
            "/SPEC_DOMAIN/NS1/LIMITED/max_time_1_hour?ae_state_started={}",
            started.replace(' ', "%20")
        );
        let out = automate_at(tmp.path(), &root, &["instantiate", "--quiet", &uri]);
        assert_no_panic(&out, started);
        assert!(
            stdout(&out).contains("ae_state = state1"),
            "{started}: {}",
            stdout(&out)
        );
    }
}

/// Item 9: bad configurations through `automate run --config`: exit 1
/// before anything starts, with every problem listed (field path and line).
#[test]
fn bad_configs_are_refused_with_every_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let provider = |name: &str, catcher: &str| {
        format!("  - name: {name}\n    type: RHEVM\n    hostname: h\n    userid: u\n    catcher: {catcher}\n")
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "numbers",
            format!(
                "providers:\n{}workers: 100000\nqueue: {{capacity: 0, batch_max: 1000000000, batch_wait_ms: 1000000000}}\nlog: {{stats_interval_secs: 18446744073709551615}}\n",
                provider("a", "{kind: simulate, rate: 1e-300, vms: 100000000, count: 18446744073709551615}")
            ),
            vec![
                "bad.yaml:6: providers[0].catcher.rate",
                "bad.yaml:6: providers[0].catcher.vms",
                "bad.yaml:6: providers[0].catcher.count",
                "bad.yaml:7: workers",
                "bad.yaml:8: queue.capacity",
                "bad.yaml:8: queue.batch_max",
                "bad.yaml:8: queue.batch_wait_ms",
                "bad.yaml:9: log.stats_interval_secs",
            ],
        ),
        (
            "names",
            format!(
                "providers:\n{}{}{}{}",
                provider("rhevm01", "{kind: simulate}"),
                provider("RHEVM01", "{kind: simulate}"),
                provider("\"bad\\nname\"", "{kind: simulate}"),
                provider("\"nul\\0\"", "{kind: simulate, rate: 20000000}"),
            ),
            vec![
                "bad.yaml:7: providers[1].name: provider [RHEVM01] is configured twice",
                "bad.yaml:12: providers[2].name",
                "bad.yaml:17: providers[3].name",
                "providers[3].catcher.rate",
            ],
        ),
        (
            "catchers",
            "providers:\n  - {name: a, type: OPENSTACK, hostname: h, userid: u, catcher: {kind: amqp, prefetch: 0, exchange: \"\"}}\n  - {name: b, type: RHEVM, hostname: h, userid: u, catcher: {kind: simulate, start: \"99999-01-01T00:00:00Z\", rate: -1}}\n  - {name: \"\", type: RHEVM, hostname: \" \", userid: u, catcher: {kind: jsonl, path: \"\"}}\n".to_string(),
            vec![
                "providers[0].catcher.prefetch",
                "providers[0].catcher.exchange",
                "providers[1].catcher.start",
                "providers[1].catcher.rate",
                "providers[2].name: empty",
                "providers[2].hostname: empty",
                "providers[2].catcher.path",
            ],
        ),
    ];
    for (what, text, expected) in cases {
        let path = tmp.path().join("bad.yaml");
        std::fs::write(&path, &text).expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_automate"))
            .current_dir(tmp.path())
            .arg("--datastore")
            .arg(manifest("datastore"))
            .arg("--db")
            .arg(tmp.path().join("automate.redb"))
            .args(["run", "--config", "bad.yaml"])
            .env_remove("RUST_LOG")
            .env_remove("AUTOMATE_API_TOKEN")
            .output()
            .expect("run automate");
        assert_no_panic(&out, what);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        for e in &expected {
            assert!(err.contains(e), "{what}: {e:?} missing from\n{err}");
        }
        assert!(
            !tmp.path().join("automate.redb").exists(),
            "{what}: the store was opened"
        );
    }
}
