//! The store against a real PostgreSQL (a schema of each test's own).

use super::*;
use crate::testing::TestDb;
use automate_vmdb::event_queue::{CaughtEvent, Claim};
use automate_vmdb::{HandOver, UnitOfWork, WorkItem};
use std::time::{Instant, SystemTime};

fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn s(v: &str) -> AttrValue {
    AttrValue::str(v)
}

fn store(name: &str) -> Option<(TestDb, Arc<PgStore>)> {
    let db = TestDb::new(name)?;
    let store = PgStore::open(db.pg()).expect("open");
    Some((db, store))
}

fn ids(refs: &[VmdbRef]) -> Vec<i64> {
    refs.iter().map(|r| r.id).collect()
}

#[test]
fn objects_are_created_found_loaded_listed_updated_and_looked_up() {
    let Some((_db, store)) = store("crud") else {
        return;
    };
    let ems = store
        .create("ExtManagementSystem", attrs(&[("name", s("vc1"))]))
        .expect("ems");
    assert_eq!(ems.id, REGION_BASE + 1, "region 1, first of its sequence");
    let host = store
        .create(
            "Host",
            attrs(&[
                ("name", s("esx1")),
                ("ems_id", AttrValue::Int(ems.id)),
                ("ems_ref", s("host-1")),
            ]),
        )
        .expect("host");
    // Keys lower-cased, order kept (z before a), every kind of value.
    let vm = store
        .create(
            "Vm",
            attrs(&[
                ("Zeta", s("z")),
                ("name", s("vm1")),
                ("alpha", AttrValue::Int(1)),
                ("ems_id", AttrValue::Int(ems.id)),
                ("uid_ems", s("4201-abcd")),
                ("ems_ref", s("vm-1")),
                ("host_id", AttrValue::Int(host.id)),
                ("power", AttrValue::Symbol("on".into())),
            ]),
        )
        .expect("vm");
    let event = store
        .create(
            "EmsEvent",
            attrs(&[
                ("event_type", s("VmPoweredOnEvent")),
                ("vm_or_template_id", AttrValue::Int(vm.id)),
                ("dedup_key", s("k1")),
            ]),
        )
        .expect("event");

    let loaded = store
        .load("VmOrTemplate", vm.id)
        .expect("load")
        .expect("there");
    assert_eq!(loaded.class, "Vm");
    let keys: Vec<&str> = loaded.attrs.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["zeta", "name", "alpha", "ems_id", "uid_ems", "ems_ref", "host_id", "power"]
    );

    // (class asked for, id, found as)
    let finds: &[(&str, i64, Option<&str>)] = &[
        ("EventStream", event.id, Some("EmsEvent")),
        ("EmsEvent", event.id, Some("EmsEvent")),
        ("VmOrTemplate", vm.id, Some("Vm")),
        ("Vm", vm.id, Some("Vm")),
        ("Host", host.id, Some("Host")),
        ("Host", vm.id + 1000, None),
        ("NoSuchClass", vm.id, None),
    ];
    for (class, id, found) in finds {
        let got = store.find(class, *id).expect("find");
        assert_eq!(got.as_ref().map(|r| &*r.class), *found, "{class} {id}");
    }
    assert!(matches!(
        store.load("NoSuchClass", 1),
        Err(StoreError::UnknownClass(_))
    ));

    // (object, attribute, answer)
    let attributes: Vec<(&VmdbRef, &str, Option<AttrValue>)> = vec![
        (&vm, "name", Some(s("vm1"))),
        (&vm, "NAME", Some(s("vm1"))),
        (&vm, "id", Some(AttrValue::Int(vm.id))),
        (&vm, "power", Some(AttrValue::Symbol("on".into()))),
        (&vm, "host", Some(AttrValue::Object(host.clone()))),
        (
            &vm,
            "ext_management_system",
            Some(AttrValue::Object(ems.clone())),
        ),
        (
            &host,
            "vms",
            Some(AttrValue::Array(vec![AttrValue::Object(vm.clone())])),
        ),
        (&event, "vm", Some(AttrValue::Object(vm.clone()))),
        (&event, "host", Some(AttrValue::Nil)),
        (&vm, "nonsense", None),
    ];
    for (obj, name, want) in attributes {
        assert_eq!(
            store.attribute(obj, name).expect("attribute"),
            want,
            "{name}"
        );
    }

    store.update(&vm, "name", s("vm1-renamed")).expect("update");
    store.update(&vm, "New", AttrValue::Int(9)).expect("update");
    let loaded = store.load("Vm", vm.id).expect("load").expect("there");
    assert_eq!(loaded.attrs.get("name"), Some(&s("vm1-renamed")));
    assert_eq!(loaded.attrs.keys().nth(1).map(String::as_str), Some("name"));
    assert_eq!(loaded.attrs.keys().last().map(String::as_str), Some("new"));
    assert!(matches!(
        store.update(
            &VmdbRef {
                class: Arc::from("Vm"),
                id: 5
            },
            "name",
            s("x")
        ),
        Err(StoreError::NotFound(_, 5))
    ));

    // (class, attribute, value, ids)
    let finds_by: Vec<(&str, &str, AttrValue, Vec<i64>)> = vec![
        ("Vm", "name", s("vm1-renamed"), vec![vm.id]),
        ("Vm", "name", s("vm1"), vec![]),
        ("Host", "ems_id", AttrValue::Int(ems.id), vec![host.id]),
        ("Host", "ems_id", s(&ems.id.to_string()), vec![]),
        ("EventStream", "dedup_key", s("k1"), vec![event.id]),
        (
            "EmsEvent",
            "event_type",
            s("VmPoweredOnEvent"),
            vec![event.id],
        ),
        ("VmOrTemplate", "alpha", AttrValue::Int(1), vec![vm.id]),
        (
            "VmOrTemplate",
            "power",
            AttrValue::Symbol("on".into()),
            vec![vm.id],
        ),
        ("VmOrTemplate", "power", s("on"), vec![]),
        ("Nope", "name", s("vm1"), vec![]),
    ];
    for (class, attr, value, want) in finds_by {
        let got = store.find_by(class, attr, &value).expect("find_by");
        assert_eq!(ids(&got), want, "{class}.{attr} = {value:?}");
    }

    // (class, ems_id, reference, found)
    let refs: Vec<(&str, i64, &str, Option<i64>)> = vec![
        ("Vm", ems.id, "vm-1", Some(vm.id)),
        ("VmOrTemplate", ems.id, "4201-abcd", Some(vm.id)),
        ("Vm", ems.id + 1, "vm-1", None),
        ("Host", ems.id, "host-1", Some(host.id)),
        ("Host", ems.id, "vm-1", None),
    ];
    for (class, ems_id, r, want) in refs {
        let got = store.find_by_ems_ref(class, ems_id, r).expect("ref");
        assert_eq!(got.map(|r| r.id), want, "{class} {r}");
    }

    assert_eq!(
        ids(&store.list("EventStream").expect("list")),
        vec![event.id]
    );
    assert_eq!(store.list("Vm").expect("list")[0].class.as_ref(), "Vm");
    assert_eq!(store.count().expect("count"), 4);
}

