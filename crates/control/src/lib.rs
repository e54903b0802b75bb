//! Control policies and alerts (ManageIQ's `MiqPolicy` / `MiqAlert`, much
//! reduced): YAML files under the datastore root's `control/` directory.
//!
//! A [`Policy`] names the events it runs on, a Rhai condition over the
//! event's `target` and `event`, and the actions to run when the condition
//! holds (`actions`) or not (`else_actions`). An [`Alert`] names one event,
//! an optional condition and actions. `docs/control.md` describes the file
//! format and the log lines.
//!
//! [`Control`] is the engine's [`Policies`]: `methods::events::process_evm_event`
//! (run when a generic event is raised, or by the builtin
//! `event_enforce_policy` for an event not yet processed) calls its
//! `evaluate_policies` between `Event Raised [..]` and `Alert for Event
//! [..]`, and its `evaluate_alerts` after it. [`with_control`] composes an
//! engine with the methods and a `Control`. A `Control` loads the
//! [`ControlSet`] of a datastore root on first use and keeps it
//! ([`Control::control_for`]); it loads it again when the datastore is
//! reloaded (its index changes). It owns the engines its conditions run on
//! ([`ConditionEngine`]).

#![deny(missing_docs)]

mod condition;
mod load;
mod method_requests;
pub mod reload;
pub mod validate;

pub use condition::{Condition, ConditionEngine, ConditionLimits};
pub use load::{check, load, load_with};
pub use method_requests::{new_request, MethodRequests};
pub use reload::{with_control_reloadable, Reloader};

use automate_datastore::Datastore;
use automate_engine::{AttrValue, Engine, Level, Policies, Runtime, TraceLine};
use automate_methods::{events, RhaiLimits, RhaiRunner};
use automate_requests::with_requests;
use automate_vmdb::VmdbRef;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// Every policy and alert of one datastore root, in file (name) order.
#[derive(Debug, Clone, Default)]
pub struct ControlSet {
    /// The `policies:` of every file.
    pub policies: Vec<Policy>,
    /// The `alerts:` of every file.
    pub alerts: Vec<Alert>,
}

/// A control policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `name:`, required; the log lines name the policy by it.
    pub name: String,
    /// `description:`; empty when not given.
    pub description: String,
    /// The event types it runs on (`vm_poweroff`, `vm_start`, ...).
    pub events: Vec<String>,
    /// `None`: always true.
    pub condition: Option<Condition>,
    /// Run in order when the condition holds.
    pub actions: Vec<Action>,
    /// Run when the condition is false.
    pub else_actions: Vec<Action>,
    /// Where it was defined.
    pub file: PathBuf,
    /// The 1-based line of its `- ` item in `file`.
    pub line: usize,
}

/// A control alert.
#[derive(Debug, Clone)]
pub struct Alert {
    /// `name:`, required; the log lines name the alert by it.
    pub name: String,
    /// `description:`; empty when not given.
    pub description: String,
    /// The one event type it runs on (`vm_start`).
    pub event: String,
    /// `None`: always true.
    pub condition: Option<Condition>,
    /// Run in order when the condition holds (the alert fires).
    pub actions: Vec<Action>,
    /// Where it was defined.
    pub file: PathBuf,
    /// The 1-based line of its `- ` item in `file`.
    pub line: usize,
}

/// One action of a policy or an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `log: "<message>"`.
    Log(String),
    /// `raise_event: <generic event>`: raised for the target like
    /// `event_action_policy` does.
    RaiseEvent(String),
    /// `invoke: "<automate URI>"`: instantiated as a new root.
    Invoke(String),
    /// `vm_stop:`, `vm_start:`... (ManageIQ's `MiqAction` types): queues
    /// the provider operation (the method named here) for the target VM,
    /// as `MiqAction#action_vm_stop` does (`automate_vmdb::operation`).
    VmOperation(&'static str),
    /// `set_attribute: {name: x, value: y}` on the target in the store.
    SetAttribute {
        /// The attribute to set.
        name: String,
        /// A scalar; nil when `value` is not given.
        value: AttrValue,
    },
}

impl Action {
    fn kind(&self) -> &'static str {
        match self {
            Action::Log(_) => "log",
            Action::RaiseEvent(_) => "raise_event",
            Action::Invoke(_) => "invoke",
            Action::VmOperation(m) => VM_OPERATION_ACTIONS
                .iter()
                .find(|(_, op)| op == m)
                .map_or("vm_operation", |(k, _)| k),
            Action::SetAttribute { .. } => "set_attribute",
        }
    }
}

