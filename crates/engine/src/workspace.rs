//! The workspace: what one instantiation built. Objects live in an arena
//! (`ObjectId` is an index), linked parent → children; the trace is kept
//! beside them so tests and the CLI can show exactly what the engine did.

use automate_core::value::{AttrValue, Attributes};
use serde::Serialize;

/// An index into [`Workspace::objects`].
pub type ObjectId = usize;

/// One object of the tree: an instance of a class, with its attributes.
#[derive(Debug, Clone)]
pub struct Object {
    /// `Domain/ns` the object was built from.
    pub namespace: String,
    /// The class name, as the datastore spells it.
    pub class: String,
    /// The instance actually used (`.missing`, `.default`).
    pub instance: String,
    /// `/ns/class/<requested instance>`, before `.missing` substitution.
    pub object_name: String,
    /// Field values, query args and what methods set, by lower-cased name.
    pub attributes: Attributes,
    /// The object whose relationship instantiated this one; `None` for a
    /// root.
    pub parent: Option<ObjectId>,
    /// The objects its relationships instantiated, in order.
    pub children: Vec<ObjectId>,
    /// Relationship results by field name.
    pub rels: Vec<(String, Vec<ObjectId>)>,
    /// Dropped after a failed assertion or a stop.
    pub removed: bool,
}

impl Object {
    /// The attribute `name`, case-insensitively.
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.attributes.get(&name.to_ascii_lowercase())
    }
}

/// The severity of a trace line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Detail, only from scripts (`evm.log("debug", ..)`).
    Debug,
    /// The normal flow: `Instantiating`, `Invoking`, `Processing State`.
    Info,
    /// `MIQ_WARN`, skipped states, a substitution that failed.
    Warn,
    /// A failure: a class not found, a state's error, a retry given up.
    Error,
}

/// One line of the automation log, with the relationship depth it was
/// written at (the CLI indents by it; the log itself does not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceLine {
    /// Relationship depth: 0 for the root object.
    pub depth: usize,
    /// The severity it is logged at.
    pub level: Level,
    /// The line as ManageIQ's `automation.log` has it.
    pub text: String,
}

/// The result of one instantiation.
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    /// Every object built, removed ones included, indexed by [`ObjectId`].
    pub objects: Vec<Object>,
    /// The automation log lines of the instantiation, in order.
    pub trace: Vec<TraceLine>,
    /// Persistent state variables (`${state_var#k}`, carried across retries).
    pub state_vars: Attributes,
    /// The saved `ae_state`, `ae_state_retries`, `ae_state_started` and
    /// `ae_state_max_retries` of each state machine that is retrying, by
    /// machine object name (ManageIQ's `current_state_info`, carried across
    /// retries as `ae_state_previous`).
    pub state_info: indexmap::IndexMap<String, Attributes, rustc_hash::FxBuildHasher>,
    /// The methods not run because the engine does not execute methods
    /// ([`Engine::with_execute_methods`](super::Engine::with_execute_methods)),
    /// by fully qualified name, in the order they were reached.
    pub skipped_methods: Vec<String>,
}

impl Workspace {
    /// Objects with no parent that were not removed; `roots()[0]` is `root`.
    pub fn roots(&self) -> Vec<ObjectId> {
        (0..self.objects.len())
            .filter(|&i| self.objects[i].parent.is_none() && !self.objects[i].removed)
            .collect()
    }

    /// The root object, if instantiation left one.
    pub fn root(&self) -> Option<&Object> {
        self.roots().first().map(|&i| &self.objects[i])
    }

    /// The object `id`; panics if `id` is not one of [`Workspace::objects`].
    pub fn object(&self, id: ObjectId) -> &Object {
        &self.objects[id]
    }

    /// A root attribute.
    pub fn root_attr(&self, name: &str) -> Option<&AttrValue> {
        self.root().and_then(|o| o.get(name))
    }

    /// The trace as plain lines (no indentation).
    pub fn trace_lines(&self) -> Vec<&str> {
        self.trace.iter().map(|l| l.text.as_str()).collect()
    }

    /// Appends a line to the trace (depth 0) and sends it to `tracing`
    /// (target `automation`).
    pub fn log_line(&mut self, level: Level, text: String) {
        self.push_trace(0, level, text, true);
    }

    /// Keeps a trace line and, when `emit`, sends it to `tracing` (target
    /// `automation`): the one place trace lines are written. The line goes
    /// as a `&str` message (the log writer copies it as it is; a format
    /// string would take it through `fmt` for nothing).
    pub(crate) fn push_trace(&mut self, depth: usize, level: Level, text: String, emit: bool) {
        if emit {
            let message = text.as_str();
            match level {
                Level::Debug => tracing::debug!(target: "automation", message),
                Level::Info => tracing::info!(target: "automation", message),
                Level::Warn => tracing::warn!(target: "automation", message),
                Level::Error => tracing::error!(target: "automation", message),
            }
        }
        self.trace.push(TraceLine { depth, level, text });
    }

