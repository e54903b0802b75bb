//! Raising generic (policy) events: ManageIQ's `MiqEvent.raise_evm_event`
//! (reference §9.1 item 8), shared by the `event_action_policy` builtin and
//! `evm.raise_evm_event`.
//!
//! An event name must be in [`MIQ_EVENT_DEFINITIONS`] (ManageIQ's
//! `MiqEventDefinition` catalogue). A known event is stored as a `MiqEvent`
//! (`event_namespace` `MiqEvent`, `source` `POLICY`, the target, and the
//! source event's id in `full_data`) and delivered to
//! `/System/Process/Event` as a new root instantiation with its own
//! workspace, as ManageIQ's queue would; that run's trace is appended to the
//! caller's, so the whole flow reads in one trace. Before the delivery the
//! event is processed as the seed shows (`MIQ(Event.raise_evm_event): Event
//! Raised [...]`, control policies, `Alert for Event [...]`, alerts); the
//! switchboard then routes it to `/System/Event/MiqEvent/POLICY/<event>`
//! (usually `.missing`), whose `event_enforce_policy` builtin sees the event
//! already processed and does not evaluate it twice.
//!
//! The delivery is nested, not queued: it runs inline on the raising
//! thread, in a runtime that shares the raising instantiation's budget
//! ([`automate_engine::budget`]: events raised, objects, the deadline), so
//! a method raising events at every level cannot outrun the outer
//! instantiation's limits.

use automate_core::uri;
use automate_engine::{AttrValue, Attributes, EngineError, Level, ObjectId, Runtime, TraceLine};
use automate_vmdb::{base_class, ObjectStore, StoreError, VmdbRef};

/// ManageIQ's `MiqEventDefinition` names (`db/fixtures/miq_event_definition_events.yml`,
/// without the container and physical-server sets): the events
/// `raise_evm_event` accepts.
pub const MIQ_EVENT_DEFINITIONS: &[&str] = &[
    // authentication, authorization, server
    "login_failed",
    "user_created",
    "evm_server_start",
    "evm_server_stop",
    "evm_server_not_responding",
    "evm_server_memory_exceeded",
    "evm_server_is_master",
    "evm_worker_start",
    "evm_worker_stop",
    "evm_worker_killed",
    "evm_worker_not_responding",
    "evm_worker_memory_exceeded",
    "evm_worker_uptime_exceeded",
    "evm_worker_exit_file",
    // providers
    "ems_auth_changed",
    "ems_auth_valid",
    "ems_auth_invalid",
    "ems_auth_unreachable",
    "ems_auth_incomplete",
    "ems_auth_error",
    "ems_performance_gap_detected",
    "extmanagementsystem_compliance_check",
    "extmanagementsystem_compliance_passed",
    "extmanagementsystem_compliance_failed",
    // hosts
    "host_connect",
    "host_disconnect",
    "host_failure",
    "request_host_scan",
    "host_scan_complete",
    "host_perf_complete",
    "host_add_to_cluster",
    "host_remove_from_cluster",
    "host_compliance_check",
    "host_compliance_passed",
    "host_compliance_failed",
    "host_auth_changed",
    "host_auth_valid",
    "host_auth_invalid",
    "host_auth_unreachable",
    "host_auth_incomplete",
    "host_auth_error",
    "request_host_reset",
    "request_host_start",
    "request_host_stop",
    "request_host_standby",
    "request_host_enter_maintenance_mode",
    "request_host_exit_maintenance_mode",
    "request_host_shutdown",
    "request_host_reboot",
    "request_host_enable_vmotion",
    "request_host_disable_vmotion",
    // tags
    "request_assign_company_tag",
    "assigned_company_tag",
    "request_unassign_company_tag",
    "unassigned_company_tag",
    // VM configuration and lifecycle
    "vm_reconfigure",
    "vm_renamed_event",
    "vm_destroy",
    "request_vm_destroy",
    "vm_create",
    "vm_template",
    "vm_retired",
    "request_vm_retire",
    "vm_retire_warn",
    "vm_provisioned",
    // VM operations
    "vm_clone",
    "vm_clone_start",
    "vm_start",
    "request_vm_start",
    "vm_resume",
    "vm_migrate",
    "vm_reset",
    "request_vm_reset",
    "vm_suspend",
    "request_vm_suspend",
    "vm_pause",
    "request_vm_pause",
    "vm_shelve",
    "request_vm_shelve",
    "vm_shelve_offload",
    "request_vm_shelve_offload",
    "vm_poweroff",
    "request_vm_poweroff",
    "vm_shutdown_guest",
    "request_vm_reboot_guest",
    "vm_reboot_guest",
    "request_vm_shutdown_guest",
    "vm_standby_guest",
    "request_vm_standby_guest",
    "vm_unregister",
    "request_vm_unregister",
    "vm_snapshot",
    "vm_snapshot_complete",
    "request_vm_scan",
    "vm_scan_complete",
    "vm_scan_abort",
    "vm_perf_complete",
    "request_vm_create_snapshot",
    "vm_scan_start",
    "vm_compliance_check",
    "vm_compliance_passed",
    "vm_compliance_failed",
    "vm_remote_console_connected",
    // storage
    "request_storage_scan",
    "storage_scan_complete",
    "db_failover_executed",
    // services, orchestration
    "service_retired",
    "request_service_retire",
    "service_retire_warn",
    "service_provisioned",
    "request_service_start",
    "service_started",
    "request_service_stop",
    "service_stopped",
    "request_orchestration_stack_retire",
];

