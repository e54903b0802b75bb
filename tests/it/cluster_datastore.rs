//! Cluster mode: the datastore shared through PostgreSQL (issue 19). Two
//! "nodes" in one test process, each a datastore root of its own (a copy of
//! the shipped datastore) with its engine's Reloader and its own pool to
//! one test schema, synced by `cli::cluster::datastore::start`: an import
//! on node A (a new domain, a changed instance value) is on node B's disk
//! and in B's reloaded index, a domain removed on A disappears from B, a
//! domain that does not load is not taken by B (which keeps running on its
//! own), and a node starting takes the cluster's datastore.
//!
//! Skips without PostgreSQL (fails with `AUTOMATE_TEST_CLUSTER=1`).

use crate::common::{copy_dir, shipped_datastore};
use automate::cli::cluster::datastore::{start, DatastoreSync};
use automate_control::{with_control_reloadable, Reloader};
use automate_datastore::{Datastore, ImportOptions, ReloadReport};
use automate_engine::Engine;
use automate_methods::RhaiLimits;
use automate_postgres::datastore::{self as shared, DomainFiles, DomainMeta};
use automate_postgres::testing::TestDb;
use automate_postgres::Pg;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a change may take to reach the other node before the test
/// fails. The acceptance's figure is 5 s (a notification, a fetch, a swap
/// and a reload: well under a second here); the bound is wide so that a
/// loaded machine does not fail the test on time alone, and the time taken
/// is printed.
const BOUND: Duration = Duration::from_secs(60);

/// One node: its root, datastore, reloader and sync.
struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    datastore: Arc<Datastore>,
    reloader: Arc<Reloader>,
    pg: Arc<Pg>,
    sync: Option<DatastoreSync>,
    /// The file watcher `automate run` starts (reloads on a change made by
    /// hand, and on every domain the sync writes).
    _watch: Option<automate::cli::watch::Watch>,
    /// Every reload's report, in order.
    reports: Arc<Mutex<Vec<ReloadReport>>>,
}

impl Node {
    /// The node `name` on a copy of the shipped datastore that `prepare`
    /// may change, connected to `db`'s schema, synced.
    fn start(db: &TestDb, name: &str, prepare: impl FnOnce(&Path)) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("datastore");
        copy_dir(&shipped_datastore(), &root);
        prepare(&root);
        let (ds, _) = Datastore::open(&root);
        let (engine, _runner, reloader) =
            with_control_reloadable(Engine::new(Arc::new(ds)), RhaiLimits::default());
        let pg = Pg::connect(&db.config(), db.handle()).unwrap();
        let reports = Arc::new(Mutex::new(Vec::new()));
        {
            let reports = reports.clone();
            reloader.observe(move |r| reports.lock().unwrap().push(r.clone()));
        }
        let sync = start(pg.clone(), &root, reloader.clone(), name, db.handle()).unwrap();
        let watch = automate::cli::watch::start(&root, reloader.clone())
            .map_err(|e| eprintln!("no watcher ({e:#}): reloads by hand"))
            .ok();
        Node {
            _dir: dir,
            root,
            datastore: engine.datastore().clone(),
            reloader,
            pg,
            sync: Some(sync),
            _watch: watch,
            reports,
        }
    }

    /// The `greeting` of `/Custom/Demo/Greeter/Default` in the running
    /// index (`None` without the domain).
    fn greeting(&self) -> Option<String> {
        let index = self.datastore.index();
        let class = index.class("Custom/Demo", "Greeter")?;
        let field = class.fields.iter().position(|f| f.name == "greeting")?;
        class
            .instance("Default")?
            .values
            .get(field)?
            .as_ref()?
            .value
            .clone()
    }

    /// The files of domain `name` on this node's disk.
    fn files(&self, name: &str) -> Option<DomainFiles> {
        let dir = self.root.join(name);
        dir.is_dir().then(|| DomainFiles::read_dir(&dir).unwrap())
    }
}

