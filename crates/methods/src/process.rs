//! The `System/Process` builtins that classify a request or a provider:
//! `parse_provider_category` and `parse_automation_request`, with
//! ManageIQ's whole tables (`MiqAeBuiltinMethod` in
//! manageiq-automation_engine).
//!
//! `parse_provider_category` looks at the root's `vm`,
//! `orchestration_stack`, `miq_request`, `miq_provision`,
//! `vm_migrate_task`, `vm_retire_task`, `service_retire_task`,
//! `orchestration_stack_retire_task`, `physical_server_provision_task` and
//! `platform_category`, in that order, and the first one that tells
//! decides: a VM (or a request's or task's source VM) is `cloud` or
//! `infrastructure`, an orchestration stack `cloud`, a physical server
//! provision `physicalinfrastructure`, a service retirement `""` (an empty
//! category, as ManageIQ gives), `platform_category = infra`
//! `infrastructure`; nothing gives `unknown`. ManageIQ's roots for a VM's
//! event carry the VM as `vm`; automate's event roots carry the event, so
//! when none of the keys is set the event's VM stands in for `vm`.

use super::builtins::provider_category;
use super::events::{self, event_stream_of, event_target};
use automate_engine::{AttrValue, Attributes, EngineError, Level, ObjectId, Runtime};
use automate_vmdb::{ObjectStore, VmdbRef};

/// ManageIQ's `CLOUD`, `INFRASTRUCTURE`, `PHYSICAL_INFRA` and `UNKNOWN`.
pub const CLOUD: &str = "cloud";
/// See [`CLOUD`].
pub const INFRASTRUCTURE: &str = "infrastructure";
/// See [`CLOUD`].
pub const PHYSICAL_INFRA: &str = "physicalinfrastructure";
/// See [`CLOUD`].
pub const UNKNOWN: &str = "unknown";

/// `MiqAeBuiltinMethod::ATTRIBUTE_LIST`, in ManageIQ's order.
pub const ATTRIBUTE_LIST: &[&str] = &[
    "vm",
    "orchestration_stack",
    "miq_request",
    "miq_provision",
    "vm_migrate_task",
    "vm_retire_task",
    "service_retire_task",
    "orchestration_stack_retire_task",
    "physical_server_provision_task",
    "platform_category",
];

/// `miq_parse_automation_request`'s table: request type to target
/// component, class and instance.
pub fn automation_request_target(
    request: &str,
) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match request {
        "vm_provision" => ("VM", "Lifecycle", "Provisioning"),
        "vm_retired" | "vm_retire" => ("VM", "Lifecycle", "Retirement"),
        "vm_migrate" => ("VM", "Lifecycle", "Migrate"),
        "service_retire" => ("Service", "Lifecycle", "Retirement"),
        "orchestration_stack_retire" => ("Orchestration", "Lifecycle", "Retirement"),
        "configured_system_provision" => ("Configured_System", "Lifecycle", "Provisioning"),
        "physical_server_provision" => ("PhysicalServer", "Lifecycle", "Provisioning"),
        _ => return None,
    })
}

/// `parse_automation_request`: the request type's target component, class
/// and instance on the current object (nil for a type ManageIQ does not
/// know); `configured_system_provision` also sets the root's
/// `ae_provider_category` to `infrastructure`.
pub(crate) fn parse_automation_request(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    _: &Attributes,
) -> Result<(), EngineError> {
    let request = rt
        .attr(obj, "request")
        .map(AttrValue::to_text)
        .unwrap_or_default();
    let target = automation_request_target(&request);
    if request == "configured_system_provision" {
        rt.set_root("ae_provider_category", AttrValue::str(INFRASTRUCTURE));
    }
    let (c, k, i) = target.unwrap_or(("", "", ""));
    for (name, value) in [
        ("target_component", c),
        ("target_class", k),
        ("target_instance", i),
    ] {
        let v = if target.is_some() {
            AttrValue::str(value)
        } else {
            AttrValue::Nil
        };
        rt.set_attr(obj, name, v);
    }
    rt.log(
        Level::Info,
        format!("Request:<{request}> Target Component:<{c}> "),
    );
    rt.log(
        Level::Info,
        format!("Target Class:<{k}> Target Instance:<{i}>"),
    );
    Ok(())
}

/// `parse_provider_category`: root `ae_provider_category` (module doc).
pub(crate) fn parse_provider_category(
    rt: &mut Runtime<'_>,
    obj: ObjectId,
    _: &Attributes,
) -> Result<(), EngineError> {
    let store = rt.engine().store().clone();
    let root = rt.root_of(obj);
    let mut category: Option<String> = None;
    for key in ATTRIBUTE_LIST {
        let Some(value) = rt.attr(root, key).filter(|v| !v.is_nil()).cloned() else {
            continue;
        };
        if let Some(c) = category_for_key(store.as_ref(), key, &value)? {
            category = Some(c);
            break;
        }
    }
    if category.is_none() {
        if let Some(event) = event_stream_of(rt, obj)? {
            let vm = match event_target(store.as_ref(), &event, "vm")? {
                Some(vm) => Some(vm),
                None => event_target(store.as_ref(), &event, "src_vm")?,
            };
            if let Some(vm) = vm {
                category = Some(vm_category(store.as_ref(), &vm)?);
            }
        }
    }
    let shown = category.clone().unwrap_or_default();
    rt.log(
        Level::Info,
        format!("Setting provider_category to: {shown}"),
    );
    let category = category.unwrap_or_else(|| UNKNOWN.to_string());
    rt.set_root("ae_provider_category", AttrValue::Str(category));
    Ok(())
}

