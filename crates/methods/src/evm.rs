//! The `evm` object Rhai methods see: ManageIQ's `$evm` service
//! (reference §8) over the [`Runtime`] of the instantiation that runs the
//! method.
//!
//! # The runtime bridge
//!
//! Rhai's native functions are registered once on the shared
//! `rhai::Engine` and must be `'static + Send + Sync`, so they cannot
//! capture the `&mut Runtime` of one call. Instead, [`RhaiRunner`] pushes a
//! `Frame` on a thread-local stack for the duration of each `eval` and
//! pops it afterwards (with a guard, so a panic pops it too). The frame holds
//! a raw pointer to the runtime, the object running the method, its inputs,
//! its embedded modules, its deadline and the instantiation's budget (the
//! progress hook, a global closure, can reach them only through the frame).
//! Every `evm` function reads the top frame; `evm` itself is a stateless
//! marker constant registered in a global module, so it is visible in the
//! main body, in script functions and in embedded modules alike.
//!
//! Why this is sound: the pointer is created from the `&mut Runtime` the
//! engine lends to `ScriptRunner::run`, and that reference is not used again
//! until `eval` has returned and the frame is popped. Rhai evaluates on the
//! calling thread, so only natives called from inside that `eval` can see the
//! frame; each turns the pointer back into a `&mut Runtime` for the length of
//! its own body only (`with_runtime`). A native that re-enters the engine
//! (`evm.instantiate`, `evm.raise_evm_event`) passes that same reborrow down,
//! and a nested Rhai method pushes its own frame on top, so two live
//! `&mut Runtime` never coexist. Handles given to scripts ([`AeObject`])
//! carry the id of the call that made them and are refused by any other call.
//!
//! [`RhaiRunner`]: super::rhai_runner::RhaiRunner

use super::events;
use automate_datastore::index::lower;
use automate_engine::{AttrValue, Attributes, Level, ObjectId, Runtime};
use automate_vmdb::{base_class, VmdbRef};
use rhai::{Dynamic, EvalAltResult, ImmutableString, Map, Position, AST};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

type SharedModule = Arc<rhai::Module>;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// The `evm` marker: every function on it reads the current `Frame`.
#[derive(Debug, Clone, Copy)]
pub struct Evm;

/// A workspace object (`evm.root`, `evm.object`, `evm.parent`, the result
/// of `evm.instantiate`): `obj["key"]` reads and writes its attributes.
#[derive(Debug, Clone)]
pub struct AeObject {
    call: u64,
    id: ObjectId,
}

/// An object of the object store (`evm.vmdb("vm", id)`, `evm.root["vm"]`):
/// `vm["name"]` / `vm.name` read it by the service model's rules
/// ([`super::service_model`]), `vm["x"] = v` writes one attribute.
#[derive(Debug, Clone)]
pub struct VmdbObject(pub VmdbRef);

/// A service-model class (`evm.vmdb("vm")`): `.find(id)`,
/// `.find_by(attr, value)`, and the queries of [`super::service_model`]
/// (`.where(...)`, `.all()`, `.order(...)`, `.limit(n)`, `.count()`).
#[derive(Debug, Clone)]
pub struct VmdbClass(pub String);

/// An embedded method available to `import` in one call.
#[derive(Clone)]
pub(crate) struct Embedded {
    pub fqname: String,
    pub ast: Arc<AST>,
}

/// What the natives of one running method need.
pub(crate) struct Frame {
    pub call: u64,
    /// `*mut Runtime<'_>`, valid while the frame is on the stack.
    pub rt: *mut (),
    pub obj: ObjectId,
    /// The method's inputs (an empty map costs no allocation).
    pub inputs: Attributes,
    /// `evm.inputs` as a Rhai map, built on first use.
    pub inputs_map: Option<Dynamic>,
    pub deadline: Option<Instant>,
    /// The budget of the instantiation running the method (its clock,
    /// memory and cancel flag are read with the method's own deadline).
    pub budget: automate_engine::Budget,
    /// This thread's net allocation when the call started
    /// ([`super::alloc::thread_net_bytes`]).
    pub mem_start: i64,
    /// Embedded methods by lower-cased import name.
    pub embedded: HashMap<String, Embedded>,
    /// Modules evaluated so far in this call, by fully-qualified name.
    pub loaded: HashMap<String, SharedModule>,
    /// Modules being evaluated (circular imports).
    pub loading: Vec<String>,
    /// What outbound actions may do ([`super::outbound`]).
    pub outbound: Arc<super::outbound::Outbound>,
}