/// Is `name` a legal generic event (case-sensitive, as ManageIQ's lookup)?
pub fn is_event_defined(name: &str) -> bool {
    MIQ_EVENT_DEFINITIONS.contains(&name)
}

/// How deep raised events may nest (an event whose policy raises an event
/// ... ): ManageIQ breaks such chains with its queue; here a delivery past
/// this depth is stored but not delivered. The depth is carried in the
/// nested runtime ([`automate_engine::Nesting`]); how many events one
/// instantiation raises in all is its budget's (`engine.max_events`).
pub const MAX_RAISE_DEPTH: usize = 8;

/// The seed's prefix of the event lines (`MIQ(Event.raise_evm_event): `).
pub const RAISE_PREFIX: &str = "MIQ(Event.raise_evm_event):";

/// `ExtManagementSystem` → `ext_management_system`.
pub fn underscore(class: &str) -> String {
    let mut out = String::with_capacity(class.len() + 4);
    for (i, c) in class.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The id an attribute value names (an object reference, an integer or
/// digits).
pub fn id_value(v: &AttrValue) -> Option<i64> {
    match v {
        AttrValue::Object(r) => Some(r.id),
        AttrValue::Int(i) => Some(*i),
        AttrValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The event of the workspace: the root's `event_stream` (or the older
/// `ems_event`) object, or the object its `event_stream_id` names; `Err`
/// when the object store could not be read.
pub fn event_stream_of(rt: &Runtime<'_>, obj: ObjectId) -> Result<Option<VmdbRef>, StoreError> {
    let root = rt.root_of(obj);
    let store = rt.engine().store();
    for name in ["event_stream", "ems_event", "miq_event"] {
        match rt.attr(root, name) {
            Some(AttrValue::Object(r)) => return Ok(Some(r.clone())),
            Some(v) => {
                if let Some(id) = id_value(v) {
                    if let Some(r) = store.find("EventStream", id)? {
                        return Ok(Some(r));
                    }
                }
            }
            None => {}
        }
    }
    for name in ["event_stream_id", "ems_event_id", "miq_event_id"] {
        if let Some(id) = rt.attr(root, name).and_then(id_value) {
            if let Some(r) = store.find("EventStream", id)? {
                return Ok(Some(r));
            }
        }
    }
    Ok(None)
}

/// `EmsEvent#get_target`: the object an event names as `src_vm`,
/// `dest_vm`, `src_host`, `dest_host` or `ems` (by its id column or an
/// association attribute); `Err` when the object store could not be read.
pub fn event_target(
    store: &dyn ObjectStore,
    event: &VmdbRef,
    target: &str,
) -> Result<Option<VmdbRef>, StoreError> {
    let (class, ids, assocs): (&str, &[&str], &[&str]) =
        match target.trim().to_ascii_lowercase().as_str() {
            "src_vm" | "vm" | "src_vm_or_template" | "vm_or_template" => (
                "VmOrTemplate",
                &["vm_or_template_id", "vm_id", "src_vm_id"],
                &["vm_or_template", "vm", "src_vm"],
            ),
            "dest_vm" | "dest_vm_or_template" => (
                "VmOrTemplate",
                &["dest_vm_or_template_id", "dest_vm_id"],
                &["dest_vm_or_template", "dest_vm"],
            ),
            "src_host" | "host" => ("Host", &["host_id", "src_host_id"], &["host", "src_host"]),
            "dest_host" => ("Host", &["dest_host_id"], &["dest_host"]),
            "ems" | "ext_management_system" | "src_ems" => (
                "ExtManagementSystem",
                &["ems_id", "ext_management_system_id"],
                &["ext_management_system", "ems"],
            ),
            "src_ems_cluster" | "ems_cluster" => {
                ("EmsCluster", &["ems_cluster_id"], &["ems_cluster"])
            }
            _ => return Ok(None),
        };
    for a in assocs {
        if let Some(AttrValue::Object(r)) = store.attribute(event, a)? {
            return Ok(Some(r));
        }
    }
    for a in ids {
        if let Some(id) = store.attribute(event, a)?.as_ref().and_then(id_value) {
            if let Some(r) = store.find(class, id)? {
                return Ok(Some(r));
            }
        }
    }
    Ok(None)
}

/// The `Class::attr` key and `<x>_id` key of a delivery for an object
/// (`MiqAeEvent.raise_evm_event`).
pub fn delivery_keys(r: &VmdbRef) -> (String, String) {
    let base = base_class(&r.class).unwrap_or("VmOrTemplate");
    match base {
        "VmOrTemplate" => ("VmOrTemplate::vm".into(), "vm_id".into()),
        "Host" => ("Host::host".into(), "host_id".into()),
        "ExtManagementSystem" => ("ExtManagementSystem::ems".into(), "ems_id".into()),
        "MiqPolicy" => ("MiqPolicy::miq_policy".into(), "policy_id".into()),
        other => {
            let u = underscore(other);
            (format!("{other}::{u}"), format!("{u}_id"))
        }
    }
}

/// The VM power state a generic event leaves behind (`None`: unchanged).
pub fn power_state_after(event: &str) -> Option<&'static str> {
    Some(match event {
        "vm_start" | "vm_reset" | "vm_reboot_guest" => "on",
        "vm_poweroff" => "off",
        "vm_suspend" => "suspended",
        "vm_pause" => "paused",
        _ => return None,
    })
}

/// Keeps the target VM's `power_state` in the store in step with the
/// generic events raised for it, once the event has been processed
/// (ManageIQ learns it from the refresh that follows; automate has no
/// provider to refresh from).
fn follow_power_state(
    rt: &mut Runtime<'_>,
    store: &dyn automate_vmdb::ObjectStore,
    target: &VmdbRef,
    target_class: &str,
    event: &str,
) {
    let Some(state) = power_state_after(event) else {
        return;
    };
    if target_class != "VmOrTemplate" {
        return;
    }
    if let Err(e) = store.update(target, "power_state", AttrValue::str(state)) {
        rt.log(
            Level::Error,
            format!(
                "Could not set power_state of VmOrTemplate [{}]: {e}",
                target.id
            ),
        );
    }
}

/// `MiqEvent.raise_evm_event(target, event, inputs)`: stores the MiqEvent
/// and delivers it to `/System/Process/Event`. Returns the MiqEvent, or
/// `None` when the event is not a known MiqEventDefinition (only its alerts
/// run) or could not be stored. `source_event` is the event that led to it
/// (its id goes in `full_data`, its EMS in `ems_id`). Errs only with
/// [`EngineError::Budget`], when the instantiation's budget runs out.
pub fn raise_evm_event(
    rt: &mut Runtime<'_>,
    target: &VmdbRef,
    event: &str,
    inputs: &[(String, String)],
    source_event: Option<&VmdbRef>,
) -> Result<Option<VmdbRef>, EngineError> {
    let target_class = base_class(&target.class)
        .unwrap_or(&target.class)
        .to_string();
    if !is_event_defined(event) {
        rt.log(
            Level::Warn,
            format!(
                "Event {event} for class [{target_class}] id [{}] was not raised: {event} is not \
                 defined in MiqEventDefinition",
                target.id
            ),
        );
        rt.log(
            Level::Info,
            format!("{RAISE_PREFIX} Alert for Event [{event}]"),
        );
        evaluate_alerts(rt, None, Some(target), event);
        return Ok(None);
    }
    // One event of the instantiation's budget (nested deliveries share it).
    rt.spend_event()?;
    let store = rt.engine().store().clone();
    let mut attrs = Attributes::default();
    attrs.insert("event_type".into(), AttrValue::str(event));
    attrs.insert("event_namespace".into(), AttrValue::str("MiqEvent"));
    attrs.insert("source".into(), AttrValue::str("POLICY"));
    attrs.insert("target_type".into(), AttrValue::str(target_class.clone()));
    attrs.insert("target_id".into(), AttrValue::Int(target.id));
    // ISO 8601 like every other row of the event stream (EmsEvent,
    // RequestEvent), so one parser and one `since` filter cover them all.
    attrs.insert(
        "timestamp".into(),
        AttrValue::str(automate_core::time::event_time_now()),
    );
    let (_, target_id_key) = delivery_keys(target);
    let column = match target_id_key.as_str() {
        "vm_id" => "vm_or_template_id".to_string(),
        k => k.to_string(),
    };
    attrs.insert(column, AttrValue::Int(target.id));
    let source_ems = match source_event {
        Some(e) => event_target(store.as_ref(), e, "ems")?,
        None => None,
    };
    if let Some(ems) = &source_ems {
        attrs
            .entry("ems_id".to_string())
            .or_insert(AttrValue::Int(ems.id));
    }
    if let Some(src) = source_event {
        attrs.insert(
            "full_data".into(),
            AttrValue::Hash(vec![(
                AttrValue::str("source_event_id"),
                AttrValue::Int(src.id),
            )]),
        );
    }
    // Policies and alerts run when the event is raised (below); the
    // `event_enforce_policy` builtin of the POLICY instance then knows not
    // to run them a second time.
    attrs.insert(POLICY_DONE_ATTR.into(), AttrValue::Bool(true));
    let miq_event = match store.create("MiqEvent", attrs) {
        Ok(r) => r,
        Err(e) => {
            rt.log(
                Level::Error,
                format!(
                    "Event {event} for class [{target_class}] id [{}] was not raised: {e}",
                    target.id
                ),
            );
            return Ok(None);
        }
    };

    // MiqAeEvent.raise_evm_event + MiqAeEngine.deliver.
    let id = miq_event.id.to_string();
    let mut pairs: Vec<(String, String)> = vec![
        ("event_type".into(), event.to_string()),
        ("MiqEvent::miq_event".into(), id.clone()),
        ("miq_event_id".into(), id.clone()),
        ("EventStream::event_stream".into(), id.clone()),
        ("event_stream_id".into(), id.clone()),
    ];
    let (key, id_key) = delivery_keys(target);
    pairs.push((key, target.id.to_string()));
    pairs.push((id_key, target.id.to_string()));
    if let Some(ems) = source_ems.filter(|e| e != target) {
        pairs.push(("ExtManagementSystem::ems".into(), ems.id.to_string()));
        pairs.push(("ems_id".into(), ems.id.to_string()));
    }
    // The inputs add to the event's keys; the system's keys (the event,
    // its stream, the target, `object_name`, ...) win over them.
    let mut pairs = automate_engine::keys::merge_args(pairs, inputs.iter().cloned());
    // MiqEvent#process_evm_event: `Event Raised`, the control policies,
    // `Alert for Event`, the alerts; then the event goes to Automate.
    process_evm_event(rt, &miq_event, Some(target), event);
    let shown = automate_engine::inspect_delivery_attrs(&pairs);
    pairs.push(("object_name".into(), "Event".into()));
    pairs.push(("vmdb_object_type".into(), "miq_event".into()));
    let (text, uri) = uri::query_uri("/System/Process/Event", pairs);
    let delivered = deliver(rt, &text, uri, &shown, &miq_event);
    // Policies and alerts saw the VM as it was when the event happened.
    follow_power_state(rt, store.as_ref(), target, &target_class, event);
    // The policies' actions or the delivery ran the budget out: stop here.
    rt.check_budget()?;
    delivered.map(|()| Some(miq_event))
}

/// The MiqEvent attribute that says its policies and alerts have run (set
/// by [`raise_evm_event`], read by the `event_enforce_policy` builtin).
pub const POLICY_DONE_ATTR: &str = "policy_processed";

/// `MiqEvent#process_evm_event`: logs `Event Raised [..]`, evaluates the
/// control policies on the event, logs `Alert for Event [..]` and evaluates
/// the alerts (the seed's order: both lines come before the event's own
/// `Instantiating [/System/Process/Event?...]`).
pub fn process_evm_event(
    rt: &mut Runtime<'_>,
    event: &VmdbRef,
    target: Option<&VmdbRef>,
    event_type: &str,
) {
    rt.log(
        Level::Info,
        format!("{RAISE_PREFIX} Event Raised [{event_type}]"),
    );
    evaluate_policies(rt, Some(event), target, event_type);
    rt.log(
        Level::Info,
        format!("{RAISE_PREFIX} Alert for Event [{event_type}]"),
    );
    evaluate_alerts(rt, Some(event), target, event_type);
}

/// Delivers `uri` (parsed from `text` by its builder) as a new root
/// instantiation (its own workspace, the caller's budget) and appends that
/// run's trace to the caller's. Only a budget that ran out is an error
/// here; any other failure of the delivery is logged.
fn deliver(
    rt: &mut Runtime<'_>,
    text: &str,
    uri: uri::Uri,
    shown: &str,
    event: &VmdbRef,
) -> Result<(), EngineError> {
    let what = format!(
        "{shown} for object [{}.{}] with state []",
        event.class, event.id
    );
    let mut nesting = rt.nesting();
    let depth = nesting.raise;
    if depth >= MAX_RAISE_DEPTH {
        rt.log(
            Level::Error,
            format!(
                "Error delivering {what} to Automate: events raised {depth} levels deep \
                 (an event loop?); the event is stored but not delivered"
            ),
        );
        return Ok(());
    }
    rt.log(
        Level::Info,
        format!("MIQ(MiqAeEngine.deliver) Delivering {what} to Automate"),
    );
    let base = rt.ws.trace.last().map_or(0, |l| l.depth + 1);
    nesting.raise = depth + 1;
    let (ws, err) = rt.deliver_nested(text, Some(uri), nesting);
    rt.ws.trace.extend(ws.trace.into_iter().map(|l| TraceLine {
        depth: base + l.depth,
        ..l
    }));
    match err {
        None => Ok(()),
        Some(e) => {
            rt.log(
                Level::Error,
                format!("MIQ(MiqAeEngine.deliver) Error delivering {what} to Automate: {e}"),
            );
            match e {
                EngineError::Budget(_) => Err(e),
                _ => Ok(()),
            }
        }
    }
}

/// Evaluates the control policies on `event_type` with the engine's
/// [`Policies`](automate_engine::Policies) (`control`'s, installed by the composition:
/// `control::with_control`). `event_enforce_policy` calls it between
/// `Event Raised [..]` and `Alert for Event [..]`, where ManageIQ runs
/// `MiqPolicy.enforce_policy`. An engine without policies says so in the
/// trace rather than skip them silently.
pub fn evaluate_policies(
    rt: &mut Runtime<'_>,
    event: Option<&VmdbRef>,
    target: Option<&VmdbRef>,
    event_type: &str,
) {
    match rt.engine().policies() {
        Some(p) => p.evaluate_policies(rt, event, target, event_type),
        None => no_policies(rt, event_type),
    }
}

/// Evaluates the alerts on `event_type` with the engine's policies.
/// Called after `Alert for Event [..]`, where ManageIQ runs
/// `MiqAlert.evaluate_alerts`.
pub fn evaluate_alerts(
    rt: &mut Runtime<'_>,
    event: Option<&VmdbRef>,
    target: Option<&VmdbRef>,
    event_type: &str,
) {
    match rt.engine().policies() {
        Some(p) => p.evaluate_alerts(rt, event, target, event_type),
        None => no_policies(rt, event_type),
    }
}

/// The line of an engine composed without policies.
fn no_policies(rt: &mut Runtime<'_>, event_type: &str) {
    rt.log(
        Level::Warn,
        format!(
            "{RAISE_PREFIX} control policies and alerts not evaluated for event [{event_type}]: \
             the engine has none (compose it with control::with_control)"
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use automate_core::time::now_utc_text;

    #[test]
    fn names_and_times() {
        assert_eq!(underscore("ExtManagementSystem"), "ext_management_system");
        assert_eq!(underscore("Host"), "host");
        assert!(is_event_defined("vm_start"));
        assert!(!is_event_defined("vm_remove"));
        let t = now_utc_text();
        assert!(t.ends_with(" UTC") && t.len() == 23, "{t}");
    }
}
