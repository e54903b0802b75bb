//! `POST /api/automate` (the collection's actions): `instantiate`, the
//! engine run once on a URI (as `automate instantiate`): by default in a
//! throwaway sandbox (`mode: sandbox`: nothing written or sent, the answer
//! holds the `diff` of what would have been), or with its writes committed
//! and its state-machine retries scheduled in the store (`mode: commit`),
//! methods run or only listed (`execute_methods`), and `run_method`, one method run
//! on a fresh object of its class (as `automate method run`), and `tree`
//! and `show` ([`super::describe`]). The answers
//! carry what those commands print, so that they work while a service
//! holds the store.

use super::{blocking, in_unit, json_object, kind_of, ok, opt_str, ApiError, ApiResult, ApiState};
use automate_engine::deliver::{deliver, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
use automate_engine::{AttrValue, Attributes, ObjectId, Workspace};
use automate_vmdb::sandbox::{Diff, Sandbox};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// `attributes`: a list of `[key, value]` pairs (kept in order, as the
/// command line's repeated `--attr`), or an object of strings.
fn attributes(obj: &Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    let text = |k: &str, v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(ApiError::bad_request(format!(
            "attributes.{k}: expected a string, number or boolean, got {}",
            kind_of(other)
        ))),
    };
    match obj.get("attributes") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), text(k, v)?)))
            .collect(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(k), v]) => Ok((k.clone(), text(k, v)?)),
                _ => Err(ApiError::bad_request(format!(
                    "attributes[{i}]: expected a [key, value] pair"
                ))),
            })
            .collect(),
        Some(other) => Err(ApiError::bad_request(format!(
            "attributes: expected an object or a list of [key, value] pairs, got {}",
            kind_of(other)
        ))),
    }
}

/// An attribute as the command line shows it: a string as is, anything
/// else as Ruby's `inspect`.
fn shown(v: &AttrValue) -> String {
    match v {
        AttrValue::Str(s) => s.clone(),
        other => other.inspect(),
    }
}

fn shown_attrs(attrs: &Attributes) -> Value {
    Value::Array(attrs.iter().map(|(k, v)| json!([k, shown(v)])).collect())
}

/// The object tree in print order: `depth`, `path` and the attributes as
/// shown.
fn tree(ws: &Workspace, id: ObjectId, depth: usize, out: &mut Vec<Value>) {
    let o = ws.object(id);
    out.push(json!({
        "depth": depth,
        "path": format!("/{}/{}/{}", o.namespace, o.class, o.instance),
        "attributes": shown_attrs(&o.attributes),
    }));
    for c in ws.children(id) {
        tree(ws, c, depth + 1, out);
    }
}

/// A simulation's switches in a body: `mode` (`sandbox`, the default, or
/// `commit`) and `execute_methods` (default true): (sandboxed, execute).
pub(super) fn simulation(obj: &Map<String, Value>) -> Result<(bool, bool), ApiError> {
    let sandboxed = match opt_str(obj, "mode", "mode")? {
        None | Some("sandbox") => true,
        Some("commit") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mode: [{other}] is not one of sandbox, commit"
            )))
        }
    };
    let execute_methods = match obj.get("execute_methods") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "execute_methods: expected a boolean, got {}",
                kind_of(other)
            )))
        }
    };
    Ok((sandboxed, execute_methods))
}

/// A workspace's document (`Workspace::to_json`) with the simulation's
/// fields: `mode`, `skipped_methods` and `diff` (null when committed).
pub(super) fn with_simulation(mut doc: Value, ws: &Workspace, diff: Option<&Diff>) -> Value {
    doc["mode"] = if diff.is_some() { "sandbox" } else { "commit" }.into();
    doc["skipped_methods"] = json!(ws.skipped_methods);
    doc["diff"] = diff.map_or(Value::Null, Diff::to_json);
    doc
}

/// One simulation (`automate instantiate`, `POST /api/automate` with
/// `{"action": "instantiate"}`, the web UI's Simulation page): the URI,
/// the root's attributes (`[key, value]` pairs, in order), and whether it
/// runs in a sandbox and executes methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulate {
    /// The URI instantiated (`/System/Process/Event#create`, a query
    /// allowed).
    pub uri: String,
    /// The root's attributes, as `--attr key=value` gives them.
    pub attrs: Vec<(String, String)>,
    /// A throwaway sandbox (nothing written, the diff answered) rather
    /// than a committed delivery.
    pub sandboxed: bool,
    /// Run methods (ManageIQ's "Execute Methods"); off: listed, not run.
    pub execute_methods: bool,
}

/// What a [`Simulate`] did.
#[derive(Debug)]
pub struct Simulated {
    /// The URI instantiated.
    pub uri: String,
    /// The object tree and the trace.
    pub workspace: Workspace,
    /// The engine's error, when it ended with one.
    pub error: Option<automate_engine::EngineError>,
    /// In a sandbox: what would have been written (`None` when
    /// committed).
    pub diff: Option<Diff>,
}

