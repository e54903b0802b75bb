//! The durable object store and scheduled work on a real redb file:
//! ids, subclass lookups, provider-reference index, associations,
//! persistence across reopen, the schedule's claim/lease/complete cycle, and
//! a child process SIGKILLed mid-write leaving a consistent file.

use automate_engine::datatype::convert;
use automate_engine::{AttrValue, Attributes};
use automate_redb::{RedbSchedule, RedbStore};
use automate_vmdb::{ObjectStore, StoreError, VmdbRef, WorkItem};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ID1: i64 = 1_000_000_000_001;
const ID2: i64 = 1_000_000_000_002;
const ID3: i64 = 1_000_000_000_003;

fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn s(v: &str) -> AttrValue {
    AttrValue::str(v)
}

fn store_in(dir: &Path) -> RedbStore {
    RedbStore::open(dir.join("automate.redb")).expect("open store")
}

/// An ems, a host on it and a vm on the host: (ems, host, vm).
fn provider_tree(store: &RedbStore) -> (VmdbRef, VmdbRef, VmdbRef) {
    let ems = store
        .create(
            "ExtManagementSystem",
            attrs(&[("name", s("vc1")), ("hostname", s("vc1.example.com"))]),
        )
        .unwrap();
    let host = store
        .create(
            "Host",
            attrs(&[
                ("name", s("esx1")),
                ("ems_id", AttrValue::Int(ems.id)),
                ("ems_ref", s("host-10")),
            ]),
        )
        .unwrap();
    let vm = store
        .create(
            "Vm",
            attrs(&[
                ("name", s("web01")),
                ("ems_id", AttrValue::Int(ems.id)),
                ("host_id", AttrValue::Int(host.id)),
                ("ems_ref", s("vm-42")),
                ("uid_ems", s("4201-aaaa")),
            ]),
        )
        .unwrap();
    (ems, host, vm)
}

#[test]
fn create_find_attribute_update_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let a = store
        .create(
            "Host",
            attrs(&[
                ("name", s("esx1")),
                ("Power_State", s("on")),
                ("cpus", AttrValue::Int(16)),
                (
                    "tags",
                    AttrValue::Array(vec![s("a"), AttrValue::Symbol("b".into())]),
                ),
            ]),
        )
        .unwrap();
    let b = store.create("Host", attrs(&[("name", s("esx2"))])).unwrap();
    assert_eq!((a.id, b.id), (ID1, ID2));
    assert_eq!(&*a.class, "Host");

    let found = store
        .find("host", ID1)
        .unwrap()
        .expect("found by lower-case class");
    assert_eq!(found, a);
    assert!(store.find("Host", ID3).unwrap().is_none());
    assert!(
        store.find("Vm", ID1).unwrap().is_none(),
        "another base class"
    );
    assert!(store.find("Nonsense", ID1).unwrap().is_none());

    assert_eq!(store.attribute(&a, "name").unwrap(), Some(s("esx1")));
    assert_eq!(store.attribute(&a, "NAME").unwrap(), Some(s("esx1")));
    assert_eq!(
        store.attribute(&a, "power_state").unwrap(),
        Some(s("on")),
        "keys are lower-cased"
    );
    assert_eq!(
        store.attribute(&a, "cpus").unwrap(),
        Some(AttrValue::Int(16))
    );
    assert_eq!(
        store.attribute(&a, "tags").unwrap(),
        Some(AttrValue::Array(vec![
            s("a"),
            AttrValue::Symbol("b".into())
        ]))
    );
    assert_eq!(
        store.attribute(&a, "id").unwrap(),
        Some(AttrValue::Int(ID1))
    );
    assert_eq!(store.attribute(&a, "no_such_column").unwrap(), None);

    store.update(&a, "Name", s("esx1-renamed")).unwrap();
    store
        .update(&a, "maintenance", AttrValue::Bool(true))
        .unwrap();
    assert_eq!(
        store.attribute(&a, "name").unwrap(),
        Some(s("esx1-renamed"))
    );
    assert_eq!(
        store.attribute(&a, "maintenance").unwrap(),
        Some(AttrValue::Bool(true))
    );
    let loaded = store.load("Host", ID1).unwrap().unwrap();
    assert_eq!(
        loaded.attrs.keys().collect::<Vec<_>>(),
        ["name", "power_state", "cpus", "tags", "maintenance"],
        "update keeps attribute order"
    );

    // `name` is answered from the attribute index, which follows updates.
    assert_eq!(
        store.find_by("Host", "name", &s("esx2")).unwrap(),
        vec![b.clone()]
    );
    assert!(store
        .find_by("Host", "name", &s("esx9"))
        .unwrap()
        .is_empty());
    assert!(store
        .find_by("Host", "name", &s("esx1"))
        .unwrap()
        .is_empty());
    assert_eq!(
        store.find_by("Host", "NAME", &s("esx1-renamed")).unwrap(),
        vec![a.clone()]
    );
    assert!(
        store
            .find_by("Host", "name", &AttrValue::Int(1))
            .unwrap()
            .is_empty(),
        "typed"
    );
    // Other attributes are scanned.
    assert_eq!(
        store.find_by("Host", "cpus", &AttrValue::Int(16)).unwrap(),
        vec![a.clone()]
    );
    assert!(store.find_by("Host", "cpus", &s("16")).unwrap().is_empty());

    let missing = VmdbRef {
        class: Arc::from("Host"),
        id: ID3,
    };
    assert_eq!(
        store.update(&missing, "name", s("x")),
        Err(StoreError::NotFound("Host".into(), ID3))
    );
    assert!(matches!(
        store.create("Spaceship", Attributes::default()),
        Err(StoreError::UnknownClass(_))
    ));
    // A failed create does not consume an id.
    let c = store.create("Host", Attributes::default()).unwrap();
    assert_eq!(c.id, ID3);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn subclasses_are_found_through_their_base_class() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let ev = store
        .create(
            "EmsEvent",
            attrs(&[
                ("event_type", s("USER_RUN_VM")),
                ("source", s("RHEVM")),
                ("event_namespace", s("ems")),
            ]),
        )
        .unwrap();
    let miq = store
        .create("MiqEvent", attrs(&[("event_type", s("vm_start"))]))
        .unwrap();
    let found = store.find("EventStream", ev.id).unwrap().unwrap();
    assert_eq!(&*found.class, "EmsEvent", "the stored class comes back");
    assert_eq!(store.attribute(&found, "source").unwrap(), Some(s("RHEVM")));
    assert_eq!(
        &*store.find("EventStream", miq.id).unwrap().unwrap().class,
        "MiqEvent"
    );
    assert_eq!(
        &*store
            .find("event_stream".replace('_', "").as_str(), miq.id)
            .unwrap()
            .unwrap()
            .class,
        "MiqEvent"
    );
    assert_eq!(
        store
            .find_by("EventStream", "event_type", &s("vm_start"))
            .unwrap(),
        vec![miq.clone()]
    );
    assert_eq!(store.list("EventStream").unwrap(), vec![ev.clone(), miq]);

    // The engine's vmdb datatypes read the store.
    let as_obj = convert(&store, s(&ev.id.to_string()), "EventStream").unwrap();
    assert_eq!(as_obj, AttrValue::Object(ev.clone()));
    assert!(convert(&store, s("1000000000999"), "EventStream").is_err());
}

