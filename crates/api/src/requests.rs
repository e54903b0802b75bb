//! `/api/automation_requests`: create (ManageIQ's `create_from_ws` body,
//! plain or as a `create` action), list, show, and the `approve` / `deny`
//! actions, over [`automate_requests::Requests`] (blocking, so on the
//! blocking pool; creations are group-committed by `batch`). The same
//! list, show and actions serve `/api/provision_requests`
//! (`MiqProvisionRequest`, made by `create_provision_request`) and
//! `/api/requests` (every request, its kind in `type`).

use super::collection::{resource_query, select, store_rows, CollectionQuery, RawQuery};
use super::objects::object_json;
use super::{
    base_url, blocking, in_unit_under, json_object, kind_of, ok, opt_str, parse_id, path_arg,
    stringify_ids, ApiError, ApiResult, ApiState,
};
use automate_engine::AttrValue;
use automate_requests::{NewRequest, RequestError, RequestView, REQUEST_CLASS, REQUEST_TYPE};
use automate_vmdb::request_task::PROVISION_REQUEST_CLASS;
use automate_vmdb::StoredObject;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// ManageIQ's defaults for missing `uri_parts` (`AutomationRequest`).
const DEFAULT_NAMESPACE: &str = "SYSTEM";
const DEFAULT_CLASS: &str = "PROCESS";
const DEFAULT_INSTANCE: &str = "AUTOMATION";

/// A request error as an answer.
pub(super) fn request_error(e: RequestError) -> ApiError {
    let status = match e.kind() {
        "not_found" => StatusCode::NOT_FOUND,
        "bad_request" => StatusCode::BAD_REQUEST,
        "conflict" => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(target: "evm", "MIQ(Api) automation request: {e}");
    }
    ApiError::new(status, e.kind(), e.to_string())
}

/// A request as the API shows it: ManageIQ's string `id` (its tasks' too)
/// and an `href` in its own collection.
fn view_json(view: &RequestView, base: &str) -> Value {
    let mut v = serde_json::to_value(view).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert(
            "href".into(),
            json!(format!(
                "{base}/api/{}/{}",
                Kind::of_class(&view.r#type).collection(),
                view.id
            )),
        );
    }
    stringify_ids(&mut v);
    v
}

/// The request collections: automation requests, provisioning requests,
/// or every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Automation,
    Provision,
    All,
}

impl Kind {
    fn collection(self) -> &'static str {
        match self {
            Kind::Automation => "automation_requests",
            Kind::Provision => "provision_requests",
            Kind::All => "requests",
        }
    }

    /// The collection of a stored request class.
    fn of_class(class: &str) -> Kind {
        if class.eq_ignore_ascii_case(PROVISION_REQUEST_CLASS) {
            Kind::Provision
        } else {
            Kind::Automation
        }
    }

    /// Whether a stored row belongs to this collection.
    fn holds(self, o: &StoredObject) -> bool {
        let automation = o.class.eq_ignore_ascii_case(REQUEST_CLASS)
            && o.attrs.get("request_type") == Some(&AttrValue::str(REQUEST_TYPE));
        let provision = o.class.eq_ignore_ascii_case(PROVISION_REQUEST_CLASS);
        match self {
            Kind::Automation => automation,
            Kind::Provision => provision,
            Kind::All => automation || provision,
        }
    }
}

