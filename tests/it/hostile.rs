//! Hostile Rhai methods (`tests/data/hostile`, written by its `generate.py`):
//! each one is run through the engine with the default sandbox limits (the
//! ones `automate run` uses) and must fail *that method* only, with an
//! `<AEMethod [...]>` error line naming what went wrong and where, and the
//! engine must keep serving: a normal method runs after each one, and the
//! whole corpus also runs concurrently on several threads of one engine.
//! `tests/it/methods.rs` covers the first hostile cases (plain infinite
//! loop, self recursion, `pad` to 1 GB, `+=` doubling, `eval`, a method on
//! `()`); this corpus covers the rest.

use automate_datastore::Datastore;
use automate_engine::{AttrValue, Engine, EngineError, Level, Workspace};
use automate_methods::RhaiLimits;
use automate_vmdb::MemoryStore;
use std::sync::Arc;

use crate::common::manifest;

/// Each hostile instance and the pieces of its error line (any one of them).
const CASES: &[(&str, &[&str])] = &[
    ("while_true", &["exceeded its limit of 5000000 operations"]),
    (
        "mutual_recursion",
        &["exceeded its limit of 32 nested function calls"],
    ),
    ("huge_array", &["Size of array/BLOB too large"]),
    ("huge_map", &["Size of object map too large"]),
    ("split_bomb", &["Size of array/BLOB too large"]),
    ("strings_in_array", &["Length of string too large"]),
    // Rhai does not count the strings stored into a map by index against
    // `max_string_size`; the runner's memory limit (the counting allocator
    // this test binary installs, as the `automate` binary does) stops it.
    (
        "strings_in_map",
        &["Method exceeded its memory limit of 64 MiB"],
    ),
    ("concat_bomb", &["Length of string too large"]),
    ("append_loop", &["Length of string too large"]),
    ("nested_eval", &["reserved keyword 'eval' is disabled"]),
    (
        "throws_map",
        &["uncaught exception: #{\"code\": 42, \"reason\": \"hostile\"}"],
    ),
    ("throws_late", &["failed after 499500"]),
    (
        "missing_attr_chain",
        &["Unknown property 'name' - a getter is not registered for type '()'"],
    ),
    (
        "missing_object",
        &["Unknown property 'name' - a getter is not registered for type '()'"],
    ),
    (
        "import_etc_passwd",
        &["Module not found: /etc/passwd (only the method's embedded_methods can be imported)"],
    ),
    (
        "import_relative",
        &["Module not found: ../../../../../../etc/hostname"],
    ),
    (
        "import_datastore_method",
        &["Module not found: /Hostile/Methods/normal"],
    ),
    ("overflow", &["Addition overflow"]),
    ("divide_by_zero", &["Division by zero"]),
    ("deep_nesting", &["Expression exceeds maximum complexity"]),
    ("long_line", &["Expression exceeds maximum complexity"]),
    ("long_line_throws", &["x reached 25000"]),
    ("reentrant", &["the re-entrant instantiation came back"]),
];

fn engine() -> Engine {
    let (ds, problems) = Datastore::open(&manifest("tests/data/hostile"));
    assert!(problems.is_empty(), "{problems:?}");
    let mut engine = Engine::new(Arc::new(ds)).with_store(Arc::new(MemoryStore::new()));
    engine.options.emit_tracing = false;
    automate_control::with_control_and_limits(engine, RhaiLimits::default()).0
}

fn run(engine: &Engine, instance: &str) -> (Workspace, Option<EngineError>) {
    engine.instantiate_traced(&format!("/Hostile/Methods/{instance}"), &[])
}

fn dump(ws: &Workspace) -> String {
    ws.trace_lines().join("\n")
}

/// The method's error line, or a panic with the trace.
fn error_line(ws: &Workspace, instance: &str) -> String {
    let prefix = format!("<AEMethod [/HOSTILE/Hostile/Methods/{instance}]> ");
    ws.trace
        .iter()
        .find(|l| l.text.starts_with(&prefix) && l.level == Level::Error)
        .map(|l| l.text.clone())
        .unwrap_or_else(|| panic!("{instance}: no error line\n{}", dump(ws)))
}

fn assert_serves(engine: &Engine, after: &str) {
    let (ws, err) = run(engine, "normal");
    assert_eq!(err, None, "after {after}: {}", dump(&ws));
    assert_eq!(
        ws.root_attr("served").map(AttrValue::to_text).as_deref(),
        Some("yes"),
        "after {after}: {}",
        dump(&ws)
    );
}

/// Runs one hostile case and checks its failure, then a normal method.
fn check_case(engine: &Engine, instance: &str, needles: &[&str]) {
    let (ws, err) = run(engine, instance);
    assert!(
        matches!(err, Some(EngineError::UnknownMethodRc(_))),
        "{instance}: {err:?}\n{}",
        dump(&ws)
    );
    let line = error_line(&ws, instance);
    assert!(
        needles.iter().any(|n| line.contains(n)) && line.contains(" at line "),
        "{instance}: {line}"
    );
    // The abort names the method's failure, nothing else.
    assert!(
        ws.trace.iter().any(|l| l
            .text
            .starts_with("Aborting instantiation (unknown method return code)")),
        "{instance}: {}",
        dump(&ws)
    );
    if instance == "reentrant" {
        assert!(
            ws.trace.iter().any(|l| l
                .text
                .contains("cyclical reference: [/HOSTILE/Hostile/Methods/reentrant")),
            "{}",
            dump(&ws)
        );
    }
    assert!(
        ws.root_attr("leak").is_none(),
        "{instance} imported something"
    );
    assert_serves(engine, instance);
}

#[test]
fn every_hostile_method_fails_alone_with_a_clear_line() {
    let engine = engine();
    assert_serves(&engine, "start");
    for (instance, needles) in CASES {
        check_case(&engine, instance, needles);
    }
}

#[test]
fn hostile_methods_on_several_threads_leave_the_engine_serving() {
    let engine = engine();
    // Three threads share one engine (one Rhai engine, one AST cache); each
    // takes every third case, from the end of the list, and runs a normal method
    // after each.
    std::thread::scope(|s| {
        for t in 0..3 {
            let engine = &engine;
            s.spawn(move || {
                for (instance, needles) in CASES.iter().rev().skip(t).step_by(3) {
                    check_case(engine, instance, needles);
                }
            });
        }
    });
    assert_serves(&engine, "the threads");
}
