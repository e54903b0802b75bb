//! Crash safety of `automate run` (its own test binary, `#[ignore]`d in the
//! default `cargo test`; CI runs `cargo test --release --test crash --
//! --ignored`).
//!
//! A client thread posts [`EVENTS`] events in batches to the http catcher
//! (which answers 202 only once the events are durably queued) while the
//! process is killed with SIGKILL at [`KILLS`] seeded random points and
//! started again each time. Before the first start, [`MACHINES`] state
//! machines (`tests/data/crash`, `/SM/Counter`) are started through the
//! library, so durable state-machine retries are scheduled whenever the
//! process dies; the pipeline's retry runner has to finish them.
//!
//! At the end the last process is stopped with SIGTERM, one `run
//! --until-idle` drains what is left in the queue and `retries run-due
//! --wait` runs any retry still due. Then the store is the witness:
//! * every acknowledged event is stored exactly once (one `EmsEvent` per
//!   chain id);
//! * every event was delivered to Automate at least once (the datastore's
//!   `/System/Process/Event` method counts deliveries on the stored
//!   `EmsEvent`);
//! * every state machine finished with the pass count its state vars
//!   carried, and nothing is left scheduled.
//!
//! `CRASH_EVENTS` and `CRASH_SEED` override the event count and the seed.

use automate_engine::AttrValue;
use automate_redb::RedbStore;
use automate_vmdb::ObjectStore;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events posted (`CRASH_EVENTS` overrides).
const EVENTS: usize = 100_000;
/// Events per POST.
const BATCH: usize = 500;
/// SIGKILLs while the events are fed.
const KILLS: usize = 5;
/// State machines whose retries are scheduled before the first start.
const MACHINES: usize = 40;
/// Passes each machine makes (`tests/data/crash/generate.py`).
const PASSES: i64 = 4;
const TOKEN: &str = "crash-test-token";

#[path = "it/common/process.rs"]
mod process;
use process::{free_port, http_run_config, output_ok, wait_listening, write_drain_config};

fn datastore_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/crash"))
}

fn automate(db: &Path) -> Command {
    process::automate_on(&datastore_dir(), db)
}

/// A small seeded generator (xorshift64*), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    /// A generator for `seed`, mixed (splitmix64) so that nearby seeds
    /// give unrelated sequences.
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("automate.yaml");
    std::fs::write(&path, http_run_config(port, TOKEN)).expect("write config");
    path
}

/// Starts the machines' first passes through the library: each asks for a
/// retry, written to the store's scheduled-work table. Returns their VMs.
fn start_machines(db: &Path) -> Vec<i64> {
    process::start_machines(db, &datastore_dir(), MACHINES, "machine-", "VmOrTemplate")
}