#[test]
fn a_units_reads_see_its_writes_others_only_after_commit_with_savepoints() {
    let Some((_db, store)) = store("unit") else {
        return;
    };
    let kept = store
        .create("Vm", attrs(&[("name", s("kept"))]))
        .expect("vm");
    let unit = store.clone().begin_unit();
    let view = unit.objects();
    let other = store.clone().begin_unit();
    let first = view
        .create("Vm", attrs(&[("name", s("first"))]))
        .expect("create");
    assert!(view.find("Vm", first.id).expect("find").is_some());
    assert_eq!(
        ids(&view.find_by("Vm", "name", &s("first")).unwrap()),
        vec![first.id]
    );
    assert_eq!(store.find("Vm", first.id).expect("find"), None);
    assert_eq!(other.objects().find("Vm", first.id).expect("find"), None);

    let outer = view.savepoint().expect("savepoint");
    view.update(&first, "name", s("changed")).expect("update");
    view.update(&kept, "note", s("x")).expect("update");
    let inner = view.savepoint().expect("savepoint");
    let gone = view
        .create("Vm", attrs(&[("name", s("gone"))]))
        .expect("create");
    view.update(&first, "name", s("changed twice"))
        .expect("update");
    view.rollback_to(inner);
    assert_eq!(view.find("Vm", gone.id).expect("find"), None);
    assert_eq!(view.attribute(&first, "name").unwrap(), Some(s("changed")));
    assert!(view.find_by("Vm", "name", &s("gone")).unwrap().is_empty());
    view.rollback_to(outer);
    assert_eq!(view.attribute(&first, "name").unwrap(), Some(s("first")));
    assert_eq!(view.attribute(&kept, "note").unwrap(), None);
    let sp = view.savepoint().expect("savepoint");
    view.update(&kept, "note", s("y")).expect("update");
    view.release_savepoint(sp);
    // The table changed under the unit: its change merges with it.
    store
        .update(&kept, "other", AttrValue::Int(2))
        .expect("update");

    unit.commit().expect("commit");
    let mut names: Vec<String> = store
        .list("Vm")
        .unwrap()
        .iter()
        .map(|r| store.attribute(r, "name").unwrap().unwrap().to_text())
        .collect();
    names.sort();
    assert_eq!(names, ["first", "kept"]);
    assert_eq!(store.attribute(&kept, "note").unwrap(), Some(s("y")));
    assert_eq!(
        store.attribute(&kept, "other").unwrap(),
        Some(AttrValue::Int(2))
    );
    assert!(other.objects().find("Vm", first.id).unwrap().is_some());
    assert_eq!(ObjectStore::savepoint(&*store), None);
}

