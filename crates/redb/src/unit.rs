//! Units of work as explicit handles: [`RedbStore::begin_unit`] opens a
//! [`UnitStore`], an [`ObjectStore`] view whose writes are buffered in its
//! unit (the store itself never buffers: whoever holds the view writes
//! into the unit, and nobody else does); its savepoints, handing its writes
//! to a committer ([`UnitStore::hand_over`], [`UnitStore::landed`]) and
//! committing them ([`UnitStore::commit`], [`RedbStore::commit_units`]).
//! The unit sits behind a mutex in the handle, uncontended (one thread
//! uses a unit at a time): each read locks it once
//! (`RedbStore::layered_in`), each write twice.

use super::cache::cached_base;
use super::index::{index_entries, ref_keys};
use super::read::Snap;
use super::store::{base_of, lowercase_keys};
use super::{backend, Batch, RedbStore};
use automate_core::value::{AttrValue, Attributes};
use automate_vmdb::query::Query;
use automate_vmdb::{AttrChange, ObjectStore, Savepoint, StoreError, StoredObject, VmdbRef};
use rustc_hash::FxHashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// An object's modifications ([`ObjectStore::modify`]), in order: the
/// attribute and its change.
pub(super) type Mods = Vec<(String, AttrChange)>;

/// The buffered writes of one unit of work: see [`UnitStore`].
#[derive(Default)]
pub(super) struct Unit {
    /// The last read snapshot this unit's reads took: reused while no
    /// commit has happened since (same cache epoch), replaced after one,
    /// dropped with the unit (a pipeline worker closes its unit whenever it
    /// has nothing waiting, so no read transaction outlives a busy spell).
    pub(super) snap: Option<Arc<Snap>>,
    pub(super) objects: FxHashMap<(&'static str, i64), Pending>,
    /// The order objects were first written in (the commit's order).
    pub(super) order: Vec<(&'static str, i64)>,
    /// Candidate ids per indexed (base, attribute, value): re-checked
    /// against the object on every read, so stale entries do no harm.
    pub(super) index: FxHashMap<(&'static str, &'static str, Vec<u8>), Vec<i64>>,
    pub(super) refs: FxHashMap<(&'static str, i64, String), i64>,
    /// Writes of this unit handed to a committer ([`UnitStore::hand_over`])
    /// and not yet known to be on disk, oldest first: read after the
    /// unit's own, newest first, until [`UnitStore::landed`].
    pub(super) in_flight: std::collections::VecDeque<HandedOver>,
    /// While a [`Savepoint`] is held ([`ObjectStore::savepoint`]): how to take
    /// back each write since, oldest first. `None`: nothing is recorded.
    pub(super) undo: Option<Vec<Undo>>,
    /// Savepoints held (not yet rolled back to or released).
    pub(super) savepoints: usize,
}

/// One write of a unit, as [`ObjectStore::rollback_to`] takes it back.
/// Index candidates are not recorded: a stale candidate is harmless (every
/// index read checks the object itself).
pub(super) enum Undo {
    /// An object was put: how it was before (`None`: new to the unit, the
    /// last in `order`), and the recorded change with its previous value.
    Object {
        key: (&'static str, i64),
        prior: Option<Arc<StoredObject>>,
        change: Option<(String, Option<AttrValue>)>,
        /// Whether it was deleted before.
        deleted: bool,
        /// Its modifications before, when this write changed them.
        mods: Option<Mods>,
    },
    /// A provider reference was recorded: what it pointed at before.
    Ref {
        key: (&'static str, i64, String),
        prior: Option<i64>,
    },
}

/// What a unit's reads still need of writes it handed over.
pub(super) struct HandedOver {
    /// `None`: deleted.
    pub(super) objects: FxHashMap<(&'static str, i64), Option<Arc<StoredObject>>>,
    pub(super) index: FxHashMap<(&'static str, &'static str, Vec<u8>), Vec<i64>>,
    pub(super) refs: FxHashMap<(&'static str, i64, String), i64>,
}

/// A unit of work's writes, taken from it to be committed (maybe
/// together with other units) by [`RedbStore::commit_units`].
#[derive(Default)]
pub struct PreparedUnit {
    pub(super) objects: FxHashMap<(&'static str, i64), Pending>,
    pub(super) order: Vec<(&'static str, i64)>,
}

impl fmt::Debug for PreparedUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedUnit")
            .field("objects", &self.order.len())
            .finish()
    }
}

pub(super) struct Pending {
    /// The object as this unit sees it.
    pub(super) obj: Arc<StoredObject>,
    /// Created in this unit (not in the file yet).
    pub(super) created: bool,
    /// For an object that exists in the file: the attributes this unit set.
    /// The commit applies them to the object as committed then, so another
    /// writer's update of other attributes in between is kept.
    pub(super) changes: Attributes,
    /// For an object that exists in the file: the modifications this unit
    /// made ([`ObjectStore::modify`]), in order, applied after `changes` to
    /// the object as committed (an attribute set after a modification
    /// drops the modification).
    pub(super) mods: Mods,
    /// Deleted by this unit ([`ObjectStore::delete`]): `obj` is how it was.
    pub(super) deleted: bool,
}

/// One buffered write of a unit ([`Unit::put`]).
pub(super) enum Write {
    /// An attribute set.
    Set(String, AttrValue),
    /// An attribute modified ([`ObjectStore::modify`]).
    Modify(String, AttrChange),
    /// The object deleted.
    Delete,
}

impl Unit {
    /// Records an object this unit created, or one it changed (`change`:
    /// the attribute set, for an object in the file).
    pub(super) fn put(
        &mut self,
        base: &'static str,
        id: i64,
        obj: StoredObject,
        created: bool,
        change: Option<Write>,
    ) {
        let deleting = matches!(change, Some(Write::Delete));
        for (attr, key) in index_entries(&obj.attrs).into_iter().filter(|_| !deleting) {
            let ids = self.index.entry((base, attr, key)).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if let Some((ems_id, refs)) = ref_keys(&obj.attrs).filter(|_| !deleting) {
            for r in refs {
                let key = (base, ems_id, r);
                let prior = self.refs.insert(key.clone(), id);
                if let Some(undo) = self.undo.as_mut() {
                    undo.push(Undo::Ref { key, prior });
                }
            }
        }
        let obj = Arc::new(obj);
        let (p, prior) = match self.objects.entry((base, id)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let p = e.into_mut();
                let prior = std::mem::replace(&mut p.obj, obj);
                (p, Some(prior))
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                self.order.push((base, id));
                let p = e.insert(Pending {
                    obj,
                    created,
                    changes: Attributes::default(),
                    mods: Vec::new(),
                    deleted: false,
                });
                (p, None)
            }
        };
        let mut undone = None;
        let was_deleted = p.deleted;
        let mut old_mods = None;
        match change {
            Some(Write::Set(k, v)) => {
                if self.undo.is_some() {
                    undone = Some((k.clone(), p.changes.get(&k).cloned()));
                }
                if p.mods.iter().any(|(m, _)| *m == k) {
                    old_mods = Some(p.mods.clone());
                    p.mods.retain(|(m, _)| *m != k);
                }
                p.changes.insert(k, v);
            }
            Some(Write::Modify(k, f)) => {
                old_mods = Some(p.mods.clone());
                p.mods.push((k, f));
            }
            Some(Write::Delete) => p.deleted = true,
            None => {}
        }
        if let Some(undo) = self.undo.as_mut() {
            undo.push(Undo::Object {
                key: (base, id),
                prior,
                change: undone,
                deleted: was_deleted,
                mods: old_mods,
            });
        }
    }

    /// One savepoint less; with none left, nothing more is recorded.
    pub(super) fn release(&mut self) {
        self.savepoints = self.savepoints.saturating_sub(1);
        if self.savepoints == 0 {
            self.undo = None;
        }
    }

    /// Takes back the writes recorded after the first `keep` (newest
    /// first).
    pub(super) fn rollback(&mut self, keep: usize) {
        let Some(mut undo) = self.undo.take() else {
            return;
        };
        while undo.len() > keep {
            let Some(u) = undo.pop() else { break };
            match u {
                Undo::Object {
                    key, prior: None, ..
                } => {
                    self.objects.remove(&key);
                    if self.order.last() == Some(&key) {
                        self.order.pop();
                    } else {
                        self.order.retain(|k| *k != key);
                    }
                }
                Undo::Object {
                    key,
                    prior: Some(obj),
                    change,
                    deleted,
                    mods,
                } => {
                    if let Some(p) = self.objects.get_mut(&key) {
                        p.obj = obj;
                        p.deleted = deleted;
                        if let Some(mods) = mods {
                            p.mods = mods;
                        }
                        match change {
                            Some((k, Some(v))) => {
                                p.changes.insert(k, v);
                            }
                            Some((k, None)) => {
                                p.changes.shift_remove(&k);
                            }
                            None => {}
                        }
                    }
                }
                Undo::Ref { key, prior } => match prior {
                    Some(id) => {
                        self.refs.insert(key, id);
                    }
                    None => {
                        self.refs.remove(&key);
                    }
                },
            }
        }
        self.undo = Some(undo);
    }

    /// A new savepoint: see [`UnitStore`]'s [`ObjectStore::savepoint`].
    fn savepoint(&mut self) -> Savepoint {
        self.savepoints += 1;
        Savepoint::new(self.undo.get_or_insert_with(Vec::new).len())
    }

    /// Takes the unit's writes for a commit, keeping what its reads need of
    /// them until [`Unit::landed`].
    fn hand_over(&mut self) -> PreparedUnit {
        // What is handed over cannot be taken back.
        self.undo = None;
        self.savepoints = 0;
        let objects = std::mem::take(&mut self.objects);
        let order = std::mem::take(&mut self.order);
        self.in_flight.push_back(HandedOver {
            objects: objects
                .iter()
                .map(|(k, p)| (*k, (!p.deleted).then(|| p.obj.clone())))
                .collect(),
            index: std::mem::take(&mut self.index),
            refs: std::mem::take(&mut self.refs),
        });
        PreparedUnit { objects, order }
    }

    /// The oldest hand-over is on disk.
    fn landed(&mut self) {
        self.in_flight.pop_front();
    }

    /// The unit's writes, the unit gone.
    fn into_prepared(self) -> PreparedUnit {
        PreparedUnit {
            objects: self.objects,
            order: self.order,
        }
    }
}

/// The error of a unit whose lock was poisoned (a panic inside the store
/// while it was held): the unit cannot be trusted any more.
pub(super) fn poisoned() -> StoreError {
    StoreError::Backend(
        "the unit of work is unusable (a panic inside the store while it was in use)".into(),
    )
}

/// An open unit of work on a redb store ([`RedbStore::begin_unit`]): an
/// [`ObjectStore`] whose [`ObjectStore::create`] and
/// [`ObjectStore::update`] are buffered in the unit (ids are still
/// allocated at once, unique across threads) and whose reads see them
/// first, then the cache, then the file. [`UnitStore::commit`] writes them
/// all in one durable transaction together with whatever else it is given
/// (the event queue's acks); dropping the unit (every `Arc` of it)
/// discards them. Nobody else sees any of it before the commit.
/// [`ObjectStore::create_now`] is not buffered: it commits at once, for
/// every reader. Savepoints ([`ObjectStore::savepoint`]) take back one
/// item's writes. One thread uses a unit at a time (its lock is
/// uncontended).
pub struct UnitStore {
    store: Arc<RedbStore>,
    unit: Mutex<Unit>,
}

impl fmt::Debug for UnitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnitStore")
            .field("store", &self.store)
            .field("len", &self.len())
            .finish()
    }
}

impl RedbStore {
    /// Opens a *unit of work* on this store: see [`UnitStore`].
    pub fn begin_unit(self: &Arc<Self>) -> Arc<UnitStore> {
        Arc::new(UnitStore {
            store: self.clone(),
            unit: Mutex::new(Unit::default()),
        })
    }
}

impl UnitStore {
    fn lock(&self) -> Result<MutexGuard<'_, Unit>, StoreError> {
        self.unit.lock().map_err(|_| poisoned())
    }

    /// The store the unit writes to.
    pub fn store(&self) -> &Arc<RedbStore> {
        &self.store
    }

    /// How many objects the unit has written (since its last
    /// [`UnitStore::hand_over`]).
    pub fn len(&self) -> usize {
        self.unit
            .lock()
            .map(|u| u.order.len())
            .unwrap_or_else(|p| p.into_inner().order.len())
    }

    /// Whether the unit has written nothing (since its last hand-over).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unit's writes, for [`RedbStore::commit_units`] on any thread,
    /// for a caller that goes on before the commit is done: the unit stays
    /// open, and its reads keep seeing the handed-over writes (after the
    /// unit's newer ones) until [`UnitStore::landed`] says they are on
    /// disk. What the unit writes next must be committed after them: an
    /// object they created is changed, not created, by the next hand-over.
    /// Drop the unit if their commit fails (everything built on them goes
    /// too). Savepoints held end here (what is handed over cannot be taken
    /// back).
    pub fn hand_over(&self) -> Result<PreparedUnit, StoreError> {
        Ok(self.lock()?.hand_over())
    }

    /// The oldest writes [`UnitStore::hand_over`] gave out are on disk:
    /// reads take them from the file from now on.
    pub fn landed(&self) {
        if let Ok(mut u) = self.lock() {
            u.landed();
        }
    }

    /// Takes the unit's writes (the unit is empty afterwards), for
    /// [`RedbStore::commit_units`] on any thread.
    pub fn take_prepared(&self) -> Result<PreparedUnit, StoreError> {
        Ok(std::mem::take(&mut *self.lock()?).into_prepared())
    }

    /// Commits the unit's writes and `f`'s in one transaction with
    /// [`redb::Durability::Immediate`], whatever
    /// [`RedbStore::with_relaxed_durability`] says: all of it is on disk
    /// when this returns, or (on error, or a crash before) none of it. The
    /// unit is empty afterwards either way.
    pub fn commit<T>(
        &self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let unit = self.take_prepared()?;
        self.store.commit_units(&[&unit], f)
    }
}

impl ObjectStore for UnitStore {
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        self.store.find_in(Some(&self.unit), class, id)
    }

    fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
        self.store.attribute_in(Some(&self.unit), obj, name)
    }

    fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
        self.store.load_in(Some(&self.unit), class, id)
    }

    fn list(&self, class: &str) -> Result<Vec<VmdbRef>, StoreError> {
        self.store.list_in(Some(&self.unit), class)
    }

    /// Buffered in the unit.
    fn create(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        self.store.buffer_create(&self.unit, class, attrs)
    }

    /// Not buffered: one durable commit now, seen by every reader.
    fn create_now(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        self.store.create_now(class, attrs)
    }

    /// Buffered in the unit.
    fn update(&self, obj: &VmdbRef, name: &str, value: AttrValue) -> Result<(), StoreError> {
        self.store.buffer_update(&self.unit, obj, name, value)
    }

    /// Buffered in the unit, and applied again at commit to the object as
    /// committed then, in the file's single write transaction.
    fn modify(&self, obj: &VmdbRef, name: &str, change: &AttrChange) -> Result<(), StoreError> {
        self.store.buffer_modify(&self.unit, obj, name, change)
    }

    /// Buffered in the unit: its reads no longer find the object; the
    /// file's copy and index entries go when the unit commits.
    fn delete(&self, obj: &VmdbRef) -> Result<bool, StoreError> {
        self.store.buffer_delete(&self.unit, obj)
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        self.store.find_by_in(Some(&self.unit), class, attr, value)
    }

    fn find_by_ems_ref(
        &self,
        class: &str,
        ems_id: i64,
        ems_ref: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        self.store
            .find_by_ems_ref_in(Some(&self.unit), class, ems_id, ems_ref)
    }

    fn query(&self, q: &Query) -> Result<Vec<VmdbRef>, StoreError> {
        self.store.query_in(Some(&self.unit), q)
    }

    fn count(&self, q: &Query) -> Result<usize, StoreError> {
        self.store.count_in(Some(&self.unit), q)
    }

    /// A point in the unit to come back to: the writes made after it are
    /// discarded by [`ObjectStore::rollback_to`] (one failed item of a
    /// batch: its writes go, its neighbours' stay) or kept by
    /// [`ObjectStore::release_savepoint`]; each savepoint ends with one of
    /// the two. Savepoints nest. While one is held, each write records how
    /// to take it back (an `Arc` clone, O(1)). `None` only for a unit made
    /// unusable by a panic.
    fn savepoint(&self) -> Option<Savepoint> {
        self.lock().ok().map(|mut u| u.savepoint())
    }

    /// Discards the writes the unit made since `sp` (objects created are
    /// gone, objects changed are as they were) and ends `sp`. A savepoint
    /// from before a [`UnitStore::hand_over`] takes back nothing handed
    /// over.
    fn rollback_to(&self, sp: Savepoint) {
        if let Ok(mut u) = self.lock() {
            u.rollback(sp.mark());
            u.release();
        }
    }

    /// Ends `sp`, keeping the writes made since.
    fn release_savepoint(&self, _sp: Savepoint) {
        if let Ok(mut u) = self.lock() {
            u.release();
        }
    }
}

impl RedbStore {
    /// Buffers the creation of an object in `unit`.
    pub(super) fn buffer_create(
        &self,
        unit: &Mutex<Unit>,
        class: &str,
        attrs: Attributes,
    ) -> Result<VmdbRef, StoreError> {
        let base = base_of(class)?;
        let id = self.alloc_id(base)?;
        let obj = StoredObject {
            class: class.to_string(),
            attrs: lowercase_keys(attrs),
        };
        unit.lock()
            .map_err(|_| poisoned())?
            .put(base, id, obj, true, None);
        Ok(VmdbRef {
            class: Arc::from(class),
            id,
        })
    }