/// One `create_from_ws` resource, checked field by field (`at` names it in
/// errors: `""` for the body, `resources[2]` in a list).
fn parse_new(at: &str, v: &Value) -> Result<NewRequest, ApiError> {
    let dot = if at.is_empty() { "" } else { "." };
    let field = |f: &str| format!("{at}{dot}{f}");
    let Some(obj) = v.as_object() else {
        return Err(ApiError::bad_request(format!(
            "{}: expected an object, got {}",
            if at.is_empty() { "body" } else { at },
            kind_of(v)
        )));
    };
    if let Some(version) = obj.get("version") {
        if !(version.is_string() || version.is_number()) {
            return Err(ApiError::bad_request(format!(
                "{}: expected a string, got {}",
                field("version"),
                kind_of(version)
            )));
        }
    }
    let empty = Map::new();
    let sub = |key: &str| -> Result<&Map<String, Value>, ApiError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(&empty),
            Some(Value::Object(m)) => Ok(m),
            Some(other) => Err(ApiError::bad_request(format!(
                "{}: expected an object, got {}",
                field(key),
                kind_of(other)
            ))),
        }
    };
    let uri = sub("uri_parts")?;
    if !obj.contains_key("uri_parts") {
        return Err(ApiError::bad_request(format!(
            "{}: missing",
            field("uri_parts")
        )));
    }
    for k in uri.keys() {
        if !["namespace", "class", "instance", "message"].contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "{}: unknown key (namespace, class, instance, message)",
                field(&format!("uri_parts.{k}"))
            )));
        }
    }
    let part = |key: &str, default: &str| -> Result<String, ApiError> {
        let name = field(&format!("uri_parts.{key}"));
        let s = opt_str(uri, key, &name)?.unwrap_or(default).trim();
        let s = s.trim_matches('/');
        if s.is_empty() {
            return Err(ApiError::bad_request(format!("{name}: empty")));
        }
        automate_requests::check_uri_part(&name, s).map_err(request_error)?;
        Ok(s.to_string())
    };
    let namespace = part("namespace", DEFAULT_NAMESPACE)?;
    let class = part("class", DEFAULT_CLASS)?;
    let instance = part("instance", DEFAULT_INSTANCE)?;
    let message = opt_str(uri, "message", &field("uri_parts.message"))?.map(str::to_string);
    let parameters = sub("parameters")?.clone();
    automate_requests::check_parameters(&field("parameters"), &parameters)
        .map_err(request_error)?;
    let requester = sub("requester")?;
    let auto_approve = match requester.get("auto_approve") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "{}: expected true or false, got {}",
                field("requester.auto_approve"),
                kind_of(other)
            )))
        }
    };
    let userid =
        opt_str(requester, "user_name", &field("requester.user_name"))?.map(str::to_string);
    Ok(NewRequest {
        namespace,
        class,
        instance,
        message,
        parameters,
        auto_approve,
        userid,
    })
}

/// The URI must name an instance (or a `.missing`) of an enabled domain;
/// nothing is stored otherwise.
fn check_exists(state: &ApiState, at: &str, req: &NewRequest) -> Result<(), ApiError> {
    let index = state.engine.datastore().index();
    let dot = if at.is_empty() { "" } else { "." };
    let fq = req
        .namespace
        .split_once('/')
        .and_then(|(d, rest)| index.domain(d).map(|_| rest));
    let classes = index.classes_at(&req.namespace, &req.class);
    let fq_class = index.class(&req.namespace, &req.class);
    if classes.is_empty() && fq_class.is_none() {
        let known_ns = index.all_classes().any(|c| {
            c.namespace.eq_ignore_ascii_case(&req.namespace)
                || c.fq_namespace().eq_ignore_ascii_case(&req.namespace)
                || fq.is_some_and(|rest| c.namespace.eq_ignore_ascii_case(rest))
        });
        return Err(if known_ns {
            ApiError::bad_request(format!(
                "{at}{dot}uri_parts.class: no class [{}] in namespace [{}]",
                req.class, req.namespace
            ))
        } else {
            ApiError::bad_request(format!(
                "{at}{dot}uri_parts.namespace: no namespace [{}] in any enabled domain",
                req.namespace
            ))
        });
    }
    let found = index
        .resolve(&req.namespace, &req.class, &req.instance)
        .is_some()
        || fq_class.is_some_and(|c| {
            c.instance(&req.instance).is_some()
                || c.instance(automate_datastore::index::MISSING).is_some()
        });
    if !found {
        return Err(ApiError::bad_request(format!(
            "{at}{dot}uri_parts.instance: no instance [{}] (nor .missing) in /{}/{}",
            req.instance, req.namespace, req.class
        )));
    }
    Ok(())
}

/// `POST /api/automation_requests`.
pub(super) async fn create(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let obj = json_object(body, &state)?;
    let mut items: Vec<(String, NewRequest)> = Vec::new();
    match opt_str(&obj, "action", "action")? {
        None => items.push((String::new(), parse_new("", &Value::Object(obj.clone()))?)),
        Some("create") => match (obj.get("resource"), obj.get("resources")) {
            (Some(r), None) => items.push(("resource".into(), parse_new("resource", r)?)),
            (None, Some(Value::Array(list))) if list.len() > state.limits.max_resources => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!(
                        "resources: {} resources, more than the {} one action may create \
                         (api.limits.max_resources); send them in several requests",
                        list.len(),
                        state.limits.max_resources
                    ),
                ))
            }
            (None, Some(Value::Array(list))) if !list.is_empty() => {
                for (i, r) in list.iter().enumerate() {
                    let at = format!("resources[{i}]");
                    let new = parse_new(&at, r)?;
                    items.push((at, new));
                }
            }
            (None, Some(other)) => {
                return Err(ApiError::bad_request(format!(
                    "resources: expected a non-empty list, got {}",
                    kind_of(other)
                )))
            }
            _ => {
                return Err(ApiError::bad_request(
                    "a create action takes either resource or resources",
                ))
            }
        },
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "action: [{other}] is not supported on the collection (create)"
            )))
        }
    }
    for (at, new) in &items {
        check_exists(&state, at, new)?;
    }
    let base = base_url(&state);
    let views = state
        .batcher
        .create(items.into_iter().map(|(_, new)| new).collect())
        .await?;
    let results: Vec<Value> = views.iter().map(|v| view_json(v, &base)).collect();
    ok(json!({ "results": results }))
}