/// An event queue recording what it was asked to ack.
#[derive(Debug, Default)]
struct Acks(Mutex<Vec<u64>>);

impl EventQueue for Acks {
    fn enqueue_owned(&self, _: Vec<CaughtEvent>) -> Result<Vec<u64>, StoreError> {
        Ok(Vec::new())
    }
    fn enqueue_caught(&self, _: &[CaughtEvent]) -> Result<Vec<u64>, StoreError> {
        Ok(Vec::new())
    }
    fn claim(&self, _: usize) -> Result<Claim, StoreError> {
        Err(StoreError::Backend("not a real queue".into()))
    }
    fn ack(&self, ids: &[u64]) -> Result<usize, StoreError> {
        self.0.lock().unwrap().extend_from_slice(ids);
        Ok(ids.len())
    }
    fn acked(&self, _: usize) {}
    fn release(&self, _: &[u64]) {}
    fn release_leases(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn depth(&self) -> u64 {
        0
    }
}

use automate_vmdb::event_queue::EventQueue;

fn event(key: &str) -> Attributes {
    attrs(&[
        ("event_type", s("VmPoweredOnEvent")),
        ("chain_id", s("")),
        ("dedup_key", s(key)),
        (
            "full_data",
            s("{\"some\":\"payload of a few dozen bytes, as events carry\"}"),
        ),
    ])
}

#[test]
fn a_hand_over_commits_all_or_nothing_and_acks_only_after_its_commit() {
    let Some((db, store)) = store("handover") else {
        return;
    };
    let acks = Arc::new(Acks::default());
    let units = store.units(Some(acks.clone()));
    let unit = units.begin_unit();
    let view = unit.objects();
    let a = view.create("EmsEvent", event("a")).expect("create");
    let work = WorkItem::new("retry", serde_json::json!({"n": 1}));
    let c = unit.hand_over(HandOver {
        schedule: vec![(work, SystemTime::now())],
        acks: vec![1, 2],
    });
    // Until it landed, the unit reads what it handed over.
    assert!(view.find("EventStream", a.id).unwrap().is_some());
    let scheduled = c.wait().expect("committed");
    assert_eq!(scheduled.len(), 1);
    unit.landed();
    assert_eq!(*acks.0.lock().unwrap(), vec![1, 2]);
    assert!(store.find("EventStream", a.id).unwrap().is_some());

    // Another node stores the same event ("b") first: this unit's batch
    // (b and c) fails whole, and acks nothing.
    let node2 = PgStore::open(crate::Pg::connect(&db.config(), db.handle()).expect("node 2"))
        .expect("open");
    node2
        .create("EmsEvent", event("b"))
        .expect("node 2 stores b");
    view.create("EmsEvent", event("b")).expect("buffered");
    let c_id = view.create("EmsEvent", event("c")).expect("buffered");
    let failed = unit.hand_over(HandOver {
        schedule: vec![(
            WorkItem::new("retry", serde_json::json!({})),
            SystemTime::now(),
        )],
        acks: vec![3],
    });
    let err = failed.wait().expect_err("duplicate dedup_key");
    assert!(err.to_string().contains("objects_dedup_key"), "{err}");
    assert_eq!(*acks.0.lock().unwrap(), vec![1, 2], "nothing more acked");
    assert_eq!(store.find("EventStream", c_id.id).unwrap(), None);
    assert_eq!(
        store
            .find_by("EventStream", "dedup_key", &s("b"))
            .unwrap()
            .len(),
        1
    );
    let sched = store.run(|pg| async move {
        let c = pg.client().await?;
        let n: i64 = c
            .query_one("SELECT count(*) FROM scheduled", &[])
            .await
            .map_err(sql_error)?
            .get(0);
        Ok(n)
    });
    assert_eq!(sched.unwrap(), 1, "the failed batch's retry is not stored");
    drop(unit);

    // Closed: later hand-overs fail.
    units.close();
    let unit = units.begin_unit();
    unit.objects()
        .create("EmsEvent", event("d"))
        .expect("buffered");
    assert!(unit.hand_over(HandOver::default()).wait().is_err());
}

#[test]
fn two_nodes_on_one_schema_see_each_others_commits_and_never_share_an_id() {
    let Some((db, one)) = store("two_nodes") else {
        return;
    };
    let two = PgStore::open(crate::Pg::connect(&db.config(), db.handle()).expect("node 2"))
        .expect("open");
    let mut made = Vec::new();
    for i in 0..60 {
        let (me, other) = if i % 2 == 0 {
            (&one, &two)
        } else {
            (&two, &one)
        };
        let r = me
            .create("Host", attrs(&[("name", s(&format!("h{i}")))]))
            .expect("create");
        assert!(
            other.find("Host", r.id).unwrap().is_some(),
            "seen by the other node"
        );
        made.push(r.id);
    }
    let mut unique = made.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), made.len());
    let units = two.units(None);
    let unit = units.begin_unit();
    let e = unit
        .objects()
        .create("EmsEvent", event("x"))
        .expect("create");
    unit.hand_over(HandOver::default()).wait().expect("commit");
    assert!(one.find("EmsEvent", e.id).unwrap().is_some());
    assert_eq!(one.list("Host").unwrap().len(), 60);
}