/// The VM actions (ManageIQ's `MiqAction` types) and the provider
/// operation each queues, with the words of its log line.
pub const VM_OPERATION_ACTIONS: [(&str, &str); 6] = [
    ("vm_start", "start"),
    ("vm_stop", "stop"),
    ("vm_suspend", "suspend"),
    ("vm_shutdown_guest", "shutdown_guest"),
    ("vm_reboot_guest", "reboot_guest"),
    ("vm_reset", "reset"),
];

/// A control file that could not be loaded: where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{line}: {field}: {message}", file.display())]
pub struct ControlError {
    /// The YAML file at fault.
    pub file: PathBuf,
    /// 1-based; 0 when unknown.
    pub line: usize,
    /// The field at fault, e.g. `policies[0].condition`.
    pub field: String,
    /// What is wrong (`is required`, `unknown field; allowed: ..`, a
    /// Rhai compile error).
    pub message: String,
}

/// The log prefix of policy lines.
pub const POLICY_PREFIX: &str = "MIQ(MiqPolicy.enforce_policy)";
/// The log prefix of alert lines.
pub const ALERT_PREFIX: &str = "MIQ(MiqAlert.evaluate_alerts)";

/// Most nested `invoke` actions (an invoke whose instantiation raises an
/// event whose policy invokes ...), carried in the nested runtime
/// ([`automate_engine::Nesting`]).
const MAX_INVOKE_DEPTH: usize = 8;

type Loaded = Result<Arc<ControlSet>, ControlError>;

struct CacheEntry {
    /// The datastore index the set was loaded with: a reload swaps it.
    index: Weak<automate_datastore::index::Index>,
    set: Loaded,
}

/// The control directory of a datastore root.
pub fn control_dir(root: &Path) -> PathBuf {
    root.join("control")
}

/// `engine` with the methods ([`automate_methods::with_methods`]: the event
/// builtins, a [`RhaiRunner`] with default limits), a new [`Control`] as
/// its policies and the requests' after-delivery hook ([`with_requests`]:
/// a delivery for an `AutomationTask` finishes it). The one composition of
/// the automation stack; returns the runner too.
pub fn with_control(engine: Engine) -> (Engine, Arc<RhaiRunner>) {
    automate_methods::with_methods(with_requests(engine), Arc::new(Control::new()))
}

/// [`with_control`] with explicit sandbox limits.
pub fn with_control_and_limits(engine: Engine, limits: RhaiLimits) -> (Engine, Arc<RhaiRunner>) {
    automate_methods::with_methods_and_limits(
        with_requests(engine),
        limits,
        Arc::new(Control::new()),
    )
}

/// `engine` with the event builtins, a new [`Control`] and the requests'
/// hook, and no script runner ([`automate_methods::with_event_builtins`]): what
/// `automate demo` runs with.
pub fn with_control_builtins(engine: Engine) -> Engine {
    automate_methods::with_event_builtins(with_requests(engine), Arc::new(Control::new()))
}

/// The control policies and alerts of an engine ([`Policies`]): the
/// [`ControlSet`] of each datastore root it has seen, kept until that
/// datastore reloads, and the engines conditions run on.
#[derive(Default)]
pub struct Control {
    conditions: Arc<ConditionEngine>,
    /// Per root, the sets of the indexes still in use (the current one
    /// and, during a reload, the one in-flight events started with).
    cache: Mutex<HashMap<PathBuf, Vec<CacheEntry>>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl Control {
    /// Nothing loaded yet.
    pub fn new() -> Control {
        Control::default()
    }

    /// The [`ControlSet`] of `ds`'s root: loaded once per datastore load
    /// (and again after [`Datastore::reload`]), then shared.
    pub fn control_for(&self, ds: &Datastore) -> Loaded {
        self.control_for_index(ds.root(), &ds.index())
    }

    /// The [`ControlSet`] loaded with `index` of the datastore at `root`
    /// (an instantiation asks with the index it started with, so it
    /// finishes on the policies of that index across a reload).
    pub fn control_for_index(&self, root: &Path, index: &Arc<automate_datastore::Index>) -> Loaded {
        let index = index.clone();
        let root = root.to_path_buf();
        let mut map = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entries) = map.get(&root) {
            if let Some(entry) = entries
                .iter()
                .find(|e| e.index.upgrade().is_some_and(|i| Arc::ptr_eq(&i, &index)))
            {
                return entry.set.clone();
            }
        }
        let set = load_with(&self.conditions, &control_dir(&root)).map(Arc::new);
        Self::remember(&mut map, root, &index, set.clone());
        set
    }

    /// Makes `set` the policies and alerts of `root` for `index` (a hot
    /// reload loads them before it swaps `index` in, [`Reloader`]).
    pub fn install(&self, root: &Path, index: &Arc<automate_datastore::Index>, set: ControlSet) {
        let mut map = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        Self::remember(&mut map, root.to_path_buf(), index, Ok(Arc::new(set)));
    }

