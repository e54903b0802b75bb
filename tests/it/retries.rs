//! Durable state-machine retries: a retry is written to the store's
//! scheduled-work table and resumed by `automate retries run-due`, with its
//! state vars, even when the process running it is killed (SIGKILL).
//!
//! The machine under test (`tests/data/retries`) counts its passes in a
//! state var, asks for a retry (0.05 s) until the third pass, then logs
//! `machine <id> finished with n=3`.

use crate::common::process::SEND_USER_RUN_VM;
use automate_engine::AttrValue;
use automate_redb::RedbStore;
use automate_vmdb::ObjectStore;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn datastore_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/retries"))
}

fn automate(db: &Path) -> Command {
    crate::common::process::automate_on(&datastore_dir(), db)
}

/// Creates one VM per machine and schedules each machine's first pass
/// through the library; returns the VMs' ids (the machine ids).
fn start_machines(db: &Path, n: usize) -> Vec<i64> {
    crate::common::process::start_machines(db, &datastore_dir(), n, "vm-", "Test")
}

#[test]
fn retry_resumes_in_a_later_process_with_its_state_vars() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("automate.redb");
    let first = automate(&db)
        .arg("instantiate")
        .arg("--commit")
        .arg("/SM/Counter/default?machine=7")
        .output()
        .expect("run automate instantiate");
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{text}");
    assert!(
        text.contains("Processed State=[count] with Result=[retry]"),
        "{text}"
    );
    assert!(
        text.contains("to Automate for delivery in [0.05] seconds"),
        "{text}"
    );

    let list = automate(&db)
        .args(["retries", "list"])
        .output()
        .expect("list");
    let listed = String::from_utf8_lossy(&list.stdout);
    // The header and one retry.
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.starts_with("ID "), "{listed}");
    assert!(listed.contains("/SM/Counter/default?machine=7"), "{listed}");

    let run = automate(&db)
        .args(["retries", "run-due", "--wait"])
        .output()
        .expect("run-due");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{text}");
    assert!(text.contains("machine 7 finished with n=3"), "{text}");
    assert!(text.contains("0 still scheduled"), "{text}");
}

#[test]
fn retries_survive_sigkill_and_each_machine_finishes_with_its_state() {
    const MACHINES: usize = 30;
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("automate.redb");
    let vms = start_machines(&db, MACHINES);

    // Kill the worker at different points, five times.
    let mut output = String::new();
    for kill_after_ms in [40u64, 90, 150, 60, 120] {
        let log = tmp.path().join(format!("run-{kill_after_ms}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut child = automate(&db)
            .args(["retries", "run-due", "--wait"])
            .stdout(Stdio::from(file))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn run-due");
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        output.push_str(&std::fs::read_to_string(&log).unwrap_or_default());
    }
    // Then let one run finish whatever is left.
    let started = Instant::now();
    let last = automate(&db)
        .args(["retries", "run-due", "--wait"])
        .output()
        .expect("final run-due");
    output.push_str(&String::from_utf8_lossy(&last.stdout));
    assert!(last.status.success(), "final run failed: {output}");
    assert!(started.elapsed() < Duration::from_secs(120));

    // The store is the witness (a killed process may die before printing):
    // every machine's last pass wrote the pass count its state vars carried.
    let store = RedbStore::open(&db).expect("reopen");
    for &id in &vms {
        let vm = store.find("VmOrTemplate", id).unwrap().expect("vm");
        assert_eq!(
            store.attribute(&vm, "finished_n").unwrap(),
            Some(AttrValue::Int(3)),
            "machine {id} did not finish with its state vars:\n{output}"
        );
    }
    assert!(
        !output.contains("finished with n=4") && !output.contains("finished with n=2"),
        "a machine lost or repeated a pass in its state vars:\n{output}"
    );
    assert_eq!(store.schedule().len().expect("len"), 0, "retries left over");
}

/// A provider event whose handling runs a state machine that asks for a
/// retry (`tests/data/event_retry`: `/System/Process/Event` → a machine
/// that retries twice): the handler delivers through `MiqAeEngine.deliver`,
/// so the retry is scheduled durably and `retries run-due` finishes it
/// with its state vars (witness: `finished_n` on the event's VM).
/// `automate ARGS` in `dir` on the `tests/data/event_retry` datastore and
/// `dir/automate.redb`; its stdout (the command must succeed).
fn run_event_retry(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_automate"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .arg("--datastore")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/event_retry"
        ))
        .arg("--db")
        .arg(dir.join("automate.redb"))
        .args(args)
        .output()
        .expect("run automate");
    crate::common::process::stdout_ok(&out, &format!("{args:?}"))
}