/// Delivers `req.uri` once through the engine (state-machine retries are
/// scheduled, not run), in a sandbox read through a unit of work that is
/// never committed, or committed in one unit of work: the one code path
/// of `POST /api/automate {"action": "instantiate"}` and the UI's
/// Simulation. Fails only when the store or a worker fails; the engine's
/// own error is in [`Simulated::error`].
pub async fn simulate(state: &ApiState, req: Simulate) -> Result<Simulated, ApiError> {
    let Simulate {
        uri,
        attrs,
        sandboxed,
        execute_methods,
    } = req;
    let engine = state.engine.clone().with_execute_methods(execute_methods);
    let schedule = state.store.scheduled_work();
    let run = move |engine: automate_engine::Engine,
                    schedule: &dyn automate_vmdb::Schedule,
                    sandbox: Option<&Sandbox>| {
        let d = Delivery {
            uri: uri.clone(),
            attrs,
            object: String::new(),
            deliveries: 0,
        };
        let (workspace, error) = match deliver(&engine, schedule, &d, DEFAULT_MAX_DELIVERIES)
            .map_err(ApiError::internal)?
        {
            Outcome::Error { workspace, error } => (workspace, error),
            other => (other.into_workspace(), None),
        };
        let diff = sandbox
            .map(Sandbox::diff)
            .transpose()
            .map_err(ApiError::internal)?;
        Ok(Simulated {
            uri,
            workspace,
            error,
            diff,
        })
    };
    if sandboxed {
        // The sandbox reads through a unit of work that is never
        // committed (dropped: discarded) and writes nowhere.
        let store = state.store.clone();
        blocking(move || {
            let unit = store.begin_unit();
            let sandbox = Arc::new(Sandbox::new(unit.objects(), Some(schedule)));
            let engine = engine
                .with_store(unit.objects())
                .with_sandbox(sandbox.clone());
            let out = run(engine, &*sandbox, Some(&sandbox));
            drop(unit);
            out
        })
        .await
    } else {
        in_unit(state.store.clone(), move |objects| {
            run(engine.with_store(objects), &*schedule, None)
        })
        .await
    }
}

/// `POST /api/automate` with `{"action": "instantiate", "uri": ...,
/// "attributes": [[k, v], ...]}` or `{"action": "run_method", "path":
/// ..., "attributes": ...}`.
pub(super) async fn action(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let obj = json_object(body, &state)?;
    match opt_str(&obj, "action", "action")? {
        Some("tree") => return ok(super::describe::tree_or_show(&state, &obj, "tree").await?),
        Some("show") => return ok(super::describe::tree_or_show(&state, &obj, "show").await?),
        _ => {}
    }
    let attrs = attributes(&obj)?;
    let engine = state.engine.clone();
    match opt_str(&obj, "action", "action")? {
        Some("instantiate") => {
            let uri = opt_str(&obj, "uri", "uri")?
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| ApiError::bad_request("uri: missing"))?
                .to_string();
            let (sandboxed, execute_methods) = simulation(&obj)?;
            let done = simulate(
                &state,
                Simulate {
                    uri,
                    attrs,
                    sandboxed,
                    execute_methods,
                },
            )
            .await?;
            let ws = &done.workspace;
            let diff = done.diff.as_ref();
            let mut objects = Vec::new();
            for r in ws.roots() {
                tree(ws, r, 0, &mut objects);
            }
            let document = with_simulation(ws.to_json(&done.uri, done.error.as_ref()), ws, diff);
            ok(json!({
                "document": document,
                "trace": ws.trace.iter().map(|l| json!({"depth": l.depth, "text": l.text})).collect::<Vec<_>>(),
                "tree": objects,
                "skipped_methods": ws.skipped_methods,
                "diff": diff.map_or(Value::Null, Diff::to_json),
                "diff_lines": diff.map(Diff::lines).unwrap_or_default(),
                "error": done.error.map(|e| e.to_string()),
            }))
        }
        Some("run_method") => {
            let path = opt_str(&obj, "path", "path")?
                .filter(|p| !p.trim().is_empty())
                .ok_or_else(|| ApiError::bad_request("path: missing"))?
                .to_string();
            let doc = in_unit(state.store.clone(), move |objects| {
                let (ws, err) = engine.with_store(objects).run_method(&path, &attrs);
                Ok(json!({
                    "document": ws.to_json(&path, err.as_ref()),
                    "trace": ws.trace.iter().map(|l| l.text.clone()).collect::<Vec<_>>(),
                    "object": ws.objects.first().map(|o| json!({
                        "name": o.object_name,
                        "attributes": shown_attrs(&o.attributes),
                    })),
                    "error": err.map(|e| e.to_string()),
                }))
            })
            .await?;
            ok(doc)
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "action: [{other}] is not supported (instantiate, run_method, tree, show)"
        ))),
        None => Err(ApiError::bad_request(
            "action: missing (instantiate, run_method, tree, show)",
        )),
    }
}
