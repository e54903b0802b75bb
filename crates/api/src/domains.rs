//! The entry point `GET /api` (ManageIQ's: name, version, the collections
//! with their `href`s), `GET /api/openapi.json` (`docs/api.yaml`, embedded
//! at compile time, as JSON), and `/api/automate_domains`: the datastore's
//! domains as a ManageIQ collection (a domain's id is its name), one
//! domain, and the `enable`, `disable` and `set_priority` actions, which
//! write the domain's `__domain__.yaml` through the datastore
//! ([`automate_datastore::Datastore::change_domain`]) and swap the index.

use super::collection::{resource_query, select, CollectionQuery, RawQuery};
use super::{
    base_url, blocking, json_object, kind_of, ok, opt_str, path_arg, ApiError, ApiResult, ApiState,
};
use automate_datastore::index::DomainInfo;
use automate_datastore::settings::{DomainChange, DomainChangeError};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The collections `GET /api` lists: name and description.
const COLLECTIONS: &[(&str, &str)] = &[
    ("automate", "Automate (the datastore, browsed and resolved)"),
    ("automate_domains", "Automate Domains"),
    ("automation_requests", "Automation Requests"),
    ("categories", "Categories"),
    ("event_streams", "Event Streams"),
    ("hosts", "Hosts"),
    ("notifications", "Notifications"),
    ("provision_requests", "Provisioning Requests"),
    ("providers", "Providers"),
    ("requests", "Requests"),
    ("services", "Services"),
    ("tags", "Tags"),
    ("vms", "Virtual Machines"),
];

/// `GET /api`: ManageIQ's entry point.
pub(super) async fn entry(State(state): State<ApiState>) -> ApiResult {
    let base = base_url(&state);
    let version = env!("CARGO_PKG_VERSION");
    let collections: Vec<Value> = COLLECTIONS
        .iter()
        .map(|(name, description)| {
            json!({
                "name": name,
                "href": format!("{base}/api/{name}"),
                "description": description,
            })
        })
        .collect();
    ok(json!({
        "name": "API",
        "description": "REST API of automate, ManageIQ's Automate engine re-created",
        "version": version,
        "versions": [{"name": version, "href": format!("{base}/api")}],
        "collections": collections,
        "product_info": {"name": "automate", "version": version},
        "links": {"openapi": format!("{base}/api/openapi.json")},
    }))
}

/// `docs/api.yaml`, read once.
fn openapi_doc() -> &'static Result<Value, String> {
    static DOC: OnceLock<Result<Value, String>> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_saphyr::from_str::<Value>(include_str!("../../../docs/api.yaml"))
            .map_err(|e| format!("docs/api.yaml does not parse: {e}"))
    })
}