/// A filtered page goes on past rows it cannot decode (a chunk of them
/// once made it read the same chunk for ever).
#[test]
fn a_filtered_page_moves_past_rows_it_cannot_decode() {
    let Some((db, store)) = store("pages_bad") else {
        return;
    };
    let unit = store.clone().begin_unit();
    for i in 0..300 {
        let kind = if i == 0 { "RARE" } else { "COMMON" };
        unit.objects()
            .create(
                "EmsEvent",
                attrs(&[("event_type", s(kind)), ("n", AttrValue::Int(i))]),
            )
            .expect("create");
    }
    unit.commit().expect("commit");
    // The 299 newest rows damaged: a JSON array where an object belongs.
    let pg = db.pg();
    let p = pg.clone();
    let damaged = pg
        .block(async move {
            let c = p.client().await.expect("client");
            c.execute(
                "UPDATE objects SET attrs = '[1]'::json WHERE k_event_type = 'COMMON'",
                &[],
            )
            .await
            .expect("update")
        })
        .expect("runtime");
    assert_eq!(damaged, 299);
    let rare = |o: &StoredObject| o.attrs.get("event_type") == Some(&s("RARE"));
    let page = store
        .page(
            "EventStream",
            PageQuery {
                offset: 0,
                limit: 5,
                newest_first: true,
            },
            Some(&rare),
        )
        .expect("page");
    let ns: Vec<Option<&AttrValue>> = page.rows.iter().map(|(_, o)| o.attrs.get("n")).collect();
    assert_eq!(ns, vec![Some(&AttrValue::Int(0))]);
    assert_eq!(page.decoded, 300);
}

