//! The Automate engine: instantiate a URI into a [`Workspace`].
//!
//! One [`Engine`] is shared by every caller (it holds the datastore, the
//! object store, the builtins, the script runner, the control
//! [`Policies`] and the hook run after each delivery,
//! [`deliver::AfterDelivery`]); each call to
//! [`Engine::instantiate`] builds a fresh [`Runtime`] that owns the workspace
//! being built, the stack of objects under construction and the trace. The
//! rules are ManageIQ's (reference §3–§7): domain search with `Updated
//! namespace`, `.missing`, assertions first, query args to attributes, fields
//! in schema order filtered by message, `${...}` substitution, relationships,
//! methods, collect and state machines.
//!
//! Submodules: [`datatype`] (value conversion), `substitute` (`${...}` and
//! workspace object paths), `collect` (collect expressions), `methods`
//! (method calls and inputs), `state_machine` (states, retries), [`budget`]
//! (what one instantiation may spend, shared with everything it triggers).

#![deny(missing_docs)]

pub mod budget;
mod collect;
pub mod datatype;
pub mod deliver;
mod error;
mod instantiate;
pub mod keys;
mod methods;
mod state_data;
mod state_machine;
mod substitute;
mod workspace;

pub use automate_core::value::{inspect_delivery_attrs, AttrValue, Attributes};
pub use budget::{Budget, BudgetExceeded, BudgetKind, BudgetLimits, Cancel, CancelOnDrop};
pub use error::EngineError;
pub use methods::{BuiltinFn, Builtins, MethodRc, Policies, ScriptRunner};
pub use workspace::{Level, Object, ObjectId, TraceLine, Workspace};

use automate_datastore::{Datastore, Index};
use automate_vmdb::{NoObjects, ObjectStore};
use std::sync::Arc;

/// Limits that keep one instantiation bounded.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The deepest relationship nesting allowed (SPEC §3: 64).
    pub max_depth: usize,
    /// Trace lines also go to `tracing` (target `automation`).
    pub emit_tracing: bool,
    /// What one top-level instantiation may spend, everything it triggers
    /// included ([`budget`]).
    pub budget: BudgetLimits,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_depth: 64,
            emit_tracing: true,
            budget: BudgetLimits::default(),
        }
    }
}

/// Everything an instantiation needs, shared between calls.
#[derive(Clone)]
pub struct Engine {
    datastore: Arc<Datastore>,
    store: Arc<dyn ObjectStore>,
    builtins: Arc<Builtins>,
    scripts: Option<Arc<dyn ScriptRunner>>,
    policies: Option<Arc<dyn Policies>>,
    after_delivery: Option<Arc<dyn deliver::AfterDelivery>>,
    assertions: Arc<rhai::Engine>,
    /// The region's v2 key `password` fields decrypt with
    /// ([`Engine::with_password_key`]; default the process's,
    /// [`automate_password::process_key`]).
    password_key: Option<Arc<automate_password::V2Key>>,
    /// Methods run (ManageIQ's "Execute Methods"; [`Engine::with_execute_methods`]).
    execute_methods: bool,
    /// The simulation's sandbox the store is ([`Engine::with_sandbox`]).
    sandbox: Option<Arc<automate_vmdb::sandbox::Sandbox>>,
    /// Depth limit, tracing and budget ([`Engine::with_options`]).
    pub options: EngineOptions,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("datastore", &self.datastore.root())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `datastore` with no stored objects, the standard
    /// builtins, no script runner and no after-delivery hook.
    pub fn new(datastore: Arc<Datastore>) -> Engine {
        Engine {
            datastore,
            store: Arc::new(NoObjects),
            builtins: Arc::new(Builtins::standard()),
            scripts: None,
            policies: None,
            after_delivery: None,
            assertions: Arc::new(assertion_engine()),
            password_key: automate_password::process_key(),
            execute_methods: true,
            sandbox: None,
            options: EngineOptions::default(),
        }
    }

    /// Decrypts `password` fields' `v2:{...}` values with `key` (`None`:
    /// such a value is an error naming the field).
    pub fn with_password_key(mut self, key: Option<Arc<automate_password::V2Key>>) -> Engine {
        self.password_key = key;
        self
    }

    /// Runs methods (`true`, the default) or only lists them: ManageIQ's
    /// Simulation with "Execute Methods" unchecked (a read-only
    /// workspace), `automate instantiate --no-methods`. A method not run
    /// logs `Workspace Instantiation is READONLY -- skipping method [..]
    /// with inputs [..]` and is listed in
    /// [`Workspace::skipped_methods`]; its state (or relationship) goes on
    /// as if it had returned nothing.
    pub fn with_execute_methods(mut self, execute: bool) -> Engine {
        self.execute_methods = execute;
        self
    }

