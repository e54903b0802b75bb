//! Methods: the Rhai runner and its `evm` API, the sandbox, embedded
//! methods, and the event-flow builtins (reference §7, §8, §9.1, §10 items
//! 27–30), on the datastore in `tests/data/methods/spec`, the shipped
//! `ManageIQ` domain and, when present, the real ManageIQ content.

use automate_datastore::Datastore;
use automate_engine::{AttrValue, Engine, EngineError, Level, Workspace};
use automate_methods::{RhaiLimits, RhaiRunner};
use automate_vmdb::{MemoryStore, ObjectStore};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{attrs, manifest, rhev_store, EVENT, HOST, VM};

/// A RHEV provider, a host, a VM and its `USER_RUN_VM` EmsEvent.
fn store() -> Arc<MemoryStore> {
    rhev_store("web01")
}

fn open(root: &Path) -> Arc<Datastore> {
    let (ds, problems) = Datastore::open(root);
    assert!(
        problems.is_empty(),
        "{} does not load cleanly: {problems:?}",
        root.display()
    );
    Arc::new(ds)
}

fn engine_on(root: &Path, store: Arc<MemoryStore>, limits: RhaiLimits) -> Engine {
    let mut engine = Engine::new(open(root)).with_store(store);
    engine.options.emit_tracing = false;
    automate_control::with_control_and_limits(engine, limits).0
}

fn spec_engine() -> Engine {
    engine_on(
        &manifest("tests/data/methods/spec"),
        store(),
        RhaiLimits::default(),
    )
}

fn spec(engine: &Engine, instance: &str) -> (Workspace, Option<EngineError>) {
    engine.instantiate_traced(&format!("/EVM/AUTOMATE/{instance}"), &[])
}

fn has_line(ws: &Workspace, needle: &str) -> bool {
    ws.trace.iter().any(|l| l.text.contains(needle))
}

fn line_at(ws: &Workspace, needle: &str) -> Option<Level> {
    ws.trace
        .iter()
        .find(|l| l.text.contains(needle))
        .map(|l| l.level)
}

fn root_text(ws: &Workspace, name: &str) -> String {
    ws.root_attr(name)
        .map(AttrValue::to_text)
        .unwrap_or_default()
}

fn dump(ws: &Workspace) -> String {
    ws.trace_lines().join("\n")
}

#[test]
fn shipped_domain_precompiles() {
    let runner = RhaiRunner::new();
    let ds = open(&manifest("datastore"));
    assert_eq!(runner.precompile(&ds.index()), vec![]);
    assert_eq!(runner.cached(), 3);
}

