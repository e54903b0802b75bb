//! Services, snapshots and provider custom attributes (issue 20, item 1):
//! `Service` objects and their associations in Rhai methods
//! (`vm.add_to_service`, `service.vms`, `vm.service`, the service tree,
//! `service.retire_now`), on the memory store, on redb and through a redb
//! unit of work; snapshots and `ems_custom_set` queued as provider
//! operations; the simulated provider performing them (its events and its
//! inventory) and the closed loop through `automate run --until-idle`;
//! `/api/services`.

use crate::common::{
    api_runtime, attrs, control_engine, copy_dir, manifest, rhev_store, serve_api, EMS, HOST, VM,
};
use crate::operations::{engine_with_method, run};
use automate_engine::AttrValue;
use automate_events::catchers::operations::InventoryChange;
use automate_events::catchers::simulate::{SimulateConfig, Simulator};
use automate_redb::RedbStore;
use automate_vmdb::operation::{self, OpState, ProviderOperation};
use automate_vmdb::served::ServedStore;
use automate_vmdb::{services, snapshots, MemoryStore, ObjectStore};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A redb store holding the RHEV world of `rhev_store` (same ids).
fn redb_world(path: &Path) -> Arc<RedbStore> {
    let store = Arc::new(RedbStore::open(path.join("automate.redb")).unwrap());
    let src = rhev_store("web01");
    for (class, id) in [
        ("ExtManagementSystem", EMS),
        ("Host", HOST),
        ("VmOrTemplate", VM),
    ] {
        let o = src.load(class, id).unwrap().unwrap();
        store.insert(&o.class, id, o.attrs).unwrap();
    }
    store
}

