//! An in-memory [`ObjectStore`]: a map from (base class, id) to attributes.

use super::{base_class, ObjectStore, StoreError, VmdbRef, REGION_BASE};
use crate::engine::{AttrValue, Attributes};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: RwLock<HashMap<(&'static str, i64), (Arc<str>, Attributes)>>,
    next_seq: AtomicI64,
}

impl MemoryStore {
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
        self.next_seq.fetch_max(id - REGION_BASE, Ordering::SeqCst);
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

impl ObjectStore for MemoryStore {
    fn find(&self, class: &str, id: i64) -> Option<VmdbRef> {
        let base = base_class(class)?;
        let map = self.objects.read().ok()?;
        map.get(&(base, id)).map(|(class, _)| VmdbRef {
            class: class.clone(),
            id,
        })
    }

    fn attribute(&self, obj: &VmdbRef, name: &str) -> Option<AttrValue> {
        if name.eq_ignore_ascii_case("id") {
            return Some(AttrValue::Int(obj.id));
        }
        let base = base_class(&obj.class)?;
        let map = self.objects.read().ok()?;
        let (_, attrs) = map.get(&(base, obj.id))?;
        attrs.get(&name.to_ascii_lowercase()).cloned()
    }

    fn create(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        if base_class(class).is_none() {
            return Err(StoreError::UnknownClass(class.to_string()));
        }
        let id = REGION_BASE + self.next_seq.fetch_add(1, Ordering::SeqCst) + 1;
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

    fn find_by(&self, class: &str, attr: &str, value: &AttrValue) -> Vec<VmdbRef> {
        let Some(base) = base_class(class) else {
            return Vec::new();
        };
        let Ok(map) = self.objects.read() else {
            return Vec::new();
        };
        let attr = attr.to_ascii_lowercase();
        let mut out: Vec<VmdbRef> = map
            .iter()
            .filter(|((b, _), (_, attrs))| *b == base && attrs.get(&attr) == Some(value))
            .map(|((_, id), (class, _))| VmdbRef {
                class: class.clone(),
                id: *id,
            })
            .collect();
        out.sort_by_key(|r| r.id);
        out
    }
}
