//! Issue 16 item 6: every top-level instantiation has one budget (objects,
//! events, time, memory) shared by everything it triggers, and an API
//! resolve whose client went away is cancelled. Real datastores written to
//! temp dirs, the real engine and Rhai runner, a real API server on
//! 127.0.0.1 over a real redb store.

use automate_datastore::Datastore;
use automate_engine::{
    AttrValue, Attributes, BudgetKind, BudgetLimits, Engine, EngineError, EngineOptions, ObjectId,
    Runtime,
};
use automate_redb::RedbStore;
use automate_vmdb::{MemoryStore, ObjectStore};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const VM: i64 = 1_000_000_000_029;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn domain(root: &Path, name: &str) -> std::path::PathBuf {
    let d = root.join(name);
    write(
        &d.join("__domain__.yaml"),
        &format!(
            "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n    \
             description:\n    display_name:\n    priority: 100\n    enabled: true\n    tenant_id: 1\n    \
             source: user\n    top_level_namespace:\n"
        ),
    );
    d
}

fn namespace(dir: &Path, name: &str) {
    write(
        &dir.join("__namespace__.yaml"),
        &format!(
            "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n    \
             description:\n    display_name:\n    priority:\n    enabled:\n"
        ),
    );
}

/// A class file with `fields` as (aetype, name, default value).
fn class(dir: &Path, name: &str, fields: &[(&str, String, &str)]) {
    let mut text = format!(
        "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    \
         display_name:\n    name: {name}\n    type:\n    inherits:\n    visibility:\n    owner:\n  schema:\n"
    );
    for (i, (aetype, field, default)) in fields.iter().enumerate() {
        text.push_str(&format!(
            "  - field:\n      aetype: {aetype}\n      name: {field}\n      display_name:\n      \
             datatype:\n      priority: {}\n      owner:\n      default_value: \"{default}\"\n      \
             substitute: true\n      message: create\n      visibility:\n      collect:\n      \
             scope:\n      description:\n      condition:\n      on_entry:\n      on_exit:\n      \
             on_error:\n      max_retries:\n      max_time:\n",
            i + 1
        ));
    }
    write(&dir.join("__class__.yaml"), &text);
}

fn instance(dir: &Path, name: &str, values: &[(String, String)]) {
    let mut text = format!(
        "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    display_name:\n    \
         name: {name}\n    inherits:\n    description:\n  fields:\n"
    );
    if values.is_empty() {
        text = text.replace("  fields:\n", "  fields: []\n");
    }
    for (k, v) in values {
        text.push_str(&format!("  - {k}:\n      value: \"{v}\"\n"));
    }
    write(&dir.join(format!("{name}.yaml")), &text);
}

fn method(class_dir: &Path, name: &str, location: &str, language: &str, body: Option<&str>) {
    let dir = class_dir.join("__methods__");
    let data = match location {
        "builtin" => format!("    data: {name}\n"),
        _ => String::new(),
    };
    write(
        &dir.join(format!("{name}.yaml")),
        &format!(
            "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n    \
             display_name:\n    description:\n    scope: instance\n    language: {language}\n    \
             location: {location}\n{data}  inputs: []\n"
        ),
    );
    if let Some(body) = body {
        write(&dir.join(format!("{name}.rhai")), body);
    }
}

/// What each object of [`fan_out`] runs besides its relationships.
#[derive(PartialEq)]
enum Objects {
    Plain,
    /// The builtin `budget_count` in every object, `budget_mark` in `l0`.
    Counted,
    /// The builtin `budget_blob` (a 1 MiB attribute) in every object.
    Blob,
}