thread_local! {
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Pops the frame it pushed when dropped.
pub(crate) struct FrameGuard(());

impl Drop for FrameGuard {
    fn drop(&mut self) {
        FRAMES.with(|f| {
            f.borrow_mut().pop();
        });
    }
}

/// Pushes `frame` for the length of the returned guard.
pub(crate) fn push_frame(frame: Frame) -> FrameGuard {
    FRAMES.with(|f| f.borrow_mut().push(frame));
    FrameGuard(())
}

/// Runs `f` on the top frame (short borrows only: never call into the
/// runtime or Rhai from `f`).
pub(crate) fn with_frame<R>(f: impl FnOnce(&mut Frame) -> R) -> Option<R> {
    FRAMES.with(|frames| frames.borrow_mut().last_mut().map(f))
}

fn no_frame() -> Box<EvalAltResult> {
    runtime_error("evm is only available while a method runs")
}

/// The marker a script is terminated with when its instantiation's budget
/// has run out: a termination, so `try`/`catch` cannot swallow it.
#[derive(Debug, Clone)]
pub(crate) struct BudgetUp;

pub(crate) fn budget_up() -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(
        Dynamic::from(BudgetUp),
        Position::NONE,
    ))
}

pub(crate) fn runtime_error(msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(msg.into()),
        Position::NONE,
    ))
}

