//! Automation requests (ManageIQ's `AutomationRequest` and `AutomationTask`,
//! `docs/requests.md`): a request to run an Automate URI, with an approval
//! step, whose life is raised to Automate as request events, and which one
//! task executes through [`crate::engine::deliver`] so that a state machine
//! asking for a retry is scheduled durably.
//!
//! The life of a request, as `MiqRequest` has it:
//!
//! 1. [`Requests::create`] checks that the namespace, class and instance
//!    exist, stores an `AutomationRequest` (`pending_approval`, `pending`)
//!    and raises `request_created`: a `RequestEvent` row is stored and
//!    `/System/Process/Event` is delivered with the request, the event and
//!    `vmdb_object_type=automation_request`; with `auto_approve` it then
//!    approves the request at once.
//! 2. [`Requests::approve`] raises `request_approved`, then (synchronously)
//!    `request_starting`, creates the `AutomationTask` and delivers the
//!    requested URI with the request's parameters and the task
//!    (`AutomationTask::automation_task`). [`Requests::deny`] finishes the
//!    request with status `Denied` and raises `request_denied`.
//! 3. When a delivery for an `AutomationTask` ends (the first one or a
//!    retry run by `automate retries run-due` or the pipeline's retry
//!    runner), [`after_ae_delivery`] finishes the task and the request with
//!    the outcome: `ok` → `Ok`, `warn` → `Warn`, anything else → `Error`. A
//!    retry leaves both `active`.
//!
//! The lines ManageIQ writes (`MIQ(AutomationRequest#call_automate_event)
//! Raising event [..] to Automate`, the deliveries) go to `tracing` targets
//! `evm` and `automation`; Automate's own trace goes to `automation`.

use crate::engine::deliver::{deliver, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
use crate::engine::{datatype, inspect_delivery_attrs, keys, AttrValue, Attributes, Engine};
use crate::uri::hash2query;
use crate::vmdb::{ObjectStore, Schedule, StoreError, VmdbRef};
use std::sync::{Arc, Mutex};

/// The stored class of a request.
pub const REQUEST_CLASS: &str = "AutomationRequest";
/// The stored class of a request's task.
pub const TASK_CLASS: &str = "AutomationTask";
/// `MiqRequest#request_type` of an automation request.
pub const REQUEST_TYPE: &str = "automation";
/// `AutomationRequest::TASK_DESCRIPTION`.
const TASK_DESCRIPTION: &str = "Automation Request";

/// The request service: creates, approves, denies and reads automation
/// requests in the engine's object store. `Send + Sync`; share it as
/// `Arc<Requests>`. Every call blocks (object store writes, Automate).
pub struct Requests {
    engine: Engine,
    schedule: Arc<dyn Schedule>,
    /// Serializes approval-state changes (two approvals of one request
    /// must not both start a task).
    lock: Mutex<()>,
}

/// What a caller asks for (the body of `POST /api/automation_requests`,
/// flattened).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NewRequest {
    pub namespace: String,
    pub class: String,
    pub instance: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub auto_approve: bool,
    #[serde(default)]
    pub userid: Option<String>,
}

/// One task of a request, as shown to callers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskView {
    pub id: i64,
    pub r#type: String,
    pub state: String,
    pub status: String,
    pub message: String,
    pub created_on: String,
    pub updated_on: String,
}

/// A request as shown to callers (CLI `--json`, REST API).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestView {
    pub id: i64,
    pub r#type: String,
    pub request_type: String,
    pub approval_state: String,
    pub request_state: String,
    pub status: String,
    pub message: String,
    pub userid: String,
    pub options: serde_json::Value,
    pub created_on: String,
    pub updated_on: String,
    pub tasks: Vec<TaskView>,
}

/// Why a request operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("automation request [{0}] not found")]
    NotFound(i64),
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("automation request [{id}] is {state}: cannot {action} it")]
    WrongState {
        id: i64,
        state: String,
        action: String,
    },
    #[error("unknown {what} [{path}] in the datastore")]
    Unknown { what: String, path: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RequestError {
    /// The error's kind, as the REST API reports it: `not_found`,
    /// `bad_request`, `conflict` or `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::NotFound(_) => "not_found",
            RequestError::Invalid { .. } | RequestError::Unknown { .. } => "bad_request",
            RequestError::WrongState { .. } => "conflict",
            RequestError::Store(_) => "internal",
        }
    }
}

