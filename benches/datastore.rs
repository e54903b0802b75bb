//! Datastore benchmarks on the real ManageIQ domain (1,401 files):
//!
//! * `load_fixture_index`: `fs::read_root` on the fixture + `Index::build`
//!   (target < 150 ms);
//! * `lookup`: `Index::resolve` of `System/Event/EmsEvent` / `RHEVM` /
//!   `USER_RUN_VM` (target < 200 ns);
//! * `parse_only` and `index_only` split the load into its two halves.
//!
//! Skipped with a message when the fixture is absent.

// The allocator the `automate` binary runs with.
#[global_allocator]
static ALLOC: automate_core::alloc::CountingAlloc = automate_core::alloc::CountingAlloc;

use automate_datastore::{fs as dsfs, Index};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::PathBuf;

fn fixture() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/manageiq-content/ManageIQ"
    ));
    if dir.join("__domain__.yaml").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping datastore benches: no fixture at {}",
            dir.display()
        );
        None
    }
}

fn benches(c: &mut Criterion) {
    let Some(dir) = fixture() else { return };
    let report = dsfs::read_root(&dir);
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    c.bench_function("load_fixture_index", |b| {
        b.iter(|| {
            let report = dsfs::read_root(black_box(&dir));
            black_box(Index::build(&report.domains))
        })
    });
    c.bench_function("parse_only", |b| {
        b.iter(|| black_box(dsfs::read_root(black_box(&dir))))
    });
    c.bench_function("index_only", |b| {
        b.iter(|| black_box(Index::build(black_box(&report.domains))))
    });

    let index = Index::build(&report.domains);
    assert!(index
        .resolve("System/Event/EmsEvent", "RHEVM", "USER_RUN_VM")
        .is_some());
    c.bench_function("lookup", |b| {
        b.iter(|| {
            black_box(index.resolve(
                black_box("System/Event/EmsEvent"),
                black_box("RHEVM"),
                black_box("USER_RUN_VM"),
            ))
        })
    });
}

criterion_group!(datastore, benches);
criterion_main!(datastore);