/// `GET /api/automation_requests`: a page of the requests by id (read
/// from the store only as far as the page goes without a filter or sort),
/// each shown as `GET /api/automation_requests/{id}` shows it; `count` is
/// every stored request. `filter[]` and `sort_by` see the stored request
/// row (`approval_state`, `request_state`, `status`, `userid`,
/// `created_on`, ...).
pub(super) async fn list(state: State<ApiState>, raw: RawQuery) -> ApiResult {
    list_of(state, raw, Kind::Automation).await
}

/// `GET /api/provision_requests`: [`list`] of the provisioning requests.
pub(super) async fn list_provision(state: State<ApiState>, raw: RawQuery) -> ApiResult {
    list_of(state, raw, Kind::Provision).await
}

/// `GET /api/requests`: [`list`] of every request (automation and
/// provisioning; `type` says which).
pub(super) async fn list_all(state: State<ApiState>, raw: RawQuery) -> ApiResult {
    list_of(state, raw, Kind::All).await
}

async fn list_of(State(state): State<ApiState>, raw: RawQuery, kind: Kind) -> ApiResult {
    let q = CollectionQuery::parse(raw, &[], &state.limits)?;
    let (store, requests) = (state.store.clone(), state.requests.clone());
    let base = base_url(&state);
    let v = blocking(move || {
        let held = |o: &StoredObject| kind.holds(o);
        let to_json = |id: i64, o: &StoredObject| object_json(kind.collection(), id, o, &base);
        let r = store_rows(&*store, "MiqRequest", &q, false, Some(&held), &to_json)?;
        let mut rows = Vec::with_capacity(r.rows.len());
        for row in &r.rows {
            let id = row["id"].as_str().and_then(|s| s.parse::<i64>().ok());
            let Some(id) = id else { continue };
            match requests.get(id) {
                Ok(view) => rows.push(view_json(&view, &base)),
                // Removed since the page was read.
                Err(e) if e.kind() == "not_found" => {}
                Err(e) => return Err(request_error(e)),
            }
        }
        let actions: &[&str] = if kind == Kind::Automation {
            &["create"]
        } else {
            &[]
        };
        Ok(q.answer(kind.collection(), r.count, r.matched, rows, actions, &base))
    })
    .await?;
    ok(v)
}

/// `GET /api/automation_requests/{id}`.
pub(super) async fn get(
    state: State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
) -> ApiResult {
    get_of(state, id, raw, Kind::Automation).await
}

/// `GET /api/provision_requests/{id}`.
pub(super) async fn get_provision(
    state: State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
) -> ApiResult {
    get_of(state, id, raw, Kind::Provision).await
}

/// `GET /api/requests/{id}`: a request of either kind.
pub(super) async fn get_any(
    state: State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
) -> ApiResult {
    get_of(state, id, raw, Kind::All).await
}

async fn get_of(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
    kind: Kind,
) -> ApiResult {
    let id = parse_id(&path_arg(id)?)?;
    let attributes = resource_query(raw)?;
    let requests = state.requests.clone();
    let view = blocking(move || requests.get(id).map_err(request_error)).await?;
    if kind != Kind::All && Kind::of_class(&view.r#type) != kind {
        return Err(request_error(RequestError::NotFound(id)));
    }
    ok(select(
        view_json(&view, &base_url(&state)),
        attributes.as_deref(),
    ))
}

