//! Cluster mode's datastore sync when one local domain cannot be
//! published (a file name PostgreSQL's copy refuses): the other domains
//! are published, at start and later, and the refused one is reported in
//! the store's health (`/api/health`'s warnings) until it is fixed. Real
//! PostgreSQL (`AUTOMATE_TEST_CLUSTER=1`), a schema of the test's own.

use crate::common::{copy_dir, shipped_datastore};
use automate::cli::cluster::datastore::start_reporting;
use automate_control::with_control_reloadable;
use automate_datastore::Datastore;
use automate_engine::Engine;
use automate_methods::RhaiLimits;
use automate_postgres::datastore as shared;
use automate_postgres::testing::TestDb;
use automate_postgres::Pg;
use automate_vmdb::health::StoreHealth;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn domain(root: &Path, name: &str, extra: Option<&str>) {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("__domain__.yaml"),
        format!(
            "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n    \
             priority: 20\n    enabled: true\n    source: user\n"
        ),
    )
    .unwrap();
    if let Some(file) = extra {
        std::fs::write(d.join(file), "draft\n").unwrap();
    }
}

fn published(db: &TestDb, pg: &Arc<Pg>) -> Vec<String> {
    let p = pg.clone();
    let _ = db;
    pg.block(async move { shared::list(&p).await })
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect()
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_domain_that_cannot_be_published_holds_up_no_other() {
    let Some(db) = TestDb::new("ds_refused") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("datastore");
    copy_dir(&shipped_datastore(), &root);
    // Sorted first: before the fix it stopped the seeding of every other.
    domain(&root, "Aaa", Some("notes\\draft.txt"));
    let (ds, _) = Datastore::open(&root);
    let (_engine, _runner, reloader) =
        with_control_reloadable(Engine::new(Arc::new(ds)), RhaiLimits::default());
    let pg = Pg::connect(&db.config(), db.handle()).unwrap();
    let health = Arc::new(StoreHealth::new("postgresql://test"));
    let _sync = start_reporting(
        pg.clone(),
        &root,
        reloader.clone(),
        "node-a",
        db.handle(),
        Some(health.clone()),
    )
    .expect("the node starts, its other domains published");
    let names = published(&db, &pg);
    assert!(names.iter().any(|n| n == "ManageIQ"), "{names:?}");
    assert!(!names.iter().any(|n| n == "Aaa"), "{names:?}");
    let warnings = health.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("domain Aaa") && warnings[0].contains("draft"),
        "{warnings:?}"
    );
    assert!(health.is_ok(), "a warning stops no work");

    // Later changes: a new bad domain (Bbb) and a new good one (Ccc, after
    // it in order): Ccc goes out, Bbb is reported.
    domain(&root, "Bbb", Some("x\\y.txt"));
    domain(&root, "Ccc", None);
    assert!(reloader.reload_now().ok);
    eventually("Ccc published", || {
        published(&db, &pg).iter().any(|n| n == "Ccc")
    });
    assert!(!published(&db, &pg).iter().any(|n| n == "Bbb"));
    eventually("Bbb reported", || health.warnings().len() == 2);

    // Fixed: published, no more warnings.
    std::fs::remove_file(root.join("Aaa").join("notes\\draft.txt")).unwrap();
    std::fs::remove_file(root.join("Bbb").join("x\\y.txt")).unwrap();
    assert!(reloader.reload_now().ok);
    eventually("Aaa and Bbb published", || {
        let names = published(&db, &pg);
        names.iter().any(|n| n == "Aaa") && names.iter().any(|n| n == "Bbb")
    });
    eventually("no warning left", || health.warnings().is_empty());
}
