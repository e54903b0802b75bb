//! Several writes in one redb write transaction ([`Batch`]): objects, their
//! index entries and provider references, and scheduled work.

use super::backend;
use super::cache::Shared;
use super::codec::encode_object;
use super::index::{index_entries, index_entry_key, ref_keys};
use super::read::{load_from, Reader};
use super::schedule;
use super::schema::{seq_key, ATTR_INDEX, EMS_REFS, OBJECTS, SEQUENCES};
use super::store::{base_of, lowercase_keys};
use super::unit::Pending;
use automate_core::value::{AttrValue, Attributes};
use automate_vmdb::{
    region_of, AttrChange, StoreError, StoredObject, VmdbRef, WorkItem, REGION_BASE,
};
use redb::{ReadableTable, Table, WriteTransaction};
use std::sync::Arc;
use std::time::SystemTime;

/// Several writes in one transaction: see [`RedbStore::write_batch`](crate::RedbStore::write_batch). Reads
/// through a batch see its own uncommitted writes.
pub struct Batch<'t> {
    pub(super) txn: &'t WriteTransaction,
    pub(super) objects: Table<'t, (&'static str, i64), &'static [u8]>,
    pub(super) sequences: Table<'t, &'static str, i64>,
    pub(super) refs: Table<'t, (&'static str, i64, &'static str), i64>,
    pub(super) index: Table<'t, &'static [u8], ()>,
    pub(super) region: i64,
    pub(super) shared: &'t Shared,
    /// The objects written, to drop from the cache once committed.
    pub(super) touched: Vec<(&'static str, i64)>,
    /// Ids [`Batch::create`] took from the in-memory counters: given back
    /// when the batch is dropped without `keep` (an error or a panic), so a
    /// failed batch leaves no gap.
    pub(super) reserved: Vec<(&'static str, i64)>,
    pub(super) keep: bool,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.keep || self.reserved.is_empty() {
            return;
        }
        if let Ok(mut ids) = self.shared.next_ids.lock() {
            for (base, id) in self.reserved.iter().rev() {
                if let Some(e) = ids.get_mut(&(*base, region_of(*id))) {
                    if e.1 == id + 1 {
                        e.1 = *id;
                    }
                }
            }
        }
    }
}