#[test]
fn ems_ref_index_follows_creates_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let (ems, host, vm) = provider_tree(&store);
    assert_eq!(
        store
            .find_by_ems_ref("VmOrTemplate", ems.id, "vm-42")
            .unwrap(),
        Some(vm.clone())
    );
    assert_eq!(
        store.find_by_ems_ref("Vm", ems.id, "4201-aaaa").unwrap(),
        Some(vm.clone()),
        "uid_ems is indexed too"
    );
    assert_eq!(
        store.find_by_ems_ref("Host", ems.id, "host-10").unwrap(),
        Some(host.clone())
    );
    assert_eq!(
        store.find_by_ems_ref("Host", ems.id, "vm-42").unwrap(),
        None,
        "per base class"
    );
    assert_eq!(
        store.find_by_ems_ref("Vm", ems.id + 100, "vm-42").unwrap(),
        None,
        "per provider"
    );

    // Renaming the reference moves the index entry.
    store.update(&vm, "ems_ref", s("vm-43")).unwrap();
    assert_eq!(store.find_by_ems_ref("Vm", ems.id, "vm-42").unwrap(), None);
    assert_eq!(
        store.find_by_ems_ref("Vm", ems.id, "vm-43").unwrap(),
        Some(vm.clone())
    );
    assert_eq!(
        store.find_by_ems_ref("Vm", ems.id, "4201-aaaa").unwrap(),
        Some(vm.clone())
    );

    // Moving to another provider moves it too.
    let ems2 = store
        .create("ExtManagementSystem", attrs(&[("name", s("vc2"))]))
        .unwrap();
    store
        .update(&vm, "ems_id", AttrValue::Int(ems2.id))
        .unwrap();
    assert_eq!(store.find_by_ems_ref("Vm", ems.id, "vm-43").unwrap(), None);
    assert_eq!(
        store.find_by_ems_ref("Vm", ems2.id, "vm-43").unwrap(),
        Some(vm.clone())
    );

    // An object without ems_id is not indexed; setting it later indexes it.
    let orphan = store
        .create("Vm", attrs(&[("ems_ref", s("vm-77"))]))
        .unwrap();
    assert_eq!(store.find_by_ems_ref("Vm", ems.id, "vm-77").unwrap(), None);
    store
        .update(&orphan, "ems_id", AttrValue::Int(ems.id))
        .unwrap();
    assert_eq!(
        store.find_by_ems_ref("Vm", ems.id, "vm-77").unwrap(),
        Some(orphan.clone())
    );

    assert!(store.delete(&orphan).unwrap());
    assert!(!store.delete(&orphan).unwrap());
    assert_eq!(store.find_by_ems_ref("Vm", ems.id, "vm-77").unwrap(), None);
    assert!(store.find("Vm", orphan.id).unwrap().is_none());
    assert!(store
        .find_by("Vm", "ems_ref", &s("vm-77"))
        .unwrap()
        .is_empty());
    assert_eq!(
        store.find_by("Vm", "ems_ref", &s("vm-43")).unwrap(),
        vec![vm.clone()]
    );
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.ems_refs, 3, "host-10, vm-43, 4201-aaaa");
}

#[test]
fn associations_resolve_vm_to_host_to_ems() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let (ems, host, vm) = provider_tree(&store);

    let Some(AttrValue::Object(h)) = store.attribute(&vm, "host").unwrap() else {
        panic!("vm.host is not an object");
    };
    assert_eq!(h, host);
    let Some(AttrValue::Object(e)) = store.attribute(&h, "ext_management_system").unwrap() else {
        panic!("host.ext_management_system is not an object");
    };
    assert_eq!(e, ems);
    assert_eq!(store.attribute(&e, "name").unwrap(), Some(s("vc1")));
    assert_eq!(
        store.attribute(&vm, "ems").unwrap(),
        Some(AttrValue::Object(ems.clone()))
    );
    assert_eq!(
        store.attribute(&vm, "host_id").unwrap(),
        Some(AttrValue::Int(host.id))
    );

    // Has-many side.
    assert_eq!(
        store.attribute(&host, "vms").unwrap(),
        Some(AttrValue::Array(vec![AttrValue::Object(vm.clone())]))
    );
    assert_eq!(
        store.attribute(&ems, "hosts").unwrap(),
        Some(AttrValue::Array(vec![AttrValue::Object(host.clone())]))
    );

    // An event pointing at all three, and at a vm that is gone.
    let ev = store
        .create(
            "EmsEvent",
            attrs(&[
                ("event_type", s("VmPoweredOnEvent")),
                ("ems_id", AttrValue::Int(ems.id)),
                ("host_id", AttrValue::Int(host.id)),
                ("vm_or_template_id", AttrValue::Int(vm.id)),
                ("dest_vm_or_template_id", AttrValue::Int(ID1 + 999)),
                ("target_type", s("VmOrTemplate")),
                ("target_id", AttrValue::Int(vm.id)),
            ]),
        )
        .unwrap();
    assert_eq!(
        store.attribute(&ev, "vm").unwrap(),
        Some(AttrValue::Object(vm.clone()))
    );
    assert_eq!(
        store.attribute(&ev, "Vm_Or_Template").unwrap(),
        Some(AttrValue::Object(vm.clone()))
    );
    assert_eq!(
        store.attribute(&ev, "target").unwrap(),
        Some(AttrValue::Object(vm.clone()))
    );
    assert_eq!(
        store.attribute(&ev, "dest_vm").unwrap(),
        Some(AttrValue::Nil),
        "dangling id is nil"
    );
    assert_eq!(
        store.attribute(&ev, "dest_host").unwrap(),
        Some(AttrValue::Nil),
        "unset id is nil"
    );
    assert_eq!(
        store.attribute(&ev, "storage").unwrap(),
        None,
        "not an attribute of this object"
    );

    // Association attributes may hold objects too.
    let vm2 = store
        .create("Vm", attrs(&[("host_id", AttrValue::Object(host.clone()))]))
        .unwrap();
    assert_eq!(
        store.attribute(&vm2, "host").unwrap(),
        Some(AttrValue::Object(host))
    );
}