impl Requests {
    /// A service over the engine's object store; retries go to `schedule`
    /// (the same store's scheduled-work table).
    pub fn new(engine: Engine, schedule: impl Schedule + 'static) -> Requests {
        Requests {
            engine,
            schedule: Arc::new(schedule),
            lock: Mutex::new(()),
        }
    }

    fn store(&self) -> &dyn ObjectStore {
        self.engine.store().as_ref()
    }

    /// Creates a request (refused, with nothing stored, when the
    /// namespace, class or instance does not exist), raises
    /// `request_created`, and with `auto_approve` approves it and runs its
    /// task before returning.
    pub fn create(&self, req: NewRequest) -> Result<RequestView, RequestError> {
        let namespace = clean_path(&req.namespace);
        let class = clean_path(&req.class);
        let instance = req.instance.trim().to_string();
        for (field, value) in [
            ("namespace", &namespace),
            ("class", &class),
            ("instance", &instance),
        ] {
            if value.is_empty() {
                return Err(RequestError::Invalid {
                    field: field.to_string(),
                    message: "must not be empty".to_string(),
                });
            }
        }
        check_uri_part("namespace", &namespace)?;
        check_uri_part("class", &class)?;
        check_uri_part("instance", &instance)?;
        check_parameters("parameters", &req.parameters)?;
        if class.contains('/') || instance.contains('/') {
            return Err(RequestError::Invalid {
                field: if class.contains('/') {
                    "class"
                } else {
                    "instance"
                }
                .to_string(),
                message: "must be a single name without '/'".to_string(),
            });
        }
        let message = req
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        check_path(&self.engine, &namespace, &class, &instance)?;
        let userid = req
            .userid
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or("admin")
            .to_string();

        let mut attrs = serde_json::Map::new();
        for (k, v) in &req.parameters {
            attrs.insert(k.clone(), v.clone());
        }
        attrs.insert("userid".into(), serde_json::Value::String(userid.clone()));
        let options = serde_json::json!({
            "namespace": namespace,
            "class_name": class,
            "instance_name": instance,
            "message": message,
            "attrs": attrs,
            "schedule_type": "immediately",
        });
        let now = now_text();
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
        row.insert("options".into(), datatype::from_json(&options));
        row.insert("created_on".into(), AttrValue::str(now.clone()));
        row.insert("updated_on".into(), AttrValue::str(now));
        let request = self.store().create(REQUEST_CLASS, row)?;
        tracing::info!(target: "evm", "MIQ(AutomationRequest.create_request) Automation request [{}] created for [{}/{}/{}]", request.id, namespace, class, instance);
        call_automate_event(&self.engine, &*self.schedule, &request, "request_created")?;
        if req.auto_approve {
            return self.approve_as(request.id, "admin", Some("Auto-Approved"));
        }
        self.get(request.id)
    }

    /// Approves a pending request: raises `request_approved` and
    /// `request_starting`, then runs its task. Refused (`conflict`) unless
    /// the request is `pending_approval`.
    pub fn approve(&self, id: i64, reason: Option<&str>) -> Result<RequestView, RequestError> {
        self.approve_as(id, "admin", reason)
    }