    /// Adds the set of `index`, dropping those of indexes nobody holds.
    fn remember(
        map: &mut HashMap<PathBuf, Vec<CacheEntry>>,
        root: PathBuf,
        index: &Arc<automate_datastore::Index>,
        set: Loaded,
    ) {
        let entries = map.entry(root).or_default();
        entries.retain(|e| e.index.upgrade().is_some_and(|i| !Arc::ptr_eq(&i, index)));
        entries.push(CacheEntry {
            index: Arc::downgrade(index),
            set,
        });
    }

    /// The engine the conditions are compiled for and run on.
    pub fn conditions(&self) -> &Arc<ConditionEngine> {
        &self.conditions
    }

    fn control_of(&self, rt: &mut Runtime<'_>, prefix: &str) -> Option<Arc<ControlSet>> {
        let root = rt.engine().datastore().root().to_path_buf();
        match self.control_for_index(&root, rt.index()) {
            Ok(set) => Some(set),
            Err(e) => {
                rt.log(
                    Level::Error,
                    format!("{prefix} control policies and alerts not loaded: {e}"),
                );
                None
            }
        }
    }
}

impl Policies for Control {
    fn evaluate_policies(
        &self,
        rt: &mut Runtime<'_>,
        event: Option<&VmdbRef>,
        target: Option<&VmdbRef>,
        event_type: &str,
    ) {
        evaluate_policies(self, rt, event, target, event_type);
    }

    fn evaluate_alerts(
        &self,
        rt: &mut Runtime<'_>,
        event: Option<&VmdbRef>,
        target: Option<&VmdbRef>,
        event_type: &str,
    ) {
        evaluate_alerts(self, rt, event, target, event_type);
    }
}

/// `MiqPolicy.enforce_policy`: runs every policy naming `event_type`, in
/// file order. A condition error fails that policy (logged), never the
/// event.
fn evaluate_policies(
    control: &Control,
    rt: &mut Runtime<'_>,
    event: Option<&VmdbRef>,
    target: Option<&VmdbRef>,
    event_type: &str,
) {
    let Some(set) = control.control_of(rt, POLICY_PREFIX) else {
        return;
    };
    for p in set
        .policies
        .iter()
        .filter(|p| p.events.iter().any(|e| e == event_type))
    {
        let who = format!("{POLICY_PREFIX} Policy [{}]", p.name);
        let result = match &p.condition {
            None => Ok(true),
            Some(c) => c.evaluate(rt.engine().store(), event, target, event_type),
        };
        match result {
            Ok(true) => {
                rt.log(
                    Level::Info,
                    format!("{who} condition true for event [{event_type}]"),
                );
                run_actions(rt, &who, &p.actions, event, target);
            }
            Ok(false) => {
                rt.log(
                    Level::Info,
                    format!("{who} condition false for event [{event_type}]"),
                );
                run_actions(rt, &who, &p.else_actions, event, target);
            }
            Err(e) => rt.log(
                Level::Error,
                format!(
                    "{who} condition failed for event [{event_type}]: {e} ({}:{}); policy skipped",
                    p.file.display(),
                    p.line
                ),
            ),
        }
    }
}

/// `MiqAlert.evaluate_alerts`: runs every alert on `event_type` whose
/// condition holds.
fn evaluate_alerts(
    control: &Control,
    rt: &mut Runtime<'_>,
    event: Option<&VmdbRef>,
    target: Option<&VmdbRef>,
    event_type: &str,
) {
    let Some(set) = control.control_of(rt, ALERT_PREFIX) else {
        return;
    };
    for a in set.alerts.iter().filter(|a| a.event == event_type) {
        let who = format!("{ALERT_PREFIX} Alert [{}]", a.name);
        let result = match &a.condition {
            None => Ok(true),
            Some(c) => c.evaluate(rt.engine().store(), event, target, event_type),
        };
        match result {
            Ok(true) => {
                rt.log(Level::Info, format!("{who} fired for event [{event_type}]"));
                run_actions(rt, &who, &a.actions, event, target);
            }
            Ok(false) => rt.log(
                Level::Info,
                format!("{who} condition false for event [{event_type}]; not fired"),
            ),
            Err(e) => rt.log(
                Level::Error,
                format!(
                    "{who} condition failed for event [{event_type}]: {e} ({}:{}); alert skipped",
                    a.file.display(),
                    a.line
                ),
            ),
        }
    }
}

