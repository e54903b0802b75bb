//! The native builtins of ManageIQ's `System/event_handlers` and
//! `System/Process` classes (reference §7.3, `MiqAeBuiltinMethod`), each
//! taking the inputs its YAML declares.
//!
//! They act on the workspace's event (the root's `event_stream`) and on the
//! object store. What needs a live provider (a refresh, a SmartState scan) is
//! recorded on the target object and logged, not performed: see each
//! function. The engine turns any error of a builtin into an abort.

use super::events::{self, event_stream_of, event_target};
use automate_core::time::now_utc_text;
use automate_engine::{AttrValue, Attributes, Builtins, EngineError, Level, ObjectId, Runtime};
use automate_vmdb::{base_class, StoreError, VmdbRef};

/// [`Builtins::standard`] plus the event-flow builtins.
pub fn event_builtins() -> Builtins {
    let mut b = Builtins::standard();
    b.insert("event_action_policy", event_action_policy);
    b.insert("event_enforce_policy", event_enforce_policy);
    b.insert("event_action_refresh", event_action_refresh);
    b.insert("event_action_refresh_sync", event_action_refresh_sync);
    b.insert("event_action_scan", event_action_scan);
    b.insert("refresh", refresh);
    b.insert("refresh_sync", refresh_sync);
    b.insert("change_event_target_state", change_event_target_state);
    b.insert("check_policy_prevent", check_policy_prevent);
    b.insert("src_vm_as_template", src_vm_as_template);
    b.insert("src_vm_destroy_all_snapshots", src_vm_destroy_all_snapshots);
    b.insert("src_vm_disconnect_storage", src_vm_disconnect_storage);
    b.insert("parse_event_stream", parse_event_stream);
    b.insert(
        "parse_provider_category",
        super::process::parse_provider_category,
    );
    b.insert(
        "parse_automation_request",
        super::process::parse_automation_request,
    );
    b
}

/// The workspace's event, or ManageIQ's `Event not specified` (a
/// MethodParmMissing there, which its builtin wrapper turns into an abort).
fn event_of(rt: &Runtime<'_>, obj: ObjectId) -> Result<VmdbRef, EngineError> {
    event_stream_of(rt, obj)?.ok_or_else(|| EngineError::Abort("Event not specified".to_string()))
}

fn input(inputs: &Attributes, name: &str) -> String {
    inputs.get(name).map(AttrValue::to_text).unwrap_or_default()
}

/// An attribute of the event as text (`""` when absent); `Err` when the
/// object store could not be read.
fn event_text(rt: &Runtime<'_>, event: &VmdbRef, name: &str) -> Result<String, StoreError> {
    Ok(rt
        .engine()
        .store()
        .attribute(event, name)?
        .map(|v| v.to_text())
        .unwrap_or_default())
}

fn class_of(r: &VmdbRef) -> &str {
    base_class(&r.class).unwrap_or(&r.class)
}

/// `event_action_policy(target, policy_event, param)`: `EmsEvent#policy`:
/// raises the generic event `policy_event` for the event's `target`.
fn event_action_policy(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    inputs: &Attributes,
) -> Result<(), EngineError> {
    let event = event_of(rt, obj)?;
    let target_name = input(inputs, "target");
    let policy_event = input(inputs, "policy_event");
    let event_type = event_text(rt, &event, "event_type")?;
    let Some(target) = event_target(rt.engine().store().as_ref(), &event, &target_name)? else {
        rt.log(
            Level::Info,
            format!(
                "Event [{event_type}] has no target [{target_name}]; policy event \
                 [{policy_event}] not raised"
            ),
        );
        return Ok(());
    };
    if policy_event.trim().is_empty() {
        rt.log(
            Level::Warn,
            format!("Event [{event_type}]: no policy_event given, nothing raised"),
        );
        return Ok(());
    }
    // The policy source: the event's provider when `param` is blank (added
    // by raise_evm_event), else the target's `param` association.
    let mut extra: Vec<(String, String)> = Vec::new();
    let param = input(inputs, "param");
    if !param.trim().is_empty() {
        match policy_source(rt, &target, param.trim())? {
            Some(src) => {
                let (key, id_key) = events::delivery_keys(&src);
                extra.push((key, src.id.to_string()));
                extra.push((id_key, src.id.to_string()));
            }
            None => rt.log(
                Level::Info,
                format!(
                    "{} [{}] has no [{}]; policy source not passed",
                    class_of(&target),
                    target.id,
                    param.trim()
                ),
            ),
        }
    }
    events::raise_evm_event(rt, &target, policy_event.trim(), &extra, Some(&event))?;
    Ok(())
}