    /// Buffers the change of one attribute in `unit`.
    pub(super) fn buffer_update(
        &self,
        unit: &Mutex<Unit>,
        obj: &VmdbRef,
        name: &str,
        value: AttrValue,
    ) -> Result<(), StoreError> {
        let base = base_of(&obj.class)?;
        let not_found = || StoreError::NotFound(obj.class.to_string(), obj.id);
        let current = self
            .layered_in(Some(unit), |r| r.objects.load_obj(base, obj.id))?
            .ok_or_else(not_found)?;
        let name = name.to_ascii_lowercase();
        let mut new = StoredObject::clone(&current);
        new.attrs.insert(name.clone(), value.clone());
        // `created` stays as first recorded (an object created in this unit
        // is written whole).
        unit.lock().map_err(|_| poisoned())?.put(
            base,
            obj.id,
            new,
            false,
            Some(Write::Set(name, value)),
        );
        Ok(())
    }

    /// Buffers the modification of one attribute in `unit`: applied now
    /// to the unit's view, and again at commit.
    pub(super) fn buffer_modify(
        &self,
        unit: &Mutex<Unit>,
        obj: &VmdbRef,
        name: &str,
        change: &AttrChange,
    ) -> Result<(), StoreError> {
        let base = base_of(&obj.class)?;
        let not_found = || StoreError::NotFound(obj.class.to_string(), obj.id);
        let current = self
            .layered_in(Some(unit), |r| r.objects.load_obj(base, obj.id))?
            .ok_or_else(not_found)?;
        let name = name.to_ascii_lowercase();
        let mut new = StoredObject::clone(&current);
        let value = change.apply(new.attrs.get(&name));
        new.attrs.insert(name.clone(), value);
        unit.lock().map_err(|_| poisoned())?.put(
            base,
            obj.id,
            new,
            false,
            Some(Write::Modify(name, change.clone())),
        );
        Ok(())
    }

