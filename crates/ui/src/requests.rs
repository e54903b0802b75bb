//! Requests and retries: the automation and provisioning requests with
//! their state, status, approval state and requester; one request's
//! options, tasks and the request events raised for it, with the approve
//! and deny forms (a reason; CSRF-checked by the guard, answered with a
//! 303 back and a flash); the "New automation request" form; and the
//! scheduled state-machine retries with their state and due time.
//!
//! Every action goes through the REST API's own code (`automate_api`'s
//! `parse_request`, `create_request`, `decide`, `requests_page`, ...), so a
//! request made here is made exactly as `POST /api/automation_requests`
//! makes it.
//!
//! Routes: `GET /ui/requests`, `GET /ui/requests/new`, `POST
//! /ui/requests` (create), `GET /ui/requests/{id}` (`?fragment=state`: the
//! state section htmx polls until the request finishes), `POST
//! /ui/requests/{id}/approve`, `POST /ui/requests/{id}/deny`, `GET
//! /ui/retries`.

use crate::page::{back_with, error_page, html, iso_time, see_other, Layout};
use crate::session::{Flash, SessionInfo};
use crate::UiState;
use askama::Template;
use automate_api::{ApiError, RequestEventRow, RequestView, RetryView};
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::SystemTime;

/// How many attribute rows the new request form offers.
pub const ATTRIBUTE_ROWS: usize = 6;

/// The page answered when the UI runs without the API's state (only the
/// render benchmark does).
pub(crate) fn no_api(session: &SessionInfo) -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(session),
        "Not available",
        "This page needs the object store: it is served by automate run and automate api.",
    )
}

/// An API error as a page: its status and message.
pub(crate) fn api_error_page(session: &SessionInfo, heading: &str, e: ApiError) -> Response {
    error_page(e.status, Some(session), heading, e.message)
}

/// A request as a row of the list.
pub(crate) struct RequestRow {
    pub id: i64,
    pub href: String,
    pub kind: &'static str,
    pub target: String,
    pub approval_state: String,
    pub request_state: String,
    pub status: String,
    pub message: String,
    pub userid: String,
    pub created_on: String,
    pub updated_on: String,
}

fn kind_label(v: &RequestView) -> &'static str {
    if v.r#type.eq_ignore_ascii_case("MiqProvisionRequest") {
        "Provision"
    } else {
        "Automation"
    }
}

/// The URI a request runs: `/namespace/class/instance` (`#message`).
fn target_of(v: &RequestView) -> String {
    let o = &v.options;
    let part = |k: &str| o[k].as_str().unwrap_or("").to_string();
    if v.r#type.eq_ignore_ascii_case("MiqProvisionRequest") {
        let name = o["vm_name"].as_str().unwrap_or("");
        return format!("VM {name}");
    }
    let mut s = format!(
        "/{}/{}/{}",
        part("namespace"),
        part("class_name"),
        part("instance_name")
    );
    if let Some(m) = o["message"].as_str().filter(|m| !m.is_empty()) {
        s.push('#');
        s.push_str(m);
    }
    s
}

fn row_of(v: &RequestView) -> RequestRow {
    RequestRow {
        id: v.id,
        href: format!("/ui/requests/{}", v.id),
        kind: kind_label(v),
        target: target_of(v),
        approval_state: v.approval_state.clone(),
        request_state: v.request_state.clone(),
        status: v.status.clone(),
        message: v.message.clone(),
        userid: v.userid.clone(),
        created_on: v.created_on.clone(),
        updated_on: v.updated_on.clone(),
    }
}

/// Requests shown per page of the list.
pub(crate) const REQUESTS_PAGE: usize = 100;

/// `templates/requests.html`.
#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    layout: Layout,
    rows: Vec<RequestRow>,
    /// How many requests there are in all.
    total: usize,
    /// The first and last shown (1-based, newest first).
    first: usize,
    last: usize,
    /// Links to the newer and older pages, when there are.
    newer: Option<String>,
    older: Option<String>,
}

/// The list's `?page=` (1-based).
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    page: Option<String>,
}

