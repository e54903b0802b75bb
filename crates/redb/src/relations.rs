//! Associations on redb: a [`Reader`] reads the object's stored attributes
//! (decoded once, shared) and hands them to the backend-neutral rules of
//! [`automate_vmdb::associations`], looking the associated objects up
//! through itself.

use super::read::Reader;
use automate_core::value::AttrValue;
use automate_vmdb::associations::{self, Lookup};
use automate_vmdb::{base_class, StoreError, VmdbRef};

impl Reader<'_> {
    /// Attribute `name` of `obj`, associations resolved as
    /// [`associations::resolve`] does.
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
        associations::resolve(self, base, obj.id, &stored.attrs, &name)
    }
}

impl Lookup for Reader<'_> {
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        Reader::find(self, class, id)
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        Reader::find_by(self, class, attr, value)
    }
}

#[cfg(test)]
mod tests {
    use crate::index::ref_keys;
    use crate::test_attrs as attrs;
    use automate_core::value::AttrValue;
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
    }
}
