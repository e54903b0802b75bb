//! `automate run`: the whole pipeline (jsonl catcher → durable queue →
//! workers → handler and Automate) on the shipped datastore. Every event
//! is stored once and delivered, with the evm.log lines; a second run on
//! the same file stores nothing new; a run killed with SIGKILL and started
//! again loses and duplicates nothing.

use crate::common::process::SEND_USER_RUN_VM;
use automate_events::catchers::simulate::{SimulateConfig, Simulator};
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn automate(dir: &Path) -> Command {
    crate::common::automate_in(dir)
}

/// `n` simulated RHEV events in `dir/events.jsonl`; their distinct VM refs.
fn write_events(dir: &Path, n: u64) -> HashSet<String> {
    let cfg = SimulateConfig {
        seed: 11,
        rate: 10.0,
        count: Some(n),
        vms: 40,
        start: None,
    };
    let mut f = std::fs::File::create(dir.join("events.jsonl")).unwrap();
    let mut vms = HashSet::new();
    for ev in Simulator::new(&cfg, "RHEVM") {
        vms.extend(ev.vm_ems_ref.clone());
        writeln!(f, "{}", serde_json::to_string(&ev).unwrap()).unwrap();
    }
    vms
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("automate.yaml");
    std::fs::write(
        &path,
        "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {kind: jsonl, path: events.jsonl}\nworkers: 3\nqueue: {batch_max: 64, batch_wait_ms: 2}\n",
    )
    .unwrap();
    path
}

