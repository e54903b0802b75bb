//! Provider operations (`vm.stop()` and friends, the control actions
//! `vm_stop`...): queued as `MiqQueue` messages of the `ems_operations`
//! role in the store, performed by the provider's catcher, answered by
//! the provider's events.
//!
//! The closed loop (issue 20's acceptance): `automate run --until-idle`
//! with a simulated RHEV provider and a control policy that stops a VM on
//! `vm_start`; the simulator performs the stop by emitting `USER_STOP_VM`
//! and `VM_DOWN`, which come back through the switchboard as
//! `vm_poweroff`, and the VM ends powered off; evm.log has the key lines
//! in ManageIQ's order.

use crate::common::{copy_dir, manifest, rhev_store, EMS, HOST, VM};
use automate_datastore::Datastore;
use automate_engine::{AttrValue, Engine, Workspace};
use automate_events::catchers::simulate::{SimulateConfig, Simulator};
use automate_vmdb::operation::{self, OpState, ProviderOperation};
use automate_vmdb::{MemoryStore, ObjectStore};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

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

/// The shipped datastore with a control file whose policy stops every VM
/// that starts.
fn datastore_stopping_on_start(dir: &Path) -> std::path::PathBuf {
    let ds = dir.join("datastore");
    copy_dir(&manifest("datastore"), &ds);
    std::fs::write(
        ds.join("control/stop_on_start.yaml"),
        "policies:\n  - name: stop_started_vms\n    description: No VM may run\n    events: [vm_start]\n    actions:\n      - vm_stop:\n",
    )
    .unwrap();
    ds
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

fn position(log: &str, from: usize, needle: &str) -> usize {
    log[from..]
        .find(needle)
        .map(|p| p + from)
        .unwrap_or_else(|| panic!("no [{needle}] after byte {from} of the log:\n{log}"))
}

#[test]
fn closed_loop_stop_on_vm_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ds = datastore_stopping_on_start(dir);
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
    // The stream's events and the two the stop made.
    assert_eq!(stats["handled"], count + 2, "{stats}");
    assert_eq!(stats["errors"], 0, "{stats}");

    // The operation, performed.
    let out = automate(dir, &ds)
        .args(["operations", "list", "--json"])
        .output()
        .unwrap();
    assert_ok(&out);
    let ops: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["method_name"], "stop");
    assert_eq!(ops[0]["state"], "ok");
    assert_eq!(ops[0]["role"], "ems_operations");
    assert_eq!(ops[0]["message"], "Message delivered successfully");
    let op_id = ops[0]["id"].as_str().unwrap().to_string();
    let vm_id = ops[0]["instance_id"].as_i64().unwrap();

    // The VM ends powered off.
    let store = automate_redb::RedbStore::open_read_only(dir.join("automate.redb")).unwrap();
    let vm = store.find("VmOrTemplate", vm_id).unwrap().expect("the VM");
    assert_eq!(
        store.attribute(&vm, "power_state").unwrap(),
        Some(AttrValue::str("off"))
    );

    // The stop's events came back as vm_poweroff.
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
    assert!(types.contains(&"USER_STOP_VM"), "{types:?}");
    assert!(types.contains(&"VM_DOWN"), "{types:?}");
    assert!(types.contains(&"vm_poweroff"), "{types:?}");

    // evm.log: ManageIQ's order (caught, queued, taken, delivered, the
    // provider's answer caught).
    let log = std::fs::read_to_string(dir.join("log/evm.log")).unwrap();
    let mut at = position(&log, 0, "Caught event [USER_RUN_VM]");
    for needle in [
        "Processing EMS event [USER_RUN_VM] chain_id [] on EMS [",
        &format!("MIQ(MiqQueue.put) Message id: [{op_id}],"),
        "Processing EMS event [USER_RUN_VM] chain_id [] on EMS [",
        &format!("MIQ(MiqQueue.get) Message id: [{op_id}],"),
        &format!("MIQ(MiqQueue#deliver) Message id: [{op_id}], Delivering..."),
        "Caught event [USER_STOP_VM]",
        "Caught event [VM_DOWN]",
        &format!("MIQ(MiqQueue#delivered) Message id: [{op_id}], State: [ok], Delivered in ["),
    ] {
        at = position(&log, at, needle);
    }
    // automation.log: the policy that queued it, then the power-off.
    let automation = std::fs::read_to_string(dir.join("log/automation.log")).unwrap();
    let mut at = position(&automation, 0, "Event Raised [vm_start]");
    for needle in [
        "Policy [stop_started_vms] action vm_stop: Queueing VM stop for VM [",
        "Event Raised [vm_poweroff]",
    ] {
        at = position(&automation, at, needle);
    }
    let put = log
        .lines()
        .find(|l| l.contains("MIQ(MiqQueue.put)"))
        .unwrap();
    assert!(
        put.contains("Role: [ems_operations]")
            && put.contains(".stop], Timeout: [600], Priority: [100], State: [ready]"),
        "{put}"
    );
}

