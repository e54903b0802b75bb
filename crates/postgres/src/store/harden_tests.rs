//! A unit's commit whose answer is lost, inserts of two nodes in opposite
//! orders, ids taken by many threads at once, an empty page's count:
//! against a real PostgreSQL (through a silent proxy where the network
//! must fail).

use super::*;
use crate::testing::proxy::{SilentProxy, Trap};
use crate::testing::TestDb;
use automate_vmdb::WorkItem;
use std::time::SystemTime;

fn s(v: &str) -> AttrValue {
    AttrValue::str(v)
}

fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn count(store: &PgStore, sql: &'static str) -> i64 {
    store
        .run(move |pg| async move {
            let c = pg.client().await?;
            c.query_one(sql, &[])
                .await
                .map_err(sql_error)?
                .try_get(0)
                .map_err(sql_error)
        })
        .expect("count")
}

/// A store through a proxy that can lose a commit or its answer.
fn through_proxy(name: &str) -> Option<(TestDb, SilentProxy, Arc<PgStore>)> {
    let db = TestDb::new(name)?;
    let proxy = SilentProxy::new(db.port()).expect("proxy");
    let pg = crate::Pg::connect(&db.config_through(proxy.port), db.handle()).expect("connect");
    let store = PgStore::open(pg).expect("open");
    Some((db, proxy, store))
}

/// A unit: one new VM (named `vm`) and a change of `ems`, one retry.
fn unit_of(store: &PgStore, ems: &VmdbRef, vm: &str) -> unit::Prepared {
    let id = store.alloc_id("VmOrTemplate").expect("id");
    let mut changes = Attributes::default();
    changes.insert("last_vm".into(), s(vm));
    unit::Prepared {
        created: vec![(
            "VmOrTemplate",
            id,
            Arc::new(StoredObject {
                class: "Vm".into(),
                attrs: attrs(&[("name", s(vm))]),
            }),
        )],
        changed: vec![("ExtManagementSystem", ems.id, changes)],
        ..Default::default()
    }
}

fn commit_unit(store: &PgStore, p: unit::Prepared) -> Result<unit::Committed, StoreError> {
    store.run_commit(move |pg| async move {
        let work = WorkItem::new("retry", serde_json::json!({"n": 1}));
        unit::commit(&pg, &p, &[(work, SystemTime::now())]).await
    })
}

#[test]
fn a_commit_whose_answer_is_lost_is_found_committed_and_written_once() {
    let Some((_db, proxy, store)) = through_proxy("lost_reply") else {
        return;
    };
    let ems = store
        .create("ExtManagementSystem", attrs(&[("name", s("vc1"))]))
        .expect("ems");
    // The server gets the COMMIT; its answer never comes back.
    proxy.trap(Trap::LoseReply);
    let committed = commit_unit(&store, unit_of(&store, &ems, "vm1"))
        .expect("answered committed: the check found the unit's row");
    assert_eq!(committed.changed, 1);
    assert_eq!(committed.scheduled.len(), 1, "{committed:?}");
    assert_eq!(
        store.find_by("Vm", "name", &s("vm1")).expect("find").len(),
        1
    );
    assert_eq!(
        store.attribute(&ems, "last_vm").expect("read"),
        Some(s("vm1"))
    );
    assert_eq!(count(&store, "SELECT count(*) FROM scheduled"), 1);
}