    /// Runs in `sandbox`: it becomes the object store (reads see the
    /// store below it, writes stay in it), and outbound actions
    /// (`send_email`, `evm.http`, `create_automation_request`) are
    /// recorded in it instead of performed. Give [`deliver`] the sandbox as
    /// its schedule too, so retries stay in it.
    pub fn with_sandbox(mut self, sandbox: Arc<automate_vmdb::sandbox::Sandbox>) -> Engine {
        self.store = sandbox.clone();
        self.sandbox = Some(sandbox);
        self
    }

    /// The sandbox this engine simulates in, if any ([`Engine::with_sandbox`]).
    pub fn sandbox(&self) -> Option<&Arc<automate_vmdb::sandbox::Sandbox>> {
        self.sandbox.as_ref()
    }

    /// Whether methods run ([`Engine::with_execute_methods`]).
    pub fn executes_methods(&self) -> bool {
        self.execute_methods
    }

    /// The v2 key `password` fields decrypt with, if any.
    pub fn password_key(&self) -> Option<&Arc<automate_password::V2Key>> {
        self.password_key.as_ref()
    }

    /// Reads and writes stored objects (VMs, events, requests: what
    /// object-typed attributes and `evm.vmdb` name) in `store`.
    /// (Ends a [`Engine::with_sandbox`]: the new store is not sandboxed.)
    pub fn with_store(mut self, store: Arc<dyn ObjectStore>) -> Engine {
        self.store = store;
        self.sandbox = None;
        self
    }

    /// Reads and writes stored objects through `view`, a view over the
    /// current store (a recording wrapper), keeping the engine's sandbox:
    /// outbound actions are still recorded in it, not performed.
    pub fn with_store_view(mut self, view: Arc<dyn ObjectStore>) -> Engine {
        self.store = view;
        self
    }

    /// Replaces the builtins (location `builtin` methods) with `builtins`.
    pub fn with_builtins(mut self, builtins: Builtins) -> Engine {
        self.builtins = Arc::new(builtins);
        self
    }

    /// Runs inline `rhai` methods with `scripts`; without one they fail
    /// with [`EngineError::InvalidMethod`].
    pub fn with_scripts(mut self, scripts: Arc<dyn ScriptRunner>) -> Engine {
        self.scripts = Some(scripts);
        self
    }

    /// Installs the control policies raised events run (`control`'s;
    /// `methods::with_methods` takes them).
    pub fn with_policies(mut self, policies: Arc<dyn Policies>) -> Engine {
        self.policies = Some(policies);
        self
    }

    /// The control policies raised events run ([`Engine::with_policies`]).
    pub fn policies(&self) -> Option<&Arc<dyn Policies>> {
        self.policies.as_ref()
    }

    /// Installs the hook [`deliver`] runs after every delivery (replacing
    /// any other): `requests` finishes automation tasks with it.
    pub fn with_after_delivery(mut self, hook: Arc<dyn deliver::AfterDelivery>) -> Engine {
        self.after_delivery = Some(hook);
        self
    }

    /// The hook run after every delivery, if one is installed.
    pub fn after_delivery(&self) -> Option<&Arc<dyn deliver::AfterDelivery>> {
        self.after_delivery.as_ref()
    }

    /// Replaces the depth limit, tracing flag and budget.
    pub fn with_options(mut self, options: EngineOptions) -> Engine {
        self.options = options;
        self
    }

    /// The datastore (domains, classes, instances, methods) it reads.
    pub fn datastore(&self) -> &Arc<Datastore> {
        &self.datastore
    }

    /// The object store ([`Engine::with_store`]; none by default).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Instantiates `uri` with extra `attrs` (added to the URI's query) and
    /// returns the workspace. Errors that ManageIQ propagates to the caller
    /// (abort, a bad URI, a cycle, a missing object) are returned as `Err`,
    /// with the trace up to that point logged.
    pub fn instantiate(
        &self,
        uri: &str,
        attrs: &[(String, String)],
    ) -> Result<Workspace, EngineError> {
        let mut rt = Runtime::new(self);
        rt.extra_args = attrs.to_vec();
        let result = rt.instantiate(uri, None);
        match rt.finish(result.err()) {
            None => Ok(rt.ws),
            Some(e) => Err(e),
        }
    }

    /// Like [`Engine::instantiate`], but always returns the workspace built
    /// so far together with the error, if any.
    pub fn instantiate_traced(
        &self,
        uri: &str,
        attrs: &[(String, String)],
    ) -> (Workspace, Option<EngineError>) {
        self.instantiate_traced_with(uri, None, attrs, None)
    }