    fn approve_as(
        &self,
        id: i64,
        approver: &str,
        reason: Option<&str>,
    ) -> Result<RequestView, RequestError> {
        {
            let request = self.transition(id, "approve", "approved")?;
            let store = self.store();
            store.update(&request, "stamped_by", AttrValue::str(approver))?;
            if let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) {
                store.update(&request, "reason", AttrValue::str(r))?;
            }
            touch(store, &request)?;
            call_automate_event(&self.engine, &*self.schedule, &request, "request_approved")?;
            evm(&format!(
                "MIQ(AutomationRequest#approval_approved) Request: [{TASK_DESCRIPTION}] has all approvals approved, proceeding with execution"
            ));
            self.create_request_tasks(&request)?;
        }
        self.get(id)
    }

    /// Denies a pending request: it is finished with status `Denied` and
    /// `request_denied` is raised. Refused (`conflict`) unless the request
    /// is `pending_approval`; the reason must not be empty.
    pub fn deny(&self, id: i64, reason: &str) -> Result<RequestView, RequestError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(RequestError::Invalid {
                field: "reason".into(),
                message: "a denial needs a reason".into(),
            });
        }
        {
            let request = self.transition(id, "deny", "denied")?;
            let store = self.store();
            store.update(&request, "request_state", AttrValue::str("finished"))?;
            store.update(&request, "status", AttrValue::str("Denied"))?;
            store.update(&request, "reason", AttrValue::str(reason))?;
            store.update(
                &request,
                "message",
                AttrValue::str(format!("Request denied: {reason}")),
            )?;
            store.update(&request, "stamped_by", AttrValue::str("admin"))?;
            touch(store, &request)?;
            call_automate_event(&self.engine, &*self.schedule, &request, "request_denied")?;
        }
        self.get(id)
    }

    /// One request with its tasks.
    pub fn get(&self, id: i64) -> Result<RequestView, RequestError> {
        let request = self.find(id)?;
        Ok(view(self.store(), &request))
    }

    /// Every automation request, by id.
    pub fn list(&self) -> Result<Vec<RequestView>, RequestError> {
        let store = self.store();
        let mut refs: Vec<VmdbRef> = store
            .find_by("MiqRequest", "request_type", &AttrValue::str(REQUEST_TYPE))
            .into_iter()
            .filter(|r| r.class.eq_ignore_ascii_case(REQUEST_CLASS))
            .collect();
        refs.sort_by_key(|r| r.id);
        Ok(refs.iter().map(|r| view(store, r)).collect())
    }

    fn find(&self, id: i64) -> Result<VmdbRef, RequestError> {
        self.store()
            .find(REQUEST_CLASS, id)
            .filter(|r| r.class.eq_ignore_ascii_case(REQUEST_CLASS))
            .ok_or(RequestError::NotFound(id))
    }

    /// Moves a `pending_approval` request to `to` (under the lock, so of
    /// two concurrent approvals or denials exactly one wins); anything else
    /// is refused with the state it is in.
    fn transition(&self, id: i64, action: &str, to: &str) -> Result<VmdbRef, RequestError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let request = self.find(id)?;
        let state = text(self.store(), &request, "approval_state");
        if state != "pending_approval" {
            return Err(RequestError::WrongState {
                id,
                state,
                action: action.to_string(),
            });
        }
        self.store()
            .update(&request, "approval_state", AttrValue::str(to))?;
        Ok(request)
    }

    /// `MiqRequest#create_request_tasks`: `request_starting` (synchronous;
    /// an error aborts), then the one task, delivered.
    fn create_request_tasks(&self, request: &VmdbRef) -> Result<(), RequestError> {
        let store = self.store();
        let starting =
            call_automate_event(&self.engine, &*self.schedule, request, "request_starting")?;
        // ManageIQ aborts when Automate fails or says `ae_result=error`
        // (a quota denial). A method automate cannot run (a Ruby method of
        // an imported ManageIQ domain) is logged and does not stop it.
        let failed = match &starting {
            Outcome::GaveUp(_) => true,
            Outcome::Error {
                error: Some(crate::engine::EngineError::InvalidMethod(m)),
                workspace,
            } if !workspace.result().eq_ignore_ascii_case("error") => {
                tracing::warn!(target: "evm", "MIQ(AutomationRequest#automate_event_failed?) request_starting: {m}; proceeding");
                false
            }
            Outcome::Error { .. } => true,
            o => o.workspace().result().eq_ignore_ascii_case("error"),
        };
        if failed {
            let line =
                "Aborting because Automate returned ae_result=<error> for event <request_starting>";
            tracing::warn!(target: "evm", "MIQ(AutomationRequest#automate_event_failed?) {line}");
            store.update(request, "request_state", AttrValue::str("finished"))?;
            store.update(request, "status", AttrValue::str("Error"))?;
            store.update(request, "message", AttrValue::str(line))?;
            touch(store, request)?;
            return Ok(());
        }
        evm(&format!(
            "MIQ(AutomationRequest#create_request_tasks) Creating request task instances for: <{TASK_DESCRIPTION}>..."
        ));
        let options = store
            .attribute(request, "options")
            .map(|v| datatype::to_json(&v))
            .unwrap_or(serde_json::Value::Null);
        let now = now_text();
        let mut row = Attributes::default();
        row.insert("type".into(), AttrValue::str(TASK_CLASS));
        row.insert("request_type".into(), AttrValue::str(REQUEST_TYPE));
        row.insert("description".into(), AttrValue::str("Automation Task"));
        row.insert("state".into(), AttrValue::str("pending"));
        row.insert("status".into(), AttrValue::str("Ok"));
        row.insert("message".into(), AttrValue::str("Automation Starting"));
        row.insert("miq_request_id".into(), AttrValue::Int(request.id));
        row.insert(
            "userid".into(),
            AttrValue::str(text(store, request, "userid")),
        );
        row.insert("options".into(), datatype::from_json(&options));
        row.insert("created_on".into(), AttrValue::str(now.clone()));
        row.insert("updated_on".into(), AttrValue::str(now));
        let task = store.create(TASK_CLASS, row)?;
        update_request_status(store, request)?;

        // MiqRequestTask#execute, AutomationTask#do_request.
        set_task(store, &task, "active", "Ok", "In Process")?;
        update_request_status(store, request)?;
        let (uri, shown) = task_uri(store, &task, request, &options)?;
        automate_line(&format!(
            "MIQ(MiqAeEngine.deliver) Delivering {} for object [{TASK_CLASS}.{}] with state [] to Automate",
            inspect_delivery_attrs(&shown),
            task.id
        ));
        let d = Delivery {
            uri,
            attrs: Vec::new(),
            object: format!("{TASK_CLASS}.{}", task.id),
            deliveries: 0,
        };
        // The outcome finishes the task through `after_ae_delivery`.
        deliver(&self.engine, &*self.schedule, &d, DEFAULT_MAX_DELIVERIES)?;
        Ok(())
    }
}