/// `GET /api/openapi.json`: the OpenAPI description of this API.
pub(super) async fn openapi() -> ApiResult {
    match openapi_doc() {
        Ok(v) => ok(v.clone()),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// One domain as a resource of `collection` (`automate_domains` or
/// `automate`): its name is its id.
pub(super) fn domain_json(collection: &str, d: &DomainInfo, base: &str) -> Value {
    json!({
        "href": format!("{base}/api/{collection}/{}", d.name),
        "id": &*d.name,
        "name": &*d.name,
        "fqname": format!("/{}", d.name),
        "priority": d.priority,
        "enabled": d.enabled,
        "source": d.source.as_str(),
        "locked": d.source.is_read_only(),
        "namespaces": d.counts.namespaces,
        "classes": d.counts.classes,
        "instances": d.counts.instances,
        "methods": d.counts.methods,
    })
}

/// The datastore's domains (highest priority first) as the collection
/// `name`, with the query applied in memory.
pub(super) fn domains_collection(
    state: &ApiState,
    q: &CollectionQuery,
    name: &str,
    actions: &[&str],
) -> Value {
    let index = state.engine.datastore().index();
    let base = base_url(state);
    let all: Vec<Value> = index
        .domains()
        .iter()
        .map(|d| domain_json(name, d, &base))
        .collect();
    let count = all.len();
    let mut rows: Vec<Value> = all.into_iter().filter(|r| q.matches(r)).collect();
    let matched = rows.len();
    q.sort(&mut rows);
    let page = q.window(rows);
    q.answer(name, count, Some(matched), page, actions, &base)
}

/// `GET /api/automate_domains`.
pub(super) async fn list(State(state): State<ApiState>, raw: RawQuery) -> ApiResult {
    let q = CollectionQuery::parse(raw, &[], &state.limits)?;
    ok(domains_collection(&state, &q, "automate_domains", &[]))
}

/// The domain `id` names (case-insensitive), or a 404.
fn find(state: &ApiState, id: &str) -> Result<DomainInfo, ApiError> {
    state
        .engine
        .datastore()
        .index()
        .domain(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("automate_domains/{id}: no such domain")))
}

/// `GET /api/automate_domains/{id}`.
pub(super) async fn show(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
) -> ApiResult {
    let id = path_arg(id)?;
    let attributes = resource_query(raw)?;
    let d = find(&state, &id)?;
    ok(select(
        domain_json("automate_domains", &d, &base_url(&state)),
        attributes.as_deref(),
    ))
}

/// A domain change's error as an answer: 404 for an unknown domain, 403
/// `forbidden` for a locked one, 400 for a bad priority, 500 when the file
/// cannot be read or written.
fn change_error(e: DomainChangeError) -> ApiError {
    match e {
        DomainChangeError::NotFound(_) => ApiError::not_found(e.to_string()),
        DomainChangeError::ReadOnly { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
        }
        DomainChangeError::BadPriority { .. } => ApiError::bad_request(e.to_string()),
        DomainChangeError::Read { .. } | DomainChangeError::Write { .. } => ApiError::internal(e),
    }
}

/// `POST /api/automate_domains/{id}` with `{"action": "enable"}`,
/// `{"action": "disable"}` or `{"action": "set_priority", "priority": N}`
/// (or `"resource": {"priority": N}`, as ManageIQ nests an action's
/// parameters): ManageIQ's action result, with the domain as `result`.
pub(super) async fn action(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = path_arg(id)?;
    let obj = json_object(body, &state)?;
    let action = opt_str(&obj, "action", "action")?
        .ok_or_else(|| ApiError::bad_request("action: missing (enable, disable, set_priority)"))?
        .to_string();
    let change = match action.as_str() {
        "enable" => DomainChange::Enable,
        "disable" => DomainChange::Disable,
        "set_priority" => {
            let (value, field) = match obj.get("resource") {
                Some(Value::Object(r)) => (r.get("priority"), "resource.priority"),
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "resource: expected an object, got {}",
                        kind_of(other)
                    )))
                }
                None => (obj.get("priority"), "priority"),
            };
            let n = match value {
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match (n, value) {
                (Some(n), _) => DomainChange::Priority(n),
                (None, None) => {
                    return Err(ApiError::bad_request(format!(
                        "{field}: missing (an integer, 1 or more)"
                    )))
                }
                (None, Some(v)) => {
                    return Err(ApiError::bad_request(format!(
                        "{field}: expected an integer, got {}",
                        kind_of(v)
                    )))
                }
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "action: [{other}] is not supported (enable, disable, set_priority)"
            )))
        }
    };
    let d = change_domain(&state, &id, change).await?;
    let base = base_url(&state);
    let done = match change {
        DomainChange::Enable => "enabled".to_string(),
        DomainChange::Disable => "disabled".to_string(),
        DomainChange::Priority(p) => format!("given priority {p}"),
    };
    tracing::info!(target: "evm", "MIQ(Api) automate domain [{}] {done}", d.name);
    ok(json!({
        "success": true,
        "message": format!("Automate domain {} {done}", d.name),
        "href": format!("{base}/api/automate_domains/{}", d.name),
        "result": domain_json("automate_domains", &d, &base),
    }))
}

/// Applies `change` (enable, disable, a priority) to the domain `id`
/// names, as `POST /api/automate_domains/{id}` does: 404 for an unknown
/// domain, 403 for a locked one, 400 for a bad priority; the domain's
/// `__domain__.yaml` is rewritten and the service's reloader swaps the
/// datastore in (409, the running one kept, when it does not reload).
/// The domain as the new index holds it.
pub async fn change_domain(
    state: &ApiState,
    id: &str,
    change: DomainChange,
) -> Result<DomainInfo, ApiError> {
    // The domain must exist (404 before any write).
    let name = find(state, id)?.name.to_string();
    let engine = state.engine.clone();
    let reloader = state.reloader.clone();
    blocking(move || {
        let datastore = engine.datastore();
        let Some(reloader) = reloader else {
            return datastore.change_domain(&name, change).map_err(change_error);
        };
        // A service reloads all-or-nothing (index, compiled methods and
        // policies together; its report on /api/health): the file is
        // written, then the reloader swaps it in, or keeps the running
        // datastore and says why.
        let shown = datastore
            .write_domain_change(&name, change)
            .map_err(change_error)?;
        let report = reloader.reload();
        if !report.ok {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "automate domain [{shown}] changed on disk, but the datastore did not reload \
                     (the running one is kept): {}",
                    report
                        .problems
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ));
        }
        datastore
            .index()
            .domain(&shown)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("automate_domains/{shown}: no such domain")))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_openapi_document_parses() {
        let doc = openapi_doc().as_ref().expect("docs/api.yaml");
        assert!(doc["paths"]["/api/openapi.json"].is_object());
    }
}