// ------------------------------------------------------------ methods

/// An engine over the shipped datastore plus a domain `Ops` whose
/// `/Ops/Vm/Act/run` runs `body` as a Rhai method (shared with services.rs).
pub(crate) fn engine_with_method(store: Arc<dyn ObjectStore>, dir: &Path, body: &str) -> Engine {
    let ds = dir.join("datastore");
    copy_dir(&manifest("datastore"), &ds);
    let class = ds.join("Ops/Vm/Act.class");
    std::fs::create_dir_all(class.join("__methods__")).unwrap();
    std::fs::write(
        ds.join("Ops/__domain__.yaml"),
        "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: Ops\n    priority: 50\n    enabled: true\n",
    )
    .unwrap();
    std::fs::write(
        ds.join("Ops/Vm/__namespace__.yaml"),
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Vm\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__class__.yaml"),
        "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    name: Act\n  schema:\n  - field:\n      aetype: method\n      name: execute\n",
    )
    .unwrap();
    std::fs::write(
        class.join("run.yaml"),
        "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    name: run\n  fields:\n  - execute:\n      value: act\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__methods__/act.yaml"),
        "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: act\n    location: inline\n    language: rhai\n",
    )
    .unwrap();
    std::fs::write(class.join("__methods__/act.rhai"), body).unwrap();
    let (datastore, problems) = Datastore::open(&ds);
    assert!(problems.is_empty(), "{problems:?}");
    let mut engine = Engine::new(Arc::new(datastore)).with_store(store);
    engine.options.emit_tracing = false;
    automate_control::with_control(engine).0
}

/// Runs `/Ops/Vm/Act/run` on the VM [`VM`]; an error fails the test.
pub(crate) fn run(engine: &Engine) -> Workspace {
    let (ws, err) = engine.instantiate_traced(&format!("/Ops/Vm/Act/run?Vm::vm={VM}"), &[]);
    assert!(err.is_none(), "{err:?}\n{}", ws.trace_lines().join("\n"));
    ws
}

fn stored_ops(store: &MemoryStore) -> Vec<ProviderOperation> {
    operation::list(store)
        .unwrap()
        .into_iter()
        .filter_map(|(id, o)| ProviderOperation::from_stored(id, &o))
        .collect()
}

