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
/// `MiqProvisionRequest::TASK_DESCRIPTION`.
pub(super) const PROVISION_TASK_DESCRIPTION: &str = "VM Provisioning";

/// The `TASK_DESCRIPTION` of a request's class.
pub(super) fn task_description(request: &VmdbRef) -> &'static str {
    if request
        .class
        .eq_ignore_ascii_case(automate_vmdb::request_task::PROVISION_REQUEST_CLASS)
    {
        PROVISION_TASK_DESCRIPTION
    } else {
        TASK_DESCRIPTION
    }
}

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

pub(super) use automate_vmdb::request_task::{set_task, tasks_of, touch, update_request_status};

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
    // Each object is loaded once and its fields read from it (a list of
    // requests reads ~15 fields of each: one load each would decode the
    // object 15 times).
    fn attrs_of(store: &dyn ObjectStore, r: &VmdbRef) -> Result<Attributes, StoreError> {
        Ok(store
            .load(&r.class, r.id)?
            .map(|o| o.attrs)
            .unwrap_or_default())
    }
    fn field(attrs: &Attributes, name: &str) -> String {
        attrs.get(name).map(|v| v.to_text()).unwrap_or_default()
    }
    let tasks = tasks_of(store, r)?
        .iter()
        .map(|t| {
            let a = attrs_of(store, t)?;
            Ok(TaskView {
                id: t.id,
                r#type: t.class.to_string(),
                state: field(&a, "state"),
                status: field(&a, "status"),
                message: field(&a, "message"),
                created_on: field(&a, "created_on"),
                updated_on: field(&a, "updated_on"),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let a = attrs_of(store, r)?;
    Ok(RequestView {
        id: r.id,
        r#type: r.class.to_string(),
        request_type: field(&a, "request_type"),
        approval_state: field(&a, "approval_state"),
        request_state: field(&a, "request_state"),
        status: field(&a, "status"),
        message: field(&a, "message"),
        userid: field(&a, "userid"),
        options: a
            .get("options")
            .map(datatype::to_json)
            .unwrap_or(serde_json::Value::Null),
        created_on: field(&a, "created_on"),
        updated_on: field(&a, "updated_on"),
        tasks,
    })
}