/// `/EVM/FAN/l0` .. `/EVM/FAN/l{depth}`: each level follows four
/// relationships to the next (4^depth objects in all).
fn fan_out(root: &Path, depth: usize, objects: Objects) {
    let counted = objects == Objects::Counted;
    let d = domain(root, "FANOUT");
    let ns = d.join("EVM");
    namespace(&ns, "EVM");
    let c = ns.join("FAN.class");
    let mut fields: Vec<(&str, String, &str)> = Vec::new();
    if objects == Objects::Blob {
        fields.push(("method", "blob".into(), "budget_blob"));
        method(&c, "budget_blob", "builtin", "ruby", None);
    }
    if counted {
        fields.push(("method", "mark".into(), ""));
        fields.push(("method", "count".into(), "budget_count"));
        method(&c, "budget_count", "builtin", "ruby", None);
        method(&c, "budget_mark", "builtin", "ruby", None);
    }
    for r in 1..=4 {
        fields.push(("relationship", format!("r{r}"), ""));
    }
    class(&c, "FAN", &fields);
    for level in 0..=depth {
        let mut values: Vec<(String, String)> = Vec::new();
        if counted && level == 0 {
            values.push(("mark".into(), "budget_mark".into()));
        }
        if level < depth {
            for r in 1..=4 {
                values.push((format!("r{r}"), format!("/EVM/FAN/l{}", level + 1)));
            }
        }
        instance(&c, &format!("l{level}"), &values);
    }
}

fn open(root: &Path) -> Datastore {
    let (ds, problems) = Datastore::open(root);
    assert!(problems.is_empty(), "{problems:?}");
    ds
}

fn quiet(budget: BudgetLimits) -> EngineOptions {
    EngineOptions {
        emit_tracing: false,
        budget,
        ..EngineOptions::default()
    }
}

fn budget_error(err: &Option<EngineError>) -> BudgetKind {
    match err {
        Some(EngineError::Budget(e)) => e.kind,
        other => panic!("expected a budget error, got {other:?}"),
    }
}

#[test]
fn fan_out_of_depth_30_stops_at_the_objects_budget() {
    let dir = tempfile::tempdir().unwrap();
    fan_out(dir.path(), 30, Objects::Plain);
    let limits = BudgetLimits::default();
    let engine = Engine::new(Arc::new(open(dir.path()))).with_options(quiet(limits));
    let (ws, err) = engine.instantiate_traced("/EVM/FAN/l0", &[]);
    assert_eq!(budget_error(&err), BudgetKind::Objects, "{err:?}");
    let text = err.unwrap().to_string();
    assert!(
        text.contains("objects budget") && text.contains(&limits.max_objects.to_string()),
        "{text}"
    );
    assert!(
        ws.objects.len() as u64 <= limits.max_objects,
        "{}",
        ws.objects.len()
    );
    let lines = ws.trace_lines();
    assert!(
        lines.iter().any(|l| l.contains(
            "MIQ(MiqAeEngine.instantiate) Instantiation stopped: the objects budget ran out"
        )),
        "{:?}",
        &lines[lines.len().saturating_sub(5)..]
    );

    // A smaller limit from the options is the one enforced and named.
    let small = BudgetLimits {
        max_objects: 50,
        ..limits
    };
    let engine = Engine::new(Arc::new(open(dir.path()))).with_options(quiet(small));
    let (ws, err) = engine.instantiate_traced("/EVM/FAN/l0", &[]);
    assert_eq!(budget_error(&err), BudgetKind::Objects);
    assert!(err.unwrap().to_string().contains("more than 50 objects"));
    assert_eq!(ws.objects.len(), 50);

    // `Engine::instantiate` fails the same way (no partial Ok).
    assert!(matches!(
        engine.instantiate("/EVM/FAN/l0", &[]),
        Err(EngineError::Budget(_))
    ));
}

fn budget_blob(rt: &mut Runtime<'_>, id: ObjectId, _: &Attributes) -> Result<(), EngineError> {
    rt.set_attr(id, "blob", AttrValue::Str("x".repeat(1 << 20)));
    Ok(())
}

#[test]
fn fan_out_holding_memory_stops_at_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    fan_out(dir.path(), 30, Objects::Blob);
    let limits = BudgetLimits {
        max_memory: 8 << 20,
        ..BudgetLimits::default()
    };
    let mut builtins = automate_engine::Builtins::standard();
    builtins.insert("budget_blob", budget_blob);
    let engine = Engine::new(Arc::new(open(dir.path())))
        .with_builtins(builtins)
        .with_options(quiet(limits));
    let (ws, err) = engine.instantiate_traced("/EVM/FAN/l0", &[]);
    assert_eq!(budget_error(&err), BudgetKind::Memory, "{err:?}");
    assert!(err.unwrap().to_string().contains("more than 8 MiB"));
    // Checked every 8 objects: stopped well before the objects budget.
    assert!(ws.objects.len() <= 32, "{}", ws.objects.len());
}