/// Starts `automate run` and waits until its API port answers.
fn start(db: &Path, config: &Path, port: u16, out: &Path) -> Child {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .expect("output file");
    let mut child = automate(db)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::from(log.try_clone().expect("clone")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn automate run");
    wait_listening(&mut child, port, Duration::from_secs(60), || {
        std::fs::read_to_string(out).unwrap_or_default()
    });
    child
}

/// Batch `b` as the http catcher's JSON list. Each event has a unique
/// chain id (`c<i>`), part of the handler's de-duplication key.
fn batch_body(b: usize, events: usize) -> String {
    let items: Vec<serde_json::Value> = (b * BATCH..((b + 1) * BATCH).min(events))
        .map(|i| {
            serde_json::json!({
                "provider": "rhevm01",
                "event": {
                    "event_type": "USER_RUN_VM",
                    "timestamp": "2026-01-01T00:00:00Z",
                    "chain_id": format!("c{i}"),
                    "vm_ems_ref": format!("vm-{}", i % 97),
                    "vm_name": format!("web-{}", i % 97),
                    "host_ems_ref": format!("host-{}", i % 5),
                }
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// Posts every batch until it is acknowledged (202), whatever happens to
/// the process in between; counts the acknowledged events in `acked`.
fn feed(port: u16, events: usize, acked: &AtomicUsize, failures: &AtomicUsize) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}/api/events");
    for b in 0..events.div_ceil(BATCH) {
        let body = batch_body(b, events);
        loop {
            let sent = agent
                .post(&url)
                .header("Content-Type", "application/json")
                .header("X-Auth-Token", TOKEN)
                .send(body.as_bytes());
            match sent {
                Ok(resp) if resp.status().as_u16() == 202 => break,
                Ok(resp) => {
                    // 503/504: not stored (the process is going down).
                    let status = resp.status().as_u16();
                    assert!(
                        status == 503 || status == 504,
                        "batch {b}: unexpected status {status}"
                    );
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let n = ((b + 1) * BATCH).min(events) - b * BATCH;
        acked.fetch_add(n, Ordering::SeqCst);
    }
}

/// SIGTERM (graceful stop) through the system's `kill`; SIGKILL when
/// there is no `kill` command.
fn terminate(child: &mut Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if !sent {
        let _ = child.kill();
    }
    let started = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "kills `automate run` 5 times while feeding 100,000 events: cargo test --release --test crash -- --ignored"]
fn sigkill_loses_nothing_acknowledged() {
    let events: usize = env_or("CRASH_EVENTS", EVENTS);
    let seed: u64 = env_or("CRASH_SEED", 0x5eed_c0ffee);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    // CRASH_KEEP=1 keeps the directory (store, logs) for a post-mortem.
    let kept = (std::env::var_os("CRASH_KEEP").is_some()).then(|| tmp.path().to_path_buf());
    let dir = tmp.path();
    let db = dir.join("automate.redb");
    let out = dir.join("run.out");
    let port = free_port();
    let config = write_config(dir, port);
    let machines = start_machines(&db);

    // Kill points: after a random number of acknowledged events, one in
    // each fifth of the first 90% of the feed, plus a random delay.
    let span = (events * 9 / 10 / KILLS) as u64;
    let points: Vec<usize> = (0..KILLS as u64)
        .map(|k| rng.range(k * span + 1, (k + 1) * span) as usize)
        .collect();

    let started = Instant::now();
    let acked = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut child = start(&db, &config, port, &out);
    let client = {
        let (acked, failures, done) = (acked.clone(), failures.clone(), done.clone());
        std::thread::spawn(move || {
            feed(port, events, &acked, &failures);
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut kills = Vec::new();
    for &point in &points {
        while acked.load(Ordering::SeqCst) < point && !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.range(0, 400)));
        let at = acked.load(Ordering::SeqCst);
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        kills.push(at);
        child = start(&db, &config, port, &out);
    }
    client.join().expect("client thread");
    let fed_in = started.elapsed();
    assert_eq!(acked.load(Ordering::SeqCst), events);
    // Let the last process work through the backlog and the retries (the
    // machines retry every second), then stop it gracefully.
    std::thread::sleep(Duration::from_secs(PASSES as u64 + 2));
    terminate(&mut child);

    // Drain whatever is left, then run any retry still due.
    let drain = write_drain_config(dir);
    let drained = output_ok(
        automate(&db)
            .args(["run", "--until-idle", "--json", "--config"])
            .arg(&drain),
        "run --until-idle",
    );
    let drain_stats: serde_json::Value =
        serde_json::from_slice(&drained.stdout).expect("drain stats");
    output_ok(
        automate(&db).args(["retries", "run-due", "--wait"]),
        "retries run-due",
    );

    // The store is the witness.
    let store = RedbStore::open(&db).expect("reopen store");
    let mut by_chain: HashMap<String, Vec<i64>> = HashMap::new();
    let mut undelivered = Vec::new();
    let mut deliveries = 0i64;
    for r in store.list("EmsEvent").expect("list EmsEvents") {
        let obj = store
            .load("EmsEvent", r.id)
            .expect("load")
            .expect("listed event exists");
        let chain = obj
            .attrs
            .get("chain_id")
            .map(AttrValue::to_text)
            .unwrap_or_default();
        match obj.attrs.get("deliveries") {
            Some(AttrValue::Int(n)) if *n >= 1 => deliveries += n,
            _ => undelivered.push(chain.clone()),
        }
        by_chain.entry(chain).or_default().push(r.id);
    }
    let duplicated: Vec<_> = by_chain.iter().filter(|(_, ids)| ids.len() > 1).collect();
    let missing: Vec<usize> = (0..events)
        .filter(|i| !by_chain.contains_key(&format!("c{i}")))
        .collect();
    if let Some(k) = &kept {
        std::mem::forget(tmp);
        eprintln!("kept {}", k.display());
    }
    let report = format!(
        "seed {seed:#x}, {events} events fed in {fed_in:?} with {} failed posts, killed after {kills:?} acknowledged events; drain: {drain_stats}",
        failures.load(Ordering::Relaxed)
    );
    eprintln!("{report}; {deliveries} deliveries");
    assert!(
        missing.is_empty(),
        "{} acknowledged events are not stored (first: c{:?}); {report}",
        missing.len(),
        missing.first()
    );
    assert!(
        duplicated.is_empty(),
        "{} events stored more than once (e.g. {:?}); {report}",
        duplicated.len(),
        duplicated.first()
    );
    assert_eq!(by_chain.len(), events, "{report}");
    undelivered.sort();
    assert!(
        undelivered.is_empty(),
        "{} stored events never reached Automate (first: {:?}); {report}",
        undelivered.len(),
        undelivered.first()
    );
    for &id in &machines {
        let vm = store
            .find("VmOrTemplate", id)
            .expect("read")
            .expect("machine vm");
        assert_eq!(
            store.attribute(&vm, "finished_n"),
            Ok(Some(AttrValue::Int(PASSES))),
            "machine {id} did not finish with its state vars; {report}"
        );
    }
    assert_eq!(
        store.schedule().len().expect("schedule len"),
        0,
        "work left in the queue or the schedule; {report}"
    );
}