#[test]
fn vm_methods_queue_provider_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let store = rhev_store("web01");
    let engine = engine_with_method(
        store.clone(),
        tmp.path(),
        &format!(
            "let vm = evm.root[\"vm\"];\n\
             let host = evm.vmdb(\"host\", {HOST});\n\
             evm.root[\"results\"] = [vm.stop(), vm.start(), vm.shutdown_guest(), vm.reboot_guest(), vm.migrate(host), vm.remove_from_disk(false), vm.refresh(), vm.scan(), vm.retire_now()];\n"
        ),
    );
    let ws = run(&engine);
    assert_eq!(
        ws.root_attr("results"),
        Some(&AttrValue::Array(vec![AttrValue::Bool(true); 9]))
    );
    let ops = stored_ops(&store);
    let methods: Vec<&str> = ops.iter().map(|o| o.method_name.as_str()).collect();
    assert_eq!(
        methods,
        [
            "stop",
            "start",
            "shutdown_guest",
            "reboot_guest",
            "migrate_via_ids",
            "vm_destroy",
            "refresh_ems",
            "scan",
            "retire_now"
        ]
    );
    assert!(ops
        .iter()
        .all(|o| o.state == OpState::Ready && o.ems_id == Some(EMS) && o.instance_id == VM));
    assert_eq!(
        ops[4].args,
        vec![
            AttrValue::Int(HOST),
            AttrValue::Nil,
            AttrValue::str("defaultPriority"),
            AttrValue::Nil
        ]
    );
    assert_eq!(operation::ready_for(store.as_ref(), EMS).unwrap().len(), 9);
}

#[test]
fn vm_methods_refuse_what_manageiq_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let store = rhev_store("web01");
    let engine = engine_with_method(
        store.clone(),
        tmp.path(),
        &format!(
            "let host = evm.vmdb(\"host\", {HOST});\n\
             let vm = evm.root[\"vm\"];\n\
             let errors = [];\n\
             try {{ host.stop(); }} catch (e) {{ errors.push(e); }}\n\
             try {{ vm.migrate(vm); }} catch (e) {{ errors.push(e); }}\n\
             vm[\"ems_id\"] = ();\n\
             try {{ vm.start(); }} catch (e) {{ errors.push(e); }}\n\
             evm.root[\"errors\"] = errors;\n"
        ),
    );
    let ws = run(&engine);
    let errors = ws.root_attr("errors").map(AttrValue::inspect).unwrap();
    assert!(
        errors.contains(&format!(
            "undefined method `stop' for #<MiqAeServiceHost id: {HOST}>"
        )),
        "{errors}"
    );
    assert!(
        errors.contains("migrate: Host Class must be MiqAeServiceHost, but is <MiqAeServiceVm"),
        "{errors}"
    );
    assert!(
        errors.contains("has no provider (ems_id): the operation cannot be sent"),
        "{errors}"
    );
    assert!(stored_ops(&store).is_empty());
}

#[test]
fn simulator_performs_operations_with_the_providers_events() {
    let cfg = SimulateConfig {
        seed: 3,
        rate: 0.0,
        count: Some(0),
        vms: 2,
        start: None,
    };
    for (kind, stop) in [
        ("RHEVM", ["USER_STOP_VM", "VM_DOWN"]),
        (
            "OPENSTACK",
            [
                "compute.instance.power_off.start",
                "compute.instance.power_off.end",
            ],
        ),
        ("VC", ["VmStoppingEvent", "VmPoweredOffEvent"]),
    ] {
        let mut sim = Simulator::new(&cfg, kind);
        let vm = sim.vm_refs()[0].clone();
        // Whatever its power, start it first (an on VM refuses a start).
        let _ = sim.perform("start", &vm, None);
        let events = sim.perform("stop", &vm, None).unwrap();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, stop, "{kind}");
        assert!(events
            .iter()
            .all(|e| e.vm_ems_ref.as_deref() == Some(vm.as_str())));
        let again = sim.perform("stop", &vm, None).unwrap_err();
        assert!(again.contains("is not powered on"), "{again}");
        let unknown = sim.perform("stop", "nope", None).unwrap_err();
        assert!(unknown.contains("has no VM [nope]"), "{unknown}");
        let odd = sim.perform("collect_running_processes", &vm, None);
        assert!(odd.is_err(), "{kind}");
    }
}

// ------------------------------------------------------------ backends

