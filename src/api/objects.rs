//! Read-only collections of the object store: `/api/vms`, `/api/hosts`,
//! `/api/providers` (and one of each by id) and `/api/event_streams`
//! (filtered by type, time and count like `automate events list`).
//!
//! The event stream is read by [`crate::events::stream::event_streams`],
//! as `automate events list` reads it.

use super::{
    base_url, blocking, collection, ok, parse_id, path_arg, ApiError, ApiResult, ApiState,
};
use crate::engine::datatype::to_json;
use crate::events::stream::{event_streams, EventFilter};
use crate::vmdb::StoredObject;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// One stored object as JSON: ManageIQ's string `id`, `href`, its class as
/// `type`, its attributes (internal keys left out).
fn object_json(collection: &str, id: i64, obj: &StoredObject, base: &str) -> Value {
    let mut m = Map::new();
    m.insert(
        "href".into(),
        json!(format!("{base}/api/{collection}/{id}")),
    );
    m.insert("id".into(), json!(id.to_string()));
    m.insert("type".into(), json!(obj.class));
    for (k, v) in &obj.attrs {
        if k != "dedup_key" && k != "id" {
            m.insert(k.clone(), to_json(v));
        }
    }
    Value::Object(m)
}

/// Every object of a base class, as a collection.
async fn list_class(
    state: ApiState,
    headers: HeaderMap,
    class: &'static str,
    name: &'static str,
) -> ApiResult {
    let store = state.store.clone();
    let base = base_url(&headers);
    let resources = blocking(move || {
        let mut out = Vec::new();
        for r in store.list(class).map_err(ApiError::internal)? {
            if let Some(obj) = store.load(&r.class, r.id).map_err(ApiError::internal)? {
                out.push(object_json(name, r.id, &obj, &base));
            }
        }
        Ok(out)
    })
    .await?;
    ok(collection(name, resources.len(), resources))
}

/// One object of a base class by id.
async fn show_class(
    state: ApiState,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    class: &'static str,
    name: &'static str,
) -> ApiResult {
    let id = parse_id(&path_arg(id)?)?;
    let store = state.store.clone();
    let base = base_url(&headers);
    blocking(
        move || match store.load(class, id).map_err(ApiError::internal)? {
            Some(obj) => Ok(object_json(name, id, &obj, &base)),
            None => Err(ApiError::not_found(format!("{name}/{id}: no such object"))),
        },
    )
    .await
    .and_then(ok)
}

pub(super) async fn vms(State(s): State<ApiState>, h: HeaderMap) -> ApiResult {
    list_class(s, h, "VmOrTemplate", "vms").await
}

pub(super) async fn vm(
    State(s): State<ApiState>,
    h: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    show_class(s, h, id, "VmOrTemplate", "vms").await
}

pub(super) async fn hosts(State(s): State<ApiState>, h: HeaderMap) -> ApiResult {
    list_class(s, h, "Host", "hosts").await
}

pub(super) async fn host(
    State(s): State<ApiState>,
    h: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    show_class(s, h, id, "Host", "hosts").await
}

pub(super) async fn providers(State(s): State<ApiState>, h: HeaderMap) -> ApiResult {
    list_class(s, h, "ExtManagementSystem", "providers").await
}

pub(super) async fn provider(
    State(s): State<ApiState>,
    h: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    show_class(s, h, id, "ExtManagementSystem", "providers").await
}

pub(super) async fn event_stream(
    State(s): State<ApiState>,
    h: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    show_class(s, h, id, "EventStream", "event_streams").await
}

/// `GET /api/event_streams?type=..&since=..&limit=..`.
pub(super) async fn event_streams_handler(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let mut filter = EventFilter::default();
    for (k, v) in &q {
        match k.as_str() {
            "type" => filter.event_type = Some(v.clone()),
            "since" => {
                filter.since_ms = Some(EventFilter::parse_since(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "since: [{v}] is neither RFC 3339 nor a number of seconds"
                    ))
                })?)
            }
            "limit" => {
                filter.limit = Some(v.trim().parse::<usize>().map_err(|_| {
                    ApiError::bad_request(format!("limit: [{v}] is not a non-negative integer"))
                })?)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other}: unknown parameter (type, since, limit)"
                )))
            }
        }
    }
    let store = state.store.clone();
    let base = base_url(&headers);
    let (total, resources) = blocking(move || {
        let (total, rows) = event_streams(&store, &filter).map_err(ApiError::internal)?;
        let resources: Vec<Value> = rows
            .iter()
            .map(|(id, obj)| object_json("event_streams", *id, obj, &base))
            .collect();
        Ok((total, resources))
    })
    .await?;
    ok(collection("event_streams", total, resources))
}
