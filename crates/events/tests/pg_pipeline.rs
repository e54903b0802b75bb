//! The real pipeline (simulate catcher, durable queue, dispatcher, two
//! workers, the handler and Automate on the shipped datastore) on the
//! PostgreSQL object store: `PgUnits` commits the workers' batches and acks
//! the queue after each commit. A flood of 2,000 events is stored once
//! each. The same flood on the embedded store (redb, group commit) gives
//! the figures to compare with. Needs PostgreSQL
//! (`automate_postgres::testing::TestDb`): skipped without it, unless
//! `AUTOMATE_TEST_CLUSTER=1`.

use automate_events::config::Config;
use automate_events::pipeline::{Pipeline, PipelineStore};
use automate_postgres::store::PgStore;
use automate_postgres::testing::TestDb;
use automate_vmdb::event_queue::EventQueue;
use automate_vmdb::page::{PageQuery, Pages};
use automate_vmdb::ObjectStore;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENTS: u64 = 2_000;

/// This process's CPU time so far (user + system), from /proc (Linux),
/// in clock ticks of 10 ms.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name's closing parenthesis: fields 3.. of stat(5);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let f = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    f(11) + f(12)
}

/// Runs the flood through the pipeline on `backend` with the engine over
/// `objects`, and checks every event is stored once; prints the figures.
fn flood<S: ObjectStore + Pages + 'static>(label: &str, store: Arc<S>, backend: PipelineStore) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datastore");
    let (ds, _) = automate_datastore::Datastore::open(&root);
    let (engine, _runner) = automate_control::with_control(
        automate_engine::Engine::new(Arc::new(ds)).with_store(store.clone()),
    );
    let config = Config::from_yaml(
        &format!(
            "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {{kind: simulate, seed: 7, rate: 0, count: {EVENTS}, vms: 50}}\nworkers: 2\nqueue: {{batch_max: 200, batch_wait_ms: 2}}\n"
        ),
        "test",
    )
    .expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let cpu = cpu_ticks();
    let stats = rt.block_on(async {
        let pipeline = Pipeline::prepare(&config, engine, backend)
            .expect("prepare")
            .start(None)
            .expect("start");
        // Until every caught event is handled (stored or found stored);
        // a guard against a hang, not a timing assertion.
        loop {
            let s = pipeline.stats();
            if s.caught == EVENTS && s.handled + s.failed >= EVENTS {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(600), "{s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pipeline.shutdown().await
    });
    let elapsed = started.elapsed();
    let cpu_ms = (cpu_ticks() - cpu) * 10;
    assert_eq!(stats.caught, EVENTS, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    let page = store
        .page(
            "EventStream",
            PageQuery {
                offset: 0,
                limit: usize::MAX,
                newest_first: false,
            },
            None,
        )
        .expect("page");
    let rows: Vec<_> = page
        .rows
        .iter()
        .filter(|(_, o)| o.class == "EmsEvent")
        .collect();
    let keys: HashSet<String> = rows
        .iter()
        .filter_map(|(_, o)| o.attrs.get("dedup_key").map(|k| k.to_text()))
        .collect();
    assert_eq!(keys.len(), rows.len(), "every event stored once");
    assert_eq!(
        rows.len() as u64 + stats.duplicates,
        EVENTS,
        "every event stored, or found stored: {stats:?}"
    );
    assert!(rows.len() as u64 > EVENTS / 2, "{} rows", rows.len());
    // The VMs the events name, each created once.
    let vms = store.list("VmOrTemplate").expect("vms");
    let refs: HashSet<String> = vms
        .iter()
        .filter_map(|r| {
            store
                .attribute(r, "ems_ref")
                .ok()
                .flatten()
                .map(|v| v.to_text())
        })
        .collect();
    assert_eq!(refs.len(), vms.len(), "no VM stored twice");
    eprintln!(
        "{label}: {EVENTS} events, {} stored, {} duplicates, in {elapsed:?} ({:.0} events/s), this process's CPU {cpu_ms} ms ({} µs/event; debug build, shared CPU)",
        rows.len(),
        stats.duplicates,
        EVENTS as f64 / elapsed.as_secs_f64(),
        cpu_ms * 1000 / EVENTS,
    );
}

#[test]
fn a_flood_on_postgresql_is_stored_once_per_event() {
    let Some(db) = TestDb::new("pipeline_flood") else {
        return;
    };
    // A pool of its own, named, so its server processes' CPU can be read.
    let mut config = db.config();
    config.url = format!("{} application_name=pgstore_flood", config.url);
    let pg = automate_postgres::Pg::connect(&config, db.handle()).expect("connect");
    let store = PgStore::open(pg.clone()).expect("store");
    let dir = tempfile::tempdir().expect("tempdir");
    // The queue and the retries on redb (the JetStream queue and
    // PgSchedule are other helpers' work); the objects on PostgreSQL.
    let redb =
        Arc::new(automate_redb::RedbStore::open(dir.path().join("queue.redb")).expect("redb"));
    let queue: Arc<dyn EventQueue> =
        Arc::new(automate_redb::RedbEventQueue::open(redb.schedule()).expect("queue"));
    let backend = PipelineStore {
        units: store.units(Some(queue.clone())),
        queue,
        schedule: Arc::new(redb.schedule()),
    };
    let server_cpu = || -> u64 {
        let pg = pg.clone();
        let pids: Vec<i32> = pg
            .block({
                let pg = pg.clone();
                async move {
                    let c = pg.client().await.expect("client");
                    c.query(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgstore_flood'",
                        &[],
                    )
                    .await
                    .expect("pids")
                    .iter()
                    .map(|r| r.get::<_, i32>(0))
                    .collect()
                }
            })
            .expect("runtime");
        pids.iter()
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                let f: Vec<u64> = rest
                    .split_whitespace()
                    .map(|v| v.parse().unwrap_or(0))
                    .collect();
                f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
            })
            .sum()
    };
    let before = server_cpu();
    flood("PostgreSQL (PgUnits)", store.clone(), backend);
    // (Backends the pool closed meanwhile are not counted: a floor.)
    eprintln!(
        "PostgreSQL: its server processes' CPU {} ms ({} µs/event)",
        (server_cpu() - before) * 10,
        (server_cpu() - before) * 10_000 / EVENTS
    );
    eprintln!(
        "PostgreSQL: {:.1} round trips per event (reads and direct writes; a batch's commit not counted)",
        store.round_trips() as f64 / EVENTS as f64
    );
}

/// The embedded mode, composed as `automate run` does: the baseline.
#[test]
fn the_same_flood_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        automate_redb::RedbStore::open(dir.path().join("s.redb"))
            .expect("redb")
            .with_relaxed_durability(true),
    );
    let (group, writer) = automate_redb::GroupCommit::start(store.clone()).expect("writer");
    let queue = Arc::new(
        automate_redb::RedbEventQueue::open(store.schedule().with_relaxed_claims(true))
            .expect("queue")
            .with_handoff(automate_events::pipeline::HANDOFF)
            .with_group(group.clone()),
    );
    let backend = PipelineStore {
        units: Arc::new(automate_redb::GroupUnits::new(store.clone(), group, writer)),
        queue,
        schedule: Arc::new(store.schedule()),
    };
    flood("embedded (redb)", store, backend);
}
