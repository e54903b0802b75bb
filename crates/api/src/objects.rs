//! Read-only collections of the object store: `/api/vms`, `/api/hosts`,
//! `/api/providers` (and one of each by id) and `/api/event_streams`
//! (filtered by type, time and count like `automate events list`).
//!
//! The event stream is read by [`automate_events::stream::event_streams`],
//! as `automate events list` reads it.

use super::{
    base_url, blocking, collection, ok, page_args, parse_id, path_arg, query_args, ApiError,
    ApiResult, ApiState, QueryArgs,
};
use automate_engine::datatype::to_json;
use automate_events::stream::{event_streams, EventFilter};
use automate_vmdb::page::PageQuery;
use automate_vmdb::StoredObject;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{json, Map, Value};

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

/// A page of the objects of a base class (`offset`, `limit`), by id, as a
/// collection; `count` is every object of the class.
async fn list_class(
    state: ApiState,
    query: QueryArgs,
    class: &'static str,
    name: &'static str,
) -> ApiResult {
    let (offset, limit) = page_args(&query_args(query)?, &state.limits)?;
    let store = state.store.clone();
    let base = base_url(&state);
    let (total, resources) = blocking(move || {
        let q = PageQuery {
            offset,
            limit,
            newest_first: false,
        };
        let page = store.page(class, q, None).map_err(ApiError::internal)?;
        let out: Vec<Value> = page
            .rows
            .iter()
            .map(|(id, obj)| object_json(name, *id, obj, &base))
            .collect();
        Ok((page.total, out))
    })
    .await?;
    ok(collection(name, total, resources))
}

/// One object of a base class by id.
async fn show_class(
    state: ApiState,
    id: Result<Path<String>, PathRejection>,
    class: &'static str,
    name: &'static str,
) -> ApiResult {
    let id = parse_id(&path_arg(id)?)?;
    let store = state.store.clone();
    let base = base_url(&state);
    blocking(
        move || match store.load(class, id).map_err(ApiError::internal)? {
            Some(obj) => Ok(object_json(name, id, &obj, &base)),
            None => Err(ApiError::not_found(format!("{name}/{id}: no such object"))),
        },
    )
    .await
    .and_then(ok)
}

pub(super) async fn vms(State(s): State<ApiState>, q: QueryArgs) -> ApiResult {
    list_class(s, q, "VmOrTemplate", "vms").await
}

pub(super) async fn vm(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    show_class(s, id, "VmOrTemplate", "vms").await
}

pub(super) async fn hosts(State(s): State<ApiState>, q: QueryArgs) -> ApiResult {
    list_class(s, q, "Host", "hosts").await
}

pub(super) async fn host(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    show_class(s, id, "Host", "hosts").await
}

pub(super) async fn providers(State(s): State<ApiState>, q: QueryArgs) -> ApiResult {
    list_class(s, q, "ExtManagementSystem", "providers").await
}

pub(super) async fn provider(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    show_class(s, id, "ExtManagementSystem", "providers").await
}

pub(super) async fn event_stream(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    show_class(s, id, "EventStream", "event_streams").await
}

/// `GET /api/event_streams?type=..&since=..&limit=..&offset=..`: the last
/// `limit` matching events (`api.limits.default_limit` without one), the
/// newest `offset` skipped, oldest first.
pub(super) async fn event_streams_handler(
    State(state): State<ApiState>,
    query: QueryArgs,
) -> ApiResult {
    let q = query_args(query)?;
    let (offset, limit) = page_args(&q, &state.limits)?;
    let mut filter = EventFilter {
        limit: Some(limit),
        offset,
        ..EventFilter::default()
    };
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
            "limit" | "offset" | "expand" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other}: unknown parameter (type, since, limit, offset)"
                )))
            }
        }
    }
    let store = state.store.clone();
    let base = base_url(&state);
    let (total, resources) = blocking(move || {
        let (total, rows) = event_streams(&*store, &filter).map_err(ApiError::internal)?;
        let resources: Vec<Value> = rows
            .iter()
            .map(|(id, obj)| object_json("event_streams", *id, obj, &base))
            .collect();
        Ok((total, resources))
    })
    .await?;
    ok(collection("event_streams", total, resources))
}