/// Refuses a namespace, class or instance name holding `?`, `#` or a
/// control character: it would smuggle a query (system keys) or a message
/// into the task's URI.
pub fn check_uri_part(field: &str, value: &str) -> Result<(), RequestError> {
    match value
        .chars()
        .find(|c| matches!(c, '?' | '#') || c.is_control())
    {
        Some(c) => Err(RequestError::Invalid {
            field: field.to_string(),
            message: format!("must not hold {c:?} (a name, not a URI)"),
        }),
        None => Ok(()),
    }
}

/// Refuses request parameters that name a system key
/// ([`keys::SYSTEM_ATTRS`]): the system sets those itself. `field` names
/// where the parameters were given (`parameters`, `resources[2].parameters`).
pub fn check_parameters(
    field: &str,
    parameters: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), RequestError> {
    for k in parameters.keys() {
        keys::check_user_key(field, k).map_err(|e| RequestError::Invalid {
            field: e.field.clone(),
            message: format!(
                "[{}] is a system key (it sets [{}], which automate sets for the task); use another name",
                e.key, e.attr
            ),
        })?;
    }
    Ok(())
}

/// `strip.gsub(/(^\/|\/$)/, "")`, applied until no slash is left at
/// either end.
fn clean_path(s: &str) -> String {
    s.trim().trim_matches('/').trim().to_string()
}

