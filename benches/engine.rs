//! Engine benchmarks. Group `uri`: parsing the seed's event delivery URI and
//! rebuilding its query with `hash2query`. Group `instantiate`: the whole
//! engine on the shipped datastore, delivering `USER_RUN_VM` (event →
//! `Process/Event` → `RHEVM/USER_RUN_VM` → two `event_handlers` builtins,
//! run as no-ops) with tracing off; the target is under 20 µs.

// The allocator the `automate` binary runs with.
#[global_allocator]
static ALLOC: automate_core::alloc::CountingAlloc = automate_core::alloc::CountingAlloc;

use std::hint::black_box;

use std::path::Path;
use std::sync::Arc;

use automate_core::uri;
use automate_datastore::Datastore;
use automate_engine::{AttrValue, Attributes, Builtins, Engine, EngineOptions};
use automate_vmdb::MemoryStore;
use criterion::{criterion_group, criterion_main, Criterion};

/// The delivery URI of the seed's `USER_RUN_VM` event (SPEC §5).
const SEED_URI: &str = "/System/Process/Event?EventStream%3A%3Aevent_stream=1000000003170&Host%3A%3Ahost=1000000000001&MiqServer%3A%3Amiq_server=1000000000001&User%3A%3Auser=1&VmOrTemplate%3A%3Avm=1000000000029&event_id=1000000003170&event_stream_id=1000000003170&event_type=USER_RUN_VM&host_id=1000000000001&object_name=Event&vm_id=1000000000029&vmdb_object_type=event_stream";

fn uri_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("uri");
    group.bench_function("parse_seed_uri", |b| {
        b.iter(|| uri::parse(black_box(SEED_URI)))
    });
    let pairs = match uri::parse(SEED_URI) {
        Ok(parsed) => parsed.query,
        Err(err) => panic!("seed URI does not parse: {err}"),
    };
    group.bench_function("hash2query_seed", |b| {
        b.iter(|| uri::hash2query(black_box(&pairs)))
    });
    group.finish();
}

/// The delivery of a `USER_RUN_VM` event stored as `EmsEvent` 1 for VM 29.
const DELIVERY_URI: &str = "/System/Process/Event?EventStream%3A%3Aevent_stream=1&VmOrTemplate%3A%3Avm=29&event_id=1&event_stream_id=1&event_type=USER_RUN_VM&object_name=Event&vm_id=29&vmdb_object_type=event_stream";

fn instantiate_benches(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("datastore");
    let (ds, problems) = Datastore::open(&root);
    assert!(problems.is_empty(), "shipped datastore: {problems:?}");
    let store = MemoryStore::new();
    let event: Attributes = [
        ("event_namespace", "EmsEvent"),
        ("source", "RHEVM"),
        ("event_type", "USER_RUN_VM"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), AttrValue::str(v)))
    .collect();
    store.insert("EmsEvent", 1, event);
    store.insert("VmOrTemplate", 29, Attributes::default());
    let engine = Engine::new(Arc::new(ds))
        .with_store(Arc::new(store))
        .with_builtins(Builtins::standard().with_noops(&[
            "event_action_policy",
            "event_action_refresh",
            "event_action_refresh_sync",
            "event_enforce_policy",
            "change_event_target_state",
            "parse_event_stream",
            "parse_provider_category",
        ]))
        .with_options(EngineOptions {
            emit_tracing: false,
            ..EngineOptions::default()
        });
    let ws = engine
        .instantiate(DELIVERY_URI, &[])
        .expect("delivery instantiates");
    assert_eq!(ws.objects.len(), 4, "{:#?}", ws.trace_lines());

    let mut group = c.benchmark_group("instantiate");
    group.bench_function("user_run_vm_delivery", |b| {
        b.iter(|| engine.instantiate(black_box(DELIVERY_URI), &[]))
    });
    group.finish();
}

criterion_group!(uri_group, uri_benches);
criterion_group!(instantiate_group, instantiate_benches);
criterion_main!(uri_group, instantiate_group);
