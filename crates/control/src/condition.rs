//! Policy and alert conditions: Rhai scripts compiled once at load and run
//! on the sandboxed engines of a [`ConditionEngine`] (operation, depth, size
//! and time limits, no `eval`, no modules).
//!
//! The script sees `target` and `event` (the stored objects: `target.name`
//! reads the attribute `name` from the store; an object-valued attribute
//! such as `target.host` is again such an object; a missing attribute is
//! `()`; either is `()` when there is no such object) and `event_type` (a
//! string). Its last value must be a boolean.

use automate_engine::AttrValue;
use automate_vmdb::{ObjectStore, VmdbRef};
use rhai::{Dynamic, ImmutableString, Scope, AST};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The sandbox of conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionLimits {
    /// Rhai operations per evaluation.
    pub max_operations: u64,
    /// Nested script function calls.
    pub max_call_levels: usize,
    /// Expression nesting at the top level.
    pub max_expr_depth: usize,
    /// Expression nesting inside script functions.
    pub max_function_expr_depth: usize,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Elements in one array.
    pub max_array_size: usize,
    /// Entries in one object map.
    pub max_map_size: usize,
    /// Wall-clock time per evaluation.
    pub timeout: Duration,
}

/// The limits every condition runs under: a condition is a test, not a
/// method, so they are far below a method's.
pub const LIMITS: ConditionLimits = ConditionLimits {
    max_operations: 100_000,
    max_call_levels: 16,
    max_expr_depth: 64,
    max_function_expr_depth: 32,
    max_string_size: 64 << 10,
    max_array_size: 10_000,
    max_map_size: 10_000,
    timeout: Duration::from_secs(1),
};

/// A stored object as a condition sees it.
#[derive(Clone)]
struct ObjHandle {
    store: Arc<dyn ObjectStore>,
    obj: VmdbRef,
}

impl ObjHandle {
    /// Attribute `name` of the object; a failed object-store read fails
    /// the condition with the store's message (it is not read as `()`).
    fn get(&mut self, name: ImmutableString) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        let value = self
            .store
            .attribute(&self.obj, name.as_str())
            .map_err(|e| Box::new(rhai::EvalAltResult::from(e.to_string())))?;
        Ok(match value {
            Some(v) => to_dynamic(&self.store, &v),
            None if name == "id" => Dynamic::from(self.obj.id),
            None if name == "class" => Dynamic::from(self.obj.class.to_string()),
            None => Dynamic::UNIT,
        })
    }
}

fn to_dynamic(store: &Arc<dyn ObjectStore>, v: &AttrValue) -> Dynamic {
    match v {
        AttrValue::Nil => Dynamic::UNIT,
        AttrValue::Str(s) | AttrValue::Symbol(s) => Dynamic::from(s.clone()),
        AttrValue::Int(i) => Dynamic::from(*i),
        AttrValue::Float(f) => Dynamic::from(*f),
        AttrValue::Bool(b) => Dynamic::from(*b),
        AttrValue::Password(_) => Dynamic::from("********".to_string()),
        AttrValue::Object(r) => Dynamic::from(ObjHandle {
            store: store.clone(),
            obj: r.clone(),
        }),
        AttrValue::Array(items) => Dynamic::from_array(
            items
                .iter()
                .map(|i| to_dynamic(store, i))
                .collect::<rhai::Array>(),
        ),
        AttrValue::Hash(pairs) => {
            let mut m = rhai::Map::new();
            for (k, v) in pairs {
                m.insert(k.to_text().into(), to_dynamic(store, v));
            }
            Dynamic::from_map(m)
        }
    }
}

/// The marker the progress callback stops a condition with.
#[derive(Debug, Clone)]
struct TimeUp;

/// No deadline set on a [`Slot`].
const NO_DEADLINE: u64 = u64::MAX;

/// One sandboxed engine and the deadline of the evaluation running on it.
/// Rhai's progress hook gets no per-call context, so each engine's hook
/// reads its own slot's deadline: one evaluation at a time per slot.
struct Slot {
    engine: rhai::Engine,
    /// Nanoseconds after the owner's `epoch`, or [`NO_DEADLINE`].
    deadline: Arc<AtomicU64>,
}

/// The engines conditions compile and run on, owned by whoever owns the
/// conditions ([`super::Control`], or a [`super::load`] of its own): one
/// per evaluation running at once, made when first needed and reused.
pub struct ConditionEngine {
    /// The time deadlines are counted from.
    epoch: Instant,
    idle: Mutex<Vec<Slot>>,
}

impl std::fmt::Debug for ConditionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionEngine").finish_non_exhaustive()
    }
}

impl Default for ConditionEngine {
    fn default() -> Self {
        ConditionEngine::new()
    }
}