#[test]
fn precompile_reports_line_and_column() {
    let runner = RhaiRunner::new();
    let ds = open(&manifest("tests/data/methods/spec"));
    let errors = runner.precompile(&ds.index());
    let broken: Vec<_> = errors
        .iter()
        .filter(|e| e.fqname.ends_with("/broken"))
        .collect();
    assert_eq!(broken.len(), 1, "{errors:?}");
    assert_eq!(broken[0].fqname, "/SPEC_DOMAIN/EVM/AUTOMATE/broken");
    assert_eq!(broken[0].line, 1);
    assert!(broken[0].col > 0);
    // `eval` is disabled, so a method using it does not compile either.
    assert!(errors
        .iter()
        .any(|e| e.fqname.ends_with("/uses_eval") && e.message.contains("eval")));
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn hello_world_runs_on_the_shipped_domain() {
    let engine = engine_on(&manifest("datastore"), store(), RhaiLimits::default());
    let ws = engine
        .instantiate(
            "/System/Request/HelloWorld",
            &[("who".into(), "Ada".into())],
        )
        .unwrap();
    assert_eq!(root_text(&ws, "hello_world"), "Hello, Ada!");
    assert!(
        has_line(&ws, "<AEMethod hello_world> Hello, Ada!"),
        "{}",
        dump(&ws)
    );
    assert!(has_line(
        &ws,
        "<AEMethod [/ManageIQ/System/Request/hello_world]> Starting "
    ));
    assert!(has_line(&ws, "Method exited with rc=MIQ_OK"));
    // Without `who`, the method reads a missing attribute as ().
    let ws = engine
        .instantiate("/System/Request/HelloWorld", &[])
        .unwrap();
    assert_eq!(root_text(&ws, "hello_world"), "Hello, World!");
}

#[test]
fn current_namespace_class_instance_message_method() {
    let engine = spec_engine();
    let (ws, err) = spec(&engine, "test1");
    assert_eq!(err, None, "{}", dump(&ws));
    assert_eq!(root_text(&ws, "namespace"), "SPEC_DOMAIN/EVM");
    assert_eq!(root_text(&ws, "class"), "AUTOMATE");
    assert_eq!(root_text(&ws, "instance"), "test1");
    assert_eq!(root_text(&ws, "message"), "create");
    assert_eq!(root_text(&ws, "method"), "test");
}

#[test]
fn missing_input_is_method_parm_missing() {
    let engine = spec_engine();
    let (_, err) = spec(&engine, "needs_input");
    assert_eq!(
        err,
        Some(EngineError::MethodParmMissing(
            "/SPEC_DOMAIN/EVM/AUTOMATE/needs_input".into(),
            "num".into()
        ))
    );
    // The object's attribute supplies the input, converted by datatype.
    let (ws, err) = spec(&engine, "missing_input_default");
    assert_eq!(err, None, "{}", dump(&ws));
    assert_eq!(ws.root_attr("num_seen"), Some(&AttrValue::Int(7)));
}

#[test]
fn missing_builtin_and_method_are_method_not_found() {
    let engine = spec_engine();
    let (_, err) = spec(&engine, "bogus_builtin");
    assert_eq!(
        err,
        Some(EngineError::MethodNotFound(
            "Built-In Method [miq_bogus_builtin] does not exist".into()
        ))
    );
    let (_, err) = spec(&engine, "no_method");
    assert!(
        matches!(&err, Some(EngineError::MethodNotFound(m)) if m.contains("no_such_method")),
        "{err:?}"
    );
}

#[test]
fn builtin_names_are_case_insensitive() {
    let engine = spec_engine();
    let (ws, err) = spec(&engine, "log_object");
    assert_eq!(err, None, "{}", dump(&ws));
    assert!(has_line(
        &ws,
        "Invoking [builtin] method [/$/Object/log_object]"
    ));
    assert!(
        ws.trace
            .iter()
            .any(|l| l.text.contains("attr1") && l.text.contains("shown")),
        "{}",
        dump(&ws)
    );
}

#[test]
fn method_uris_call_methods_on_the_current_object() {
    let engine = spec_engine();
    let (ws, err) = spec(&engine, "method_uri");
    assert_eq!(err, None, "{}", dump(&ws));
    // num1 from its default (1), num2 from the URI (3), both integers.
    assert_eq!(ws.root_attr("sum"), Some(&AttrValue::Int(4)));
    let (_, err) = spec(&engine, "method_uri_missing");
    assert!(
        matches!(&err, Some(EngineError::MethodNotFound(m)) if m.contains("missing")),
        "{err:?}"
    );
}

#[test]
fn exit_codes() {
    let engine = spec_engine();
    let (ws, err) = spec(&engine, "exit_ok");
    assert_eq!(err, None);
    assert_eq!(
        line_at(&ws, "Method exited with rc=MIQ_OK"),
        Some(Level::Info)
    );

    let (ws, err) = spec(&engine, "exit_warn");
    assert_eq!(err, None);
    assert_eq!(
        line_at(&ws, "Method exited with rc=MIQ_WARN"),
        Some(Level::Warn)
    );
    let (ws, err) = spec(&engine, "returns_warn");
    assert_eq!(err, None);
    assert_eq!(
        line_at(&ws, "Method exited with rc=MIQ_WARN"),
        Some(Level::Warn)
    );

    // MIQ_STOP stops this object only: no error, the root is dropped.
    let (ws, err) = spec(&engine, "exit_stop");
    assert_eq!(err, None);
    assert!(has_line(
        &ws,
        "Stopping instantiation because [Method exited with rc=MIQ_STOP]"
    ));
    assert!(has_line(&ws, "<AEMethod exit_stop> stopping"));
    assert!(!has_line(&ws, "not reached"));
    assert!(ws.roots().is_empty());

    let (_, err) = spec(&engine, "exit_abort");
    assert_eq!(
        err,
        Some(EngineError::Abort("Method exited with rc=MIQ_ABORT".into()))
    );
    let (_, err) = spec(&engine, "exit_unknown");
    assert_eq!(
        err,
        Some(EngineError::UnknownMethodRc(
            "Method exited with rc=Unknown RC: [3]".into()
        ))
    );
}

#[test]
fn a_thrown_error_names_the_method_and_position() {
    let engine = spec_engine();
    let (ws, err) = spec(&engine, "after_throw");
    assert_eq!(
        err,
        Some(EngineError::UnknownMethodRc(
            "Method exited with rc=Unknown RC: [1]".into()
        ))
    );
    let line = "<AEMethod [/SPEC_DOMAIN/EVM/AUTOMATE/throws]> boom at line 2, position 1";
    assert_eq!(line_at(&ws, line), Some(Level::Error), "{}", dump(&ws));
    assert!(has_line(
        &ws,
        "Aborting instantiation (unknown method return code) because [Method exited with rc=Unknown RC: [1]]"
    ));
    // meth2 never ran.
    assert!(!has_line(&ws, "/SPEC_DOMAIN/EVM/AUTOMATE/exit_ok"));
}

#[test]
fn embedded_methods_nested_and_duplicates() {
    let engine = spec_engine();
    let (ws, err) = spec(&engine, "top_embeds");
    assert_eq!(err, None, "{}", dump(&ws));
    assert_eq!(root_text(&ws, "greeting"), "Hello, Ada");
    assert_eq!(root_text(&ws, "twice"), "Hello, Bob!");
    // A function of an embedded method sees `evm` too.
    assert!(
        has_line(&ws, "<AEMethod top_embeds> from util"),
        "{}",
        dump(&ws)
    );
    let loads: Vec<&str> = ws
        .trace_lines()
        .into_iter()
        .filter(|l| l.contains("embedded method"))
        .collect();
    assert_eq!(
        loads,
        vec![
            "Loading embedded method /SPEC_DOMAIN/EVM/LIB/nested",
            "Loading embedded method /SPEC_DOMAIN/EVM/LIB/util",
            "Already loaded embedded method /SPEC_DOMAIN/EVM/LIB/util",
            "Already loaded embedded method /SPEC_DOMAIN/EVM/LIB/util",
        ]
    );
}

#[test]
fn embedded_methods_circular_and_self_references() {
    let engine = spec_engine();
    let (ws, err) = spec(&engine, "uses_circ");
    assert_eq!(err, None, "{}", dump(&ws));
    assert_eq!(root_text(&ws, "circ"), "ran");
    assert!(has_line(
        &ws,
        "Loading embedded method /SPEC_DOMAIN/EVM/LIB/circ_a"
    ));
    assert!(has_line(
        &ws,
        "Loading embedded method /SPEC_DOMAIN/EVM/LIB/circ_b"
    ));
    assert!(has_line(
        &ws,
        "Already loaded embedded method /SPEC_DOMAIN/EVM/LIB/circ_a"
    ));

    let (ws, err) = spec(&engine, "self_ref");
    assert_eq!(err, None, "{}", dump(&ws));
    assert!(has_line(
        &ws,
        "Skipping /SPEC_DOMAIN/EVM/AUTOMATE/self_ref, cannot reference the top method"
    ));
    assert_eq!(root_text(&ws, "self_ref"), "ran");

    // Modules that import each other fail the method, not the process.
    let (ws, err) = spec(&engine, "uses_import_loop");
    assert!(
        matches!(err, Some(EngineError::UnknownMethodRc(_))),
        "{err:?}"
    );
    assert!(
        has_line(&ws, "circular import of embedded method"),
        "{}",
        dump(&ws)
    );
}

#[test]
fn a_missing_embedded_method_is_method_not_found() {
    let engine = spec_engine();
    let (ws, err) = spec(&engine, "uses_missing");
    assert_eq!(
        err,
        Some(EngineError::MethodNotFound(
            "Embedded method /EVM/LIB/nope not found".into()
        ))
    );
    assert_eq!(ws.root_attr("never"), None);
}

#[test]
fn imports_are_limited_to_embedded_methods() {
    let engine = spec_engine();
    let (ws, err) = spec(&engine, "import_other");
    assert!(
        matches!(err, Some(EngineError::UnknownMethodRc(_))),
        "{err:?}"
    );
    assert!(
        has_line(&ws, "only the method's embedded_methods can be imported"),
        "{}",
        dump(&ws)
    );
}

#[test]
fn ruby_methods_are_refused_by_name() {
    let engine = spec_engine();
    let (_, err) = spec(&engine, "legacy");
    let Some(EngineError::InvalidMethod(msg)) = err else {
        panic!("{err:?}");
    };
    assert!(msg.contains("/SPEC_DOMAIN/EVM/AUTOMATE/legacy"), "{msg}");
    assert!(msg.contains("docs/porting-ruby-methods.md"), "{msg}");
}

#[test]
fn hostile_scripts_fail_alone_within_their_limits() {
    let engine = spec_engine();
    let cases = [
        ("infinite", "exceeded its limit of 5000000 operations"),
        ("recursion", "nested function calls"),
        ("huge_string", "too large"),
        ("doubling", "too large"),
        ("uses_eval", "eval"),
        ("missing_attr", "len"),
        ("undefined_var", "no_such_variable"),
    ];
    for (instance, needle) in cases {
        let started = Instant::now();
        let (ws, err) = spec(&engine, instance);
        let took = started.elapsed();
        assert!(
            matches!(err, Some(EngineError::UnknownMethodRc(_))),
            "{instance}: {err:?}\n{}",
            dump(&ws)
        );
        let prefix = format!("<AEMethod [/SPEC_DOMAIN/EVM/AUTOMATE/{instance}]> ");
        let line = ws
            .trace
            .iter()
            .find(|l| l.text.starts_with(&prefix) && l.level == Level::Error)
            .unwrap_or_else(|| panic!("{instance}: no error line\n{}", dump(&ws)));
        assert!(
            line.text.contains(needle) && line.text.contains(" at line "),
            "{instance}: {}",
            line.text
        );
        assert!(took < Duration::from_secs(10), "{instance} took {took:?}");
        // The engine keeps serving.
        let (ws, err) = spec(&engine, "simple");
        assert_eq!(err, None, "after {instance}: {}", dump(&ws));
        assert_eq!(root_text(&ws, "attr1"), "hello");
    }
    // A missing attribute reads as () before it is misused.
    let (ws, _) = spec(&engine, "missing_attr");
    assert_eq!(root_text(&ws, "type"), "()");
}

#[test]
fn wall_clock_limit() {
    let limits = RhaiLimits {
        max_operations: 0,
        timeout: Some(Duration::from_millis(200)),
        ..RhaiLimits::default()
    };
    let engine = engine_on(&manifest("tests/data/methods/spec"), store(), limits);
    let started = Instant::now();
    let (ws, err) = spec(&engine, "infinite");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(err, Some(EngineError::UnknownMethodRc(_))),
        "{err:?}"
    );
    assert!(
        has_line(&ws, "Method exceeded its time limit of 200ms"),
        "{}",
        dump(&ws)
    );
}

