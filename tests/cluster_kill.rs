//! Cluster mode survives the loss of any node (its own test binary, like
//! tests/crash.rs; `#[ignore]`d in the default `cargo test`, run by
//! `.ci/run` with `cargo test --test cluster_kill -- --ignored`).
//!
//! Three `automate run` nodes share one PostgreSQL schema and one NATS
//! prefix (this test's own). One provider, `rhevm01`, has a `jsonl`
//! catcher following a file the test appends [`EVENTS`] events to, at a
//! steady pace; only the node holding the catcher's lease reads it. Before
//! the first start, [`MACHINES`] state machines (`tests/data/crash`,
//! `/SM/Counter`) are started through the library on the PostgreSQL store,
//! so durable retries are scheduled for the nodes' retry runners; while
//! events flow, automation requests are created through the APIs of live
//! nodes. Mid-flood, [`KILLS`] SIGKILLs alternate between the node
//! holding the catcher lease and another node; each killed node is started
//! again once the lease has moved (measured: at most 10 s each time).
//!
//! Then PostgreSQL is the witness:
//! * every event is stored exactly once (one `EmsEvent` per chain id);
//! * every event was delivered to Automate at least once (the datastore's
//!   `/System/Process/Event` method counts deliveries on the stored
//!   `EmsEvent`);
//! * every state machine finished (its retries ran) and nothing is left
//!   scheduled;
//! * every request a node accepted exists and finished.
//!
//! `CLUSTER_EVENTS`, `CLUSTER_SEED` and `CLUSTER_KEEP=1` as in the crash
//! test. Without PostgreSQL or NATS it says why and passes, unless
//! `AUTOMATE_TEST_CLUSTER=1`.

use automate_engine::AttrValue;
use automate_nats::lease::KvLeases;
use automate_nats::testing::TestNats;
use automate_postgres::testing::TestDb;
use automate_vmdb::lease::Leases;
use automate_vmdb::{ObjectStore, Schedule};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Events appended to the catcher's file (`CLUSTER_EVENTS` overrides).
const EVENTS: usize = 50_000;
/// Events appended per step, and the pause between steps: a flood of
/// about 2,500 events/s.
const STEP: usize = 250;
const STEP_PAUSE: Duration = Duration::from_millis(100);
/// SIGKILLs, alternating between the lease holder and another node.
const KILLS: usize = 5;
/// State machines whose retries are scheduled before the first start.
const MACHINES: usize = 20;
/// Passes each machine makes (`tests/data/crash/generate.py`).
const PASSES: i64 = 4;
/// Automation requests created while the events flow.
const REQUESTS: usize = 20;
const NODES: usize = 3;
const TOKEN: &str = "cluster-kill-token";
/// The catcher lease's time to live (cluster.lease_ttl_s).
const LEASE_TTL_S: u64 = 3;
/// How long the lease may take to move to a live node.
const LEASE_MOVE: Duration = Duration::from_secs(10);
const LEASE_KEY: &str = "catcher.rhevm01";

#[path = "it/common/process.rs"]
mod process;
use process::{copy_dir, free_port, wait_listening};