impl ConditionEngine {
    /// No engine made yet.
    pub fn new() -> ConditionEngine {
        ConditionEngine {
            epoch: Instant::now(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn slot(&self) -> Slot {
        let l = &LIMITS;
        let deadline = Arc::new(AtomicU64::new(NO_DEADLINE));
        let (epoch, seen) = (self.epoch, deadline.clone());
        let mut e = rhai::Engine::new();
        e.set_max_operations(l.max_operations);
        e.set_max_call_levels(l.max_call_levels);
        e.set_max_expr_depths(l.max_expr_depth, l.max_function_expr_depth);
        e.set_max_string_size(l.max_string_size);
        e.set_max_array_size(l.max_array_size);
        e.set_max_map_size(l.max_map_size);
        e.set_max_modules(0);
        e.disable_symbol("eval");
        e.on_print(|_| {});
        e.on_debug(|_, _, _| {});
        e.on_progress(move |ops| {
            if ops % 256 != 0 {
                return None;
            }
            let deadline = seen.load(Ordering::Relaxed);
            if deadline == NO_DEADLINE {
                return None;
            }
            (epoch.elapsed().as_nanos() >= u128::from(deadline)).then(|| Dynamic::from(TimeUp))
        });
        e.register_type_with_name::<ObjHandle>("VmdbObject");
        e.register_indexer_get(ObjHandle::get);
        e.register_fn("to_string", |o: &mut ObjHandle| {
            format!("{}::{}", o.obj.class, o.obj.id)
        });
        Slot {
            engine: e,
            deadline,
        }
    }

    /// Runs `f` on an idle slot (made if none is idle), then returns it.
    fn with_slot<R>(&self, f: impl FnOnce(&Slot) -> R) -> R {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let slot = idle.unwrap_or_else(|| self.slot());
        let result = f(&slot);
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
        result
    }

    /// Compiles `source`; the error gives Rhai's message and its 1-based
    /// line within `source` (0 when unknown).
    pub fn compile(self: &Arc<Self>, source: &str) -> Result<Condition, (usize, String)> {
        match self.with_slot(|s| s.engine.compile(source)) {
            Ok(ast) => Ok(Condition {
                source: source.to_string(),
                ast: Arc::new(ast),
                engine: self.clone(),
            }),
            Err(e) => {
                let line = e.1.line().unwrap_or(0);
                Err((line, e.0.to_string()))
            }
        }
    }
}

/// A compiled condition.
#[derive(Clone)]
pub struct Condition {
    /// The Rhai text of `condition:` as the file has it.
    pub source: String,
    ast: Arc<AST>,
    /// The engines it was compiled for and runs on.
    engine: Arc<ConditionEngine>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Condition {
    /// Runs the condition for one event. An error (a runtime error, a
    /// limit, a non-boolean result) is described in the `Err`.
    pub fn evaluate(
        &self,
        store: &Arc<dyn ObjectStore>,
        event: Option<&VmdbRef>,
        target: Option<&VmdbRef>,
        event_type: &str,
    ) -> Result<bool, String> {
        let handle = |r: Option<&VmdbRef>| match r {
            Some(r) => Dynamic::from(ObjHandle {
                store: store.clone(),
                obj: r.clone(),
            }),
            None => Dynamic::UNIT,
        };
        let mut scope = Scope::new();
        scope.push_dynamic("target", handle(target));
        scope.push_dynamic("event", handle(event));
        scope.push("event_type", event_type.to_string());
        let result = self.engine.with_slot(|slot| {
            let deadline = (self.engine.epoch.elapsed() + LIMITS.timeout).as_nanos();
            let deadline = u64::try_from(deadline).unwrap_or(NO_DEADLINE - 1);
            slot.deadline.store(deadline, Ordering::Relaxed);
            let result = slot
                .engine
                .eval_ast_with_scope::<Dynamic>(&mut scope, &self.ast);
            slot.deadline.store(NO_DEADLINE, Ordering::Relaxed);
            result
        });
        match result {
            Ok(v) => v
                .as_bool()
                .map_err(|t| format!("the condition gave a {t}, not a boolean")),
            Err(e) => Err(describe(&e)),
        }
    }
}

fn describe(e: &rhai::EvalAltResult) -> String {
    match e {
        rhai::EvalAltResult::ErrorTooManyOperations(_) => format!(
            "the condition ran more than {} operations",
            LIMITS.max_operations
        ),
        rhai::EvalAltResult::ErrorTerminated(v, _) if v.is::<TimeUp>() => format!(
            "the condition ran longer than {} ms",
            LIMITS.timeout.as_millis()
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automate_vmdb::MemoryStore;

    #[test]
    fn reads_attributes_through_the_store() {
        let s = MemoryStore::new();
        let host = s
            .insert(
                "Host",
                2,
                [("name".to_string(), AttrValue::str("h1"))]
                    .into_iter()
                    .collect(),
            )
            .unwrap();
        let vm = s
            .insert(
                "VmOrTemplate",
                1,
                [
                    ("name".to_string(), AttrValue::str("prod-1")),
                    ("host".to_string(), AttrValue::Object(host)),
                ]
                .into_iter()
                .collect(),
            )
            .unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(s);
        let engine = Arc::new(ConditionEngine::new());
        let c = engine.compile(
            r#"target.name.starts_with("prod-") && target.host.name == "h1" && target.nope == () && event == () && event_type == "vm_start""#,
        )
        .unwrap();
        assert_eq!(c.evaluate(&store, None, Some(&vm), "vm_start"), Ok(true));
        let c = engine.compile("1 + 1").unwrap();
        assert!(c.evaluate(&store, None, Some(&vm), "x").is_err());
        let c = engine.compile("loop {}").unwrap();
        let err = c.evaluate(&store, None, Some(&vm), "x").unwrap_err();
        assert!(err.contains("operations"), "{err}");
        let (line, _) = engine.compile("true &&\n(").unwrap_err();
        assert_eq!(line, 2);
    }
}