#[test]
fn the_evm_api() {
    let store = store();
    let engine = engine_on(
        &manifest("tests/data/methods/spec"),
        store.clone(),
        RhaiLimits::default(),
    );
    let (ws, err) = engine.instantiate_traced("/EVM/AUTOMATE/api", &[("x".into(), "42".into())]);
    assert_eq!(err, None, "{}", dump(&ws));
    assert_eq!(root_text(&ws, "seen_x"), "42");
    assert_eq!(root_text(&ws, "on_object"), "yes");
    assert_eq!(root_text(&ws, "dotted"), "via property");
    assert_eq!(line_at(&ws, "<AEMethod api> x is 42"), Some(Level::Warn));
    assert_eq!(ws.state_vars.get("count"), Some(&AttrValue::Int(42)));
    assert_eq!(ws.root_attr("has_count"), Some(&AttrValue::Bool(true)));
    assert_eq!(ws.root_attr("has_other"), Some(&AttrValue::Bool(false)));
    // evm.instantiate: a child of the current object.
    assert_eq!(root_text(&ws, "child_attr"), "from the child");
    assert_eq!(
        root_text(&ws, "child_name"),
        "/SPEC_DOMAIN/EVM/AUTOMATE/child"
    );
    assert_eq!(ws.root_attr("child_ran"), Some(&AttrValue::Bool(true)));
    let root = ws.roots()[0];
    let child = ws.children(root)[0];
    assert_eq!(root_text(&ws, "from_child"), "");
    assert_eq!(
        ws.object(child).get("from_child"),
        Some(&AttrValue::Str("child".into()))
    );
    assert!(has_line(&ws, "Class [EVM/NO_SUCH_CLASS] not found"));
    assert!(has_line(&ws, "instantiate failed : "), "{}", dump(&ws));
    assert_eq!(
        ws.root_attr("invalid_is_unit"),
        Some(&AttrValue::Bool(true))
    );
    assert_eq!(ws.root_attr("bad_is_unit"), Some(&AttrValue::Bool(true)));
    // evm.vmdb
    assert_eq!(root_text(&ws, "vm_name"), "web01");
    assert_eq!(root_text(&ws, "vm_name_index"), "web01");
    assert!(matches!(ws.root_attr("vm_obj"), Some(AttrValue::Object(r)) if r.id == VM));
    assert_eq!(ws.root_attr("vm_missing"), Some(&AttrValue::Bool(true)));
    assert_eq!(ws.root_attr("found"), Some(&AttrValue::Int(1)));
    assert_eq!(ws.root_attr("found_by"), Some(&AttrValue::Int(VM)));
    assert_eq!(ws.root_attr("parent_is_unit"), Some(&AttrValue::Bool(true)));
    assert_eq!(ws.root_attr("in_root"), Some(&AttrValue::Bool(true)));
    // Writes to the root land on the workspace root.
    assert_eq!(root_text(&ws, "ae_result"), "retry");
}

