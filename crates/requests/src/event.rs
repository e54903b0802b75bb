//! Request events: `request_created`, `request_approved`,
//! `request_starting` and `request_denied` stored as `RequestEvent` rows and
//! raised to Automate (`MiqRequest#call_automate_event`), and the log lines
//! about requests.

use super::RequestError;
use automate_core::uri::hash2query;
use automate_engine::deliver::{deliver, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
use automate_engine::{inspect_delivery_attrs, AttrValue, Attributes, Engine};
use automate_vmdb::{ObjectStore, Schedule, StoreError, VmdbRef};

/// An evm.log line about a request, also kept in automation.log (where
/// `MiqRequest.request_log` makes it visible next to Automate's trace).
pub(super) fn automate_line(line: &str) {
    tracing::info!(target: "evm", "{line}");
    tracing::info!(target: "automation", "{line}");
}

/// An evm.log line about a request.
pub(super) fn evm(line: &str) {
    tracing::info!(target: "evm", "{line}");
}

/// `MiqRequest#call_automate_event` + `MiqAeEvent.raise_evm_event` +
/// `MiqAeEngine.deliver`: stores a `RequestEvent` and delivers
/// `/System/Process/Event` for the request.
pub(super) fn call_automate_event(
    engine: &Engine,
    schedule: &dyn Schedule,
    request: &VmdbRef,
    event: &str,
) -> Result<Outcome, RequestError> {
    let store = engine.store().as_ref();
    let (class, object_type) = kind_of(request);
    automate_line(&format!(
        "MIQ({class}#call_automate_event) Raising event [{event}] to Automate"
    ));
    let mut row = Attributes::default();
    row.insert("event_type".into(), AttrValue::str(event));
    row.insert("event_namespace".into(), AttrValue::str("RequestEvent"));
    row.insert("source".into(), AttrValue::str("Request"));
    row.insert("target_type".into(), AttrValue::str("MiqRequest"));
    row.insert("target_id".into(), AttrValue::Int(request.id));
    row.insert(
        "timestamp".into(),
        AttrValue::str(automate_core::time::event_time_now()),
    );
    let stream = store.create("RequestEvent", row)?;
    let mut pairs: Vec<(String, String)> = vec![
        ("event_type".into(), event.to_string()),
        ("EventStream::event_stream".into(), stream.id.to_string()),
        ("event_stream_id".into(), stream.id.to_string()),
    ];
    automate_line(&format!(
        "MIQ(MiqAeEngine.deliver) Delivering {} for object [{class}.{}] with state [] to Automate",
        inspect_delivery_attrs(&pairs),
        request.id
    ));
    let (server, user) = server_and_user(store)?;
    pairs.push((format!("{class}::{object_type}"), request.id.to_string()));
    pairs.push(("User::user".into(), user.id.to_string()));
    pairs.push(("MiqServer::miq_server".into(), server.id.to_string()));
    pairs.push(("object_name".into(), "Event".into()));
    pairs.push(("MiqRequest::miq_request".into(), request.id.to_string()));
    pairs.push(("vmdb_object_type".into(), object_type.into()));
    let d = Delivery {
        uri: format!("/System/Process/Event?{}", hash2query(&pairs)),
        attrs: Vec::new(),
        object: format!("{class}.{}", request.id),
        deliveries: 0,
    };
    let outcome = deliver(engine, schedule, &d, DEFAULT_MAX_DELIVERIES)?;
    automate_line(&format!(
        "MIQ({class}#call_automate_event) Raised event [{event}] to Automate"
    ));
    Ok(outcome)
}

/// The stored class of a request and its `vmdb_object_type`
/// (`AutomationRequest`/`automation_request`,
/// `MiqProvisionRequest`/`miq_provision_request`).
pub(super) fn kind_of(request: &VmdbRef) -> (&'static str, &'static str) {
    if request
        .class
        .eq_ignore_ascii_case(automate_vmdb::request_task::PROVISION_REQUEST_CLASS)
    {
        (
            automate_vmdb::request_task::PROVISION_REQUEST_CLASS,
            "miq_provision_request",
        )
    } else {
        (super::REQUEST_CLASS, "automation_request")
    }
}

/// The `MiqServer` and `User` deliveries name, created when the store has
/// none (as the event handler does).
pub(super) fn server_and_user(store: &dyn ObjectStore) -> Result<(VmdbRef, VmdbRef), StoreError> {
    let one = |class: &str, attr: &str, value: &str| -> Result<VmdbRef, StoreError> {
        let v = AttrValue::str(value);
        if let Some(r) = store.find_by(class, attr, &v)?.into_iter().next() {
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
