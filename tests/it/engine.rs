//! The engine against ManageIQ's acceptance behaviours (reference §10, from
//! `ManageIQ/manageiq-automation_engine` `spec/`), each on its own small
//! datastore under `tests/data/engine/<name>/` in ManageIQ's YAML export
//! layout (written by `tests/data/engine/generate.py` from the specs' data),
//! then the event flow on the shipped datastore and on the real ManageIQ
//! domain of `shared/fixtures/manageiq-content`. Every case that runs an
//! engine is listed once (in `engine_cases!` at the end) and becomes one
//! test per object store, `engine::memory::<case>` and
//! `engine::redb::<case>`, so the two stores cannot drift apart; a failing
//! test's name is the store and the case.
//!
//! | §10 | behaviour | test(s) |
//! |---|---|---|
//! | 1 | hash2query / query2hash | `item01_hash2query_round_trip` |
//! | 2 | URI split trims, collapses `//` | `item02_uri_split_trims_and_collapses` |
//! | 3 | path render and split | `item03_path_render_and_split` |
//! | 4 | delivery URI construction | not ported: `create_automation_object` is the event pipeline's (src/events) |
//! | 5 | deliver re-queue, `result_format` | not ported: the queue is src/events'; the engine half (retry args) is item 32 |
//! | 6 | attribute case, instance values, `${miqaedb:}`, passwords | `item06_attribute_case_and_instance_values` (the password is encrypted under manageiq-password's public test key) |
//! | 7 | relationships, wildcard, messages | `item07_relationships_wildcards_and_messages` |
//! | 8 | cyclical relationships | `item08_cyclical_relationship` |
//! | 9 | invalid paths | `item09_invalid_paths` |
//! | 10 | assertions | `item10_assertions`, `item10_assertions_on_objects` |
//! | 11 | missing instance without `.missing` | `item11_missing_instance_without_missing` |
//! | 12 | `.missing` and `_missing_instance` | `item12_missing_instance_name` |
//! | 13 | substitution | `item13_substitution` |
//! | 14 | substitution method chains | `item14_substitution_with_methods` |
//! | 15 | `Array::` args | `item15_array_args` |
//! | 16 | `Class::name` args | `item16_process_args_as_attributes` |
//! | 17 | null coalescing | `item17_null_coalescing` |
//! | 18 | null-coalescing method input | `item18_null_coalescing_method_input` |
//! | 19 | vmdb datatypes | `item19_vmdb_datatypes` |
//! | 20 | input datatype conversion | `item20_input_datatype_conversion` |
//! | 21 | disabled inheritance | `item21_disabled_inheritance` |
//! | 22 | domain search | `item22_domain_search` |
//! | 23 | domain overlays | `item23_domain_overlays` |
//! | 24 | method override | `item24_method_override` |
//! | 25 | collect | `item25_collect` |
//! | 26 | workspace object lookup | `item26_object_lookup` |
//! | 27 | methods: inputs, builtins, method URIs | `item27_methods` |
//! | 28 | current namespace/class/instance/message/method | `item28_current_names` (what the engine hands `$evm`) |
//! | 29 | exit codes | `item29_exit_codes` (rc → ok/warn/stop/abort/unknown; the Rhai stack-trace remap is the methods issue's) |
//! | 30 | embedded methods | not ported: loading embedded Rhai modules is the methods issue's (src/methods) |
//! | 31 | state-machine steps | `item31_state_machine_steps` |
//! | 32 | retries by re-delivery | `item32_state_machine_retry` (the engine half of `deliver`: `Workspace::retry_args`) |
//! | 33 | nested state machines | `item33_nested_state_machines` |
//! | 34 | missing relationship in a state | `item34_state_missing_relation` |
//! | 35 | state-machine methods | `item35_state_machine_methods` |
//! | 36 | enforce max_retries / max_time | `item36_state_maxima` |
//! | 37 | users and tenants | not ported: no users, groups or tenants in this port yet |
//! | 38 | `raise_ems_event` queue args | not ported: the event pipeline's (src/events) |
//! | 39 | workspace (de)serialization | not ported: external/async methods are the methods issue's |
//! | 40 | StateVarHash, `$evm` state-var API | not ported: `$evm` is the methods issue's (state vars in substitution: item 17, across retries: item 32) |
//!
//! Ruby method bodies of the specs become builtins registered here
//! ([`test_builtins`]) or `language: rhai` methods that a native
//! [`SpecRunner`] runs, so every engine rule around methods (inputs,
//! `Invoking` lines, exit codes, state steps) is exercised without Rhai.

use automate_core::uri;
use automate_datastore::{Datastore, MethodDef};
use automate_engine::{
    AttrValue, Attributes, Builtins, Engine, EngineError, EngineOptions, Level, MethodRc, ObjectId,
    Runtime, ScriptRunner, Workspace,
};
use automate_redb::RedbStore;
use automate_vmdb::{MemoryStore, ObjectStore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// ---------------------------------------------------------------------------
// Harness

fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/engine")
        .join(name)
}

fn open(dir: &Path) -> Arc<Datastore> {
    let (ds, problems) = Datastore::open(dir);
    assert!(
        problems.is_empty(),
        "{}: {}",
        dir.display(),
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    Arc::new(ds)
}

/// The object stores every engine case runs on: one list of cases
/// (`engine_cases!`), two backends, so the two cannot drift apart.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Memory,
    Redb,
}

/// A case's object store, empty at first; fixtures go in with fixed ids.
/// The redb one lives in its own temporary directory.
#[derive(Clone)]
enum Store {
    Memory(Arc<MemoryStore>),
    Redb {
        store: Arc<RedbStore>,
        _dir: Arc<tempfile::TempDir>,
    },
}

impl Store {
    fn new(b: Backend) -> Store {
        match b {
            Backend::Memory => Store::Memory(Arc::new(MemoryStore::new())),
            Backend::Redb => {
                let dir = tempfile::tempdir().unwrap();
                let store = RedbStore::open(dir.path().join("vmdb.redb")).unwrap();
                Store::Redb {
                    store: Arc::new(store),
                    _dir: Arc::new(dir),
                }
            }
        }
    }

    /// Stores a fixture object with a given id.
    fn insert(&self, class: &str, id: i64, attrs: Attributes) {
        match self {
            Store::Memory(m) => {
                m.insert(class, id, attrs).expect("a known class");
            }
            Store::Redb { store, .. } => {
                store.insert(class, id, attrs).unwrap();
            }
        }
    }

    fn object_store(&self) -> Arc<dyn ObjectStore> {
        match self {
            Store::Memory(m) => m.clone(),
            Store::Redb { store, .. } => store.clone(),
        }
    }
}

/// An engine and the store it runs on (kept alive with it).
struct Case {
    engine: Engine,
    _store: Store,
}