    /// Buffers the deletion of an object in `unit`; `false` when the unit
    /// does not see it.
    pub(super) fn buffer_delete(
        &self,
        unit: &Mutex<Unit>,
        obj: &VmdbRef,
    ) -> Result<bool, StoreError> {
        let base = base_of(&obj.class)?;
        let Some(current) = self.layered_in(Some(unit), |r| r.objects.load_obj(base, obj.id))?
        else {
            return Ok(false);
        };
        unit.lock().map_err(|_| poisoned())?.put(
            base,
            obj.id,
            StoredObject::clone(&current),
            false,
            Some(Write::Delete),
        );
        Ok(true)
    }

    /// Commits units of work ([`UnitStore::hand_over`],
    /// [`UnitStore::take_prepared`]), in order, and `f`'s writes in one
    /// transaction with [`redb::Durability::Immediate`] (see
    /// [`UnitStore::commit`]): all of it is on disk when this returns, or
    /// none of it. A later unit's change of an object an
    /// earlier one wrote applies on top of it.
    pub fn commit_units<T>(
        &self,
        units: &[&PreparedUnit],
        f: impl FnOnce(&mut Batch<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        let out = Batch::new(&txn, self.region, &self.shared).and_then(|mut batch| {
            for unit in units {
                for key in &unit.order {
                    if let Some(p) = unit.objects.get(key) {
                        batch.apply_pending(key.0, key.1, p)?;
                    }
                }
            }
            let out = f(&mut batch)?;
            batch.keep = true;
            Ok((out, std::mem::take(&mut batch.touched)))
        });
        match out {
            Ok((out, touched)) => {
                txn.commit().map_err(backend)?;
                self.forget(&touched);
                if let Ok(mut cache) = self.shared.cache.write() {
                    cache.epoch += 1;
                    // Created objects were written as they are; changed ones
                    // were merged with the committed state, and are read
                    // again from the file when next needed.
                    for unit in units {
                        for key in &unit.order {
                            if let Some(p) = unit.objects.get(key) {
                                if p.created && !p.deleted && cached_base(key.0) {
                                    cache.map.insert(*key, p.obj.clone());
                                }
                            }
                        }
                    }
                }
                Ok(out)
            }
            Err(e) => {
                let _ = txn.abort();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_attrs as attrs;
    use automate_vmdb::ObjectStore;

    #[test]
    fn a_units_savepoints_take_back_one_items_writes_and_nest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("s.redb")).unwrap());
        let kept = store
            .create("Vm", attrs(&[("name", "kept".into())]))
            .unwrap();
        let unit = store.begin_unit();
        let first = unit
            .create("Vm", attrs(&[("name", "first".into())]))
            .unwrap();
        // The store itself does not see the unit's writes.
        assert_eq!(store.find("Vm", first.id), Ok(None));
        let outer = unit.savepoint().unwrap();
        unit.update(&first, "name", "changed".into()).unwrap();
        unit.update(&kept, "note", "x".into()).unwrap();
        let inner = unit.savepoint().unwrap();
        let gone = unit
            .create("Vm", attrs(&[("name", "gone".into())]))
            .unwrap();
        unit.update(&first, "name", "changed twice".into()).unwrap();
        unit.rollback_to(inner);
        assert_eq!(unit.find("Vm", gone.id), Ok(None));
        assert_eq!(
            unit.attribute(&first, "name"),
            Ok(Some(AttrValue::from("changed")))
        );
        unit.rollback_to(outer);
        assert_eq!(
            unit.attribute(&first, "name"),
            Ok(Some(AttrValue::from("first")))
        );
        assert_eq!(unit.attribute(&kept, "note"), Ok(None));
        // A released savepoint keeps its writes.
        let sp = unit.savepoint().unwrap();
        let last = unit
            .create("Vm", attrs(&[("name", "last".into())]))
            .unwrap();
        unit.release_savepoint(sp);
        unit.commit(|_| Ok(())).unwrap();
        let mut names: Vec<String> = store
            .list("Vm")
            .unwrap()
            .iter()
            .map(|r| store.attribute(r, "name").unwrap().unwrap().to_text())
            .collect();
        names.sort();
        assert_eq!(names, ["first", "kept", "last"]);
        assert_eq!(store.attribute(&kept, "note"), Ok(None));
        assert!(store.find("Vm", last.id).unwrap().is_some());
        // Without a unit there is nothing to come back to.
        assert_eq!(ObjectStore::savepoint(&*store), None);
    }

    #[test]
    fn a_units_delete_is_seen_by_it_at_once_and_by_others_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("d.redb")).unwrap());
        automate_vmdb::testing::check_delete(store.clone()).unwrap();
        assert!(store.verify().unwrap().is_ok());
        // Durable: the file reopened has none of it.
        drop(store);
        let store = RedbStore::open(dir.path().join("d.redb")).unwrap();
        assert!(store
            .find_by("Vm", "name", &AttrValue::str("doomed"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn workers_tagging_one_vm_in_their_own_units_keep_every_tag() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("t.redb")).unwrap());
        automate_vmdb::testing::check_concurrent_tagging(store.clone(), 8).unwrap();
        assert!(store.verify().unwrap().is_ok());
    }

