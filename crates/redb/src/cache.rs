//! The decoded-object cache every handle on one file shares (committed
//! objects of the few hot base classes), and the in-memory id counters.

use super::RedbStore;
use automate_vmdb::StoredObject;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex, RwLock};

/// What every handle on one file shares: the cache of committed objects and
/// the id counters.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) cache: RwLock<ObjCache>,
    /// Per (base class, region): whether the counter was read from the file,
    /// and the next id to hand out.
    pub(super) next_ids: Mutex<IdCounters>,
}

/// (base class, region) -> (read from the file yet, next id).
pub(super) type IdCounters = FxHashMap<(&'static str, i64), (bool, i64)>;

/// Decoded committed objects of the [`CACHED_BASES`], and a counter every
/// commit bumps (a read that began before a commit never fills the cache).
#[derive(Default)]
pub(super) struct ObjCache {
    pub(super) epoch: u64,
    pub(super) map: FxHashMap<(&'static str, i64), Arc<StoredObject>>,
}

/// The base classes whose committed objects [`RedbStore`] keeps decoded in
/// memory: the few, hot objects every event reads (providers, VMs, hosts,
/// the server and user), not the event stream, which grows without bound.
pub(super) const CACHED_BASES: &[&str] = &[
    "ExtManagementSystem",
    "VmOrTemplate",
    "Host",
    "MiqServer",
    "User",
    "MiqGroup",
    "Tenant",
    "Storage",
    "EmsCluster",
];

/// The cache is emptied when it grows past this many objects.
pub(super) const CACHE_MAX: usize = 250_000;

pub(super) fn cached_base(base: &str) -> bool {
    CACHED_BASES.contains(&base)
}

impl RedbStore {
    /// Drops committed objects from the cache (after a write that changed
    /// them).
    pub(super) fn forget(&self, touched: &[(&'static str, i64)]) {
        if let Ok(mut cache) = self.shared.cache.write() {
            cache.epoch += 1;
            for key in touched {
                cache.map.remove(key);
            }
        }
    }
}