#[test]
fn a_commit_lost_on_its_way_is_fenced_out_and_answered_failed() {
    let Some((_db, proxy, store)) = through_proxy("lost_commit") else {
        return;
    };
    let ems = store
        .create("ExtManagementSystem", attrs(&[("name", s("vc1"))]))
        .expect("ems");
    // The COMMIT never reaches the server: its transaction stays open
    // until the server ends it (idle_in_transaction_session_timeout).
    proxy.trap(Trap::LoseCommit);
    // Either no answer within the bound, or the connection closed by the
    // server when it ended the idle transaction.
    let failed = commit_unit(&store, unit_of(&store, &ems, "vm2"));
    assert!(failed.is_err(), "{failed:?}");
    assert!(store
        .find_by("Vm", "name", &s("vm2"))
        .expect("find")
        .is_empty());
    assert_eq!(store.attribute(&ems, "last_vm").expect("read"), None);
    assert_eq!(count(&store, "SELECT count(*) FROM scheduled"), 0);
    assert_eq!(
        count(&store, "SELECT count(*) FROM unit_commits WHERE failed"),
        1,
        "the unit's id is taken: it can never commit later"
    );
    // The next unit commits as usual.
    let first = commit_unit(&store, unit_of(&store, &ems, "vm3")).expect("committed");
    assert_eq!(first.changed, 1);
}

fn event(key: &str) -> Obj {
    Arc::new(StoredObject {
        class: "EmsEvent".into(),
        attrs: attrs(&[("event_type", s("VmPoweredOnEvent")), ("dedup_key", s(key))]),
    })
}

#[test]
fn two_nodes_inserting_the_same_events_in_opposite_orders_never_deadlock() {
    let Some(db) = TestDb::new("insert_order") else {
        return;
    };
    let stores: Vec<Arc<PgStore>> = (0..2)
        .map(|_| {
            PgStore::open(crate::Pg::connect(&db.config(), db.handle()).expect("node"))
                .expect("open")
        })
        .collect();
    for round in 0..10 {
        let keys: Vec<String> = (0..200).map(|i| format!("r{round}-e{i}")).collect();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(n, store)| {
                let store = store.clone();
                let barrier = barrier.clone();
                let mut keys = keys.clone();
                if n == 1 {
                    keys.reverse();
                }
                std::thread::spawn(move || {
                    let mut created = Vec::new();
                    for k in &keys {
                        let id = store.alloc_id("EventStream").expect("id");
                        created.push(("EventStream", id, event(k)));
                    }
                    // The changes make it a transaction of several
                    // statements (the inserts first, then a pause).
                    let p = unit::Prepared {
                        created,
                        ..Default::default()
                    };
                    barrier.wait();
                    store.run_commit(move |pg| async move {
                        let work = WorkItem::new("retry", serde_json::json!({}));
                        unit::commit(&pg, &p, &[(work, SystemTime::now())]).await
                    })
                })
            })
            .collect();
        let results: Vec<Result<unit::Committed, StoreError>> = threads
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .collect();
        for r in &results {
            if let Err(e) = r {
                assert!(!e.to_string().contains("deadlock"), "round {round}: {e}");
                assert!(
                    e.to_string().contains("objects_dedup_key"),
                    "round {round}: {e}"
                );
            }
        }
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: one node stores the events, the other finds them stored"
        );
    }
}

#[test]
fn ids_taken_by_many_threads_at_once_are_unique() {
    let Some(db) = TestDb::new("alloc_ids") else {
        return;
    };
    let store = PgStore::open(db.pg()).expect("open");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..300)
                    .map(|_| store.alloc_id("VmOrTemplate").expect("id"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("no panic"))
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "no id given twice");
    assert!(all
        .iter()
        .all(|id| *id > REGION_BASE && *id < 2 * REGION_BASE));
}

#[test]
fn a_page_past_the_end_still_counts_the_rows() {
    let Some(db) = TestDb::new("page_end") else {
        return;
    };
    let store = PgStore::open(db.pg()).expect("open");
    for i in 0..3 {
        store
            .create("EmsEvent", attrs(&[("dedup_key", s(&format!("p{i}")))]))
            .expect("event");
    }
    let q = PageQuery {
        offset: 10,
        limit: 5,
        newest_first: false,
    };
    let page = store.page("EventStream", q, None).expect("page");
    assert_eq!((page.total, page.rows.len()), (3, 0));
    let all = |_: &StoredObject| true;
    let page = store.page("EventStream", q, Some(&all)).expect("page");
    assert_eq!((page.total, page.rows.len()), (3, 0));
}
