//! `POST /api/automate` (the collection's actions): `instantiate`, the
//! engine run once on a URI with its state-machine retries scheduled in
//! the store (as `automate instantiate`), and `run_method`, one method run
//! on a fresh object of its class (as `automate method run`), and `tree`
//! and `show` ([`super::describe`]). The answers
//! carry what those commands print, so that they work while a service
//! holds the store.

use super::{in_unit, json_object, kind_of, ok, opt_str, ApiError, ApiResult, ApiState};
use automate_engine::deliver::{deliver, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
use automate_engine::{AttrValue, Attributes, ObjectId, Workspace};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use serde_json::{json, Map, Value};

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
            let schedule = state.store.scheduled_work();
            let doc = in_unit(state.store.clone(), move |objects| {
                let engine = engine.with_store(objects);
                let d = Delivery {
                    uri: uri.clone(),
                    attrs,
                    object: String::new(),
                    deliveries: 0,
                };
                let (ws, err) = match deliver(&engine, &*schedule, &d, DEFAULT_MAX_DELIVERIES)
                    .map_err(ApiError::internal)?
                {
                    Outcome::Error { workspace, error } => (workspace, error),
                    other => (other.into_workspace(), None),
                };
                let mut objects = Vec::new();
                for r in ws.roots() {
                    tree(&ws, r, 0, &mut objects);
                }
                Ok(json!({
                    "document": ws.to_json(&uri, err.as_ref()),
                    "trace": ws.trace.iter().map(|l| json!({"depth": l.depth, "text": l.text})).collect::<Vec<_>>(),
                    "tree": objects,
                    "error": err.map(|e| e.to_string()),
                }))
            })
            .await?;
            ok(doc)
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
