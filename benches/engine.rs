//! Engine benchmarks. Group `uri`: parsing the seed's event delivery URI and
//! rebuilding its query with `hash2query`.

use std::hint::black_box;

use automate::uri;
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

criterion_group!(uri_group, uri_benches);
criterion_main!(uri_group);
