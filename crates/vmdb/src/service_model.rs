//! The service model's reads: what `vm.name`, `vm.host`,
//! `vm.normalized_name`, `vm.attributes` or `vm.bogus` answer in a Rhai
//! method and in a `${/#vm.host.name}` substitution chain, the way
//! ManageIQ's `MiqAeServiceModelBase` answers them, on every backend.
//!
//! # Which names an object answers ([`read`])
//!
//! 1. `id`; the computed attributes ManageIQ's service models expose
//!    ([`COMPUTED`]): `attributes` (the stored attribute map, `id` first),
//!    `associations` (the association names of the class), `ems_ref_string`,
//!    `event_namespace` (an event's class), `region_number` and
//!    `region_id`, `type` (the stored class when no `type` is stored);
//! 2. `normalized_<name>`: `<name>` read by these rules, a string with
//!    ManageIQ's `normalize` applied ([`normalize`]: URI-excluded
//!    characters, spaces and controls become `_`);
//! 3. a stored attribute (a nil one is nil), else an association
//!    ([`crate::associations`]: `vm.host`, `event.src_vm`, `ems.vms`, ...);
//! 4. a column ManageIQ's table for the class has ([`columns`]) that is not
//!    stored: nil, as an unset column reads in ManageIQ; a belongs_to
//!    association of a known class (`vm.ems_cluster`) whose id is unset:
//!    nil;
//! 5. anything else is ManageIQ's `NoMethodError` ([`NoMethod`]):
//!    ``undefined method `bogus' for #<MiqAeMethodService::MiqAeServiceVm id: 1000000000001>``,
//!    never a silent nil.

use super::associations::{belongs_to, has_many, BELONGS_TO, POLYMORPHIC};
use super::{base_class, region_of, ObjectStore, StoreError, VmdbRef};
use automate_core::value::AttrValue;

/// The prefix that normalizes the result of the method it names.
pub const NORMALIZED_PREFIX: &str = "normalized_";

/// The computed attributes [`read`] answers besides stored ones.
pub const COMPUTED: &[&str] = &[
    "id",
    "attributes",
    "associations",
    "ems_ref_string",
    "event_namespace",
    "region_number",
    "region_id",
    "type",
];

/// A method or attribute the service model does not have: ManageIQ's
/// `NoMethodError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undefined method `{method}' for #<MiqAeMethodService::{} id: {id}>", service_model_name(.class))]
pub struct NoMethod {
    /// The object's class as stored (`Vm`, `EmsEvent`).
    pub class: String,
    /// Its id.
    pub id: i64,
    /// The name asked for.
    pub method: String,
}

/// A failed service-model read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// The object has no such method or attribute.
    #[error(transparent)]
    NoMethod(NoMethod),
    /// The store could not answer, or the object is gone.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> ReadError {
        ReadError::Store(e)
    }
}

/// The service-model class of a stored class, ManageIQ's naming:
/// `MiqAeService` and the class with `::` as `_`
/// (`MiqAeServiceManageIQ_Providers_Vmware_InfraManager_Vm`).
pub fn service_model_name(class: &str) -> String {
    format!("MiqAeService{}", class.replace("::", "_"))
}

/// ManageIQ's `MiqAeServiceModelBase.normalize`: each URI-excluded
/// character (RFC 2396 §2.4.3: controls, space, `<>#%"`, `{}|\^[]``),
/// becomes `_`.
pub fn normalize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' | '>' | '#' | '%' | '"' | '{' | '}' | '|' | '\\' | '^' | '[' | ']' | '`' | ' ' => {
                '_'
            }
            c if (c as u32) <= 0x1F || c as u32 == 0x7F => '_',
            c => c,
        })
        .collect()
}

/// Attribute or method `name` of `obj`, by the rules of the module docs.
pub fn read<S: ObjectStore + ?Sized>(
    store: &S,
    obj: &VmdbRef,
    name: &str,
) -> Result<AttrValue, ReadError> {
    let lname;
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        lname = name.to_ascii_lowercase();
        lname.as_str()
    } else {
        name
    };
    if name == "id" {
        return Ok(AttrValue::Int(obj.id));
    }
    if let Some(v) = computed(store, obj, name)? {
        return Ok(v);
    }
    if let Some(v) = crate::services::read(store, obj, name)? {
        return Ok(v);
    }
    if let Some(inner) = name.strip_prefix(NORMALIZED_PREFIX) {
        return Ok(match read(store, obj, inner)? {
            AttrValue::Str(s) => AttrValue::Str(normalize(&s)),
            v => v,
        });
    }
    if let Some(v) = store.attribute(obj, name)? {
        return Ok(v);
    }
    let base =
        base_class(&obj.class).ok_or_else(|| StoreError::UnknownClass(obj.class.to_string()))?;
    if store.find(base, obj.id)?.is_none() {
        return Err(StoreError::NotFound(obj.class.to_string(), obj.id).into());
    }
    if columns(base).contains(&name) || belongs_to(name).is_some() || POLYMORPHIC.contains(&name) {
        return Ok(AttrValue::Nil);
    }
    Err(ReadError::NoMethod(NoMethod {
        class: obj.class.to_string(),
        id: obj.id,
        method: name.to_string(),
    }))
}

