//! Cluster mode rides out a restart of PostgreSQL and of NATS (its own
//! test binary; `#[ignore]`d in the default `cargo test` because it
//! restarts the machine's shared services; `.ci/run` runs it alone, after
//! everything else, with `cargo test --test cluster_restart -- --ignored`).
//!
//! Two `automate run` nodes share a test schema and prefix; one provider's
//! `jsonl` catcher follows a file the test appends [`EVENTS`] events to.
//! Mid-flood the test restarts NATS (`nats-server` stopped, then started
//! again with the machine's own command: JetStream keeps its streams on
//! disk), then PostgreSQL (`pg_ctlcluster ... restart`). The nodes are
//! never restarted: they must reconnect by themselves (with backoff), and
//! afterwards every event is stored exactly once and was delivered to
//! Automate at least once.
//!
//! Needs root and the machine's services as this machine runs them; it
//! says why and passes otherwise, unless `AUTOMATE_TEST_CLUSTER=1`.

use automate_nats::testing::TestNats;
use automate_postgres::testing::TestDb;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events appended (`RESTART_EVENTS` overrides).
const EVENTS: usize = 20_000;
const STEP: usize = 200;
const STEP_PAUSE: Duration = Duration::from_millis(100);
const TOKEN: &str = "cluster-restart-token";

#[path = "it/common/process.rs"]
mod process;
use process::{copy_dir, free_port, wait_listening};

fn crash_datastore() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/crash"))
}

/// Runs a command of the machine's; whether it succeeded.
fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .status()
        .is_ok_and(|s| s.success())
}

/// The PostgreSQL cluster version directory (`/etc/postgresql/<v>`).
fn pg_version() -> Option<String> {
    std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
}

/// The command line nats-server runs with now (to start it again alike).
fn nats_command() -> Option<Vec<String>> {
    let out = Command::new("pidof").arg("nats-server").output().ok()?;
    let pid = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .to_string();
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then_some(args)
}