/// The association cases every backend answers the same way
/// (`automate_vmdb::associations`): run on a [`MemoryStore`] and a
/// [`RedbStore`] holding the same objects.
#[test]
fn associations_answer_the_same_on_memory_and_redb() {
    const EMS: i64 = 1_000_000_000_010;
    const HOST: i64 = 1_000_000_000_020;
    const HOST2: i64 = 1_000_000_000_021;
    const VM: i64 = 1_000_000_000_030;
    const VM2: i64 = 1_000_000_000_031;
    const TEMPLATE: i64 = 1_000_000_000_032;
    const STORAGE: i64 = 1_000_000_000_040;
    const EVENT: i64 = 1_000_000_000_050;
    const REQUEST: i64 = 1_000_000_000_060;
    const TASK: i64 = 1_000_000_000_070;
    const GONE: i64 = 1_000_000_000_999;
    let fixtures: Vec<(&str, i64, Attributes)> = vec![
        ("ExtManagementSystem", EMS, attrs(&[("name", s("vc1"))])),
        (
            "Host",
            HOST,
            attrs(&[("name", s("esx1")), ("ems_id", AttrValue::Int(EMS))]),
        ),
        ("Host", HOST2, attrs(&[("name", s("esx2"))])),
        (
            "Vm",
            VM,
            attrs(&[
                ("name", s("web01")),
                ("ems_id", AttrValue::Int(EMS)),
                ("host_id", AttrValue::Int(HOST)),
                ("storage_id", AttrValue::Int(STORAGE)),
            ]),
        ),
        (
            "Vm",
            VM2,
            // An id held as text, as a query argument stores it.
            attrs(&[("name", s("web02")), ("host_id", s(" 1000000000020 "))]),
        ),
        (
            "MiqTemplate",
            TEMPLATE,
            attrs(&[
                ("name", s("tpl")),
                ("ems_id", AttrValue::Int(EMS)),
                ("host_id", AttrValue::Int(HOST)),
                // A stored attribute wins over the association of that name.
                ("host", s("stored")),
            ]),
        ),
        ("Storage", STORAGE, attrs(&[("name", s("ds1"))])),
        (
            "EmsEvent",
            EVENT,
            attrs(&[
                ("event_type", s("VmPoweredOnEvent")),
                ("ems_id", AttrValue::Int(EMS)),
                ("vm_id", AttrValue::Int(VM)),
                ("dest_host_id", AttrValue::Int(GONE)),
                ("target_type", s("Host")),
                (
                    "target_id",
                    AttrValue::Object(VmdbRef {
                        class: Arc::from("Host"),
                        id: HOST2,
                    }),
                ),
            ]),
        ),
        ("AutomationRequest", REQUEST, attrs(&[])),
        (
            "AutomationTask",
            TASK,
            attrs(&[("miq_request_id", AttrValue::Int(REQUEST))]),
        ),
    ];
    let r = |class: &str, id: i64| VmdbRef {
        class: Arc::from(class),
        id,
    };
    let obj = |class: &str, id: i64| Some(AttrValue::Object(r(class, id)));
    let objs = |items: &[(&str, i64)]| {
        Some(AttrValue::Array(
            items
                .iter()
                .map(|(c, id)| AttrValue::Object(r(c, *id)))
                .collect(),
        ))
    };
    // (object's class as the caller names it, id, attribute, answer)
    let cases: Vec<(&str, i64, &str, Option<AttrValue>)> = vec![
        // belongs_to, named and generic.
        ("Vm", VM, "host", obj("Host", HOST)),
        ("VmOrTemplate", VM, "HOST", obj("Host", HOST)),
        ("Vm", VM, "ems", obj("ExtManagementSystem", EMS)),
        (
            "Vm",
            VM,
            "ext_management_system",
            obj("ExtManagementSystem", EMS),
        ),
        ("Vm", VM, "storage", obj("Storage", STORAGE)),
        ("Vm", VM2, "host", obj("Host", HOST)),
        ("Vm", VM2, "ems", Some(AttrValue::Nil)),
        ("Vm", VM2, "storage", None),
        ("Host", HOST, "ems", obj("ExtManagementSystem", EMS)),
        ("MiqTemplate", TEMPLATE, "host", Some(s("stored"))),
        ("EventStream", EVENT, "vm", obj("Vm", VM)),
        ("EmsEvent", EVENT, "vm_or_template", obj("Vm", VM)),
        ("EmsEvent", EVENT, "dest_host", Some(AttrValue::Nil)),
        ("EmsEvent", EVENT, "dest_vm", Some(AttrValue::Nil)),
        ("EmsEvent", EVENT, "miq_request", Some(AttrValue::Nil)),
        (
            "AutomationTask",
            TASK,
            "miq_request",
            obj("AutomationRequest", REQUEST),
        ),
        // Polymorphic.
        ("EmsEvent", EVENT, "target", obj("Host", HOST2)),
        ("Vm", VM, "target", None),
        // has_many, by id; subclasses included; the typed match of
        // `find_by` (VM2's id held as text is not one of them); `vms`
        // leaves templates out, as ManageIQ's (`vms_and_templates` and
        // `miq_templates` do not).
        (
            "Host",
            HOST,
            "vms_and_templates",
            objs(&[("Vm", VM), ("MiqTemplate", TEMPLATE)]),
        ),
        ("Host", HOST, "vms", objs(&[("Vm", VM)])),
        ("Host", HOST2, "vms", objs(&[])),
        ("ExtManagementSystem", EMS, "vms", objs(&[("Vm", VM)])),
        (
            "ExtManagementSystem",
            EMS,
            "miq_templates",
            objs(&[("MiqTemplate", TEMPLATE)]),
        ),
        ("ExtManagementSystem", EMS, "hosts", objs(&[("Host", HOST)])),
        (
            "ExtManagementSystem",
            EMS,
            "ems_events",
            objs(&[("EmsEvent", EVENT)]),
        ),
        (
            "MiqRequest",
            REQUEST,
            "miq_request_tasks",
            objs(&[("AutomationTask", TASK)]),
        ),
        ("Vm", VM, "vms", None),
        // Plain attributes, ids and absent objects.
        ("Vm", VM, "name", Some(s("web01"))),
        ("Vm", VM, "id", Some(AttrValue::Int(VM))),
        ("Vm", GONE, "host", None),
        ("Spaceship", VM, "host", None),
    ];

    let memory = automate_vmdb::MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let redb = store_in(dir.path());
    for (class, id, a) in &fixtures {
        memory.insert(class, *id, a.clone()).expect("known class");
        redb.insert(class, *id, a.clone()).unwrap();
    }
    let stores: [(&str, &dyn ObjectStore); 2] = [("memory", &memory), ("redb", &redb)];
    for (name, store) in stores {
        for (class, id, attr, want) in &cases {
            assert_eq!(
                store.attribute(&r(class, *id), attr).as_ref(),
                Ok(want),
                "{name}: {class}[{id}].{attr}"
            );
        }
        // Subclasses are found through their base class, with their class.
        assert_eq!(
            store.find("VmOrTemplate", TEMPLATE),
            Ok(Some(r("MiqTemplate", TEMPLATE))),
            "{name}"
        );
        assert_eq!(
            store.find("EventStream", EVENT),
            Ok(Some(r("EmsEvent", EVENT))),
            "{name}"
        );
        assert_eq!(
            store.find("Host", VM),
            Ok(None),
            "{name}: another base class"
        );
        assert_eq!(
            store.list("Vm"),
            Ok(vec![r("Vm", VM), r("Vm", VM2), r("MiqTemplate", TEMPLATE)]),
            "{name}"
        );
        assert_eq!(
            store
                .load("MiqTemplate", TEMPLATE)
                .map(|o| o.map(|o| o.class)),
            Ok(Some("MiqTemplate".to_string())),
            "{name}"
        );
        assert_eq!(store.load("Vm", GONE), Ok(None), "{name}");
        assert!(
            matches!(store.list("Spaceship"), Err(StoreError::UnknownClass(_))),
            "{name}"
        );
    }
}