#[test]
fn raise_evm_event_from_a_script() {
    let store = store();
    let engine = engine_on(
        &manifest("tests/data/methods/spec"),
        store.clone(),
        RhaiLimits::default(),
    );
    let (ws, err) = spec(&engine, "raise");
    assert_eq!(err, None, "{}", dump(&ws));
    let id = ws
        .root_attr("raised")
        .and_then(|v| match v {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        })
        .expect("an event id");
    let ev = store
        .find("MiqEvent", id)
        .unwrap()
        .expect("the MiqEvent is stored");
    assert_eq!(
        store.attribute(&ev, "event_type").unwrap(),
        Some(AttrValue::Str("vm_start".into()))
    );
    assert_eq!(
        store.attribute(&ev, "source").unwrap(),
        Some(AttrValue::Str("POLICY".into()))
    );
    assert!(
        has_line(
            &ws,
            "Delivering {:event_type=>\"vm_start\", \"MiqEvent::miq_event\"=>"
        ),
        "{}",
        dump(&ws)
    );
    assert!(has_line(&ws, ":extra=>1}"), "{}", dump(&ws));
    assert_eq!(root_text(&ws, "not_raised"), "()");
    assert_eq!(
        line_at(
            &ws,
            &format!(
                "Event vm_bogus for class [VmOrTemplate] id [{VM}] was not raised: vm_bogus is not defined in MiqEventDefinition"
            )
        ),
        Some(Level::Warn)
    );
    assert!(has_line(&ws, "Alert for Event [vm_bogus]"));
}