#[test]
fn pages_read_one_snapshot_oldest_or_newest_first_filtered_or_not() {
    let Some((_db, store)) = store("pages") else {
        return;
    };
    let unit = store.clone().begin_unit();
    for i in 0..600 {
        let kind = if i % 10 == 0 { "RARE" } else { "COMMON" };
        unit.objects()
            .create(
                "EmsEvent",
                attrs(&[("event_type", s(kind)), ("n", AttrValue::Int(i))]),
            )
            .expect("create");
    }
    unit.commit().expect("commit");
    let n_of = |o: &StoredObject| match o.attrs.get("n") {
        Some(AttrValue::Int(n)) => *n,
        _ => -1,
    };
    let q = |offset, limit, newest_first| PageQuery {
        offset,
        limit,
        newest_first,
    };
    // (query, total, decoded, n of the rows)
    let cases: Vec<(PageQuery, usize, Vec<i64>)> = vec![
        (q(0, 1, true), 1, vec![599]),
        (q(500, 3, false), 3, vec![500, 501, 502]),
        (q(598, 10, false), 2, vec![598, 599]),
        (q(0, 0, false), 0, vec![]),
        (q(597, usize::MAX, false), 3, vec![597, 598, 599]),
    ];
    for (query, decoded, want) in cases {
        let p = store.page("EventStream", query, None).expect("page");
        assert_eq!(p.total, 600);
        assert_eq!(p.decoded, decoded, "{query:?}");
        assert_eq!(
            p.rows.iter().map(|(_, o)| n_of(o)).collect::<Vec<_>>(),
            want
        );
    }
    let rare = |o: &StoredObject| o.attrs.get("event_type") == Some(&s("RARE"));
    let p = store
        .page("EventStream", q(2, 3, true), Some(&rare))
        .expect("page");
    assert_eq!(
        p.rows.iter().map(|(_, o)| n_of(o)).collect::<Vec<_>>(),
        vec![570, 560, 550]
    );
    assert_eq!(p.decoded, 50, "rows 599..=550 and no further");
    assert!(matches!(
        store.page("Nope", q(0, 1, false), None),
        Err(StoreError::UnknownClass(_))
    ));
}

/// What a unit of 500 events costs: the handler's reads (the dedup lookup,
/// the provider, its VM by reference, the VM's attributes) and writes (one
/// event each, a VM update), and the commit. Prints the figures.
#[test]
fn a_unit_of_500_events_is_read_and_committed_in_a_few_round_trips() {
    let Some(db) = TestDb::new("five_hundred") else {
        return;
    };
    // A pool of its own, named, so its server processes' CPU can be read.
    let mut config = db.config();
    config.url = format!("{} application_name=pgstore_500", config.url);
    let store =
        PgStore::open(crate::Pg::connect(&config, db.handle()).expect("connect")).expect("open");
    let ems = store
        .create("ExtManagementSystem", attrs(&[("name", s("vc"))]))
        .unwrap();
    let mut vms = Vec::new();
    for i in 0..20 {
        vms.push(
            store
                .create(
                    "Vm",
                    attrs(&[
                        ("name", s(&format!("vm{i}"))),
                        ("ems_id", AttrValue::Int(ems.id)),
                        ("ems_ref", s(&format!("vm-{i}"))),
                    ]),
                )
                .unwrap(),
        );
    }
    let units = store.units(None);
    let unit = units.begin_unit();
    let view = unit.objects();
    for round in 0..3 {
        let started = Instant::now();
        let server = server_cpu_ms(&store, "pgstore_500");
        let trips = store.round_trips();
        for i in 0..500 {
            let key = format!("r{round}-e{i}");
            assert!(view
                .find_by("EventStream", "dedup_key", &s(&key))
                .unwrap()
                .is_empty());
            let vm = view
                .find_by_ems_ref("VmOrTemplate", ems.id, &format!("vm-{}", i % 20))
                .unwrap()
                .expect("vm");
            assert!(view.attribute(&vm, "name").unwrap().is_some());
            assert!(view.attribute(&vm, "ems").unwrap().is_some());
            let sp = view.savepoint().unwrap();
            let mut a = event(&key);
            a.insert("vm_or_template_id".into(), AttrValue::Int(vm.id));
            a.insert("ems_id".into(), AttrValue::Int(ems.id));
            view.create("EmsEvent", a).unwrap();
            view.update(&vm, "last_event", s(&key)).unwrap();
            view.release_savepoint(sp);
        }
        let handled = started.elapsed();
        let trips = store.round_trips() - trips;
        // One per event (its dedup lookup: a miss is not remembered), ids
        // in blocks of 50, each of the 20 VMs and the provider read once a
        // batch.
        assert!(trips <= 500 + 10 + 20 + 1, "{trips} round trips");
        let t = Instant::now();
        unit.hand_over(HandOver::default()).wait().expect("commit");
        unit.landed();
        let committed = t.elapsed();
        let server = server_cpu_ms(&store, "pgstore_500") - server;
        eprintln!(
            "500 events: {trips} round trips; handling reads+writes {:?} ({:.0} µs/event), commit {:?} ({:.0} µs/event); server CPU {server} ms ({} µs/event)",
            handled,
            handled.as_micros() as f64 / 500.0,
            committed,
            committed.as_micros() as f64 / 500.0,
            server * 1000 / 500
        );
    }
    assert_eq!(store.list("EventStream").unwrap().len(), 1500);
    assert_eq!(
        store.attribute(&vms[0], "last_event").unwrap(),
        Some(s("r2-e480"))
    );
}