/// put → ready_for → dequeue → delivered on one backend.
fn operation_cycle(store: &dyn ObjectStore) {
    let ems = store
        .create(
            "ExtManagementSystem",
            crate::common::attrs(&[("name", "ops-ems".into())]),
        )
        .unwrap();
    let other = store
        .create(
            "ExtManagementSystem",
            crate::common::attrs(&[("name", "ops-other".into())]),
        )
        .unwrap();
    let put = |ems_id: i64, method: &str, args: Vec<AttrValue>| {
        operation::put(
            store,
            operation::NewOperation {
                class_name: "Vm".into(),
                instance_id: 42,
                ems_id,
                method_name: method.into(),
                args,
            },
        )
        .unwrap()
    };
    let stop = put(ems.id, "stop", vec![]);
    let migrate = put(
        ems.id,
        "migrate_via_ids",
        vec![
            AttrValue::Int(7),
            AttrValue::Nil,
            AttrValue::str("defaultPriority"),
        ],
    );
    put(other.id, "start", vec![]);
    let mut ready = operation::ready_for(store, ems.id).unwrap();
    let ids: Vec<i64> = ready.iter().map(|o| o.id).collect();
    assert_eq!(ids, [stop.id, migrate.id]);
    assert_eq!(
        ready[1].args,
        vec![
            AttrValue::Int(7),
            AttrValue::Nil,
            AttrValue::str("defaultPriority")
        ]
    );
    operation::dequeue(store, &mut ready[0], "node-a").unwrap();
    operation::delivered(
        store,
        &mut ready[0],
        OpState::Ok,
        "Message delivered successfully",
    )
    .unwrap();
    operation::dequeue(store, &mut ready[1], "node-a").unwrap();
    operation::delivered(store, &mut ready[1], OpState::Error, "no such host").unwrap();
    assert!(operation::ready_for(store, ems.id).unwrap().is_empty());
    assert_eq!(operation::ready_for(store, other.id).unwrap().len(), 1);
    let all = operation::list(store).unwrap();
    assert_eq!(all.len(), 3);
    let state = |id: i64| {
        all.iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, o)| o.attrs.get("state").cloned())
    };
    assert_eq!(state(stop.id), Some(AttrValue::str("ok")));
    assert_eq!(state(migrate.id), Some(AttrValue::str("error")));
}

#[test]
fn operations_on_redb_and_in_a_unit_of_work() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(automate_redb::RedbStore::open(tmp.path().join("ops.redb")).unwrap());
    operation_cycle(store.as_ref());

    // Put in a unit of work: seen by the provider only once committed
    // (with the event that led to it).
    let unit = store.begin_unit();
    let op = operation::put(
        unit.as_ref(),
        operation::NewOperation {
            class_name: "Vm".into(),
            instance_id: 43,
            ems_id: 99,
            method_name: "stop".into(),
            args: vec![],
        },
    )
    .unwrap();
    assert!(operation::ready_for(store.as_ref(), 99).unwrap().is_empty());
    assert_eq!(operation::ready_for(unit.as_ref(), 99).unwrap().len(), 1);
    unit.commit(|_| Ok(())).unwrap();
    let ready = operation::ready_for(store.as_ref(), 99).unwrap();
    assert_eq!(ready.iter().map(|o| o.id).collect::<Vec<_>>(), [op.id]);
}

#[test]
fn operations_on_postgres() {
    let Some(db) = automate_postgres::testing::TestDb::new("provider_operations") else {
        return;
    };
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    operation_cycle(store.as_ref());
}

/// An [`ObjectStore`] over a real one that counts what its callers read:
/// each object loaded, each reference a `find_by` answered.
struct CountingReads {
    inner: Arc<dyn ObjectStore>,
    loads: std::sync::atomic::AtomicUsize,
    found: std::sync::atomic::AtomicUsize,
}

impl CountingReads {
    fn reads(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.loads.load(Relaxed), self.found.load(Relaxed))
    }
}

