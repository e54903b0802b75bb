//! An in-memory [`ObjectStore`]: a map from (base class, id) to attributes.

use super::associations::{self, Lookup};
use super::query::Query;
use super::{base_class, AttrChange, ObjectStore, StoreError, StoredObject, VmdbRef, REGION_BASE};
use automate_core::value::{AttrValue, Attributes};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// (base class, id).
type Key = (&'static str, i64);

/// The in-memory object store: tests, benchmarks and `automate instantiate`
/// without a database. Nothing outlives the process; ids are ManageIQ-style
/// as in the durable store, in region 1 (`10^12 + seq`, one sequence per
/// base class).
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: RwLock<HashMap<Key, (Arc<str>, Attributes)>>,
    /// The last sequence number used per base class (ids are per table,
    /// as in ManageIQ: host 1000000000001 and VM 1000000000001 coexist).
    last_seq: Mutex<HashMap<&'static str, i64>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores (or replaces) an object of class `class` (e.g. `EmsEvent`).
    /// Returns `None` when `class` is not a known service-model class.
    pub fn insert(&self, class: &str, id: i64, attrs: Attributes) -> Option<VmdbRef> {
        let base = base_class(class)?;
        let class: Arc<str> = Arc::from(class);
        if let Ok(mut map) = self.objects.write() {
            map.insert((base, id), (class.clone(), attrs));
        }
        if let Ok(mut seqs) = self.last_seq.lock() {
            let last = seqs.entry(base).or_insert(0);
            *last = (*last).max(id - REGION_BASE);
        }
        Some(VmdbRef { class, id })
    }

    /// Sets one attribute of a stored object.
    pub fn set(&self, obj: &VmdbRef, name: &str, value: AttrValue) -> bool {
        let Some(base) = base_class(&obj.class) else {
            return false;
        };
        let Ok(mut map) = self.objects.write() else {
            return false;
        };
        match map.get_mut(&(base, obj.id)) {
            Some((_, attrs)) => {
                attrs.insert(name.to_ascii_lowercase(), value);
                true
            }
            None => false,
        }
    }
}

/// The objects, read under one lock: what association rules look up.
struct Objects<'a>(&'a HashMap<Key, (Arc<str>, Attributes)>);

impl Lookup for Objects<'_> {
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(None);
        };
        Ok(self.0.get(&(base, id)).map(|(class, _)| VmdbRef {
            class: class.clone(),
            id,
        }))
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(Vec::new());
        };
        let attr = attr.to_ascii_lowercase();
        let mut out: Vec<VmdbRef> = self
            .0
            .iter()
            .filter(|((b, _), (_, attrs))| *b == base && attrs.get(&attr) == Some(value))
            .map(|((_, id), (class, _))| VmdbRef {
                class: class.clone(),
                id: *id,
            })
            .collect();
        out.sort_by_key(|r| r.id);
        Ok(out)
    }
}

impl MemoryStore {
    /// Runs `f` over the objects under the read lock.
    fn read<T>(
        &self,
        f: impl FnOnce(Objects<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let map = self
            .objects
            .read()
            .map_err(|_| StoreError::Backend("object map lock poisoned".into()))?;
        f(Objects(&map))
    }
}

impl ObjectStore for MemoryStore {
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        self.read(|o| o.find(class, id))
    }

    fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
        if name.eq_ignore_ascii_case("id") {
            return Ok(Some(AttrValue::Int(obj.id)));
        }
        let Some(base) = base_class(&obj.class) else {
            return Ok(None);
        };
        self.read(|o| {
            let Some((_, attrs)) = o.0.get(&(base, obj.id)) else {
                return Ok(None);
            };
            associations::resolve(&o, base, obj.id, attrs, &name.to_ascii_lowercase())
        })
    }

    fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
        let base = base_class(class).ok_or_else(|| StoreError::UnknownClass(class.to_string()))?;
        self.read(|o| {
            Ok(o.0.get(&(base, id)).map(|(class, attrs)| StoredObject {
                class: class.to_string(),
                attrs: attrs.clone(),
            }))
        })
    }

    fn list(&self, class: &str) -> Result<Vec<VmdbRef>, StoreError> {
        let base = base_class(class).ok_or_else(|| StoreError::UnknownClass(class.to_string()))?;
        self.read(|o| {
            let mut out: Vec<VmdbRef> =
                o.0.iter()
                    .filter(|((b, _), _)| *b == base)
                    .map(|((_, id), (class, _))| VmdbRef {
                        class: class.clone(),
                        id: *id,
                    })
                    .collect();
            out.sort_by_key(|r| r.id);
            Ok(out)
        })
    }

    fn create(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        let base = base_class(class).ok_or_else(|| StoreError::UnknownClass(class.to_string()))?;
        let seq = {
            let mut seqs = self
                .last_seq
                .lock()
                .map_err(|_| StoreError::Backend("sequence lock poisoned".into()))?;
            let last = seqs.entry(base).or_insert(0);
            *last += 1;
            *last
        };
        let id = REGION_BASE + seq;
        self.insert(class, id, attrs)
            .ok_or_else(|| StoreError::UnknownClass(class.to_string()))
    }

    fn update(&self, obj: &VmdbRef, name: &str, value: AttrValue) -> Result<(), StoreError> {
        if self.set(obj, name, value) {
            Ok(())
        } else {
            Err(StoreError::NotFound(obj.class.to_string(), obj.id))
        }
    }

    /// Applied under the write lock: atomic.
    fn modify(&self, obj: &VmdbRef, name: &str, change: &AttrChange) -> Result<(), StoreError> {
        let base = base_class(&obj.class)
            .ok_or_else(|| StoreError::UnknownClass(obj.class.to_string()))?;
        let mut map = self
            .objects
            .write()
            .map_err(|_| StoreError::Backend("object map lock poisoned".into()))?;
        let (_, attrs) = map
            .get_mut(&(base, obj.id))
            .ok_or_else(|| StoreError::NotFound(obj.class.to_string(), obj.id))?;
        let name = name.to_ascii_lowercase();
        let value = change.apply(attrs.get(&name));
        attrs.insert(name, value);
        Ok(())
    }

    fn delete(&self, obj: &VmdbRef) -> Result<bool, StoreError> {
        let base = base_class(&obj.class)
            .ok_or_else(|| StoreError::UnknownClass(obj.class.to_string()))?;
        let mut map = self
            .objects
            .write()
            .map_err(|_| StoreError::Backend("object map lock poisoned".into()))?;
        Ok(map.remove(&(base, obj.id)).is_some())
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        self.read(|o| o.find_by(class, attr, value))
    }

    /// One pass over the class under the read lock.
    fn query(&self, q: &Query) -> Result<Vec<VmdbRef>, StoreError> {
        let base = q.base()?;
        self.read(|o| {
            let rows: Vec<(VmdbRef, &Attributes)> =
                o.0.iter()
                    .filter(|((b, id), (_, attrs))| *b == base && q.matches(*id, attrs))
                    .map(|((_, id), (class, attrs))| {
                        (
                            VmdbRef {
                                class: class.clone(),
                                id: *id,
                            },
                            attrs,
                        )
                    })
                    .collect();
            Ok(q.finish(rows))
        })
    }

    fn count(&self, q: &Query) -> Result<usize, StoreError> {
        let base = q.base()?;
        self.read(|o| {
            let n =
                o.0.iter()
                    .filter(|((b, id), (_, attrs))| *b == base && q.matches(*id, attrs))
                    .count();
            Ok(q.paged_count(n))
        })
    }
}