    /// [`Engine::instantiate_traced`] of a URI already parsed from
    /// `uri_text` (the caller built both: [`automate_core::uri::query_uri`]).
    pub fn instantiate_traced_parsed(
        &self,
        uri_text: &str,
        uri: automate_core::uri::Uri,
        attrs: &[(String, String)],
    ) -> (Workspace, Option<EngineError>) {
        self.instantiate_traced_with(uri_text, Some(uri), attrs, None)
    }

    /// [`Engine::instantiate_traced`] that stops (with
    /// [`BudgetKind::Cancelled`]) once `cancel` is set: the API cancels a
    /// resolve whose client went away.
    pub fn instantiate_traced_cancellable(
        &self,
        uri: &str,
        attrs: &[(String, String)],
        cancel: Cancel,
    ) -> (Workspace, Option<EngineError>) {
        self.instantiate_traced_with(uri, None, attrs, Some(cancel))
    }

    fn instantiate_traced_with(
        &self,
        uri_text: &str,
        uri: Option<automate_core::uri::Uri>,
        attrs: &[(String, String)],
        cancel: Option<Cancel>,
    ) -> (Workspace, Option<EngineError>) {
        let budget = Budget::start(self.options.budget, cancel);
        let mut rt = Runtime::with_budget(self, budget, Nesting::default());
        rt.extra_args = attrs.to_vec();
        let result = match uri {
            Some(uri) => rt.instantiate_parsed(uri_text, uri, None),
            None => rt.instantiate(uri_text, None),
        };
        let err = rt.finish(result.err());
        (rt.ws, err)
    }

    /// Runs one method by its path (`/System/Request/hello_world`, partial
    /// or fully qualified) on a fresh `.default` object of its class, with
    /// `attrs` as that object's attributes (`automate method run`).
    pub fn run_method(
        &self,
        path: &str,
        attrs: &[(String, String)],
    ) -> (Workspace, Option<EngineError>) {
        let mut rt = Runtime::new(self);
        let parts = automate_core::uri::split_path(path);
        let (Some(class), Some(method)) = (parts.class.clone(), parts.instance.clone()) else {
            let e = EngineError::InvalidPath(format!(
                "method path [{path}] must be /namespace/Class/method"
            ));
            return (rt.ws, Some(e));
        };
        // The class of the highest-priority domain that has the method (the
        // method `call_method` would find for it), else the class named.
        let found = rt
            .index
            .classes_at(&parts.namespace, &class)
            .iter()
            .find_map(|c| c.method(&method).map(|m| (c.clone(), Some(m.clone()))));
        let def = found.or_else(|| {
            rt.index
                .class(&parts.namespace, &class)
                .map(|c| (c.clone(), None))
        });
        let Some((def, resolved)) = def else {
            let e = EngineError::ClassNotFound(format!("{}/{}", parts.namespace, class));
            rt.log(Level::Error, e.to_string());
            return (rt.ws, Some(e));
        };
        let mut attributes = Attributes::default();
        for (k, v) in attrs {
            attributes.insert(k.to_lowercase(), AttrValue::Str(v.clone()));
        }
        let id = rt.ws.objects.len();
        let object_name = instantiate::cat(&["/", def.fq_namespace(), "/", &def.name, "/.default"]);
        rt.ws.objects.push(Object {
            namespace: def.fq_namespace().to_string(),
            class: def.name.clone(),
            instance: ".default".to_string(),
            object_name,
            attributes,
            parent: None,
            children: Vec::new(),
            rels: Vec::new(),
            removed: false,
        });
        rt.set_class(id, def, None);
        let saved = rt.enter(id, "create".to_string());
        let result = match resolved {
            Some(m) => rt.invoke_method(id, m, &[]),
            None => rt.call_method(id, None, &method, Vec::new()),
        };
        rt.leave(saved);
        let err = rt.finish(result.err());
        (rt.ws, err)
    }

    /// Starts a runtime over a workspace carried from an earlier run (a
    /// state-machine retry): its state vars are kept.
    pub fn runtime_with_state(&self, state_vars: Attributes) -> Runtime<'_> {
        let mut rt = Runtime::new(self);
        rt.ws.state_vars = state_vars;
        rt
    }
}

/// The engine used for assertions: expressions only, tightly bounded.
fn assertion_engine() -> rhai::Engine {
    let mut e = rhai::Engine::new();
    e.set_max_operations(100_000);
    e.set_max_expr_depths(64, 32);
    e.set_max_string_size(1 << 20);
    e.set_max_array_size(10_000);
    e.set_max_map_size(10_000);
    e.set_max_call_levels(16);
    e.disable_symbol("eval");
    e
}