/// `GET /ui/requests`: every request, newest first, [`REQUESTS_PAGE`] a
/// page (`?page=N`); only the page's requests are read.
pub(crate) async fn list(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Query(q): Query<ListQuery>,
) -> Response {
    let Some(api) = &state.api() else {
        return no_api(&session);
    };
    let page = match q.page.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => 1,
        Some(p) => match p.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    Some(&session),
                    "Requests",
                    format!("page: `{p}` is not a page number (1, 2, ...)"),
                )
            }
        },
    };
    let skip = (page - 1).saturating_mul(REQUESTS_PAGE);
    let (total, views) = match automate_api::requests_page(api, skip, REQUESTS_PAGE).await {
        Ok(v) => v,
        Err(e) => return api_error_page(&session, "Requests", e),
    };
    let rows: Vec<RequestRow> = views.iter().map(row_of).collect();
    let link = |n: usize| format!("/ui/requests?page={n}");
    html(
        &RequestsPage {
            layout: Layout::flashed("Requests", &state, &session, "/ui/requests"),
            first: if rows.is_empty() { 0 } else { skip + 1 },
            last: skip + rows.len(),
            newer: (page > 1).then(|| link(page - 1)),
            older: (skip + rows.len() < total).then(|| link(page + 1)),
            total,
            rows,
        },
        StatusCode::OK,
    )
}

/// One attribute row of the new request form.
pub(crate) struct AttrRow {
    pub n: usize,
    pub key: String,
    pub value: String,
}

/// `templates/request_new.html`.
#[derive(Template)]
#[template(path = "request_new.html")]
struct NewRequestPage {
    layout: Layout,
    error: Option<String>,
    namespace: String,
    class: String,
    instance: String,
    message: String,
    user_name: String,
    auto_approve: bool,
    attrs: Vec<AttrRow>,
}

fn new_page(state: &UiState, session: &SessionInfo, form: &[(String, String)]) -> NewRequestPage {
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    NewRequestPage {
        layout: Layout::flashed("New automation request", state, session, "/ui/requests"),
        error: None,
        namespace: get("namespace"),
        class: get("class"),
        instance: get("instance"),
        message: get("message"),
        user_name: get("user_name"),
        auto_approve: get("auto_approve") == "true",
        attrs: (0..ATTRIBUTE_ROWS)
            .map(|n| AttrRow {
                n,
                key: get(&format!("attr_key_{n}")),
                value: get(&format!("attr_value_{n}")),
            })
            .collect(),
    }
}

/// `GET /ui/requests/new`: the form (`?namespace=&class=&instance=`
/// prefill it).
pub(crate) async fn new_form(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    html(&new_page(&state, &session, &q), StatusCode::OK)
}

/// The form as the body `POST /api/automation_requests` takes: `uri_parts`,
/// `parameters` (the attribute rows with a name) and `requester`.
pub fn request_body(form: &[(String, String)]) -> Result<Value, String> {
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut uri = Map::new();
    for (field, key) in [
        ("namespace", "namespace"),
        ("class", "class"),
        ("instance", "instance"),
        ("message", "message"),
    ] {
        let v = get(field);
        if !v.is_empty() {
            uri.insert(key.into(), Value::String(v));
        }
    }
    let mut parameters = Map::new();
    for n in 0..ATTRIBUTE_ROWS {
        let key = get(&format!("attr_key_{n}"));
        let value = get(&format!("attr_value_{n}"));
        if key.is_empty() {
            if !value.is_empty() {
                return Err(format!("attribute row {}: a value without a name", n + 1));
            }
            continue;
        }
        if parameters.contains_key(&key) {
            return Err(format!("attribute row {}: [{key}] is given twice", n + 1));
        }
        parameters.insert(key, Value::String(value));
    }
    let mut requester = Map::new();
    let user = get("user_name");
    if !user.is_empty() {
        requester.insert("user_name".into(), Value::String(user));
    }
    requester.insert(
        "auto_approve".into(),
        Value::Bool(get("auto_approve") == "true"),
    );
    Ok(json!({
        "uri_parts": uri,
        "parameters": parameters,
        "requester": requester,
    }))
}

