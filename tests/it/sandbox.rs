//! Simulation without side effects (issue 22 §1): `automate instantiate`
//! runs in a sandbox by default (the redb file's bytes and every count
//! unchanged, the diff naming what would have been written), `--commit`
//! writes, `--no-methods` lists the methods it did not run, a state
//! machine's retry shows in the diff and is not scheduled, and outbound
//! actions (`send_email`, `evm.http`, notifications) are recorded, not
//! performed. On the real binary and a real redb file.

use super::common::process::{automate_on, stdout_ok, SEND_USER_RUN_VM};
use super::common::shipped_datastore;
use automate_vmdb::sandbox::Sandbox;
use automate_vmdb::{base_classes, ObjectStore, Schedule};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn automate(ds: &Path, db: &Path) -> Command {
    automate_on(ds, db)
}

/// Every base class's count in the redb file at `db` (opened read-only).
fn counts(db: &Path) -> Vec<(&'static str, usize)> {
    let store = automate_redb::RedbStore::open_read_only(db).expect("open read-only");
    base_classes()
        .iter()
        .map(|c| (*c, store.list(c).expect("list").len()))
        .collect()
}

fn count_of(db: &Path, class: &str) -> usize {
    counts(db)
        .iter()
        .find(|(c, _)| *c == class)
        .map_or(0, |(_, n)| *n)
}

/// A store in `dir` holding the `USER_RUN_VM` event of `event send` (its
/// handling done), and the URI the handler instantiates for it, as the
/// seed's `Instantiating [/System/Process/Event?...]` line has it.
fn user_run_vm(dir: &Path) -> (PathBuf, String) {
    let db = dir.join("automate.redb");
    let o = automate(&shipped_datastore(), &db)
        .args(SEND_USER_RUN_VM)
        .output()
        .expect("event send");
    stdout_ok(&o, "event send");
    let store = automate_redb::RedbStore::open_read_only(&db).expect("open");
    let ems = store
        .find_by(
            "EmsEvent",
            "event_type",
            &automate_engine::AttrValue::str("USER_RUN_VM"),
        )
        .expect("find_by");
    let event = ems.first().expect("the USER_RUN_VM EmsEvent").id;
    let vm = match store.attribute(&ems[0], "vm_or_template_id").expect("attr") {
        Some(automate_engine::AttrValue::Int(id)) => id,
        other => panic!("the event's VM: {other:?}"),
    };
    drop(store);
    // The handler's URI (`MiqAeEvent.raise_ems_event`'s attributes).
    let uri = format!(
        "/System/Process/Event?event_id={event}&event_stream_id={event}&event_type=USER_RUN_VM\
         &VmOrTemplate%3A%3Avm={vm}&vm_id={vm}&EventStream%3A%3Aevent_stream={event}\
         &object_name=Event&vmdb_object_type=event_stream"
    );
    (db, uri)
}

fn json_of(out: &std::process::Output, what: &str) -> Value {
    let text = stdout_ok(out, what);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

#[test]
fn a_sandboxed_instantiate_leaves_the_file_and_every_count_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, uri) = user_run_vm(tmp.path());
    let bytes = std::fs::read(&db).unwrap();
    let before = counts(&db);
    // The default is the sandbox; `--sandbox` says so explicitly.
    for flags in [&[][..], &["--sandbox"][..]] {
        let out = automate(&shipped_datastore(), &db)
            .arg("instantiate")
            .args(flags)
            .arg(&uri)
            .arg("--json")
            .output()
            .unwrap();
        let doc = json_of(&out, "instantiate --json");
        assert_eq!(doc["mode"], "sandbox", "{doc}");
        assert_eq!(doc["error"], Value::Null, "{doc}");
        let created = doc["diff"]["created"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            created.iter().any(|c| c["class"] == "MiqEvent"),
            "the diff names the MiqEvent it would have written: {}",
            doc["diff"]
        );
        assert!(
            created.iter().all(|c| c["id"].as_i64().is_some_and(|id| id
                / automate_vmdb::REGION_BASE
                == automate_vmdb::sandbox::SANDBOX_REGION)),
            "sandbox ids: {created:?}"
        );
        assert_eq!(
            std::fs::read(&db).unwrap(),
            bytes,
            "the file's bytes changed"
        );
        assert_eq!(counts(&db), before);
    }
    // The text form ends with the diff.
    let out = automate(&shipped_datastore(), &db)
        .args(["instantiate", &uri])
        .output()
        .unwrap();
    let text = stdout_ok(&out, "instantiate");
    assert!(text.contains("Sandbox: nothing was written;"), "{text}");
    assert!(text.contains("  would create MiqEvent ["), "{text}");
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
}