const SERVICE_BODY: &str = r#"
let vm = evm.root["vm"];
let host = evm.vmdb("host").first();
let top = evm.vmdb("service").create(#{name: "shop", description: "the shop"});
let web = evm.vmdb("service").create(#{name: "web tier"});
top.add_resource(web);
let row = vm.add_to_service(web);
let errors = [];
try { vm.add_to_service(top); } catch (e) { errors.push(e); }
try { vm.add_to_service(host); } catch (e) { errors.push(e); }
try { host.add_to_service(top); } catch (e) { errors.push(e); }
try { web.add_resource(top); } catch (e) { errors.push(e); }
try { evm.vmdb("service").create(#{name: ""}); } catch (e) { errors.push(e); }
try { vm.bogus_service_call(); } catch (e) { errors.push(e); }
evm.root["errors"] = errors;
evm.root["row_type"] = row.resource_type;
evm.root["vm_service"] = vm.service.name;
evm.root["vm_direct_service"] = vm.direct_service.name;
evm.root["top_vms"] = top.vms.len();
evm.root["top_direct_vms"] = top.direct_vms.len();
evm.root["web_parent"] = web.parent_service.name;
evm.root["web_root"] = web.root_service.name;
evm.root["top_children"] = top.direct_service_children.len();
evm.root["top_all_children"] = top.all_service_children.len();
evm.root["top_resources"] = top.service_resources.len();
web.name = "web";
web.description = "the web tier";
evm.root["found"] = evm.vmdb("service").where(#{name: "web"}).count();
try { web.name = ""; } catch (e) { errors.push(e); }
evm.root["errors"] = errors;
evm.root["retired"] = top.retire_now();
evm.root["retirement_state"] = top.retirement_state;
evm.root["removed_from"] = vm.remove_from_service().name;
evm.root["vm_service_after"] = vm.service;
evm.root["web_vms_after"] = web.vms.len();
"#;

fn check_services(store: Arc<dyn ObjectStore>, what: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_with_method(store.clone(), tmp.path(), SERVICE_BODY);
    let ws = run(&engine);
    let root = |k: &str| ws.root_attr(k).cloned().unwrap_or(AttrValue::Nil);
    assert_eq!(root("row_type"), AttrValue::str("VmOrTemplate"), "{what}");
    assert_eq!(root("vm_service"), AttrValue::str("shop"), "{what}");
    assert_eq!(
        root("vm_direct_service"),
        AttrValue::str("web tier"),
        "{what}"
    );
    assert_eq!(root("top_vms"), AttrValue::Int(1), "{what}");
    assert_eq!(root("top_direct_vms"), AttrValue::Int(0), "{what}");
    assert_eq!(root("web_parent"), AttrValue::str("shop"), "{what}");
    assert_eq!(root("web_root"), AttrValue::str("shop"), "{what}");
    assert_eq!(root("top_children"), AttrValue::Int(1), "{what}");
    assert_eq!(root("top_all_children"), AttrValue::Int(1), "{what}");
    assert_eq!(root("top_resources"), AttrValue::Int(1), "{what}");
    assert_eq!(root("found"), AttrValue::Int(1), "{what}");
    assert_eq!(root("retired"), AttrValue::Bool(true), "{what}");
    assert_eq!(
        root("retirement_state"),
        AttrValue::str("initializing"),
        "{what}"
    );
    assert_eq!(root("removed_from"), AttrValue::str("web"), "{what}");
    assert_eq!(root("vm_service_after"), AttrValue::Nil, "{what}");
    assert_eq!(root("web_vms_after"), AttrValue::Int(0), "{what}");
    let errors = root("errors").inspect();
    for needle in [
        "> <1000000000029>:<web01> is already connected to a service.",
        "add_to_service: service must be a MiqAeServiceService, not a MiqAeServiceHost",
        &format!("undefined method `add_to_service' for #<MiqAeServiceHost id: {HOST}>"),
        "Adding resource <shop> to Service <web tier> will create a circular reference",
        "Validation failed: Service: Name can't be blank",
        "bogus_service_call (VmdbObject)",
    ] {
        assert!(errors.contains(needle), "{what}: no [{needle}] in {errors}");
    }
    // The name may not be blanked (the 7th error).
    assert_eq!(
        errors.matches("Name can't be blank").count(),
        2,
        "{what}: {errors}"
    );
    // The retirement request event, raised on the service.
    let events = store.list("EventStream").unwrap();
    let retire = events
        .iter()
        .filter_map(|e| store.load("EventStream", e.id).unwrap())
        .find(|o| o.attrs.get("event_type") == Some(&AttrValue::str("request_service_retire")))
        .unwrap_or_else(|| panic!("{what}: no request_service_retire event"));
    assert_eq!(
        retire.attrs.get("target_type"),
        Some(&AttrValue::str("Service")),
        "{what}"
    );
    // The stored rows: two services, the VM's row marked removed.
    let svcs = store.list("Service").unwrap();
    assert_eq!(svcs.len(), 2, "{what}");
    let web = svcs
        .iter()
        .find(|s| store.attribute(s, "name").unwrap() == Some(AttrValue::str("web")))
        .unwrap();
    assert_eq!(
        store.attribute(web, "ancestry").unwrap(),
        Some(AttrValue::str(svcs[0].id.to_string())),
        "{what}"
    );
    assert_eq!(
        store.attribute(web, "description").unwrap(),
        Some(AttrValue::str("the web tier")),
        "{what}"
    );
    let vm = store.find("VmOrTemplate", VM).unwrap().unwrap();
    assert_eq!(services::direct_service(store.as_ref(), &vm).unwrap(), None);
    // Membership is no provider operation.
    assert!(
        operation::list(store.as_ref()).unwrap().is_empty(),
        "{what}"
    );
}

#[test]
fn methods_manage_services_on_memory() {
    let store: Arc<MemoryStore> = rhev_store("web01");
    check_services(store, "memory");
}

#[test]
fn methods_manage_services_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    check_services(redb_world(dir.path()), "redb");
}

#[test]
fn membership_through_a_unit_of_work_commits_with_it_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = redb_world(dir.path());
    let svc = services::create(store.as_ref(), "shop", None, Default::default()).unwrap();
    let vm = store.find("VmOrTemplate", VM).unwrap().unwrap();

    // Dropped: nothing of it is stored.
    let unit = ServedStore::begin_unit(store.clone());
    services::add_resource(unit.objects().as_ref(), &svc, &vm).unwrap();
    assert_eq!(
        services::direct_service(unit.objects().as_ref(), &vm).unwrap(),
        Some(svc.clone())
    );
    drop(unit);
    assert_eq!(services::direct_service(store.as_ref(), &vm).unwrap(), None);
    assert!(store.list("ServiceResource").unwrap().is_empty());

    // Committed: all of it.
    let unit = ServedStore::begin_unit(store.clone());
    services::add_resource(unit.objects().as_ref(), &svc, &vm).unwrap();
    unit.commit().unwrap();
    assert_eq!(
        services::direct_service(store.as_ref(), &vm).unwrap(),
        Some(svc.clone())
    );
    assert_eq!(services::all_vms(store.as_ref(), &svc).unwrap(), vec![vm]);
}

fn stored_ops(store: &dyn ObjectStore) -> Vec<ProviderOperation> {
    operation::list(store)
        .unwrap()
        .into_iter()
        .filter_map(|(id, o)| ProviderOperation::from_stored(id, &o))
        .collect()
}

#[test]
fn snapshot_and_custom_field_calls_queue_provider_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let store = rhev_store("web01");
    let vm = store.find("VmOrTemplate", VM).unwrap().unwrap();
    let snap = snapshots::create(
        store.as_ref(),
        &vm,
        snapshots::NewSnapshot {
            name: "base".into(),
            description: Some("first".into()),
            uid: "u-1".into(),
            memory: false,
            create_time: "2026-12-06T10:00:00Z".into(),
            total_size: 10,
        },
    )
    .unwrap();
    let body = format!(
        r#"
let vm = evm.root["vm"];
let host = evm.vmdb("host").first();
let snap = evm.vmdb("snapshot").find({id});
evm.root["results"] = [
    vm.create_snapshot("before upgrade", "taken by automate", true),
    vm.create_snapshot("plain"),
    vm.remove_snapshot({id}),
    vm.revert_to_snapshot(snap),
    snap.remove(),
    vm.remove_all_snapshots(),
    vm.ems_custom_set("owner", "ada"),
];
evm.root["count"] = vm.snapshots.len();
evm.root["current"] = vm.current_snapshot.name;
evm.root["snap_vm"] = snap.vm.id;
evm.root["is_current"] = snap.is_current();
evm.root["current_of"] = snap.get_current_snapshot().name;
let errors = [];
try {{ vm.remove_snapshot(999); }} catch (e) {{ errors.push(e); }}
try {{ vm.revert_to_snapshot("x"); }} catch (e) {{ errors.push(e); }}
try {{ host.create_snapshot("h"); }} catch (e) {{ errors.push(e); }}
try {{ host.ems_custom_set("a", "b"); }} catch (e) {{ errors.push(e); }}
try {{ vm.create_snapshot(""); }} catch (e) {{ errors.push(e); }}
try {{ vm.snapshot_everything(); }} catch (e) {{ errors.push(e); }}
evm.root["errors"] = errors;
"#,
        id = snap.id
    );
    let engine = engine_with_method(store.clone(), tmp.path(), &body);
    let ws = run(&engine);
    assert_eq!(
        ws.root_attr("results"),
        Some(&AttrValue::Array(vec![AttrValue::Bool(true); 7]))
    );
    assert_eq!(ws.root_attr("count"), Some(&AttrValue::Int(1)));
    assert_eq!(ws.root_attr("current"), Some(&AttrValue::str("base")));
    assert_eq!(ws.root_attr("snap_vm"), Some(&AttrValue::Int(VM)));
    assert_eq!(ws.root_attr("is_current"), Some(&AttrValue::Bool(true)));
    assert_eq!(ws.root_attr("current_of"), Some(&AttrValue::str("base")));
    let errors = ws.root_attr("errors").map(AttrValue::inspect).unwrap();
    for needle in [
        &format!("remove_snapshot: Snapshot [999] not found for VmOrTemplate [{VM}]"),
        "revert_to_snapshot: a snapshot id is an integer",
        &format!("undefined method `create_snapshot' for #<MiqAeServiceHost id: {HOST}>"),
        &format!("undefined method `ems_custom_set' for #<MiqAeServiceHost id: {HOST}>"),
        "create_snapshot: a snapshot needs a name",
        "snapshot_everything (VmdbObject)",
    ] {
        assert!(errors.contains(needle), "no [{needle}] in {errors}");
    }
    let ops = stored_ops(store.as_ref());
    let calls: Vec<(&str, Vec<AttrValue>)> = ops
        .iter()
        .map(|o| (o.method_name.as_str(), o.args.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "create_snapshot",
                vec![
                    AttrValue::str("before upgrade"),
                    AttrValue::str("taken by automate"),
                    AttrValue::Bool(true)
                ]
            ),
            (
                "create_snapshot",
                vec![
                    AttrValue::str("plain"),
                    AttrValue::Nil,
                    AttrValue::Bool(false)
                ]
            ),
            ("remove_snapshot", vec![AttrValue::Int(snap.id)]),
            ("revert_to_snapshot", vec![AttrValue::Int(snap.id)]),
            ("remove_snapshot", vec![AttrValue::Int(snap.id)]),
            ("remove_all_snapshots", vec![]),
            (
                "set_custom_field",
                vec![AttrValue::str("owner"), AttrValue::str("ada")]
            ),
        ]
    );
    assert!(ops
        .iter()
        .all(|o| o.state == OpState::Ready && o.ems_id == Some(EMS) && o.instance_id == VM));
    let log = ws.trace_lines().join("\n");
    assert!(
        log.contains(&format!(
            "Setting EMS Custom Key on VmOrTemplate id:<{VM}>, name:<web01> with key=\"owner\" to \"ada\""
        )),
        "{log}"
    );
}

#[test]
fn simulator_performs_snapshots_and_custom_fields() {
    let cfg = SimulateConfig {
        seed: 5,
        rate: 0.0,
        count: Some(0),
        vms: 1,
        start: None,
    };
    // RHEV: two events per snapshot operation; no custom fields.
    let mut rhev = Simulator::new(&cfg, "RHEVM");
    let vm = rhev.vm_refs()[0].clone();
    let args = [
        AttrValue::str("nightly"),
        AttrValue::str("d"),
        AttrValue::Bool(false),
    ];
    let (events, change) = rhev
        .perform_operation("create_snapshot", &vm, None, &args)
        .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "USER_CREATE_SNAPSHOT",
            "USER_CREATE_SNAPSHOT_FINISHED_SUCCESS"
        ]
    );
    assert!(events[0].full_data["description"]
        .as_str()
        .unwrap()
        .contains("Snapshot 'nightly' creation for VM"));
    match change {
        Some(InventoryChange::SnapshotCreated(s)) => {
            assert_eq!(s.name, "nightly");
            assert_eq!(s.description.as_deref(), Some("d"));
        }
        other => panic!("{other:?}"),
    }
    let (events, change) = rhev
        .perform_operation("revert_to_snapshot", &vm, None, &[AttrValue::Int(7)])
        .unwrap();
    assert_eq!(events[0].event_type, "USER_RESTORE_FROM_SNAPSHOT");
    assert_eq!(change, Some(InventoryChange::SnapshotReverted(7)));
    let refused = rhev
        .perform_operation("set_custom_field", &vm, None, &[AttrValue::str("k")])
        .unwrap_err();
    assert!(
        refused.contains("cannot perform [set_custom_field]"),
        "{refused}"
    );
    assert!(rhev
        .perform_operation("remove_snapshot", &vm, None, &[])
        .unwrap_err()
        .contains("no snapshot id"));

    // VMware: the task events, and custom fields.
    let mut vc = Simulator::new(&cfg, "VC");
    let vm = vc.vm_refs()[0].clone();
    let (events, _) = vc
        .perform_operation("remove_all_snapshots", &vm, None, &[])
        .unwrap();
    assert_eq!(events[0].event_type, "RemoveAllSnapshots_Task");
    let (events, change) = vc
        .perform_operation(
            "set_custom_field",
            &vm,
            None,
            &[AttrValue::str("owner"), AttrValue::str("ada")],
        )
        .unwrap();
    assert_eq!(events[0].event_type, "CustomFieldValueChangedEvent");
    assert_eq!(
        change,
        Some(InventoryChange::CustomField {
            name: "owner".into(),
            value: AttrValue::str("ada")
        })
    );
    // An unknown VM is refused.
    assert!(vc
        .perform_operation("create_snapshot", "vm-nope", None, &args)
        .is_err());
}