#[test]
fn objects_and_sequences_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (ems, host, vm) = {
        let store = store_in(dir.path());
        provider_tree(&store)
    };
    // One sequence per base class, as in ManageIQ.
    assert_eq!((ems.id, host.id, vm.id), (ID1, ID1, ID1));
    let store = store_in(dir.path());
    assert_eq!(store.find("VmOrTemplate", vm.id).unwrap(), Some(vm.clone()));
    assert_eq!(store.attribute(&vm, "name").unwrap(), Some(s("web01")));
    assert_eq!(
        store.attribute(&vm, "host").unwrap(),
        Some(AttrValue::Object(host.clone()))
    );
    assert_eq!(
        store.find_by_ems_ref("Host", ems.id, "host-10").unwrap(),
        Some(host)
    );
    assert_eq!(store.next_id("Vm").unwrap(), ID2);
    let next = store.create("Vm", attrs(&[("name", s("web02"))])).unwrap();
    assert_eq!(next.id, ID2, "the sequence continues");
    let server = store
        .create("MiqServer", attrs(&[("name", s("EVM"))]))
        .unwrap();
    assert_eq!(server.id, ID1);

    // Explicit ids move the sequence past them.
    store
        .insert("Host", 1_000_000_000_500, attrs(&[("name", s("imported"))]))
        .unwrap();
    drop(store);
    let store = store_in(dir.path());
    assert_eq!(
        store.create("Host", Attributes::default()).unwrap().id,
        1_000_000_000_501
    );
    assert_eq!(store.count().unwrap(), 7);
    assert_eq!(store.next_id("VmOrTemplate").unwrap(), ID3);
    assert!(store.verify().unwrap().is_ok());

    // The file is locked while open.
    assert!(RedbStore::open(dir.path().join("automate.redb")).is_err());
}

#[test]
fn write_batch_is_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let (ems, _, _) = provider_tree(&store);
    let at = SystemTime::now();
    let (ev, work) = store
        .write_batch(|b| {
            let vm = b.create(
                "Vm",
                attrs(&[
                    ("name", s("new-vm")),
                    ("ems_id", AttrValue::Int(ems.id)),
                    ("ems_ref", s("vm-100")),
                ]),
            )?;
            // A batch sees its own writes, index included.
            assert_eq!(b.find_by_ems_ref("Vm", ems.id, "vm-100")?, Some(vm.clone()));
            let ev = b.create(
                "EmsEvent",
                attrs(&[
                    ("event_type", s("VmCreatedEvent")),
                    ("vm_or_template_id", AttrValue::Int(vm.id)),
                ]),
            )?;
            b.update(&ems, "last_event_id", AttrValue::Int(ev.id))?;
            let work = b.schedule(
                &WorkItem::new("ems_event", json!({"event_stream": ev.id})),
                at,
            )?;
            Ok((ev, work))
        })
        .unwrap();
    assert_eq!(
        store.attribute(&ems, "last_event_id").unwrap(),
        Some(AttrValue::Int(ev.id))
    );
    let sched = store.schedule();
    assert_eq!(
        sched.get(work).unwrap().unwrap().item.payload["event_stream"],
        json!(ev.id)
    );

    // A failing batch leaves nothing behind: no objects, no ids, no work.
    let before = (
        store.count().unwrap(),
        store.next_id("Vm").unwrap(),
        sched.len().unwrap(),
    );
    let err = store.write_batch(|b| {
        b.create("Vm", attrs(&[("name", s("doomed"))]))?;
        b.schedule(&WorkItem::new("x", json!(null)), at)?;
        b.update(
            &VmdbRef {
                class: Arc::from("Host"),
                id: 42,
            },
            "name",
            s("x"),
        )
    });
    assert!(matches!(err, Err(StoreError::NotFound(_, 42))));
    assert_eq!(
        (
            store.count().unwrap(),
            store.next_id("Vm").unwrap(),
            sched.len().unwrap()
        ),
        before
    );

    // Completing work in the same batch as its effects.
    store
        .write_batch(|b| {
            assert!(b.complete(work)?);
            b.update(&ev, "processed", AttrValue::Bool(true))
        })
        .unwrap();
    assert!(sched.is_empty().unwrap());
    assert_eq!(
        store.attribute(&ev, "processed").unwrap(),
        Some(AttrValue::Bool(true))
    );
}

/// Now, to the whole microsecond: the schedule keeps run-at times to the µs.
fn now_whole_micros() -> SystemTime {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    UNIX_EPOCH + Duration::from_micros(micros as u64)
}