/// `POST /ui/requests`: creates the request as the API does, then on to
/// its page; a bad field answers the form again (400) naming it.
pub(crate) async fn create(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let Some(api) = &state.api() else {
        return no_api(&session);
    };
    let refused = |message: String| {
        let mut page = new_page(&state, &session, &form);
        page.error = Some(message);
        html(&page, StatusCode::BAD_REQUEST)
    };
    let body = match request_body(&form) {
        Ok(b) => b,
        Err(m) => return refused(m),
    };
    let new = match automate_api::parse_request(&body) {
        Ok(n) => n,
        Err(e) => return refused(e.message),
    };
    match automate_api::create_request(api, new).await {
        Ok(view) => {
            tracing::info!(target: "evm", "MIQ(ui) automation request [{}] created", view.id);
            back_with(
                &state,
                &session,
                &format!("/ui/requests/{}", view.id),
                Flash::done(format!(
                    "Automation request {} created ({}, {}).",
                    view.id, view.approval_state, view.request_state
                )),
            )
        }
        Err(e) if e.status == StatusCode::BAD_REQUEST => refused(e.message),
        Err(e) => api_error_page(&session, "The request was not created", e),
    }
}

/// A task as the request page shows it.
pub(crate) struct TaskRow {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub status: String,
    pub message: String,
    pub created_on: String,
    pub updated_on: String,
}

/// The request's state section (also the fragment htmx polls).
#[derive(Template)]
#[template(path = "request_state.html")]
pub(crate) struct StateSection {
    pub id: i64,
    pub row: RequestRow,
    pub tasks: Vec<TaskRow>,
    pub events: Vec<RequestEventRow>,
    /// Polled until the request has finished.
    pub polling: bool,
}

/// `templates/request.html`.
#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    layout: Layout,
    section: StateSection,
    options: Vec<(String, String)>,
    attrs: Vec<(String, String)>,
    pending: bool,
    approval_state: String,
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `fragment` query of a request page.
#[derive(Debug, Deserialize)]
pub(crate) struct RequestQuery {
    fragment: Option<String>,
}

/// `GET /ui/requests/{id}`: the request, its options, tasks and events,
/// and the approve and deny forms while it waits for approval.
pub(crate) async fn request(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    Query(q): Query<RequestQuery>,
) -> Response {
    let Some(api) = &state.api() else {
        return no_api(&session);
    };
    let Ok(id) = id.trim().parse::<i64>() else {
        return error_page(
            StatusCode::NOT_FOUND,
            Some(&session),
            "No such request",
            format!("[{id}] is not a request id."),
        );
    };
    let view = match automate_api::request(api, id).await {
        Ok(v) => v,
        Err(e) => return api_error_page(&session, "No such request", e),
    };
    let events = match automate_api::request_events(api, id).await {
        Ok(e) => e,
        Err(e) => return api_error_page(&session, "Request events", e),
    };
    let section = StateSection {
        id,
        row: row_of(&view),
        tasks: view
            .tasks
            .iter()
            .map(|t| TaskRow {
                id: t.id,
                kind: t.r#type.clone(),
                state: t.state.clone(),
                status: t.status.clone(),
                message: t.message.clone(),
                created_on: t.created_on.clone(),
                updated_on: t.updated_on.clone(),
            })
            .collect(),
        events,
        polling: view.request_state != "finished",
    };
    if q.fragment.as_deref() == Some("state") {
        return html(&section, StatusCode::OK);
    }
    let mut options = Vec::new();
    let mut attrs = Vec::new();
    if let Value::Object(m) = &view.options {
        for (k, v) in m {
            if k == "attrs" {
                if let Value::Object(a) = v {
                    attrs = a.iter().map(|(k, v)| (k.clone(), show(v))).collect();
                }
                continue;
            }
            options.push((k.clone(), show(v)));
        }
    }
    html(
        &RequestPage {
            layout: Layout::flashed(format!("Request {id}"), &state, &session, "/ui/requests"),
            pending: view.approval_state == "pending_approval",
            approval_state: view.approval_state.clone(),
            section,
            options,
            attrs,
        },
        StatusCode::OK,
    )
}

/// The approve and deny forms' field.
#[derive(Debug, Deserialize)]
pub(crate) struct DecisionForm {
    #[serde(default)]
    reason: String,
}