fn event_uri(path: &str) -> String {
    format!("{path}?EventStream%3A%3Aevent_stream={EVENT}&event_type=USER_RUN_VM")
}

/// The event flow of `USER_RUN_VM` on a datastore that has the ManageIQ
/// switchboard (the shipped domain or the real content).
fn assert_user_run_vm_raises_vm_start(root: &Path) {
    let store = store();
    let engine = engine_on(root, store.clone(), RhaiLimits::default());
    let (ws, err) =
        engine.instantiate_traced(&event_uri("/System/Event/EmsEvent/RHEVM/USER_RUN_VM"), &[]);
    if std::env::var_os("AUTOMATE_SHOW_TRACE").is_some() {
        eprintln!("{}", dump(&ws));
    }
    assert_eq!(err, None, "{}", dump(&ws));
    assert!(
        has_line(
            &ws,
            "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_action_policy] with inputs [{\"target\"=>\"src_vm\", \"policy_event\"=>\"vm_start\", \"param\"=>\"\"}]"
        ),
        "{}",
        dump(&ws)
    );
    assert!(
        has_line(&ws, "MIQ(Event.raise_evm_event): Event Raised [vm_start]"),
        "{}",
        dump(&ws)
    );
    assert!(has_line(
        &ws,
        "MIQ(Event.raise_evm_event): Alert for Event [vm_start]"
    ));
    assert!(has_line(
        &ws,
        "Instantiating [/System/Process/Event?EventStream%3A%3Aevent_stream="
    ));
    assert!(has_line(&ws, "/System/Event/MiqEvent/POLICY/vm_start"));
    assert!(has_line(
        &ws,
        &format!("Refresh requested for VmOrTemplate [{VM}]")
    ));
    let events = store
        .find_by("MiqEvent", "event_type", &AttrValue::Str("vm_start".into()))
        .unwrap();
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    assert_eq!(
        store.attribute(ev, "event_namespace").unwrap(),
        Some(AttrValue::Str("MiqEvent".into()))
    );
    assert_eq!(
        store.attribute(ev, "target_id").unwrap(),
        Some(AttrValue::Int(VM))
    );
    assert_eq!(
        store.attribute(ev, "full_data").unwrap(),
        Some(AttrValue::Hash(vec![(
            AttrValue::Str("source_event_id".into()),
            AttrValue::Int(EVENT)
        )]))
    );
    let vm = store.find("VmOrTemplate", VM).unwrap().unwrap();
    assert!(store
        .attribute(&vm, "last_refresh_requested_on")
        .unwrap()
        .is_some());
}

