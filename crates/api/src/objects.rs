//! Read-only collections of the object store: `/api/vms`, `/api/hosts`,
//! `/api/services` (and a service's `vms`: its own and those of the
//! services below it),
//! `/api/providers`, `/api/provider_operations` (`MiqQueue` messages of
//! the `ems_operations` role), `/api/notifications` (and one of each by id) and `/api/event_streams`
//! (also by `type` and `since`, like `automate events list`), each with
//! ManageIQ's collection queries ([`crate::collection`]).

use super::collection::{resource_query, select, store_rows, CollectionQuery, RawQuery};
use super::{
    base_url, blocking, ok, parse_id, path_arg, stringify_ids, ApiError, ApiResult, ApiState,
};
use automate_engine::datatype::to_json;
use automate_events::stream::EventFilter;
use automate_vmdb::StoredObject;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{json, Map, Value};

/// One stored object as JSON: ManageIQ's string `id`, `href`, its class as
/// `type`, its attributes (internal keys left out; `*_id` as strings).
pub(crate) fn object_json(collection: &str, id: i64, obj: &StoredObject, base: &str) -> Value {
    let mut m = Map::new();
    m.insert(
        "href".into(),
        json!(format!("{base}/api/{collection}/{id}")),
    );
    m.insert("id".into(), json!(id.to_string()));
    m.insert("type".into(), json!(obj.class));
    for (k, v) in &obj.attrs {
        if k != "dedup_key" && k != "id" && k != automate_events::trace::TRACE_ATTR {
            m.insert(k.clone(), to_json(v));
        }
    }
    let mut v = Value::Object(m);
    stringify_ids(&mut v);
    v
}

/// A page of the objects of a base class, by id, as a collection; `count`
/// is every object of the class.
async fn list_class(
    state: ApiState,
    raw: RawQuery,
    class: &'static str,
    name: &'static str,
) -> ApiResult {
    let q = CollectionQuery::parse(raw, &[], &state.limits)?;
    let store = state.store.clone();
    let base = base_url(&state);
    let v = blocking(move || {
        let to_json = |id: i64, o: &StoredObject| object_json(name, id, o, &base);
        let r = store_rows(&*store, class, &q, false, None, &to_json)?;
        Ok(q.answer(name, r.count, r.matched, r.rows, &[], &base))
    })
    .await?;
    ok(v)
}

/// One object of a base class by id.
async fn show_class(
    state: ApiState,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
    class: &'static str,
    name: &'static str,
) -> ApiResult {
    let id = parse_id(&path_arg(id)?)?;
    let attributes = resource_query(raw)?;
    let store = state.store.clone();
    let base = base_url(&state);
    blocking(
        move || match store.load(class, id).map_err(ApiError::internal)? {
            Some(obj) => Ok(select(
                object_json(name, id, &obj, &base),
                attributes.as_deref(),
            )),
            None => Err(ApiError::not_found(format!("{name}/{id}: no such object"))),
        },
    )
    .await
    .and_then(ok)
}

pub(super) async fn vms(State(s): State<ApiState>, q: RawQuery) -> ApiResult {
    list_class(s, q, "VmOrTemplate", "vms").await
}

pub(super) async fn vm(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> ApiResult {
    show_class(s, id, q, "VmOrTemplate", "vms").await
}

pub(super) async fn hosts(State(s): State<ApiState>, q: RawQuery) -> ApiResult {
    list_class(s, q, "Host", "hosts").await
}

pub(super) async fn host(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> ApiResult {
    show_class(s, id, q, "Host", "hosts").await
}

pub(super) async fn notifications(State(s): State<ApiState>, q: RawQuery) -> ApiResult {
    list_class(s, q, "Notification", "notifications").await
}

pub(super) async fn notification(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> ApiResult {
    show_class(s, id, q, "Notification", "notifications").await
}

pub(super) async fn services(State(s): State<ApiState>, q: RawQuery) -> ApiResult {
    list_class(s, q, automate_vmdb::services::SERVICE, "services").await
}

pub(super) async fn service(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> ApiResult {
    show_class(s, id, q, automate_vmdb::services::SERVICE, "services").await
}

/// `GET /api/services/{id}/vms`: ManageIQ's `service.vms` as a
/// subcollection, each VM with its attributes.
pub(super) async fn service_vms(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = parse_id(&path_arg(id)?)?;
    let store = state.store.clone();
    let base = base_url(&state);
    blocking(move || {
        let svc = store
            .find(automate_vmdb::services::SERVICE, id)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found(format!("services/{id}: no such object")))?;
        let vms = automate_vmdb::services::all_vms(&*store, &svc).map_err(ApiError::internal)?;
        let mut rows = Vec::with_capacity(vms.len());
        for vm in vms {
            if let Some(obj) = store
                .load("VmOrTemplate", vm.id)
                .map_err(ApiError::internal)?
            {
                rows.push(object_json("vms", vm.id, &obj, &base));
            }
        }
        Ok(json!({
            "name": "vms",
            "href": format!("{base}/api/services/{id}/vms"),
            "count": rows.len(),
            "subcount": rows.len(),
            "resources": rows,
        }))
    })
    .await
    .and_then(ok)
}

pub(super) async fn providers(State(s): State<ApiState>, q: RawQuery) -> ApiResult {
    list_class(s, q, "ExtManagementSystem", "providers").await
}

pub(super) async fn provider(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> ApiResult {
    show_class(s, id, q, "ExtManagementSystem", "providers").await
}

pub(super) async fn provider_operations(State(s): State<ApiState>, q: RawQuery) -> ApiResult {
    list_class(s, q, automate_vmdb::operation::CLASS, "provider_operations").await
}

pub(super) async fn provider_operation(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> ApiResult {
    show_class(
        s,
        id,
        q,
        automate_vmdb::operation::CLASS,
        "provider_operations",
    )
    .await
}

pub(super) async fn event_stream(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> ApiResult {
    show_class(s, id, q, "EventStream", "event_streams").await
}

/// `GET /api/event_streams`: the stored events, read from the newest back
/// (`offset` skips the newest matching events, `limit` takes the ones
/// before), shown oldest first unless `sort_by` orders them; `type` (an
/// `event_type`) and `since` (RFC 3339, or seconds ago) narrow them as
/// `automate events list` does, `filter[]` as in every collection.
pub(super) async fn event_streams_handler(
    State(state): State<ApiState>,
    raw: RawQuery,
) -> ApiResult {
    let q = CollectionQuery::parse(raw, &["type", "since"], &state.limits)?;
    let mut events = EventFilter::default();
    for (k, v) in &q.extra {
        match k.as_str() {
            "type" => events.event_type = Some(v.clone()),
            "since" => {
                events.since_ms = Some(
                    EventFilter::parse_since("since", v)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                )
            }
            _ => {}
        }
    }
    let store = state.store.clone();
    let base = base_url(&state);
    let v = blocking(move || {
        let narrowed = events.event_type.is_some() || events.since_ms.is_some();
        let keep = |o: &StoredObject| events.matches(o);
        let to_json = |id: i64, o: &StoredObject| object_json("event_streams", id, o, &base);
        let mut r = store_rows(
            &*store,
            "EventStream",
            &q,
            true,
            if narrowed { Some(&keep) } else { None },
            &to_json,
        )?;
        if q.sort_by.is_empty() {
            r.rows.reverse();
        }
        // `type` and `since` read only until the page is full (nothing
        // counts the rest): `pages` and `links` count every event.
        Ok(q.answer("event_streams", r.count, r.matched, r.rows, &[], &base))
    })
    .await?;
    ok(v)
}