/// `target.send(param)`: an association of the target, stored as an object
/// attribute or as `<param>_id`.
fn policy_source(
    rt: &Runtime<'_>,
    target: &VmdbRef,
    param: &str,
) -> Result<Option<VmdbRef>, StoreError> {
    let store = rt.engine().store();
    let name = param.to_ascii_lowercase();
    if let Some(AttrValue::Object(r)) = store.attribute(target, &name)? {
        return Ok(Some(r));
    }
    let Some(class) = crate::evm::service_model(&name) else {
        return Ok(None);
    };
    let Some(id) = store
        .attribute(target, &format!("{name}_id"))?
        .as_ref()
        .and_then(events::id_value)
    else {
        return Ok(None);
    };
    store.find(&class, id)
}

/// `event_enforce_policy`: `MiqEvent#process_evm_event` for the workspace's
/// MiqEvent ([`events::process_evm_event`]: `Event Raised`, the control
/// policies, `Alert for Event`, the alerts of the datastore root's
/// `control/*.yaml`, run by the engine's `Policies`), unless the event was
/// processed when it was raised.
fn event_enforce_policy(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    _inputs: &Attributes,
) -> Result<(), EngineError> {
    let event = event_of(rt, obj)?;
    let mut event_type = event_text(rt, &event, "event_type")?;
    if event_type.is_empty() {
        event_type = rt.root_text("event_type");
    }
    let store = rt.engine().store().clone();
    let target = match (
        store.attribute(&event, "target_type")?.map(|v| v.to_text()),
        store
            .attribute(&event, "target_id")?
            .as_ref()
            .and_then(events::id_value),
    ) {
        (Some(class), Some(id)) => store.find(&class, id)?,
        _ => event_target(store.as_ref(), &event, "src_vm")?,
    };
    if store.attribute(&event, events::POLICY_DONE_ATTR)? == Some(AttrValue::Bool(true)) {
        rt.log(
            Level::Debug,
            format!(
                "Event [{event_type}] {}.{}: policies and alerts ran when it was raised",
                event.class, event.id
            ),
        );
        return Ok(());
    }
    events::process_evm_event(rt, &event, target.as_ref(), &event_type);
    Ok(())
}

/// Records a refresh request on `target` of the workspace's event: sets its
/// `last_refresh_requested_on` and logs `Refresh requested for <Class>
/// [<id>]`. A provider refresh itself is outside automate.
fn request_refresh(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    targets: &[&str],
    sync: bool,
) -> Result<(), EngineError> {
    let event = event_of(rt, obj)?;
    let store = rt.engine().store().clone();
    let mut done: Vec<VmdbRef> = Vec::new();
    for t in targets {
        let Some(target) = event_target(store.as_ref(), &event, t)? else {
            continue;
        };
        if done.contains(&target) {
            continue;
        }
        let _ = store.update(
            &target,
            "last_refresh_requested_on",
            AttrValue::str(now_utc_text()),
        );
        let how = if sync { " (synchronous)" } else { "" };
        rt.log(
            Level::Info,
            format!(
                "Refresh requested for {} [{}]{how}",
                class_of(&target),
                target.id
            ),
        );
        done.push(target);
    }
    if done.is_empty() {
        let event_type = event_text(rt, &event, "event_type")?;
        rt.log(
            Level::Info,
            format!(
                "Event [{event_type}] has no refresh target [{}]",
                targets.join(", ")
            ),
        );
    }
    Ok(())
}

/// `event_action_refresh(target)`.
fn event_action_refresh(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    inputs: &Attributes,
) -> Result<(), EngineError> {
    let target = input(inputs, "target");
    request_refresh(rt, obj, &[target.as_str()], false)
}

/// `event_action_refresh_sync(target)`.
fn event_action_refresh_sync(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    inputs: &Attributes,
) -> Result<(), EngineError> {
    let target = input(inputs, "target");
    request_refresh(rt, obj, &[target.as_str()], true)
}

/// `refresh`: the event's provider (else its VM).
fn refresh(rt: &mut Runtime<'_>, obj: ObjectId, _: &Attributes) -> Result<(), EngineError> {
    refresh_first(rt, obj, false)
}