/// Refuses a namespace, class or instance the datastore does not have.
fn check_path(
    engine: &Engine,
    namespace: &str,
    class: &str,
    instance: &str,
) -> Result<(), RequestError> {
    let index = engine.datastore().index();
    let mut classes: Vec<_> = index.classes_at(namespace, class).to_vec();
    if let Some(c) = index.class(namespace, class) {
        classes.push(c.clone());
    }
    if classes.is_empty() {
        let ns = namespace.to_ascii_lowercase();
        let prefix = format!("{ns}/");
        let known = index.all_classes().any(|c| {
            [
                c.namespace.to_ascii_lowercase(),
                c.fq_namespace().to_ascii_lowercase(),
            ]
            .iter()
            .any(|n| *n == ns || n.starts_with(&prefix))
        });
        return Err(if known {
            RequestError::Unknown {
                what: "class".into(),
                path: format!("/{namespace}/{class}"),
            }
        } else {
            RequestError::Unknown {
                what: "namespace".into(),
                path: format!("/{namespace}"),
            }
        });
    }
    if classes.iter().any(|c| c.instance(instance).is_some()) {
        return Ok(());
    }
    Err(RequestError::Unknown {
        what: "instance".into(),
        path: format!("/{namespace}/{class}/{instance}"),
    })
}

/// An evm.log line about a request, also kept in automation.log (where
/// `MiqRequest.request_log` makes it visible next to Automate's trace).
fn automate_line(line: &str) {
    tracing::info!(target: "evm", "{line}");
    tracing::info!(target: "automation", "{line}");
}

fn evm(line: &str) {
    tracing::info!(target: "evm", "{line}");
}

/// `MiqRequest#call_automate_event` + `MiqAeEvent.raise_evm_event` +
/// `MiqAeEngine.deliver`: stores a `RequestEvent` and delivers
/// `/System/Process/Event` for the request.
fn call_automate_event(
    engine: &Engine,
    schedule: &dyn Schedule,
    request: &VmdbRef,
    event: &str,
) -> Result<Outcome, RequestError> {
    let store = engine.store().as_ref();
    automate_line(&format!(
        "MIQ(AutomationRequest#call_automate_event) Raising event [{event}] to Automate"
    ));
    let mut row = Attributes::default();
    row.insert("event_type".into(), AttrValue::str(event));
    row.insert("event_namespace".into(), AttrValue::str("RequestEvent"));
    row.insert("source".into(), AttrValue::str("Request"));
    row.insert("target_type".into(), AttrValue::str("MiqRequest"));
    row.insert("target_id".into(), AttrValue::Int(request.id));
    row.insert(
        "timestamp".into(),
        AttrValue::str(crate::engine::time::event_time_now()),
    );
    let stream = store.create("RequestEvent", row)?;
    let mut pairs: Vec<(String, String)> = vec![
        ("event_type".into(), event.to_string()),
        ("EventStream::event_stream".into(), stream.id.to_string()),
        ("event_stream_id".into(), stream.id.to_string()),
    ];
    automate_line(&format!(
        "MIQ(MiqAeEngine.deliver) Delivering {} for object [{REQUEST_CLASS}.{}] with state [] to Automate",
        inspect_delivery_attrs(&pairs),
        request.id
    ));
    let (server, user) = server_and_user(store)?;
    pairs.push((
        format!("{REQUEST_CLASS}::automation_request"),
        request.id.to_string(),
    ));
    pairs.push(("User::user".into(), user.id.to_string()));
    pairs.push(("MiqServer::miq_server".into(), server.id.to_string()));
    pairs.push(("object_name".into(), "Event".into()));
    pairs.push(("MiqRequest::miq_request".into(), request.id.to_string()));
    pairs.push(("vmdb_object_type".into(), "automation_request".into()));
    let d = Delivery {
        uri: format!("/System/Process/Event?{}", hash2query(&pairs)),
        attrs: Vec::new(),
        object: format!("{REQUEST_CLASS}.{}", request.id),
        deliveries: 0,
    };
    let outcome = deliver(engine, schedule, &d, DEFAULT_MAX_DELIVERIES)?;
    automate_line(&format!(
        "MIQ(AutomationRequest#call_automate_event) Raised event [{event}] to Automate"
    ));
    Ok(outcome)
}