fn run_actions(
    rt: &mut Runtime<'_>,
    who: &str,
    actions: &[Action],
    event: Option<&VmdbRef>,
    target: Option<&VmdbRef>,
) {
    for action in actions {
        // The instantiation's budget ran out (an action before raised or
        // invoked too much): the remaining actions would only fail.
        if rt.budget().tripped().is_some() {
            return;
        }
        let head = format!("{who} action {}", action.kind());
        match action {
            Action::Log(msg) => rt.log(Level::Info, format!("{head}: {msg}")),
            Action::RaiseEvent(name) => {
                let Some(target) = target else {
                    rt.log(
                        Level::Warn,
                        format!("{head}: [{name}] not raised: the event has no target"),
                    );
                    continue;
                };
                rt.log(Level::Info, format!("{head}: [{name}]"));
                if let Err(e) = events::raise_evm_event(rt, target, name, &[], event) {
                    rt.log(Level::Error, format!("{head}: [{name}] failed: {e}"));
                }
            }
            Action::Invoke(uri) => invoke(rt, &head, uri),
            Action::VmOperation(method) => vm_operation(rt, &head, method, target),
            Action::SetAttribute { name, value } => {
                let Some(target) = target else {
                    rt.log(
                        Level::Warn,
                        format!("{head}: [{name}] not set: the event has no target"),
                    );
                    continue;
                };
                let store = rt.engine().store().clone();
                match store.update(target, name, value.clone()) {
                    Ok(()) => rt.log(
                        Level::Info,
                        format!(
                            "{head}: {} [{}] {name} = {}",
                            target.class,
                            target.id,
                            value.inspect()
                        ),
                    ),
                    Err(e) => rt.log(
                        Level::Error,
                        format!(
                            "{head}: {} [{}] {name} not set: {e}",
                            target.class, target.id
                        ),
                    ),
                }
            }
        }
    }
}

/// `MiqAction#action_vm_<op>`: queues the provider operation `method` for
/// the target VM (`automate_vmdb::operation::put`, in the event's unit of
/// work).
fn vm_operation(rt: &mut Runtime<'_>, head: &str, method: &str, target: Option<&VmdbRef>) {
    let Some(vm) = target.filter(|t| automate_vmdb::base_class(&t.class) == Some("VmOrTemplate"))
    else {
        rt.log(
            Level::Warn,
            format!("{head}: not queued: the event's target is not a VM"),
        );
        return;
    };
    let store = rt.engine().store().clone();
    let name = store
        .attribute(vm, "name")
        .ok()
        .flatten()
        .map(|v| v.to_text())
        .unwrap_or_default();
    let ems_id = match store.attribute(vm, "ems_id") {
        Ok(Some(AttrValue::Int(i))) => i,
        Ok(Some(AttrValue::Str(s))) if s.trim().parse::<i64>().is_ok() => {
            s.trim().parse().unwrap_or_default()
        }
        Ok(_) => {
            rt.log(
                Level::Error,
                format!("{head}: VM [{name}] has no provider (ems_id): [{method}] not queued"),
            );
            return;
        }
        Err(e) => {
            rt.log(Level::Error, format!("{head}: [{method}] not queued: {e}"));
            return;
        }
    };
    let words = method.replace('_', " ");
    rt.log(
        Level::Info,
        format!("{head}: Queueing VM {words} for VM [{name}]"),
    );
    let op = automate_vmdb::operation::NewOperation {
        class_name: vm.class.to_string(),
        instance_id: vm.id,
        ems_id,
        method_name: method.to_string(),
        args: Vec::new(),
    };
    if let Err(e) = automate_vmdb::operation::put(store.as_ref(), op) {
        rt.log(Level::Error, format!("{head}: [{method}] not queued: {e}"));
    }
}

/// Instantiates `uri` as a new root and appends its trace to the caller's.
fn invoke(rt: &mut Runtime<'_>, head: &str, uri: &str) {
    let mut nesting = rt.nesting();
    let depth = nesting.invoke;
    if depth >= MAX_INVOKE_DEPTH {
        rt.log(
            Level::Error,
            format!("{head}: [{uri}] not invoked: invokes nested {depth} levels deep (a loop?)"),
        );
        return;
    }
    rt.log(Level::Info, format!("{head}: [{uri}]"));
    let base = rt.ws.trace.last().map_or(0, |l| l.depth + 1);
    nesting.invoke = depth + 1;
    let (ws, err) = rt.deliver_nested(uri, None, nesting);
    rt.ws.trace.extend(ws.trace.into_iter().map(|l| TraceLine {
        depth: base + l.depth,
        ..l
    }));
    match err {
        None => rt.log(Level::Info, format!("{head}: [{uri}] completed")),
        Some(e) => rt.log(Level::Error, format!("{head}: [{uri}] failed: {e}")),
    }
}