/// `/System/Process/Event` runs a Rhai method raising `vm_start` for the
/// VM five times: each raised event's delivery runs it again, eight levels
/// deep (5^8 events without a shared budget).
fn raising_datastore(root: &Path) {
    let d = domain(root, "RAISE");
    let sys = d.join("System");
    namespace(&sys, "System");
    let c = sys.join("Process.class");
    class(&c, "Process", &[("method", "raise".into(), "raise")]);
    method(
        &c,
        "raise",
        "inline",
        "rhai",
        Some("let vm = evm.root[\"vm\"];\nfor i in 0..5 {\n  evm.raise_evm_event(\"vm_start\", vm);\n}\n"),
    );
    instance(&c, "Event", &[]);
}

fn raising_engine(limits: BudgetLimits) -> (tempfile::TempDir, Engine, Arc<MemoryStore>) {
    let dir = tempfile::tempdir().unwrap();
    raising_datastore(dir.path());
    let store = Arc::new(MemoryStore::new());
    let vm: Attributes = [("name".to_string(), AttrValue::str("web-01"))]
        .into_iter()
        .collect();
    store.insert("VmOrTemplate", VM, vm);
    let engine = Engine::new(Arc::new(open(dir.path())))
        .with_store(store.clone())
        .with_options(quiet(limits));
    let (engine, _runner) = automate_control::with_control(engine);
    (dir, engine, store)
}

fn stored_events(store: &MemoryStore) -> usize {
    store
        .find_by("MiqEvent", "event_type", &AttrValue::str("vm_start"))
        .unwrap()
        .len()
}

const RAISE_URI: &str = "/System/Process/Event?VmOrTemplate%3A%3Avm=1000000000029";

#[test]
fn nested_raised_events_share_the_events_budget() {
    let limits = BudgetLimits::default();
    let (_dir, engine, store) = raising_engine(limits);
    let (ws, err) = engine.instantiate_traced(RAISE_URI, &[]);
    assert_eq!(budget_error(&err), BudgetKind::Events, "{err:?}");
    assert!(err.unwrap().to_string().contains("more than 1000 events"));
    let stored = stored_events(&store);
    assert_eq!(stored as u64, limits.max_events, "stored MiqEvents");
    let lines = ws.trace_lines();
    let stops: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("MIQ(MiqAeEngine.instantiate) Instantiation stopped"))
        .collect();
    assert_eq!(stops.len(), 1, "logged once: {stops:?}");
    assert!(
        stops[0].contains("the events budget ran out"),
        "{}",
        stops[0]
    );
}

#[test]
fn nested_raised_events_share_the_outer_deadline() {
    // Events are not what runs out here: the clock of the outer
    // instantiation does, though every event is delivered inside a native
    // call of a method inside another delivery.
    let limits = BudgetLimits {
        max_events: 10_000_000,
        max_time: Duration::from_secs(1),
        ..BudgetLimits::default()
    };
    let (_dir, engine, store) = raising_engine(limits);
    let (_ws, err) = engine.instantiate_traced(RAISE_URI, &[]);
    assert_eq!(budget_error(&err), BudgetKind::Time, "{err:?}");
    assert!(err.unwrap().to_string().contains("longer than 1 s"));
    let stored = stored_events(&store);
    assert!(stored > 0 && stored < 5usize.pow(8), "{stored}");
}

static COUNTED: AtomicU64 = AtomicU64::new(0);

/// Set when the test ends: a resolve still running (the test failed)
/// aborts at its next object instead of filling memory until the test
/// binary exits.
static TEST_OVER: AtomicBool = AtomicBool::new(false);

