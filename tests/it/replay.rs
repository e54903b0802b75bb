//! `automate replay` (issue 22 §2): 1,000 simulated events recorded on a
//! redb store by the pipeline's handler (units of work, recording on),
//! then replayed by the binary against the same datastore (0 changed) and
//! against a copy where one instance's relationship and one Rhai method
//! changed (exactly the events those changes alter, the diff naming the
//! relationship and the attribute). The store's bytes never change.

use automate_engine::Engine;
use automate_events::trace::TraceConfig;
use automate_events::{EvmLog, Handler, Provider, ProviderEvent};
use automate_vmdb::{HandOver, UnitOfWork};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use crate::common::{copy_dir, manifest};

const EVENTS: usize = 1000;

/// The shipped datastore, plus a Rhai method `note` (instance
/// `/System/Request/Note`) that sets the VM's attribute `note`, followed
/// from OpenStack's `compute.instance.power_off.end`.
fn datastore(dir: &Path) {
    copy_dir(&manifest("datastore"), dir);
    let class = dir.join("ManageIQ/System/Request.class");
    std::fs::write(
        class.join("note.yaml"),
        "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    display_name:\n    name: Note\n    inherits:\n    description: Notes the VM\n  fields:\n  - meth1:\n      value: note\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__methods__/note.yaml"),
        "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: note\n    display_name:\n    description: Notes the VM\n    scope: instance\n    language: rhai\n    location: inline\n  inputs: []\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__methods__/note.rhai"),
        "let vm = evm.root[\"vm\"];\nif type_of(vm) != \"()\" {\n    vm[\"note\"] = \"powered off\";\n}\n",
    )
    .unwrap();
    let inst = dir
        .join("ManageIQ/System/Event/EmsEvent/OPENSTACK.class/compute.instance.power_off.end.yaml");
    let text = std::fs::read_to_string(&inst).unwrap();
    std::fs::write(
        &inst,
        format!("{}  - rel6:\n      value: \"/System/Request/Note\"\n", text),
    )
    .unwrap();
}

fn providers() -> [Provider; 2] {
    [
        Provider {
            name: "rhevm01".into(),
            kind: "RHEVM".into(),
            hostname: "rhevm01".into(),
            userid: "admin".into(),
        },
        Provider {
            name: "rhosp".into(),
            kind: "OPENSTACK".into(),
            hostname: "rhosp".into(),
            userid: "admin".into(),
        },
    ]
}

/// Event `i`: (provider index, event). Types cycle USER_RUN_VM,
/// USER_STOP_VM (RHEV), compute.instance.power_off.end,
/// compute.instance.power_on.end (OpenStack), over 10 VMs each.
fn event(i: usize) -> (usize, ProviderEvent) {
    let (p, t) = match i % 4 {
        0 => (0, "USER_RUN_VM"),
        1 => (0, "USER_STOP_VM"),
        2 => (1, "compute.instance.power_off.end"),
        _ => (1, "compute.instance.power_on.end"),
    };
    let vm = format!("vm-{p}-{}", i % 10);
    (
        p,
        ProviderEvent {
            event_type: t.into(),
            timestamp: format!(
                "2026-12-01T{:02}:{:02}:{:02}Z",
                i / 3600,
                (i / 60) % 60,
                i % 60
            ),
            chain_id: Some(i.to_string()),
            vm_ems_ref: Some(vm.clone()),
            vm_name: Some(format!("{vm}.example.com")),
            host_ems_ref: None,
            host_name: None,
            full_data: json!({"n": i}),
        },
    )
}

/// Records `EVENTS` events on a redb store at `db` as the pipeline does
/// (units of 100, retries deferred, recording on).
fn record(root: &Path, db: &Path) -> f64 {
    record_n(root, db, EVENTS)
}

/// [`record`] of `n` events; the handler's events/s.
fn record_n(root: &Path, db: &Path, n: usize) -> f64 {
    let store = Arc::new(automate_redb::RedbStore::open(db).unwrap());
    let (group, writer) = automate_redb::GroupCommit::start(store.clone()).unwrap();
    let units = automate_redb::GroupUnits::new(store.clone(), group, writer);
    let (mut engine, _runner) = crate::common::control_engine(root, store.clone());
    engine.options.emit_tracing = false;
    let handler = Handler::new(engine, EvmLog::discarding())
        .unwrap()
        .deferring_retries()
        .with_trace(TraceConfig {
            enabled: true,
            ..TraceConfig::default()
        });
    let provs = providers();
    let started = std::time::Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let unit = units.begin_unit();
        let engine: Engine = handler.engine().clone().with_store(unit.objects());
        for &i in chunk {
            let (p, ev) = event(i);
            let out = handler.handle_in(&engine, &provs[p], &ev).unwrap();
            assert!(out.error.is_none(), "event {i}: {:?}", out.error);
            assert!(out.record.is_some());
        }
        drop(engine);
        unit.hand_over(HandOver::default()).wait().unwrap();
        unit.landed();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    units.close();
    rate
}