/// Lease release after a crash, asserted by time: an item whose claimer
/// died before completing it (a worker thread that claimed it and ended)
/// is not handed out again while its lease runs, to the microsecond, also
/// after the store is reopened by a new process (claims commit durably
/// unless relaxed); it is handed out again, its attempt counted, as soon as
/// the lease has run out. The times are the schedule's own `now` values,
/// so nothing here depends on how fast the machine is.
#[test]
fn a_dead_claimers_item_comes_back_when_its_lease_runs_out_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("automate.redb");
    let now = now_whole_micros();
    let lease = Duration::from_secs(30);
    let expires = now + lease;
    let just_before = expires - Duration::from_micros(1);
    let id = {
        let store = RedbStore::open(&path).unwrap();
        let sched = store.schedule();
        let id = sched
            .schedule(&WorkItem::new("job", json!({"n": 1})), now)
            .unwrap();
        // The claimer takes it and dies without completing it.
        let claimer = sched.clone();
        let claimed = std::thread::spawn(move || claimer.claim_due(now, 10, lease).unwrap())
            .join()
            .unwrap();
        assert_eq!(
            claimed
                .iter()
                .map(|c| (c.id, c.attempts))
                .collect::<Vec<_>>(),
            vec![(id, 1)]
        );
        assert_eq!(claimed[0].lease_until, expires);
        // Right after the claim, and up to the last microsecond of the
        // lease: nobody else gets it.
        for at in [now, now + lease / 2, just_before] {
            assert!(sched.claim_due(at, 10, lease).unwrap().is_empty(), "{at:?}");
            assert!(sched.due(at, 10).unwrap().is_empty(), "{at:?}");
        }
        id
    };
    // A new process (the claimer's is gone): the lease still holds.
    let store = RedbStore::open(&path).unwrap();
    let sched = store.schedule();
    let held = sched.get(id).unwrap().expect("still scheduled");
    assert_eq!(
        (held.attempts, held.leased, held.run_at),
        (1, true, expires)
    );
    assert!(sched.claim_due(just_before, 10, lease).unwrap().is_empty());
    // The lease has run out: handed out again, the attempt counted, leased
    // anew from then.
    let again = sched.claim_due(expires, 10, lease).unwrap();
    assert_eq!(
        again.iter().map(|c| (c.id, c.attempts)).collect::<Vec<_>>(),
        vec![(id, 2)]
    );
    assert_eq!(again[0].lease_until, expires + lease);
    assert_eq!(again[0].item, WorkItem::new("job", json!({"n": 1})));
    assert!(sched.claim_due(expires, 10, lease).unwrap().is_empty());
    assert!(sched.complete(id).unwrap());
    assert!(sched.is_empty().unwrap());
}

#[test]
fn scheduled_work_claims_leases_completes_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("automate.redb");
    let now = now_whole_micros();
    let lease = Duration::from_secs(30);
    let (past, present, future) = {
        let store = RedbStore::open(&path).unwrap();
        // Shared through the Database handle.
        let sched = RedbSchedule::new(store.database().unwrap()).unwrap();
        let future = sched
            .schedule(
                &WorkItem::new("future", json!({"n": 3})),
                now + Duration::from_millis(300),
            )
            .unwrap();
        let present = sched
            .schedule(&WorkItem::new("now", json!({"n": 2})), now)
            .unwrap();
        let past = sched
            .schedule(
                &WorkItem::new("past", json!({"n": 1})),
                now - Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(sched.len().unwrap(), 3);

        // Read-only view: due ones in run-at order, nothing changes.
        let due = sched.due(now, 10).unwrap();
        assert_eq!(
            due.iter()
                .map(|d| (d.0, d.1.kind.as_str(), d.2))
                .collect::<Vec<_>>(),
            vec![(past, "past", 0), (present, "now", 0)]
        );
        assert_eq!(sched.due(now, 1).unwrap().len(), 1, "limit");
        // Sub-second: due at +300 ms, not at +299 ms.
        assert_eq!(
            sched
                .due(now + Duration::from_millis(299), 10)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            sched
                .due(now + Duration::from_millis(300), 10)
                .unwrap()
                .len(),
            3
        );

        let claimed = sched.claim_due(now, 10, lease).unwrap();
        assert_eq!(
            claimed
                .iter()
                .map(|c| (c.id, c.attempts))
                .collect::<Vec<_>>(),
            vec![(past, 1), (present, 1)]
        );
        assert_eq!(claimed[0].item, WorkItem::new("past", json!({"n": 1})));
        assert_eq!(claimed[0].lease_until, now + lease);
        assert!(
            sched.claim_due(now, 10, lease).unwrap().is_empty(),
            "leased"
        );
        assert!(sched.due(now, 10).unwrap().is_empty());

        // `past` is done; `present` is not completed and comes back after
        // the lease, with its attempt counted.
        assert!(sched.complete(past).unwrap());
        assert!(!sched.complete(past).unwrap());
        let later = now + lease + Duration::from_millis(1);
        let again = sched.claim_due(later, 10, lease).unwrap();
        assert_eq!(
            again.iter().map(|c| (c.id, c.attempts)).collect::<Vec<_>>(),
            vec![(future, 1), (present, 2)],
            "run-at order: future (+300 ms) before present's lease end"
        );
        assert_eq!(sched.len().unwrap(), 2);
        (past, present, future)
    };

    // Reopen: the claimed-but-uncompleted items are still there.
    let store = RedbStore::open(&path).unwrap();
    let sched = store.schedule();
    assert_eq!(sched.len().unwrap(), 2);
    assert!(sched.get(past).unwrap().is_none());
    let p = sched.get(present).unwrap().unwrap();
    assert_eq!((p.attempts, p.leased), (2, true));
    // After a restart no worker holds a lease: release them at once.
    assert_eq!(sched.release_leases(now).unwrap(), 2);
    let due = sched.due(now, 10).unwrap();
    assert_eq!(
        due.iter().map(|d| (d.0, d.2)).collect::<Vec<_>>(),
        vec![(future, 1), (present, 2)],
        "same run-at: scheduling order"
    );
    assert_eq!(sched.complete_many(&[present, future, 12345]).unwrap(), 2);
    assert!(sched.is_empty().unwrap());
    assert_eq!(sched.next_due().unwrap(), None);
    // Ids are never reused.
    let next = sched
        .schedule(&WorkItem::new("x", json!(null)), now)
        .unwrap();
    assert!(next > past.max(present).max(future));
    assert!(store.verify().unwrap().is_ok());
}

/// The env var naming the file the child writes; set only in the child.
const CHILD_ENV: &str = "AUTOMATE_VMDB_CRASH_CHILD";