// ------------------------------------------------------ the closed loop

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn automate(dir: &Path, datastore: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_automate"));
    cmd.arg("--datastore")
        .arg(datastore)
        .arg("--db")
        .arg(dir.join("automate.redb"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_API_TOKEN")
        .env_remove("AUTOMATE_SERVER");
    cmd
}

/// How many events of a one-VM simulated RHEV provider (seed `seed`) end
/// with the VM's first `USER_RUN_VM`.
fn count_to_first_run(seed: u64) -> u64 {
    let cfg = SimulateConfig {
        seed,
        rate: 0.0,
        count: Some(8),
        vms: 1,
        start: None,
    };
    let at = Simulator::new(&cfg, "RHEVM")
        .position(|e| e.event_type == "USER_RUN_VM")
        .expect("the VM starts within 8 events");
    at as u64 + 1
}

#[test]
fn closed_loop_snapshot_through_the_simulated_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ds = dir.join("datastore");
    copy_dir(&manifest("datastore"), &ds);
    // USER_RUN_VM also runs a method that snapshots the VM once.
    let run_vm = ds.join("ManageIQ/System/Event/EmsEvent/RHEVM.class/user_run_vm.yaml");
    let text = std::fs::read_to_string(&run_vm).unwrap();
    std::fs::write(
        &run_vm,
        format!(
            "{}\n  - rel9:\n      value: \"/Ops/Vm/Act/run\"\n",
            text.trim_end()
        ),
    )
    .unwrap();
    let class = ds.join("Ops/Vm/Act.class");
    std::fs::create_dir_all(class.join("__methods__")).unwrap();
    for (path, text) in [
        ("Ops/__domain__.yaml", "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: Ops\n    priority: 50\n    enabled: true\n"),
        ("Ops/Vm/__namespace__.yaml", "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Vm\n"),
        ("Ops/Vm/Act.class/__class__.yaml", "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    name: Act\n  schema:\n  - field:\n      aetype: method\n      name: execute\n"),
        ("Ops/Vm/Act.class/run.yaml", "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    name: run\n  fields:\n  - execute:\n      value: act\n"),
        ("Ops/Vm/Act.class/__methods__/act.yaml", "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: act\n    location: inline\n    language: rhai\n"),
        ("Ops/Vm/Act.class/__methods__/act.rhai", "let vm = evm.root[\"vm\"];\nif vm.snapshots.len() == 0 { vm.create_snapshot(\"auto\", \"taken on start\", false); }\n"),
    ] {
        std::fs::write(ds.join(path), text).unwrap();
    }
    let count = count_to_first_run(7);
    let config = dir.join("automate.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {{kind: simulate, seed: 7, rate: 0, count: {count}, vms: 1}}\nworkers: 1\n"
        ),
    )
    .unwrap();
    let out = automate(dir, &ds)
        .args(["run", "--until-idle", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_ok(&out);
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["handled"], count + 2, "{stats}");
    assert_eq!(stats["errors"], 0, "{stats}");

    let out = automate(dir, &ds)
        .args(["operations", "list", "--json"])
        .output()
        .unwrap();
    assert_ok(&out);
    let ops: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["method_name"], "create_snapshot");
    assert_eq!(ops[0]["state"], "ok", "{ops:?}");
    let vm_id = ops[0]["instance_id"].as_i64().unwrap();

    // The provider's snapshot, stored before its events were handled.
    let store = RedbStore::open_read_only(dir.join("automate.redb")).unwrap();
    let vm = store.find("VmOrTemplate", vm_id).unwrap().unwrap();
    let snaps = snapshots::list(&store, &vm).unwrap();
    assert_eq!(snaps.len(), 1);
    let snap = store.load("Snapshot", snaps[0].id).unwrap().unwrap();
    assert_eq!(snap.attrs.get("name"), Some(&AttrValue::str("auto")));
    assert_eq!(snap.attrs.get("current"), Some(&AttrValue::Int(1)));
    assert_eq!(
        snap.attrs.get("description"),
        Some(&AttrValue::str("taken on start"))
    );

    // Its events came back through the switchboard as vm_snapshot and
    // vm_snapshot_complete.
    let out = automate(dir, &ds)
        .args(["events", "list", "--json"])
        .output()
        .unwrap();
    assert_ok(&out);
    let events: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let types: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    for t in [
        "USER_CREATE_SNAPSHOT",
        "USER_CREATE_SNAPSHOT_FINISHED_SUCCESS",
        "vm_snapshot",
        "vm_snapshot_complete",
    ] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
}