fn budget_count(_: &mut Runtime<'_>, _: ObjectId, _: &Attributes) -> Result<(), EngineError> {
    if TEST_OVER.load(Ordering::Relaxed) {
        return Err(EngineError::Abort("the test is over".into()));
    }
    COUNTED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Written in the resolve's unit of work: visible once the engine has
/// returned and the unit committed.
fn budget_mark(rt: &mut Runtime<'_>, _: ObjectId, _: &Attributes) -> Result<(), EngineError> {
    let store = rt.engine().store().clone();
    if let Some(vm) = store.find("VmOrTemplate", VM).unwrap() {
        let _ = store.update(&vm, "resolved", AttrValue::str("yes"));
    }
    Ok(())
}

fn resolved(store: &RedbStore) -> bool {
    store
        .find("VmOrTemplate", VM)
        .unwrap()
        .and_then(|vm| store.attribute(&vm, "resolved").unwrap())
        .is_some()
}

/// Waits up to a minute for `f`.
fn wait_for(what: &str, f: impl Fn() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("gave up waiting for {what}");
    false
}

/// A runtime shut down without waiting for its blocking threads (which a
/// failed test's runaway resolve would hold forever); ends the test
/// ([`TEST_OVER`]).
struct Background(Option<tokio::runtime::Runtime>);

impl Background {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().unwrap()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        TEST_OVER.store(true, Ordering::Relaxed);
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[test]
fn api_resolve_stops_when_its_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let ds_root = dir.path().join("ds");
    fan_out(&ds_root, 30, Objects::Counted);
    let store = Arc::new(RedbStore::open(dir.path().join("api.redb")).unwrap());
    store
        .insert("VmOrTemplate", VM, Attributes::default())
        .unwrap();
    // Budgets far beyond what the test waits for: only the client's
    // disconnection can stop this resolve (4^30 objects).
    let limits = BudgetLimits {
        max_objects: 100_000_000,
        max_events: 10,
        max_time: Duration::from_secs(86_400),
        max_memory: 1 << 40,
    };
    let engine = Engine::new(Arc::new(open(&ds_root)))
        .with_store(store.clone())
        .with_options(quiet(limits));
    let (engine, _runner) = automate_control::with_control(engine);
    let mut builtins = automate_methods::event_builtins();
    builtins.insert("budget_count", budget_count);
    builtins.insert("budget_mark", budget_mark);
    let engine = engine.with_builtins(builtins);

    let rt = Background(Some(crate::common::api_runtime()));
    let stop = CancellationToken::new();
    let token = "t0ken";
    let addr = crate::common::serve_api(rt.runtime(), token, engine, store.clone(), &stop);

    // `commit`: the marker the engine writes when it stops must reach the
    // store (a sandboxed resolve, the default, keeps its writes).
    let body = br#"{"action": "resolve", "mode": "commit"}"#;
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    write!(
        client,
        "POST /api/automate/EVM/FAN/l0 HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    client.write_all(body).unwrap();
    client.flush().unwrap();
    assert!(
        wait_for("the engine to start", || COUNTED.load(Ordering::Relaxed)
            > 100),
        "the resolve never started instantiating"
    );
    assert!(!resolved(&store), "the resolve cannot have finished");
    // The client goes away without reading the answer.
    drop(client);
    assert!(
        wait_for("the engine to stop", || resolved(&store)),
        "the resolve kept running after its client went away ({} objects)",
        COUNTED.load(Ordering::Relaxed)
    );
    let at_stop = COUNTED.load(Ordering::Relaxed);
    assert!(at_stop < 100_000_000, "{at_stop}");

    // The server is still serving: a fresh resolve of a leaf answers.
    let mut again = std::net::TcpStream::connect(addr).unwrap();
    write!(
        again,
        "POST /api/automate/EVM/FAN/l30 HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    again.write_all(body).unwrap();
    let mut answer = String::new();
    again.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The cancelled run stopped: it instantiated nothing more meanwhile
    // (the leaf's resolve counted one object).
    assert_eq!(COUNTED.load(Ordering::Relaxed), at_stop + 1);
    stop.cancel();
}
