//! Reads: one [`Reader`] over either a read snapshot's tables or a write
//! batch's, and the store's layered reads (a unit of work when read through
//! its view, then the cache of committed objects, then a snapshot of the
//! file). A unit is locked once per read, for the whole read; the store's
//! own reads take no lock.

use super::cache::{cached_base, CACHE_MAX};
use super::codec::decode_object;
use super::index::{index_key, INDEXED_ATTRS};
use super::schema::{ATTR_INDEX, EMS_REFS, OBJECTS};
use super::unit::{poisoned, Unit};
use super::{backend, RedbStore};
use automate_core::value::AttrValue;
use automate_vmdb::query::Query;
use automate_vmdb::{base_class, StoreError, StoredObject, VmdbRef};
use redb::ReadableTable;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

impl RedbStore {
    /// Reads through `unit` (an open unit of work, locked once for the
    /// whole read), the cache and a snapshot opened on first need (the
    /// unit's kept one when no commit happened since). A failed read is
    /// logged and returned.
    pub(super) fn layered_in<T>(
        &self,
        unit: Option<&Mutex<Unit>>,
        f: impl FnOnce(&Reader<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let unit = match unit {
            None => None,
            Some(u) => match u.lock() {
                Ok(g) => Some(g),
                Err(_) => {
                    let e = poisoned();
                    tracing::warn!("object store read failed: {e}");
                    return Err(e);
                }
            },
        };
        let l = Layered {
            store: self,
            unit,
            snap: std::cell::OnceCell::new(),
        };
        let reader = Reader {
            objects: &l,
            refs: &l,
            index: &l,
        };
        let out = f(&reader);
        // The unit keeps the snapshot for its next reads.
        if let (Some(mut unit), Some(Ok(snap))) = (l.unit, l.snap.into_inner()) {
            unit.snap = Some(snap);
        }
        out.inspect_err(|e| tracing::warn!("object store read failed: {e}"))
    }
}

/// A read snapshot of the three tables reads use, and the cache epoch
/// when it was taken.
pub(super) struct Snap {
    pub(super) objects: redb::ReadOnlyTable<(&'static str, i64), &'static [u8]>,
    pub(super) refs: redb::ReadOnlyTable<(&'static str, i64, &'static str), i64>,
    pub(super) index: redb::ReadOnlyTable<&'static [u8], ()>,
    pub(super) epoch: u64,
}

/// Reads through a unit of work (when given), then the cache of
/// committed objects, then a snapshot of the file (opened on first need;
/// what it decodes of a cached base class fills the cache, unless a commit
/// happened since it was taken).
pub(super) struct Layered<'s> {
    pub(super) store: &'s RedbStore,
    /// The unit of work read through, locked for the read.
    pub(super) unit: Option<MutexGuard<'s, Unit>>,
    pub(super) snap: std::cell::OnceCell<Result<Arc<Snap>, StoreError>>,
}

impl Layered<'_> {
    pub(super) fn snap(&self) -> Result<&Snap, StoreError> {
        self.snap
            .get_or_init(|| {
                let epoch = self
                    .store
                    .shared
                    .cache
                    .read()
                    .map(|c| c.epoch)
                    .unwrap_or(u64::MAX);
                // Inside a unit of work, the unit's snapshot if no commit
                // happened since it was taken: it reads what a new one would.
                if epoch != u64::MAX {
                    let kept = self
                        .unit
                        .as_deref()
                        .and_then(|u| u.snap.as_ref())
                        .filter(|s| s.epoch == epoch);
                    if let Some(snap) = kept {
                        return Ok(snap.clone());
                    }
                }
                let txn = self.store.db.begin_read().map_err(backend)?;
                Ok(Arc::new(Snap {
                    objects: txn.open_table(OBJECTS).map_err(backend)?,
                    refs: txn.open_table(EMS_REFS).map_err(backend)?,
                    index: txn.open_table(ATTR_INDEX).map_err(backend)?,
                    epoch,
                }))
            })
            .as_ref()
            .map(|s| &**s)
            .map_err(Clone::clone)
    }

    /// What the unit knows of (base, id): `Some(None)` when it deleted
    /// it, `None` when the store must be asked.
    pub(super) fn pending(&self, base: &str, id: i64) -> Option<Option<Arc<StoredObject>>> {
        let u = self.unit.as_deref()?;
        let base = base_class(base)?;
        u.objects
            .get(&(base, id))
            .map(|p| (!p.deleted).then(|| p.obj.clone()))
            .or_else(|| {
                u.in_flight
                    .iter()
                    .rev()
                    .find_map(|h| h.objects.get(&(base, id)).cloned())
            })
    }
}