/// `refresh_sync`.
fn refresh_sync(rt: &mut Runtime<'_>, obj: ObjectId, _: &Attributes) -> Result<(), EngineError> {
    refresh_first(rt, obj, true)
}

fn refresh_first(rt: &mut Runtime<'_>, obj: ObjectId, sync: bool) -> Result<(), EngineError> {
    let event = event_of(rt, obj)?;
    let store = rt.engine().store().clone();
    let mut target = "ems";
    for t in ["ems", "src_vm", "src_host"] {
        if event_target(store.as_ref(), &event, t)?.is_some() {
            target = t;
            break;
        }
    }
    request_refresh(rt, obj, &[target], sync)
}

/// `event_action_scan(target)`: records a SmartState analysis request
/// (`last_scan_requested_on`); the analysis itself is outside automate.
fn event_action_scan(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    inputs: &Attributes,
) -> Result<(), EngineError> {
    let event = event_of(rt, obj)?;
    let target_name = input(inputs, "target");
    let store = rt.engine().store().clone();
    match event_target(store.as_ref(), &event, &target_name)? {
        Some(target) => {
            let _ = store.update(
                &target,
                "last_scan_requested_on",
                AttrValue::str(now_utc_text()),
            );
            rt.log(
                Level::Info,
                format!(
                    "Analysis requested for {} [{}]",
                    class_of(&target),
                    target.id
                ),
            );
        }
        None => {
            let event_type = event_text(rt, &event, "event_type")?;
            rt.log(
                Level::Info,
                format!("Event [{event_type}] has no scan target [{target_name}]"),
            );
        }
    }
    Ok(())
}

/// Sets `attr` of the event's `target` to `value` in the store and logs
/// `done(target)`; an event without that target logs `"Event has no target
/// [<target>]; <unchanged>"` and changes nothing. A store error aborts.
fn set_on_target(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    target: &str,
    attr: impl FnOnce(&VmdbRef) -> &'static str,
    value: AttrValue,
    unchanged: &str,
    done: impl FnOnce(&VmdbRef, &str) -> String,
) -> Result<(), EngineError> {
    let event = event_of(rt, obj)?;
    let store = rt.engine().store().clone();
    let Some(t) = event_target(store.as_ref(), &event, target)? else {
        rt.log(
            Level::Info,
            format!("Event has no target [{target}]; {unchanged}"),
        );
        return Ok(());
    };
    let attr = attr(&t);
    store
        .update(&t, attr, value)
        .map_err(|e| EngineError::Abort(e.to_string()))?;
    rt.log(Level::Info, done(&t, attr));
    Ok(())
}

/// `change_event_target_state(target, param)`: the target's `power_state`
/// (VMs) or `state` (others) becomes `param`.
fn change_event_target_state(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    inputs: &Attributes,
) -> Result<(), EngineError> {
    let target = input(inputs, "target");
    let param = input(inputs, "param");
    set_on_target(
        rt,
        obj,
        &target,
        |t| {
            if class_of(t) == "VmOrTemplate" {
                "power_state"
            } else {
                "state"
            }
        },
        AttrValue::str(param.as_str()),
        "state not changed",
        |t, attr| format!("Changed {attr} of {} [{}] to [{param}]", class_of(t), t.id),
    )
}

/// `check_policy_prevent`: stops when a policy prevented the event
/// (`full_data.policy.prevented`); the builtin wrapper makes it an abort, as
/// in ManageIQ.
fn check_policy_prevent(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    _: &Attributes,
) -> Result<(), EngineError> {
    let event = event_of(rt, obj)?;
    let store = rt.engine().store().clone();
    let prevented = match store.attribute(&event, "full_data")? {
        Some(AttrValue::Hash(pairs)) => pairs.iter().any(|(k, v)| {
            k.to_text() == "policy"
                && matches!(v, AttrValue::Hash(p) if p.iter().any(|(k2, v2)|
                    k2.to_text() == "prevented" && !v2.is_blank()))
        }),
        _ => false,
    };
    if prevented {
        let event_type = event_text(rt, &event, "event_type")?;
        let message = event_text(rt, &event, "message")?;
        let target = match (
            store.attribute(&event, "target_type")?.map(|v| v.to_text()),
            store.attribute(&event, "target_id")?.map(|v| v.to_text()),
        ) {
            (Some(c), Some(i)) => format!("{c} [{i}]"),
            _ => "its target".to_string(),
        };
        return Err(EngineError::Stop(format!(
            "Event {event_type} for {target} was terminated: {message}"
        )));
    }
    Ok(())
}

