//! The service model's cost in a Rhai method (issue 20: a method calling 10
//! service-model methods costs < 20 µs):
//!
//! * `service_model_10_calls/<store>`: `automate method run`'s path (a
//!   fresh object, the lookup, the Rhai call, the rc) for a method making
//!   ten service-model calls: `evm.vmdb("vm", id)`, `vm.name`, `vm.host`,
//!   `host.name`, `vm.ext_management_system`, `ems.name`,
//!   `vm.normalized_name`, `vm.power_state`, `vm.owner` and a two-condition
//!   `where(...).count()`;
//! * `service_model_baseline/<store>`: the same method with one
//!   `evm.object` read instead, so the difference is the ten calls' cost.
//!
//! On the memory store and on redb (its committed-object cache, as the
//! pipeline reads), the datastore written to a temporary directory.

// The allocator the `automate` binary runs with (the sandbox's memory
// limit reads it).
#[global_allocator]
static ALLOC: automate_core::alloc::CountingAlloc = automate_core::alloc::CountingAlloc;

use automate_core::value::{AttrValue, Attributes};
use automate_datastore::Datastore;
use automate_engine::Engine;
use automate_methods::RhaiRunner;
use automate_vmdb::{MemoryStore, ObjectStore};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

const TEN_CALLS: &str = r#"
let vm = evm.vmdb("vm", evm.object["vm_id"]);
let name = vm.name;
let host = vm.host;
let host_name = host.name;
let ems = vm.ext_management_system;
let ems_name = ems.name;
let normalized = vm.normalized_name;
let power = vm.power_state;
let owner = vm.owner;
let on_host = evm.vmdb("vm").where(#{host_id: host.id, power_state: "on"}).count();
evm.object["out"] = `${host_name}/${ems_name}/${normalized}/${power}/${on_host}`;
"#;

const BASELINE: &str = r#"
let id = evm.object["vm_id"];
evm.object["out"] = id;
"#;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn datastore(root: &Path) {
    write(
        root,
        "Bench/__domain__.yaml",
        "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: Bench\n    \
         description:\n    display_name:\n    priority: 1\n    enabled: true\n    tenant_id: 1\n    \
         source: user\n    top_level_namespace:\n",
    );
    write(
        root,
        "Bench/Bench/__namespace__.yaml",
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Bench\n    \
         description:\n    display_name:\n    priority:\n    enabled:\n",
    );
    let cls = "Bench/Bench/Model.class";
    write(
        root,
        &format!("{cls}/__class__.yaml"),
        "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    \
         display_name:\n    name: Model\n    type:\n    inherits:\n    visibility:\n    \
         owner:\n  schema: []\n",
    );
    for (name, body) in [("ten", TEN_CALLS), ("baseline", BASELINE)] {
        write(
            root,
            &format!("{cls}/__methods__/{name}.yaml"),
            &format!(
                "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n    \
                 display_name:\n    description:\n    scope: instance\n    language: rhai\n    \
                 location: inline\n  inputs: []\n"
            ),
        );
        write(root, &format!("{cls}/__methods__/{name}.rhai"), body);
    }
}

fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A provider, a host, an owner and 20 VMs on the host (half powered on);
/// the id of the first VM.
fn world(store: &dyn ObjectStore) -> i64 {
    let ems = store
        .create(
            "ExtManagementSystem",
            attrs(&[("name", AttrValue::str("vc1"))]),
        )
        .expect("ems");
    let host = store
        .create(
            "Host",
            attrs(&[
                ("name", AttrValue::str("esx1")),
                ("ems_id", AttrValue::Int(ems.id)),
            ]),
        )
        .expect("host");
    let user = store
        .create("User", attrs(&[("userid", AttrValue::str("ada"))]))
        .expect("user");
    let mut first = 0;
    for i in 0..20 {
        let vm = store
            .create(
                "Vm",
                attrs(&[
                    ("name", AttrValue::str(format!("web {i}"))),
                    (
                        "power_state",
                        AttrValue::str(if i % 2 == 0 { "on" } else { "off" }),
                    ),
                    ("host_id", AttrValue::Int(host.id)),
                    ("ems_id", AttrValue::Int(ems.id)),
                    ("evm_owner_id", AttrValue::Int(user.id)),
                ]),
            )
            .expect("vm");
        if i == 0 {
            first = vm.id;
        }
    }
    first
}

fn bench_on(c: &mut Criterion, label: &str, ds: &Arc<Datastore>, store: Arc<dyn ObjectStore>) {
    let vm = world(store.as_ref());
    let mut engine = Engine::new(ds.clone()).with_store(store);
    engine.options.emit_tracing = false;
    let engine = engine.with_scripts(Arc::new(RhaiRunner::new()));
    let args = vec![("vm_id".to_string(), vm.to_string())];
    let (ws, err) = engine.run_method("/Bench/Model/ten", &args);
    assert!(err.is_none(), "{err:?} {:?}", ws.trace_lines());
    assert_eq!(
        ws.objects[0].get("out").map(|v| v.to_text()),
        Some("esx1/vc1/web_0/on/10".to_string()),
        "{:?}",
        ws.trace_lines()
    );
    c.bench_function(&format!("service_model_10_calls/{label}"), |b| {
        b.iter(|| black_box(engine.run_method(black_box("/Bench/Model/ten"), &args)))
    });
    c.bench_function(&format!("service_model_baseline/{label}"), |b| {
        b.iter(|| black_box(engine.run_method(black_box("/Bench/Model/baseline"), &args)))
    });
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("datastore");
    datastore(&root);
    let (ds, problems) = Datastore::open(&root);
    assert!(problems.is_empty(), "{problems:?}");
    let ds = Arc::new(ds);
    bench_on(c, "memory", &ds, Arc::new(MemoryStore::new()));
    let redb = automate_redb::RedbStore::open(dir.path().join("automate.redb")).expect("redb");
    bench_on(c, "redb", &ds, Arc::new(redb));
}

criterion_group!(service_model_group, benches);
criterion_main!(service_model_group);