    /// A modification taken back by its savepoint is not applied at
    /// commit; an attribute set after a modification replaces it.
    #[test]
    fn a_modification_rolled_back_or_overwritten_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("m.redb")).unwrap());
        let vm = store
            .create("Vm", attrs(&[("n", AttrValue::Int(1))]))
            .unwrap();
        let add = |k: i64| {
            automate_vmdb::AttrChange::new(move |v| match v {
                Some(AttrValue::Int(i)) => AttrValue::Int(i + k),
                _ => AttrValue::Int(k),
            })
        };
        let unit = store.begin_unit();
        unit.modify(&vm, "n", &add(10)).unwrap();
        let sp = unit.savepoint().unwrap();
        unit.modify(&vm, "n", &add(100)).unwrap();
        assert_eq!(unit.attribute(&vm, "n"), Ok(Some(AttrValue::Int(111))));
        unit.rollback_to(sp);
        assert_eq!(unit.attribute(&vm, "n"), Ok(Some(AttrValue::Int(11))));
        // Another writer changes n meanwhile: the unit's +10 lands on it.
        store.update(&vm, "n", AttrValue::Int(5)).unwrap();
        unit.commit(|_| Ok(())).unwrap();
        assert_eq!(store.attribute(&vm, "n"), Ok(Some(AttrValue::Int(15))));
        let unit = store.begin_unit();
        unit.modify(&vm, "n", &add(1)).unwrap();
        unit.update(&vm, "n", AttrValue::Int(0)).unwrap();
        store.update(&vm, "n", AttrValue::Int(7)).unwrap();
        unit.commit(|_| Ok(())).unwrap();
        assert_eq!(store.attribute(&vm, "n"), Ok(Some(AttrValue::Int(0))));
    }

    /// A unit whose lock was poisoned (a panic inside the store while it
    /// was held) answers errors, not panics: its reads and writes fail and
    /// so does its hand-over, so its batch is never committed.
    #[test]
    fn a_poisoned_unit_fails_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("p.redb")).unwrap());
        let vm = store.create("Vm", attrs(&[("name", "vm".into())])).unwrap();
        let unit = store.begin_unit();
        unit.update(&vm, "note", "x".into()).unwrap();
        let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = unit.unit.lock().unwrap();
            panic!("inside the store");
        }));
        assert!(held.is_err());
        assert!(matches!(
            unit.find("Vm", vm.id),
            Err(StoreError::Backend(_))
        ));
        assert!(unit.attribute(&vm, "note").is_err());
        assert!(unit.create("Vm", attrs(&[("name", "b".into())])).is_err());
        assert!(unit.update(&vm, "note", "y".into()).is_err());
        assert_eq!(unit.savepoint(), None);
        assert!(unit.hand_over().is_err());
        assert!(unit.commit(|_| Ok(())).is_err());
        // Nothing of it reached the store, which goes on working.
        assert_eq!(store.attribute(&vm, "note"), Ok(None));
        assert!(store.find("Vm", vm.id).unwrap().is_some());
    }
}
