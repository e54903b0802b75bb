//! The request's task: `AutomationTask` created and delivered
//! (`MiqRequestTask#execute`, `AutomationTask#do_request`), and finished
//! with its delivery's outcome by [`AfterAeDelivery`], the engine's
//! after-delivery hook (ManageIQ's `AutomationTask#after_ae_delivery`).

use super::event::{automate_line, call_automate_event, evm, kind_of, server_and_user};
use super::model::{
    set_task, task_row, text, touch, update_request_status, TASK_CLASS, TASK_DESCRIPTION,
};
use super::{RequestError, Requests};
use automate_core::uri::hash2query;
use automate_engine::deliver::{deliver, AfterDelivery, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
use automate_engine::{datatype, inspect_delivery_attrs, keys, AttrValue, Engine};
use automate_vmdb::{ObjectStore, StoreError, VmdbRef};
use std::sync::Arc;

impl Requests {
    /// `MiqRequest#create_request_tasks`: `request_starting` (synchronous;
    /// an error aborts), then the one task, delivered.
    pub(super) fn create_request_tasks(&self, request: &VmdbRef) -> Result<(), RequestError> {
        let store = self.store();
        let class = kind_of(request).0;
        let starting =
            call_automate_event(&self.engine, &*self.schedule, request, "request_starting")?;
        // ManageIQ aborts when Automate fails or says `ae_result=error`
        // (a quota denial). A method automate cannot run (a Ruby method of
        // an imported ManageIQ domain) is logged and does not stop it.
        let failed = match &starting {
            Outcome::GaveUp(_) => true,
            Outcome::Error {
                error: Some(automate_engine::EngineError::InvalidMethod(m)),
                workspace,
            } if !workspace.result().eq_ignore_ascii_case("error") => {
                tracing::warn!(target: "evm", "MIQ({class}#automate_event_failed?) request_starting: {m}; proceeding");
                false
            }
            Outcome::Error { .. } => true,
            o => o.workspace().result().eq_ignore_ascii_case("error"),
        };
        if failed {
            let line =
                "Aborting because Automate returned ae_result=<error> for event <request_starting>";
            tracing::warn!(target: "evm", "MIQ({class}#automate_event_failed?) {line}");
            store.update(request, "request_state", AttrValue::str("finished"))?;
            store.update(request, "status", AttrValue::str("Error"))?;
            store.update(request, "message", AttrValue::str(line))?;
            touch(store, request)?;
            return Ok(());
        }
        if class == automate_vmdb::request_task::PROVISION_REQUEST_CLASS {
            return self.create_provision_tasks(request);
        }
        evm(&format!(
            "MIQ(AutomationRequest#create_request_tasks) Creating request task instances for: <{TASK_DESCRIPTION}>..."
        ));
        let options = store
            .attribute(request, "options")?
            .map(|v| datatype::to_json(&v))
            .unwrap_or(serde_json::Value::Null);
        let userid = text(store, request, "userid")?;
        let task = store.create(TASK_CLASS, task_row(request, userid, &options))?;
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
        // The outcome finishes the task through the engine's
        // after-delivery hook, `AfterAeDelivery`.
        deliver(&self.engine, &*self.schedule, &d, DEFAULT_MAX_DELIVERIES)?;
        Ok(())
    }
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
                userid = Some((k.clone(), query_value(v)));
            } else {
                params.push((k.clone(), query_value(v)));
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
fn query_value(v: &serde_json::Value) -> String {
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
    let from_uri = automate_core::uri::parse(&d.uri).ok().and_then(|u| {
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

/// `engine` with [`AfterAeDelivery`] installed: every engine that may
/// deliver a request's task needs it (`methods::with_methods` installs it,
/// and so does [`Requests::new`]), or tasks are never finished.
pub fn with_requests(engine: Engine) -> Engine {
    engine.with_after_delivery(Arc::new(AfterAeDelivery))
}

/// ManageIQ's `AutomationTask#after_ae_delivery`, the engine's
/// [`AfterDelivery`] hook, run after every delivery on every path (first
/// delivery, `retries run-due`, the pipeline's retry runner and workers):
/// when the delivery was for an `AutomationTask` and did not end in a
/// retry, the task is finished with the outcome and its request's state
/// follows. Failures are logged (the delivery itself has happened).
#[derive(Debug, Clone, Copy, Default)]
pub struct AfterAeDelivery;

impl AfterDelivery for AfterAeDelivery {
    fn after_delivery(&self, engine: &Engine, d: &Delivery, outcome: &Outcome) {
        if d.object.starts_with("EmsEvent.") {
            super::provision::after_event_delivery(engine.store().as_ref(), d);
            return;
        }
        let Some(task_id) = task_of(d) else {
            return;
        };
        if let Err(e) = finish_task(engine.store().as_ref(), task_id, outcome) {
            tracing::error!(target: "evm", "MIQ(AutomationTask#after_ae_delivery) task [{task_id}]: {e}");
        }
    }
}

fn finish_task(store: &dyn ObjectStore, task_id: i64, outcome: &Outcome) -> Result<(), StoreError> {
    let Some(task) = store
        .find(TASK_CLASS, task_id)?
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
    let request = match store.attribute(&task, "miq_request_id")? {
        Some(AttrValue::Int(id)) => store.find("MiqRequest", id)?,
        _ => None,
    };
    if result == "retry" {
        return Ok(());
    }
    if let Some(r) = &request {
        if text(store, r, "request_state")? == "finished" {
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