/// Whether `obj` answers `name` (what `respond_to?` says): a read that is
/// not a [`NoMethod`].
pub fn responds_to<S: ObjectStore + ?Sized>(
    store: &S,
    obj: &VmdbRef,
    name: &str,
) -> Result<bool, StoreError> {
    match read(store, obj, name) {
        Ok(_) => Ok(true),
        Err(ReadError::NoMethod(_)) => Ok(false),
        Err(ReadError::Store(e)) => Err(e),
    }
}

/// The computed attributes ([`COMPUTED`]); `None` for other names (and
/// for `type` when one is stored).
fn computed<S: ObjectStore + ?Sized>(
    store: &S,
    obj: &VmdbRef,
    name: &str,
) -> Result<Option<AttrValue>, ReadError> {
    Ok(Some(match name {
        "attributes" => {
            let base = base_class(&obj.class)
                .ok_or_else(|| StoreError::UnknownClass(obj.class.to_string()))?;
            let stored = store
                .load(base, obj.id)?
                .ok_or_else(|| StoreError::NotFound(obj.class.to_string(), obj.id))?;
            let mut pairs = Vec::with_capacity(stored.attrs.len() + 1);
            pairs.push((AttrValue::str("id"), AttrValue::Int(obj.id)));
            pairs.extend(
                stored
                    .attrs
                    .into_iter()
                    .filter(|(k, _)| k != "id")
                    .map(|(k, v)| (AttrValue::Str(k), v)),
            );
            AttrValue::Hash(pairs)
        }
        "associations" => AttrValue::Array(
            associations_of(base_class(&obj.class).unwrap_or(""))
                .into_iter()
                .map(AttrValue::str)
                .collect(),
        ),
        "ems_ref_string" => return Ok(Some(read(store, obj, "ems_ref")?)),
        "event_namespace" if base_class(&obj.class) == Some("EventStream") => {
            AttrValue::Str(obj.class.to_string())
        }
        "region_number" | "region_id" => AttrValue::Int(region_of(obj.id)),
        "type" => match store.attribute(obj, "type")? {
            Some(v) => v,
            None => AttrValue::Str(obj.class.to_string()),
        },
        _ => return Ok(None),
    }))
}

/// The association names a base class answers, sorted (ManageIQ's
/// `associations`).
pub fn associations_of(base: &str) -> Vec<&'static str> {
    const HAS_MANY: &[&str] = &[
        "ems_clusters",
        "ems_events",
        "hosts",
        "miq_request_tasks",
        "miq_requests",
        "miq_templates",
        "vms",
        "vms_and_templates",
    ];
    let cols = columns(base);
    let mut out: Vec<&'static str> = BELONGS_TO
        .iter()
        .filter(|(_, fks, _)| fks.iter().any(|fk| cols.contains(fk)))
        .map(|(n, _, _)| *n)
        .chain(
            POLYMORPHIC
                .iter()
                .filter(|p| cols.iter().any(|c| c.strip_suffix("_type") == Some(**p)))
                .copied(),
        )
        .chain(
            HAS_MANY
                .iter()
                .filter(|n| has_many(base, n).is_some())
                .copied(),
        )
        .collect();
    out.extend(crate::services::association_names(base));
    out.sort_unstable();
    out.dedup();
    out
}