/// The finders' statements use their indexes as generic plans (a
/// prepared statement's plan after its fifth run, the base class a
/// parameter) on a table never analyzed (a new cluster's, growing fast):
/// (statement, parameters, index).
#[test]
fn the_finders_use_their_indexes_in_generic_plans() {
    let Some((db, store)) = store("plans") else {
        return;
    };
    let unit = store.clone().begin_unit();
    for i in 0..1500 {
        let mut a = event(&format!("k{i}"));
        a.insert("vm_or_template_id".into(), AttrValue::Int(i % 20));
        unit.objects().create("EmsEvent", a).expect("create");
    }
    for i in 0..50 {
        unit.objects()
            .create(
                "Vm",
                attrs(&[
                    ("name", s(&format!("vm{i}"))),
                    ("ems_ref", s(&format!("vm-{i}"))),
                ]),
            )
            .expect("create");
    }
    unit.commit().expect("commit");
    let cases: Vec<(String, &str, Vec<&str>)> = vec![
        (
            finder_sql("dedup_key"),
            "'EventStream', 'k5'",
            vec!["objects_dedup_key"],
        ),
        (
            finder_sql("name"),
            "'VmOrTemplate', 'vm5'",
            vec!["objects_name"],
        ),
        (
            finder_sql("vm_or_template_id"),
            "'EventStream', '5'",
            vec!["objects_vm_or_template_id"],
        ),
        (
            ref_sql(),
            "'VmOrTemplate', 'vm-5'",
            vec!["objects_ems_ref", "objects_uid_ems"],
        ),
    ];
    let pg = db.pg();
    for (i, (sql, params, indexes)) in cases.into_iter().enumerate() {
        let prepare = format!(
            "SET plan_cache_mode = force_generic_plan;
             PREPARE q{i}(text, text) AS {sql};"
        );
        let explain = format!("EXPLAIN EXECUTE q{i}({params})");
        let plan: Vec<String> = pg
            .block({
                let pg = pg.clone();
                async move {
                    let c = pg.client().await.expect("client");
                    c.batch_execute(&prepare).await.expect("prepare");
                    let rows = c.query(&explain, &[]).await.expect("explain");
                    c.batch_execute(&format!("DEALLOCATE q{i}; RESET ALL"))
                        .await
                        .expect("reset");
                    rows.iter().map(|r| r.get::<_, String>(0)).collect()
                }
            })
            .expect("runtime");
        for index in indexes {
            assert!(
                plan.iter().any(|l| l.contains(&format!("using {index} "))),
                "{sql}: {index}: {plan:#?}"
            );
        }
    }
}