/// The `MiqServer` and `User` deliveries name, created when the store has
/// none (as the event handler does).
fn server_and_user(store: &dyn ObjectStore) -> Result<(VmdbRef, VmdbRef), StoreError> {
    let one = |class: &str, attr: &str, value: &str| -> Result<VmdbRef, StoreError> {
        let v = AttrValue::str(value);
        if let Some(r) = store.find_by(class, attr, &v).into_iter().next() {
            return Ok(r);
        }
        let mut row = Attributes::default();
        row.insert(attr.to_string(), v);
        store.create(class, row)
    };
    Ok((
        one("MiqServer", "name", "EVM")?,
        one("User", "userid", "admin")?,
    ))
}

/// The URI `AutomationTask#do_request` delivers:
/// `/<namespace>/<class>/<instance>?<parameters and objects>#<message>`,
/// and the attributes the `Delivering` line shows.
fn task_uri(
    store: &dyn ObjectStore,
    task: &VmdbRef,
    request: &VmdbRef,
    options: &serde_json::Value,
) -> Result<(String, Vec<(String, String)>), RequestError> {
    let part = |k: &str| options.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let (namespace, class, instance) =
        (part("namespace"), part("class_name"), part("instance_name"));
    // The request's parameters less any system key among them (`create`
    // refuses those; this covers requests stored before it did), then the
    // keys the system sets: a parameter naming another request's task
    // must not take it over.
    let mut params: Vec<(String, String)> = Vec::new();
    let mut userid = None;
    if let Some(attrs) = options.get("attrs").and_then(|a| a.as_object()) {
        for (k, v) in attrs {
            if k == "userid" {
                userid = Some((k.clone(), json_text(v)));
            } else {
                params.push((k.clone(), json_text(v)));
            }
        }
    }
    let mut shown = keys::merge_args(Vec::new(), params);
    shown.extend(userid);
    shown.push((
        "dialog_param_parent_request_id".into(),
        request.id.to_string(),
    ));
    let (server, user) = server_and_user(store)?;
    let mut pairs = shown.clone();
    pairs.extend([
        (
            format!("{TASK_CLASS}::automation_task"),
            task.id.to_string(),
        ),
        ("User::user".into(), user.id.to_string()),
        ("MiqServer::miq_server".into(), server.id.to_string()),
        ("object_name".into(), instance.to_string()),
        ("vmdb_object_type".into(), "automation_task".into()),
    ]);
    let mut uri = format!("/{namespace}/{class}/{instance}?{}", hash2query(&pairs));
    if let Some(m) = options.get("message").and_then(|v| v.as_str()) {
        if !m.is_empty() {
            uri.push('#');
            uri.push_str(m);
        }
    }
    Ok((uri, shown))
}

/// A parameter's value as a query value: strings as they are, other JSON
/// as its text.
fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The task a delivery is for: its `AutomationTask::automation_task` key
/// (in the URI's query or the extra attributes).
fn task_of(d: &Delivery) -> Option<i64> {
    let key = format!("{TASK_CLASS}::automation_task");
    let from_uri = crate::uri::parse(&d.uri).ok().and_then(|u| {
        u.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
            .map(|(_, v)| v.clone())
    });
    from_uri
        .or_else(|| {
            d.attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                .map(|(_, v)| v.clone())
        })
        .and_then(|v| v.trim().parse().ok())
}

/// ManageIQ's `AutomationTask#after_ae_delivery`, called by
/// [`crate::engine::deliver`] after every delivery: when it was for an
/// `AutomationTask` and did not end in a retry, the task is finished with
/// the outcome and its request's state follows. Failures are logged (the
/// delivery itself has happened).
pub fn after_ae_delivery(engine: &Engine, d: &Delivery, outcome: &Outcome) {
    let Some(task_id) = task_of(d) else {
        return;
    };
    if let Err(e) = finish_task(engine.store().as_ref(), task_id, outcome) {
        tracing::error!(target: "evm", "MIQ(AutomationTask#after_ae_delivery) task [{task_id}]: {e}");
    }
}

