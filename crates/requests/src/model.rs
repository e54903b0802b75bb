//! The stored request and task: their classes, the rows `create` and
//! `approve` write, their state and status (`update_request_status`), and
//! how they are shown to callers ([`RequestView`], [`TaskView`]).

use automate_core::time::iso8601_secs_now;
use automate_engine::{datatype, AttrValue, Attributes};
use automate_vmdb::{ObjectStore, StoreError, VmdbRef};

/// The stored class of a request.
pub const REQUEST_CLASS: &str = "AutomationRequest";
/// The stored class of a request's task.
pub const TASK_CLASS: &str = "AutomationTask";
/// `MiqRequest#request_type` of an automation request.
pub const REQUEST_TYPE: &str = "automation";
/// `AutomationRequest::TASK_DESCRIPTION`.
pub(super) const TASK_DESCRIPTION: &str = "Automation Request";

/// What a caller asks for (the body of `POST /api/automation_requests`,
/// flattened).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NewRequest {
    /// The instance's namespace (`System/Request`; slashes at either end
    /// are dropped).
    pub namespace: String,
    /// The class name, one segment.
    pub class: String,
    /// The instance name, one segment; it must exist (not `.missing`).
    pub instance: String,
    /// The message the task's URI is instantiated with (`#message`);
    /// `None` or blank for the default, `create`.
    #[serde(default)]
    pub message: Option<String>,
    /// Attributes given to the task's URI (a key may name an object,
    /// `VmOrTemplate::vm`, but not a system key).
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// Approve at once after `request_created` is raised.
    #[serde(default)]
    pub auto_approve: bool,
    /// The requester; `admin` when `None` or blank.
    #[serde(default)]
    pub userid: Option<String>,
}

/// One task of a request, as shown to callers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskView {
    /// The task's object id.
    pub id: i64,
    /// Its stored class, `AutomationTask`.
    pub r#type: String,
    /// `pending`, `active` or `finished`.
    pub state: String,
    /// `Ok`, `Warn` or `Error`.
    pub status: String,
    /// `Automation Starting`, then the outcome (`ae_message` when set).
    pub message: String,
    /// When it was created, ISO 8601 UTC to the second.
    pub created_on: String,
    /// When it last changed, ISO 8601 UTC to the second.
    pub updated_on: String,
}

/// A request as shown to callers (CLI `--json`, REST API).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RequestView {
    /// The request's object id.
    pub id: i64,
    /// Its stored class, `AutomationRequest`.
    pub r#type: String,
    /// `MiqRequest#request_type`: `automation`.
    pub request_type: String,
    /// `pending_approval`, `approved` or `denied`.
    pub approval_state: String,
    /// `pending`, `active` or `finished` (once it has a task, its task's).
    pub request_state: String,
    /// `Ok`, `Warn` or `Error` (the worst of its tasks'), or `Denied`.
    pub status: String,
    /// The task's message when it has one task; `Request denied: ..` or
    /// `Aborting because ..` when it never got one.
    pub message: String,
    /// The requester.
    pub userid: String,
    /// ManageIQ's `options`: `namespace`, `class_name`, `instance_name`,
    /// `message`, `attrs` (the parameters and `userid`), `schedule_type`.
    pub options: serde_json::Value,
    /// When it was created, ISO 8601 UTC to the second.
    pub created_on: String,
    /// When it last changed, ISO 8601 UTC to the second.
    pub updated_on: String,
    /// Its tasks by id: none before approval, then one.
    pub tasks: Vec<TaskView>,
}

/// The row of a new request (`pending_approval`, `pending`), created and
/// updated now.
pub(super) fn request_row(userid: String, options: &serde_json::Value) -> Attributes {
    let now = iso8601_secs_now();
    let mut row = Attributes::default();
    row.insert("type".into(), AttrValue::str(REQUEST_CLASS));
    row.insert("request_type".into(), AttrValue::str(REQUEST_TYPE));
    row.insert("description".into(), AttrValue::str(TASK_DESCRIPTION));
    row.insert("approval_state".into(), AttrValue::str("pending_approval"));
    row.insert("request_state".into(), AttrValue::str("pending"));
    row.insert("status".into(), AttrValue::str("Ok"));
    row.insert("message".into(), AttrValue::str(""));
    row.insert("userid".into(), AttrValue::str(userid.clone()));
    row.insert("requester_name".into(), AttrValue::str(userid));
    row.insert("options".into(), datatype::from_json(options));
    row.insert("created_on".into(), AttrValue::str(now.clone()));
    row.insert("updated_on".into(), AttrValue::str(now));
    row
}