/// The columns of ManageIQ's table for a base class that this store's
/// objects may carry (an unset one reads as nil, not as a
/// [`NoMethod`]): the ones Automate methods and ManageIQ's content read.
pub fn columns(base: &str) -> &'static [&'static str] {
    match base {
        "VmOrTemplate" => &[
            "availability_zone_id",
            "boot_time",
            "cloud",
            "cloud_tenant_id",
            "connection_state",
            "cpu_limit",
            "cpu_reserve",
            "cpu_shares",
            "created_on",
            "description",
            "ems_cluster_id",
            "ems_created_on",
            "ems_id",
            "ems_ref",
            "evm_owner_id",
            "flavor_id",
            "guid",
            "host_id",
            "last_scan_on",
            "last_sync_on",
            "linked_clone",
            "location",
            "memory_limit",
            "memory_reserve",
            "miq_group_id",
            "name",
            "orchestration_stack_id",
            "power_state",
            "previous_state",
            "raw_power_state",
            "registered",
            "retired",
            "retirement_last_warn",
            "retirement_requester",
            "retirement_state",
            "retirement_warn",
            "retires_on",
            "state_changed_on",
            "storage_id",
            "template",
            "tenant_id",
            "tools_status",
            "uid_ems",
            "updated_on",
            "vendor",
            "version",
        ],
        "Host" => &[
            "admin_disabled",
            "asset_tag",
            "connection_state",
            "created_on",
            "ems_cluster_id",
            "ems_id",
            "ems_ref",
            "failover",
            "guid",
            "hostname",
            "hyperthreading",
            "hypervisor_hostname",
            "ipaddress",
            "ipmi_address",
            "mac_address",
            "maintenance",
            "maintenance_reason",
            "name",
            "power_state",
            "service_tag",
            "settings",
            "smart",
            "uid_ems",
            "updated_on",
            "user_assigned_os",
            "vmm_buildnumber",
            "vmm_product",
            "vmm_vendor",
            "vmm_version",
        ],
        "ExtManagementSystem" => &[
            "api_version",
            "created_on",
            "enabled",
            "guid",
            "hostname",
            "ipaddress",
            "last_refresh_date",
            "last_refresh_error",
            "name",
            "options",
            "parent_ems_id",
            "port",
            "provider_id",
            "provider_region",
            "realm",
            "tenant_id",
            "uid_ems",
            "updated_on",
            "zone_id",
        ],
        "EventStream" => &[
            "availability_zone_id",
            "chain_id",
            "created_on",
            "dest_ems_cluster_id",
            "dest_host_id",
            "dest_host_name",
            "dest_vm_location",
            "dest_vm_name",
            "dest_vm_or_template_id",
            "ems_cluster_id",
            "ems_cluster_name",
            "ems_cluster_uid",
            "ems_id",
            "ems_ref",
            "event_type",
            "full_data",
            "generating_ems_id",
            "group",
            "group_level",
            "group_name",
            "host_id",
            "host_name",
            "is_task",
            "message",
            "source",
            "target_id",
            "target_type",
            "timestamp",
            "user_id",
            "username",
            "vm_location",
            "vm_name",
            "vm_or_template_id",
        ],
        "MiqRequest" => &[
            "approval_state",
            "cancelation_status",
            "created_on",
            "description",
            "destination_id",
            "destination_type",
            "fulfilled_on",
            "initiated_by",
            "message",
            "options",
            "process",
            "request_state",
            "request_type",
            "requester_id",
            "requester_name",
            "service_order_id",
            "source_id",
            "source_type",
            "status",
            "tenant_id",
            "updated_on",
            "userid",
        ],
        "MiqRequestTask" => &[
            "cancelation_status",
            "created_on",
            "description",
            "destination_id",
            "destination_type",
            "message",
            "miq_request_id",
            "miq_request_task_id",
            "options",
            "phase",
            "phase_context",
            "request_type",
            "source_id",
            "source_type",
            "state",
            "status",
            "tenant_id",
            "updated_on",
            "userid",
        ],
        "User" => &[
            "created_on",
            "current_group_id",
            "email",
            "first_name",
            "last_name",
            "lastlogoff",
            "lastlogon",
            "name",
            "settings",
            "updated_on",
            "userid",
        ],
        "MiqGroup" => &[
            "created_on",
            "description",
            "group_type",
            "sequence",
            "settings",
            "tenant_id",
            "updated_on",
        ],
        "MiqServer" => &[
            "build",
            "guid",
            "hostname",
            "ipaddress",
            "is_master",
            "last_heartbeat",
            "name",
            "pid",
            "started_on",
            "status",
            "stopped_on",
            "version",
            "vm_id",
            "zone_id",
        ],
        "Tenant" => &[
            "ancestry",
            "company_name",
            "description",
            "divisible",
            "domain",
            "name",
            "source_id",
            "source_type",
            "subdomain",
            "use_config_for_attributes",
        ],
        "Storage" => &[
            "created_on",
            "ems_ref",
            "free_space",
            "location",
            "master",
            "multiplehostaccess",
            "name",
            "store_type",
            "total_space",
            "uncommitted",
            "updated_on",
        ],
        "EmsCluster" => &[
            "created_on",
            "drs_enabled",
            "effective_cpu",
            "effective_memory",
            "ems_id",
            "ems_ref",
            "ha_enabled",
            "name",
            "uid_ems",
            "updated_on",
        ],
        "MiqPolicy" => &[
            "active",
            "created_by",
            "created_on",
            "description",
            "expression",
            "guid",
            "mode",
            "name",
            "notes",
            "read_only",
            "towhat",
            "updated_by",
            "updated_on",
        ],
        "Service" => &[
            "ancestry",
            "created_at",
            "description",
            "display",
            "evm_owner_id",
            "guid",
            "initiator",
            "lifecycle_state",
            "miq_group_id",
            "name",
            "options",
            "retired",
            "retirement_last_warn",
            "retirement_requester",
            "retirement_state",
            "retirement_warn",
            "retires_on",
            "service_template_id",
            "tenant_id",
            "type",
            "updated_at",
            "visible",
        ],
        "ServiceResource" => &[
            "group_idx",
            "provision_index",
            "resource_id",
            "resource_type",
            "scaling_max",
            "scaling_min",
            "service_id",
            "service_template_id",
            "source_id",
            "source_type",
            "start_action",
            "start_delay",
            "status",
            "stop_action",
            "stop_delay",
        ],
        "Snapshot" => &[
            "create_time",
            "created_on",
            "current",
            "description",
            "disks",
            "ems_ref",
            "ems_ref_type",
            "filename",
            "name",
            "parent_id",
            "parent_uid",
            "total_size",
            "uid",
            "uid_ems",
            "updated_on",
            "vm_or_template_id",
        ],
        "MiqAlert" => &[
            "created_on",
            "db",
            "description",
            "enabled",
            "expression",
            "guid",
            "options",
            "read_only",
            "responds_to_events",
            "severity",
            "updated_on",
        ],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use automate_core::value::Attributes;

    fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn normalize_is_manageiqs() {
        assert_eq!(
            normalize("my vm<1>#%\"{}|\\^[]`\tx"),
            format!("my_vm_1{}x", "_".repeat(13))
        );
        assert_eq!(normalize("web-01.example"), "web-01.example");
    }

    #[test]
    fn reads_follow_the_rules() {
        let s = MemoryStore::new();
        let host = s
            .create("Host", attrs(&[("name", AttrValue::str("esx 1"))]))
            .unwrap();
        let vm = s
            .create(
                "Vm",
                attrs(&[
                    ("name", AttrValue::str("web 01")),
                    ("host_id", AttrValue::Int(host.id)),
                    ("retired", AttrValue::Nil),
                    ("ems_ref", AttrValue::str("vm-1")),
                ]),
            )
            .unwrap();
        assert_eq!(
            read(&s, &vm, "normalized_name").unwrap(),
            AttrValue::str("web_01")
        );
        assert_eq!(read(&s, &vm, "Name").unwrap(), AttrValue::str("web 01"));
        assert_eq!(
            read(&s, &vm, "host").unwrap(),
            AttrValue::Object(host.clone())
        );
        assert_eq!(read(&s, &vm, "retired").unwrap(), AttrValue::Nil);
        assert_eq!(read(&s, &vm, "vendor").unwrap(), AttrValue::Nil);
        assert_eq!(read(&s, &vm, "ems_cluster").unwrap(), AttrValue::Nil);
        assert_eq!(read(&s, &vm, "owner").unwrap(), AttrValue::Nil);
        assert_eq!(
            read(&s, &vm, "ems_ref_string").unwrap(),
            AttrValue::str("vm-1")
        );
        assert_eq!(read(&s, &vm, "type").unwrap(), AttrValue::str("Vm"));
        assert_eq!(read(&s, &vm, "region_number").unwrap(), AttrValue::Int(1));
        assert_eq!(
            read(&s, &host, "vms").unwrap(),
            AttrValue::Array(vec![AttrValue::Object(vm.clone())])
        );
        match read(&s, &vm, "attributes").unwrap() {
            AttrValue::Hash(pairs) => {
                assert_eq!(pairs[0], (AttrValue::str("id"), AttrValue::Int(vm.id)));
                assert_eq!(pairs[1], (AttrValue::str("name"), AttrValue::str("web 01")));
            }
            v => panic!("not a hash: {v:?}"),
        }
        let err = read(&s, &vm, "bogus").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "undefined method `bogus' for #<MiqAeMethodService::MiqAeServiceVm id: {}>",
                vm.id
            )
        );
        assert!(!responds_to(&s, &vm, "bogus").unwrap());
        assert!(responds_to(&s, &vm, "retires_on").unwrap());
        let gone = VmdbRef {
            class: vm.class.clone(),
            id: vm.id + 100,
        };
        assert!(matches!(
            read(&s, &gone, "bogus"),
            Err(ReadError::Store(StoreError::NotFound(_, _)))
        ));
    }

    #[test]
    fn associations_are_listed_per_class() {
        let vm = associations_of("VmOrTemplate");
        for name in ["ext_management_system", "host", "owner"] {
            assert!(vm.contains(&name), "{name} in {vm:?}");
        }
        let ems = associations_of("ExtManagementSystem");
        assert!(ems.contains(&"vms") && ems.contains(&"hosts"), "{ems:?}");
        let ev = associations_of("EventStream");
        for name in [
            "src_vm",
            "dest_vm",
            "vm",
            "host",
            "target",
            "ext_management_system",
        ] {
            assert!(ev.contains(&name), "{name} in {ev:?}");
        }
    }
}