/// The CPU time (user + system, ms) of the server processes of the
/// connections named `app` (`application_name`), from /proc (Linux; the
/// server on this machine). 0 where it cannot be read.
fn server_cpu_ms(store: &PgStore, app: &str) -> u64 {
    let app = app.to_string();
    let pids: Vec<i32> = store
        .run(move |pg| async move {
            let c = pg.client().await?;
            let rows = c
                .query(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                    &[&app],
                )
                .await
                .map_err(sql_error)?;
            Ok(rows.iter().map(|r| r.get::<_, i32>(0)).collect())
        })
        .unwrap_or_default();
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10
        })
        .sum()
}

/// What the API reaches beyond the objects: its scheduled work (on the
/// same schema), the path naming the database, no file backup, a unit of
/// work committed whole.
#[test]
fn the_served_store_names_its_database_and_schedules_on_it() {
    let Some((db, store)) = store("served") else {
        return;
    };
    let path = ServedStore::path(&*store).display().to_string();
    assert!(
        path.starts_with("postgresql://127.0.0.1/test#t_served_"),
        "{path}"
    );
    let err = store.backup(Path::new("/tmp/x")).expect_err("no backup");
    assert!(
        err.to_string()
            .contains(&format!("pg_dump --schema {}", db.pg().schema())),
        "{err}"
    );
    assert!(ServedStore::health(&*store).is_ok());
    let work = store.scheduled_work();
    let id = work
        .schedule(
            &WorkItem::new("request", serde_json::json!({"n": 1})),
            SystemTime::now(),
        )
        .expect("schedule");
    assert_eq!(work.len().expect("len"), 1);
    assert!(work.get(id).expect("get").is_some());
    let unit = store.clone().begin_unit();
    let a = unit
        .objects()
        .create("MiqRequest", attrs(&[("state", s("pending"))]))
        .unwrap();
    let b = unit
        .objects()
        .create(
            "MiqRequestTask",
            attrs(&[("miq_request_id", AttrValue::Int(a.id))]),
        )
        .unwrap();
    assert_eq!(store.find("MiqRequest", a.id).unwrap(), None);
    unit.commit().expect("commit");
    assert_eq!(
        store.attribute(&a, "miq_request_tasks").unwrap(),
        Some(AttrValue::Array(vec![AttrValue::Object(VmdbRef {
            class: Arc::from("MiqRequestTask"),
            id: b.id
        })]))
    );
}

/// Two nodes handle the same 200 events at once, in batches of 20, as the
/// handler does (look the dedup key up, store the event when it is not
/// there), a failed batch handled again in a new unit (its events
/// redelivered): every event is stored exactly once.
#[test]
fn two_nodes_storing_the_same_events_at_once_store_each_once() {
    let Some((db, one)) = store("exactly_once") else {
        return;
    };
    let two = PgStore::open(crate::Pg::connect(&db.config(), db.handle()).expect("node 2"))
        .expect("open");
    let keys: Vec<String> = (0..200).map(|i| format!("e{i}")).collect();
    let run = |store: Arc<PgStore>, keys: Vec<String>| {
        std::thread::spawn(move || {
            let units = store.units(None);
            let mut failed_batches = 0;
            for batch in keys.chunks(20) {
                loop {
                    let unit = units.begin_unit();
                    let view = unit.objects();
                    for k in batch {
                        let found = view
                            .find_by("EventStream", "dedup_key", &s(k))
                            .expect("lookup");
                        if found.is_empty() {
                            view.create("EmsEvent", event(k)).expect("create");
                        }
                    }
                    match unit.hand_over(HandOver::default()).wait() {
                        Ok(_) => break,
                        Err(_) => failed_batches += 1,
                    }
                }
            }
            failed_batches
        })
    };
    let mut reversed = keys.clone();
    reversed.reverse();
    let a = run(one.clone(), keys.clone());
    let b = run(two, reversed);
    let failed = a.join().expect("node 1") + b.join().expect("node 2");
    let stored = one.list("EventStream").expect("list");
    assert_eq!(
        stored.len(),
        200,
        "({failed} batches failed and were handled again)"
    );
    for k in &keys {
        assert_eq!(
            one.find_by("EventStream", "dedup_key", &s(k))
                .unwrap()
                .len(),
            1,
            "{k}"
        );
    }
}