fn finish_task(store: &dyn ObjectStore, task_id: i64, outcome: &Outcome) -> Result<(), StoreError> {
    let Some(task) = store
        .find(TASK_CLASS, task_id)
        .filter(|r| r.class.eq_ignore_ascii_case(TASK_CLASS))
    else {
        return Ok(());
    };
    let ws = outcome.workspace();
    let result = match outcome {
        Outcome::Retry { .. } => "retry".to_string(),
        Outcome::Error { .. } | Outcome::GaveUp(_) => "error".to_string(),
        Outcome::Done(w) => w.result().to_ascii_lowercase(),
    };
    evm(&format!(
        "MIQ(AutomationTask#after_ae_delivery) ae_result={result:?}"
    ));
    let request = match store.attribute(&task, "miq_request_id") {
        Some(AttrValue::Int(id)) => store.find("MiqRequest", id),
        _ => None,
    };
    if result == "retry" {
        return Ok(());
    }
    if let Some(r) = &request {
        if text(store, r, "request_state") == "finished" {
            return Ok(());
        }
    }
    let status = match result.as_str() {
        "ok" => "Ok",
        "warn" => "Warn",
        _ => "Error",
    };
    let ae_message = ws
        .root_attr("ae_message")
        .filter(|v| !v.is_blank())
        .map(|v| v.to_text());
    let message = match (outcome, ae_message) {
        (_, Some(m)) => m,
        (Outcome::Error { error: Some(e), .. }, None) => {
            format!("{TASK_DESCRIPTION} failed: {e}")
        }
        (Outcome::GaveUp(_), None) => {
            format!("{TASK_DESCRIPTION} failed: gave up retrying (retry bound)")
        }
        (_, None) if status == "Error" => format!("{TASK_DESCRIPTION} failed"),
        _ => format!("{TASK_DESCRIPTION} completed"),
    };
    set_task(store, &task, "finished", status, &message)?;
    if let Some(r) = &request {
        update_request_status(store, r)?;
    }
    Ok(())
}

fn set_task(
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
fn update_request_status(store: &dyn ObjectStore, request: &VmdbRef) -> Result<(), StoreError> {
    let tasks = tasks_of(store, request);
    if tasks.is_empty() {
        return Ok(());
    }
    let states: Vec<String> = tasks.iter().map(|t| text(store, t, "state")).collect();
    let statuses: Vec<String> = tasks.iter().map(|t| text(store, t, "status")).collect();
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
        text(store, &tasks[0], "message")
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
        store.update(request, "fulfilled_on", AttrValue::str(now_text()))?;
    }
    touch(store, request)
}

fn tasks_of(store: &dyn ObjectStore, request: &VmdbRef) -> Vec<VmdbRef> {
    let mut tasks = store.find_by(
        "MiqRequestTask",
        "miq_request_id",
        &AttrValue::Int(request.id),
    );
    tasks.sort_by_key(|t| t.id);
    tasks
}

fn touch(store: &dyn ObjectStore, obj: &VmdbRef) -> Result<(), StoreError> {
    store.update(obj, "updated_on", AttrValue::str(now_text()))
}

fn text(store: &dyn ObjectStore, obj: &VmdbRef, name: &str) -> String {
    store
        .attribute(obj, name)
        .map(|v| v.to_text())
        .unwrap_or_default()
}

fn view(store: &dyn ObjectStore, r: &VmdbRef) -> RequestView {
    let tasks = tasks_of(store, r)
        .iter()
        .map(|t| TaskView {
            id: t.id,
            r#type: t.class.to_string(),
            state: text(store, t, "state"),
            status: text(store, t, "status"),
            message: text(store, t, "message"),
            created_on: text(store, t, "created_on"),
            updated_on: text(store, t, "updated_on"),
        })
        .collect();
    RequestView {
        id: r.id,
        r#type: r.class.to_string(),
        request_type: text(store, r, "request_type"),
        approval_state: text(store, r, "approval_state"),
        request_state: text(store, r, "request_state"),
        status: text(store, r, "status"),
        message: text(store, r, "message"),
        userid: text(store, r, "userid"),
        options: store
            .attribute(r, "options")
            .map(|v| datatype::to_json(&v))
            .unwrap_or(serde_json::Value::Null),
        created_on: text(store, r, "created_on"),
        updated_on: text(store, r, "updated_on"),
        tasks,
    }
}