// ---------------------------------------------------------------- API

fn get(base: &str, path: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(format!("{base}{path}"))
        .header("X-Auth-Token", "t0ken")
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn api_lists_services_and_their_vms() {
    let dir = tempfile::tempdir().unwrap();
    let store = redb_world(dir.path());
    let top =
        services::create(store.as_ref(), "shop", Some("the shop"), Default::default()).unwrap();
    let web = services::create(store.as_ref(), "web", None, Default::default()).unwrap();
    services::add_resource(store.as_ref(), &top, &web).unwrap();
    let vm = store.find("VmOrTemplate", VM).unwrap().unwrap();
    services::add_resource(store.as_ref(), &web, &vm).unwrap();
    store
        .create("Vm", attrs(&[("name", AttrValue::str("lonely"))]))
        .unwrap();

    let (engine, _runner) = control_engine(&manifest("datastore"), store.clone());
    let rt = api_runtime();
    let stop = CancellationToken::new();
    let base = format!(
        "http://{}",
        serve_api(&rt, "t0ken", engine, store.clone(), &stop)
    );
    let (status, list) = get(&base, "/api/services?expand=resources");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["count"], 2, "{list}");
    assert_eq!(list["resources"][0]["name"], "shop", "{list}");
    let (_, one) = get(&base, &format!("/api/services/{}", web.id));
    assert_eq!(one["ancestry"], top.id.to_string(), "{one}");
    assert_eq!(one["type"], "Service", "{one}");
    let (_, vms) = get(&base, &format!("/api/services/{}/vms", top.id));
    assert_eq!(vms["count"], 1, "{vms}");
    assert_eq!(vms["resources"][0]["id"], VM.to_string(), "{vms}");
    assert_eq!(vms["resources"][0]["name"], "web01", "{vms}");
    let (status, _) = get(&base, "/api/services/999/vms");
    assert_eq!(status, 404);
    let (_, entry) = get(&base, "/api");
    assert!(entry.to_string().contains("/api/services"), "{entry}");
    stop.cancel();
}

#[test]
fn methods_manage_services_on_postgresql() {
    let Some(db) = automate_postgres::testing::TestDb::new("services_methods") else {
        return;
    };
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    let src = rhev_store("web01");
    for (class, id) in [
        ("ExtManagementSystem", EMS),
        ("Host", HOST),
        ("VmOrTemplate", VM),
    ] {
        let o = src.load(class, id).unwrap().unwrap();
        store.insert(&o.class, id, o.attrs).unwrap();
    }
    check_services(store, "postgres");
}
