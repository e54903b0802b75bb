//! The association rules every backend answers the same way: `vm.host`
//! (belongs_to, from an id attribute), `target` (polymorphic,
//! `target_type` and `target_id`; also `source`, `destination`,
//! `resource`), `host.vms` (has_many, the objects whose id attribute names
//! the owner; `vms` leaves templates out, `miq_templates` keeps only them,
//! `vms_and_templates` both, as ManageIQ's). A backend reads an object's stored
//! attributes its own way and hands them to [`resolve`], with a
//! [`Lookup`] for the objects an association points to.

use super::{base_class, StoreError, VmdbRef};
use automate_core::value::{AttrValue, Attributes};

/// The reads association rules need from a backend besides the object's
/// own attributes: finding the object an id points to, and the objects
/// whose attribute holds an owner's id.
pub trait Lookup {
    /// The object of `class` (or a subclass) with id `id`, as
    /// [`ObjectStore::find`](crate::ObjectStore::find).
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError>;

    /// The objects of `class` whose attribute `attr` equals `value`, by
    /// id, as [`ObjectStore::find_by`](crate::ObjectStore::find_by).
    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError>;
}

/// Attribute `name` (lower-case) of the object `id` of base class `base`,
/// whose stored attributes are `attrs`: the stored attribute itself, else
/// the association of that name (an [`AttrValue::Object`], nil when its
/// id is unset or dangling, or an array for a has_many), else `None`.
pub fn resolve<L: Lookup + ?Sized>(
    lookup: &L,
    base: &str,
    id: i64,
    attrs: &Attributes,
    name: &str,
) -> Result<Option<AttrValue>, StoreError> {
    if let Some(v) = attrs.get(name) {
        return Ok(Some(v.clone()));
    }
    // belongs_to: `host` -> host_id.
    if let Some((fks, target)) = belongs_to(name) {
        let fk = fks.iter().find_map(|fk| attrs.get(fk.as_str()));
        if let Some(fk) = fk {
            return Ok(Some(object_or_nil(lookup, target, fk)?));
        }
        if !is_generic(name) {
            return Ok(Some(AttrValue::Nil));
        }
    }
    // Polymorphic `target`, `source`, ...: <name>_type + <name>_id.
    if POLYMORPHIC.contains(&name) {
        let (t, fk) = (format!("{name}_type"), format!("{name}_id"));
        if let (Some(t), Some(fk)) = (attrs.get(t.as_str()), attrs.get(fk.as_str())) {
            return Ok(Some(object_or_nil(lookup, &t.to_text(), fk)?));
        }
    }
    // has_many: `host.vms`.
    if let Some((target, fk)) = has_many(base, name) {
        let kind = template_filter(name);
        return Ok(Some(AttrValue::Array(
            lookup
                .find_by(target, fk, &AttrValue::Int(id))?
                .into_iter()
                .filter(|r| kind.is_none_or(|templates| is_template(&r.class) == templates))
                .map(AttrValue::Object)
                .collect(),
        )));
    }
    Ok(None)
}

/// The object of `class` whose id `fk` holds, or nil.
fn object_or_nil<L: Lookup + ?Sized>(
    lookup: &L,
    class: &str,
    fk: &AttrValue,
) -> Result<AttrValue, StoreError> {
    let Some(id) = as_id(fk) else {
        return Ok(AttrValue::Nil);
    };
    Ok(lookup
        .find(class, id)?
        .map(AttrValue::Object)
        .unwrap_or(AttrValue::Nil))
}