/// `category_for_key` and `detect_category`: what one root key tells, or
/// `None` to look at the next one.
fn category_for_key(
    store: &dyn ObjectStore,
    key: &str,
    value: &AttrValue,
) -> Result<Option<String>, EngineError> {
    if key == "platform_category" {
        let text = value.to_text();
        return Ok(Some(if text == "infra" {
            INFRASTRUCTURE.to_string()
        } else {
            text
        }));
    }
    let AttrValue::Object(obj) = value else {
        // Not a service-model object: ManageIQ's `respond_to?(:cloud)` fails.
        return Ok(None);
    };
    Ok(match key {
        "orchestration_stack" | "orchestration_stack_retire_task" => Some(CLOUD.to_string()),
        "miq_request" => {
            if is_physical_server_request(store, obj)? {
                Some(PHYSICAL_INFRA.to_string())
            } else {
                match source_vm(store, obj)? {
                    Some(vm) => Some(vm_category(store, &vm)?),
                    None => None,
                }
            }
        }
        "miq_provision" | "vm_migrate_task" | "vm_retire_task" => match source_vm(store, obj)? {
            Some(vm) => Some(vm_category(store, &vm)?),
            None => None,
        },
        "service_retire_task" => Some(String::new()),
        "vm" => Some(vm_category(store, obj)?),
        "physical_server_provision_task" => Some(PHYSICAL_INFRA.to_string()),
        _ => Some(UNKNOWN.to_string()),
    })
}

/// A `PhysicalServerProvisionRequest`, by its stored class or `type`.
fn is_physical_server_request(store: &dyn ObjectStore, req: &VmdbRef) -> Result<bool, EngineError> {
    let named = |s: &str| {
        s.to_ascii_lowercase()
            .contains("physicalserverprovisionrequest")
    };
    if named(&req.class) {
        return Ok(true);
    }
    for attr in ["type", "request_type"] {
        if let Some(v) = store.attribute(req, attr)? {
            let t = v.to_text();
            if named(&t) || t == "provision_physical_server" {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A request's or task's `source` (`source_id`, `src_vm_id`,
/// `vm_or_template_id`): the VM or template it acts on.
fn source_vm(store: &dyn ObjectStore, obj: &VmdbRef) -> Result<Option<VmdbRef>, EngineError> {
    if let Some(AttrValue::Object(r)) = store.attribute(obj, "source")? {
        return Ok(Some(r));
    }
    for attr in ["source_id", "src_vm_id", "vm_or_template_id", "vm_id"] {
        if let Some(id) = store
            .attribute(obj, attr)?
            .as_ref()
            .and_then(events::id_value)
        {
            if let Some(vm) = store.find("VmOrTemplate", id)? {
                return Ok(Some(vm));
            }
        }
    }
    Ok(None)
}

/// `vm_detect_category`: `vm.cloud ? cloud : infrastructure`. A VM stored
/// without the `cloud` flag is told by its `type` or its provider's
/// (`ManageIQ::Providers::Amazon::CloudManager::Vm` is a cloud VM).
fn vm_category(store: &dyn ObjectStore, vm: &VmdbRef) -> Result<String, EngineError> {
    match store.attribute(vm, "cloud")? {
        Some(AttrValue::Bool(b)) => return Ok(category_of(b)),
        Some(AttrValue::Str(s)) if matches!(s.as_str(), "true" | "t" | "1") => {
            return Ok(category_of(true))
        }
        Some(AttrValue::Str(s)) if matches!(s.as_str(), "false" | "f" | "0") => {
            return Ok(category_of(false))
        }
        _ => {}
    }
    let mut kinds = Vec::new();
    if let Some(t) = store.attribute(vm, "type")? {
        kinds.push(t.to_text());
    }
    if let Some(id) = store
        .attribute(vm, "ems_id")?
        .as_ref()
        .and_then(events::id_value)
    {
        if let Some(ems) = store.find("ExtManagementSystem", id)? {
            for attr in ["type", "emstype"] {
                if let Some(v) = store.attribute(&ems, attr)? {
                    kinds.push(v.to_text());
                }
            }
        }
    }
    let cloud = kinds.iter().any(|k| provider_category(k) == Some(CLOUD));
    Ok(category_of(cloud))
}

fn category_of(cloud: bool) -> String {
    if cloud { CLOUD } else { INFRASTRUCTURE }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ManageIQ's `miq_parse_automation_request` table, row by row.
    #[test]
    fn automation_request_table() {
        for (request, want) in [
            ("vm_provision", ("VM", "Lifecycle", "Provisioning")),
            ("vm_retired", ("VM", "Lifecycle", "Retirement")),
            ("vm_retire", ("VM", "Lifecycle", "Retirement")),
            ("vm_migrate", ("VM", "Lifecycle", "Migrate")),
            ("service_retire", ("Service", "Lifecycle", "Retirement")),
            (
                "orchestration_stack_retire",
                ("Orchestration", "Lifecycle", "Retirement"),
            ),
            (
                "configured_system_provision",
                ("Configured_System", "Lifecycle", "Provisioning"),
            ),
            (
                "physical_server_provision",
                ("PhysicalServer", "Lifecycle", "Provisioning"),
            ),
        ] {
            assert_eq!(automation_request_target(request), Some(want), "{request}");
        }
        assert_eq!(automation_request_target("host_provision"), None);
        assert_eq!(automation_request_target("VM_PROVISION"), None);
    }
}