/// `POST /api/automation_requests/{id}` with `{"action": "approve" |
/// "deny", "reason": ...}`: ManageIQ's action result, with the request
/// as `result`.
pub(super) async fn action(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = parse_id(&path_arg(id)?)?;
    let obj = json_object(body, &state)?;
    let action = opt_str(&obj, "action", "action")?
        .ok_or_else(|| ApiError::bad_request("action: missing (approve or deny)"))?
        .to_string();
    let reason = opt_str(&obj, "reason", "reason")?.map(str::to_string);
    let view = decide(&state, id, &action, reason).await?;
    let base = base_url(&state);
    let done = if action == "approve" {
        "approved"
    } else {
        "denied"
    };
    ok(json!({
        "success": true,
        "message": format!(
            "{} {id} {done}",
            if Kind::of_class(&view.r#type) == Kind::Provision {
                "Provision request"
            } else {
                "Automation request"
            }
        ),
        "href": format!(
            "{base}/api/{}/{id}",
            Kind::of_class(&view.r#type).collection()
        ),
        "result": view_json(&view, &base),
    }))
}

/// The `approve` or `deny` action on the request `id` (of either kind),
/// as `POST /api/requests/{id}` takes it: one approval or denial at a
/// time, written in one unit of work; a deny needs a non-blank `reason`.
/// The request as it is after the action (an approved request has run
/// its task's first delivery).
pub async fn decide(
    state: &ApiState,
    id: i64,
    action: &str,
    reason: Option<String>,
) -> Result<RequestView, ApiError> {
    let requests = state.requests.clone();
    // One approval or denial at a time, until its unit has committed.
    let approvals = Some(state.approvals.clone());
    match action {
        "approve" => {
            in_unit_under(state.store.clone(), approvals, move |objects| {
                requests
                    .with_store(objects)
                    .approve(id, reason.as_deref())
                    .map_err(request_error)
            })
            .await
        }
        "deny" => {
            let reason = reason
                .filter(|r| !r.trim().is_empty())
                .ok_or_else(|| ApiError::bad_request("reason: a deny needs a reason"))?;
            in_unit_under(state.store.clone(), approvals, move |objects| {
                requests
                    .with_store(objects)
                    .deny(id, &reason)
                    .map_err(request_error)
            })
            .await
        }
        other => Err(ApiError::bad_request(format!(
            "action: [{other}] is not supported (approve, deny)"
        ))),
    }
}

/// A `create_from_ws` body (`uri_parts`, `parameters`, `requester`) read
/// as `POST /api/automation_requests` reads it; a 400 naming the field
/// (`uri_parts.namespace`, `parameters.x`, ...) when it is wrong.
pub fn parse_request(body: &Value) -> Result<NewRequest, ApiError> {
    parse_new("", body)
}

/// Creates one automation request as `POST /api/automation_requests`
/// does: the URI must name an instance of an enabled domain, then the
/// request is stored (group-committed with the API's other creations),
/// `request_created` raised and, with `auto_approve`, the request
/// approved and its task run.
pub async fn create_request(state: &ApiState, new: NewRequest) -> Result<RequestView, ApiError> {
    check_exists(state, "", &new)?;
    state
        .batcher
        .create(vec![new])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the request writer answered no request"))
}

/// A page of every request, newest first, and how many there are
/// ([`automate_requests::Requests::page_newest`]).
pub async fn requests_page(
    state: &ApiState,
    skip: usize,
    limit: usize,
) -> Result<(usize, Vec<RequestView>), ApiError> {
    let requests = state.requests.clone();
    blocking(move || requests.page_newest(skip, limit).map_err(request_error)).await
}

/// The request `id` (of either kind) with its tasks; a 404 when there is
/// none.
pub async fn request(state: &ApiState, id: i64) -> Result<RequestView, ApiError> {
    let requests = state.requests.clone();
    blocking(move || requests.get(id).map_err(request_error)).await
}

/// One request event raised for a request (a stored `RequestEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEventRow {
    /// The event's id (`/api/event_streams/{id}`).
    pub id: i64,
    /// `request_created`, `request_approved`, `request_starting`,
    /// `request_denied`.
    pub event_type: String,
    /// When it was raised.
    pub timestamp: String,
}

/// The request events raised for the request `id`, by id (the order they
/// were raised in).
pub async fn request_events(state: &ApiState, id: i64) -> Result<Vec<RequestEventRow>, ApiError> {
    let store = state.store.clone();
    blocking(move || {
        let refs = store
            .find_by("RequestEvent", "target_id", &AttrValue::Int(id))
            .map_err(ApiError::internal)?;
        let mut rows = Vec::with_capacity(refs.len());
        for r in refs {
            let Some(o) = store.load(&r.class, r.id).map_err(ApiError::internal)? else {
                continue;
            };
            let text = |k: &str| match o.attrs.get(k) {
                Some(AttrValue::Str(s)) => s.clone(),
                _ => String::new(),
            };
            if !text("target_type").eq_ignore_ascii_case("MiqRequest") {
                continue;
            }
            rows.push(RequestEventRow {
                id: r.id,
                event_type: text("event_type"),
                timestamp: text("timestamp"),
            });
        }
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    })
    .await
}