impl ObjectsTable for Layered<'_> {
    fn load_obj(&self, base: &str, id: i64) -> Result<Option<Arc<StoredObject>>, StoreError> {
        if let Some(p) = self.pending(base, id) {
            return Ok(p);
        }
        let Some(base) = base_class(base) else {
            return Ok(None);
        };
        let cached = cached_base(base);
        if cached {
            if let Ok(cache) = self.store.shared.cache.read() {
                if let Some(o) = cache.map.get(&(base, id)) {
                    return Ok(Some(o.clone()));
                }
            }
        }
        let snap = self.snap()?;
        let Some(obj) = snap.objects.load_obj(base, id)? else {
            return Ok(None);
        };
        if cached {
            if let Ok(mut cache) = self.store.shared.cache.write() {
                if cache.epoch == snap.epoch {
                    if cache.map.len() >= CACHE_MAX {
                        cache.map.clear();
                    }
                    cache.map.insert((base, id), obj.clone());
                }
            }
        }
        Ok(Some(obj))
    }

    fn scan(
        &self,
        base: &str,
        f: &mut dyn FnMut(i64, Arc<StoredObject>),
    ) -> Result<(), StoreError> {
        let Some(sbase) = base_class(base) else {
            return Ok(());
        };
        let mut all: BTreeMap<i64, Arc<StoredObject>> = BTreeMap::new();
        self.snap()?.objects.scan(base, &mut |id, o| {
            all.insert(id, o);
        })?;
        if let Some(u) = self.unit.as_deref() {
            for h in &u.in_flight {
                for ((b, id), o) in &h.objects {
                    if *b == sbase {
                        match o {
                            Some(o) => all.insert(*id, o.clone()),
                            None => all.remove(id),
                        };
                    }
                }
            }
            for ((b, id), p) in &u.objects {
                if *b == sbase {
                    if p.deleted {
                        all.remove(id);
                    } else {
                        all.insert(*id, p.obj.clone());
                    }
                }
            }
        }
        for (id, o) in all {
            f(id, o);
        }
        Ok(())
    }
}

impl RefsTable for Layered<'_> {
    fn get_id(&self, base: &str, ems_id: i64, r: &str) -> Result<Option<i64>, StoreError> {
        if let (Some(u), Some(sbase)) = (self.unit.as_deref(), base_class(base)) {
            let key = (sbase, ems_id, r.to_string());
            let found = u.refs.get(&key).copied().or_else(|| {
                u.in_flight
                    .iter()
                    .rev()
                    .find_map(|h| h.refs.get(&key).copied())
            });
            if found.is_some() {
                return Ok(found);
            }
        }
        self.snap()?.refs.get_id(base, ems_id, r)
    }
}

impl IndexTable for Layered<'_> {
    fn ids(&self, base: &str, attr: &str, value: &[u8]) -> Result<Vec<i64>, StoreError> {
        let mut ids = self.snap()?.index.ids(base, attr, value)?;
        if let (Some(sbase), Some(sattr)) =
            (base_class(base), INDEXED_ATTRS.iter().find(|a| **a == attr))
        {
            if let Some(u) = self.unit.as_deref() {
                let key = (sbase, *sattr, value.to_vec());
                let layers = std::iter::once(&u.index).chain(u.in_flight.iter().map(|h| &h.index));
                for index in layers {
                    if let Some(more) = index.get(&key) {
                        ids.extend(more.iter().copied());
                    }
                }
            }
            ids.sort_unstable();
            ids.dedup();
        }
        Ok(ids)
    }
}

/// Reads over either a read snapshot's tables or a batch's.
pub(super) struct Reader<'a> {
    pub(super) objects: &'a dyn ObjectsTable,
    pub(super) refs: &'a dyn RefsTable,
    pub(super) index: &'a dyn IndexTable,
}

/// Object-safe views of the two tables reads need, so one [`Reader`] serves
/// read snapshots and write batches.
pub(super) trait ObjectsTable {
    fn load_obj(&self, base: &str, id: i64) -> Result<Option<Arc<StoredObject>>, StoreError>;
    /// Every object of base class `base`, by id (undecodable ones skipped
    /// with a warning).
    fn scan(&self, base: &str, f: &mut dyn FnMut(i64, Arc<StoredObject>))
        -> Result<(), StoreError>;
}

pub(super) trait RefsTable {
    fn get_id(&self, base: &str, ems_id: i64, r: &str) -> Result<Option<i64>, StoreError>;
}

pub(super) trait IndexTable {
    fn ids(&self, base: &str, attr: &str, value: &[u8]) -> Result<Vec<i64>, StoreError>;
}