/// An object being instantiated, with the message it was asked for.
struct Frame {
    object: ObjectId,
    message: String,
}

/// How deeply deliveries made from inside an instantiation are nested: a
/// raised event's delivery, a policy's `invoke` (each bounded by its own
/// depth limit; carried into the nested [`Runtime`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nesting {
    /// Raised events delivered inside raised events' deliveries.
    pub raise: usize,
    /// Policy `invoke`s inside `invoke`s.
    pub invoke: usize,
}

/// One instantiation in progress: the workspace being built, the stack of
/// objects under construction, and the current message.
pub struct Runtime<'e> {
    engine: &'e Engine,
    /// What the top-level instantiation may still spend (shared with the
    /// runtimes of the deliveries it makes).
    budget: Budget,
    nesting: Nesting,
    index: Arc<Index>,
    /// The workspace being built.
    pub ws: Workspace,
    /// The objects being instantiated, innermost last (the cycle check).
    stack: Vec<Frame>,
    /// The object whose fields are being processed.
    current: Option<ObjectId>,
    current_message: String,
    /// The position of the field being processed in the current object's class.
    current_field: Option<usize>,
    /// Names of the methods being run, innermost last.
    method_stack: Vec<Arc<automate_datastore::index::MethodDef>>,
    /// Attributes added to the root's query.
    extra_args: Vec<(String, String)>,
    /// Per-state-machine saved `ae_*` attributes (reference §6.5).
    state_info: state_machine::StateInfo,
    /// The class and instance each object was built from.
    /// (indexed by object id; `None` for objects not built from a class).
    classes: Vec<Option<(Arc<automate_datastore::ClassDef>, Option<usize>)>>,
}