impl<'t> Batch<'t> {
    pub(super) fn new(
        txn: &'t WriteTransaction,
        region: i64,
        shared: &'t Shared,
    ) -> Result<Batch<'t>, StoreError> {
        Ok(Batch {
            txn,
            objects: txn.open_table(OBJECTS).map_err(backend)?,
            sequences: txn.open_table(SEQUENCES).map_err(backend)?,
            refs: txn.open_table(EMS_REFS).map_err(backend)?,
            index: txn.open_table(ATTR_INDEX).map_err(backend)?,
            region,
            shared,
            touched: Vec::new(),
            reserved: Vec::new(),
            keep: false,
        })
    }

    /// Moves the in-memory id counter of `base` in `id`'s region past `id`.
    /// Moves the sequence of `base` in `id`'s region past `id`.
    pub(super) fn advance_sequence(&mut self, base: &str, id: i64) -> Result<(), StoreError> {
        let key = seq_key(base, region_of(id));
        let next = self
            .sequences
            .get(key.as_str())
            .map_err(backend)?
            .map(|g| g.value());
        if next.is_none_or(|n| n <= id) {
            self.sequences
                .insert(key.as_str(), id + 1)
                .map_err(backend)?;
        }
        Ok(())
    }

    pub(super) fn bump_counter(&self, base: &'static str, id: i64) {
        if let Ok(mut ids) = self.shared.next_ids.lock() {
            let e = ids.entry((base, region_of(id))).or_insert((false, 0));
            e.1 = e.1.max(id + 1);
        }
    }

    /// Writes one object of a unit of work (see [`UnitStore::commit`](crate::UnitStore::commit)).
    pub(super) fn apply_pending(
        &mut self,
        base: &'static str,
        id: i64,
        p: &Pending,
    ) -> Result<(), StoreError> {
        let obj = &p.obj;
        if p.deleted {
            // Created and deleted in the unit: nothing to write.
            if p.created {
                return Ok(());
            }
            let gone = VmdbRef {
                class: Arc::from(obj.class.as_str()),
                id,
            };
            self.delete(&gone)?;
            return Ok(());
        }
        let old = load_from(&self.objects, base, id)?;
        if !p.created {
            // The changes onto the object as committed now.
            let Some(old) = old else {
                return Err(StoreError::NotFound(obj.class.clone(), id));
            };
            let mut attrs = old.attrs.clone();
            for (k, v) in &p.changes {
                attrs.insert(k.clone(), v.clone());
            }
            // Then the unit's modifications, onto the committed value
            // (under the file's single writer: atomic).
            for (k, change) in &p.mods {
                let value = change.apply(attrs.get(k));
                attrs.insert(k.clone(), value);
            }
            return self.put(base, &old.class, id, &attrs, Some(&old));
        }
        if old.is_some() {
            return Err(StoreError::Backend(format!(
                "{base} [{id}] allocated twice"
            )));
        }
        self.advance_sequence(base, id)?;
        self.put(base, &obj.class, id, &obj.attrs, None)
    }

    /// Creates an object with the next id of its base class in the store's
    /// region.
    pub fn create(&mut self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        let base = base_of(class)?;
        let key = seq_key(base, self.region);
        let mut id = self
            .sequences
            .get(key.as_str())
            .map_err(backend)?
            .map(|g| g.value())
            .unwrap_or(self.region * REGION_BASE + 1);
        // Ids units of work have handed out (and not committed yet).
        if let Ok(ids) = self.shared.next_ids.lock() {
            if let Some((_, next)) = ids.get(&(base, self.region)) {
                id = id.max(*next);
            }
        }
        // Never overwrite: skip ids an explicit insert already took.
        while self.objects.get((base, id)).map_err(backend)?.is_some() {
            id += 1;
        }
        self.sequences
            .insert(key.as_str(), id + 1)
            .map_err(backend)?;
        self.bump_counter(base, id);
        self.reserved.push((base, id));
        self.put(base, class, id, &lowercase_keys(attrs), None)?;
        Ok(VmdbRef {
            class: Arc::from(class),
            id,
        })
    }

    /// Stores (or replaces) an object with a given id; the sequence of its
    /// base class in the id's region moves past it.
    pub fn insert(
        &mut self,
        class: &str,
        id: i64,
        attrs: Attributes,
    ) -> Result<VmdbRef, StoreError> {
        let base = base_of(class)?;
        let old = load_from(&self.objects, base, id)?;
        self.advance_sequence(base, id)?;
        self.bump_counter(base, id);
        self.put(base, class, id, &lowercase_keys(attrs), old.as_ref())?;
        Ok(VmdbRef {
            class: Arc::from(class),
            id,
        })
    }

    /// Sets one attribute of a stored object.
    pub fn update(
        &mut self,
        obj: &VmdbRef,
        name: &str,
        value: AttrValue,
    ) -> Result<(), StoreError> {
        let mut attrs = Attributes::default();
        attrs.insert(name.to_string(), value);
        self.update_many(obj, attrs)
    }

    /// Sets several attributes of a stored object.
    pub fn update_many(&mut self, obj: &VmdbRef, attrs: Attributes) -> Result<(), StoreError> {
        let base = base_of(&obj.class)?;
        let not_found = || StoreError::NotFound(obj.class.to_string(), obj.id);
        let old = load_from(&self.objects, base, obj.id)?.ok_or_else(not_found)?;
        let mut new = old.attrs.clone();
        for (k, v) in attrs {
            new.insert(k.to_ascii_lowercase(), v);
        }
        let class = old.class.clone();
        self.put(base, &class, obj.id, &new, Some(&old))
    }

    /// Changes one attribute of a stored object from its value now
    /// (see [`ObjectStore::modify`](automate_vmdb::ObjectStore::modify)).
    pub fn modify(
        &mut self,
        obj: &VmdbRef,
        name: &str,
        change: &AttrChange,
    ) -> Result<(), StoreError> {
        let base = base_of(&obj.class)?;
        let old = load_from(&self.objects, base, obj.id)?
            .ok_or_else(|| StoreError::NotFound(obj.class.to_string(), obj.id))?;
        let name = name.to_ascii_lowercase();
        let mut new = old.attrs.clone();
        let value = change.apply(new.get(&name));
        new.insert(name, value);
        let class = old.class.clone();
        self.put(base, &class, obj.id, &new, Some(&old))
    }

    /// Deletes an object, its provider references and its attribute-index
    /// entries; `false` when there was none.
    pub fn delete(&mut self, obj: &VmdbRef) -> Result<bool, StoreError> {
        let base = base_of(&obj.class)?;
        let Some(old) = load_from(&self.objects, base, obj.id)? else {
            return Ok(false);
        };
        self.unindex(base, obj.id, &old.attrs)?;
        for (attr, value) in index_entries(&old.attrs) {
            let key = index_entry_key(base, attr, &value, obj.id);
            self.index.remove(key.as_slice()).map_err(backend)?;
        }
        self.objects.remove((base, obj.id)).map_err(backend)?;
        self.touched.push((base, obj.id));
        Ok(true)
    }

    /// The object of `class` (or a subclass) with id `id`.
    pub fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        self.reader().find(class, id)
    }

    /// The whole object, class and attributes.
    pub fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
        load_from(&self.objects, base_of(class)?, id)
    }

    /// One attribute, resolving associations as [`ObjectStore::attribute`](automate_vmdb::ObjectStore::attribute).
    pub fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
        self.reader().attribute(obj, name)
    }

    /// See [`ObjectStore::find_by_ems_ref`](automate_vmdb::ObjectStore::find_by_ems_ref) (the provider-reference table).
    pub fn find_by_ems_ref(
        &self,
        class: &str,
        ems_id: i64,
        ems_ref: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        self.reader().find_by_ems_ref(class, ems_id, ems_ref)
    }

    /// See [`ObjectStore::find_by`](automate_vmdb::ObjectStore::find_by).
    pub fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        self.reader().find_by(class, attr, value)
    }

    /// Schedules work in this transaction (see [`Schedule::schedule`](automate_vmdb::Schedule::schedule)): the
    /// item exists exactly when the batch's other writes do.
    pub fn schedule(&mut self, item: &WorkItem, run_at: SystemTime) -> Result<u64, StoreError> {
        schedule::schedule_in(self.txn, item, run_at)
    }

    /// Completes (removes) scheduled work in this transaction (see
    /// [`Schedule::complete`](automate_vmdb::Schedule::complete)): acknowledging work together with the writes
    /// it produced makes processing exactly-once for the store.
    pub fn complete(&mut self, id: u64) -> Result<bool, StoreError> {
        schedule::complete_in(self.txn, id)
    }

    /// Schedules several items in this transaction (see
    /// [`Schedule::schedule_many`](automate_vmdb::Schedule::schedule_many)); their ids in order.
    pub fn schedule_all(
        &mut self,
        items: &[(WorkItem, SystemTime)],
    ) -> Result<Vec<u64>, StoreError> {
        schedule::schedule_all_in(self.txn, items.iter().map(|(item, at)| (item, *at)), false)
    }

    /// [`Batch::schedule_all`] for work the caller hands to a worker
    /// itself: written as claimed once, leased until the given time (at
    /// which it comes due again, as an expired lease does).
    pub fn schedule_all_claimed(
        &mut self,
        items: &[(WorkItem, SystemTime)],
    ) -> Result<Vec<u64>, StoreError> {
        schedule::schedule_all_in(self.txn, items.iter().map(|(item, at)| (item, *at)), true)
    }

    /// Completes several items in this transaction (see
    /// [`Batch::complete`]); how many there were.
    pub fn complete_all(&mut self, ids: &[u64]) -> Result<usize, StoreError> {
        schedule::complete_all_in(self.txn, ids)
    }

    pub(super) fn reader(&self) -> Reader<'_> {
        Reader {
            objects: &self.objects,
            refs: &self.refs,
            index: &self.index,
        }
    }

    /// Writes an object and brings the provider-reference index from `old`'s
    /// references to the new ones.
    pub(super) fn put(
        &mut self,
        base: &'static str,
        class: &str,
        id: i64,
        attrs: &Attributes,
        old: Option<&StoredObject>,
    ) -> Result<(), StoreError> {
        if let Some(old) = old {
            if ref_keys(&old.attrs) != ref_keys(attrs) {
                self.unindex(base, id, &old.attrs)?;
            }
        }
        if let Some((ems_id, refs)) = ref_keys(attrs) {
            for r in refs {
                self.refs
                    .insert((base, ems_id, r.as_str()), id)
                    .map_err(backend)?;
            }
        }
        let old_entries = old.map(|o| index_entries(&o.attrs)).unwrap_or_default();
        let new_entries = index_entries(attrs);
        for (attr, value) in &old_entries {
            if !new_entries.iter().any(|e| e.0 == *attr && e.1 == *value) {
                let key = index_entry_key(base, attr, value, id);
                self.index.remove(key.as_slice()).map_err(backend)?;
            }
        }
        for (attr, value) in &new_entries {
            if !old_entries.iter().any(|e| e.0 == *attr && e.1 == *value) {
                let key = index_entry_key(base, attr, value, id);
                self.index.insert(key.as_slice(), ()).map_err(backend)?;
            }
        }
        let bytes = encode_object(class, attrs);
        self.objects
            .insert((base, id), bytes.as_slice())
            .map_err(backend)?;
        self.touched.push((base, id));
        Ok(())
    }

    /// Removes the provider references `attrs` carry, where they still
    /// point at `id`.
    pub(super) fn unindex(
        &mut self,
        base: &str,
        id: i64,
        attrs: &Attributes,
    ) -> Result<(), StoreError> {
        let Some((ems_id, refs)) = ref_keys(attrs) else {
            return Ok(());
        };
        for r in refs {
            let key = (base, ems_id, r.as_str());
            let points_here = self
                .refs
                .get(key)
                .map_err(backend)?
                .is_some_and(|g| g.value() == id);
            if points_here {
                self.refs.remove(key).map_err(backend)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_attrs as attrs;
    use crate::RedbStore;
    use automate_vmdb::ObjectStore;

    #[test]
    fn batch_failure_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("t.redb")).unwrap();
        let err = store.write_batch(|b| {
            b.create("Host", attrs(&[("name", AttrValue::str("h1"))]))?;
            b.create("NoSuchClass", Attributes::default())
        });
        assert!(matches!(err, Err(StoreError::UnknownClass(_))));
        assert_eq!(store.count().unwrap(), 0);
        assert_eq!(store.next_id("Host").unwrap(), REGION_BASE + 1);
        // Reads in a batch see its own writes.
        let id = store
            .write_batch(|b| {
                let h = b.create("Host", attrs(&[("name", AttrValue::str("h1"))]))?;
                assert_eq!(b.attribute(&h, "name")?, Some(AttrValue::str("h1")));
                Ok(h.id)
            })
            .unwrap();
        assert_eq!(id, REGION_BASE + 1);
        // A panic inside a batch aborts it; the store stays usable.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = store.write_batch(|b| {
                b.create("Host", attrs(&[("name", AttrValue::str("h2"))]))?;
                panic!("handler bug");
                #[allow(unreachable_code)]
                Ok(())
            });
        }));
        assert!(panicked.is_err());
        assert_eq!(store.count().unwrap(), 1);
        let next = store.create("Host", Attributes::default()).unwrap();
        assert_eq!(next.id, REGION_BASE + 2);
        assert!(store.verify().unwrap().is_ok());
    }
}