/// The event_retry machine of VM `web` finished on its third pass.
fn assert_web_machine_finished(db: &Path) -> RedbStore {
    let store = RedbStore::open(db).expect("open store");
    let vm = store
        .find_by("VmOrTemplate", "name", &AttrValue::Str("web".into()))
        .unwrap()
        .into_iter()
        .next()
        .expect("the VM was created on first sight");
    assert_eq!(
        store.attribute(&vm, "finished_n").unwrap(),
        Some(AttrValue::Int(3)),
        "the machine finished on its third pass, with its state var"
    );
    store
}

#[test]
fn event_handling_schedules_the_retries_its_machine_asks_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| run_event_retry(dir.path(), args);
    let sent = run(&[&SEND_USER_RUN_VM[..], &["--vm-name", "web"]].concat());
    assert!(
        sent.contains("MIQ(MiqAeEngine.deliver) Requeuing"),
        "{sent}"
    );
    let listed = run(&["retries", "list"]);
    assert_eq!(
        listed.lines().count(),
        2,
        "the header and one scheduled retry:\n{listed}"
    );
    assert!(listed.contains("/System/Process/Event?"), "{listed}");
    let due = run(&["retries", "run-due", "--wait"]);
    assert!(due.contains("0 still scheduled"), "{due}");
    assert_web_machine_finished(&dir.path().join("automate.redb"));
}

/// `automate run` schedules the retry a delivery asks for in the worker
/// batch that stores and acknowledges the event (one transaction): after
/// the run the retry is listed once, with the event, and `run-due`
/// finishes the machine.
#[test]
fn pipeline_writes_the_retry_with_the_events_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("events.jsonl"),
        "{\"event_type\": \"USER_RUN_VM\", \"timestamp\": \"2026-11-25T00:00:00Z\", \
         \"chain_id\": \"1\", \"vm_ems_ref\": \"vm-1\", \"vm_name\": \"web\"}\n",
    )
    .expect("events");
    std::fs::write(
        dir.path().join("automate.yaml"),
        "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    \
         userid: admin@internal\n    catcher: {kind: jsonl, path: events.jsonl}\nworkers: 1\n",
    )
    .expect("config");
    let run = |args: &[&str]| run_event_retry(dir.path(), args);
    let stats = run(&["run", "--until-idle", "--json", "--config", "automate.yaml"]);
    assert!(stats.contains("\"handled\":1"), "{stats}");
    let evm = std::fs::read_to_string(dir.path().join("log/evm.log")).expect("evm.log");
    assert!(evm.contains("MIQ(MiqAeEngine.deliver) Requeuing"), "{evm}");
    // The retry may have run already (the pipeline's retry runner); what
    // is left is at most the one the last pass asked for.
    let due = run(&["retries", "run-due", "--wait"]);
    assert!(due.contains("0 still scheduled"), "{due}");
    let store = assert_web_machine_finished(&dir.path().join("automate.redb"));
    assert_eq!(
        store.list("EmsEvent").expect("list").len(),
        1,
        "one event stored"
    );
}

/// A handler that defers retries writes nothing for them: the retry comes
/// back in the outcome, and exists only once the caller's unit of work
/// commits it (so an event re-delivered after a crash before that commit
/// does not leave a second retry behind).
#[test]
fn deferred_retries_exist_only_with_the_callers_commit() {
    use automate_events::handler::{EvmLog, Handler};
    use automate_events::{Provider, ProviderEvent};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RedbStore::open(dir.path().join("automate.redb")).expect("open"));
    let schedule = store.schedule();
    let (engine, _runner) = crate::common::control_engine(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/event_retry"
        )),
        store.clone(),
    );
    let handler = Handler::new(engine, EvmLog::discarding())
        .expect("handler")
        .with_schedule(Arc::new(schedule.clone()))
        .deferring_retries();
    let provider = Provider {
        name: "rhevm01".into(),
        kind: "RHEVM".into(),
        hostname: "rhevm01".into(),
        userid: "admin@internal".into(),
    };
    let event: ProviderEvent = serde_json::from_str(
        "{\"event_type\": \"USER_RUN_VM\", \"timestamp\": \"2026-11-25T00:00:00Z\", \
         \"vm_ems_ref\": \"vm-1\", \"vm_name\": \"web\"}",
    )
    .expect("event");
    let unit = store.begin_unit();
    let engine = handler.engine().clone().with_store(unit.clone());
    let outcome = handler
        .handle_in(&engine, &provider, &event)
        .expect("handled");
    let retry = outcome.retry.expect("the machine asks for a retry");
    assert_eq!(schedule.len().expect("len"), 0, "nothing scheduled yet");
    unit.commit(|b| b.schedule(&retry.item, retry.run_at).map(|_| ()))
        .expect("commit");
    drop((engine, unit));
    assert_eq!(schedule.len().expect("len"), 1, "scheduled with the batch");
    assert_eq!(store.list("EmsEvent").expect("list").len(), 1);
}