/// Not a test on its own: when run as the child of
/// `crash_mid_write_leaves_last_committed_state`, writes until it is killed.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = RedbStore::open(&path).unwrap();
    let sched = store.schedule();
    let ems = store
        .create(
            "ExtManagementSystem",
            attrs(&[
                ("name", s("vc")),
                ("vm_count", AttrValue::Int(0)),
                ("completed", AttrValue::Int(0)),
            ]),
        )
        .unwrap();
    let host = store
        .create(
            "Host",
            attrs(&[("name", s("esx")), ("ems_id", AttrValue::Int(ems.id))]),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i: i64 = 0;
    while Instant::now() < deadline {
        // One transaction: a vm, its event work item and the ems counter.
        store
            .write_batch(|b| {
                b.create(
                    "Vm",
                    attrs(&[
                        ("name", s(&format!("vm-{i}"))),
                        ("ems_id", AttrValue::Int(ems.id)),
                        ("host_id", AttrValue::Int(host.id)),
                        ("ems_ref", s(&format!("vm-{i}"))),
                        ("padding", s(&"x".repeat(200))),
                    ]),
                )?;
                b.update(&ems, "vm_count", AttrValue::Int(i + 1))?;
                b.schedule(
                    &WorkItem::new("ems_event", json!({"n": i})),
                    SystemTime::now(),
                )?;
                Ok(())
            })
            .unwrap();
        // Plain single-object writes.
        store.update(&host, "heartbeat", AttrValue::Int(i)).unwrap();
        if i % 3 == 2 {
            // Claim one, and ack it together with its effect.
            let now = SystemTime::now();
            for c in sched.claim_due(now, 1, Duration::from_secs(600)).unwrap() {
                store
                    .write_batch(|b| {
                        let done = b
                            .attribute(&ems, "completed")?
                            .and_then(|v| {
                                if let AttrValue::Int(n) = v {
                                    Some(n)
                                } else {
                                    None
                                }
                            })
                            .unwrap_or(0);
                        b.complete(c.id)?;
                        b.update(&ems, "completed", AttrValue::Int(done + 1))
                    })
                    .unwrap();
            }
        }
        if i == 0 {
            println!("CHILD-READY");
        }
        i += 1;
    }
    panic!("the child was not killed within 60 s");
}

#[test]
fn crash_mid_write_leaves_last_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "vmdb::crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child writer");
    // Wait until it has committed once, let it write ~200 ms, kill -9.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may print `test ... ` on the same line first.
            if line.contains("CHILD-READY") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!("the child writer never got ready");
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().expect("SIGKILL the child");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");

    let store = RedbStore::open(&path).expect("the file opens after a crash");
    let report = store.verify().unwrap();
    assert!(
        report.is_ok(),
        "inconsistent after crash: {:?}",
        report.problems
    );

    // Every listed object is readable.
    let vms = store.list("VmOrTemplate").unwrap();
    assert!(
        !vms.is_empty(),
        "the child committed vms before it was killed"
    );
    for vm in &vms {
        assert_eq!(store.find("Vm", vm.id).unwrap().as_ref(), Some(vm));
        let name = store.attribute(vm, "name").unwrap().unwrap().to_text();
        assert_eq!(
            store.attribute(vm, "ems_ref").unwrap().unwrap().to_text(),
            name
        );
        assert!(matches!(
            store.attribute(vm, "host").unwrap(),
            Some(AttrValue::Object(_))
        ));
    }
    // The sequence is past every id.
    let max = vms.iter().map(|v| v.id).max().unwrap();
    assert!(store.next_id("Vm").unwrap() > max);

    // Each batch committed whole or not at all.
    let ems = store.list("ExtManagementSystem").unwrap().pop().unwrap();
    let int = |name| match store.attribute(&ems, name).unwrap() {
        Some(AttrValue::Int(n)) => n,
        other => panic!("{name}: {other:?}"),
    };
    let vm_count = int("vm_count");
    let completed = int("completed");
    assert_eq!(vm_count, vms.len() as i64, "vm_count moves with the vms");
    let sched = store.schedule();
    eprintln!(
        "after the crash: {} vms, {completed} acked, {} work items",
        vms.len(),
        sched.len().unwrap()
    );
    assert_eq!(
        sched.len().unwrap() as i64,
        vm_count - completed,
        "one work item per vm, minus those acked with their effect"
    );
    for vm in &vms {
        let r = store.attribute(vm, "ems_ref").unwrap().unwrap().to_text();
        assert_eq!(
            store.find_by_ems_ref("Vm", ems.id, &r).unwrap().as_ref(),
            Some(vm)
        );
    }
    // Claimed-but-unacked work is still there to be re-delivered.
    sched.release_leases(SystemTime::now()).unwrap();
    assert_eq!(
        sched.due(SystemTime::now(), usize::MAX).unwrap().len() as i64,
        vm_count - completed
    );
    // And the store carries on.
    let next = store.create("Vm", Attributes::default()).unwrap();
    assert!(next.id > max);
}

/// Writes a one-class domain whose instance `show` substitutes object
/// lookups: `Test/Vmdb/Lookup/show`.
fn lookup_domain(root: &Path) {
    let dom = root.join("Test");
    let class = dom.join("Vmdb/Lookup.class");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::write(
        dom.join("__domain__.yaml"),
        "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: Test\n    \
         description:\n    display_name:\n    priority: 100\n    enabled: true\n    \
         tenant_id: 1\n    source: user\n    top_level_namespace:\n",
    )
    .unwrap();
    std::fs::write(
        dom.join("Vmdb/__namespace__.yaml"),
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Vmdb\n    \
         description:\n    display_name:\n    priority:\n    enabled:\n",
    )
    .unwrap();
    let fields = [
        ("vm_name", "${/#vm.name}"),
        ("host_name", "${/#vm.host.name}"),
        ("ems_name", "${/#vm.host.ext_management_system.name}"),
        ("event_type", "${/#event_stream.event_type}"),
        ("event_vm", "${/#event_stream.vm.name}"),
    ];
    let mut schema = String::new();
    let mut values = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        schema.push_str(&format!(
            "  - field:\n      aetype: attribute\n      name: {name}\n      datatype: string\n      \
             priority: {}\n      substitute: true\n      message: create\n",
            i + 1
        ));
        values.push_str(&format!("  - {name}:\n      value: \"{value}\"\n"));
    }
    std::fs::write(
        class.join("__class__.yaml"),
        format!(
            "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    \
             display_name:\n    name: Lookup\n    type:\n    inherits:\n    visibility:\n    \
             owner:\n  schema:\n{schema}"
        ),
    )
    .unwrap();
    std::fs::write(
        class.join("show.yaml"),
        format!(
            "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    \
             display_name:\n    name: show\n    inherits:\n    description:\n  fields:\n{values}"
        ),
    )
    .unwrap();
}