fn crash_datastore() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/crash"))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small seeded generator (xorshift64*), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// One node: its directory, port, config and process.
struct Node {
    name: String,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Node {
    fn new(root: &Path, i: usize, schema: &str, prefix: &str, events: &Path) -> Node {
        let name = format!("n{i}");
        let dir = root.join(&name);
        copy_dir(
            &crash_datastore().join("CRASH"),
            &dir.join("datastore/CRASH"),
        );
        let port = free_port();
        let config = format!(
            "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {{kind: jsonl, path: {events:?}, follow: true}}\n\
             workers: 2\n\
             queue: {{batch_max: 256, batch_wait_ms: 5}}\n\
             api: {{listen: \"127.0.0.1:{port}\", token: {TOKEN}}}\n\
             log: {{dir: log}}\n\
             cluster:\n  postgres: {pg:?}\n  schema: {schema}\n  nats: {nats:?}\n  prefix: {prefix}\n  node: {name}\n  lease_ttl_s: {LEASE_TTL_S}\n  ack_wait_s: 5\n",
            events = events.display().to_string(),
            pg = automate_postgres::testing::test_url(),
            nats = automate_nats::testing::test_url(),
        );
        std::fs::write(dir.join("automate.yaml"), config).expect("write config");
        Node {
            name,
            dir,
            port,
            child: None,
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.join("run.out")
    }

    fn start(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.out())
            .expect("output file");
        let mut child =
            process::automate_on(&self.dir.join("datastore"), &self.dir.join("automate.redb"))
                .current_dir(&self.dir)
                .args(["run", "--config"])
                .arg(self.dir.join("automate.yaml"))
                .stdout(Stdio::from(log.try_clone().expect("clone")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn automate run");
        let out = self.out();
        wait_listening(&mut child, self.port, Duration::from_secs(60), || {
            std::fs::read_to_string(&out).unwrap_or_default()
        });
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("wait");
        }
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            process::terminate(&mut c);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn line(i: usize) -> String {
    serde_json::json!({
        "event_type": "USER_RUN_VM",
        "timestamp": "2026-01-01T00:00:00Z",
        "chain_id": format!("c{i}"),
        "vm_ems_ref": format!("vm-{}", i % 97),
        "vm_name": format!("web-{}", i % 97),
        "host_ems_ref": format!("host-{}", i % 5),
    })
    .to_string()
}

/// Appends the events to `path`, `STEP` at a time.
fn flood(path: &Path, events: usize, written: &AtomicUsize) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .expect("events file");
    let mut i = 0;
    while i < events {
        let end = (i + STEP).min(events);
        let mut text = String::with_capacity((end - i) * 160);
        for j in i..end {
            text.push_str(&line(j));
            text.push('\n');
        }
        f.write_all(text.as_bytes()).expect("append");
        f.flush().expect("flush");
        i = end;
        written.store(i, Ordering::SeqCst);
        std::thread::sleep(STEP_PAUSE);
    }
}

/// Creates an automation request through the API at `port`: its id, or
/// `None` when the node did not accept it (it is down).
fn create_request(port: u16, n: usize) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let body = serde_json::json!({
        "version": "1.1",
        "uri_parts": {"namespace": "System", "class": "Request", "instance": "Witness", "message": "create"},
        "parameters": {"n": n},
        "requester": {"user_name": "admin", "auto_approve": true}
    });
    let mut resp = agent
        .post(&format!("http://127.0.0.1:{port}/api/automation_requests"))
        .header("X-Auth-Token", TOKEN)
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let text = resp.body_mut().read_to_string().ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let r = v.get("results").and_then(|r| r.get(0)).unwrap_or(&v);
    r.get("id").and_then(|id| match id {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// The node holding the catcher lease now, if any.
fn holder(leases: &KvLeases) -> Option<String> {
    leases
        .held()
        .ok()?
        .into_iter()
        .find(|l| l.key == LEASE_KEY)
        .map(|l| l.node)
}

#[test]
#[ignore = "three nodes, 50,000 events, 5 SIGKILLs: cargo test --test cluster_kill -- --ignored"]
fn killing_nodes_loses_nothing() {
    let Some(db) = TestDb::new("cluster_kill") else {
        return;
    };
    let Some(nats) = TestNats::new("cluster_kill") else {
        return;
    };
    let events: usize = env_or("CLUSTER_EVENTS", EVENTS);
    let seed: u64 = env_or("CLUSTER_SEED", 0x0c10_57e4);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let kept = std::env::var_os("CLUSTER_KEEP")
        .is_some()
        .then(|| tmp.path().to_path_buf());
    let root = tmp.path();
    let events_file = root.join("events.jsonl");
    std::fs::write(&events_file, "").expect("events file");
    let schema = db.config().schema;
    let prefix = nats.nats().prefix().to_string();

    // The machines' first passes, through the library on PostgreSQL.
    let pg = db.pg();
    let store = automate_postgres::store::PgStore::open(pg.clone()).expect("PgStore");
    let schedule = automate_postgres::schedule::PgSchedule::new(pg.clone(), "test");
    let machines = start_machines(store.clone(), &schedule);

    let mut nodes: Vec<Node> = (1..=NODES)
        .map(|i| Node::new(root, i, &schema, &prefix, &events_file))
        .collect();
    for n in &mut nodes {
        n.start();
    }
    let observer = KvLeases::open(nats.node("observer"), Duration::from_secs(LEASE_TTL_S))
        .expect("lease observer");

    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (written, done, path) = (written.clone(), done.clone(), events_file.clone());
        std::thread::spawn(move || {
            flood(&path, events, &written);
            done.store(true, Ordering::SeqCst);
        })
    };
    // Requests, posted to whichever node is up (ports of the live nodes).
    let live_ports: Arc<Mutex<Vec<u16>>> =
        Arc::new(Mutex::new(nodes.iter().map(|n| n.port).collect()));
    let requests = {
        let (ports, done) = (live_ports.clone(), done.clone());
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            let mut n = 0;
            while n < REQUESTS {
                let port = {
                    let p = ports.lock().expect("ports");
                    p[n % p.len()]
                };
                if let Some(id) = create_request(port, n) {
                    ids.push(id);
                    n += 1;
                }
                let pause = if done.load(Ordering::SeqCst) { 10 } else { 300 };
                std::thread::sleep(Duration::from_millis(pause));
            }
            ids
        })
    };

    // Kill points: spread over the first 80% of the flood.
    let span = (events * 8 / 10 / KILLS) as u64;
    let mut moves = Vec::new();
    for k in 0..KILLS {
        let point = rng.range(k as u64 * span + 1, (k as u64 + 1) * span) as usize;
        while written.load(Ordering::SeqCst) < point && !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let wait = Instant::now();
        let held_by = loop {
            if let Some(h) = holder(&observer) {
                break h;
            }
            assert!(wait.elapsed() < LEASE_MOVE, "no node holds {LEASE_KEY}");
            std::thread::sleep(Duration::from_millis(50));
        };
        // Even kills: the lease holder; odd ones: another node.
        let victim = if k % 2 == 0 {
            nodes
                .iter()
                .position(|n| n.name == held_by)
                .expect("holder is a node")
        } else {
            nodes
                .iter()
                .position(|n| n.name != held_by)
                .expect("another node")
        };
        let victim_port = nodes[victim].port;
        live_ports
            .lock()
            .expect("ports")
            .retain(|p| *p != victim_port);
        nodes[victim].kill();
        let killed_at = Instant::now();
        if k % 2 == 0 {
            // The lease must move to a live node.
            loop {
                match holder(&observer) {
                    Some(h) if h != held_by => break,
                    _ => {}
                }
                assert!(
                    killed_at.elapsed() < LEASE_MOVE,
                    "kill {k}: the lease of {LEASE_KEY} did not leave the dead node {held_by} in {LEASE_MOVE:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            moves.push(killed_at.elapsed());
        }
        nodes[victim].start();
        live_ports.lock().expect("ports").push(victim_port);
    }
    feeder.join().expect("feeder");
    let request_ids = requests.join().expect("requests");

    // Wait until every event is stored, every machine finished and every
    // request finished (generous: a debug build on 2 cores).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stored = stored_events(&pg);
        let left = schedule.len().expect("schedule len");
        if stored >= events && left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 10 min: {stored} of {events} events stored, {left} scheduled items left"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for n in &mut nodes {
        n.terminate();
    }

    let mut by_chain: HashMap<String, Vec<i64>> = HashMap::new();
    let mut undelivered = Vec::new();
    for r in store.list("EmsEvent").expect("list EmsEvents") {
        let obj = store
            .load("EmsEvent", r.id)
            .expect("load")
            .expect("listed event exists");
        if obj.class != "EmsEvent" {
            // MiqEvents, the requests' RequestEvents: not provider events.
            continue;
        }
        let chain = obj
            .attrs
            .get("chain_id")
            .map(AttrValue::to_text)
            .unwrap_or_default();
        match obj.attrs.get("deliveries") {
            Some(AttrValue::Int(n)) if *n >= 1 => {}
            _ => undelivered.push(chain.clone()),
        }
        by_chain.entry(chain).or_default().push(r.id);
    }
    if let Some(k) = &kept {
        std::mem::forget(tmp);
        eprintln!("kept {}", k.display());
    }
    let report = format!("seed {seed:#x}, {events} events, lease moves {moves:?}");
    eprintln!("{report}");
    let missing: Vec<usize> = (0..events)
        .filter(|i| !by_chain.contains_key(&format!("c{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events not stored (first c{:?}); {report}",
        missing.len(),
        missing.first()
    );
    let duplicated: Vec<_> = by_chain.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{} events stored twice (e.g. {:?}); {report}",
        duplicated.len(),
        duplicated.first()
    );
    assert!(
        undelivered.is_empty(),
        "{} events never reached Automate (first {:?}); {report}",
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
            "machine {id} did not finish; {report}"
        );
    }
    assert_eq!(request_ids.len(), REQUESTS);
    for id in &request_ids {
        let id: i64 = id.parse().expect("numeric request id");
        let r = store
            .load("MiqRequest", id)
            .expect("load request")
            .unwrap_or_else(|| panic!("request {id} lost; {report}"));
        let state = |k: &str| r.attrs.get(k).map(AttrValue::to_text);
        assert_eq!(
            (
                state("request_state").as_deref(),
                state("status").as_deref()
            ),
            (Some("finished"), Some("Ok")),
            "request {id}: {:?}; {report}",
            r.attrs
        );
    }
    assert_eq!(schedule.len().expect("len"), 0, "{report}");
}

/// How many provider events (`EmsEvent` rows) are stored.
fn stored_events(pg: &Arc<automate_postgres::Pg>) -> usize {
    let p = pg.clone();
    pg.block(async move {
        let c = p.client().await.expect("a connection");
        let n: i64 = c
            .query_one("SELECT count(*) FROM objects WHERE class = 'EmsEvent'", &[])
            .await
            .expect("count")
            .get(0);
        n as usize
    })
    .expect("driver runtime")
}

/// Creates the machines' VMs in PostgreSQL and delivers their first pass
/// (each asks for a retry, written to the shared schedule).
fn start_machines(
    store: Arc<automate_postgres::store::PgStore>,
    schedule: &dyn Schedule,
) -> Vec<i64> {
    use automate_engine::deliver::{deliver, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
    let vms: Vec<i64> = (1..=MACHINES)
        .map(|i| {
            let mut attrs = automate_engine::Attributes::default();
            attrs.insert("name".into(), AttrValue::Str(format!("machine-{i}")));
            store.create("VmOrTemplate", attrs).expect("create vm").id
        })
        .collect();
    let (ds, problems) = automate_datastore::Datastore::open(&crash_datastore());
    assert!(problems.is_empty(), "{problems:?}");
    let (engine, _runner) = automate_control::with_control(
        automate_engine::Engine::new(Arc::new(ds)).with_store(store.clone()),
    );
    for &id in &vms {
        let d = Delivery {
            uri: format!("/SM/Counter/default?machine={id}"),
            attrs: Vec::new(),
            object: format!("VmOrTemplate.{id}"),
            deliveries: 0,
        };
        let outcome = deliver(&engine, schedule, &d, DEFAULT_MAX_DELIVERIES).expect("deliver");
        assert!(
            matches!(outcome, Outcome::Retry { .. }),
            "machine {id}: first pass retries"
        );
    }
    vms
}