/// Now, as the API shows times: `2026-11-24T10:00:00Z`.
fn now_text() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let t = crate::engine::time::iso8601(ms);
    // Whole seconds, as ManageIQ's API shows them.
    match t.split_once('.') {
        Some((secs, _)) => format!("{secs}Z"),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::Datastore;
    use crate::vmdb::RedbStore;
    use std::sync::Arc;

    fn service(dir: &std::path::Path) -> Requests {
        let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/datastore"));
        let (ds, _problems) = Datastore::open(&root);
        let store = RedbStore::open(dir.join("t.redb")).expect("open store");
        let schedule = store.schedule();
        let (engine, _runner) =
            crate::control::with_control(Engine::new(Arc::new(ds)).with_store(Arc::new(store)));
        Requests::new(engine, schedule)
    }

    fn hello(auto: bool) -> NewRequest {
        NewRequest {
            namespace: "/System/".into(),
            class: "Request".into(),
            instance: "HelloWorld".into(),
            message: None,
            parameters: serde_json::Map::new(),
            auto_approve: auto,
            userid: None,
        }
    }

    #[test]
    fn kinds_map_to_api_statuses() {
        assert_eq!(RequestError::NotFound(1).kind(), "not_found");
        let e = RequestError::WrongState {
            id: 1,
            state: "denied".into(),
            action: "approve".into(),
        };
        assert_eq!(e.kind(), "conflict");
        assert_eq!(
            e.to_string(),
            "automation request [1] is denied: cannot approve it"
        );
    }

    #[test]
    fn paths_are_cleaned_like_manageiq() {
        assert_eq!(clean_path(" /System/Request/ "), "System/Request");
        assert_eq!(clean_path("System"), "System");
    }

    #[test]
    fn pending_then_approved_runs_the_task() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = service(tmp.path());
        let v = s.create(hello(false)).expect("create");
        assert_eq!(
            (v.approval_state.as_str(), v.request_state.as_str()),
            ("pending_approval", "pending")
        );
        assert!(v.tasks.is_empty());
        assert_eq!(v.options["namespace"], "System");
        let v = s.approve(v.id, None).expect("approve");
        assert_eq!(v.approval_state, "approved");
        assert_eq!(
            (v.request_state.as_str(), v.status.as_str()),
            ("finished", "Ok")
        );
        assert_eq!(v.tasks.len(), 1);
        assert_eq!(v.tasks[0].state, "finished");
        assert_eq!(s.list().expect("list").len(), 1);
        assert!(matches!(
            s.approve(v.id, None),
            Err(RequestError::WrongState { .. })
        ));
    }

    #[test]
    fn of_two_concurrent_approvals_one_wins() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Requests>();
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = Arc::new(service(tmp.path()));
        let id = s.create(hello(false)).expect("create").id;
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || s.approve(id, None))
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results.iter().any(
            |r| matches!(r, Err(RequestError::WrongState { state, .. }) if state == "approved")
        ));
        assert_eq!(s.get(id).expect("get").tasks.len(), 1);
    }

    #[test]
    fn unknown_parts_are_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = service(tmp.path());
        let mut r = hello(true);
        r.instance = "Nope".into();
        match s.create(r) {
            Err(RequestError::Unknown { what, path }) => {
                assert_eq!(what, "instance");
                assert_eq!(path, "/System/Request/Nope");
            }
            other => panic!("{other:?}"),
        }
        let mut r = hello(true);
        r.class = "Nope".into();
        assert!(matches!(s.create(r), Err(RequestError::Unknown { what, .. }) if what == "class"));
        let mut r = hello(true);
        r.namespace = "Nowhere".into();
        assert!(
            matches!(s.create(r), Err(RequestError::Unknown { what, .. }) if what == "namespace")
        );
        assert!(s.list().expect("list").is_empty());
        assert!(matches!(s.get(1), Err(RequestError::NotFound(1))));
    }
}