/// Waits (at most [`BOUND`]) for `ok`, printing how long it took.
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < BOUND, "{what}: not within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{what}: {} ms", t0.elapsed().as_millis());
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The domain `Custom` (in `dir/Custom`): `/Demo/Greeter/Default` with
/// `greeting` and a Rhai method whose body is `body`.
fn custom_domain(dir: &Path, greeting: &str, body: &str) -> PathBuf {
    let d = dir.join("Custom");
    let class = d.join("Demo/Greeter.class");
    write(
        &d.join("__domain__.yaml"),
        "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: Custom\n    \
         priority: 10\n    enabled: true\n    source: user\n",
    );
    write(
        &d.join("Demo/__namespace__.yaml"),
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Demo\n",
    );
    write(
        &class.join("__class__.yaml"),
        "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    name: Greeter\n  \
         schema:\n  - field:\n      aetype: attribute\n      name: greeting\n      \
         datatype: string\n      priority: 1\n      default_value: Hi\n  - field:\n      \
         aetype: method\n      name: meth1\n      datatype: string\n      priority: 2\n",
    );
    write(
        &class.join("default.yaml"),
        &format!(
            "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    name: Default\n  \
             fields:\n  - greeting:\n      value: {greeting}\n  - meth1:\n      value: greet\n"
        ),
    );
    write(
        &class.join("__methods__/greet.yaml"),
        "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: greet\n    \
         scope: instance\n    language: rhai\n    location: inline\n  inputs: []\n",
    );
    write(&class.join("__methods__/greet.rhai"), body);
    d
}

/// `automate datastore import` of `Custom` (greeting `greeting`) into
/// `node`'s root, then its reload (as the API's import does).
fn import(node: &Node, greeting: &str) {
    let src = tempfile::tempdir().unwrap();
    custom_domain(src.path(), greeting, "evm.root[\"out\"] = \"hi\";\n");
    let opts = ImportOptions {
        overwrite: true,
        ..ImportOptions::default()
    };
    automate_datastore::import(&node.root, &src.path().join("Custom"), &opts).unwrap();
    let report = node.reloader.reload_now();
    assert!(report.ok, "{report:?}");
}

#[test]
fn a_change_on_one_node_reaches_the_other() {
    let Some(db) = TestDb::new("ds_sync_two_nodes") else {
        return;
    };
    let a = Node::start(&db, "node-a", |_| {});
    let b = Node::start(&db, "node-b", |_| {});
    assert_eq!(b.greeting(), None);

    // A new domain imported on A.
    import(&a, "Hello");
    eventually("a new domain from A in B's index", || {
        b.greeting().as_deref() == Some("Hello")
    });
    assert_eq!(b.files("Custom"), a.files("Custom"), "B's disk is A's");

    // A changed instance value.
    import(&a, "Bonjour");
    eventually("a changed value from A in B's index", || {
        b.greeting().as_deref() == Some("Bonjour")
    });
    assert_eq!(b.files("Custom"), a.files("Custom"));

    // A version that does not load (a Rhai syntax error), published as a
    // node would: B keeps its files and its running datastore, and says
    // why in its last reload's report.
    let good = b.files("Custom").unwrap();
    let src = tempfile::tempdir().unwrap();
    let broken = DomainFiles::read_dir(&custom_domain(src.path(), "Broken", "let = ;\n")).unwrap();
    let pg = a.pg.clone();
    let version = pg
        .block({
            let pg = pg.clone();
            async move {
                shared::publish(&pg, "Custom", &DomainMeta::default(), &broken, "node-x").await
            }
        })
        .unwrap()
        .unwrap()
        .version;
    // The report is out before B puts its files back: wait for both (a
    // reload by B's watcher may follow, on the files put back).
    let failed = |n: &Node| n.reports.lock().unwrap().iter().filter(|r| !r.ok).count();
    let failed_before = (failed(&a), failed(&b));
    let work_dirs = |root: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect()
    };
    let refused = |n: &Node, before: usize| {
        n.reports
            .lock()
            .unwrap()
            .iter()
            .filter(|r| !r.ok)
            .skip(before)
            .any(|r| r.problems.iter().any(|p| p.file.contains("greet")))
            && n.files("Custom").as_ref() == Some(&good)
            && work_dirs(&n.root).is_empty()
    };
    eventually("B refusing the broken version, its files put back", || {
        refused(&b, failed_before.1)
    });
    // A too (the next change on A must not race with A putting its
    // files back).
    eventually("A refusing it as well", || refused(&a, failed_before.0));
    assert_eq!(b.greeting().as_deref(), Some("Bonjour"), "B's index kept");

    // The next version that loads is taken (and A's own change goes out
    // again although B refused the one before).
    import(&a, "Hola");
    eventually("the next good version in B's index", || {
        b.greeting().as_deref() == Some("Hola")
    });
    let listed = pg
        .block({
            let pg = pg.clone();
            async move { shared::list(&pg).await }
        })
        .unwrap()
        .unwrap();
    let custom = listed.iter().find(|d| d.name == "Custom").unwrap();
    assert!(
        custom.version > version && custom.updated_by == "node-a",
        "{custom:?}"
    );

    // A file edited by hand on B (what the watcher reloads on) reaches A.
    let instance = b.root.join("Custom/Demo/Greeter.class/default.yaml");
    let text = std::fs::read_to_string(&instance).unwrap();
    std::fs::write(&instance, text.replace("Hola", "Ciao")).unwrap();
    if b._watch.is_none() {
        assert!(b.reloader.reload_now().ok);
    }
    eventually("an edit on B (seen by its watcher) in A's index", || {
        a.greeting().as_deref() == Some("Ciao")
    });
    let custom = pg
        .block({
            let pg = pg.clone();
            async move { shared::list(&pg).await }
        })
        .unwrap()
        .unwrap()
        .into_iter()
        .find(|d| d.name == "Custom")
        .unwrap();
    assert_eq!(custom.updated_by, "node-b", "A's pull did not bounce back");

    // A domain removed on A disappears from B.
    std::fs::remove_dir_all(a.root.join("Custom")).unwrap();
    assert!(a.reloader.reload_now().ok);
    eventually("a domain removed on A gone from B", || {
        b.greeting().is_none() && !b.root.join("Custom").exists()
    });
    assert!(b.datastore.index().domain("ManageIQ").is_some());
    drop(a);
    let mut b = b;
    drop(b.sync.take());
}