#[test]
fn shipped_user_run_vm_raises_vm_start() {
    assert_user_run_vm_raises_vm_start(&manifest("datastore"));
}

#[test]
fn fixture_user_run_vm_raises_vm_start() {
    let root = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/manageiq-content"
    ));
    if !root.join("ManageIQ").is_dir() {
        if std::env::var("AUTOMATE_REQUIRE_FIXTURES").as_deref() == Ok("1") {
            panic!("fixture {} is missing", root.display());
        }
        eprintln!("skipping: fixture {} is absent", root.display());
        return;
    }
    // The real content has Ruby methods; only loading problems matter here.
    let (ds, _) = Datastore::open(root);
    assert!(ds.index().domain("ManageIQ").is_some());
    assert_user_run_vm_raises_vm_start(root);
}

#[test]
fn event_builtins_on_the_shipped_domain() {
    let store = store();
    let engine = engine_on(&manifest("datastore"), store.clone(), RhaiLimits::default());
    let vm = store.find("VmOrTemplate", VM).unwrap().unwrap();

    let (ws, err) = engine.instantiate_traced(
        &event_uri("/System/event_handlers/change_event_target_state")
            .replace("?", "?target=src_vm&param=on&"),
        &[],
    );
    assert_eq!(err, None, "{}", dump(&ws));
    assert_eq!(
        store.attribute(&vm, "power_state").unwrap(),
        Some(AttrValue::Str("on".into()))
    );

    let (ws, err) =
        engine.instantiate_traced(&event_uri("/System/Process/parse_event_stream"), &[]);
    assert_eq!(err, None, "{}", dump(&ws));
    assert_eq!(
        root_text(&ws, "event_path"),
        "/System/Event/EmsEvent/RHEVM/USER_RUN_VM"
    );

    let (ws, err) =
        engine.instantiate_traced(&event_uri("/System/Process/parse_provider_category"), &[]);
    assert_eq!(err, None, "{}", dump(&ws));
    assert_eq!(root_text(&ws, "ae_provider_category"), "infrastructure");
    // Without an event or a VM: unknown, and no error.
    let (ws, err) = engine.instantiate_traced("/System/Process/parse_provider_category", &[]);
    assert_eq!(err, None, "{}", dump(&ws));
    assert_eq!(root_text(&ws, "ae_provider_category"), "unknown");

    // An event builtin without an event aborts.
    let (ws, err) = engine.instantiate_traced(
        "/System/event_handlers/event_action_refresh?target=src_vm",
        &[],
    );
    assert_eq!(err, Some(EngineError::Abort("Event not specified".into())));
    assert!(has_line(
        &ws,
        "Aborting instantiation because [Event not specified]"
    ));

    // `param` names the policy source: an association of the target.
    let (ws, err) = engine.instantiate_traced(
        &event_uri("/System/event_handlers/event_action_policy")
            .replace("?", "?target=src_vm&policy_event=vm_start&param=host&"),
        &[],
    );
    assert_eq!(err, None, "{}", dump(&ws));
    assert!(
        has_line(&ws, &format!("\"Host::host\"=>{HOST}, :host_id=>{HOST}")),
        "{}",
        dump(&ws)
    );
    assert!(has_line(&ws, "Event Raised [vm_start]"));

    // An unknown policy event is not raised.
    let (ws, err) = engine.instantiate_traced(
        &event_uri("/System/event_handlers/event_action_policy")
            .replace("?", "?target=src_vm&policy_event=vm_bogus&param=&"),
        &[],
    );
    assert_eq!(err, None, "{}", dump(&ws));
    assert!(has_line(
        &ws,
        "vm_bogus is not defined in MiqEventDefinition"
    ));
    assert!(store
        .find_by("MiqEvent", "event_type", &AttrValue::Str("vm_bogus".into()))
        .unwrap()
        .is_empty());
}

