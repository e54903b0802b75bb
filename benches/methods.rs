//! Method benchmarks, through the whole engine on a one-field class:
//!
//! * `rhai_method_call`: the same method through `Engine::run_method`.
//! * `rhai_trivial_method`: `/Bench/Trivial/run?x=1`, whose `meth1` runs a
//!   Rhai method reading `evm.root["x"]` and setting an attribute (target
//!   < 2 µs per call for the method);
//! * `rhai_state_machine_5`: a five-state machine whose states each run a
//!   Rhai method (`METHOD::step`) counting in a root attribute;
//! * `builtin_noop_method`: the same instance shape calling a native no-op
//!   builtin, the engine's own cost of instantiating and calling a method;
//! * `rhai_eval_empty`: Rhai's floor, `()` evaluated in a fresh `Scope`;
//! * `rhai_eval_only`: a cached AST evaluated by the shared `rhai::Engine`
//!   with a fresh `Scope` and no engine around it.
//!
//! The datastore is written to a temporary directory in ManageIQ's layout.

// The allocator the `automate` binary runs with.
#[global_allocator]
static ALLOC: automate_core::alloc::CountingAlloc = automate_core::alloc::CountingAlloc;

use automate_datastore::Datastore;
use automate_engine::Engine;
use automate_methods::RhaiRunner;
use automate_vmdb::MemoryStore;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

const FIELD: &str = "  - field:
      aetype: method
      name: meth1
      display_name:
      datatype: string
      priority: 1
      owner:
      default_value:
      substitute: true
      message: create
      visibility:
      collect:
      scope:
      description:
      condition:
      on_entry:
      on_exit:
      on_error:
      max_retries:
      max_time:
";

const SCRIPT: &str = "evm.object[\"y\"] = evm.root[\"x\"];\n";