/// The id an association attribute holds (an integer, an object, or a
/// string of digits).
pub fn as_id(v: &AttrValue) -> Option<i64> {
    match v {
        AttrValue::Int(i) => Some(*i),
        AttrValue::Object(r) => Some(r.id),
        AttrValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The explicitly named belongs_to associations: (name, the id attributes
/// tried in order, target class); the rest follow `<name>` ->
/// `<name>_id` when `<name>` names a known class.
pub const BELONGS_TO: &[(&str, &[&str], &str)] = &[
    ("host", &["host_id"], "Host"),
    ("ems", &["ems_id"], "ExtManagementSystem"),
    ("ext_management_system", &["ems_id"], "ExtManagementSystem"),
    ("vm", &["vm_or_template_id", "vm_id"], "VmOrTemplate"),
    (
        "vm_or_template",
        &["vm_or_template_id", "vm_id"],
        "VmOrTemplate",
    ),
    (
        "dest_vm",
        &["dest_vm_or_template_id", "dest_vm_id"],
        "VmOrTemplate",
    ),
    (
        "dest_vm_or_template",
        &["dest_vm_or_template_id", "dest_vm_id"],
        "VmOrTemplate",
    ),
    ("dest_host", &["dest_host_id"], "Host"),
    ("dest_ems", &["dest_ems_id"], "ExtManagementSystem"),
    ("miq_server", &["miq_server_id"], "MiqServer"),
    ("user", &["user_id"], "User"),
    ("miq_request", &["miq_request_id"], "MiqRequest"),
    // EventStream's service model: `src_vm` and `vm` are
    // `src_vm_or_template`, `host` is `src_host`.
    ("src_vm", &["vm_or_template_id", "vm_id"], "VmOrTemplate"),
    (
        "src_vm_or_template",
        &["vm_or_template_id", "vm_id"],
        "VmOrTemplate",
    ),
    ("src_host", &["host_id"], "Host"),
    // VmOrTemplate's `owner` is `evm_owner`.
    ("owner", &["evm_owner_id"], "User"),
    ("evm_owner", &["evm_owner_id"], "User"),
    // MiqRequest's `requester`.
    ("requester", &["requester_id"], "User"),
];

/// The polymorphic belongs_to associations: `<name>_type` names the
/// class, `<name>_id` the id.
pub const POLYMORPHIC: &[&str] = &["target", "source", "destination", "resource"];

/// Whether a stored class is a template (`MiqTemplate`, a provider's
/// `..._Template`): `ems.vms` leaves them out, `ems.miq_templates` keeps
/// only them.
pub fn is_template(class: &str) -> bool {
    class.ends_with("Template") && !class.eq_ignore_ascii_case("VmOrTemplate")
}

/// `Some(false)`: VMs only; `Some(true)`: templates only; `None`: both.
fn template_filter(name: &str) -> Option<bool> {
    match name {
        "vms" => Some(false),
        "miq_templates" => Some(true),
        _ => None,
    }
}

/// Whether `name` is not one of the explicitly named [`BELONGS_TO`]
/// associations (so an unset id falls through to the other rules).
fn is_generic(name: &str) -> bool {
    !BELONGS_TO.iter().any(|(n, _, _)| *n == name)
}

/// The id attributes and target class of the belongs_to association
/// `name`, if it is one.
pub fn belongs_to(name: &str) -> Option<(Vec<String>, &'static str)> {
    if let Some((_, fks, target)) = BELONGS_TO.iter().find(|(n, _, _)| *n == name) {
        return Some((fks.iter().map(|s| s.to_string()).collect(), target));
    }
    let target = base_class(&name.replace('_', ""))?;
    Some((vec![format!("{name}_id")], target))
}

/// The has_many associations: (owner base class, name) -> (target class,
/// the target's attribute holding the owner's id).
pub fn has_many(base: &str, name: &str) -> Option<(&'static str, &'static str)> {
    Some(match (base, name) {
        ("Host", "vms" | "vms_and_templates") => ("VmOrTemplate", "host_id"),
        ("Host", "ems_events") => ("EventStream", "host_id"),
        ("ExtManagementSystem", "vms" | "vms_and_templates" | "miq_templates") => {
            ("VmOrTemplate", "ems_id")
        }
        ("ExtManagementSystem", "hosts") => ("Host", "ems_id"),
        ("ExtManagementSystem", "ems_events") => ("EventStream", "ems_id"),
        ("ExtManagementSystem", "ems_clusters") => ("EmsCluster", "ems_id"),
        ("EmsCluster", "vms" | "vms_and_templates" | "miq_templates") => {
            ("VmOrTemplate", "ems_cluster_id")
        }
        ("EmsCluster", "hosts") => ("Host", "ems_cluster_id"),
        ("VmOrTemplate", "ems_events") => ("EventStream", "vm_or_template_id"),
        ("User", "vms") => ("VmOrTemplate", "evm_owner_id"),
        ("User", "miq_requests") => ("MiqRequest", "requester_id"),
        ("MiqGroup", "vms") => ("VmOrTemplate", "miq_group_id"),
        ("Tenant", "vms") => ("VmOrTemplate", "tenant_id"),
        ("MiqRequest", "miq_request_tasks") => ("MiqRequestTask", "miq_request_id"),
        ("MiqRequestTask", "miq_request_tasks") => ("MiqRequestTask", "miq_request_task_id"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn belongs_to_names_and_generic_ids() {
        assert_eq!(belongs_to("ems").map(|b| b.1), Some("ExtManagementSystem"));
        assert_eq!(
            belongs_to("ems_cluster"),
            Some((vec!["ems_cluster_id".to_string()], "EmsCluster"))
        );
        assert!(belongs_to("nonsense").is_none());
        assert_eq!(has_many("Host", "vms"), Some(("VmOrTemplate", "host_id")));
        assert_eq!(has_many("VmOrTemplate", "vms"), None);
        assert_eq!(as_id(&AttrValue::str(" 42 ")), Some(42));
        assert_eq!(as_id(&AttrValue::Nil), None);
    }
}