impl<'e> Runtime<'e> {
    /// A top-level runtime with a fresh budget.
    fn new(engine: &'e Engine) -> Runtime<'e> {
        Runtime::with_budget(
            engine,
            Budget::start(engine.options.budget, None),
            Nesting::default(),
        )
    }

    fn with_budget(engine: &'e Engine, budget: Budget, nesting: Nesting) -> Runtime<'e> {
        Runtime {
            engine,
            budget,
            nesting,
            index: engine.datastore.index(),
            ws: Workspace::default(),
            stack: Vec::new(),
            current: None,
            current_message: "create".to_string(),
            current_field: None,
            method_stack: Vec::new(),
            extra_args: Vec::new(),
            state_info: Default::default(),
            classes: Default::default(),
        }
    }

    /// The engine this instantiation runs on.
    pub fn engine(&self) -> &'e Engine {
        self.engine
    }

    /// The budget of the top-level instantiation this runtime is part of.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// How deeply this runtime's delivery is nested in others.
    pub fn nesting(&self) -> Nesting {
        self.nesting
    }

    /// Delivers `uri_text` (parsed already when `uri` is given) as a new
    /// root with its own workspace, `nesting` deep, spending from this
    /// runtime's budget (a raised event, a policy's `invoke`). The caller
    /// appends the trace.
    pub fn deliver_nested(
        &self,
        uri_text: &str,
        uri: Option<automate_core::uri::Uri>,
        nesting: Nesting,
    ) -> (Workspace, Option<EngineError>) {
        let mut rt = Runtime::with_budget(self.engine, self.budget.clone(), nesting);
        let result = match uri {
            Some(uri) => rt.instantiate_parsed(uri_text, uri, None),
            None => rt.instantiate(uri_text, None),
        };
        let err = rt.finish(result.err());
        (rt.ws, err)
    }

    /// Spends one object from the budget (see [`Runtime::spend`]).
    pub(crate) fn spend_object(&mut self) -> Result<(), EngineError> {
        let r = self.budget.object();
        self.spend(r)
    }

    /// Spends one raised event from the budget.
    pub fn spend_event(&mut self) -> Result<(), EngineError> {
        let r = self.budget.event();
        self.spend(r)
    }

    /// Reads the budget's clock, memory and cancel flag.
    pub fn check_budget(&mut self) -> Result<(), EngineError> {
        let r = self.budget.check();
        self.spend(r)
    }

    /// A failed budget check as the engine's error; the first one (of the
    /// top-level instantiation) is logged.
    fn spend(&mut self, r: Result<(), BudgetExceeded>) -> Result<(), EngineError> {
        match r {
            Ok(()) => Ok(()),
            Err(e) => {
                self.report_budget();
                Err(EngineError::Budget(e))
            }
        }
    }

    /// Logs the budget that ran out, if it has and nobody logged it yet.
    pub fn report_budget(&mut self) {
        let Some(e) = self.budget.tripped() else {
            return;
        };
        if !self.budget.take_report() {
            return;
        }
        let what = if e.kind == BudgetKind::Cancelled {
            "Instantiation cancelled"
        } else {
            "Instantiation stopped"
        };
        let text = format!(
            "MIQ(MiqAeEngine.instantiate) {what}: {e} after {} objects and {} events",
            self.budget.objects(),
            self.budget.events()
        );
        self.log(Level::Error, text);
    }

    /// The error an instantiation ends with: the budget's when it ran out
    /// (whatever error, or none, the work that swallowed it returned).
    fn finish(&mut self, err: Option<EngineError>) -> Option<EngineError> {
        match self.budget.tripped() {
            Some(e) => {
                self.report_budget();
                Some(EngineError::Budget(e))
            }
            None => err,
        }
    }

    /// The datastore index taken when this instantiation started: a reload
    /// does not change it midway.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The object whose field is being processed.
    pub fn current(&self) -> Option<ObjectId> {
        self.current
    }

    /// The message being instantiated for (`create` unless a URI or
    /// relationship names another).
    pub fn current_message(&self) -> &str {
        &self.current_message
    }

    /// The class (and instance position) object `id` was built from.
    fn class_of(
        &self,
        id: ObjectId,
    ) -> Option<&(Arc<automate_datastore::ClassDef>, Option<usize>)> {
        self.classes.get(id).and_then(Option::as_ref)
    }

    fn set_class(
        &mut self,
        id: ObjectId,
        class: Arc<automate_datastore::ClassDef>,
        instance: Option<usize>,
    ) {
        if self.classes.len() <= id {
            self.classes.resize(id + 1, None);
        }
        self.classes[id] = Some((class, instance));
    }

    /// The name of the method being run (innermost).
    pub fn current_method(&self) -> Option<&str> {
        self.method_stack.last().map(|m| m.name.as_str())
    }

    /// The root of the tree the current object belongs to.
    pub fn root_of(&self, mut id: ObjectId) -> ObjectId {
        while let Some(p) = self.ws.objects[id].parent {
            id = p;
        }
        id
    }

    /// The workspace root (the first root object), if any.
    pub fn root(&self) -> Option<ObjectId> {
        self.ws.roots().first().copied()
    }

    /// Writes a trace line at the current depth, and to `tracing`, with
    /// every encrypted password in it masked (`v2:{...}` → `********`, as
    /// ManageIQ's logger sanitizes).
    pub fn log(&mut self, level: Level, text: impl Into<String>) {
        let depth = self.stack.len().saturating_sub(1);
        let emit = self.engine.options.emit_tracing;
        let mut text = text.into();
        if let std::borrow::Cow::Owned(masked) = automate_password::sanitize(&text) {
            text = masked;
        }
        self.ws.push_trace(depth, level, text, emit);
    }

    /// Sets an attribute of an object (the name is lower-cased).
    pub fn set_attr(&mut self, id: ObjectId, name: &str, value: AttrValue) {
        self.ws.objects[id]
            .attributes
            .insert(automate_datastore::index::lower(name).into_owned(), value);
    }

    /// Sets an attribute of an object from an owned name (lower-cased in
    /// place when needed).
    pub fn set_attr_owned(&mut self, id: ObjectId, mut name: String, value: AttrValue) {
        if name.is_ascii() {
            name.make_ascii_lowercase();
        } else {
            name = name.to_lowercase();
        }
        self.ws.objects[id].attributes.insert(name, value);
    }

    /// An attribute of an object.
    pub fn attr(&self, id: ObjectId, name: &str) -> Option<&AttrValue> {
        self.ws.objects[id]
            .attributes
            .get(&*automate_datastore::index::lower(name))
    }

    /// A root attribute as text (`""` when absent).
    pub fn root_text(&self, name: &str) -> String {
        self.current
            .map(|c| self.root_of(c))
            .or_else(|| self.root())
            .and_then(|r| self.attr(r, name))
            .map(AttrValue::to_text)
            .unwrap_or_default()
    }

    /// Sets a root attribute.
    pub fn set_root(&mut self, name: &str, value: AttrValue) {
        if let Some(r) = self
            .current
            .map(|c| self.root_of(c))
            .or_else(|| self.root())
        {
            self.set_attr(r, name, value);
        }
    }

    /// Gives the finished workspace back.
    pub fn into_workspace(self) -> Workspace {
        self.ws
    }
}