#[test]
fn engine_lookups_read_the_store() {
    use automate_datastore::Datastore;
    use automate_engine::Engine;

    let dir = tempfile::tempdir().unwrap();
    let ds_root = dir.path().join("datastore");
    lookup_domain(&ds_root);
    let store = Arc::new(store_in(dir.path()));
    let (_, _, vm) = provider_tree(&store);
    let ev = store
        .create(
            "EmsEvent",
            attrs(&[
                ("event_type", s("VmPoweredOffEvent")),
                ("vm_or_template_id", AttrValue::Int(vm.id)),
            ]),
        )
        .unwrap();
    let (ds, problems) = Datastore::open(&ds_root);
    assert!(problems.is_empty(), "{problems:?}");
    let engine = Engine::new(Arc::new(ds)).with_store(store.clone());
    let uri = format!(
        "/Vmdb/Lookup/show?Vm::vm={}&EventStream::event_stream={}",
        vm.id, ev.id
    );
    let ws = engine
        .instantiate(&uri, &[])
        .unwrap_or_else(|e| panic!("{uri}: {e}"));
    let root = ws.roots()[0];
    let text = |name: &str| {
        ws.object(root)
            .get(name)
            .map(AttrValue::to_text)
            .unwrap_or_default()
    };
    assert_eq!(text("vm_name"), "web01");
    assert_eq!(text("host_name"), "esx1");
    assert_eq!(text("ems_name"), "vc1");
    assert_eq!(text("event_type"), "VmPoweredOffEvent");
    assert_eq!(text("event_vm"), "web01");
}

#[test]
fn concurrent_writers_get_distinct_consecutive_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store_in(dir.path()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        store
                            .create("Vm", attrs(&[("name", s(&format!("t{t}-{i}")))]))
                            .unwrap()
                            .id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (ID1..ID1 + 40).collect::<Vec<_>>());
    // Readers see a snapshot while writers commit.
    assert_eq!(store.list("Vm").unwrap().len(), 40);
}

#[test]
fn concurrent_claimers_never_share_an_item() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let sched = store.schedule();
    let now = SystemTime::now();
    let items: Vec<_> = (0..60)
        .map(|i| (WorkItem::new("job", json!(i)), now))
        .collect();
    let ids = sched.schedule_many(&items).unwrap();
    assert_eq!(ids.len(), 60);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let sched = sched.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let batch = sched
                        .claim_due(SystemTime::now(), 4, Duration::from_secs(600))
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    let ids: Vec<u64> = batch.iter().map(|c| c.id).collect();
                    assert_eq!(sched.complete_many(&ids).unwrap(), ids.len());
                    mine.extend(ids);
                }
            })
        })
        .collect();
    let mut claimed: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    claimed.sort();
    assert_eq!(claimed, ids, "every item claimed exactly once");
    assert!(sched.is_empty().unwrap());
}

/// Timing check, not run by default: `cargo test --test it vmdb::find_by_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn find_by_timing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let n = 2000;
    let t = Instant::now();
    store
        .write_batch(|b| {
            for i in 0..n {
                b.create(
                    "EmsEvent",
                    attrs(&[
                        ("event_type", s("VmPoweredOnEvent")),
                        ("dedup_key", s(&format!("key-{i}"))),
                        ("ems_ref", s(&format!("event-{i}"))),
                        ("full_data", s(&"x".repeat(500))),
                    ]),
                )?;
            }
            Ok(())
        })
        .unwrap();
    eprintln!("{n} creates in one batch: {:?}", t.elapsed());
    let t = Instant::now();
    for i in (0..n).step_by(10) {
        let found = store
            .find_by("EventStream", "dedup_key", &s(&format!("key-{i}")))
            .unwrap();
        assert_eq!(found.len(), 1);
    }
    eprintln!("{} find_by over {n} events: {:?}", n / 10, t.elapsed());
}

#[test]
fn opening_something_that_is_not_a_store_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.redb");
    std::fs::write(
        &junk,
        b"this is not a redb file, just some text\n".repeat(200),
    )
    .unwrap();
    let err = RedbStore::open(&junk).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("junk.redb"), "{err}");
    assert!(RedbStore::open(dir.path().join("no/such/dir/a.redb")).is_err());
    // An empty file becomes a new store.
    let empty = dir.path().join("empty.redb");
    std::fs::write(&empty, b"").unwrap();
    let store = RedbStore::open(&empty).unwrap();
    assert_eq!(store.count().unwrap(), 0);
    assert_eq!(store.path(), empty.as_path());
}

/// A worker that hands its unit's writes to a committer and goes on
/// ([`UnitStore::hand_over`](automate_redb::UnitStore::hand_over)) keeps reading them (object, index, provider
/// reference) until they have landed; what it writes next on top of them
/// is committed after them as changes (an object they created is not
/// created twice); a failed commit is dropped with everything built on it.
#[test]
fn handed_over_writes_stay_readable_until_they_land() {
    use automate_redb::GroupCommit;
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(tmp.path().join("automate.redb")).unwrap());
    let (group, writer) = GroupCommit::start(store.clone()).unwrap();
    let ems = store
        .create("ExtManagementSystem", attrs(&[("name", s("e"))]))
        .unwrap();

    let unit = store.begin_unit();
    let vm = unit
        .create(
            "Vm",
            attrs(&[
                ("name", s("vm1")),
                ("ems_id", AttrValue::Int(ems.id)),
                ("ems_ref", s("ref-1")),
            ]),
        )
        .unwrap();
    let ev = unit
        .create("EmsEvent", attrs(&[("dedup_key", s("k1"))]))
        .unwrap();
    let first = group.submit(unit.hand_over().unwrap(), |_| Ok(Vec::new()));
    // Handed over, maybe not on disk yet: still read through the unit.
    assert_eq!(unit.len(), 0);
    assert_eq!(
        unit.find_by("EventStream", "dedup_key", &s("k1")).unwrap(),
        vec![ev.clone()]
    );
    assert_eq!(
        unit.find_by_ems_ref("Vm", ems.id, "ref-1").unwrap(),
        Some(vm.clone())
    );
    assert_eq!(unit.attribute(&vm, "name").unwrap(), Some(s("vm1")));
    // The next batch changes the VM the first one created.
    unit.update(&vm, "power_state", s("on")).unwrap();
    assert_eq!(unit.attribute(&vm, "power_state").unwrap(), Some(s("on")));
    first.wait().unwrap();
    unit.landed();
    assert_eq!(
        unit.attribute(&vm, "name").unwrap(),
        Some(s("vm1")),
        "now from the file"
    );
    group
        .submit(unit.hand_over().unwrap(), |_| Ok(Vec::new()))
        .wait()
        .unwrap();
    unit.landed();
    drop(unit);
    assert_eq!(store.attribute(&vm, "power_state").unwrap(), Some(s("on")));
    assert_eq!(store.attribute(&vm, "name").unwrap(), Some(s("vm1")));

    // A failed commit: the worker drops its unit, and the batch built on
    // the failed one is never written.
    let unit = store.begin_unit();
    let lost = unit
        .create("EmsEvent", attrs(&[("dedup_key", s("k2"))]))
        .unwrap();
    let failing = group.submit(unit.hand_over().unwrap(), |_| {
        Err(StoreError::Backend("disk full".into()))
    });
    unit.update(&lost, "event_type", s("built on it")).unwrap();
    assert!(failing.wait().is_err());
    drop(unit);
    assert_eq!(store.find("EventStream", lost.id).unwrap(), None);
    assert!(store
        .find_by("EventStream", "dedup_key", &s("k2"))
        .unwrap()
        .is_empty());
    writer.stop();
}