#[test]
fn commit_writes_what_the_sandbox_only_shows() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, uri) = user_run_vm(tmp.path());
    let events = count_of(&db, "EventStream");
    let out = automate(&shipped_datastore(), &db)
        .args(["instantiate", "--commit", &uri, "--json"])
        .output()
        .unwrap();
    let doc = json_of(&out, "instantiate --commit");
    assert_eq!(doc["mode"], "commit", "{doc}");
    assert_eq!(doc["diff"], Value::Null, "{doc}");
    assert!(
        count_of(&db, "EventStream") > events,
        "--commit stores the MiqEvent"
    );
    let both = automate(&shipped_datastore(), &db)
        .args(["instantiate", "--commit", "--sandbox", &uri])
        .output()
        .unwrap();
    assert!(!both.status.success(), "--commit and --sandbox conflict");
}

#[test]
fn no_methods_lists_the_methods_it_did_not_run_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, uri) = user_run_vm(tmp.path());
    let bytes = std::fs::read(&db).unwrap();
    let out = automate(&shipped_datastore(), &db)
        .args(["instantiate", "--no-methods", &uri, "--json"])
        .output()
        .unwrap();
    let doc = json_of(&out, "instantiate --no-methods --json");
    let skipped: Vec<&str> = doc["skipped_methods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!skipped.is_empty(), "{doc}");
    let trace: Vec<&str> = doc["trace"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    for m in &skipped {
        assert!(
            trace.iter().any(|l| l.starts_with(&format!(
                "Workspace Instantiation is READONLY -- skipping method [{m}] with inputs ["
            ))),
            "{m}: {trace:?}"
        );
    }
    assert!(
        !trace.iter().any(|l| l.starts_with("Invoking [")),
        "no method ran: {trace:?}"
    );
    assert_eq!(doc["diff"]["created"], Value::Array(Vec::new()), "{doc}");
    // The text lists them at the end.
    let out = automate(&shipped_datastore(), &db)
        .args(["instantiate", "--no-methods", &uri])
        .output()
        .unwrap();
    let text = stdout_ok(&out, "instantiate --no-methods");
    assert!(
        text.contains(&format!(
            "Methods not run (--no-methods): {}\n",
            skipped.len()
        )),
        "{text}"
    );
    assert!(text.contains(&format!("\n  {}\n", skipped[0])), "{text}");
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
}

#[test]
fn a_retry_shows_in_the_diff_and_is_not_scheduled() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("automate.redb");
    let ds = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/retries"));
    // A store file to compare (one committed run, its retry completed by
    // nobody: one scheduled item).
    let first = automate(&ds, &db)
        .args(["instantiate", "--commit", "/SM/Counter/default?machine=1"])
        .output()
        .unwrap();
    stdout_ok(&first, "instantiate --commit");
    let scheduled = automate_redb::RedbStore::open_read_only(&db)
        .unwrap()
        .schedule()
        .len()
        .unwrap();
    let bytes = std::fs::read(&db).unwrap();
    let out = automate(&ds, &db)
        .args(["instantiate", "/SM/Counter/default?machine=7", "--json"])
        .output()
        .unwrap();
    let doc = json_of(&out, "instantiate --json");
    let would = doc["diff"]["scheduled"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(would.len(), 1, "{}", doc["diff"]);
    assert!(
        would[0]["payload"].to_string().contains("machine=7"),
        "{would:?}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
    assert_eq!(
        automate_redb::RedbStore::open_read_only(&db)
            .unwrap()
            .schedule()
            .len()
            .unwrap(),
        scheduled
    );
}

const OUTBOUND: &[(&str, &str)] = &[(
    "all",
    r#"
let vm = evm.vmdb("vm", evm.root["vm_id"]);
evm.root["mailed"] = evm.execute("send_email", "ops@example.com", "me@example.com", "VM stopped", "It stopped.");
let r = evm.http.post(evm.root["url"], #{name: "web01"});
evm.root["status"] = r.status;
let n = evm.create_notification(#{level: "warning", message: "disk low", subject: vm});
evm.root["notification"] = n.id;
vm.name = "renamed";
"#,
)];

/// Runs the `all` method (mail, HTTP POST, notification, a VM renamed) in
/// a sandbox over `base` (its scheduled work `schedule`), with a relay
/// nobody listens on and an HTTP server that counts requests; checks that
/// nothing was sent or stored and the diff records it all.
fn outbound_in_a_sandbox(base: Arc<dyn ObjectStore>, schedule: Arc<dyn Schedule>) {
    use automate_methods::outbound::{HttpSettings, Outbound, SmtpSettings};
    let dir = tempfile::tempdir().unwrap();
    let root = super::outbound::datastore(dir.path(), OUTBOUND);
    let (port, seen) = super::outbound::http_server(|_, conn| {
        super::outbound::json_answer(conn, "201 Created", "{}")
    });
    // A relay nobody listens on: a send would fail the method.
    let smtp_port = super::common::process::free_port();
    let vm = base
        .create(
            "Vm",
            super::common::attrs(&[("name", automate_engine::AttrValue::str("web01"))]),
        )
        .unwrap();
    let notifications = base.list("Notification").unwrap().len();
    let sandbox = Arc::new(Sandbox::new(base.clone(), Some(schedule)));
    let outbound = Outbound {
        smtp: Some(SmtpSettings::new(
            "127.0.0.1",
            smtp_port,
            "cfme@example.com",
        )),
        http: HttpSettings {
            allow: vec![format!("127.0.0.1:{port}")],
            ..HttpSettings::default()
        },
        ..Outbound::default()
    };
    let engine =
        super::outbound::engine_with(&root, base.clone(), outbound).with_sandbox(sandbox.clone());
    let (ws, err) = engine.run_method(
        "/Test/Out/all",
        &[
            ("vm_id".to_string(), vm.id.to_string()),
            (
                "url".to_string(),
                format!("http://127.0.0.1:{port}/api/vms"),
            ),
        ],
    );
    assert!(err.is_none(), "{err:?}: {:?}", ws.trace_lines());
    assert!(seen.lock().unwrap().is_empty(), "no HTTP request was made");
    let diff = sandbox.diff().unwrap();
    let calls: Vec<&str> = diff.outbound.iter().map(|o| o.call.as_str()).collect();
    assert_eq!(calls, ["send_email", "evm.http"], "{diff:?}");
    assert!(diff.outbound[1]
        .detail
        .starts_with("POST http://127.0.0.1:"));
    assert!(
        diff.created.iter().any(|c| c.class == "Notification"),
        "{diff:?}"
    );
    assert_eq!(diff.updated.len(), 1, "{diff:?}");
    assert_eq!(diff.updated[0].changes[0].attr, "name");
    // Nothing reached the store.
    assert_eq!(base.list("Notification").unwrap().len(), notifications);
    assert_eq!(
        base.attribute(&vm, "name").unwrap(),
        Some(automate_engine::AttrValue::str("web01"))
    );
}

#[test]
fn outbound_actions_are_recorded_not_performed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(automate_redb::RedbStore::open(dir.path().join("automate.redb")).unwrap());
    let schedule: Arc<dyn Schedule> = Arc::new(store.schedule());
    outbound_in_a_sandbox(store, schedule);
}

/// Cluster mode: the same sandbox over the PostgreSQL store (skipped
/// without a PostgreSQL unless `AUTOMATE_TEST_CLUSTER` requires it).
#[test]
fn a_sandbox_over_postgresql_writes_nothing_there() {
    use automate_vmdb::served::ServedStore;
    let Some(db) = automate_postgres::testing::TestDb::new("sandbox_outbound") else {
        return;
    };
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    let schedule = store.scheduled_work();
    let queued = schedule.len().unwrap();
    outbound_in_a_sandbox(store.clone(), schedule.clone());
    // One object (the VM the test created), nothing else.
    assert_eq!(store.count().unwrap(), 1);
    assert_eq!(schedule.len().unwrap(), queued);
}

#[test]
fn through_a_running_service_the_sandbox_writes_nothing_and_commit_writes() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let (db, uri) = user_run_vm(tmp.path());
    let ds = shipped_datastore();
    let mut child = automate(&ds, &db)
        .current_dir(tmp.path())
        .args(["api", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let adv = tmp.path().join("automate.redb.server");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !adv.exists() {
        assert!(Instant::now() < deadline, "automate api advertised nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = |args: &[&str]| {
        automate(&ds, &db)
            .current_dir(tmp.path())
            .args(args)
            .output()
            .unwrap()
    };
    let events = |what: &str| -> usize {
        json_of(&run(&["events", "list", "--json"]), what)
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = events("events list");
    let sandboxed = run(&["instantiate", &uri, "--json"]);
    let after_sandbox = events("events list after the sandbox");
    let no_methods = run(&["instantiate", "--no-methods", &uri]);
    let committed = run(&["instantiate", "--commit", &uri, "--json"]);
    let after_commit = events("events list after --commit");
    assert!(super::common::terminate(&mut child).is_some_and(|s| s.success()));

    let doc = json_of(&sandboxed, "instantiate --json through the API");
    assert_eq!(doc["mode"], "sandbox", "{doc}");
    assert!(
        doc["diff"]["created"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["class"] == "MiqEvent")),
        "{}",
        doc["diff"]
    );
    assert_eq!(after_sandbox, before, "the sandbox wrote an event");
    let text = stdout_ok(&no_methods, "instantiate --no-methods through the API");
    assert!(text.contains("Methods not run (--no-methods): "), "{text}");
    assert!(
        text.contains("Workspace Instantiation is READONLY -- skipping method ["),
        "{text}"
    );
    let doc = json_of(&committed, "instantiate --commit through the API");
    assert_eq!(doc["mode"], "commit", "{doc}");
    assert!(after_commit > before, "--commit stored the MiqEvent");
}