/// Instantiates `uri` with `args`: its root's `attr` must be `want`.
fn assert_root_attr(engine: &Engine, uri: &str, args: &[(String, String)], attr: &str, want: &str) {
    let ws = engine.instantiate(uri, args).expect("runs");
    assert_eq!(
        ws.root().and_then(|o| o.get(attr)).map(|v| v.to_text()),
        Some(want.to_string()),
        "{:?}",
        ws.trace_lines()
    );
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// Writes the inline Rhai method `name` of the class directory `cls`:
/// its YAML and its `body`.
fn write_rhai_method(root: &Path, cls: &str, name: &str, body: &str) {
    write(
        root,
        &format!("{cls}/__methods__/{name}.yaml"),
        &method_yaml(name, "rhai", "inline"),
    );
    write(root, &format!("{cls}/__methods__/{name}.rhai"), body);
}

fn method_yaml(name: &str, language: &str, location: &str) -> String {
    format!(
        "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n    \
         display_name:\n    description:\n    scope: instance\n    language: {language}\n    \
         location: {location}\n  inputs: []\n"
    )
}

fn instance_yaml(name: &str, method: &str) -> String {
    format!(
        "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    display_name:\n    \
         name: {name}\n    inherits:\n    description:\n  fields:\n  - meth1:\n      value: {method}\n"
    )
}

/// A `state` field named `name`.
fn state_field(name: &str, priority: usize) -> String {
    FIELD
        .replace("aetype: method", "aetype: state")
        .replace("name: meth1", &format!("name: {name}"))
        .replace("priority: 1", &format!("priority: {priority}"))
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
    write(
        root,
        "Bench/Bench/Trivial.class/__class__.yaml",
        &format!(
            "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    \
             display_name:\n    name: Trivial\n    type:\n    inherits:\n    visibility:\n    \
             owner:\n  schema:\n{FIELD}"
        ),
    );
    let cls = "Bench/Bench/Trivial.class";
    // Instance -> the method it runs.
    for (name, method) in [("run", "trivial"), ("noop", "noop"), ("empty", "empty")] {
        write(
            root,
            &format!("{cls}/{name}.yaml"),
            &instance_yaml(name, method),
        );
    }
    write_rhai_method(root, cls, "trivial", SCRIPT);
    write_rhai_method(root, cls, "empty", "()\n");
    let machine = "Bench/Bench/Machine.class";
    let fields: String = (1..=5).map(|i| state_field(&format!("s{i}"), i)).collect();
    write(
        root,
        &format!("{machine}/__class__.yaml"),
        &format!(
            "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    \
             display_name:\n    name: Machine\n    type:\n    inherits:\n    visibility:\n    \
             owner:\n  schema:\n{fields}"
        ),
    );
    let values: String = (1..=5)
        .map(|i| format!("  - s{i}:\n      value: METHOD::step\n"))
        .collect();
    write(
        root,
        &format!("{machine}/five.yaml"),
        &format!(
            "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    \
             display_name:\n    name: five\n    inherits:\n    description:\n  fields:\n{values}"
        ),
    );
    write_rhai_method(
        root,
        machine,
        "step",
        "let n = evm.root[\"n\"];\nevm.root[\"n\"] = if type_of(n) == \"()\" { 1 } else { n + 1 };\n",
    );
    write(
        root,
        &format!("{cls}/__methods__/noop.yaml"),
        &method_yaml("noop", "ruby", "builtin"),
    );
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    datastore(dir.path());
    let (ds, problems) = Datastore::open(dir.path());
    assert!(problems.is_empty(), "{problems:?}");
    let mut engine = Engine::new(Arc::new(ds)).with_store(Arc::new(MemoryStore::new()));
    engine.options.emit_tracing = false;
    let (engine, _runner) = automate_control::with_control(engine);
    let engine = engine.with_builtins(automate_methods::event_builtins().with_noops(&["noop"]));
    let args = vec![("x".to_string(), "1".to_string())];

    assert_root_attr(&engine, "/Bench/Trivial/run", &args, "y", "1");
    c.bench_function("rhai_trivial_method", |b| {
        b.iter(|| black_box(engine.instantiate(black_box("/Bench/Trivial/run"), &args)))
    });
    // The method call alone, as `automate method run` makes it: a fresh
    // object of the class, the lookup, inputs, the Rhai call, the rc.
    let (ws, err) = engine.run_method("/Bench/Trivial/trivial", &args);
    assert!(err.is_none(), "{err:?} {:?}", ws.trace_lines());
    assert_eq!(
        ws.objects[0].get("y").map(|v| v.to_text()),
        Some("1".to_string()),
        "{:?}",
        ws.trace_lines()
    );
    c.bench_function("rhai_method_call", |b| {
        b.iter(|| black_box(engine.run_method(black_box("/Bench/Trivial/trivial"), &args)))
    });
    c.bench_function("rhai_empty_method", |b| {
        b.iter(|| black_box(engine.instantiate(black_box("/Bench/Trivial/empty"), &args)))
    });
    assert_root_attr(&engine, "/Bench/Machine/five", &[], "n", "5");
    c.bench_function("rhai_state_machine_5", |b| {
        b.iter(|| black_box(engine.instantiate(black_box("/Bench/Machine/five"), &[])))
    });
    engine
        .instantiate("/Bench/Trivial/noop", &args)
        .expect("runs");
    c.bench_function("builtin_noop_method", |b| {
        b.iter(|| black_box(engine.instantiate(black_box("/Bench/Trivial/noop"), &args)))
    });

    // The script alone: no `evm` frame, so read a plain map instead.
    let bare = RhaiRunner::new();
    let ast = bare
        .compile("let root = #{x: 1}; let obj = #{}; obj[\"y\"] = root[\"x\"];")
        .expect("compiles");
    let empty = bare.compile("()").expect("compiles");
    for (name, script) in [("rhai_eval_empty", &empty), ("rhai_eval_only", &ast)] {
        c.bench_function(name, |b| {
            b.iter(|| {
                let mut scope = rhai::Scope::new();
                black_box(
                    bare.rhai()
                        .eval_ast_with_scope::<rhai::Dynamic>(&mut scope, script),
                )
            })
        });
    }
}

criterion_group!(methods_group, benches);
criterion_main!(methods_group);