fn wait_port(port: u16, up: bool, bound: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < bound {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() == up {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

struct Node {
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(root: &Path, name: &str, schema: &str, prefix: &str, events: &Path) -> Node {
        let dir = root.join(name);
        copy_dir(
            &crash_datastore().join("CRASH"),
            &dir.join("datastore/CRASH"),
        );
        let port = free_port();
        let config = format!(
            "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {{kind: jsonl, path: {events:?}, follow: true}}\n\
             workers: 2\n\
             api: {{listen: \"127.0.0.1:{port}\", token: {TOKEN}}}\n\
             log: {{dir: log}}\n\
             cluster:\n  postgres: {pg:?}\n  schema: {schema}\n  nats: {nats:?}\n  prefix: {prefix}\n  node: {name}\n  lease_ttl_s: 3\n  ack_wait_s: 5\n",
            events = events.display().to_string(),
            pg = automate_postgres::testing::test_url(),
            nats = automate_nats::testing::test_url(),
        );
        std::fs::write(dir.join("automate.yaml"), config).expect("config");
        let out = dir.join("run.out");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .expect("out");
        let mut child = process::automate_on(&dir.join("datastore"), &dir.join("automate.redb"))
            .current_dir(&dir)
            .args(["run", "--config"])
            .arg(dir.join("automate.yaml"))
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("automate run");
        wait_listening(&mut child, port, Duration::from_secs(60), || {
            std::fs::read_to_string(&out).unwrap_or_default()
        });
        Node {
            dir,
            child: Some(child),
        }
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn said(&self) -> String {
        std::fs::read_to_string(self.dir.join("run.out")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            process::terminate(&mut c);
        }
    }
}

/// `(EmsEvent rows, distinct chain ids, rows with deliveries >= 1)`, or
/// `None` while PostgreSQL does not answer.
fn stored(pg: &Arc<automate_postgres::Pg>) -> Option<(i64, i64, i64)> {
    let p = pg.clone();
    pg.block(async move {
        let c = p.client().await.ok()?;
        let row = c
            .query_one(
                "SELECT count(*), count(DISTINCT k_chain_id),
                        count(*) FILTER (WHERE coalesce(((attrs::jsonb)->>'deliveries')::bigint, 0) >= 1)
                 FROM objects WHERE class = 'EmsEvent'",
                &[],
            )
            .await
            .ok()?;
        Some((row.get(0), row.get(1), row.get(2)))
    })
    .ok()
    .flatten()
}

#[test]
#[ignore = "restarts the machine's PostgreSQL and NATS: cargo test --test cluster_restart -- --ignored"]
fn restarting_postgresql_and_nats_mid_flood_loses_nothing() {
    let mandatory = std::env::var("AUTOMATE_TEST_CLUSTER").is_ok_and(|v| v == "1");
    let skip = |why: &str| {
        assert!(!mandatory, "AUTOMATE_TEST_CLUSTER=1 but {why}");
        eprintln!("skipped: {why}");
    };
    let (Some(version), Some(nats_cmd)) = (pg_version(), nats_command()) else {
        return skip("no local PostgreSQL cluster or nats-server process to restart");
    };
    let Some(db) = TestDb::new("cluster_restart") else {
        return;
    };
    let Some(nats) = TestNats::new("cluster_restart") else {
        return;
    };
    let events: usize = std::env::var("RESTART_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EVENTS);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let file = root.join("events.jsonl");
    std::fs::write(&file, "").expect("events file");
    let schema = db.config().schema;
    let prefix = nats.nats().prefix().to_string();
    let mut nodes = vec![
        Node::start(root, "r1", &schema, &prefix, &file),
        Node::start(root, "r2", &schema, &prefix, &file),
    ];

    let written = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (written, file) = (written.clone(), file.clone());
        std::thread::spawn(move || {
            let mut f = OpenOptions::new().append(true).open(&file).expect("file");
            let mut i = 0;
            while i < events {
                let end = (i + STEP).min(events);
                let mut text = String::new();
                for j in i..end {
                    text.push_str(&format!(
                        "{{\"event_type\":\"USER_RUN_VM\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"chain_id\":\"r{j}\",\"vm_ems_ref\":\"vm-{}\",\"vm_name\":\"vm-{}\"}}\n",
                        j % 50,
                        j % 50
                    ));
                }
                f.write_all(text.as_bytes()).expect("append");
                i = end;
                written.store(i, Ordering::SeqCst);
                std::thread::sleep(STEP_PAUSE);
            }
        })
    };
    let at = |n: usize| {
        while written.load(Ordering::SeqCst) < n {
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // NATS: stopped for 2 s, then started again as it ran.
    at(events * 3 / 10);
    assert!(
        sh("kill -TERM $(pidof nats-server)"),
        "stopping nats-server"
    );
    assert!(
        wait_port(4222, false, Duration::from_secs(30)),
        "nats-server did not stop"
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut start = Command::new("start-stop-daemon");
    start
        .args(["--start", "--oknodo", "--background", "--exec"])
        .arg(&nats_cmd[0])
        .arg("--")
        .args(&nats_cmd[1..]);
    assert!(
        start.status().is_ok_and(|s| s.success()),
        "starting nats-server"
    );
    assert!(
        wait_port(4222, true, Duration::from_secs(30)),
        "nats-server did not start"
    );
    let nats_back = Instant::now();

    // PostgreSQL: a fast restart (every connection cut).
    at(events * 6 / 10);
    assert!(
        sh(&format!(
            "pg_ctlcluster --skip-systemctl-redirect {version} main restart -m fast"
        )),
        "restarting PostgreSQL"
    );
    assert!(
        wait_port(5432, true, Duration::from_secs(60)),
        "PostgreSQL did not come back"
    );
    let pg_back = Instant::now();
    feeder.join().expect("feeder");

    let pg = db.pg();
    let deadline = Instant::now() + Duration::from_secs(600);
    let last = loop {
        if let Some(s) = stored(&pg) {
            if s.0 >= events as i64 && s.2 >= events as i64 {
                break s;
            }
            assert!(Instant::now() < deadline, "after 10 min: {s:?} of {events}");
        }
        for n in &mut nodes {
            assert!(n.alive(), "a node died:\n{}", n.said());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "{events} events; all stored {:?} after NATS came back, {:?} after PostgreSQL did",
        nats_back.elapsed(),
        pg_back.elapsed()
    );
    let (rows, chains, delivered) = last;
    assert_eq!(rows, events as i64, "each event stored once");
    assert_eq!(chains, events as i64, "every event stored");
    assert_eq!(
        delivered, events as i64,
        "every event delivered to Automate"
    );
    for n in &mut nodes {
        assert!(n.alive(), "a node died:\n{}", n.said());
    }
}