/// A unit of work buffers its writes: reads through the unit see them,
/// the store's readers (on any thread) do not until the commit, which writes them with the scheduled
/// work it completes in one transaction; an abort (or a process that dies
/// before the commit) leaves nothing; ids stay unique across threads.
#[test]
fn unit_of_work_buffers_writes_until_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("automate.redb");
    let store = Arc::new(RedbStore::open(&path).unwrap());
    let schedule = store.schedule();
    let item = schedule
        .schedule(&WorkItem::new("ems_event", json!(1)), SystemTime::now())
        .unwrap();
    let host = store.create("Host", attrs(&[("name", s("h1"))])).unwrap();

    let unit = store.begin_unit();
    let ev = unit
        .create(
            "EmsEvent",
            attrs(&[("dedup_key", s("k1")), ("host_id", AttrValue::Int(host.id))]),
        )
        .unwrap();
    unit.update(&host, "power_state", s("on")).unwrap();
    // The unit sees its writes, through lookups, indexes and associations.
    assert_eq!(unit.find("EventStream", ev.id).unwrap(), Some(ev.clone()));
    assert_eq!(
        unit.find_by("EventStream", "dedup_key", &s("k1")).unwrap(),
        vec![ev.clone()]
    );
    assert_eq!(unit.attribute(&host, "power_state").unwrap(), Some(s("on")));
    assert_eq!(
        unit.attribute(&ev, "host").unwrap(),
        Some(AttrValue::Object(host.clone()))
    );
    // The store itself does not.
    assert_eq!(store.find("EventStream", ev.id).unwrap(), None);
    // Another thread sees neither, and its ids do not collide.
    let other = {
        let store = store.clone();
        let (ev, host) = (ev.clone(), host.clone());
        std::thread::spawn(move || {
            assert_eq!(store.find("EventStream", ev.id).unwrap(), None);
            assert_eq!(store.attribute(&host, "power_state").unwrap(), None);
            store.create("EmsEvent", attrs(&[("dedup_key", s("k2"))]))
        })
        .join()
        .unwrap()
        .unwrap()
    };
    assert_ne!(other.id, ev.id);
    assert_eq!(unit.len(), 2);
    unit.commit(|b| {
        assert!(b.complete(item)?);
        Ok(())
    })
    .unwrap();
    assert_eq!(unit.len(), 0);
    drop(unit);
    assert!(
        schedule.get(item).unwrap().is_none(),
        "acked with the writes"
    );
    drop(schedule);
    drop(store);
    let store = Arc::new(RedbStore::open(&path).unwrap());
    assert_eq!(store.find("EventStream", ev.id).unwrap(), Some(ev.clone()));
    assert_eq!(
        store.attribute(&host, "power_state").unwrap(),
        Some(s("on"))
    );
    // A unit's change is applied to the object as committed at its commit:
    // another thread's update of another attribute in between is kept.
    let unit = store.begin_unit();
    unit.update(&host, "power_state", s("off")).unwrap();
    std::thread::scope(|scope| {
        scope
            .spawn(|| store.update(&host, "name", s("h1-renamed")))
            .join()
            .unwrap()
            .unwrap();
    });
    unit.commit(|_| Ok(())).unwrap();
    drop(unit);
    assert_eq!(
        store.attribute(&host, "power_state").unwrap(),
        Some(s("off"))
    );
    assert_eq!(
        store.attribute(&host, "name").unwrap(),
        Some(s("h1-renamed"))
    );
    // An aborted unit leaves nothing, and the next id is past every id.
    let unit = store.begin_unit();
    let gone = unit.create("EmsEvent", Attributes::default()).unwrap();
    unit.update(&host, "power_state", s("standby")).unwrap();
    drop(unit);
    assert_eq!(store.find("EventStream", gone.id).unwrap(), None);
    assert_eq!(
        store.attribute(&host, "power_state").unwrap(),
        Some(s("off"))
    );
    let next = store.create("EmsEvent", Attributes::default()).unwrap();
    assert!(next.id > other.id && next.id > ev.id, "{next:?}");
    // Updating an object that does not exist fails inside a unit too.
    let unit = store.begin_unit();
    let missing = VmdbRef {
        class: Arc::from("Host"),
        id: ID3 + 1000,
    };
    assert!(matches!(
        unit.update(&missing, "name", s("x")),
        Err(StoreError::NotFound(..))
    ));
    drop(unit);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// A unit of work reuses its read snapshot only while nothing has been
/// committed since: what another writer commits meanwhile (a VM created
/// on first sight by another worker, an object another thread updated) is
/// seen by the unit's next read.
#[test]
fn a_units_reads_see_commits_made_since_its_last_read() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(tmp.path().join("automate.redb")).unwrap());
    let ems = store
        .create("ExtManagementSystem", attrs(&[("name", s("rhevm01"))]))
        .unwrap();
    let unit = store.begin_unit();
    // Reads that take (and then reuse) the unit's snapshot.
    assert_eq!(
        unit.find_by_ems_ref("VmOrTemplate", ems.id, "vm-1")
            .unwrap(),
        None
    );
    assert!(unit
        .find_by("VmOrTemplate", "name", &s("web"))
        .unwrap()
        .is_empty());
    // Another thread commits a VM, as another worker would.
    let vm = {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .create(
                    "VmOrTemplate",
                    attrs(&[
                        ("name", s("web")),
                        ("ems_ref", s("vm-1")),
                        ("ems_id", AttrValue::Int(ems.id)),
                    ]),
                )
                .unwrap()
        })
        .join()
        .unwrap()
    };
    assert_eq!(
        unit.find_by_ems_ref("VmOrTemplate", ems.id, "vm-1")
            .unwrap(),
        Some(vm.clone())
    );
    assert_eq!(
        unit.find_by("VmOrTemplate", "name", &s("web")).unwrap(),
        vec![vm.clone()]
    );
    // And an update committed elsewhere after that.
    {
        let store = store.clone();
        let vm = vm.clone();
        std::thread::spawn(move || store.update(&vm, "power_state", s("on")).unwrap())
            .join()
            .unwrap();
    }
    assert_eq!(unit.attribute(&vm, "power_state").unwrap(), Some(s("on")));
    unit.commit(|_| Ok(())).unwrap();
}