async fn decide(
    state: UiState,
    session: SessionInfo,
    id: String,
    action: &str,
    reason: String,
) -> Response {
    let Some(api) = &state.api() else {
        return no_api(&session);
    };
    let back = format!("/ui/requests/{}", crate::page::url_encode(&id, false));
    let Ok(n) = id.trim().parse::<i64>() else {
        return see_other("/ui/requests");
    };
    let reason = Some(reason).filter(|r| !r.trim().is_empty());
    let flash = match automate_api::decide(api, n, action, reason).await {
        Ok(v) => Flash::done(format!(
            "Request {n} {}: {} ({}).",
            if action == "approve" {
                "approved"
            } else {
                "denied"
            },
            v.request_state,
            v.status
        )),
        Err(e) => Flash::failed(format!("Request {n} was not {action}d: {}", e.message)),
    };
    back_with(&state, &session, &back, flash)
}

/// `POST /ui/requests/{id}/approve` (reason optional).
pub(crate) async fn approve(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    decide(state, session, id, "approve", form.reason).await
}

/// `POST /ui/requests/{id}/deny` (a reason is required).
pub(crate) async fn deny(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    decide(state, session, id, "deny", form.reason).await
}

/// A scheduled retry as the retries page shows it.
pub(crate) struct RetryRow {
    pub id: u64,
    pub uri: String,
    pub state: &'static str,
    pub due: String,
    pub when: String,
    pub deliveries: u64,
    pub attempts: u32,
}

fn retry_row(r: &RetryView, now: SystemTime) -> RetryRow {
    let (state, when) = if r.leased {
        ("running", "a runner holds it".to_string())
    } else {
        match r.run_at.duration_since(now) {
            Ok(d) => ("scheduled", format!("in {}", human(d.as_secs()))),
            Err(e) => ("due", format!("{} ago", human(e.duration().as_secs()))),
        }
    };
    RetryRow {
        id: r.id,
        uri: r.uri.clone(),
        state,
        due: iso_time(r.run_at),
        when,
        deliveries: r.deliveries,
        attempts: r.attempts,
    }
}

/// `secs` as `45 s`, `3 min`, `2 h`, `4 d`.
fn human(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// `templates/retries.html`.
#[derive(Template)]
#[template(path = "retries.html")]
struct RetriesPage {
    layout: Layout,
    rows: Vec<RetryRow>,
}

/// `GET /ui/retries`: the scheduled state-machine retries by due time.
pub(crate) async fn retries(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
) -> Response {
    let Some(api) = &state.api() else {
        return no_api(&session);
    };
    let mut list = match automate_api::scheduled_retries(api).await {
        Ok(v) => v,
        Err(e) => return api_error_page(&session, "Retries", e),
    };
    list.sort_by_key(|r| (r.run_at, r.id));
    let now = SystemTime::now();
    html(
        &RetriesPage {
            layout: Layout::flashed("Scheduled retries", &state, &session, "/ui/retries"),
            rows: list.iter().map(|r| retry_row(r, now)).collect(),
        },
        StatusCode::OK,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_form_becomes_the_apis_body() {
        let body = request_body(&pairs(&[
            ("namespace", " Test "),
            ("class", "Work"),
            ("instance", "hello"),
            ("message", ""),
            ("attr_key_0", "who"),
            ("attr_value_0", "Ada"),
            ("attr_key_1", ""),
            ("attr_value_1", ""),
            ("auto_approve", "true"),
        ]))
        .unwrap();
        assert_eq!(
            body,
            json!({"uri_parts": {"namespace": "Test", "class": "Work", "instance": "hello"},
                   "parameters": {"who": "Ada"}, "requester": {"auto_approve": true}})
        );
        let e = request_body(&pairs(&[("attr_key_2", ""), ("attr_value_2", "x")])).unwrap_err();
        assert_eq!(e, "attribute row 3: a value without a name");
        let e = request_body(&pairs(&[("attr_key_0", "a"), ("attr_key_1", "a")])).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(5), "5 s");
        assert_eq!(human(600), "10 min");
        assert_eq!(human(3 * 3600), "3 h");
        assert_eq!(human(3 * 86_400), "3 d");
    }
}
