//! Tags, categories and custom attributes in the REST API, as ManageIQ's
//! API shows them: `/api/categories` and `/api/tags` (the live
//! `Classification` categories and entries, with the collection queries),
//! and a VM's `tags` and `custom_attributes` subcollections
//! (`/api/vms/{id}/tags`, `/api/vms/{id}/custom_attributes`). A VM's own
//! answer (`/api/vms/{id}?attributes=tags,custom_attributes`) carries both
//! as stored attributes ([`automate_vmdb::tags`]).

use super::collection::{resource_query, select, store_rows, CollectionQuery, RawQuery};
use super::objects::object_json;
use super::{base_url, blocking, ok, parse_id, path_arg, ApiError, ApiResult, ApiState};
use automate_engine::AttrValue;
use automate_vmdb::tags::{self, CLASSIFICATION};
use automate_vmdb::StoredObject;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{json, Value};

fn live(o: &StoredObject) -> bool {
    o.attrs.get("deleted_on").is_none_or(AttrValue::is_nil)
}

fn is_category(o: &StoredObject) -> bool {
    matches!(o.attrs.get("parent_id"), None | Some(AttrValue::Int(0)))
}

/// `GET /api/categories`: the live categories.
pub(super) async fn categories(State(state): State<ApiState>, raw: RawQuery) -> ApiResult {
    classifications(state, raw, "categories", true).await
}

/// `GET /api/tags`: the live entries of every category, each named by its
/// tag (`/managed/<category>/<entry>`).
pub(super) async fn tag_entries(State(state): State<ApiState>, raw: RawQuery) -> ApiResult {
    classifications(state, raw, "tags", false).await
}

async fn classifications(
    state: ApiState,
    raw: RawQuery,
    name: &'static str,
    categories: bool,
) -> ApiResult {
    let q = CollectionQuery::parse(raw, &[], &state.limits)?;
    let store = state.store.clone();
    let base = base_url(&state);
    let v = blocking(move || {
        let keep = |o: &StoredObject| live(o) && is_category(o) == categories;
        let to_json = |id: i64, o: &StoredObject| shown(name, id, o, &base, categories);
        let r = store_rows(&*store, CLASSIFICATION, &q, false, Some(&keep), &to_json)?;
        // `count` is the categories (or the tags), not every
        // Classification row.
        let count = if categories {
            tags::categories(&*store)
        } else {
            tags::all_entries(&*store)
        }
        .map_err(ApiError::internal)?
        .len();
        Ok(q.answer(name, count, r.matched, r.rows, &[], &base))
    })
    .await?;
    ok(v)
}

/// A category or a tag as the API shows it: a tag is named by its path
/// (`/managed/<category>/<entry>`), with its own name as `entry_name` and
/// its category as `category_id`.
fn shown(name: &str, id: i64, o: &StoredObject, base: &str, categories: bool) -> Value {
    let mut v = object_json(name, id, o, base);
    if let Value::Object(m) = &mut v {
        m.remove("deleted_on");
        if !categories {
            if let Some(tag) = m.remove("tag_name") {
                let entry = m.insert("name".into(), tag);
                m.insert("entry_name".into(), entry.unwrap_or(Value::Null));
                let cat = m.remove("parent_id").unwrap_or(Value::Null);
                m.insert("category_id".into(), cat);
            }
        }
    }
    v
}

fn subcollection(base: &str, id: i64, name: &str, resources: Vec<Value>) -> Value {
    json!({
        "name": name,
        "href": format!("{base}/api/vms/{id}/{name}"),
        "count": resources.len(),
        "subcount": resources.len(),
        "resources": resources,
    })
}

/// `GET /api/categories/{id}`: one live category.
pub(super) async fn category(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
) -> ApiResult {
    classification(state, id, raw, "categories", true).await
}

/// `GET /api/tags/{id}`: one live tag.
pub(super) async fn tag_entry(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
) -> ApiResult {
    classification(state, id, raw, "tags", false).await
}

async fn classification(
    state: ApiState,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
    name: &'static str,
    categories: bool,
) -> ApiResult {
    let id = parse_id(&path_arg(id)?)?;
    let attributes = resource_query(raw)?;
    let store = state.store.clone();
    let base = base_url(&state);
    blocking(
        move || match store.load(CLASSIFICATION, id).map_err(ApiError::internal)? {
            Some(o) if live(&o) && is_category(&o) == categories => Ok(select(
                shown(name, id, &o, &base, categories),
                attributes.as_deref(),
            )),
            _ => Err(ApiError::not_found(format!("{name}/{id}: no such object"))),
        },
    )
    .await
    .and_then(ok)
}

/// `GET /api/vms/{id}/tags`: the VM's tags.
pub(super) async fn vm_tags(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    vm_subcollection(state, id, "tags", |store, vm, base| {
        let assigned = tags::assigned(store, vm).map_err(ApiError::internal)?;
        Ok(assigned
            .into_iter()
            .map(|t| {
                json!({
                    "href": format!("{base}/api/vms/{}/tags/{}", vm.id, t.id),
                    "id": t.id.to_string(),
                    "name": t.name,
                })
            })
            .collect())
    })
    .await
}

/// `GET /api/vms/{id}/custom_attributes`: the VM's custom attributes.
pub(super) async fn vm_custom_attributes(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    vm_subcollection(state, id, "custom_attributes", |store, vm, _| {
        let all = tags::custom_attributes(store, vm).map_err(ApiError::internal)?;
        Ok(all
            .into_iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "value": c.value,
                    "source": c.source,
                    "resource_type": "VmOrTemplate",
                    "resource_id": vm.id.to_string(),
                })
            })
            .collect())
    })
    .await
}

/// A subcollection `name` of the VM `id`, its resources made by
/// `resources` from the store, the VM and the API's base URL.
async fn vm_subcollection(
    state: ApiState,
    id: Result<Path<String>, PathRejection>,
    name: &'static str,
    resources: impl FnOnce(
            &dyn automate_vmdb::ObjectStore,
            &automate_vmdb::VmdbRef,
            &str,
        ) -> Result<Vec<Value>, ApiError>
        + Send
        + 'static,
) -> ApiResult {
    let id = parse_id(&path_arg(id)?)?;
    let store = state.store.clone();
    let base = base_url(&state);
    blocking(move || {
        let vm = store
            .find("VmOrTemplate", id)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found(format!("vms/{id}: no such object")))?;
        let rows = resources(&*store, &vm, &base)?;
        Ok(subcollection(&base, id, name, rows))
    })
    .await
    .and_then(ok)
}