/// Runs `f` with the runtime of the method being run, the object running it
/// and the call id.
pub(crate) fn with_runtime<R>(
    f: impl FnOnce(&mut Runtime<'_>, ObjectId, u64) -> R,
) -> RhaiResult<R> {
    let (ptr, obj, call) = with_frame(|fr| (fr.rt, fr.obj, fr.call)).ok_or_else(no_frame)?;
    // SAFETY: see the module documentation. `ptr` was made from the
    // `&mut Runtime` lent to `RhaiRunner::run`, which does not touch it until
    // this frame is popped; the borrow made here ends with `f`.
    let rt = unsafe { &mut *(ptr as *mut Runtime<'_>) };
    Ok(f(rt, obj, call))
}

/// The runtime, checking that `h` belongs to the running call.
fn with_object<R>(h: &AeObject, f: impl FnOnce(&mut Runtime<'_>, ObjectId) -> R) -> RhaiResult<R> {
    with_runtime(|rt, _, call| {
        if call != h.call || h.id >= rt.ws.objects.len() {
            Err(runtime_error(
                "this object belongs to another method call and cannot be used here",
            ))
        } else {
            Ok(f(rt, h.id))
        }
    })?
}

// ---------------------------------------------------------------- values

/// An attribute value as a Rhai value: nil is `()`, a password reads as
/// `********`, a stored object becomes a [`VmdbObject`].
pub fn to_dynamic(v: &AttrValue) -> Dynamic {
    match v {
        AttrValue::Nil => Dynamic::UNIT,
        AttrValue::Str(s) | AttrValue::Symbol(s) => Dynamic::from(s.clone()),
        AttrValue::Int(i) => Dynamic::from(*i),
        AttrValue::Float(f) => Dynamic::from(*f),
        AttrValue::Bool(b) => Dynamic::from(*b),
        AttrValue::Password(_) => Dynamic::from("********".to_string()),
        AttrValue::Object(r) => Dynamic::from(VmdbObject(r.clone())),
        AttrValue::Array(items) => {
            Dynamic::from_array(items.iter().map(to_dynamic).collect::<rhai::Array>())
        }
        AttrValue::Hash(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                m.insert(k.to_text().into(), to_dynamic(v));
            }
            Dynamic::from_map(m)
        }
    }
}

/// A Rhai value as an attribute value.
pub fn from_dynamic(d: Dynamic) -> AttrValue {
    if d.is_unit() {
        return AttrValue::Nil;
    }
    if d.is_string() {
        return AttrValue::Str(d.into_string().unwrap_or_default());
    }
    if d.is_int() {
        return AttrValue::Int(d.as_int().unwrap_or_default());
    }
    if d.is_float() {
        return AttrValue::Float(d.as_float().unwrap_or_default());
    }
    if d.is_bool() {
        return AttrValue::Bool(d.as_bool().unwrap_or_default());
    }
    if d.is_char() {
        return AttrValue::Str(d.as_char().unwrap_or_default().to_string());
    }
    if d.is_array() {
        let arr = d.into_array().unwrap_or_default();
        return AttrValue::Array(arr.into_iter().map(from_dynamic).collect());
    }
    if d.is_map() {
        let map = d.cast::<Map>();
        return AttrValue::Hash(
            map.into_iter()
                .map(|(k, v)| (AttrValue::Str(k.to_string()), from_dynamic(v)))
                .collect(),
        );
    }
    if d.is::<VmdbObject>() {
        return AttrValue::Object(d.cast::<VmdbObject>().0);
    }
    if d.is::<super::service_model::VmdbQuery>() {
        // A query stored in an attribute is its objects (ActiveRecord's
        // relation assigned to `$evm.root[...]`).
        return super::service_model::query_value(&d.cast::<super::service_model::VmdbQuery>());
    }
    AttrValue::Str(d.to_string())
}

fn level_of(level: &str) -> Level {
    match level.trim_start_matches(':').to_ascii_lowercase().as_str() {
        "debug" | "trace" => Level::Debug,
        "warn" | "warning" => Level::Warn,
        "error" | "fatal" => Level::Error,
        _ => Level::Info,
    }
}

/// `<AEMethod name> msg`, as `$evm.log` writes it.
pub(crate) fn log_user(rt: &mut Runtime<'_>, level: Level, msg: &str) {
    let name = rt.current_method().unwrap_or("").to_string();
    rt.log(level, format!("<AEMethod {name}> {msg}"));
}

/// A service-model name as `evm.vmdb` accepts it (`vm`, `host`,
/// `ems_event`, `VmOrTemplate`, ...) → the class to look up.
pub fn service_model(name: &str) -> Option<String> {
    let lc = name.trim().to_ascii_lowercase();
    let mapped = match lc.as_str() {
        "vm" | "vm_or_template" | "vmortemplate" => "VmOrTemplate",
        "ems" | "ext_management_system" => "ExtManagementSystem",
        "host" => "Host",
        "event_stream" => "EventStream",
        "ems_event" => "EmsEvent",
        "miq_event" => "MiqEvent",
        "request_event" => "RequestEvent",
        "miq_server" | "server" => "MiqServer",
        "user" => "User",
        "miq_group" => "MiqGroup",
        "miq_request" | "request" => "MiqRequest",
        "automation_request" => "AutomationRequest",
        "automation_task" => "AutomationTask",
        "miq_provision_request" => "MiqProvisionRequest",
        "miq_provision" => "MiqProvision",
        "miq_request_task" => "MiqRequestTask",
        "miq_policy" | "policy" => "MiqPolicy",
        "miq_alert" => "MiqAlert",
        "ems_cluster" => "EmsCluster",
        "storage" => "Storage",
        "tenant" => "Tenant",
        "service_resource" => "ServiceResource",
        _ => name.trim(),
    };
    base_class(mapped).map(|_| mapped.to_string())
}

fn id_of(d: &Dynamic) -> Option<i64> {
    if let Ok(i) = d.as_int() {
        return Some(i);
    }
    if d.is_string() {
        return d.clone().into_string().ok()?.trim().parse().ok();
    }
    None
}

fn vmdb_find(model: &str, id: i64) -> RhaiResult<Dynamic> {
    let class = service_model(model)
        .ok_or_else(|| runtime_error(format!("unknown vmdb model [{model}]")))?;
    with_runtime(|rt, _, _| rt.engine().store().find(&class, id))?
        .map(|r| r.map_or(Dynamic::UNIT, |r| Dynamic::from(VmdbObject(r))))
        .map_err(|e| runtime_error(e.to_string()))
}

fn vmdb_where(model: &str, attr: &str, value: Dynamic) -> RhaiResult<rhai::Array> {
    let class = service_model(model)
        .ok_or_else(|| runtime_error(format!("unknown vmdb model [{model}]")))?;
    let value = from_dynamic(value);
    // Ids and numbers are stored as integers or as text: try both.
    let mut alternatives = vec![value.clone()];
    match &value {
        AttrValue::Int(i) => alternatives.push(AttrValue::Str(i.to_string())),
        AttrValue::Str(s) => {
            if let Ok(i) = s.trim().parse::<i64>() {
                alternatives.push(AttrValue::Int(i));
            }
        }
        _ => {}
    }
    with_runtime(|rt, _, _| {
        let store = rt.engine().store();
        let mut found: Vec<VmdbRef> = Vec::new();
        for v in &alternatives {
            for r in store.find_by(&class, attr, v)? {
                if !found.contains(&r) {
                    found.push(r);
                }
            }
        }
        found.sort_by_key(|r| r.id);
        Ok(found
            .into_iter()
            .map(|r| Dynamic::from(VmdbObject(r)))
            .collect())
    })?
    .map_err(|e: automate_vmdb::StoreError| runtime_error(e.to_string()))
}

fn object_handle(call: u64, id: Option<ObjectId>) -> Dynamic {
    match id {
        Some(id) => Dynamic::from(AeObject { call, id }),
        None => Dynamic::UNIT,
    }
}

fn current_info(which: &str) -> RhaiResult<Dynamic> {
    with_runtime(|rt, obj, _| {
        let o = &rt.ws.objects[obj];
        let s = match which {
            "namespace" => o.namespace.clone(),
            "class" => o.class.clone(),
            "instance" => o.instance.clone(),
            "message" => rt.current_message().to_string(),
            _ => rt.current_method().unwrap_or("").to_string(),
        };
        Dynamic::from(s)
    })
}

fn state_var_key(k: &Dynamic) -> String {
    if k.is_string() {
        k.clone().into_string().unwrap_or_default()
    } else {
        k.to_string()
    }
}

/// Registers the `evm` API on `engine` (types, natives, the global `evm`
/// and `MIQ_*` constants).
pub(crate) fn register(engine: &mut rhai::Engine) {
    engine.register_type_with_name::<Evm>("Evm");
    engine.register_type_with_name::<AeObject>("AeObject");
    engine.register_type_with_name::<VmdbObject>("VmdbObject");
    engine.register_type_with_name::<VmdbClass>("VmdbClass");

    let mut globals = rhai::Module::new();
    globals.set_var("evm", Evm);
    globals.set_var("MIQ_OK", 0_i64);
    globals.set_var("MIQ_WARN", 4_i64);
    globals.set_var("MIQ_STOP", 8_i64);
    globals.set_var("MIQ_ERROR", 8_i64);
    globals.set_var("MIQ_ABORT", 16_i64);
    engine.register_global_module(globals.into());

    // --- workspace objects
    engine.register_get("root", |_: &mut Evm| -> RhaiResult<Dynamic> {
        with_runtime(|rt, obj, call| object_handle(call, Some(rt.root_of(obj))))
    });
    for name in ["object", "current", "current_object"] {
        engine.register_get(name, |_: &mut Evm| -> RhaiResult<Dynamic> {
            with_runtime(|_, obj, call| object_handle(call, Some(obj)))
        });
    }
    engine.register_fn("current_object", |_: &mut Evm| -> RhaiResult<Dynamic> {
        with_runtime(|_, obj, call| object_handle(call, Some(obj)))
    });
    // `evm.root["k"] = v` writes through the handle; Rhai then offers the
    // handle back to a setter, which has nothing to do (registering it keeps
    // Rhai off its slower error-and-fallback path).
    for name in ["root", "object", "current", "current_object", "parent"] {
        engine.register_set(name, |_: &mut Evm, _: AeObject| {});
    }
    engine.register_get("parent", |_: &mut Evm| -> RhaiResult<Dynamic> {
        with_runtime(|rt, obj, call| object_handle(call, rt.ws.objects[obj].parent))
    });
    engine.register_fn(
        "object",
        |_: &mut Evm, path: ImmutableString| -> RhaiResult<Dynamic> {
            with_runtime(|rt, _, call| match rt.object_at_path(&path) {
                Ok(id) => Ok(object_handle(call, id)),
                Err(e) => Err(runtime_error(e.to_string())),
            })?
        },
    );
    engine.register_get("inputs", |_: &mut Evm| -> RhaiResult<Dynamic> {
        with_frame(|f| {
            f.inputs_map
                .get_or_insert_with(|| {
                    let mut m = Map::new();
                    for (k, v) in &f.inputs {
                        m.insert(k.as_str().into(), to_dynamic(v));
                    }
                    Dynamic::from_map(m)
                })
                .clone()
        })
        .ok_or_else(no_frame)
    });
    for (name, which) in [
        ("current_namespace", "namespace"),
        ("current_class", "class"),
        ("current_instance", "instance"),
        ("current_message", "message"),
        ("current_method", "method"),
    ] {
        let which: &'static str = which;
        engine.register_get(name, move |_: &mut Evm| current_info(which));
        engine.register_fn(name, move |_: &mut Evm| current_info(which));
    }

    // --- log
    engine.register_fn(
        "log",
        |_: &mut Evm, level: ImmutableString, msg: Dynamic| -> RhaiResult<()> {
            let text = if msg.is_string() {
                msg.into_string().unwrap_or_default()
            } else {
                msg.to_string()
            };
            with_runtime(|rt, _, _| log_user(rt, level_of(&level), &text))
        },
    );

    // --- state vars
    engine.register_fn(
        "set_state_var",
        |_: &mut Evm, k: Dynamic, v: Dynamic| -> RhaiResult<()> {
            let key = state_var_key(&k);
            with_runtime(|rt, _, _| {
                rt.ws.state_vars.insert(key, from_dynamic(v));
            })
        },
    );
    engine.register_fn(
        "get_state_var",
        |_: &mut Evm, k: Dynamic| -> RhaiResult<Dynamic> {
            let key = state_var_key(&k);
            with_runtime(|rt, _, _| {
                rt.ws
                    .state_vars
                    .get(&key)
                    .map(to_dynamic)
                    .unwrap_or(Dynamic::UNIT)
            })
        },
    );
    engine.register_fn(
        "state_var_exist",
        |_: &mut Evm, k: Dynamic| -> RhaiResult<bool> {
            let key = state_var_key(&k);
            with_runtime(|rt, _, _| rt.ws.state_vars.contains_key(&key))
        },
    );
    engine.register_fn(
        "delete_state_var",
        |_: &mut Evm, k: Dynamic| -> RhaiResult<Dynamic> {
            let key = state_var_key(&k);
            with_runtime(|rt, _, _| {
                rt.ws
                    .state_vars
                    .shift_remove(&key)
                    .map(|v| to_dynamic(&v))
                    .unwrap_or(Dynamic::UNIT)
            })
        },
    );
    engine.register_fn("get_state_vars", |_: &mut Evm| -> RhaiResult<Map> {
        with_runtime(|rt, _, _| {
            rt.ws
                .state_vars
                .iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect()
        })
    });

    // --- instantiate
    engine.register_fn(
        "instantiate",
        |_: &mut Evm, uri: ImmutableString| -> RhaiResult<Dynamic> {
            with_runtime(|rt, obj, call| match rt.instantiate(&uri, Some(obj)) {
                Ok(id) => Ok(object_handle(call, id)),
                Err(e) => {
                    rt.log(Level::Error, format!("instantiate failed : {e}"));
                    match e {
                        automate_engine::EngineError::Budget(_) => Err(budget_up()),
                        _ => Ok(Dynamic::UNIT),
                    }
                }
            })?
        },
    );

    // --- vmdb
    engine.register_fn(
        "vmdb",
        |_: &mut Evm, model: ImmutableString, id: Dynamic| -> RhaiResult<Dynamic> {
            match id_of(&id) {
                Some(id) => vmdb_find(&model, id),
                None => Ok(Dynamic::UNIT),
            }
        },
    );
    engine.register_fn(
        "vmdb",
        |_: &mut Evm, model: ImmutableString| -> RhaiResult<VmdbClass> {
            service_model(&model)
                .map(VmdbClass)
                .ok_or_else(|| runtime_error(format!("unknown vmdb model [{model}]")))
        },
    );
    engine.register_fn(
        "vmdb_where",
        |_: &mut Evm, model: ImmutableString, attr: ImmutableString, value: Dynamic| {
            vmdb_where(&model, &attr, value)
        },
    );
    engine.register_fn(
        "find",
        |c: &mut VmdbClass, id: Dynamic| -> RhaiResult<Dynamic> {
            match id_of(&id) {
                Some(id) => vmdb_find(&c.0, id),
                None => Ok(Dynamic::UNIT),
            }
        },
    );
    engine.register_fn(
        "find_by",
        |c: &mut VmdbClass, attr: ImmutableString, value: Dynamic| -> RhaiResult<Dynamic> {
            Ok(vmdb_where(&c.0, &attr, value)?
                .into_iter()
                .next()
                .unwrap_or(Dynamic::UNIT))
        },
    );
    engine.register_fn("to_string", |c: &mut VmdbClass| c.0.clone());

    // --- events
    engine.register_fn(
        "raise_evm_event",
        |_: &mut Evm, name: ImmutableString, target: Dynamic, inputs: Map| {
            raise_from_script(&name, target, inputs)
        },
    );
    engine.register_fn(
        "raise_evm_event",
        |_: &mut Evm, name: ImmutableString, target: Dynamic| {
            raise_from_script(&name, target, Map::new())
        },
    );

    register_ae_object(engine);
    register_vmdb_object(engine);
    super::execute::register(engine);
    super::tags::register(engine);
    super::operations::register(engine);
    super::service_model::register(engine);
    super::services::register(engine);
    super::outbound::register(engine);
}

fn raise_from_script(name: &str, target: Dynamic, inputs: Map) -> RhaiResult<Dynamic> {
    let target = if target.is::<VmdbObject>() {
        target.cast::<VmdbObject>().0
    } else {
        return Err(runtime_error(format!(
            "raise_evm_event: the target must be a vmdb object (evm.vmdb(...) or evm.root[\"vm\"]), not {}",
            target.type_name()
        )));
    };
    let extra: Vec<(String, String)> = inputs
        .into_iter()
        .map(|(k, v)| (k.to_string(), from_dynamic(v).to_text()))
        .collect();
    with_runtime(|rt, obj, _| {
        let source = match events::event_stream_of(rt, obj) {
            Ok(source) => source,
            Err(e) => return Err(runtime_error(e.to_string())),
        };
        match events::raise_evm_event(rt, &target, name, &extra, source.as_ref()) {
            Ok(Some(r)) => Ok(Dynamic::from(r.id)),
            Ok(None) => Ok(Dynamic::UNIT),
            Err(automate_engine::EngineError::Budget(_)) => Err(budget_up()),
            Err(e) => Err(runtime_error(e.to_string())),
        }
    })?
}

fn register_ae_object(engine: &mut rhai::Engine) {
    engine.register_indexer_get(
        |h: &mut AeObject, key: ImmutableString| -> RhaiResult<Dynamic> {
            with_object(h, |rt, id| {
                rt.ws.objects[id]
                    .attributes
                    .get(&*lower(&key))
                    .map(to_dynamic)
                    .unwrap_or(Dynamic::UNIT)
            })
        },
    );
    engine.register_indexer_set(
        |h: &mut AeObject, key: ImmutableString, value: Dynamic| -> RhaiResult<()> {
            let v = from_dynamic(value);
            with_object(h, |rt, id| {
                rt.ws.objects[id]
                    .attributes
                    .insert(lower(&key).into_owned(), v);
            })
        },
    );
    engine.register_fn(
        "contains",
        |h: &mut AeObject, key: ImmutableString| -> RhaiResult<bool> {
            with_object(h, |rt, id| rt.attr(id, &key).is_some())
        },
    );
    engine.register_fn(
        "decrypt",
        |h: &mut AeObject, key: ImmutableString| -> RhaiResult<Dynamic> {
            with_object(h, |rt, id| match rt.attr(id, &key) {
                Some(AttrValue::Password(p)) => Dynamic::from(p.clone()),
                Some(v) => to_dynamic(v),
                None => Dynamic::UNIT,
            })
        },
    );
    // `encrypted?(k)`: the attribute is a password.
    engine.register_fn(
        "encrypted",
        |h: &mut AeObject, key: ImmutableString| -> RhaiResult<bool> {
            with_object(h, |rt, id| {
                matches!(rt.attr(id, &key), Some(AttrValue::Password(_)))
            })
        },
    );
    // `encrypted_string(k)`: a password's `v2:{...}` under the region's key
    // (nil for any other attribute).
    engine.register_fn(
        "encrypted_string",
        |h: &mut AeObject, key: ImmutableString| -> RhaiResult<Dynamic> {
            with_object(h, |rt, id| match rt.attr(id, &key) {
                Some(AttrValue::Password(p)) => match rt.engine().password_key() {
                    Some(k) => Ok(Dynamic::from(k.encrypt(p))),
                    None => Err(format!(
                        "encrypted_string(\"{key}\"): {}",
                        automate_password::PasswordError::NoKey
                    )
                    .into()),
                },
                _ => Ok(Dynamic::UNIT),
            })?
        },
    );
    engine.register_get("attributes", |h: &mut AeObject| -> RhaiResult<Map> {
        with_object(h, |rt, id| {
            rt.ws.objects[id]
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect()
        })
    });
    engine.register_fn("keys", |h: &mut AeObject| -> RhaiResult<rhai::Array> {
        with_object(h, |rt, id| {
            rt.ws.objects[id]
                .attributes
                .keys()
                .map(|k| Dynamic::from(k.clone()))
                .collect()
        })
    });
    for (prop, which) in [
        ("name", 0u8),
        ("object_name", 0),
        ("namespace", 1),
        ("class_name", 2),
        ("instance_name", 3),
    ] {
        engine.register_get(prop, move |h: &mut AeObject| -> RhaiResult<String> {
            with_object(h, |rt, id| {
                let o = &rt.ws.objects[id];
                match which {
                    0 => o.object_name.clone(),
                    1 => o.namespace.clone(),
                    2 => o.class.clone(),
                    _ => o.instance.clone(),
                }
            })
        });
    }
    engine.register_get("parent", |h: &mut AeObject| -> RhaiResult<Dynamic> {
        let call = h.call;
        with_object(h, |rt, id| object_handle(call, rt.ws.objects[id].parent))
    });
    engine.register_fn("children", |h: &mut AeObject| -> RhaiResult<rhai::Array> {
        let call = h.call;
        with_object(h, |rt, id| {
            rt.ws
                .children(id)
                .into_iter()
                .map(|c| object_handle(call, Some(c)))
                .collect()
        })
    });
    engine.register_fn("to_string", |h: &mut AeObject| -> String {
        with_object(h, |rt, id| rt.ws.objects[id].object_name.clone())
            .unwrap_or_else(|_| "#<AeObject>".to_string())
    });
    engine.register_fn("to_debug", |h: &mut AeObject| -> String {
        with_object(h, |rt, id| {
            format!("#<AeObject {}>", rt.ws.objects[id].object_name)
        })
        .unwrap_or_else(|_| "#<AeObject>".to_string())
    });
}

fn register_vmdb_object(engine: &mut rhai::Engine) {
    engine.register_indexer_set(
        |o: &mut VmdbObject, key: ImmutableString, value: Dynamic| -> RhaiResult<()> {
            let v = from_dynamic(value);
            with_runtime(|rt, _, _| rt.engine().store().update(&o.0, &key, v))?
                .map_err(|e| runtime_error(e.to_string()))
        },
    );
    engine.register_get("id", |o: &mut VmdbObject| o.0.id);
    engine.register_get("class_name", |o: &mut VmdbObject| o.0.class.to_string());
    engine.register_fn("to_string", |o: &mut VmdbObject| {
        AttrValue::Object(o.0.clone()).inspect()
    });
    engine.register_fn("to_debug", |o: &mut VmdbObject| {
        AttrValue::Object(o.0.clone()).inspect()
    });
    engine.register_fn("==", |a: VmdbObject, b: VmdbObject| a.0 == b.0);
    engine.register_fn("!=", |a: VmdbObject, b: VmdbObject| a.0 != b.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let r = VmdbRef {
            class: Arc::from("Vm"),
            id: 7,
        };
        for v in [
            AttrValue::Nil,
            AttrValue::str("x"),
            AttrValue::Int(3),
            AttrValue::Float(1.5),
            AttrValue::Bool(true),
            AttrValue::Array(vec![AttrValue::Int(1), AttrValue::str("a")]),
            AttrValue::Hash(vec![(AttrValue::str("k"), AttrValue::Int(1))]),
            AttrValue::Object(r.clone()),
        ] {
            assert_eq!(from_dynamic(to_dynamic(&v)), v);
        }
        assert_eq!(
            from_dynamic(to_dynamic(&AttrValue::Password("secret".into()))),
            AttrValue::str("********")
        );
        assert_eq!(
            from_dynamic(to_dynamic(&AttrValue::Symbol("s".into()))),
            AttrValue::str("s")
        );
    }

    #[test]
    fn models_and_levels() {
        assert_eq!(service_model("vm").as_deref(), Some("VmOrTemplate"));
        assert_eq!(service_model("ems_event").as_deref(), Some("EmsEvent"));
        assert_eq!(service_model("Host").as_deref(), Some("Host"));
        assert_eq!(service_model("bogus"), None);
        assert_eq!(level_of(":warn"), Level::Warn);
        assert_eq!(level_of("ERROR"), Level::Error);
        assert_eq!(level_of("whatever"), Level::Info);
    }

    #[test]
    fn evm_outside_a_call_is_an_error() {
        assert!(with_runtime(|_, _, _| ()).is_err());
    }
}
