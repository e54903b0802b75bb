//! The real pipeline (simulate catcher, durable queue, dispatcher, two
//! workers, the handler and Automate on the shipped datastore) on the
//! PostgreSQL object store: `PgUnits` commits the workers' batches and acks
//! the queue after each commit. A flood of 2,000 events is stored once
//! each. Needs PostgreSQL (`automate_postgres::testing::TestDb`): skipped
//! without it, unless `AUTOMATE_TEST_CLUSTER=1`.

use automate_events::config::Config;
use automate_events::pipeline::{Pipeline, PipelineStore};
use automate_postgres::store::PgStore;
use automate_postgres::testing::TestDb;
use automate_vmdb::event_queue::EventQueue;
use automate_vmdb::page::PageQuery;
use automate_vmdb::ObjectStore;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENTS: u64 = 2_000;

#[test]
fn a_flood_on_postgresql_is_stored_once_per_event() {
    let Some(db) = TestDb::new("pipeline_flood") else {
        return;
    };
    let store = PgStore::open(db.pg()).expect("store");
    let dir = tempfile::tempdir().expect("tempdir");
    // The queue and the retries on redb (the JetStream queue and
    // PgSchedule are other helpers' work); the objects on PostgreSQL.
    let redb =
        Arc::new(automate_redb::RedbStore::open(dir.path().join("queue.redb")).expect("redb"));
    let queue: Arc<dyn EventQueue> =
        Arc::new(automate_redb::RedbEventQueue::open(redb.schedule()).expect("queue"));
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
    let backend = PipelineStore {
        units: store.units(Some(queue.clone())),
        queue,
        schedule: Arc::new(redb.schedule()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
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
    let names: HashSet<String> = vms
        .iter()
        .filter_map(|r| {
            store
                .attribute(r, "ems_ref")
                .ok()
                .flatten()
                .map(|v| v.to_text())
        })
        .collect();
    assert_eq!(names.len(), vms.len(), "no VM stored twice");
    eprintln!(
        "{EVENTS} events on PostgreSQL: {} stored, {} duplicates, {:?} ({:.0} events/s, debug build, shared CPU)",
        rows.len(),
        stats.duplicates,
        elapsed,
        EVENTS as f64 / elapsed.as_secs_f64()
    );
}