impl std::ops::Deref for Case {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

/// An engine over `tests/data/engine/<name>` with the test builtins, on an
/// empty store of `b`.
fn engine(b: Backend, name: &str) -> Case {
    engine_at(&data_dir(name), Store::new(b))
}

fn engine_at(dir: &Path, store: Store) -> Case {
    let engine = Engine::new(open(dir))
        .with_store(store.object_store())
        .with_builtins(test_builtins());
    Case {
        engine,
        _store: store,
    }
}

fn run(engine: &Engine, uri: &str) -> Workspace {
    match engine.instantiate(uri, &[]) {
        Ok(ws) => {
            // `ENGINE_TRACE=1 cargo test --test it engine -- --nocapture`
            if std::env::var_os("ENGINE_TRACE").is_some() {
                eprintln!("== {uri}\n{}", render_trace(&ws));
            }
            ws
        }
        Err(e) => panic!(
            "{uri}: {e}\n{}",
            engine
                .instantiate_traced(uri, &[])
                .0
                .trace_lines()
                .join("\n")
        ),
    }
}

fn text(v: Option<&AttrValue>) -> String {
    v.map(AttrValue::to_text).unwrap_or_default()
}

fn root_text(ws: &Workspace, name: &str) -> String {
    text(ws.root_attr(name))
}

/// A root attribute holding an array of strings (`states_executed`).
fn root_list(ws: &Workspace, name: &str) -> Vec<String> {
    match ws.root_attr(name) {
        Some(AttrValue::Array(items)) => items.iter().map(AttrValue::to_text).collect(),
        None | Some(AttrValue::Nil) => Vec::new(),
        Some(other) => panic!("{name} is not an array: {other:?}"),
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strs(items: &[&str]) -> Vec<String> {
    sorted(items.iter().map(|s| s.to_string()).collect())
}

/// The root's `method_executed` after running `uri`.
fn executed(engine: &Engine, uri: &str) -> String {
    root_text(&run(engine, uri), "method_executed")
}

fn has_line(ws: &Workspace, line: &str) -> bool {
    ws.trace.iter().any(|l| l.text == line)
}

fn assert_line(ws: &Workspace, line: &str) {
    assert!(
        has_line(ws, line),
        "missing trace line {line:?} in:\n{}",
        ws.trace_lines().join("\n")
    );
}

fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn root_id(rt: &Runtime<'_>, obj: ObjectId) -> ObjectId {
    rt.root_of(obj)
}

/// Appends `value` to the array root attribute `name`.
fn push_root(rt: &mut Runtime<'_>, obj: ObjectId, name: &str, value: AttrValue) {
    let root = root_id(rt, obj);
    let mut items = match rt.attr(root, name) {
        Some(AttrValue::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    items.push(value);
    rt.set_attr(root, name, AttrValue::Array(items));
}

fn input_text(inputs: &Attributes, name: &str) -> String {
    text(inputs.get(name))
}

// ---------------------------------------------------------------------------
// Builtins standing in for the specs' Ruby methods.

fn test_builtins() -> Builtins {
    let mut b = Builtins::standard();
    b.insert("record_inputs", record_inputs);
    // `$evm.root['method_executed'] = <who>`.
    b.insert("record_method_executed", |rt, _, inputs| {
        set_roots(rt, &[("method_executed", inputs["executed"].clone())])
    });
    b.insert("record_current", record_current);
    b.insert("lookup_paths", lookup_paths);
    // `$evm.root['test_root_object_attribute'] = <method name>`.
    b.insert("mark_root", |rt, _, _| {
        let method = rt.current_method().unwrap_or_default().to_string();
        set_roots(
            rt,
            &[("test_root_object_attribute", AttrValue::str(method))],
        )
    });
    b.insert("set_result", |rt, _, inputs| {
        set_roots(rt, &[("ae_result", inputs["result"].clone())])
    });
    b.insert("explode", |_, _, _| {
        Err(EngineError::InvalidMethod(
            "Intentionally raise an error".into(),
        ))
    });
    b.insert("perpetual_retry", |rt, _, _| {
        set_roots(rt, &[("ae_result", AttrValue::str("retry"))])
    });
    b.insert("state_var", state_var_script);
    b.insert("retry_server_affinity", |rt, _, _| {
        set_roots(
            rt,
            &[
                ("ae_result", AttrValue::str("retry")),
                ("ae_retry_server_affinity", AttrValue::Bool(true)),
            ],
        )
    });
    b.insert("simpleton", |rt, _, _| {
        set_roots(rt, &[("ae_result", AttrValue::str("ok"))])
    });
    b.insert("perpetual_restart", |rt, _, _| {
        set_roots(rt, &[("ae_result", AttrValue::str("restart"))])
    });
    b.insert("perpetual_restart_with_next_state", |rt, _, _| {
        set_roots(
            rt,
            &[
                ("ae_result", AttrValue::str("restart")),
                ("ae_next_state", AttrValue::str("state2")),
            ],
        )
    });
    b
}

/// Sets the root attributes `pairs`, in order.
fn set_roots(rt: &mut Runtime<'_>, pairs: &[(&str, AttrValue)]) -> Result<(), EngineError> {
    for (name, value) in pairs {
        rt.set_root(name, value.clone());
    }
    Ok(())
}

/// `$evm.root['result'] = $evm.inputs`, and each input as a root attribute.
fn record_inputs(
    rt: &mut Runtime<'_>,
    _: ObjectId,
    inputs: &Attributes,
) -> Result<(), EngineError> {
    let hash = inputs
        .iter()
        .map(|(k, v)| (AttrValue::str(k.as_str()), v.clone()))
        .collect();
    rt.set_root("result", AttrValue::Hash(hash));
    for (k, v) in inputs {
        rt.set_root(k, v.clone());
    }
    Ok(())
}

/// `$evm.current_namespace/class/instance/message/method` into the root.
fn record_current(rt: &mut Runtime<'_>, obj: ObjectId, _: &Attributes) -> Result<(), EngineError> {
    let o = rt.ws.object(obj).clone();
    let message = rt.current_message().to_string();
    let method = rt.current_method().unwrap_or_default().to_string();
    rt.set_root("current_namespace", AttrValue::str(o.namespace));
    rt.set_root("current_class", AttrValue::str(o.class));
    rt.set_root("current_instance", AttrValue::str(o.instance));
    rt.set_root("current_message", AttrValue::str(message));
    rt.set_root("current_method", AttrValue::str(method));
    Ok(())
}

/// The paths of `miq_ae_object_lookup_spec.rb`, through `$evm.object(path)`.
const LOOKUPS: [&str; 8] = [
    "/Dom1/A/B/class1/instance1",
    "Dom1/A/B/class1/instance1",
    "/C/d/ClASs1/instance1",
    "C/d/class1/instance1",
    "/C/d/ClASs1/i?stance1",
    "/C/d/ClASs1/*",
    "/Dom5/A/B/class1/instance1",
    "A/B",
];

fn lookup_paths(rt: &mut Runtime<'_>, _: ObjectId, _: &Attributes) -> Result<(), EngineError> {
    for (i, path) in LOOKUPS.iter().enumerate() {
        let found = match rt.object_at_path(path)? {
            Some(o) => rt.ws.object(o).object_name.clone(),
            None => "nil".to_string(),
        };
        rt.set_root(&format!("found_{i}"), AttrValue::str(found));
    }
    Ok(())
}

/// `method_script_state_var` of the retry spec.
fn state_var_script(rt: &mut Runtime<'_>, _: ObjectId, _: &Attributes) -> Result<(), EngineError> {
    let vars = &mut rt.ws.state_vars;
    if vars.get("gravy") == Some(&AttrValue::str("train")) {
        let one = match vars.get("one") {
            Some(AttrValue::Int(n)) => *n,
            _ => 0,
        };
        vars.insert("three".into(), AttrValue::Int(3));
        vars.insert("one".into(), AttrValue::Int(one + 1));
        rt.set_root("finished", AttrValue::Bool(true));
        rt.set_root("ae_result", AttrValue::str("ok"));
    } else {
        vars.insert("one".into(), AttrValue::Int(0));
        vars.insert("two".into(), AttrValue::Int(2));
        vars.insert("gravy".into(), AttrValue::str("train"));
        rt.set_root("ae_result", AttrValue::str("retry"));
        rt.set_root("ae_retry_interval", AttrValue::str("1.minute"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A ScriptRunner that runs the datastores' Rhai methods natively.

type ScriptFn = fn(&mut Runtime<'_>, ObjectId, &Attributes) -> Result<MethodRc, EngineError>;

/// Runs inline methods by name with Rust stand-ins for their Rhai bodies.
#[derive(Default)]
struct SpecRunner(HashMap<&'static str, ScriptFn>);

impl SpecRunner {
    fn with(mut self, name: &'static str, f: ScriptFn) -> SpecRunner {
        self.0.insert(name, f);
        self
    }
}

impl ScriptRunner for SpecRunner {
    fn run(
        &self,
        rt: &mut Runtime<'_>,
        obj: ObjectId,
        method: &MethodDef,
        inputs: &Attributes,
    ) -> Result<MethodRc, EngineError> {
        match self.0.get(method.name.as_str()) {
            Some(f) => f(rt, obj, inputs),
            None => panic!("SpecRunner has no method {}", method.fqname),
        }
    }
}

fn engine_with_runner(b: Backend, name: &str, runner: SpecRunner) -> Case {
    let Case { engine, _store } = engine(b, name);
    Case {
        engine: engine.with_scripts(Arc::new(runner)),
        _store,
    }
}

/// `exit evm.inputs["rc"]`.
fn exit_with(
    _: &mut Runtime<'_>,
    _: ObjectId,
    inputs: &Attributes,
) -> Result<MethodRc, EngineError> {
    match inputs.get("rc") {
        Some(AttrValue::Int(rc)) => Ok(MethodRc::from_code(*rc)),
        other => panic!("rc input: {other:?}"),
    }
}

/// The tail both step methods share: `ae_result`, `ae_next_state`, then
/// `raise` (an uncaught error: unknown return code 1) or `exit`.
fn apply_step_inputs(rt: &mut Runtime<'_>, inputs: &Attributes) -> Result<MethodRc, EngineError> {
    rt.set_root("ae_result", inputs["ae_result"].clone());
    set_next_state(rt, inputs);
    let raise = input_text(inputs, "raise");
    if !raise.is_empty() {
        let method = rt.current_method().unwrap_or_default().to_string();
        rt.log(Level::Error, format!("<AEMethod {method}> {raise}"));
        return Ok(MethodRc::Unknown(1));
    }
    if let Some(AttrValue::Int(code)) = inputs.get("exit_code") {
        return Ok(MethodRc::from_code(*code));
    }
    Ok(MethodRc::Ok)
}

/// Pushes the current state on the root's `step_<ae_state_step>` list;
/// the state.
fn push_step(rt: &mut Runtime<'_>, obj: ObjectId) -> String {
    let step = format!("step_{}", rt.root_text("ae_state_step"));
    let state = rt.root_text("ae_state");
    push_root(rt, obj, &step, AttrValue::str(state.clone()));
    state
}

/// Sets `ae_next_state` from the input of that name, if there is one.
fn set_next_state(rt: &mut Runtime<'_>, inputs: &Attributes) {
    let next = input_text(inputs, "ae_next_state");
    if !next.is_empty() {
        rt.set_root("ae_next_state", AttrValue::str(next));
    }
}

/// The steps spec's methods: `standard` records the instance it ran for,
/// `common_state_method` the state per step.
fn steps_runner() -> SpecRunner {
    SpecRunner::default()
        .with("standard", |rt, obj, inputs| {
            let instance = rt.ws.object(obj).instance.clone();
            push_root(rt, obj, "states_executed", AttrValue::str(instance));
            apply_step_inputs(rt, inputs)
        })
        .with("common_state_method", |rt, obj, inputs| {
            push_step(rt, obj);
            apply_step_inputs(rt, inputs)
        })
}

/// The multi spec's methods: `standard` records the state it ran in;
/// `common_state_method` the state per step, and the state's saved maxima
/// must have been restored (its name ends in its `max_retries`).
fn multi_runner() -> SpecRunner {
    SpecRunner::default()
        .with("standard", |rt, obj, inputs| {
            let state = rt.root_text("ae_state");
            push_root(rt, obj, "states_executed", AttrValue::str(state));
            apply_step_inputs(rt, inputs)
        })
        .with("common_state_method", multi_state_method)
}

fn multi_state_method(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    inputs: &Attributes,
) -> Result<MethodRc, EngineError> {
    let state = push_step(rt, obj);
    let max: i64 = state
        .rsplit('_')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let root = root_id(rt, obj);
    if rt.attr(root, "ae_state_max_retries") != Some(&AttrValue::Int(max)) {
        rt.set_root("ae_result", AttrValue::str("error"));
    }
    let current = rt.root_text("ae_result");
    let wanted = input_text(inputs, "ae_result");
    if current != "retry" && current != "error" || wanted == "continue" {
        rt.set_root("ae_result", AttrValue::str(wanted));
    }
    set_next_state(rt, inputs);
    if !input_text(inputs, "raise").is_empty() {
        return Ok(MethodRc::Unknown(1));
    }
    Ok(MethodRc::Ok)
}

/// One delivery as `MiqAeEngine.deliver` makes it: the workspace, and the
/// args of the re-delivery when the root asks for a retry.
fn deliver(
    engine: &Engine,
    uri: &str,
    args: &[(String, String)],
) -> (Workspace, Option<Vec<(String, String)>>) {
    let (ws, err) = engine.instantiate_traced(uri, args);
    assert!(
        err.is_none(),
        "{uri}: {err:?}\n{}",
        ws.trace_lines().join("\n")
    );
    let again = ws
        .result()
        .eq_ignore_ascii_case("retry")
        .then(|| ws.retry_args());
    (ws, again)
}

// ---------------------------------------------------------------------------
// Items 1–3: URIs and paths.

#[test]
fn item01_hash2query_round_trip() {
    let pairs = vec![
        ("test".to_string(), "test://dev?lab$".to_string()),
        ("b".to_string(), "2".to_string()),
        ("a".to_string(), "1".to_string()),
    ];
    let q = uri::hash2query(&pairs);
    assert_eq!(q, "a=1&b=2&test=test%3A%2F%2Fdev%3Flab%24");
    let mut back = uri::query2hash(&q);
    back.sort();
    let mut want = pairs.clone();
    want.sort();
    assert_eq!(back, want);
}

#[test]
fn item02_uri_split_trims_and_collapses() {
    let u = uri::parse("//Cloud//VM/StateMachines//Sample  ").unwrap();
    assert_eq!(u.path, "/Cloud/VM/StateMachines/Sample");
    assert_eq!(u.message(), "create");
}

#[test]
fn item03_path_render_and_split() {
    assert_eq!(uri::render_path("", None, None), "");
    assert_eq!(uri::render_path("NS", None, None), "/NS//");
    assert_eq!(uri::render_path("NS", Some("CLASS"), None), "/NS/CLASS/");
    let p = uri::split_path("/NS1/NS2/CLASS/INSTANCE%20NAME");
    assert_eq!(p.namespace, "NS1/NS2");
    assert_eq!(p.class.as_deref(), Some("CLASS"));
    assert_eq!(p.instance.as_deref(), Some("INSTANCE%20NAME"));
    let (p, attr) = uri::split_path_with(
        "/NS/CLASS/INSTANCE/ATTR",
        uri::SplitOptions {
            has_instance_name: true,
            has_attribute_name: true,
        },
    );
    assert_eq!(
        (
            p.namespace.as_str(),
            p.class.as_deref(),
            p.instance.as_deref()
        ),
        ("NS", Some("CLASS"), Some("INSTANCE"))
    );
    assert_eq!(attr.as_deref(), Some("ATTR"));
    let (p, _) = uri::split_path_with(
        "/NS/CLASS",
        uri::SplitOptions {
            has_instance_name: false,
            has_attribute_name: false,
        },
    );
    assert_eq!(
        (p.namespace.as_str(), p.class.as_deref()),
        ("NS", Some("CLASS"))
    );
    assert_eq!(p.instance, None);
}

// ---------------------------------------------------------------------------
// Items 6–13: instantiation, relationships, assertions, substitution.

fn item06_attribute_case_and_instance_values(b: Backend) {
    let e = engine(b, "attributes");
    let ws = run(&e, "/EVM/AUTOMATE/test3");
    assert_eq!(ws.roots().len(), 1);
    let root = ws.root().unwrap();
    assert_eq!(text(root.attributes.get("attr1")), "Gregg TEST2 Oleg");
    assert!(!root.attributes.contains_key("aTTr1"));
    assert_line(
        &ws,
        "Updated namespace [/EVM/AUTOMATE/test3  SPEC_DOMAIN/EVM]",
    );
    assert_line(
        &ws,
        "Updated namespace [miqaedb:///EVM/AUTOMATE/test2/attr1  SPEC_DOMAIN/EVM]",
    );
    assert_eq!(root_text(&run(&e, "/EVM/AUTOMATE/test2"), "attr1"), "TEST2");
    assert_eq!(root_text(&run(&e, "/EVM/AUTOMATE/test1"), "attr1"), "frank");
    assert_eq!(root_text(&run(&e, "/EVM/AUTOMATE/test4"), "attr1"), "frank");
    // The password attribute decrypts (the value is "test" under
    // manageiq-password's public test key) and shows masked.
    let keyed = e
        .engine
        .clone()
        .with_password_key(Some(Arc::new(super::password::spec_key())));
    let ws = run(&keyed, "/EVM/AUTOMATE/test_password");
    assert_eq!(
        ws.root_attr("password"),
        Some(&AttrValue::Password("test".into()))
    );
    assert_eq!(root_text(&ws, "password"), "********");
    // Without the key it does not: an error naming the field.
    let err = e
        .instantiate("/EVM/AUTOMATE/test_password", &[])
        .unwrap_err();
    assert!(
        err.to_string().contains("password field [password]"),
        "{err}"
    );
}

fn item07_relationships_wildcards_and_messages(b: Backend) {
    let e = engine(b, "relation");
    let ws = run(&e, "/EVM/AUTOMATE/test3");
    assert_eq!(ws.roots().len(), 1);
    let root = ws.root().unwrap();
    assert_eq!(root.namespace, "SPEC_DOMAIN/EVM");
    assert_eq!(root.class, "AUTOMATE");
    assert_eq!(root.instance, "test3");
    let children = ws.children(ws.roots()[0]);
    assert_eq!(children.len(), 1);
    let child = ws.object(children[0]);
    assert_eq!(
        (
            child.namespace.as_str(),
            child.class.as_str(),
            child.instance.as_str()
        ),
        ("SPEC_DOMAIN/EVM", "AUTOMATE", "test2")
    );
    assert_eq!(text(child.get("attr1")), "miqaedb:/EVM/AUTOMATE/test1");
    assert_eq!(
        text(root.get("attr1")),
        "Gregg miqaedb:/EVM/AUTOMATE/test1 Oleg"
    );
    assert_line(
        &ws,
        "Following Relationship [miqaedb:/EVM/AUTOMATE/test2#create]",
    );
    assert_line(
        &ws,
        "Updated namespace [miqaedb:/EVM/AUTOMATE/test2#create  SPEC_DOMAIN/EVM]",
    );
    assert_line(
        &ws,
        "Followed  Relationship [miqaedb:/EVM/AUTOMATE/test2#create]",
    );

    let ws = run(&e, "/EVM/AUTOMATE/test_wildcard");
    let kids: Vec<String> = ws
        .children(ws.roots()[0])
        .iter()
        .map(|&c| ws.object(c).instance.clone())
        .collect();
    assert_eq!(kids, ["test5a", "test5b"]);

    let ws = run(&e, "/EVM/AUTOMATE/test_message1");
    assert_eq!(ws.children(ws.roots()[0]).len(), 1);
    let ws = run(&e, "/EVM/AUTOMATE/test_message1#discover");
    assert_eq!(ws.roots().len(), 1);
    assert_eq!(ws.children(ws.roots()[0]).len(), 2);
    // test5a's `miqaews:/..#DISCOVER_FLAVOR1` re-runs its parent's fields
    // for that message: none match, nothing new is built.
    assert_line(&ws, "Following Relationship [miqaews:/..#DISCOVER_FLAVOR1]");
}

fn item08_cyclical_relationship(b: Backend) {
    let e = engine(b, "cyclical");
    let err = e.instantiate("/CYCLICAL/AUTOMATE/test4", &[]).unwrap_err();
    assert_eq!(
        err,
        EngineError::CyclicalRelationship(
            "/SPEC_DOMAIN/CYCLICAL/AUTOMATE/test4 with message=create".into()
        )
    );
    assert_eq!(
        err.to_string(),
        "cyclical reference: [/SPEC_DOMAIN/CYCLICAL/AUTOMATE/test4 with message=create]"
    );
}

fn item09_invalid_paths(b: Backend) {
    let e = engine(b, "invalid_path");
    for bad in ["miqaedb:A/EVM", "abc:A/EVM"] {
        match e.instantiate(bad, &[]) {
            Err(EngineError::InvalidPath(_)) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
    // A relative path without a leading `/` is the same path.
    assert_eq!(run(&e, "EVM/AUTOMATE/test1").roots().len(), 1);
}

fn item10_assertions(b: Backend) {
    let e = engine(b, "assertions");
    assert_eq!(run(&e, "/SYSTEM/EVM/AUTOMATE/test1").roots().len(), 1);
    let ws = run(&e, "/SYSTEM/EVM/AUTOMATE/test2");
    assert_eq!(ws.roots().len(), 0);
    assert_line(&ws, "Evaluating substituted assertion [false]");
    assert_line(&ws, "Assertion Failed: <false>");
    assert_eq!(run(&e, "/SYSTEM/EVM/AUTOMATE/test3").roots().len(), 1);
    // A failing assertion in a child drops only the child.
    let ws = run(&e, "/SYSTEM/EVM/AUTOMATE/test4");
    assert_eq!(ws.roots().len(), 1);
    assert!(ws.children(ws.roots()[0]).is_empty());

    match e.instantiate("/Flintstones/A/C/Kids/missing_object", &[]) {
        Err(EngineError::ObjectNotFound(p)) => assert_eq!(p, "/missing_object"),
        other => panic!("{other:?}"),
    }
    match e.instantiate("/Flintstones/A/C/Kids/missing_attribute", &[]) {
        Err(EngineError::AttributeNotFound(a, _)) => assert_eq!(a, "var1"),
        other => panic!("{other:?}"),
    }
    let ws = run(&e, "/Flintstones/A/C/Kids/syntax");
    assert_eq!(ws.roots().len(), 0);
    assert_line(&ws, "Syntax Error in Assertion: <'x' == >");
}

fn item10_assertions_on_objects(b: Backend) {
    let store = Store::new(b);
    store.insert(
        "Vm",
        7,
        attrs(&[("name", AttrValue::str("BammBammRubble"))]),
    );
    let options = AttrValue::Hash(vec![(
        AttrValue::Symbol("number_of_vms".into()),
        AttrValue::Int(999),
    )]);
    store.insert("MiqRequest", 8, attrs(&[("options", options)]));
    let e = engine_at(&data_dir("assertions"), store);
    let cases = [
        ("true", true),
        ("false", false),
        ("name_length", true),
        ("name_unquoted", false),
        ("name_quoted", true),
        ("option", true),
        ("option_and", true),
        ("option_or", true),
    ];
    for (kid, passes) in cases {
        let uri =
            format!("/X/Y/Family/Wilma?kid={kid}&Vm::vm=7&MiqRequest::miq_provision_request=8");
        let ws = run(&e, &uri);
        let children = ws.children(ws.roots()[0]);
        assert_eq!(
            children.len(),
            usize::from(passes),
            "{kid}:\n{}",
            ws.trace_lines().join("\n")
        );
        if passes {
            let child = ws.object(children[0]);
            assert_eq!(text(child.get("var1")), "ok");
            assert_eq!(child.object_name, format!("/Flintstones/A/C/Kids/{kid}"));
        }
    }
}

fn item11_missing_instance_without_missing(b: Backend) {
    let e = engine(b, "missing_instance");
    let ws = run(&e, "/EVM/MY_AUTOMATE/test_boo");
    assert_eq!(ws.roots().len(), 0);
    // No domain has the instance or a `.missing`, so the namespace stays
    // partial and the class is not found (reference §4.2).
    assert_line(&ws, "Class [EVM/MY_AUTOMATE] not found in MiqAeDatastore");
}

fn item12_missing_instance_name(b: Backend) {
    let e = engine(b, "missing_instance");
    let ws = run(&e, "/DOM1/NS1/CLASS1/FRED");
    assert_eq!(root_text(&ws, "var1"), "FRED");
    assert_eq!(root_text(&ws, "_missing_instance"), "FRED");
    assert_eq!(ws.root().unwrap().instance, ".missing");
    assert_eq!(ws.root().unwrap().object_name, "/DOM1/NS1/CLASS1/FRED");
    assert_eq!(
        ws.trace_lines(),
        [
            "Instantiating [/DOM1/NS1/CLASS1/FRED]",
            "Instance [/DOM1/NS1/CLASS1/FRED] not found in MiqAeDatastore - trying [.missing]",
        ]
    );
}

fn item13_substitution(b: Backend) {
    let e = engine(b, "substitution");
    let child_attr = |uri: &str, name: &str| {
        let ws = run(&e, uri);
        let kids = ws.children(ws.roots()[0]);
        text(ws.object(kids[0]).get(name))
    };
    assert_eq!(child_attr("/EVM/A/a1", "attr1"), "defaultA");
    assert_eq!(child_attr("/EVM/A/a2", "attr1"), "a2");
    assert_eq!(root_text(&run(&e, "/EVM/B/b3"), "attr2"), "b3");
    assert_eq!(child_attr("/EVM/A/a4", "attr1"), "a4");
    assert_eq!(child_attr("/EVM/A/a5", "attr1"), "a5");
    for (uri, path) in [("/EVM/A/a6", "EVMX/A"), ("/EVM/A/a7", "BOGUS/EVM/A")] {
        match e.instantiate(uri, &[]) {
            Err(EngineError::ObjectNotFound(p)) => assert_eq!(p, path),
            other => panic!("{uri}: {other:?}"),
        }
    }
    assert_eq!(child_attr("/EVM/A/a8", "attr1"), "${}");
    // A field value beats a query arg of the same name.
    assert_eq!(child_attr("/EVM/A/a9", "attr1"), "foo");
    let ws = run(&e, "/EVM/A/a10");
    let kid = ws.object(ws.children(ws.roots()[0])[0]);
    assert_eq!(text(kid.get("attr1")), "Bamm Bamm Rubble");
    assert_eq!(text(kid.get("attr3")), "Pearl/Slaghoople");
    assert_line(
        &ws,
        "Following Relationship [miqaedb:/SPEC_DOMAIN/EVM/B/b10?attr3=Pearl%2FSlaghoople#create]",
    );
}

fn item14_substitution_with_methods(b: Backend) {
    let store = Store::new(b);
    let options = AttrValue::Hash(vec![
        (
            AttrValue::Symbol("src_vm_id".into()),
            AttrValue::Array(vec![AttrValue::Int(3), AttrValue::str("template1")]),
        ),
        (
            AttrValue::Symbol("email".into()),
            AttrValue::str("user@example.com"),
        ),
    ]);
    store.insert("MiqRequest", 5, attrs(&[("options", options)]));
    store.insert(
        "User",
        6,
        attrs(&[("email", AttrValue::str("requester@example.com"))]),
    );
    store.insert(
        "Vm",
        7,
        attrs(&[("name", AttrValue::str("fred flintstone"))]),
    );
    let e = engine_at(&data_dir("substitution_methods"), store);
    let ws = run(
        &e,
        "/A/C/BARNEY/FRED?MiqRequest::miq_request=5&User::user=6&Vm::vm=7",
    );
    assert_eq!(root_text(&ws, "email"), "USER@EXAMPLE.COM");
    assert_eq!(root_text(&ws, "req_email"), "requester@example.com");
    assert_eq!(ws.root_attr("vm_name_length"), Some(&AttrValue::str("15")));
    // A method the object does not have: a warning and nil.
    let ws = run(&e, "/A/C/BARNEY/BROKEN?MiqRequest::miq_request=5");
    assert_eq!(root_text(&ws, "email"), "");
    assert!(ws
        .trace
        .iter()
        .any(|l| l.level == Level::Warn && l.text.starts_with("Error during substitution: ")));
}

fn item15_array_args(b: Backend) {
    let store = Store::new(b);
    for id in [1, 3] {
        store.insert(
            "Vm",
            id,
            attrs(&[("name", AttrValue::str("fred flintstone"))]),
        );
    }
    store.insert("ExtManagementSystem", 2, Attributes::default());
    let e = engine_at(&data_dir("args"), store);
    let ws = run(
        &e,
        "/EVM/AUTOMATE/test1?Array::my_objects=Vm::1%1FExtManagementSystem::2%1FVm::3",
    );
    match ws.root_attr("my_objects") {
        Some(AttrValue::Array(items)) => {
            assert_eq!(items.len(), 3);
            assert!(items.iter().all(|i| matches!(i, AttrValue::Object(_))));
        }
        other => panic!("{other:?}"),
    }
    let ws = run(&e, "/EVM/AUTOMATE/test1?Array::my_objects=");
    assert_eq!(ws.root_attr("my_objects"), Some(&AttrValue::Array(vec![])));
}

/// A [`MemoryStore`] whose reads fail while `failing` is set.
#[derive(Default)]
struct FlakyReads {
    inner: MemoryStore,
    failing: std::sync::atomic::AtomicBool,
}

impl FlakyReads {
    fn check(&self) -> Result<(), automate_vmdb::StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(automate_vmdb::StoreError::Backend(
                "read failed: damaged page".into(),
            ));
        }
        Ok(())
    }
}

impl ObjectStore for FlakyReads {
    fn find(
        &self,
        class: &str,
        id: i64,
    ) -> Result<Option<automate_vmdb::VmdbRef>, automate_vmdb::StoreError> {
        self.check()?;
        self.inner.find(class, id)
    }
    fn attribute(
        &self,
        obj: &automate_vmdb::VmdbRef,
        name: &str,
    ) -> Result<Option<AttrValue>, automate_vmdb::StoreError> {
        self.check()?;
        self.inner.attribute(obj, name)
    }
    fn load(
        &self,
        class: &str,
        id: i64,
    ) -> Result<Option<automate_vmdb::StoredObject>, automate_vmdb::StoreError> {
        self.check()?;
        self.inner.load(class, id)
    }
    fn list(&self, class: &str) -> Result<Vec<automate_vmdb::VmdbRef>, automate_vmdb::StoreError> {
        self.check()?;
        self.inner.list(class)
    }
    fn create(
        &self,
        class: &str,
        attrs: Attributes,
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
        self.check()?;
        self.inner.find_by(class, attr, value)
    }
}

#[test]
fn a_failed_object_store_read_fails_the_instantiation() {
    let store = Arc::new(FlakyReads::default());
    store.inner.insert("Vm", 1, Attributes::default());
    let e = Engine::new(open(&data_dir("args")))
        .with_store(store.clone())
        .with_builtins(test_builtins());
    let uri = "/EVM/AUTOMATE/test1?VmOrTemplate::vm=1";
    let ws = run(&e, uri);
    assert!(matches!(ws.root_attr("vm"), Some(AttrValue::Object(r)) if r.id == 1));
    // The VM cannot be read: the instantiation fails with the store's
    // message; the VM is not taken for missing (nil).
    store
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    match e.instantiate(uri, &[]) {
        Err(EngineError::Store(err)) => {
            assert_eq!(err.to_string(), "object store: read failed: damaged page")
        }
        other => panic!("expected a store error, got {:?}", other.map(|_| ())),
    }
}

fn item16_process_args_as_attributes(b: Backend) {
    let store = Store::new(b);
    for id in [1, 2] {
        store.insert("Vm", id, Attributes::default());
    }
    store.insert("Host", 3, Attributes::default());
    let e = engine_at(&data_dir("args"), store);
    let ws = run(
        &e,
        "/EVM/AUTOMATE/test1?Name=fred&VmOrTemplate::vm=1&Array::VMs=VmOrTemplate::1",
    );
    let root = ws.root().unwrap();
    assert_eq!(text(root.get("name")), "fred");
    assert!(!root.attributes.contains_key("Name"));
    assert!(matches!(root.get("vm"), Some(AttrValue::Object(r)) if r.id == 1));
    assert_eq!(root.get("vm_id"), Some(&AttrValue::str("1")));
    assert!(matches!(root.get("vms"), Some(AttrValue::Array(a)) if a.len() == 1));
    assert!(!root.attributes.contains_key("VMs"));

    let values = |v: &str| {
        let ws = run(&e, &format!("/EVM/AUTOMATE/test1?Array::my_values={v}"));
        ws.root_attr("my_values").cloned()
    };
    assert_eq!(
        values("integer::1%1F%20integer::3%1F%20integer::10"),
        Some(AttrValue::Array(vec![
            AttrValue::Int(1),
            AttrValue::Int(3),
            AttrValue::Int(10)
        ]))
    );
    assert_eq!(
        values("%271,1%27%1F%223,3%22%1Finteger::10"),
        Some(AttrValue::Array(vec![
            AttrValue::str("'1,1'"),
            AttrValue::str("\"3,3\""),
            AttrValue::Int(10)
        ]))
    );
    assert_eq!(
        values("abc%1Fxyz%1F%1F1"),
        Some(AttrValue::Array(vec![
            AttrValue::str("abc"),
            AttrValue::str("xyz"),
            AttrValue::str("1")
        ]))
    );
    match values("VmOrTemplate::1%1F%1F%1FVmOrTemplate::2") {
        Some(AttrValue::Array(a)) => assert_eq!(a.len(), 2),
        other => panic!("{other:?}"),
    }
    match values("VmOrTemplate::1%1FHost::3") {
        Some(AttrValue::Array(a)) => {
            assert!(matches!(&a[0], AttrValue::Object(r) if &*r.class == "Vm"));
            assert!(matches!(&a[1], AttrValue::Object(r) if &*r.class == "Host"));
        }
        other => panic!("{other:?}"),
    }
    // An invalid class is a datastore error: logged, the object kept
    // without its fields.
    let ws = run(
        &e,
        "/EVM/AUTOMATE/test1?Array::vms=VmOrTemplate::1%1Ffred::12",
    );
    assert_eq!(ws.roots().len(), 1);
    assert!(ws.root_attr("vms").is_none());
    assert!(ws.root_attr("attr1").is_none());
    assert!(ws.trace.iter().any(|l| l.level == Level::Error));
}

fn item17_null_coalescing(b: Backend) {
    let e = engine(b, "null_coalescing");
    let ws = run(&e, "/A/C/BARNEY/FRED");
    assert_eq!(root_text(&ws, "field1"), "Pebbles");
    assert_eq!(root_text(&ws, "field2"), "Bamm Bamm Rubble");
    assert!(ws.root_attr("field3").is_none());
    assert_line(
        &ws,
        "Object Not Found for path=[XY/ABC], while evaluating :${XY/ABC#var2} null coalecing attribute",
    );
    let ws = run(&e, "/A/C/BARNEY/FRED?var1=wilma");
    assert_eq!(root_text(&ws, "field1"), "wilma");
    assert_eq!(root_text(&ws, "field2"), "Bamm Bamm Rubble");
    let ws = run(&e, "/A/C/BARNEY/FRED?ae_state_data=%7B%22my_id%22%3A45%7D");
    assert_eq!(root_text(&ws, "field1"), "45");
    assert_eq!(root_text(&ws, "field2"), "Bamm Bamm Rubble");
    assert!(ws.root_attr("field3").is_none());
    assert!(ws.root_attr("ae_state_data").is_none());
}

fn item18_null_coalescing_method_input(b: Backend) {
    let e = engine(b, "method_inputs");
    let ws = run(&e, "/EVM/AUTOMATE/test1");
    assert_eq!(root_text(&ws, "arg1"), "location");
    assert_line(
        &ws,
        "Invoking [builtin] method [/TEST_DOMAIN/EVM/AUTOMATE/test] with inputs [{\"arg1\"=>\"location\"}]",
    );
    let ws = run(&e, "/EVM/AUTOMATE/test1?field1=department");
    assert_eq!(root_text(&ws, "arg1"), "department");
}

fn item19_vmdb_datatypes(b: Backend) {
    let store = Store::new(b);
    store.insert(
        "Vm",
        1000000000029,
        attrs(&[("name", AttrValue::str("vm29"))]),
    );
    store.insert(
        "User",
        1000000000001,
        attrs(&[("name", AttrValue::str("admin"))]),
    );
    store.insert(
        "ExtManagementSystem",
        1000000000002,
        attrs(&[("name", AttrValue::str("rhevm01"))]),
    );
    let e = engine_at(&data_dir("vmdb_datatypes"), store.clone());
    let ws = run(&e, "/A/C/BARNEY/FRED");
    let name = |attr: &str, ws: &Workspace| match ws.root_attr(attr) {
        Some(AttrValue::Object(r)) => {
            text(store.object_store().attribute(r, "name").unwrap().as_ref())
        }
        other => panic!("{attr}: {other:?}"),
    };
    assert_eq!(name("vm", &ws), "vm29");
    assert_eq!(name("user", &ws), "admin");
    assert_eq!(name("ems", &ws), "rhevm01");
    assert!(matches!(
        e.instantiate("/A/C/BARNEY/BAD", &[]),
        Err(EngineError::ServiceNotFound(_))
    ));
    let ws = run(&e, "/A/C/BARNEY/NIL");
    assert_eq!(name("vm", &ws), "vm29");
    assert!(ws.root_attr("ems").is_none());
}

fn item20_input_datatype_conversion(b: Backend) {
    let e = engine(b, "method_inputs");
    let ws = run(
        &e,
        "/EVM/CONVERT/test1?flag=false&flag2=true&int=5&float=5.87&symbol=test&array=1,2,3",
    );
    assert_eq!(ws.root_attr("flag"), Some(&AttrValue::Bool(false)));
    assert_eq!(ws.root_attr("flag2"), Some(&AttrValue::Bool(true)));
    assert_eq!(ws.root_attr("int"), Some(&AttrValue::Int(5)));
    assert_eq!(ws.root_attr("float"), Some(&AttrValue::Float(5.87)));
    assert_eq!(
        ws.root_attr("symbol"),
        Some(&AttrValue::Symbol("test".into()))
    );
    assert_eq!(
        ws.root_attr("array"),
        Some(&AttrValue::Array(vec![
            AttrValue::str("1"),
            AttrValue::str("2"),
            AttrValue::str("3")
        ]))
    );
}

fn item21_disabled_inheritance(b: Backend) {
    let e = engine(b, "inheritance");
    let ws = run(&e, "/A/C/CLASS1/FRED");
    assert_eq!(ws.roots().len(), 1);
    assert_eq!(root_text(&ws, "attr1"), "kept");
}

// ---------------------------------------------------------------------------
// Items 22–26: domains, overlays, collect, object lookup.

fn item22_domain_search(b: Backend) {
    let e = engine(b, "domain_search");
    let ws = run(&e, "/FRED/WILMA/DOGMATIX");
    assert_eq!(ws.root().unwrap().namespace, "BARNEY/FRED");
    assert_eq!(root_text(&ws, "domain"), "BARNEY");
    assert_line(&ws, "Updated namespace [/FRED/WILMA/DOGMATIX  BARNEY/FRED]");
    assert_eq!(root_text(&ws, "method_executed"), "BARNEY");
    // An instance only the lower domain has still runs the higher domain's
    // method of the same path.
    let ws = run(&e, "/FRED/WILMA/ASTERIX");
    assert_eq!(ws.root().unwrap().namespace, "FRED/FRED");
    assert_eq!(root_text(&ws, "method_executed"), "BARNEY");
    assert_line(
        &ws,
        "Invoking [builtin] method [/BARNEY/FRED/WILMA/OBELIX] with inputs [{\"executed\"=>\"BARNEY\"}]",
    );
}

/// Copies a datastore to a temporary directory and sets `enabled` of one
/// domain (the specs flip it in the database).
fn with_domain_enabled(name: &str, domain: &str, enabled: bool) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&data_dir(name), tmp.path());
    let file = tmp.path().join(domain).join("__domain__.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let yaml = yaml
        .replace("enabled: true", &format!("enabled: {enabled}"))
        .replace("enabled: false", &format!("enabled: {enabled}"));
    std::fs::write(file, yaml).unwrap();
    tmp
}

fn item23_domain_overlays(b: Backend) {
    let e = engine(b, "domain_overlays");
    // A partial path uses the highest-priority enabled domain.
    assert_eq!(executed(&e, "evm/AUTOMATE/test1"), "user");
    // A fully-qualified path uses its own domain.
    let ws = run(&e, "root/evm/AUTOMATE/test2");
    assert_eq!(root_text(&ws, "method_executed"), "root");
    assert!(!ws
        .trace_lines()
        .iter()
        .any(|l| l.starts_with("Updated namespace [root/evm")));
    // A wildcard inside a partial relationship.
    let ws = run(&e, "evm/AUTOMATE/test_wildcard");
    assert_eq!(root_text(&ws, "method_executed"), "user");
    assert_eq!(ws.children(ws.roots()[0]).len(), 2);
    // Non-existent, and existing only in a disabled domain.
    assert_eq!(run(&e, "evm/AUTOMATE/non_existent").roots().len(), 0);
    assert_eq!(run(&e, "evm/AUTOMATE/should_not_get_used").roots().len(), 0);
    // Instance names are case-insensitive.
    assert_eq!(executed(&e, "evm/AUTOMATE/TeSt1"), "user");
    // `.missing` from the highest-priority domain that has one.
    let ws = run(&e, "test/AUTOMATE/does_not_exist");
    assert_eq!(root_text(&ws, "method_executed"), "evm1_missing_method");
    assert_line(
        &ws,
        "Instance [/evm1/test/AUTOMATE/does_not_exist] not found in MiqAeDatastore - trying [.missing]",
    );
    // Enabling the domain makes its instance visible.
    let tmp = with_domain_enabled("domain_overlays", "inert", true);
    let e = engine_at(tmp.path(), Store::new(b));
    assert_eq!(executed(&e, "evm/AUTOMATE/should_get_used"), "inert");
}

fn item24_method_override(b: Backend) {
    let e = engine(b, "method_override");
    assert_eq!(executed(&e, "evm/SAMPLE/test1"), "TwinkleToes");
    // Missing in the higher domain: the lower domain's method, run on the
    // higher domain's object.
    assert_eq!(executed(&e, "evm/SAMPLE/test2"), "Flintstone");
    let tmp = with_domain_enabled("method_override", "RHT", false);
    let e = engine_at(tmp.path(), Store::new(b));
    assert_eq!(executed(&e, "evm/SAMPLE/test1"), "miq");
}

fn item25_collect(b: Backend) {
    let e = engine(b, "collect");
    let ws = run(&e, "/TEST/COLLECT/INFO#get_months");
    match ws.root_attr("months") {
        Some(AttrValue::Hash(pairs)) => {
            assert_eq!(pairs.len(), 12);
            assert!(pairs.contains(&(AttrValue::str("October"), AttrValue::Int(10))));
        }
        other => panic!("{other:?}"),
    }
    let ints = |v: Vec<i64>| AttrValue::Array(v.into_iter().map(AttrValue::Int).collect());
    assert_eq!(ws.root_attr("sort"), Some(&ints((1..=12).collect())));
    assert_eq!(ws.root_attr("rsort"), Some(&ints((1..=12).rev().collect())));
    assert_eq!(ws.root_attr("count"), Some(&AttrValue::Int(12)));
    assert_eq!(ws.root_attr("min"), Some(&AttrValue::Int(1)));
    assert_eq!(ws.root_attr("max"), Some(&AttrValue::Int(12)));
    assert_eq!(ws.root_attr("mean"), Some(&AttrValue::Float(6.5)));

    let ws = run(&e, "/TEST/COLLECT/INFO#get_weekdays");
    assert!(matches!(ws.root_attr("weekdays"), Some(AttrValue::Hash(p)) if p.len() == 7));
    assert_eq!(ws.root_attr("sum"), Some(&AttrValue::Int(28)));
    // An instance-level collect overrides the class-level one.
    let ws = run(&e, "/TEST/COLLECT/INFO2#get_weekdays");
    assert!(matches!(ws.root_attr("weekdays"), Some(AttrValue::Array(a)) if a.len() == 7));

    for (query, number) in [
        ("?environment=dev", 3),
        ("?environment=test", 5),
        ("?environment=foo", 1),
        ("?environment=", 0),
        ("", 0),
    ] {
        let ws = run(&e, &format!("/TEST/COLLECT/INFO{query}#get_random_number"));
        assert_eq!(
            ws.root_attr("number"),
            Some(&AttrValue::Int(number)),
            "{query}"
        );
    }
}

fn item26_object_lookup(b: Backend) {
    let e = engine(b, "object_lookup");
    let ws = run(&e, "/Dom1/ROOT/LOOKUP/start");
    let ab = "/Dom1/A/B/CLASS1/INSTANCE1";
    let cd = "/Dom1/C/D/CLASS1/INSTANCE1";
    // Through `$evm.object(path)`.
    let found: Vec<String> = (0..LOOKUPS.len())
        .map(|i| root_text(&ws, &format!("found_{i}")))
        .collect();
    assert_eq!(found, [ab, ab, cd, cd, cd, cd, "nil", "nil"]);
    // Through substitution.
    for (attr, want) in [
        ("r1", "A/B"),
        ("r2", "A/B"),
        ("r3", "C/D"),
        ("r4", "C/D"),
        ("r5", "C/D"),
    ] {
        assert_eq!(root_text(&ws, attr), want, "{attr}");
    }
    for uri in ["/Dom1/ROOT/LOOKUP/not_found", "/Dom1/ROOT/LOOKUP/too_short"] {
        assert!(
            matches!(e.instantiate(uri, &[]), Err(EngineError::ObjectNotFound(_))),
            "{uri}"
        );
    }
}

// ---------------------------------------------------------------------------
// Items 27–29: methods.

fn item27_methods(b: Backend) {
    let e = engine(b, "methods");
    let base = "/EVM/SYSTEM/TEST/FOO/";
    assert_eq!(run(&e, &format!("{base}test_default")).roots().len(), 1);
    match e.instantiate(&format!("{base}test_missing_parameter"), &[]) {
        Err(EngineError::MethodParmMissing(m, p)) => {
            assert_eq!(m, "/SPEC_DOMAIN/EVM/SYSTEM/TEST/FOO/foo");
            assert_eq!(p, "num1");
        }
        other => panic!("{other:?}"),
    }
    match e.instantiate(&format!("{base}test_non_existent_internal"), &[]) {
        Err(EngineError::MethodNotFound(m)) => {
            assert_eq!(m, "Built-In Method [miq_non_existent] does not exist")
        }
        other => panic!("{other:?}"),
    }
    match e.instantiate(&format!("{base}test_missing"), &[]) {
        Err(EngineError::MethodNotFound(m)) => assert!(m.starts_with("Method [missing] not found")),
        other => panic!("{other:?}"),
    }
    for inst in ["test_internal", "test_builtin_with_different_case"] {
        let ws = run(&e, &format!("{base}{inst}"));
        assert_eq!(ws.roots().len(), 1);
        assert!(ws
            .trace_lines()
            .iter()
            .any(|l| l.starts_with("Invoking [builtin] method [")));
        assert_line(&ws, "Dumping Object");
        assert_line(&ws, "\ttester: Oleg");
    }
    // `method:///foo?num1=2`: the query gives the input, num2 its default.
    let ws = run(&e, &format!("{base}test_method_uri"));
    assert_eq!(ws.root_attr("num1"), Some(&AttrValue::Int(2)));
    assert_eq!(ws.root_attr("num2"), Some(&AttrValue::Int(0)));
    // Call-site args: literals and bare words (attributes of the object).
    let ws = run(&e, &format!("{base}test_call_args"));
    assert_eq!(ws.root_attr("num1"), Some(&AttrValue::Int(7)));
    assert_eq!(ws.root_attr("num2"), Some(&AttrValue::Int(0)), "Oleg.to_i");
    assert!(matches!(
        e.instantiate(&format!("{base}test_bad_syntax"), &[]),
        Err(EngineError::InvalidMethod(m)) if m == "invalid method calling syntax: [foo(num1 => 7]"
    ));
}

fn item28_current_names(b: Backend) {
    let e = engine(b, "method_current");
    let ws = run(&e, "/EVM/AUTOMATE/test1");
    assert_eq!(root_text(&ws, "current_namespace"), "SPEC_DOMAIN/EVM");
    assert_eq!(root_text(&ws, "current_class"), "AUTOMATE");
    assert_eq!(root_text(&ws, "current_instance"), "test1");
    assert_eq!(root_text(&ws, "current_message"), "create");
    assert_eq!(root_text(&ws, "current_method"), "test");
}

fn item29_exit_codes(b: Backend) {
    let e = engine_with_runner(
        b,
        "exit_codes",
        SpecRunner::default().with("exit_with", exit_with),
    );
    let fq = "/SPEC_DOMAIN/EVM/EXIT/exit_with";
    let ws = run(&e, "/EVM/EXIT/ok");
    assert_eq!(ws.roots().len(), 1);
    assert_eq!(root_text(&ws, "after"), "reached");
    let lines = ws.trace_lines();
    let at = lines
        .iter()
        .position(|l| l.starts_with("Invoking [inline] method ["))
        .unwrap();
    assert_eq!(
        &lines[at..at + 4],
        [
            format!("Invoking [inline] method [{fq}] with inputs [{{\"rc\"=>0}}]").as_str(),
            &format!("<AEMethod [{fq}]> Starting "),
            &format!("<AEMethod [{fq}]> Ending"),
            "Method exited with rc=MIQ_OK",
        ]
    );

    let ws = run(&e, "/EVM/EXIT/warn");
    assert_eq!(root_text(&ws, "after"), "reached");
    assert!(ws
        .trace
        .iter()
        .any(|l| l.level == Level::Warn && l.text == "Method exited with rc=MIQ_WARN"));

    // MIQ_STOP stops this object only.
    let ws = run(&e, "/EVM/EXIT/stop");
    assert_eq!(ws.roots().len(), 0);
    assert_line(
        &ws,
        "Stopping instantiation because [Method exited with rc=MIQ_STOP]",
    );
    let ws = run(&e, "/EVM/PARENT/stop_child");
    assert_eq!(ws.roots().len(), 1);
    assert!(ws.children(ws.roots()[0]).is_empty());
    assert_eq!(root_text(&ws, "after"), "parent went on");

    let (ws, err) = e.instantiate_traced("/EVM/EXIT/abort", &[]);
    assert_eq!(
        err,
        Some(EngineError::Abort("Method exited with rc=MIQ_ABORT".into()))
    );
    assert_line(
        &ws,
        "Aborting instantiation because [Method exited with rc=MIQ_ABORT]",
    );

    let (ws, err) = e.instantiate_traced("/EVM/EXIT/unknown", &[]);
    assert_eq!(
        err,
        Some(EngineError::UnknownMethodRc(
            "Method exited with rc=Unknown RC: [3]".into()
        ))
    );
    assert_line(
        &ws,
        "Aborting instantiation (unknown method return code) because [Method exited with rc=Unknown RC: [3]]",
    );
}

// ---------------------------------------------------------------------------
// Items 31–36: state machines.

fn item31_state_machine_steps(b: Backend) {
    let e = engine_with_runner(b, "state_machine_steps", steps_runner());
    let sm = |name: &str| run(&e, &format!("/SPEC_DOMAIN/NS1/MY_STATE_MACHINE/{name}"));
    const ALL: &str = "state1 state2 state3";
    // Each case: the instance, then (space-separated) the instances its
    // states executed and the states whose on_entry, on_exit and on_error
    // ran.
    let cases = [
        ("all_states", "instance1 instance2 instance3", ALL, ALL, ""),
        // An exception in a method counts as an error.
        (
            "state_raises",
            "instance1 instance2_raise",
            "state1 state2",
            "state1",
            "state2",
        ),
        (
            "state_error",
            "instance1 instance2_error",
            "state1 state2",
            "state1",
            "state2",
        ),
        (
            "goto_from_on_entry",
            "instance3",
            "state1 state3",
            "state3",
            "",
        ),
        (
            "goto_from_on_exit",
            "instance1 instance3",
            "state1 state3",
            "state1 state3",
            "",
        ),
        (
            "goto_from_on_error",
            "instance1_error instance3",
            "state1 state3",
            "state3",
            "state1",
        ),
        (
            "goto_from_main",
            "instance1_next3 instance3",
            "state1 state3",
            "state1 state3",
            "",
        ),
        (
            "on_entry_error",
            "instance1",
            "state1 state2",
            "state1",
            "state2",
        ),
        (
            "on_exit_error",
            "instance1 instance2",
            "state1 state2",
            "state1 state2",
            "",
        ),
        (
            "continue_after_error",
            "instance1 instance2_error instance3",
            ALL,
            "state1 state3",
            "state2",
        ),
        (
            "skip_state",
            "instance2 instance3",
            ALL,
            "state2 state3",
            "",
        ),
        // A missing on_entry method triggers on_error.
        (
            "missing_on_entry",
            "instance1",
            "state1",
            "state1",
            "state2",
        ),
        // A missing on_exit method stops without on_error.
        (
            "missing_on_exit",
            "instance1 instance2",
            "state1 state2",
            "state1",
            "",
        ),
        (
            "retry_in_main_and_on_exit",
            "instance1 instance2_retry",
            "state1 state2",
            "state1 state2",
            "",
        ),
        (
            "async_launch",
            "instance1 instance2_async",
            "state1 state2",
            "state1",
            "",
        ),
        (
            "retry_from_on_exit",
            "instance1 instance2",
            "state1 state2",
            "state1 state2",
            "",
        ),
        (
            "missing_on_error",
            "instance1 instance2_error",
            "state1 state2",
            "state1",
            "",
        ),
    ];
    let mut runs = HashMap::new();
    for (name, executed, entry, exit, error) in cases {
        let ws = sm(name);
        let trace = ws.trace_lines().join("\n");
        for (attr, want) in [
            ("states_executed", executed),
            ("step_on_entry", entry),
            ("step_on_exit", exit),
            ("step_on_error", error),
        ] {
            assert_eq!(
                sorted(root_list(&ws, attr)),
                strs(&want.split_whitespace().collect::<Vec<_>>()),
                "{name}: {attr}\n{trace}"
            );
        }
        runs.insert(name, ws);
    }
    // Retried once, of at most 100.
    let retried = |ws: &Workspace| {
        assert_eq!(ws.root_attr("ae_state_retries"), Some(&AttrValue::Int(1)));
        assert_eq!(
            ws.root_attr("ae_state_max_retries"),
            Some(&AttrValue::Int(100))
        );
    };

    let ws = &runs["all_states"];
    assert_eq!(root_text(ws, "ae_state"), "");
    assert_eq!(root_text(ws, "ae_result"), "ok");
    assert_eq!(root_text(ws, "ae_status_state"), "on_exit");

    let ws = &runs["state_raises"];
    assert_eq!(root_text(ws, "ae_result"), "error");
    assert_eq!(
        root_text(ws, "ae_reason"),
        "State=<state2> running  raised exception: <Method exited with rc=Unknown RC: [1]>"
    );

    assert_line(&runs["state_error"], "Error in State=[state2]");

    let ws = &runs["goto_from_on_entry"];
    assert_line(ws, "Skipping to state state3");
    assert_line(ws, "Skipping State=[state1]");

    let lines = runs["goto_from_on_error"].trace_lines();
    let at = lines
        .iter()
        .position(|l| *l == "Resetting Error in State=[state1]")
        .unwrap();
    assert_eq!(
        &lines[at..at + 3],
        [
            "Resetting Error in State=[state1]",
            "Next State=[state3]",
            "Skipping to state state3"
        ]
    );

    assert_eq!(root_text(&runs["continue_after_error"], "ae_result"), "ok");

    assert_eq!(
        root_text(&runs["missing_on_entry"], "ae_reason"),
        "State=<state2> running on_entry raised exception: <In State=[state2], on_entry Method [does_not_exist] not found in class [SPEC_DOMAIN/NS1/MY_STATE_MACHINE]>"
    );
    assert_eq!(root_text(&runs["missing_on_exit"], "ae_result"), "error");

    retried(&runs["retry_in_main_and_on_exit"]);
    let ws = &runs["async_launch"];
    assert_eq!(ws.root_attr("ae_state_retries"), Some(&AttrValue::Int(1)));
    assert_eq!(root_text(ws, "ae_result"), "retry");
    retried(&runs["retry_from_on_exit"]);

    let (ws, err) =
        e.instantiate_traced("/SPEC_DOMAIN/NS1/MY_STATE_MACHINE/goto_missing_state", &[]);
    assert_eq!(
        err,
        Some(EngineError::Abort(
            "Invalid state specified <state_missing>".into()
        ))
    );
    assert_line(
        &ws,
        "Next State=state_missing is invalid aborting state machine",
    );

    let ws = sm("miq_stop");
    assert_eq!(ws.roots().len(), 0);
    assert_line(
        &ws,
        "Stopping instantiation because [Method exited with rc=MIQ_STOP]",
    );
    assert_line(
        &ws,
        "State=<state1> running on_entry raised exception: <Method exited with rc=MIQ_STOP>",
    );
}

fn item32_state_machine_retry(b: Backend) {
    let e = engine(b, "state_machine_retry");
    let top = |name: &str| format!("/SPEC_DOMAIN/NS1/TOP_OF_THE_WORLD/{name}");

    // State vars persist across deliveries.
    let (ws, again) = deliver(&e, &top("state_var"), &[]);
    assert_eq!(root_text(&ws, "ae_retry_interval"), "1.minute");
    let (ws, again) = deliver(&e, &top("state_var"), &again.expect("a retry"));
    assert!(again.is_none());
    assert_eq!(ws.root_attr("finished"), Some(&AttrValue::Bool(true)));
    let want = attrs(&[
        ("one", AttrValue::Int(1)),
        ("two", AttrValue::Int(2)),
        ("gravy", AttrValue::str("train")),
        ("three", AttrValue::Int(3)),
    ]);
    let mut got: Vec<_> = ws.state_vars.iter().collect();
    let mut want: Vec<_> = want.iter().collect();
    got.sort_by(|a, b| a.0.cmp(b.0));
    want.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(got, want);

    // max_retries 1: three deliveries, then no more.
    let mut args = Vec::new();
    let mut deliveries = 0;
    loop {
        let (ws, again) = deliver(&e, &top("perpetual_retry"), &args);
        deliveries += 1;
        match again {
            Some(a) => args = a,
            None => {
                assert_eq!(root_text(&ws, "ae_result"), "error");
                assert_eq!(
                    root_text(&ws, "ae_reason"),
                    "State=<state1> running  raised exception: <number of retries <2> exceeded maximum of <1>>"
                );
                break;
            }
        }
        assert!(deliveries < 10, "never stops");
    }
    assert_eq!(deliveries, 3);

    // max_time: the second delivery comes after the time ran out.
    let (_, again) = deliver(&e, &top("perpetual_retry_max_time"), &[]);
    let args: Vec<(String, String)> = again
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let started = |s: &str| s.replace(&v_started(&v), "2013-01-01 00:00:00 UTC");
            let v = match k.as_str() {
                "ae_state_started" => "2013-01-01 00:00:00 UTC".to_string(),
                "ae_state_previous" => started(&v),
                _ => v,
            };
            (k, v)
        })
        .collect();
    let (ws, again) = deliver(&e, &top("perpetual_retry_max_time"), &args);
    assert!(again.is_none());
    assert_eq!(root_text(&ws, "ae_result"), "error");
    assert!(root_text(&ws, "ae_reason").contains("exceeded maximum of <2>"));

    // restart re-delivers at the first state, or at ae_next_state.
    for (name, state) in [
        ("perpetual_restart", "state1"),
        ("perpetual_restart_with_next_state", "state2"),
    ] {
        let (ws, again) = deliver(&e, &top(name), &[]);
        let again = again.expect("a retry");
        assert_eq!(again[0], ("ae_state".to_string(), state.to_string()));
        assert_line(&ws, "State=[state3] has requested a restart");
        assert_line(&ws, &format!("Will restart at State=[{state}]"));
    }

    // Server affinity is left on the root for the re-queue.
    let (ws, again) = deliver(&e, &top("retry_server_affinity"), &[]);
    assert!(again.is_some());
    assert_eq!(
        ws.root_attr("ae_retry_server_affinity"),
        Some(&AttrValue::Bool(true))
    );
    let (ws, _) = deliver(&e, &top("perpetual_retry"), &[]);
    assert_eq!(
        ws.root_attr("ae_retry_server_affinity"),
        Some(&AttrValue::Bool(false))
    );

    // Incoming state data is kept.
    let old = vec![("ae_state_data".to_string(), "{\"old\":1}".to_string())];
    let (_, again) = deliver(&e, &top("perpetual_retry"), &old);
    let again = again.unwrap();
    let data = again.iter().find(|(k, _)| k == "ae_state_data").unwrap();
    assert_eq!(data.1, "{\"old\":1}");
}

/// The `ae_state_started` value inside a JSON `ae_state_previous`.
fn v_started(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    v.as_object()
        .and_then(|m| m.values().next())
        .and_then(|s| s.get("ae_state_started"))
        .and_then(|s| s.as_str())
        .unwrap_or("\u{0}never")
        .to_string()
}

fn item33_nested_state_machines(b: Backend) {
    let e = engine_with_runner(b, "state_machine_multi", multi_runner());
    let sm1 = |variant: &str| format!("/SPEC_DOMAIN/NS1/SM1/{variant}");

    let (ws, again) = deliver(&e, &sm1("all"), &[]);
    assert!(again.is_none());
    let all = [
        "SM1_1", "SM1_3", "SM1_4", "SM2_1", "SM2_3", "SM2_4", "SM3_1", "SM3_3", "SM3_4",
    ];
    let mut guard = all.to_vec();
    guard.extend(["SM1_2", "SM2_2", "SM3_2"]);
    assert_eq!(sorted(root_list(&ws, "states_executed")), strs(&all));
    assert_eq!(sorted(root_list(&ws, "step_on_entry")), strs(&guard));
    assert_eq!(sorted(root_list(&ws, "step_on_exit")), strs(&guard));
    assert!(root_list(&ws, "step_on_error").is_empty());
    assert_eq!(root_text(&ws, "ae_result"), "ok");
    assert!(ws.state_info.is_empty());

    // An error at the bottom runs on_error there and in every parent state
    // that connects to it.
    let (ws, _) = deliver(&e, &sm1("raise"), &[]);
    let two = ["SM1_1", "SM2_1"];
    assert_eq!(sorted(root_list(&ws, "states_executed")), strs(&two));
    assert_eq!(sorted(root_list(&ws, "step_on_exit")), strs(&two));
    assert_eq!(
        sorted(root_list(&ws, "step_on_error")),
        strs(&["SM3_1", "SM2_2", "SM1_2"])
    );
    assert_eq!(
        sorted(root_list(&ws, "step_on_entry")),
        strs(&["SM1_1", "SM1_2", "SM2_1", "SM2_2", "SM3_1"])
    );

    // `continue` at the bottom lets everything finish.
    let (ws, _) = deliver(&e, &sm1("continue"), &[]);
    let all_but = [
        "SM1_1", "SM1_3", "SM1_4", "SM2_1", "SM2_3", "SM2_4", "SM3_3", "SM3_4",
    ];
    let mut guard = all_but.to_vec();
    guard.extend(["SM1_2", "SM2_2", "SM3_1", "SM3_2"]);
    assert_eq!(sorted(root_list(&ws, "states_executed")), strs(&all_but));
    assert_eq!(sorted(root_list(&ws, "step_on_entry")), strs(&guard));
    let exits: Vec<&str> = guard.iter().copied().filter(|s| *s != "SM3_1").collect();
    assert_eq!(sorted(root_list(&ws, "step_on_exit")), strs(&exits));
    assert_eq!(root_list(&ws, "step_on_error"), ["SM3_1"]);

    // A retry at the bottom resumes the nested machines on each delivery
    // until SM2_2's maxima (2 retries) are exceeded.
    let (ws, again) = deliver(&e, &sm1("retry"), &[]);
    assert_eq!(sorted(root_list(&ws, "states_executed")), strs(&two));
    assert_eq!(
        sorted(root_list(&ws, "step_on_entry")),
        strs(&["SM1_1", "SM1_2", "SM2_1", "SM2_2", "SM3_1"])
    );
    let mut args = again.expect("a retry");
    for _ in 0..2 {
        let (ws, again) = deliver(&e, &sm1("retry"), &args);
        assert_eq!(
            sorted(root_list(&ws, "step_on_entry")),
            strs(&["SM1_2", "SM2_2", "SM3_1"]),
            "{}",
            ws.trace_lines().join("\n")
        );
        args = again.expect("a retry");
    }
    let (ws, again) = deliver(&e, &sm1("retry"), &args);
    assert_eq!(
        root_list(&ws, "step_on_entry"),
        ["SM1_2"],
        "{}",
        ws.trace_lines().join("\n")
    );
    assert!(again.is_none());
}

fn item34_state_missing_relation(b: Backend) {
    let e = engine(b, "state_missing_relation");
    let ws = run(&e, "FLINTSTONE/WILMA/FRED/PEBBLES");
    assert_eq!(root_text(&ws, "ae_result"), "error");
    assert_eq!(
        root_text(&ws, "ae_reason"),
        "State=<state1> running  raised exception: <empty relationship>"
    );
    let ws = run(&e, "FLINTSTONE/WILMA/FRED/BAMM_BAMM");
    assert_eq!(root_text(&ws, "ae_result"), "error");
    assert_eq!(root_text(&ws, "var1"), "1");
    let ws = run(&e, "FLINTSTONE/WILMA/FRED/DINO");
    assert_eq!(root_text(&ws, "ae_result"), "error");
    assert_eq!(root_text(&ws, "var1"), "3");
}

fn item35_state_machine_methods(b: Backend) {
    let e = engine(b, "state_machine_methods");
    let sm = |name: &str| run(&e, &format!("/factory/StateMachine/{name}"));
    let ws = sm("provisioning");
    assert_eq!(root_text(&ws, "ae_result"), "ok");
    assert_eq!(root_text(&ws, "ae_state"), "");
    assert_eq!(root_text(&ws, "ae_status_state"), "on_exit");
    assert_line(&ws, "Processed State=[final] with Result=[ok]");

    let ws = sm("provisioning_error");
    assert_eq!(root_text(&ws, "ae_result"), "error");
    assert_eq!(root_text(&ws, "ae_state"), "ProvisionCheck");
    assert_eq!(root_text(&ws, "ae_status_state"), "on_error");

    let ws = sm("provisioning_raise");
    assert_eq!(root_text(&ws, "ae_result"), "error");
    assert_eq!(root_text(&ws, "ae_state"), "ProvisionCheck");
    assert_eq!(
        root_text(&ws, "ae_reason"),
        "State=<ProvisionCheck> running  raised exception: <Intentionally raise an error>"
    );

    for (name, marker) in [
        ("fq_class_on_entry", "test_class_method"),
        ("partial_class_on_entry", "test_class_method"),
        ("method_state", "update_provision_status"),
        ("class_method_state", "test_class_method"),
    ] {
        let ws = sm(name);
        assert_eq!(
            root_text(&ws, "test_root_object_attribute"),
            marker,
            "{name}"
        );
        assert_eq!(root_text(&ws, "ae_result"), "ok", "{name}");
    }
    let ws = sm("fq_class_on_entry");
    assert_line(
        &ws,
        "Invoking [builtin] method [/SPEC_DOMAIN/factory/method/test_class_method] with inputs [{\"status\"=>\"Testing class on entry method\", \"status_state\"=>\"on_entry\"}]",
    );
}

fn item36_state_maxima(b: Backend) {
    let e = engine(b, "state_maxima");
    let sm = |name: &str, args: &[(&str, &str)]| {
        let args: Vec<(String, String)> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (ws, err) = e.instantiate_traced(&format!("/SPEC_DOMAIN/NS1/LIMITED/{name}"), &args);
        assert!(err.is_none(), "{err:?}");
        ws
    };
    let ws = sm("max_retries_2", &[("ae_state_retries", "3")]);
    assert_eq!(root_text(&ws, "ae_result"), "error");
    assert_eq!(
        root_text(&ws, "ae_reason"),
        "State=<state1> running  raised exception: <number of retries <3> exceeded maximum of <2>>"
    );
    assert_eq!(
        root_text(
            &sm("max_retries_4", &[("ae_state_retries", "2")]),
            "ae_result"
        ),
        "ok"
    );
    assert_eq!(
        root_text(&sm("no_maxima", &[("ae_state_retries", "99")]), "ae_result"),
        "ok"
    );

    let long_ago = [("ae_state_started", "2013-01-01 00:00:00 UTC")];
    let ws = sm("max_time_1_hour", &long_ago);
    assert_eq!(root_text(&ws, "ae_result"), "error");
    let reason = root_text(&ws, "ae_reason");
    assert!(
        reason.starts_with("State=<state1> running  raised exception: <time in state <"),
        "{reason}"
    );
    assert!(
        reason.ends_with(" seconds> exceeded maximum of <1.hour>>"),
        "{reason}"
    );
    assert_eq!(root_text(&sm("max_time_6_seconds", &[]), "ae_result"), "ok");
    assert_eq!(
        root_text(&sm("max_time_2", &long_ago), "ae_result"),
        "error"
    );
    assert_eq!(root_text(&sm("no_maxima", &long_ago), "ae_result"), "ok");
}

// ---------------------------------------------------------------------------
// The event flow on real data.

/// Every builtin of the ManageIQ domain's event handlers and `System/Process`,
/// as no-ops.
const EVENT_BUILTINS: [&str; 16] = [
    "event_action_policy",
    "event_action_refresh",
    "event_action_refresh_sync",
    "event_action_scan",
    "event_enforce_policy",
    "change_event_target_state",
    "check_policy_prevent",
    "refresh",
    "refresh_sync",
    "src_vm_as_template",
    "src_vm_destroy_all_snapshots",
    "src_vm_disconnect_storage",
    "parse_event_stream",
    "parse_provider_category",
    "parse_automation_request",
    "send_email",
];

const USER_RUN_VM: &str = "/System/Process/Event?EventStream%3A%3Aevent_stream=1&VmOrTemplate%3A%3Avm=29&event_id=1&event_stream_id=1&event_type=USER_RUN_VM&object_name=Event&vm_id=29&vmdb_object_type=event_stream";

fn event_store(b: Backend, event_type: &str) -> Store {
    let store = Store::new(b);
    store.insert(
        "EmsEvent",
        1,
        attrs(&[
            ("event_namespace", AttrValue::str("EmsEvent")),
            ("source", AttrValue::str("RHEVM")),
            ("event_type", AttrValue::str(event_type)),
        ]),
    );
    store.insert(
        "VmOrTemplate",
        29,
        attrs(&[("name", AttrValue::str("vm29"))]),
    );
    store
}

fn event_engine(root: &Path, store: Store) -> Case {
    let (ds, _problems) = Datastore::open(root);
    let engine = Engine::new(Arc::new(ds))
        .with_store(store.object_store())
        .with_builtins(Builtins::standard().with_noops(&EVENT_BUILTINS))
        .with_options(EngineOptions {
            emit_tracing: false,
            ..EngineOptions::default()
        });
    Case {
        engine,
        _store: store,
    }
}

/// The trace as the CLI shows it: level, then the text indented by depth.
fn render_trace(ws: &Workspace) -> String {
    ws.trace
        .iter()
        .map(|l| {
            let level = format!("{:?}", l.level).to_uppercase();
            format!("{level:<5} {}{}", "  ".repeat(l.depth), l.text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn shipped_datastore_delivers_user_run_vm(b: Backend) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("datastore");
    let (_, problems) = Datastore::open(&root);
    assert!(problems.is_empty(), "{problems:?}");
    let e = event_engine(&root, event_store(b, "USER_RUN_VM"));
    let ws = run(&e, USER_RUN_VM);
    insta::assert_snapshot!("shipped_user_run_vm", render_trace(&ws));
    let rel = "miqaedb:/System/Event/EmsEvent/RHEVM/USER_RUN_VM#create";
    let lines = ws.trace_lines();
    assert_eq!(lines[0], format!("Instantiating [{USER_RUN_VM}]"));
    assert_eq!(
        lines[1],
        format!("Updated namespace [{USER_RUN_VM}  ManageIQ/System]")
    );
    let at = lines
        .iter()
        .position(|l| *l == format!("Following Relationship [{rel}]"))
        .expect("the event relationship");
    assert_eq!(
        lines[at + 1],
        format!("Updated namespace [{rel}  ManageIQ/System/Event/EmsEvent]")
    );
    for line in [
        "Following Relationship [miqaedb:/System/event_handlers/event_action_policy?target=src_vm&policy_event=vm_start&param=#create]",
        "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_action_policy] with inputs [{\"target\"=>\"src_vm\", \"policy_event\"=>\"vm_start\", \"param\"=>\"\"}]",
        "Following Relationship [miqaedb:/System/event_handlers/event_action_refresh?target=src_vm#create]",
        "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_action_refresh] with inputs [{\"target\"=>\"src_vm\"}]",
    ] {
        assert_line(&ws, line);
    }
    assert_eq!(
        lines.last().unwrap(),
        &format!("Followed  Relationship [{rel}]")
    );
    let root = ws.root().unwrap();
    assert_eq!(root.namespace, "ManageIQ/System");
    assert_eq!(text(root.get("vm_id")), "29");
    assert!(matches!(root.get("event_stream"), Some(AttrValue::Object(r)) if r.id == 1));
}

fn shipped_datastore_unknown_event_type_ends_in_missing(b: Backend) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("datastore");
    let e = event_engine(&root, event_store(b, "NO_SUCH_EVENT"));
    let ws = run(&e, &USER_RUN_VM.replace("USER_RUN_VM", "NO_SUCH_EVENT"));
    let rel = "miqaedb:/System/Event/EmsEvent/RHEVM/NO_SUCH_EVENT#create";
    let lines = ws.trace_lines();
    let at = lines
        .iter()
        .position(|l| *l == format!("Following Relationship [{rel}]"))
        .unwrap();
    assert_eq!(
        &lines[at..],
        [
            format!("Following Relationship [{rel}]").as_str(),
            &format!("Updated namespace [{rel}  ManageIQ/System/Event/EmsEvent]"),
            "Instance [/ManageIQ/System/Event/EmsEvent/RHEVM/NO_SUCH_EVENT] not found in MiqAeDatastore - trying [.missing]",
            &format!("Followed  Relationship [{rel}]"),
        ]
    );
    let child = ws.object(ws.children(ws.roots()[0])[0]);
    assert_eq!(child.instance, ".missing");
    assert_eq!(text(child.get("_missing_instance")), "NO_SUCH_EVENT");
}

/// The real ManageIQ domain (`shared/fixtures/manageiq-content`), if present.
fn fixture_root() -> Option<PathBuf> {
    let root = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/manageiq-content"
    ));
    if root.join("ManageIQ").join("__domain__.yaml").is_file() {
        return Some(root);
    }
    if std::env::var("AUTOMATE_REQUIRE_FIXTURES").as_deref() == Ok("1") {
        panic!("fixture datastore missing at {}", root.display());
    }
    eprintln!("skipping: no fixture datastore at {}", root.display());
    None
}

fn fixture_rhevm_user_run_vm_follows_event_handlers(b: Backend) {
    let Some(root) = fixture_root() else {
        return;
    };
    let e = event_engine(&root, event_store(b, "USER_RUN_VM"));
    let ws = run(&e, "/System/Event/EmsEvent/RHEVM/USER_RUN_VM");
    let lines = ws.trace_lines();
    assert_eq!(
        &lines[..2],
        [
            "Instantiating [/System/Event/EmsEvent/RHEVM/USER_RUN_VM]",
            "Updated namespace [/System/Event/EmsEvent/RHEVM/USER_RUN_VM  ManageIQ/System/Event/EmsEvent]",
        ]
    );
    for line in [
        "Following Relationship [miqaedb:/System/event_handlers/event_action_policy?target=src_vm&policy_event=vm_start&param=#create]",
        "Updated namespace [miqaedb:/System/event_handlers/event_action_policy?target=src_vm&policy_event=vm_start&param=#create  ManageIQ/System]",
        "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_action_policy] with inputs [{\"target\"=>\"src_vm\", \"policy_event\"=>\"vm_start\", \"param\"=>\"\"}]",
        "Followed  Relationship [miqaedb:/System/event_handlers/event_action_policy?target=src_vm&policy_event=vm_start&param=#create]",
        "Following Relationship [miqaedb:/System/event_handlers/event_action_refresh?target=src_vm#create]",
        "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_action_refresh] with inputs [{\"target\"=>\"src_vm\"}]",
        "Followed  Relationship [miqaedb:/System/event_handlers/event_action_refresh?target=src_vm#create]",
    ] {
        assert_line(&ws, line);
    }
    let kids = ws.children(ws.roots()[0]);
    assert_eq!(kids.len(), 2);
    assert_eq!(text(ws.object(kids[0]).get("policy_event")), "vm_start");
}

fn fixture_miq_event_policy_falls_back_to_missing(b: Backend) {
    let Some(root) = fixture_root() else {
        return;
    };
    let e = event_engine(&root, event_store(b, "vm_start"));
    let ws = run(&e, "/System/Event/MiqEvent/POLICY/vm_start");
    let rel = "miqaedb:/System/event_handlers/event_enforce_policy#create";
    assert_eq!(
        ws.trace_lines(),
        [
            "Instantiating [/System/Event/MiqEvent/POLICY/vm_start]",
            "Updated namespace [/System/Event/MiqEvent/POLICY/vm_start  ManageIQ/System/Event/MiqEvent]",
            "Instance [/ManageIQ/System/Event/MiqEvent/POLICY/vm_start] not found in MiqAeDatastore - trying [.missing]",
            &format!("Following Relationship [{rel}]"),
            &format!("Updated namespace [{rel}  ManageIQ/System]"),
            "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_enforce_policy] with inputs [{}]",
            &format!("Followed  Relationship [{rel}]"),
        ]
    );
    assert_eq!(root_text(&ws, "_missing_instance"), "vm_start");
}

fn fixture_unknown_event_type_ends_in_provider_missing(b: Backend) {
    let Some(root) = fixture_root() else {
        return;
    };
    let e = event_engine(&root, event_store(b, "NO_SUCH_EVENT"));
    let ws = run(&e, &USER_RUN_VM.replace("USER_RUN_VM", "NO_SUCH_EVENT"));
    assert_line(
        &ws,
        "Instance [/ManageIQ/System/Event/EmsEvent/RHEVM/NO_SUCH_EVENT] not found in MiqAeDatastore - trying [.missing]",
    );
    assert_eq!(
        ws.trace_lines().last().unwrap(),
        &"Followed  Relationship [miqaedb:/System/Event/EmsEvent/RHEVM/NO_SUCH_EVENT#create]"
    );
}

// ---------------------------------------------------------------------------
// The cases above that run an engine, on both object stores.

/// Generates, from one list of engine cases (each a `fn(Backend)` above),
/// a module per object store with one `#[test]` per case:
/// `engine::memory::<case>` and `engine::redb::<case>`. A failing test's
/// name is the store and the case.
macro_rules! engine_cases {
    ($($case:ident),+ $(,)?) => {
        /// Every engine case on the in-memory store.
        mod memory {
            $(
                #[test]
                fn $case() {
                    super::$case(super::Backend::Memory);
                }
            )+
        }

        /// Every engine case on the redb store.
        mod redb {
            $(
                #[test]
                fn $case() {
                    super::$case(super::Backend::Redb);
                }
            )+
        }
    };
}

engine_cases!(
    item06_attribute_case_and_instance_values,
    item07_relationships_wildcards_and_messages,
    item08_cyclical_relationship,
    item09_invalid_paths,
    item10_assertions,
    item10_assertions_on_objects,
    item11_missing_instance_without_missing,
    item12_missing_instance_name,
    item13_substitution,
    item14_substitution_with_methods,
    item15_array_args,
    item16_process_args_as_attributes,
    item17_null_coalescing,
    item18_null_coalescing_method_input,
    item19_vmdb_datatypes,
    item20_input_datatype_conversion,
    item21_disabled_inheritance,
    item22_domain_search,
    item23_domain_overlays,
    item24_method_override,
    item25_collect,
    item26_object_lookup,
    item27_methods,
    item28_current_names,
    item29_exit_codes,
    item31_state_machine_steps,
    item32_state_machine_retry,
    item33_nested_state_machines,
    item34_state_missing_relation,
    item35_state_machine_methods,
    item36_state_maxima,
    shipped_datastore_delivers_user_run_vm,
    shipped_datastore_unknown_event_type_ends_in_missing,
    fixture_rhevm_user_run_vm_follows_event_handlers,
    fixture_miq_event_policy_falls_back_to_missing,
    fixture_unknown_event_type_ends_in_provider_missing,
);