fn automate(ds: &Path, db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(ds)
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_SERVER")
        .env_remove("AUTOMATE_API_TOKEN")
        .output()
        .expect("automate runs")
}

fn replay_json(ds: &Path, db: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["replay", "--json"];
    args.extend_from_slice(extra);
    let out = automate(ds, db, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn replay_finds_exactly_the_events_a_datastore_change_alters() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    datastore(&a);
    let db = tmp.path().join("events.redb");
    let live_rate = record(&a, &db);
    let bytes = std::fs::read(&db).unwrap();

    // Unchanged datastore: nothing changed, nothing failed.
    let started = std::time::Instant::now();
    let same = replay_json(&a, &db, &[]);
    let replay_rate = EVENTS as f64 / started.elapsed().as_secs_f64();
    eprintln!("live (debug build) {live_rate:.0} events/s; replay (debug binary, incl. start-up) {replay_rate:.0} events/s");
    assert_eq!(same["events"], EVENTS, "{same:#}");
    assert_eq!(same["changed"], 0, "{same:#}");
    assert_eq!(same["errors"], 0, "{same:#}");
    assert_eq!(same["not_recorded"], 0, "{same:#}");

    // A copy where USER_STOP_VM raises another policy event and `note`
    // sets another attribute.
    let b = tmp.path().join("b");
    copy_dir(&a, &b);
    let stop = b.join("ManageIQ/System/Event/EmsEvent/RHEVM.class/user_stop_vm.yaml");
    let text = std::fs::read_to_string(&stop).unwrap();
    assert!(text.contains("policy_event=vm_poweroff"));
    std::fs::write(
        &stop,
        text.replace("policy_event=vm_poweroff", "policy_event=vm_suspend"),
    )
    .unwrap();
    let note = b.join("ManageIQ/System/Request.class/__methods__/note.rhai");
    let text = std::fs::read_to_string(&note).unwrap();
    std::fs::write(&note, text.replace("vm[\"note\"]", "vm[\"remark\"]")).unwrap();

    let changed = replay_json(&b, &db, &[]);
    assert_eq!(changed["events"], EVENTS);
    assert_eq!(changed["errors"], 0, "{changed:#}");
    let results = changed["results"].as_array().unwrap();
    let types: BTreeSet<&str> = results
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["USER_STOP_VM", "compute.instance.power_off.end"]),
    );
    assert_eq!(changed["changed"], EVENTS / 2, "{:#}", results[0]);
    // One worker or several: the same results, in event order.
    let ids = |v: &Value| -> Vec<i64> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let one = replay_json(&b, &db, &["--workers", "1"]);
    let three = replay_json(&b, &db, &["--workers", "3"]);
    assert_eq!(ids(&one), ids(&changed));
    assert_eq!(ids(&three), ids(&changed));
    assert!(ids(&changed).windows(2).all(|w| w[0] < w[1]));
    assert_eq!(three["workers"], 3);
    assert_eq!(one["results"], three["results"]);
    let stop_vm = results
        .iter()
        .find(|r| r["event_type"] == "USER_STOP_VM")
        .unwrap();
    let rel = &stop_vm["diff"]["relationships"];
    assert!(
        rel["removed"][0]
            .as_str()
            .unwrap()
            .contains("policy_event=vm_poweroff"),
        "{rel:#}"
    );
    assert!(
        rel["added"][0]
            .as_str()
            .unwrap()
            .contains("policy_event=vm_suspend"),
        "{rel:#}"
    );
    let off = results
        .iter()
        .find(|r| r["event_type"] == "compute.instance.power_off.end")
        .unwrap();
    let attrs = &off["diff"]["attributes"];
    assert!(
        attrs["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().ends_with(".note")),
        "{attrs:#}"
    );
    assert!(
        attrs["added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().ends_with(".remark")),
        "{attrs:#}"
    );

    // The readable form names them too, then the summary; filters narrow.
    let out = automate(&b, &db, &["replay", "--type", "USER_STOP_VM"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("relationships followed:"), "{text}");
    assert!(text.contains("policy_event=vm_suspend"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("250 events, 250 changed, 0 errors"),
        "{text}"
    );
    let out = automate(&b, &db, &["replay", "--vm", "vm-1-2.example.com"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("attributes set:"), "{text}");
    assert!(text.contains(".remark"), "{text}");
    assert!(
        text.trim_end().ends_with("50 events, 50 changed, 0 errors"),
        "{text}"
    );

    // --save-as-test writes cases `automate test` runs: against the new
    // datastore they fail (they expect what was recorded), against the
    // old one they pass.
    let saved = tmp.path().join("saved");
    let out = automate(
        &b,
        &db,
        &[
            "replay",
            "--type",
            "USER_STOP_VM",
            "--until",
            "2026-12-01T00:00:10Z",
            "--save-as-test",
            saved.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let file = saved.join("replay_tests.yaml");
    let out = automate(&a, &db, &["test", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.trim_end().ends_with("3 passed, 0 failed"), "{text}");
    let out = automate(&b, &db, &["test", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("events_raised: expected [vm_poweroff], got [vm_suspend]"),
        "{text}"
    );

    // Never written.
    assert!(std::fs::read(&db).unwrap() == bytes, "the store changed");

    // While a service holds the store, replay goes through it: it fetches
    // a consistent copy (POST /api/db/backup) and replays that.
    let port = crate::common::process::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(&b)
        .arg("--db")
        .arg(&db)
        .args(["api", "--listen", &format!("127.0.0.1:{port}")])
        .env("AUTOMATE_API_TOKEN", "replay-token")
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_SERVER")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start automate api");
    let mut child = crate::ui::Killed(child);
    crate::common::process::wait_listening(
        &mut child.0,
        port,
        std::time::Duration::from_secs(60),
        || "automate api did not start".into(),
    );
    let out = automate(&a, &db, &["replay", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the store is held by the service at http://127.0.0.1:"),
        "{err}"
    );
    let through: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(through["events"], EVENTS, "{through:#}");
    assert_eq!(through["changed"], 0, "{through:#}");
    assert_eq!(through["errors"], 0, "{through:#}");
    drop(child);
}

/// The replay benchmark (docs/performance.md, session 14): events/s of
/// the live handler (units of 100 on redb, recording on) against replay
/// of the same events in sandboxes (read-only store), in-process, 3 runs
/// each, medians printed. `REPLAY_BENCH_EVENTS` (default 2,000). Run:
/// `cargo test --release --test it replay::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_replay_against_the_live_handler() {
    let n: usize = std::env::var("REPLAY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    datastore(&a);
    let mut live = Vec::new();
    let mut replay = Vec::new();
    for run in 0..3 {
        let db = tmp.path().join(format!("bench-{run}.redb"));
        live.push(record_n(&a, &db, n));
        let store: Arc<dyn automate_vmdb::ObjectStore> =
            Arc::new(automate_redb::RedbStore::open_read_only(&db).unwrap());
        let (mut engine, _runner) = crate::common::control_engine(&a, store.clone());
        engine.options.emit_tracing = false;
        let replayer = automate_events::replay::Replayer::new(engine).unwrap();
        let ids: Vec<i64> = store
            .list("EmsEvent")
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        let started = std::time::Instant::now();
        let mut changed = 0;
        let mut replayed = 0;
        for id in ids {
            let Some(obj) = store.load("EmsEvent", id).unwrap() else {
                continue;
            };
            if obj.class != "EmsEvent" {
                continue;
            }
            let rec = automate_events::replay::Recorded::of(id, &obj).unwrap();
            let r = replayer.replay(&rec).unwrap();
            replayed += 1;
            if r.changed_from(rec.record.as_ref().unwrap()) {
                changed += 1;
            }
        }
        replay.push(replayed as f64 / started.elapsed().as_secs_f64());
        assert_eq!((replayed, changed), (n, 0));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[1]
    };
    eprintln!(
        "{n} events: live handler {:.0} events/s (runs {live:.0?}), replay {:.0} events/s (runs {replay:.0?})",
        median(&mut live.clone()),
        median(&mut replay.clone())
    );
}