#[test]
fn inside_a_state_a_failing_method_is_an_error() {
    let limits = RhaiLimits {
        max_operations: 200_000,
        ..RhaiLimits::default()
    };
    let engine = engine_on(&manifest("tests/data/methods/spec"), store(), limits);
    for (instance, message) in [
        ("sm_boom", "state boom at line 1, position 1"),
        ("sm_limit", "exceeded its limit of 200000 operations"),
    ] {
        let (ws, err) = engine.instantiate_traced(&format!("/EVM/SM/{instance}"), &[]);
        assert_eq!(err, None, "{instance}: {}", dump(&ws));
        assert!(has_line(&ws, message), "{instance}: {}", dump(&ws));
        assert_eq!(root_text(&ws, "ae_result"), "error", "{}", dump(&ws));
        assert_eq!(root_text(&ws, "on_error_ran"), "error");
        assert_eq!(ws.root_attr("after_ran"), None);
    }
}

#[test]
fn print_goes_to_the_trace() {
    let engine = spec_engine();
    let (ws, err) = engine.instantiate_traced("/EVM/SM/sm_print", &[]);
    assert_eq!(err, None, "{}", dump(&ws));
    assert!(
        has_line(&ws, "Method STDOUT: hello from print"),
        "{}",
        dump(&ws)
    );
    assert_eq!(root_text(&ws, "where"), "/SPEC_DOMAIN/EVM/SM/sm_print");
}

#[test]
fn one_runner_serves_many_threads() {
    let engine = Arc::new(engine_on(
        &manifest("datastore"),
        store(),
        RhaiLimits::default(),
    ));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let who = format!("t{t}-{i}");
                    let ws = engine
                        .instantiate("/System/Request/HelloWorld", &[("who".into(), who.clone())])
                        .unwrap();
                    assert_eq!(root_text(&ws, "hello_world"), format!("Hello, {who}!"));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn nested_rhai_instantiations_fit_a_small_stack() {
    // Rhai -> evm.instantiate -> Rhai ... 63 deep (the engine allows 64),
    // on a 2 MiB thread (the size of tokio's blocking threads and of test
    // threads).
    let engine = spec_engine();
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let (ws, err) =
                engine.instantiate_traced("/EVM/CHAIN/c0", &[("last".into(), "62".into())]);
            assert_eq!(err, None, "{}", dump(&ws));
            assert_eq!(root_text(&ws, "deepest"), "62");
        })
        .unwrap();
    handle.join().unwrap();
}

#[test]
fn request_events_run_the_shipped_rhai_hooks() {
    let store = store();
    let event = store
        .create(
            "RequestEvent",
            attrs(&[
                ("event_namespace", "RequestEvent".into()),
                ("source", "Request".into()),
                ("event_type", "request_created".into()),
            ]),
        )
        .unwrap();
    let engine = engine_on(&manifest("datastore"), store, RhaiLimits::default());
    let uri = format!(
        "/System/Process/Event?EventStream%3A%3Aevent_stream={}&event_type=request_created&miq_request_id=7",
        event.id
    );
    let (ws, err) = engine.instantiate_traced(&uri, &[]);
    assert_eq!(err, None, "{}", dump(&ws));
    assert!(
        has_line(
            &ws,
            "<AEMethod log_request_event> Request event [request_created] for request [7]"
        ),
        "{}",
        dump(&ws)
    );
    assert!(has_line(
        &ws,
        "<AEMethod auto_approve> Auto-approval check for request [7]"
    ));
}