fn run_until_idle(dir: &Path, config: &Path) -> Value {
    let out = automate(dir)
        .args(["run", "--until-idle", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).expect("stats as JSON")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The stored EmsEvents, from `automate events list --json`.
fn ems_events(dir: &Path) -> Vec<Value> {
    let out = automate(dir)
        .args(["events", "list", "--json"])
        .output()
        .unwrap();
    assert_ok(&out);
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter()
        .filter(|e| e["event_namespace"] == "EmsEvent")
        .collect()
}

/// Checks each event is stored exactly once, with one VM per VM ref.
fn assert_stored_once(dir: &Path, n: usize, vms: &HashSet<String>) {
    let events = ems_events(dir);
    let keys: HashSet<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap_or("").to_string(),
                e["timestamp"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(keys.len(), n, "distinct events stored");
    assert_eq!(events.len(), n, "EmsEvents stored");
    let vm_ids: HashSet<i64> = events
        .iter()
        .filter_map(|e| e["vm_or_template_id"].as_i64())
        .collect();
    assert_eq!(vm_ids.len(), vms.len(), "one VmOrTemplate per VM ref");
}

#[test]
fn run_stores_and_delivers_each_event_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let vms = write_events(dir, 200);
    let config = write_config(dir);
    let stats = run_until_idle(dir, &config);
    assert_eq!(stats["caught"], 200, "{stats}");
    assert_eq!(stats["enqueued"], 200, "{stats}");
    assert_eq!(stats["handled"], 200, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert_eq!(stats["queued"], 0, "{stats}");
    assert_stored_once(dir, 200, &vms);

    let log = std::fs::read_to_string(dir.join("log/evm.log")).unwrap();
    let count = |pred: &dyn Fn(&str) -> bool| log.lines().filter(|l| pred(l)).count();
    assert_eq!(
        count(&|l| l
            .contains("MIQ(EventCatcherRedhat) EMS [rhevm01] as [admin@internal] Caught event [")),
        200
    );
    assert_eq!(
        count(&|l| l.contains("Processing EMS event [") && l.ends_with("]...")),
        200
    );
    assert_eq!(
        count(&|l| l.contains("Processing EMS event [") && l.ends_with("...Complete")),
        200
    );
    assert_eq!(
        count(
            &|l| l.contains("MIQ(MiqAeEngine.deliver) Delivering {:event_id=>")
                && l.contains("for object [EmsEvent.")
        ),
        200
    );
    assert!(log
        .lines()
        .all(|l| l.starts_with("[----] ") && l.contains(" -- : ")));
    let automation = std::fs::read_to_string(dir.join("log/automation.log")).unwrap();
    assert!(automation.contains("Instantiating [/System/Process/Event?"));

    // The same file again: everything is a duplicate, nothing new stored.
    let again = run_until_idle(dir, &config);
    assert_eq!(again["handled"], 200, "{again}");
    assert_eq!(again["duplicates"], 200, "{again}");
    assert_stored_once(dir, 200, &vms);
}

#[test]
fn killed_run_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let n = 2000;
    let vms = write_events(dir, n as u64);
    let config = write_config(dir);
    let mut child = automate(dir)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Handshake: kill it once it is handling events, when evm.log has its
    // first lines (written out 64 KiB at a time), not after a guessed time.
    let evm_log = dir.join("log/evm.log");
    let start = std::time::Instant::now();
    while std::fs::metadata(&evm_log).map_or(0, |m| m.len()) == 0 {
        if start.elapsed() > Duration::from_secs(120) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("`automate run` wrote no evm.log lines");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let stats = run_until_idle(dir, &config);
    assert_eq!(stats["queued"], 0, "{stats}");
    assert_eq!(stats["errors"], 0, "{stats}");
    assert_stored_once(dir, n, &vms);
}

#[test]
fn event_send_handles_one_event_and_dedups() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let send = || {
        automate(dir)
            .args(SEND_USER_RUN_VM)
            .args(["--host", "host-1", "--timestamp", "2026-01-01T00:00:00Z"])
            .output()
            .unwrap()
    };
    let first = send();
    assert_ok(&first);
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("Caught event [USER_RUN_VM]"), "{text}");
    assert!(text.contains("to Automate"), "{text}");
    assert!(text.contains("...Complete"), "{text}");
    let second = send();
    assert_ok(&second);
    assert!(String::from_utf8_lossy(&second.stdout).contains("already stored"));
    let events = ems_events(dir);
    assert_eq!(events.len(), 1);
    let out = automate(dir)
        .args(["events", "list", "--type", "USER_RUN_VM", "--since"])
        .arg("2025-12-31T00:00:00Z")
        .output()
        .unwrap();
    assert_ok(&out);
    // The header and the one event.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

#[test]
fn full_queue_blocks_or_drops_as_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (policy, dropping) in [("block", false), ("drop_newest", true)] {
        let config = dir.join(format!("{policy}.yaml"));
        std::fs::write(
            &config,
            format!(
                "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {{kind: simulate, seed: 5, rate: 0, count: 150}}\nworkers: 2\nqueue: {{capacity: 5, batch_max: 4, when_full: {policy}}}\n"
            ),
        )
        .unwrap();
        let stats = run_until_idle(dir, &config);
        let (enqueued, dropped) = (
            stats["enqueued"].as_u64().unwrap(),
            stats["dropped"].as_u64().unwrap(),
        );
        assert_eq!(enqueued + dropped, 150, "{policy}: {stats}");
        assert_eq!(stats["handled"].as_u64().unwrap(), enqueued, "{stats}");
        if dropping {
            assert!(dropped > 0, "{stats}");
        } else {
            assert_eq!(dropped, 0, "{stats}");
        }
    }
}

/// `when_full: park`: the catcher never waits and nothing is dropped;
/// what arrives past the capacity is parked in the durable queue, counted,
/// logged, and handled once the backlog drains, each event stored once.
#[test]
fn full_queue_parks_events_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("park.yaml");
    std::fs::write(
        &config,
        "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {kind: simulate, seed: 5, rate: 0, count: 300, vms: 30}\nworkers: 1\nqueue: {capacity: 5, batch_max: 50, when_full: park}\n",
    )
    .unwrap();
    let stats = run_until_idle(dir, &config);
    let n = |k: &str| {
        stats[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {stats}"))
    };
    assert_eq!(n("enqueued"), 300, "{stats}");
    assert_eq!(n("dropped"), 0, "{stats}");
    assert_eq!(n("handled"), 300, "{stats}");
    assert_eq!(n("queued"), 0, "{stats}");
    assert!(
        n("parked") > 0,
        "a 50-event batch into a 5-event queue parks: {stats}"
    );
    assert!(n("parked") <= 300, "{stats}");
    let log = std::fs::read_to_string(dir.join("log/evm.log")).unwrap();
    assert!(
        log.contains("parking new events on disk"),
        "evm.log says parking started"
    );
    assert!(
        log.contains("events were parked on disk"),
        "evm.log says the backlog drained"
    );
    let events = ems_events(dir);
    assert_eq!(events.len(), 300, "each event stored once");
}