/// The row of `request`'s new task (`pending`), created and updated now.
pub(super) fn task_row(
    request: &VmdbRef,
    userid: String,
    options: &serde_json::Value,
) -> Attributes {
    let now = iso8601_secs_now();
    let mut row = Attributes::default();
    row.insert("type".into(), AttrValue::str(TASK_CLASS));
    row.insert("request_type".into(), AttrValue::str(REQUEST_TYPE));
    row.insert("description".into(), AttrValue::str("Automation Task"));
    row.insert("state".into(), AttrValue::str("pending"));
    row.insert("status".into(), AttrValue::str("Ok"));
    row.insert("message".into(), AttrValue::str("Automation Starting"));
    row.insert("miq_request_id".into(), AttrValue::Int(request.id));
    row.insert("userid".into(), AttrValue::str(userid));
    row.insert("options".into(), datatype::from_json(options));
    row.insert("created_on".into(), AttrValue::str(now.clone()));
    row.insert("updated_on".into(), AttrValue::str(now));
    row
}

/// Sets a task's state, status and message (and `updated_on`).
pub(super) fn set_task(
    store: &dyn ObjectStore,
    task: &VmdbRef,
    state: &str,
    status: &str,
    message: &str,
) -> Result<(), StoreError> {
    store.update(task, "state", AttrValue::str(state))?;
    store.update(task, "status", AttrValue::str(status))?;
    store.update(task, "message", AttrValue::str(message))?;
    touch(store, task)
}

/// `MiqRequest#update_request_status`: the request's state is its tasks'
/// state when they all agree (else `active`), its status the worst of
/// theirs, its message the task's when there is one task.
pub(super) fn update_request_status(
    store: &dyn ObjectStore,
    request: &VmdbRef,
) -> Result<(), StoreError> {
    let tasks = tasks_of(store, request)?;
    if tasks.is_empty() {
        return Ok(());
    }
    let states = tasks
        .iter()
        .map(|t| text(store, t, "state"))
        .collect::<Result<Vec<String>, _>>()?;
    let statuses = tasks
        .iter()
        .map(|t| text(store, t, "status"))
        .collect::<Result<Vec<String>, _>>()?;
    let first = states[0].clone();
    let state = if states.iter().all(|s| *s == first) {
        first
    } else {
        "active".to_string()
    };
    // ManageIQ reports a task still being prepared as an active request.
    let state = match state.as_str() {
        "pending" | "queued" => "active".to_string(),
        _ => state,
    };
    let status = ["Error", "Timeout", "Warn"]
        .into_iter()
        .find(|s| statuses.iter().any(|t| t == s))
        .unwrap_or("Ok");
    let message = if tasks.len() == 1 {
        text(store, &tasks[0], "message")?
    } else if state == "finished" && status == "Ok" {
        "Request complete".to_string()
    } else if state == "finished" {
        "Request completed with errors".to_string()
    } else {
        format!("{} tasks", tasks.len())
    };
    store.update(request, "request_state", AttrValue::str(state.clone()))?;
    store.update(request, "status", AttrValue::str(status))?;
    store.update(request, "message", AttrValue::str(message))?;
    if state == "finished" {
        store.update(request, "fulfilled_on", AttrValue::str(iso8601_secs_now()))?;
    }
    touch(store, request)
}

/// The tasks of `request`, by id.
fn tasks_of(store: &dyn ObjectStore, request: &VmdbRef) -> Result<Vec<VmdbRef>, StoreError> {
    let mut tasks = store.find_by(
        "MiqRequestTask",
        "miq_request_id",
        &AttrValue::Int(request.id),
    )?;
    tasks.sort_by_key(|t| t.id);
    Ok(tasks)
}

/// Sets `updated_on` to now.
pub(super) fn touch(store: &dyn ObjectStore, obj: &VmdbRef) -> Result<(), StoreError> {
    store.update(obj, "updated_on", AttrValue::str(iso8601_secs_now()))
}

/// A stored attribute as text (`""` when absent; a failed read is an
/// error).
pub(super) fn text(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    name: &str,
) -> Result<String, StoreError> {
    Ok(store
        .attribute(obj, name)?
        .map(|v| v.to_text())
        .unwrap_or_default())
}

/// A request with its tasks, as shown to callers (a failed read fails the
/// view rather than showing empty fields).
pub(super) fn view(store: &dyn ObjectStore, r: &VmdbRef) -> Result<RequestView, StoreError> {
    let tasks = tasks_of(store, r)?
        .iter()
        .map(|t| {
            Ok(TaskView {
                id: t.id,
                r#type: t.class.to_string(),
                state: text(store, t, "state")?,
                status: text(store, t, "status")?,
                message: text(store, t, "message")?,
                created_on: text(store, t, "created_on")?,
                updated_on: text(store, t, "updated_on")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(RequestView {
        id: r.id,
        r#type: r.class.to_string(),
        request_type: text(store, r, "request_type")?,
        approval_state: text(store, r, "approval_state")?,
        request_state: text(store, r, "request_state")?,
        status: text(store, r, "status")?,
        message: text(store, r, "message")?,
        userid: text(store, r, "userid")?,
        options: store
            .attribute(r, "options")?
            .map(|v| datatype::to_json(&v))
            .unwrap_or(serde_json::Value::Null),
        created_on: text(store, r, "created_on")?,
        updated_on: text(store, r, "updated_on")?,
        tasks,
    })
}