impl<T: ReadableTable<(&'static str, i64), &'static [u8]>> ObjectsTable for T {
    fn load_obj(&self, base: &str, id: i64) -> Result<Option<Arc<StoredObject>>, StoreError> {
        Ok(load_from(self, base, id)?.map(Arc::new))
    }

    fn scan(
        &self,
        base: &str,
        f: &mut dyn FnMut(i64, Arc<StoredObject>),
    ) -> Result<(), StoreError> {
        for entry in self
            .range((base, i64::MIN)..=(base, i64::MAX))
            .map_err(backend)?
        {
            let (k, v) = entry.map_err(backend)?;
            let id = k.value().1;
            match decode_object(v.value()) {
                Ok(obj) => f(id, Arc::new(obj)),
                Err(e) => tracing::warn!("{base} [{id}] cannot be decoded: {e}"),
            }
        }
        Ok(())
    }
}

impl<T: ReadableTable<(&'static str, i64, &'static str), i64>> RefsTable for T {
    fn get_id(&self, base: &str, ems_id: i64, r: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .get((base, ems_id, r))
            .map_err(backend)?
            .map(|g| g.value()))
    }
}

pub(super) fn load_from<T: ReadableTable<(&'static str, i64), &'static [u8]> + ?Sized>(
    objects: &T,
    base: &str,
    id: i64,
) -> Result<Option<StoredObject>, StoreError> {
    match objects.get((base, id)).map_err(backend)? {
        Some(bytes) => decode_object(bytes.value()).map(Some),
        None => Ok(None),
    }
}

impl Reader<'_> {
    pub(super) fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(None);
        };
        Ok(self.objects.load_obj(base, id)?.map(|o| VmdbRef {
            class: Arc::from(o.class.as_str()),
            id,
        }))
    }

    pub(super) fn find_by_ems_ref(
        &self,
        class: &str,
        ems_id: i64,
        ems_ref: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(None);
        };
        match self.refs.get_id(base, ems_id, ems_ref)? {
            Some(id) => self.find(base, id),
            None => Ok(None),
        }
    }

    /// The objects `q` selects: candidates by id (an `id` condition), by
    /// the attribute index (the first condition on an indexed attribute
    /// with no nil value), else a scan of the class; each checked against
    /// every condition, then sorted and paged.
    pub(super) fn query(&self, q: &Query) -> Result<Vec<VmdbRef>, StoreError> {
        Ok(q.finish(self.query_rows(q)?))
    }

    /// How many objects [`Reader::query`] answers with.
    pub(super) fn count(&self, q: &Query) -> Result<usize, StoreError> {
        Ok(q.paged_count(self.query_rows(q)?.len()))
    }

    fn query_rows(&self, q: &Query) -> Result<Vec<(VmdbRef, Arc<StoredObject>)>, StoreError> {
        let base = q.base()?;
        let mut out = Vec::new();
        let mut take = |id: i64, obj: Arc<StoredObject>| {
            if q.matches(id, &obj.attrs) {
                out.push((
                    VmdbRef {
                        class: Arc::from(obj.class.as_str()),
                        id,
                    },
                    obj,
                ));
            }
        };
        let mut ids: Option<Vec<i64>> = None;
        if let Some(c) = q.conditions.iter().find(|c| c.attr == "id") {
            ids = Some(
                c.values
                    .iter()
                    .filter_map(|v| match v {
                        AttrValue::Int(i) => Some(*i),
                        _ => None,
                    })
                    .collect(),
            );
        } else if let Some((c, keys)) =
            q.conditions
                .iter()
                .filter(|c| !c.wants_nil())
                .find_map(|c| {
                    let keys: Option<Vec<Vec<u8>>> =
                        c.values.iter().map(|v| index_key(&c.attr, v)).collect();
                    keys.map(|k| (c, k))
                })
        {
            let mut found = Vec::new();
            for key in keys {
                found.extend(self.index.ids(base, &c.attr, &key)?);
            }
            ids = Some(found);
        }
        match ids {
            Some(mut ids) => {
                ids.sort_unstable();
                ids.dedup();
                for id in ids {
                    if let Some(obj) = self.objects.load_obj(base, id)? {
                        take(id, obj);
                    }
                }
            }
            None => self.objects.scan(base, &mut take)?,
        }
        Ok(out)
    }

    pub(super) fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(Vec::new());
        };
        let attr = attr.to_ascii_lowercase();
        let mut out = Vec::new();
        if let Some(key) = index_key(&attr, value) {
            for id in self.index.ids(base, &attr, &key)? {
                if let Some(obj) = self.objects.load_obj(base, id)? {
                    if obj.attrs.get(&attr) == Some(value) {
                        out.push(VmdbRef {
                            class: Arc::from(obj.class.as_str()),
                            id,
                        });
                    }
                }
            }
            return Ok(out);
        }
        self.objects.scan(base, &mut |id, obj| {
            if obj.attrs.get(&attr) == Some(value) {
                out.push(VmdbRef {
                    class: Arc::from(obj.class.as_str()),
                    id,
                });
            }
        })?;
        Ok(out)
    }
}