    /// `ae_result` of the root, `ok` when unset (as `MiqAeEngine.deliver`
    /// reads it).
    pub fn result(&self) -> String {
        match self.root_attr("ae_result") {
            Some(v) if !v.is_nil() => v.to_text(),
            _ => "ok".to_string(),
        }
    }

    /// The query args `MiqAeEngine.deliver` adds to the URI when it
    /// re-queues a retry (`change_options_by_ws`): `ae_state`,
    /// `ae_state_started`, `ae_state_retries`, and, when not empty,
    /// `ae_state_data` (the state vars) and `ae_state_previous` (the saved
    /// state of nested machines), both as JSON where ManageIQ uses YAML.
    ///
    /// A password among them is saved encrypted with the process's v2 key
    /// ([`automate_password::process_key`]), or masked without one: see
    /// [`Workspace::retry_args_with`].
    pub fn retry_args(&self) -> Vec<(String, String)> {
        self.retry_args_with(automate_password::process_key().as_deref())
            .0
    }

    /// [`Workspace::retry_args`] with `key`: a password among the state
    /// vars and saved states is saved as ManageIQ saves one,
    /// `password::v2:{...}` encrypted with `key`; without a key as the mask
    /// `********`, never in clear text. The second answer names the values
    /// masked (`ae_state_data.creds`), for the caller to warn about.
    pub fn retry_args_with(
        &self,
        key: Option<&automate_password::V2Key>,
    ) -> (Vec<(String, String)>, Vec<String>) {
        use super::state_data::saved_json;
        let mut masked = Vec::new();
        let mut out = Vec::new();
        for key in ["ae_state", "ae_state_started", "ae_state_retries"] {
            if let Some(v) = self.root_attr(key).filter(|v| !v.is_nil()) {
                out.push((key.to_string(), v.to_text()));
            }
        }
        if !self.state_vars.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> = self
                .state_vars
                .iter()
                .map(|(k, v)| {
                    let path = format!("ae_state_data.{k}");
                    (k.clone(), saved_json(v, key, &path, &mut masked))
                })
                .collect();
            out.push((
                "ae_state_data".to_string(),
                serde_json::Value::Object(map).to_string(),
            ));
        }
        if !self.state_info.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> = self
                .state_info
                .iter()
                .map(|(machine, attrs)| {
                    let values = attrs
                        .iter()
                        .map(|(k, v)| {
                            let path = format!("ae_state_previous.{machine}.{k}");
                            (k.clone(), saved_json(v, key, &path, &mut masked))
                        })
                        .collect();
                    (machine.clone(), serde_json::Value::Object(values))
                })
                .collect();
            out.push((
                "ae_state_previous".to_string(),
                serde_json::Value::Object(map).to_string(),
            ));
        }
        (out, masked)
    }

    /// The live children of an object.
    pub fn children(&self, id: ObjectId) -> Vec<ObjectId> {
        self.objects[id]
            .children
            .iter()
            .copied()
            .filter(|&c| !self.objects[c].removed)
            .collect()
    }
}

impl Workspace {
    /// What one instantiation built, as `automate instantiate --json` and
    /// `POST /api/automate/<path>` (`resolve`) show it: `uri`, `trace`,
    /// `objects` (the object tree from each root), `state_vars` and `error`.
    pub fn to_json(&self, uri: &str, error: Option<&super::EngineError>) -> serde_json::Value {
        serde_json::json!({
            "uri": uri,
            "trace": self.trace,
            "objects": self.roots().iter().map(|&r| self.tree_json(r)).collect::<Vec<_>>(),
            "state_vars": attrs_json(&self.state_vars),
            "error": error.map(|e| e.to_string()),
        })
    }

    fn tree_json(&self, id: ObjectId) -> serde_json::Value {
        let o = self.object(id);
        serde_json::json!({
            "object_name": o.object_name,
            "namespace": o.namespace,
            "class": o.class,
            "instance": o.instance,
            "attributes": attrs_json(&o.attributes),
            "children": self.children(id).iter().map(|&c| self.tree_json(c)).collect::<Vec<_>>(),
        })
    }
}

fn attrs_json(attrs: &Attributes) -> serde_json::Value {
    serde_json::Value::Object(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), super::datatype::to_json(v)))
            .collect(),
    )
}
