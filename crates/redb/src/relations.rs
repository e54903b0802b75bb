//! Associations resolved when an attribute is read: `vm.host` (belongs_to,
//! from an id attribute), `target` (polymorphic, `target_type` and
//! `target_id`), `host.vms` (has_many, through the attribute index).

use super::read::Reader;
use automate_core::value::AttrValue;
use automate_vmdb::{base_class, StoreError, VmdbRef};

impl Reader<'_> {
    pub(super) fn attribute(
        &self,
        obj: &VmdbRef,
        name: &str,
    ) -> Result<Option<AttrValue>, StoreError> {
        let name = name.to_ascii_lowercase();
        if name == "id" {
            return Ok(Some(AttrValue::Int(obj.id)));
        }
        let Some(base) = base_class(&obj.class) else {
            return Ok(None);
        };
        let Some(stored) = self.objects.load_obj(base, obj.id)? else {
            return Ok(None);
        };
        if let Some(v) = stored.attrs.get(&name) {
            return Ok(Some(v.clone()));
        }
        // belongs_to: `host` -> host_id.
        if let Some((fks, target)) = belongs_to(&name) {
            let fk = fks.iter().find_map(|fk| stored.attrs.get(fk.as_str()));
            if let Some(fk) = fk {
                return Ok(Some(self.object_or_nil(target, fk)?));
            }
            if !is_generic(&name) {
                return Ok(Some(AttrValue::Nil));
            }
        }
        // Polymorphic `target`: target_type + target_id.
        if name == "target" {
            if let (Some(t), Some(fk)) = (
                stored.attrs.get("target_type"),
                stored.attrs.get("target_id"),
            ) {
                return Ok(Some(self.object_or_nil(&t.to_text(), fk)?));
            }
        }
        // has_many: `host.vms`.
        if let Some((target, fk)) = has_many(base, &name) {
            return Ok(Some(AttrValue::Array(
                self.find_by(target, fk, &AttrValue::Int(obj.id))?
                    .into_iter()
                    .map(AttrValue::Object)
                    .collect(),
            )));
        }
        Ok(None)
    }

    /// The object of `class` whose id `fk` holds, or nil.
    pub(super) fn object_or_nil(
        &self,
        class: &str,
        fk: &AttrValue,
    ) -> Result<AttrValue, StoreError> {
        let Some(id) = as_id(fk) else {
            return Ok(AttrValue::Nil);
        };
        Ok(self
            .find(class, id)?
            .map(AttrValue::Object)
            .unwrap_or(AttrValue::Nil))
    }
}

/// The id an association attribute holds.
pub(super) fn as_id(v: &AttrValue) -> Option<i64> {
    match v {
        AttrValue::Int(i) => Some(*i),
        AttrValue::Object(r) => Some(r.id),
        AttrValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The explicitly named belongs_to associations; the rest follow
/// `<name>` -> `<name>_id` when `<name>` names a known class.
pub(super) const BELONGS_TO: &[(&str, &[&str], &str)] = &[
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
];

pub(super) fn is_generic(name: &str) -> bool {
    !BELONGS_TO.iter().any(|(n, _, _)| *n == name)
}

/// The id attributes and target class of a belongs_to association.
pub(super) fn belongs_to(name: &str) -> Option<(Vec<String>, &'static str)> {
    if let Some((_, fks, target)) = BELONGS_TO.iter().find(|(n, _, _)| *n == name) {
        return Some((fks.iter().map(|s| s.to_string()).collect(), target));
    }
    let target = base_class(&name.replace('_', ""))?;
    Some((vec![format!("{name}_id")], target))
}

/// The has_many associations: (owner base class, name) -> (target class,
/// the target's attribute holding the owner's id).
pub(super) fn has_many(base: &str, name: &str) -> Option<(&'static str, &'static str)> {
    Some(match (base, name) {
        ("Host", "vms" | "vms_and_templates") => ("VmOrTemplate", "host_id"),
        ("ExtManagementSystem", "vms" | "vms_and_templates") => ("VmOrTemplate", "ems_id"),
        ("ExtManagementSystem", "hosts") => ("Host", "ems_id"),
        ("ExtManagementSystem", "ems_events") => ("EventStream", "ems_id"),
        ("MiqRequest", "miq_request_tasks") => ("MiqRequestTask", "miq_request_id"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ref_keys;
    use crate::test_attrs as attrs;
    use automate_vmdb::region_of;

    #[test]
    fn ids_region_and_references() {
        assert_eq!(region_of(1_000_000_000_005), 1);
        assert_eq!(region_of(99_000_000_000_001), 99);
        let a = attrs(&[
            ("ems_id", AttrValue::Int(5)),
            ("ems_ref", AttrValue::str("vm-1")),
            ("uid_ems", AttrValue::str("4201-abcd")),
        ]);
        assert_eq!(
            ref_keys(&a),
            Some((5, vec!["vm-1".to_string(), "4201-abcd".to_string()]))
        );
        assert_eq!(ref_keys(&attrs(&[("ems_ref", AttrValue::str("x"))])), None);
        assert_eq!(belongs_to("ems").unwrap().1, "ExtManagementSystem");
        assert_eq!(
            belongs_to("ems_cluster").unwrap(),
            (vec!["ems_cluster_id".to_string()], "EmsCluster")
        );
        assert!(belongs_to("nonsense").is_none());
    }
}