#[test]
fn a_node_starting_takes_the_cluster_datastore() {
    let Some(db) = TestDb::new("ds_sync_start") else {
        return;
    };
    // The first node seeds PostgreSQL with its domains.
    let a = Node::start(&db, "node-a", |root| {
        custom_domain(root, "Seeded", "let a = 1;\n");
    });
    let names: Vec<String> =
        a.pg.block({
            let pg = a.pg.clone();
            async move { shared::list(&pg).await }
        })
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, vec!["Custom".to_string(), "ManageIQ".to_string()]);

    // A node starting with a domain the cluster does not hold and without
    // one it does: made equal before `start` returns, and reloaded.
    let b = Node::start(&db, "node-b", |root| {
        let stale = custom_domain(root, "Stale", "let a = 1;\n");
        std::fs::rename(&stale, root.join("Stale")).unwrap();
        let file = root.join("Stale/__domain__.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("name: Custom", "name: Stale")).unwrap();
    });
    assert!(!b.root.join("Stale").exists());
    assert!(b.datastore.index().domain("Stale").is_none());
    assert_eq!(b.files("Custom"), a.files("Custom"));
    assert_eq!(b.greeting().as_deref(), Some("Seeded"));
}

#[test]
fn a_missed_notification_is_caught_by_the_poll() {
    let Some(db) = TestDb::new("ds_sync_poll") else {
        return;
    };
    let a = Node::start(&db, "node-a", |root| {
        custom_domain(root, "One", "let a = 1;\n");
    });
    let b = Node::start(&db, "node-b", |_| {});
    assert_eq!(b.greeting().as_deref(), Some("One"));
    // A new version written straight into the tables, without NOTIFY:
    // B finds it on its next poll.
    let src = tempfile::tempdir().unwrap();
    let two = DomainFiles::read_dir(&custom_domain(src.path(), "Two", "let a = 1;\n")).unwrap();
    let instance = "Demo/Greeter.class/default.yaml";
    let body = two.get(instance).unwrap().to_vec();
    let digest = two.digest();
    a.pg.block({
        let pg = a.pg.clone();
        async move {
            let mut c = pg.client().await.unwrap();
            let tx = c.transaction().await.unwrap();
            tx.execute(
                "UPDATE domain_files SET body = $1 WHERE domain = 'Custom' AND path = $2",
                &[&body, &instance],
            )
            .await
            .unwrap();
            tx.execute(
                "UPDATE domains SET digest = $1, version = nextval('datastore_versions'),
                 updated_by = 'by-hand' WHERE name = 'Custom'",
                &[&digest],
            )
            .await
            .unwrap();
            // And rows no node would write: a domain named `..`, and one
            // whose file would leave its directory. Neither is taken.
            for (name, path) in [("..", "__domain__.yaml"), ("Evil", "../../escape")] {
                tx.execute(
                    "INSERT INTO domains (name, digest, version, updated_by)
                     VALUES ($1, '', nextval('datastore_versions'), 'by-hand')",
                    &[&name],
                )
                .await
                .unwrap();
                tx.execute(
                    "INSERT INTO domain_files (domain, path, body) VALUES ($1, $2, 'x')",
                    &[&name, &path],
                )
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        }
    })
    .unwrap();
    eventually("a change without a notification on both nodes", || {
        a.greeting().as_deref() == Some("Two") && b.greeting().as_deref() == Some("Two")
    });
    assert_eq!(b.files("Custom").as_ref(), Some(&two));
    for node in [&a, &b] {
        let dir = node.root.parent().unwrap();
        assert!(!dir.join("escape").exists() && !node.root.join("Evil").exists());
        assert!(!dir.join("__domain__.yaml").exists());
    }
}

#[test]
fn two_nodes_changing_one_domain_at_once_end_on_the_same_version() {
    let Some(db) = TestDb::new("ds_sync_race") else {
        return;
    };
    let a = Node::start(&db, "node-a", |root| {
        custom_domain(root, "Start", "let a = 1;\n");
    });
    let b = Node::start(&db, "node-b", |_| {});
    std::thread::scope(|s| {
        s.spawn(|| import(&a, "FromA"));
        s.spawn(|| import(&b, "FromB"));
    });
    let latest = || {
        a.pg.block({
            let pg = a.pg.clone();
            async move { shared::list(&pg).await }
        })
        .unwrap()
        .unwrap()
        .into_iter()
        .find(|d| d.name == "Custom")
        .unwrap()
    };
    eventually("both nodes on PostgreSQL's last version", || {
        let last = latest();
        let (fa, fb) = (a.files("Custom").unwrap(), b.files("Custom").unwrap());
        fa.digest() == last.digest && fb.digest() == last.digest && a.greeting() == b.greeting()
    });
    let last = latest();
    let winner = if last.updated_by == "node-a" {
        "FromA"
    } else {
        "FromB"
    };
    assert_eq!(a.greeting().as_deref(), Some(winner), "{last:?}");
}

#[test]
fn the_real_manageiq_domain_travels_whole() {
    let Some(fixture) = crate::datastore::fixture_dir() else {
        return;
    };
    let Some(db) = TestDb::new("ds_sync_fixture") else {
        return;
    };
    // A seeds the cluster with the real ManageIQ domain (1,401 files).
    let t0 = Instant::now();
    let a = Node::start(&db, "node-a", |root| {
        std::fs::remove_dir_all(root.join("ManageIQ")).unwrap();
        copy_dir(&fixture, &root.join("ManageIQ"));
    });
    let seeded = t0.elapsed();
    // B, on the shipped (smaller) ManageIQ, takes it before `start`
    // returns: fetched, swapped in and reloaded.
    let t0 = Instant::now();
    let b = Node::start(&db, "node-b", |_| {});
    let taken = t0.elapsed();
    let files = a.files("ManageIQ").unwrap();
    eprintln!(
        "ManageIQ ({} files, {} bytes): seeded in {} ms, taken by a starting node in {} ms",
        files.len(),
        files.iter().map(|(_, b)| b.len()).sum::<usize>(),
        seeded.as_millis(),
        taken.as_millis()
    );
    assert_eq!(b.files("ManageIQ").as_ref(), Some(&files));
    assert_eq!(
        b.datastore.index().all_classes().count(),
        a.datastore.index().all_classes().count()
    );
}