impl ObjectStore for CountingReads {
    fn find(
        &self,
        class: &str,
        id: i64,
    ) -> Result<Option<automate_vmdb::VmdbRef>, automate_vmdb::StoreError> {
        self.inner.find(class, id)
    }
    fn attribute(
        &self,
        obj: &automate_vmdb::VmdbRef,
        name: &str,
    ) -> Result<Option<AttrValue>, automate_vmdb::StoreError> {
        self.inner.attribute(obj, name)
    }
    fn load(
        &self,
        class: &str,
        id: i64,
    ) -> Result<Option<automate_vmdb::StoredObject>, automate_vmdb::StoreError> {
        self.loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.load(class, id)
    }
    fn list(&self, class: &str) -> Result<Vec<automate_vmdb::VmdbRef>, automate_vmdb::StoreError> {
        self.inner.list(class)
    }
    fn create(
        &self,
        class: &str,
        attrs: automate_core::value::Attributes,
    ) -> Result<automate_vmdb::VmdbRef, automate_vmdb::StoreError> {
        self.inner.create(class, attrs)
    }
    fn update(
        &self,
        obj: &automate_vmdb::VmdbRef,
        name: &str,
        value: AttrValue,
    ) -> Result<(), automate_vmdb::StoreError> {
        self.inner.update(obj, name, value)
    }
    fn delete(&self, obj: &automate_vmdb::VmdbRef) -> Result<bool, automate_vmdb::StoreError> {
        self.inner.delete(obj)
    }
    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<automate_vmdb::VmdbRef>, automate_vmdb::StoreError> {
        let out = self.inner.find_by(class, attr, value)?;
        self.found
            .fetch_add(out.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(out)
    }
}

/// A provider with 10,000 delivered operations kept (state `ok`) and two
/// queued: a poll reads the two, not the 10,000 (counted: the objects
/// loaded and the references `find_by` answered), on `store`'s own
/// state index.
fn a_poll_reads_only_queued_operations<S: automate_vmdb::served::ServedStore + 'static>(
    store: Arc<S>,
) {
    const EMS_ID: i64 = 77;
    let unit = store.clone().begin_unit();
    let objs = unit.objects();
    for i in 0..10_000 {
        let op = operation::put(
            objs.as_ref(),
            operation::NewOperation {
                class_name: "Vm".into(),
                instance_id: i,
                ems_id: EMS_ID,
                method_name: "stop".into(),
                args: vec![],
            },
        )
        .unwrap();
        objs.update(&op, "state", AttrValue::str("ok")).unwrap();
    }
    let mut queued = Vec::new();
    for ems_id in [EMS_ID, EMS_ID, EMS_ID + 1] {
        let op = operation::put(
            objs.as_ref(),
            operation::NewOperation {
                class_name: "Vm".into(),
                instance_id: 1,
                ems_id,
                method_name: "start".into(),
                args: vec![],
            },
        )
        .unwrap();
        queued.push(op.id);
    }
    drop(objs);
    unit.commit().unwrap();
    let counted = CountingReads {
        inner: store.clone(),
        loads: Default::default(),
        found: Default::default(),
    };
    let mut done = std::collections::HashSet::new();
    let ready = operation::ready_for_skipping(&counted, EMS_ID, &mut done).unwrap();
    assert_eq!(
        ready.iter().map(|o| o.id).collect::<Vec<_>>(),
        queued[..2].to_vec()
    );
    // The three queued operations of every provider, nothing else.
    assert_eq!(counted.reads(), (3, 3));
    // The next poll reads as little.
    operation::ready_for_skipping(&counted, EMS_ID, &mut done).unwrap();
    assert_eq!(counted.reads(), (6, 6));
}

#[test]
fn a_poll_on_redb_reads_only_queued_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(automate_redb::RedbStore::open(tmp.path().join("poll.redb")).unwrap());
    a_poll_reads_only_queued_operations(store);
}

#[test]
fn a_poll_on_postgres_reads_only_queued_operations() {
    let Some(db) = automate_postgres::testing::TestDb::new("operations_poll") else {
        return;
    };
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    a_poll_reads_only_queued_operations(store);
}