/// A string with a NUL (which a PostgreSQL text cannot hold) is stored in
/// the json and found by a scan; the other objects stay indexed.
#[test]
fn strings_with_a_nul_are_stored_and_found() {
    let Some((_db, store)) = store("nul") else {
        return;
    };
    let odd = "a\0b";
    let r = store
        .create(
            "EmsEvent",
            attrs(&[("dedup_key", s(odd)), ("name", s(odd))]),
        )
        .expect("create");
    assert_eq!(store.attribute(&r, "name").unwrap(), Some(s(odd)));
    assert_eq!(
        ids(&store.find_by("EventStream", "dedup_key", &s(odd)).unwrap()),
        vec![r.id]
    );
    let unit = store.clone().begin_unit();
    let mine = unit
        .objects()
        .create("EmsEvent", attrs(&[("name", s(odd))]))
        .unwrap();
    assert_eq!(
        ids(&unit
            .objects()
            .find_by("EventStream", "name", &s(odd))
            .unwrap()),
        vec![r.id, mine.id]
    );
    unit.commit().expect("commit");
    assert_eq!(
        store.find_by("EventStream", "name", &s(odd)).unwrap().len(),
        2
    );
}

/// An object stored with its own id (an import) is replaced by a second
/// insert, and the sequence moves past it: a node's next block starts
/// after it.
#[test]
fn objects_inserted_with_their_id_move_the_sequence_past_it() {
    let Some((db, store)) = store("insert") else {
        return;
    };
    let id = REGION_BASE + 500;
    store
        .insert("Host", id, attrs(&[("Name", s("old"))]))
        .expect("insert");
    let r = store
        .insert(
            "Host",
            id,
            attrs(&[("name", s("imported")), ("ems_ref", s("h-1"))]),
        )
        .expect("replace");
    assert_eq!(store.attribute(&r, "name").unwrap(), Some(s("imported")));
    assert_eq!(
        ids(&store.find_by("Host", "ems_ref", &s("h-1")).unwrap()),
        vec![id]
    );
    let fresh = PgStore::open(db.pg()).expect("open");
    let next = fresh
        .create("Host", attrs(&[("name", s("new"))]))
        .expect("create");
    assert!(next.id > id, "{} after {id}", next.id);
}

#[test]
fn a_units_delete_is_seen_by_it_at_once_and_by_others_after_commit() {
    let Some((_db, store)) = store("delete") else {
        return;
    };
    automate_vmdb::testing::check_delete(store).unwrap();
}

#[test]
fn workers_tagging_one_vm_in_their_own_units_keep_every_tag() {
    let Some((_db, store)) = store("tagging") else {
        return;
    };
    automate_vmdb::testing::check_concurrent_tagging(store, 8).unwrap();
}

/// Two nodes (two stores on one schema) modifying one VM's attribute at
/// once through their own units: both changes are kept.
#[test]
fn two_nodes_modifying_one_attribute_keep_both_changes() {
    let Some((db, a)) = store("modify_nodes") else {
        return;
    };
    let b = PgStore::open(db.pg()).expect("second node");
    let vm = a.create("Vm", attrs(&[("name", s("shared"))])).expect("vm");
    let push = |item: &'static str| {
        automate_vmdb::AttrChange::new(move |v| {
            let mut items = match v {
                Some(AttrValue::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            items.push(AttrValue::str(item));
            AttrValue::Array(items)
        })
    };
    let ua = ServedStore::begin_unit(a.clone());
    let ub = ServedStore::begin_unit(b.clone());
    ua.objects().modify(&vm, "list", &push("a")).expect("a");
    ub.objects().modify(&vm, "list", &push("b")).expect("b");
    ua.commit().expect("commit a");
    ub.commit().expect("commit b");
    let Some(AttrValue::Array(items)) = a.attribute(&vm, "list").expect("read") else {
        panic!("no list");
    };
    assert_eq!(items, vec![AttrValue::str("a"), AttrValue::str("b")]);
    // The store's own modify (no unit) is one locked transaction too.
    b.modify(&vm, "list", &push("c")).expect("c");
    assert_eq!(
        a.modify(
            &VmdbRef {
                class: Arc::from("Vm"),
                id: vm.id + 99
            },
            "list",
            &push("x")
        ),
        Err(StoreError::NotFound("Vm".into(), vm.id + 99))
    );
}