/// `src_vm_as_template(flag)`: marks the event's VM as a template (or not).
fn src_vm_as_template(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    inputs: &Attributes,
) -> Result<(), EngineError> {
    let flag = matches!(inputs.get("flag"), Some(AttrValue::Bool(true)))
        || input(inputs, "flag").eq_ignore_ascii_case("true");
    set_on_target(
        rt,
        obj,
        "src_vm",
        |_| "template",
        AttrValue::Bool(flag),
        "template flag not changed",
        |vm, _| format!("Set template of VmOrTemplate [{}] to [{flag}]", vm.id),
    )
}

/// `src_vm_destroy_all_snapshots`: the provider has removed every snapshot;
/// the VM's `Snapshot` rows are marked removed
/// ([`automate_vmdb::snapshots::remove_all`]).
fn src_vm_destroy_all_snapshots(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    _: &Attributes,
) -> Result<(), EngineError> {
    let event = event_of(rt, obj)?;
    let store = rt.engine().store().clone();
    let Some(vm) = event_target(store.as_ref(), &event, "src_vm")? else {
        rt.log(
            Level::Info,
            "Event has no target [src_vm]; no snapshots removed",
        );
        return Ok(());
    };
    let n = automate_vmdb::snapshots::remove_all(store.as_ref(), &vm)
        .map_err(|e| EngineError::Abort(e.to_string()))?;
    rt.log(
        Level::Info,
        format!(
            "Removed all snapshot records of VmOrTemplate [{}] ({n})",
            vm.id
        ),
    );
    Ok(())
}

/// `src_vm_disconnect_storage`: a no-op, as in ManageIQ.
fn src_vm_disconnect_storage(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    _: &Attributes,
) -> Result<(), EngineError> {
    event_of(rt, obj)?;
    Ok(())
}

/// `parse_event_stream`: root `event_path` =
/// `/System/Event/<event_namespace>/<source>/<event_type>`.
fn parse_event_stream(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    _: &Attributes,
) -> Result<(), EngineError> {
    let event = event_of(rt, obj)?;
    let mut namespace = event_text(rt, &event, "event_namespace")?;
    if namespace.is_empty() {
        namespace = event.class.to_string();
    }
    let source = event_text(rt, &event, "source")?;
    let mut event_type = event_text(rt, &event, "event_type")?;
    if event_type.is_empty() {
        event_type = rt.root_text("event_type");
    }
    let path = format!("/System/Event/{namespace}/{source}/{event_type}");
    rt.set_root("event_path", AttrValue::Str(path));
    Ok(())
}

/// The provider category of a provider type or event source.
pub fn provider_category(kind: &str) -> Option<&'static str> {
    let k = kind.to_ascii_lowercase();
    let k = k.trim();
    const INFRA: &[&str] = &[
        "rhevm",
        "redhat",
        "ovirt",
        "vc",
        "vmware",
        "vmwarews",
        "scvmm",
        "microsoft",
        "kubevirt",
        "infra",
        "infrastructure",
    ];
    const CLOUD: &[&str] = &[
        "openstack",
        "amazon",
        "ec2",
        "aws",
        "azure",
        "google",
        "gce",
        "ibm_cloud",
        "vmware_cloud",
        "cloud",
    ];
    if INFRA
        .iter()
        .any(|i| k == *i || k.contains(&format!("::{i}::")) || k.contains("infra"))
    {
        Some("infrastructure")
    } else if CLOUD
        .iter()
        .any(|c| k == *c || k.contains(&format!("::{c}::")) || k.contains("cloud"))
    {
        Some("cloud")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::provider_category;

    #[test]
    fn categories() {
        assert_eq!(provider_category("RHEVM"), Some("infrastructure"));
        assert_eq!(provider_category("VC"), Some("infrastructure"));
        assert_eq!(provider_category("OPENSTACK"), Some("cloud"));
        assert_eq!(provider_category("Amazon"), Some("cloud"));
        assert_eq!(
            provider_category("ManageIQ::Providers::Openstack::CloudManager"),
            Some("cloud")
        );
        assert_eq!(provider_category("EVM"), None);
    }
}
