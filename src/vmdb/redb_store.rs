//! The durable object store: one [redb] file (`./automate.redb` by default,
//! `--db FILE`) holding the provider objects Automate reads.
//!
//! # Tables
//!
//! | table | key | value |
//! |---|---|---|
//! | `objects` | `(base_class: &str, id: i64)` | the object: `{"class": "EmsEvent", "attrs": {...}}` as JSON bytes |
//! | `sequences` | `"<BaseClass>:<region>"` (`"VmOrTemplate:1"`) | the next id to hand out for that base class in that region (`region * 10^12 + seq`) |
//! | `ems_refs` | `(base_class: &str, ems_id: i64, ref: &str)` | the id of the object with that provider reference |
//! | `attr_index_v2` | `&[u8]`: `base_class \0 attr \0 value \0` + the id (8 bytes, big-endian, sign bit flipped); for the event stream's `vm_or_template_id` and `host_id`, the id's bucket (8 bytes, 512 ids) before the value | `()`: the objects whose indexed attribute has that (encoded) value; flat bytes so a comparison is one `memcmp` |
//! | `meta` | `"attr_index_version"` | the version `attr_index` was built for |
//! | `scheduled`, `scheduled_by_id`, `scheduled_meta` | see [`super::schedule`] | |
//!
//! Objects are keyed by their *base* class ([`base_class`]): an `EmsEvent`
//! and a `MiqEvent` both live under `EventStream`, so `EventStream::event_stream=ID`
//! finds either, and the stored class (`EmsEvent`) comes back in the
//! [`VmdbRef`]. Ids are ManageIQ-style, `region * 10^12 + seq` (region 1:
//! `1000000000001`, `1000000000002`, ...), with one sequence per base class
//! and region, as ManageIQ has one per table and as [`super::MemoryStore`]
//! does: host `1000000000001` and VM `1000000000001` coexist. The id is
//! allocated in the same write transaction as the insert, so a crash can never
//! hand the same id out twice nor leave the sequence behind the objects.
//!
//! **Encoding.** An object is stored as JSON (serde_json, insertion-ordered):
//! strings, integers, floats, booleans, nil and arrays as themselves; the
//! types JSON lacks as one-key tagged objects: `{"$sym": "s"}`,
//! `{"$pw": "clear"}`, `{"$obj": ["Host", 1000000000001]}`,
//! `{"$hash": [[k, v], ...]}` (keys of any type, in order) and
//! `{"$f": "NaN" | "inf" | "-inf"}`. JSON was chosen to start with because it
//! is easy to inspect and to evolve; every value begins with `{`, so a later
//! compact binary encoding can be told apart by its first byte without a
//! table migration. Passwords are stored in clear (ManageIQ encrypts them with
//! its v2 key; not done here yet).
//!
//! **Provider references.** When an object has an `ems_id` and an `ems_ref`
//! and/or a `uid_ems`, `ems_refs` maps `(base_class, ems_id, ref)` to its id
//! ([`RedbStore::find_by_ems_ref`]); the index is maintained in the same
//! transaction as every create, update and delete. If two objects claim the
//! same reference the last writer wins.
//!
//! **Associations** are attributes holding ids (`host_id`, `ems_id`,
//! `vm_or_template_id`, ...). [`ObjectStore::attribute`] resolves a name to
//! the object it refers to: `vm.host` reads `host_id` and returns
//! [`AttrValue::Object`] of the host (nil when the id is unset or dangling);
//! `ems`/`ext_management_system` read `ems_id`, `vm`/`vm_or_template`
//! `vm_or_template_id` (or `vm_id`), `dest_vm` `dest_vm_or_template_id`,
//! `dest_host`, `miq_server`, `user`, `miq_request`, and any `<name>` whose
//! `<name>_id` is set and names a known class (`storage`, `ems_cluster`,
//! `tenant`, ...); `target` reads the polymorphic `target_type`/`target_id`.
//! The has-many side (`host.vms`, `ems.hosts`, `ems.vms`,
//! `miq_request.miq_request_tasks`) returns an array of objects.
//!
//! **Queries.** [`ObjectStore::find_by`] on one of the indexed attributes
//! (`name`, `ems_ref`, `uid_ems`, `dedup_key`, `userid`, `guid`,
//! `chain_id`, `event_type`, `host_id`, `ems_id`, `vm_or_template_id`,
//! `miq_request_id`) with a string, symbol, integer, boolean or object value
//! reads `attr_index`, which every write maintains in its transaction; any
//! other query scans the base class's key range, decoding every object of
//! that base class. The index is rebuilt from `objects` on open when it was
//! built for another `attr_index_version` (or by a build without it); files
//! of version 1 had it as the tuple-keyed table `attr_index`, which that
//! rebuild drops.
//! Provider-reference lookups ([`RedbStore::find_by_ems_ref`]) use
//! `ems_refs`.
//!
//! # Durability
//!
//! Every write ([`ObjectStore::create`], [`ObjectStore::update`],
//! [`RedbStore::write_batch`]) is one redb write transaction committed with
//! redb's default [`redb::Durability::Immediate`]: when the call returns the
//! data is on disk (fsync'd), and a crash at any point, including `kill -9`
//! mid-write, leaves the file at the last committed transaction (redb is
//! copy-on-write with a checksummed commit slot; the next open repairs the
//! allocator state). [`RedbStore::write_batch`] runs several writes, and
//! scheduled-work changes, in one transaction: they become visible and
//! durable together or not at all, and cost one fsync (group commit). Reads
//! are snapshot reads and never block the writer.
//!
//! The file is locked by the process that has it open; a second open (from
//! this process or another) fails with "already open". Share the store with
//! `Arc<RedbStore>`, and its [`Database`] with [`RedbStore::database`].
//! [`RedbStore::open_read_only`] opens it for commands that only read:
//! nothing is written, not even a repair (see [`super::file`]). The file is
//! written through [`super::health::GuardedFile`]: a full disk makes
//! writes wait for space instead of failing ([`RedbStore::health`] says
//! so), and [`RedbStore::guard`] turns a panic inside redb into an error.

use super::file::{self, BackupReport, Db};
use super::health::StoreHealth;
use super::json_out::{encode_object, write_value};
use super::schedule::{self, Schedule, WorkItem};
use super::{base_class, ObjectStore, Savepoint, StoreError, VmdbRef, REGION_BASE};
use crate::engine::{AttrValue, Attributes};
use redb::{
    Database, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use rustc_hash::FxHashMap;
#[cfg(test)]
use serde_json::Map;
use serde_json::Value as J;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// The redb page cache, in MiB, unless `AUTOMATE_DB_CACHE_MB` says
/// otherwise. redb's own default (1 GiB) lets a long-running `automate run`
/// grow towards a gigabyte of RSS as the file grows; the hot pages of a
/// busy pipeline (objects of the recent events, the indexes, the queue)
/// fit in far less.
pub const DEFAULT_CACHE_MB: usize = 64;

fn cache_bytes() -> usize {
    std::env::var("AUTOMATE_DB_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_CACHE_MB)
        .max(1)
        << 20
}

pub(crate) const OBJECTS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("objects");
pub(crate) const SEQUENCES: TableDefinition<&str, i64> = TableDefinition::new("sequences");
pub(crate) const EMS_REFS: TableDefinition<(&str, i64, &str), i64> =
    TableDefinition::new("ems_refs");
/// Keys are [`index_entry_key`]'s flat bytes, so redb compares them with
/// one `memcmp` (a tuple key decodes three lengths per comparison).
pub(crate) const ATTR_INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("attr_index_v2");
/// The index as files before [`ATTR_INDEX_VERSION`] 2 held it (a tuple
/// key); dropped when the flat one is built.
const OLD_ATTR_INDEX: TableDefinition<(&str, &str, &[u8], i64), ()> =
    TableDefinition::new("attr_index");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The attributes [`ObjectStore::find_by`] answers from `attr_index`
/// rather than by a scan: names, provider references, the event handler's
/// de-duplication key, and the ids the has-many associations query.
const INDEXED_ATTRS: &[&str] = &[
    "name",
    "ems_ref",
    "uid_ems",
    "dedup_key",
    "userid",
    "guid",
    "chain_id",
    "event_type",
    "host_id",
    "ems_id",
    "vm_or_template_id",
    "miq_request_id",
];

/// The version of `attr_index`'s contents (bump when [`INDEXED_ATTRS`] or
/// the value encoding changes: the next open rebuilds the index).
const ATTR_INDEX_VERSION: u64 = 4;
const ATTR_INDEX_VERSION_KEY: &str = "attr_index_version";

/// The region ids are allocated in when none is given.
const DEFAULT_REGION: i64 = 1;

/// A redb error (or any other backend failure) as a [`StoreError`].
pub(crate) fn backend(e: impl fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The `sequences` key of a base class in a region: `VmOrTemplate:1`.
fn seq_key(base: &str, region: i64) -> String {
    format!("{base}:{region}")
}

/// The region an id belongs to (`1000000000005` is in region 1).
pub fn region_of(id: i64) -> i64 {
    id.div_euclid(REGION_BASE)
}

fn base_of(class: &str) -> Result<&'static str, StoreError> {
    base_class(class).ok_or_else(|| StoreError::UnknownClass(class.to_string()))
}

/// The durable [`ObjectStore`] on a redb file. See the module docs.
pub struct RedbStore {
    pub(super) db: Db,
    path: PathBuf,
    /// Whether the file takes writes ([`super::health`]).
    health: Arc<StoreHealth>,
    region: i64,
    /// Object writes commit with [`redb::Durability::None`]: see
    /// [`RedbStore::with_relaxed_durability`].
    relaxed: bool,
    /// Tells this store's units of work apart from other stores' on the
    /// same thread.
    id: u64,
    shared: Arc<Shared>,
}

/// What every handle on one file shares: the cache of committed objects and
/// the id counters.
#[derive(Default)]
struct Shared {
    cache: RwLock<ObjCache>,
    /// Per (base class, region): whether the counter was read from the file,
    /// and the next id to hand out.
    next_ids: Mutex<IdCounters>,
}

/// (base class, region) -> (read from the file yet, next id).
type IdCounters = FxHashMap<(&'static str, i64), (bool, i64)>;

/// Decoded committed objects of the [`CACHED_BASES`], and a counter every
/// commit bumps (a read that began before a commit never fills the cache).
#[derive(Default)]
struct ObjCache {
    epoch: u64,
    map: FxHashMap<(&'static str, i64), Arc<StoredObject>>,
}

/// The base classes whose committed objects [`RedbStore`] keeps decoded in
/// memory: the few, hot objects every event reads (providers, VMs, hosts,
/// the server and user), not the event stream, which grows without bound.
const CACHED_BASES: &[&str] = &[
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
const CACHE_MAX: usize = 250_000;

fn cached_base(base: &str) -> bool {
    CACHED_BASES.contains(&base)
}

static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The open units of work of this thread, one per store at most.
    static UNITS: RefCell<Vec<Unit>> = const { RefCell::new(Vec::new()) };
}

/// The buffered writes of one thread's unit of work: see
/// [`RedbStore::begin_unit`].
#[derive(Default)]
struct Unit {
    store: u64,
    /// The last read snapshot this unit's reads took: reused while no
    /// commit has happened since (same cache epoch), replaced after one,
    /// dropped with the unit (a pipeline worker closes its unit whenever it
    /// has nothing waiting, so no read transaction outlives a busy spell).
    snap: Option<Rc<Snap>>,
    objects: FxHashMap<(&'static str, i64), Pending>,
    /// The order objects were first written in (the commit's order).
    order: Vec<(&'static str, i64)>,
    /// Candidate ids per indexed (base, attribute, value): re-checked
    /// against the object on every read, so stale entries do no harm.
    index: FxHashMap<(&'static str, &'static str, Vec<u8>), Vec<i64>>,
    refs: FxHashMap<(&'static str, i64, String), i64>,
    /// Writes of this unit handed to a committer ([`RedbStore::hand_over`])
    /// and not yet known to be on disk, oldest first: read after the
    /// unit's own, newest first, until [`RedbStore::landed`].
    in_flight: std::collections::VecDeque<HandedOver>,
    /// While a [`Savepoint`] is held ([`RedbStore::savepoint`]): how to take
    /// back each write since, oldest first. `None`: nothing is recorded.
    undo: Option<Vec<Undo>>,
    /// Savepoints held (not yet rolled back to or released).
    savepoints: usize,
}

/// One write of a unit, as [`RedbStore::rollback_to`] takes it back.
/// Index candidates are not recorded: a stale candidate is harmless (every
/// index read checks the object itself).
enum Undo {
    /// An object was put: how it was before (`None`: new to the unit, the
    /// last in `order`), and the recorded change with its previous value.
    Object {
        key: (&'static str, i64),
        prior: Option<Arc<StoredObject>>,
        change: Option<(String, Option<AttrValue>)>,
    },
    /// A provider reference was recorded: what it pointed at before.
    Ref {
        key: (&'static str, i64, String),
        prior: Option<i64>,
    },
}

/// What a unit's reads still need of writes it handed over.
struct HandedOver {
    objects: FxHashMap<(&'static str, i64), Arc<StoredObject>>,
    index: FxHashMap<(&'static str, &'static str, Vec<u8>), Vec<i64>>,
    refs: FxHashMap<(&'static str, i64, String), i64>,
}

/// A unit of work's writes, taken from its thread to be committed (maybe
/// together with other units) by [`RedbStore::commit_units`].
#[derive(Default)]
pub struct PreparedUnit {
    objects: FxHashMap<(&'static str, i64), Pending>,
    order: Vec<(&'static str, i64)>,
}

impl fmt::Debug for PreparedUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedUnit")
            .field("objects", &self.order.len())
            .finish()
    }
}

struct Pending {
    /// The object as this unit sees it.
    obj: Arc<StoredObject>,
    /// Created in this unit (not in the file yet).
    created: bool,
    /// For an object that exists in the file: the attributes this unit set.
    /// The commit applies them to the object as committed then, so another
    /// thread's update of other attributes in between is kept.
    changes: Attributes,
}

impl Unit {
    /// Records an object this unit created, or one it changed (`change`:
    /// the attribute set, for an object in the file).
    fn put(
        &mut self,
        base: &'static str,
        id: i64,
        obj: StoredObject,
        created: bool,
        change: Option<(String, AttrValue)>,
    ) {
        for (attr, key) in index_entries(&obj.attrs) {
            let ids = self.index.entry((base, attr, key)).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if let Some((ems_id, refs)) = ref_keys(&obj.attrs) {
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
                });
                (p, None)
            }
        };
        let mut undone = None;
        if let Some((k, v)) = change {
            if self.undo.is_some() {
                undone = Some((k.clone(), p.changes.get(&k).cloned()));
            }
            p.changes.insert(k, v);
        }
        if let Some(undo) = self.undo.as_mut() {
            undo.push(Undo::Object {
                key: (base, id),
                prior,
                change: undone,
            });
        }
    }

    /// One savepoint less; with none left, nothing more is recorded.
    fn release(&mut self) {
        self.savepoints = self.savepoints.saturating_sub(1);
        if self.savepoints == 0 {
            self.undo = None;
        }
    }

    /// Takes back the writes recorded after the first `keep` (newest
    /// first).
    fn rollback(&mut self, keep: usize) {
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
                } => {
                    if let Some(p) = self.objects.get_mut(&key) {
                        p.obj = obj;
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
}

/// Runs `f` on this thread's unit of work for store `store`, if one is open.
fn with_unit<T>(store: u64, f: impl FnOnce(&mut Unit) -> T) -> Option<T> {
    UNITS.with(|u| {
        let mut units = u.borrow_mut();
        units.iter_mut().find(|u| u.store == store).map(f)
    })
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("region", &self.region)
            .finish()
    }
}

/// One object as stored: its class (e.g. `EmsEvent`) and attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub class: String,
    pub attrs: Attributes,
}

/// What [`RedbStore::verify`] found: counts, and the inconsistencies
/// (empty when the file is consistent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    pub objects: u64,
    pub max_id: Option<i64>,
    pub ems_refs: u64,
    pub scheduled: u64,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl RedbStore {
    /// Opens (creating if needed) the store at `path`, with ids in region 1.
    /// Creates every table, the scheduled-work ones included, so a new file
    /// is complete from its first commit. The page cache is
    /// [`DEFAULT_CACHE_MB`] MiB (`AUTOMATE_DB_CACHE_MB` overrides it).
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        Self::open_region(path, DEFAULT_REGION)
    }

    /// [`RedbStore::open`] allocating new ids in `region`
    /// (`region * 10^12 + seq`).
    pub fn open_region(path: impl AsRef<Path>, region: i64) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !(0..i64::MAX / REGION_BASE).contains(&region) {
            return Err(StoreError::Backend(format!("invalid region {region}")));
        }
        let health = Arc::new(StoreHealth::new(&path));
        let db = file::open_guarded(&path, cache_bytes(), health.clone())?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(OBJECTS).map_err(backend)?;
        txn.open_table(SEQUENCES).map_err(backend)?;
        txn.open_table(EMS_REFS).map_err(backend)?;
        txn.open_table(ATTR_INDEX).map_err(backend)?;
        ensure_attr_index(&txn)?;
        schedule::create_tables(&txn)?;
        txn.commit().map_err(backend)?;
        Ok(RedbStore {
            db: Db::Rw(Arc::new(db)),
            path,
            health,
            region,
            relaxed: false,
            id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
            shared: Arc::new(Shared::default()),
        })
    }

    /// Opens the store at `path` read-only, for commands that only read:
    /// nothing is written to the file (a file that needs a repair is
    /// refused, not repaired) and every write fails.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = file::open_read_only(&path)?;
        Ok(RedbStore {
            db: Db::Ro(Arc::new(db), Arc::from(path.as_path())),
            health: Arc::new(StoreHealth::new(&path)),
            path,
            region: DEFAULT_REGION,
            relaxed: false,
            id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
            shared: Arc::new(Shared::default()),
        })
    }

    /// Whether the file takes writes: a full disk, a failed write (see
    /// [`super::health`]).
    pub fn health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }

    /// Runs `f` (calls into this store) with a panic inside redb turned
    /// into [`StoreError::Damaged`] naming the file, which also marks the
    /// store failed ([`StoreHealth`]).
    pub fn guard<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        file::guard(&self.path, f).inspect_err(|e| {
            // (A read-only command reports the error itself.)
            if matches!(e, StoreError::Damaged { .. }) && self.db.writable().is_some() {
                self.health.fail(e.to_string());
            }
        })
    }

    /// Writes a consistent copy of the last commit to `dest` (see
    /// [`super::file`]), beside running writers.
    pub fn backup(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        self.guard(|| file::backup(&self.path, &self.db, dest))
    }

    /// Object writes ([`ObjectStore::create`], [`ObjectStore::update`],
    /// [`RedbStore::write_batch`]) commit with [`redb::Durability::None`]:
    /// no fsync; they reach the disk with the next durable commit (any
    /// [`Schedule`] change, which stays durable), or are lost by a crash
    /// before it. The event pipeline's workers use this: a claimed event's
    /// writes become durable with its ack, and a crash before the ack
    /// re-delivers the event, so nothing acknowledged is lost.
    pub fn with_relaxed_durability(mut self, relaxed: bool) -> RedbStore {
        self.relaxed = relaxed;
        self
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The redb database, to put other tables (the scheduled work, the event
    /// queue) in the same file and transactions; `None` when opened
    /// read-only.
    pub fn database(&self) -> Option<Arc<Database>> {
        self.db.writable()
    }

    /// The scheduled-work table of this store's file.
    pub fn schedule(&self) -> Schedule {
        Schedule::from_created(self.db.clone())
    }

    /// Runs `f` over one write transaction and commits it: every create,
    /// update, delete and scheduled-work change `f` makes becomes durable
    /// together, with one fsync, or (when `f` fails or panics) not at all.
    ///
    /// Only one write transaction runs at a time (others wait), so `f`
    /// should be short and must not call this store's (or its
    /// [`Schedule`]'s) own write methods, which would wait for `f` forever;
    /// it writes through the [`Batch`]. Reads through the `Batch` see its
    /// uncommitted writes; reads through the store see the last commit.
    pub fn write_batch<T>(
        &self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut txn = self.db.begin_write().map_err(backend)?;
        if self.relaxed {
            txn.set_durability(redb::Durability::None)
                .map_err(backend)?;
        }
        let out = Batch::new(&txn, self.region, &self.shared).and_then(|mut batch| {
            let out = f(&mut batch)?;
            batch.keep = true;
            Ok((out, std::mem::take(&mut batch.touched)))
        });
        match out {
            Ok((out, touched)) => {
                txn.commit().map_err(backend)?;
                self.forget(&touched);
                Ok(out)
            }
            Err(e) => {
                // Nothing of the batch reaches the file.
                let _ = txn.abort();
                Err(e)
            }
        }
    }

    /// Starts a *unit of work* on the calling thread: from now on, this
    /// thread's [`ObjectStore::create`] and [`ObjectStore::update`] calls on
    /// this store are buffered in memory (ids are still allocated at once,
    /// unique across threads), and its reads see them;
    /// [`RedbStore::commit_unit`] writes them all in one durable transaction
    /// together with whatever else it is given (the event queue's acks),
    /// and [`RedbStore::abort_unit`] (or a failed commit) discards them.
    /// Other threads see none of it before the commit. A unit already open
    /// is kept.
    pub fn begin_unit(&self) {
        UNITS.with(|u| {
            let mut units = u.borrow_mut();
            if !units.iter().any(|x| x.store == self.id) {
                units.push(Unit {
                    store: self.id,
                    ..Unit::default()
                });
            }
        });
    }

    /// How many objects the calling thread's unit of work has written
    /// (`None` when it has none open).
    pub fn unit_len(&self) -> Option<usize> {
        with_unit(self.id, |u| u.order.len())
    }

    /// A point in the calling thread's unit of work to come back to: the
    /// writes made after it are discarded by [`RedbStore::rollback_to`]
    /// (one failed item of a batch: its writes go, its neighbours' stay)
    /// or kept by [`RedbStore::release_savepoint`]; each savepoint ends
    /// with one of the two. Savepoints nest. `None` without an open unit
    /// (writes are then committed as they are made and cannot be taken
    /// back). While one is held, each write records how to take it back
    /// (an `Arc` clone, O(1)).
    pub fn savepoint(&self) -> Option<Savepoint> {
        with_unit(self.id, |u| {
            u.savepoints += 1;
            Savepoint(u.undo.get_or_insert_with(Vec::new).len())
        })
    }

    /// Discards the writes the calling thread's unit made since `sp`
    /// (objects created are gone, objects changed are as they were) and
    /// ends `sp`. A savepoint from before a [`RedbStore::hand_over`] takes
    /// back nothing handed over.
    pub fn rollback_to(&self, sp: Savepoint) {
        with_unit(self.id, |u| {
            u.rollback(sp.0);
            u.release();
        });
    }

    /// Ends `sp`, keeping the writes made since.
    pub fn release_savepoint(&self, _sp: Savepoint) {
        with_unit(self.id, Unit::release);
    }

    /// Discards the calling thread's unit of work.
    pub fn abort_unit(&self) {
        let _ = self.take_unit();
    }

    fn take_unit(&self) -> Option<Unit> {
        UNITS.with(|u| {
            let mut units = u.borrow_mut();
            let i = units.iter().position(|x| x.store == self.id)?;
            Some(units.swap_remove(i))
        })
    }

    /// Commits the calling thread's unit of work (see
    /// [`RedbStore::begin_unit`]) and `f`'s writes in one transaction with
    /// [`redb::Durability::Immediate`], whatever
    /// [`RedbStore::with_relaxed_durability`] says: all of it is on disk when
    /// this returns, or (on error, or a crash before) none of it. The unit is
    /// closed either way. Without an open unit, this is
    /// [`RedbStore::write_batch`] made durable.
    pub fn commit_unit<T>(
        &self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let unit = self.take_prepared();
        self.commit_units(&[&unit], f)
    }

    /// Closes the calling thread's unit of work (see
    /// [`RedbStore::begin_unit`]) and returns its writes, for
    /// [`RedbStore::commit_units`] on any thread (an empty unit without
    /// one open).
    pub fn take_prepared(&self) -> PreparedUnit {
        let unit = self.take_unit().unwrap_or_default();
        PreparedUnit {
            objects: unit.objects,
            order: unit.order,
        }
    }

    /// [`RedbStore::take_prepared`] for a caller that goes on before the
    /// commit is done: the unit stays open, and this thread's reads keep
    /// seeing the handed-over writes (after the unit's newer ones) until
    /// [`RedbStore::landed`] says they are on disk. What the unit writes
    /// next must be committed after them: an object they created is
    /// changed, not created, by the next hand-over. Call [`RedbStore::
    /// abort_unit`] if their commit fails (everything built on them goes
    /// too). An empty unit without one open.
    pub fn hand_over(&self) -> PreparedUnit {
        with_unit(self.id, |u| {
            // What is handed over cannot be taken back.
            u.undo = None;
            u.savepoints = 0;
            let objects = std::mem::take(&mut u.objects);
            let order = std::mem::take(&mut u.order);
            u.in_flight.push_back(HandedOver {
                objects: objects.iter().map(|(k, p)| (*k, p.obj.clone())).collect(),
                index: std::mem::take(&mut u.index),
                refs: std::mem::take(&mut u.refs),
            });
            PreparedUnit { objects, order }
        })
        .unwrap_or_default()
    }

    /// The oldest writes [`RedbStore::hand_over`] gave out are on disk:
    /// reads take them from the file from now on.
    pub fn landed(&self) {
        with_unit(self.id, |u| u.in_flight.pop_front());
    }

    /// Commits units of work ([`RedbStore::take_prepared`]), in order, and
    /// `f`'s writes in one transaction with [`redb::Durability::Immediate`]
    /// (see [`RedbStore::commit_unit`]): all of it is on disk when this
    /// returns, or none of it. A later unit's change of an object an
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
                                if p.created && cached_base(key.0) {
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

    /// Drops committed objects from the cache (after a write that changed
    /// them).
    fn forget(&self, touched: &[(&'static str, i64)]) {
        if let Ok(mut cache) = self.shared.cache.write() {
            cache.epoch += 1;
            for key in touched {
                cache.map.remove(key);
            }
        }
    }

    /// The next id of `base` in this store's region, unique across threads
    /// and never one the file holds: the counter starts from the file's
    /// sequence (and past its largest id of that base and region).
    fn alloc_id(&self, base: &'static str) -> Result<i64, StoreError> {
        let mut ids = self
            .shared
            .next_ids
            .lock()
            .map_err(|_| StoreError::Backend("id counter lock poisoned".into()))?;
        let entry = ids.entry((base, self.region)).or_insert((false, 0));
        if !entry.0 {
            let txn = self.db.begin_read().map_err(backend)?;
            let seqs = txn.open_table(SEQUENCES).map_err(backend)?;
            let objects = txn.open_table(OBJECTS).map_err(backend)?;
            let lo = self.region * REGION_BASE;
            let mut next = seqs
                .get(seq_key(base, self.region).as_str())
                .map_err(backend)?
                .map(|g| g.value())
                .unwrap_or(lo + 1);
            if let Some(last) = objects
                .range((base, lo)..(base, lo.saturating_add(REGION_BASE)))
                .map_err(backend)?
                .next_back()
            {
                next = next.max(last.map_err(backend)?.0.value().1 + 1);
            }
            *entry = (true, entry.1.max(next));
        }
        let id = entry.1;
        entry.1 += 1;
        Ok(id)
    }

    /// Reads through the calling thread's unit of work, the cache and a
    /// snapshot opened on first need.
    fn layered<T>(&self, f: impl FnOnce(&Reader<'_>) -> Result<T, StoreError>) -> Option<T> {
        let l = Layered {
            store: self,
            snap: std::cell::OnceCell::new(),
        };
        let reader = Reader {
            objects: &l,
            refs: &l,
            index: &l,
        };
        match f(&reader) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("object store read failed: {e}");
                None
            }
        }
    }

    /// Stores (or replaces) an object with a given id (imports, fixtures).
    /// The sequence of its base class in the id's region moves past it.
    pub fn insert(&self, class: &str, id: i64, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        self.write_batch(|b| b.insert(class, id, attrs))
    }

    /// Deletes an object (and its provider references); `false` when there
    /// was none.
    pub fn delete(&self, obj: &VmdbRef) -> Result<bool, StoreError> {
        self.write_batch(|b| b.delete(obj))
    }

    /// The object of `class` (or a subclass) with provider reference
    /// `ems_ref` (its `ems_ref` or `uid_ems`) on provider `ems_id`.
    pub fn find_by_ems_ref(&self, class: &str, ems_id: i64, ems_ref: &str) -> Option<VmdbRef> {
        self.layered(|r| r.find_by_ems_ref(class, ems_id, ems_ref))
            .flatten()
    }

    /// The whole object, class and attributes.
    pub fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
        let base = base_of(class)?;
        let txn = self.db.begin_read().map_err(backend)?;
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        load_from(&objects, base, id)
    }

    /// Every object of `class`'s base class, by id.
    pub fn list(&self, class: &str) -> Result<Vec<VmdbRef>, StoreError> {
        let base = base_of(class)?;
        let txn = self.db.begin_read().map_err(backend)?;
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        let mut out = Vec::new();
        objects.scan(base, &mut |id, obj| {
            out.push(VmdbRef {
                class: Arc::from(obj.class.as_str()),
                id,
            });
        })?;
        Ok(out)
    }

    /// How many objects the store holds.
    pub fn count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        objects.len().map_err(backend)
    }

    /// The next id [`ObjectStore::create`] will hand out for `class` (its
    /// base class's sequence in the store's region).
    pub fn next_id(&self, class: &str) -> Result<i64, StoreError> {
        let base = base_of(class)?;
        let txn = self.db.begin_read().map_err(backend)?;
        let seqs = txn.open_table(SEQUENCES).map_err(backend)?;
        let next = seqs
            .get(seq_key(base, self.region).as_str())
            .map_err(backend)?;
        Ok(next
            .map(|g| g.value())
            .unwrap_or(self.region * REGION_BASE + 1))
    }

    /// Checks the file's invariants: every object decodes and is filed under
    /// its class's base class, every sequence is past the largest id of its
    /// base class and region, every provider reference points at an object
    /// that carries it, the attribute index holds exactly the objects'
    /// indexed values, and the scheduled-work tables agree.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let txn = self.db.begin_read().map_err(backend)?;
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        let seqs = txn.open_table(SEQUENCES).map_err(backend)?;
        let refs = txn.open_table(EMS_REFS).map_err(backend)?;
        let index = txn.open_table(ATTR_INDEX).map_err(backend)?;
        let mut indexed = 0u64;
        let mut max_by_seq = std::collections::BTreeMap::<String, i64>::new();
        for entry in objects.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let (base, id) = k.value();
            report.objects += 1;
            report.max_id = report.max_id.max(Some(id));
            let m = max_by_seq.entry(seq_key(base, region_of(id))).or_insert(id);
            *m = (*m).max(id);
            match decode_object(v.value()) {
                Ok(obj) => {
                    if base_class(&obj.class) != Some(base) {
                        report
                            .problems
                            .push(format!("{base} [{id}] holds a {}", obj.class));
                    }
                    for (attr, value) in index_entries(&obj.attrs) {
                        indexed += 1;
                        let key = index_entry_key(base, attr, &value, id);
                        if index.get(key.as_slice()).map_err(backend)?.is_none() {
                            report
                                .problems
                                .push(format!("{base} [{id}] {attr} is not indexed"));
                        }
                    }
                }
                Err(e) => report.problems.push(format!("{base} [{id}]: {e}")),
            }
        }
        for (key, max) in max_by_seq {
            let next = seqs.get(key.as_str()).map_err(backend)?.map(|g| g.value());
            if next.is_none_or(|n| n <= max) {
                report
                    .problems
                    .push(format!("sequence {key} is {next:?}, not past id {max}"));
            }
        }
        for entry in refs.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let (base, ems_id, r) = k.value();
            let id = v.value();
            report.ems_refs += 1;
            let ok = load_from(&objects, base, id)?.is_some_and(|o| {
                ref_keys(&o.attrs).is_some_and(|(e, rs)| e == ems_id && rs.iter().any(|x| x == r))
            });
            if !ok {
                report.problems.push(format!(
                    "ems_ref ({base}, {ems_id}, {r}) points at {id}, which does not carry it"
                ));
            }
        }
        let index_len = index.len().map_err(backend)?;
        if index_len != indexed {
            report.problems.push(format!(
                "attr_index has {index_len} entries for {indexed} indexed values"
            ));
        }
        drop((objects, seqs, refs, index));
        let (scheduled, problems) = schedule::verify_in(&txn)?;
        report.scheduled = scheduled;
        report.problems.extend(problems);
        Ok(report)
    }
}

impl ObjectStore for RedbStore {
    fn find(&self, class: &str, id: i64) -> Option<VmdbRef> {
        base_class(class)?;
        self.layered(|r| r.find(class, id)).flatten()
    }

    fn attribute(&self, obj: &VmdbRef, name: &str) -> Option<AttrValue> {
        if name.eq_ignore_ascii_case("id") {
            return Some(AttrValue::Int(obj.id));
        }
        base_class(&obj.class)?;
        self.layered(|r| r.attribute(obj, name)).flatten()
    }

    fn create(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        let base = base_of(class)?;
        if self.unit_len().is_none() {
            return self.write_batch(|b| b.create(class, attrs));
        }
        let id = self.alloc_id(base)?;
        let obj = StoredObject {
            class: class.to_string(),
            attrs: lowercase_keys(attrs),
        };
        with_unit(self.id, |u| u.put(base, id, obj, true, None))
            .ok_or_else(|| StoreError::Backend("unit of work closed".into()))?;
        Ok(VmdbRef {
            class: Arc::from(class),
            id,
        })
    }

    fn create_now(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        base_of(class)?;
        self.write_batch(|b| b.create(class, attrs))
    }

    fn update(&self, obj: &VmdbRef, name: &str, value: AttrValue) -> Result<(), StoreError> {
        let base = base_of(&obj.class)?;
        if self.unit_len().is_none() {
            return self.write_batch(|b| b.update(obj, name, value));
        }
        let not_found = || StoreError::NotFound(obj.class.to_string(), obj.id);
        let current = self
            .layered(|r| r.objects.load_obj(base, obj.id))
            .ok_or_else(|| StoreError::Backend("object store read failed".into()))?
            .ok_or_else(not_found)?;
        let name = name.to_ascii_lowercase();
        let mut new = StoredObject::clone(&current);
        new.attrs.insert(name.clone(), value.clone());
        // `created` stays as first recorded (an object created in this unit
        // is written whole).
        with_unit(self.id, |u| {
            u.put(base, obj.id, new, false, Some((name, value)))
        })
        .ok_or_else(|| StoreError::Backend("unit of work closed".into()))
    }

    fn find_by(&self, class: &str, attr: &str, value: &AttrValue) -> Vec<VmdbRef> {
        if base_class(class).is_none() {
            return Vec::new();
        }
        self.layered(|r| r.find_by(class, attr, value))
            .unwrap_or_default()
    }

    fn find_by_ems_ref(&self, class: &str, ems_id: i64, ems_ref: &str) -> Option<VmdbRef> {
        // The inherent method: the provider-reference table.
        RedbStore::find_by_ems_ref(self, class, ems_id, ems_ref)
    }

    fn savepoint(&self) -> Option<Savepoint> {
        RedbStore::savepoint(self)
    }

    fn rollback_to(&self, sp: Savepoint) {
        RedbStore::rollback_to(self, sp)
    }

    fn release_savepoint(&self, sp: Savepoint) {
        RedbStore::release_savepoint(self, sp)
    }
}

/// A read snapshot of the three tables reads use, and the cache epoch
/// when it was taken.
struct Snap {
    objects: redb::ReadOnlyTable<(&'static str, i64), &'static [u8]>,
    refs: redb::ReadOnlyTable<(&'static str, i64, &'static str), i64>,
    index: redb::ReadOnlyTable<&'static [u8], ()>,
    epoch: u64,
}

/// Reads through the calling thread's unit of work, then the cache of
/// committed objects, then a snapshot of the file (opened on first need;
/// what it decodes of a cached base class fills the cache, unless a commit
/// happened since it was taken).
struct Layered<'s> {
    store: &'s RedbStore,
    snap: std::cell::OnceCell<Result<Rc<Snap>, StoreError>>,
}

impl Layered<'_> {
    fn snap(&self) -> Result<&Snap, StoreError> {
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
                    let kept = with_unit(self.store.id, |u| {
                        u.snap.clone().filter(|s| s.epoch == epoch)
                    })
                    .flatten();
                    if let Some(snap) = kept {
                        return Ok(snap);
                    }
                }
                let txn = self.store.db.begin_read().map_err(backend)?;
                let snap = Rc::new(Snap {
                    objects: txn.open_table(OBJECTS).map_err(backend)?,
                    refs: txn.open_table(EMS_REFS).map_err(backend)?,
                    index: txn.open_table(ATTR_INDEX).map_err(backend)?,
                    epoch,
                });
                with_unit(self.store.id, |u| u.snap = Some(snap.clone()));
                Ok(snap)
            })
            .as_ref()
            .map(|s| &**s)
            .map_err(Clone::clone)
    }

    fn pending(&self, base: &str, id: i64) -> Option<Arc<StoredObject>> {
        let base = base_class(base)?;
        with_unit(self.store.id, |u| {
            u.objects
                .get(&(base, id))
                .map(|p| p.obj.clone())
                .or_else(|| {
                    u.in_flight
                        .iter()
                        .rev()
                        .find_map(|h| h.objects.get(&(base, id)).cloned())
                })
        })
        .flatten()
    }
}

impl ObjectsTable for Layered<'_> {
    fn load_obj(&self, base: &str, id: i64) -> Result<Option<Arc<StoredObject>>, StoreError> {
        if let Some(p) = self.pending(base, id) {
            return Ok(Some(p));
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
        with_unit(self.store.id, |u| {
            for h in &u.in_flight {
                for ((b, id), o) in &h.objects {
                    if *b == sbase {
                        all.insert(*id, o.clone());
                    }
                }
            }
            for ((b, id), p) in &u.objects {
                if *b == sbase {
                    all.insert(*id, p.obj.clone());
                }
            }
        });
        for (id, o) in all {
            f(id, o);
        }
        Ok(())
    }
}

impl RefsTable for Layered<'_> {
    fn get_id(&self, base: &str, ems_id: i64, r: &str) -> Result<Option<i64>, StoreError> {
        if let Some(sbase) = base_class(base) {
            let found = with_unit(self.store.id, |u| {
                let key = (sbase, ems_id, r.to_string());
                u.refs.get(&key).copied().or_else(|| {
                    u.in_flight
                        .iter()
                        .rev()
                        .find_map(|h| h.refs.get(&key).copied())
                })
            })
            .flatten();
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
            with_unit(self.store.id, |u| {
                let key = (sbase, *sattr, value.to_vec());
                let layers = std::iter::once(&u.index).chain(u.in_flight.iter().map(|h| &h.index));
                for index in layers {
                    if let Some(more) = index.get(&key) {
                        ids.extend(more.iter().copied());
                    }
                }
            });
            ids.sort_unstable();
            ids.dedup();
        }
        Ok(ids)
    }
}

/// Several writes in one transaction: see [`RedbStore::write_batch`]. Reads
/// through a batch see its own uncommitted writes.
pub struct Batch<'t> {
    txn: &'t WriteTransaction,
    objects: Table<'t, (&'static str, i64), &'static [u8]>,
    sequences: Table<'t, &'static str, i64>,
    refs: Table<'t, (&'static str, i64, &'static str), i64>,
    index: Table<'t, &'static [u8], ()>,
    region: i64,
    shared: &'t Shared,
    /// The objects written, to drop from the cache once committed.
    touched: Vec<(&'static str, i64)>,
    /// Ids [`Batch::create`] took from the in-memory counters: given back
    /// when the batch is dropped without `keep` (an error or a panic), so a
    /// failed batch leaves no gap.
    reserved: Vec<(&'static str, i64)>,
    keep: bool,
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
    fn new(
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
    fn advance_sequence(&mut self, base: &str, id: i64) -> Result<(), StoreError> {
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

    fn bump_counter(&self, base: &'static str, id: i64) {
        if let Ok(mut ids) = self.shared.next_ids.lock() {
            let e = ids.entry((base, region_of(id))).or_insert((false, 0));
            e.1 = e.1.max(id + 1);
        }
    }

    /// Writes one object of a unit of work (see [`RedbStore::commit_unit`]).
    fn apply_pending(
        &mut self,
        base: &'static str,
        id: i64,
        p: &Pending,
    ) -> Result<(), StoreError> {
        let obj = &p.obj;
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

    /// Deletes an object and its provider references; `false` when there
    /// was none.
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

    /// One attribute, resolving associations as [`ObjectStore::attribute`].
    pub fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
        self.reader().attribute(obj, name)
    }

    /// See [`RedbStore::find_by_ems_ref`].
    pub fn find_by_ems_ref(
        &self,
        class: &str,
        ems_id: i64,
        ems_ref: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        self.reader().find_by_ems_ref(class, ems_id, ems_ref)
    }

    /// See [`ObjectStore::find_by`].
    pub fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        self.reader().find_by(class, attr, value)
    }

    /// Schedules work in this transaction (see [`Schedule::schedule`]): the
    /// item exists exactly when the batch's other writes do.
    pub fn schedule(&mut self, item: &WorkItem, run_at: SystemTime) -> Result<u64, StoreError> {
        schedule::schedule_in(self.txn, item, run_at)
    }

    /// Completes (removes) scheduled work in this transaction (see
    /// [`Schedule::complete`]): acknowledging work together with the writes
    /// it produced makes processing exactly-once for the store.
    pub fn complete(&mut self, id: u64) -> Result<bool, StoreError> {
        schedule::complete_in(self.txn, id)
    }

    /// Schedules several items in this transaction (see
    /// [`Schedule::schedule_many`]); their ids in order.
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

    fn reader(&self) -> Reader<'_> {
        Reader {
            objects: &self.objects,
            refs: &self.refs,
            index: &self.index,
        }
    }

    /// Writes an object and brings the provider-reference index from `old`'s
    /// references to the new ones.
    fn put(
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
    fn unindex(&mut self, base: &str, id: i64, attrs: &Attributes) -> Result<(), StoreError> {
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

/// Reads over either a read snapshot's tables or a batch's.
struct Reader<'a> {
    objects: &'a dyn ObjectsTable,
    refs: &'a dyn RefsTable,
    index: &'a dyn IndexTable,
}

/// Object-safe views of the two tables reads need, so one [`Reader`] serves
/// read snapshots and write batches.
trait ObjectsTable {
    fn load_obj(&self, base: &str, id: i64) -> Result<Option<Arc<StoredObject>>, StoreError>;
    /// Every object of base class `base`, by id (undecodable ones skipped
    /// with a warning).
    fn scan(&self, base: &str, f: &mut dyn FnMut(i64, Arc<StoredObject>))
        -> Result<(), StoreError>;
}

trait RefsTable {
    fn get_id(&self, base: &str, ems_id: i64, r: &str) -> Result<Option<i64>, StoreError>;
}

trait IndexTable {
    fn ids(&self, base: &str, attr: &str, value: &[u8]) -> Result<Vec<i64>, StoreError>;
}

impl<T: ReadableTable<&'static [u8], ()>> IndexTable for T {
    fn ids(&self, base: &str, attr: &str, value: &[u8]) -> Result<Vec<i64>, StoreError> {
        let mut out = Vec::new();
        let prefix = index_prefix(base, attr);
        // Plain: one range. Bucketed: one range per bucket there is (a seek
        // to the next bucket, then the value's range in it).
        let mut bucket = None;
        if bucketed(base, attr) {
            let Some(b) = self.first_bucket(&prefix, 0)? else {
                return Ok(out);
            };
            bucket = Some(b);
        }
        loop {
            let range_key = |id: u64| {
                let mut k = prefix.clone();
                if let Some(b) = bucket {
                    k.extend_from_slice(&u64::to_be_bytes(b));
                }
                k.extend_from_slice(value);
                k.push(0);
                k.extend_from_slice(&id.to_be_bytes());
                k
            };
            let (from, to) = (range_key(0), range_key(u64::MAX));
            for entry in self
                .range(from.as_slice()..=to.as_slice())
                .map_err(backend)?
            {
                let key = entry.map_err(backend)?.0;
                out.push(index_entry_id(key.value())?);
            }
            match bucket {
                Some(b) if b < u64::MAX => match self.first_bucket(&prefix, b + 1)? {
                    Some(next) => bucket = Some(next),
                    None => break,
                },
                _ => break,
            }
        }
        Ok(out)
    }
}

/// Seeking the buckets of a bucketed index ([`bucketed`]).
trait Buckets {
    /// The first bucket at or after `from` under `prefix`, if any.
    fn first_bucket(&self, prefix: &[u8], from: u64) -> Result<Option<u64>, StoreError>;
}

impl<T: ReadableTable<&'static [u8], ()>> Buckets for T {
    fn first_bucket(&self, prefix: &[u8], from: u64) -> Result<Option<u64>, StoreError> {
        let mut seek = prefix.to_vec();
        seek.extend_from_slice(&from.to_be_bytes());
        let Some(entry) = self.range(seek.as_slice()..).map_err(backend)?.next() else {
            return Ok(None);
        };
        let key = entry.map_err(backend)?.0;
        let key = key.value();
        let Some(rest) = key.strip_prefix(prefix) else {
            return Ok(None);
        };
        let bucket = rest
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(|| StoreError::Backend(format!("attr_index key too short: {key:?}")))?;
        Ok(Some(u64::from_be_bytes(bucket)))
    }
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

fn load_from<T: ReadableTable<(&'static str, i64), &'static [u8]> + ?Sized>(
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
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(None);
        };
        Ok(self.objects.load_obj(base, id)?.map(|o| VmdbRef {
            class: Arc::from(o.class.as_str()),
            id,
        }))
    }

    fn find_by_ems_ref(
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

    fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
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
    fn object_or_nil(&self, class: &str, fk: &AttrValue) -> Result<AttrValue, StoreError> {
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
fn as_id(v: &AttrValue) -> Option<i64> {
    match v {
        AttrValue::Int(i) => Some(*i),
        AttrValue::Object(r) => Some(r.id),
        AttrValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The explicitly named belongs_to associations; the rest follow
/// `<name>` -> `<name>_id` when `<name>` names a known class.
const BELONGS_TO: &[(&str, &[&str], &str)] = &[
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

fn is_generic(name: &str) -> bool {
    !BELONGS_TO.iter().any(|(n, _, _)| *n == name)
}

/// The id attributes and target class of a belongs_to association.
fn belongs_to(name: &str) -> Option<(Vec<String>, &'static str)> {
    if let Some((_, fks, target)) = BELONGS_TO.iter().find(|(n, _, _)| *n == name) {
        return Some((fks.iter().map(|s| s.to_string()).collect(), target));
    }
    let target = base_class(&name.replace('_', ""))?;
    Some((vec![format!("{name}_id")], target))
}

/// The has_many associations: (owner base class, name) -> (target class,
/// the target's attribute holding the owner's id).
fn has_many(base: &str, name: &str) -> Option<(&'static str, &'static str)> {
    Some(match (base, name) {
        ("Host", "vms" | "vms_and_templates") => ("VmOrTemplate", "host_id"),
        ("ExtManagementSystem", "vms" | "vms_and_templates") => ("VmOrTemplate", "ems_id"),
        ("ExtManagementSystem", "hosts") => ("Host", "ems_id"),
        ("ExtManagementSystem", "ems_events") => ("EventStream", "ems_id"),
        ("MiqRequest", "miq_request_tasks") => ("MiqRequestTask", "miq_request_id"),
        _ => return None,
    })
}

/// The provider references an object is indexed under: its `ems_id` and
/// its `ems_ref` and `uid_ems` (those set).
fn ref_keys(attrs: &Attributes) -> Option<(i64, Vec<String>)> {
    let ems_id = as_id(attrs.get("ems_id")?)?;
    let refs: Vec<String> = ["ems_ref", "uid_ems"]
        .iter()
        .filter_map(|k| match attrs.get(*k)? {
            AttrValue::Str(s) | AttrValue::Symbol(s) if !s.is_empty() => Some(s.clone()),
            AttrValue::Int(i) => Some(i.to_string()),
            _ => None,
        })
        .collect();
    (!refs.is_empty()).then_some((ems_id, refs))
}

/// The bytes `attr_index` files `value` under (its stored encoding), when
/// `attr` is indexed and the value is of a type whose equality is byte
/// equality of its encoding (strings, symbols, integers, booleans, object
/// references). Blank strings are not indexed (an EmsEvent's empty
/// `chain_id` would be one more entry per event that no lookup wants): a
/// query for `""` scans.
fn index_key(attr: &str, value: &AttrValue) -> Option<Vec<u8>> {
    if !INDEXED_ATTRS.contains(&attr) {
        return None;
    }
    match value {
        AttrValue::Str(s) if s.is_empty() => None,
        AttrValue::Str(_)
        | AttrValue::Symbol(_)
        | AttrValue::Int(_)
        | AttrValue::Bool(_)
        | AttrValue::Object(_) => {
            let mut out = Vec::with_capacity(24);
            write_value(&mut out, value);
            Some(out)
        }
        _ => None,
    }
}

/// The `attr_index` key of one entry: `base \0 attr \0 value \0` and the
/// id as 8 big-endian bytes with the sign bit flipped, so byte order is
/// (base, attribute, value, id) order and one value's entries are one
/// range. The value bytes are JSON ([`index_key`]), which never holds a
/// raw NUL, nor do class or attribute names. A [`bucketed`] index has the
/// id's bucket (8 bytes) before the value: (base, attribute, bucket,
/// value, id).
fn index_entry_key(base: &str, attr: &str, value: &[u8], id: i64) -> Vec<u8> {
    let mut key = index_prefix(base, attr);
    let id = (id as u64) ^ (1 << 63);
    if bucketed(base, attr) {
        key.extend_from_slice(&(id >> BUCKET_BITS).to_be_bytes());
    }
    key.extend_from_slice(value);
    key.push(0);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// `base \0 attr \0`: what every `attr_index` key of that attribute
/// starts with.
fn index_prefix(base: &str, attr: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(base.len() + attr.len() + 40);
    key.extend_from_slice(base.as_bytes());
    key.push(0);
    key.extend_from_slice(attr.as_bytes());
    key.push(0);
    key
}

/// Indexes filed by id bucket first: the event stream's references to a
/// VM and a host. Their values are many (one run per VM), so entries filed
/// by value land on a different leaf for every VM an event names, and each
/// commit copied one 4 KiB leaf per VM it touched; by bucket first, a
/// commit's entries (new events, ids in one or two buckets) land together.
/// A lookup seeks once per bucket instead: `find_by` on these attributes
/// costs a seek per [`BUCKET_BITS`]-sized run of event ids.
fn bucketed(base: &str, attr: &str) -> bool {
    base == "EventStream" && matches!(attr, "vm_or_template_id" | "host_id")
}

/// A bucket is 2^BUCKET_BITS consecutive ids (512 events).
const BUCKET_BITS: u32 = 9;

/// The id at the end of an [`index_entry_key`].
fn index_entry_id(key: &[u8]) -> Result<i64, StoreError> {
    let tail = key
        .len()
        .checked_sub(8)
        .and_then(|at| <[u8; 8]>::try_from(&key[at..]).ok())
        .ok_or_else(|| StoreError::Backend(format!("attr_index key too short: {key:?}")))?;
    Ok((u64::from_be_bytes(tail) ^ (1 << 63)) as i64)
}

/// The `attr_index` entries of an object: (attribute, value bytes).
fn index_entries(attrs: &Attributes) -> Vec<(&'static str, Vec<u8>)> {
    INDEXED_ATTRS
        .iter()
        .filter_map(|attr| Some((*attr, index_key(attr, attrs.get(*attr)?)?)))
        .collect()
}

/// Builds `attr_index` from the objects when it was built for another
/// [`ATTR_INDEX_VERSION`] (or never: a file from before the index).
fn ensure_attr_index(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(backend)?;
    let version = meta
        .get(ATTR_INDEX_VERSION_KEY)
        .map_err(backend)?
        .map(|g| g.value());
    if version == Some(ATTR_INDEX_VERSION) {
        return Ok(());
    }
    let mut entries = Vec::new();
    {
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        for entry in objects.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let (base, id) = k.value();
            let Some(base) = base_class(base) else {
                continue;
            };
            match decode_object(v.value()) {
                Ok(obj) => entries.extend(
                    index_entries(&obj.attrs)
                        .into_iter()
                        .map(|(attr, value)| (base, attr, value, id)),
                ),
                Err(e) => tracing::warn!("{base} [{id}] cannot be decoded: {e}"),
            }
        }
    }
    txn.delete_table(OLD_ATTR_INDEX).map_err(backend)?;
    txn.delete_table(ATTR_INDEX).map_err(backend)?;
    let mut index = txn.open_table(ATTR_INDEX).map_err(backend)?;
    let mut keys: Vec<Vec<u8>> = entries
        .iter()
        .map(|(base, attr, value, id)| index_entry_key(base, attr, value, *id))
        .collect();
    keys.sort_unstable();
    for key in &keys {
        index.insert(key.as_slice(), ()).map_err(backend)?;
    }
    meta.insert(ATTR_INDEX_VERSION_KEY, ATTR_INDEX_VERSION)
        .map_err(backend)?;
    Ok(())
}

fn lowercase_keys(attrs: Attributes) -> Attributes {
    if attrs
        .keys()
        .all(|k| !k.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return attrs;
    }
    attrs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

// ---- encoding ----------------------------------------------------------

/// The bytes of the `objects` table as an object.
pub(crate) fn decode_object(bytes: &[u8]) -> Result<StoredObject, StoreError> {
    let bad = |why: &str| StoreError::Backend(format!("undecodable object: {why}"));
    let v: J = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
    let J::Object(mut top) = v else {
        return Err(bad("not a JSON object"));
    };
    let Some(J::String(class)) = top.remove("class") else {
        return Err(bad("no class"));
    };
    let attrs = match top.remove("attrs") {
        Some(J::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), decode_value(v)))
            .collect(),
        None | Some(J::Null) => Attributes::default(),
        Some(_) => return Err(bad("attrs is not an object")),
    };
    Ok(StoredObject { class, attrs })
}

#[cfg(test)]
fn tagged(tag: &str, v: J) -> J {
    let mut m = Map::new();
    m.insert(tag.to_string(), v);
    J::Object(m)
}

#[cfg(test)]
fn encode_value(v: &AttrValue) -> J {
    match v {
        AttrValue::Nil => J::Null,
        AttrValue::Str(s) => J::String(s.clone()),
        AttrValue::Int(i) => J::from(*i),
        AttrValue::Float(f) if f.is_finite() => J::from(*f),
        AttrValue::Float(f) => tagged(
            "$f",
            J::String(
                if f.is_nan() {
                    "NaN"
                } else if *f > 0.0 {
                    "inf"
                } else {
                    "-inf"
                }
                .into(),
            ),
        ),
        AttrValue::Bool(b) => J::Bool(*b),
        AttrValue::Symbol(s) => tagged("$sym", J::String(s.clone())),
        AttrValue::Password(s) => tagged("$pw", J::String(s.clone())),
        AttrValue::Object(r) => tagged(
            "$obj",
            J::Array(vec![J::String(r.class.to_string()), J::from(r.id)]),
        ),
        AttrValue::Array(a) => J::Array(a.iter().map(encode_value).collect()),
        AttrValue::Hash(h) => tagged(
            "$hash",
            J::Array(
                h.iter()
                    .map(|(k, v)| J::Array(vec![encode_value(k), encode_value(v)]))
                    .collect(),
            ),
        ),
    }
}

fn decode_value(v: &J) -> AttrValue {
    match v {
        J::Null => AttrValue::Nil,
        J::Bool(b) => AttrValue::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => AttrValue::Str(s.clone()),
        J::Array(a) => AttrValue::Array(a.iter().map(decode_value).collect()),
        J::Object(m) => {
            if m.len() == 1 {
                let (tag, inner) = m.iter().next().expect("one entry");
                match (tag.as_str(), inner) {
                    ("$sym", J::String(s)) => return AttrValue::Symbol(s.clone()),
                    ("$pw", J::String(s)) => return AttrValue::Password(s.clone()),
                    ("$f", J::String(s)) => {
                        return AttrValue::Float(match s.as_str() {
                            "inf" => f64::INFINITY,
                            "-inf" => f64::NEG_INFINITY,
                            _ => f64::NAN,
                        })
                    }
                    ("$obj", J::Array(a)) if a.len() == 2 => {
                        if let (Some(c), Some(id)) = (a[0].as_str(), a[1].as_i64()) {
                            return AttrValue::Object(VmdbRef {
                                class: Arc::from(c),
                                id,
                            });
                        }
                    }
                    ("$hash", J::Array(pairs)) => {
                        return AttrValue::Hash(
                            pairs
                                .iter()
                                .filter_map(|p| match p {
                                    J::Array(kv) if kv.len() == 2 => {
                                        Some((decode_value(&kv[0]), decode_value(&kv[1])))
                                    }
                                    _ => None,
                                })
                                .collect(),
                        )
                    }
                    _ => {}
                }
            }
            // Not written by this module; read it as a string-keyed hash.
            AttrValue::Hash(
                m.iter()
                    .map(|(k, v)| (AttrValue::Str(k.clone()), decode_value(v)))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn encoding_round_trips_every_value_type() {
        let a = attrs(&[
            ("nil", AttrValue::Nil),
            ("s", AttrValue::str("text")),
            ("i", AttrValue::Int(-7)),
            ("big", AttrValue::Int(1_000_000_000_123)),
            ("f", AttrValue::Float(1.0)),
            ("f2", AttrValue::Float(2.5)),
            ("inf", AttrValue::Float(f64::NEG_INFINITY)),
            ("pinf", AttrValue::Float(f64::INFINITY)),
            ("b", AttrValue::Bool(false)),
            ("sym", AttrValue::Symbol("ok".into())),
            ("pw", AttrValue::Password("secret".into())),
            (
                "obj",
                AttrValue::Object(VmdbRef {
                    class: Arc::from("Host"),
                    id: 1_000_000_000_002,
                }),
            ),
            (
                "arr",
                AttrValue::Array(vec![AttrValue::Int(1), AttrValue::str("x")]),
            ),
            (
                "hash",
                AttrValue::Hash(vec![
                    (AttrValue::Symbol("k".into()), AttrValue::Int(1)),
                    (AttrValue::Int(2), AttrValue::Nil),
                ]),
            ),
            ("looks_tagged", AttrValue::str("$sym")),
        ]);
        let bytes = encode_object("EmsEvent", &a);
        assert_eq!(bytes[0], b'{');
        // Byte for byte what the value-tree encoding wrote (files written
        // before the direct encoder read back the same).
        let mut tree = Map::new();
        for (k, v) in &a {
            tree.insert(k.clone(), encode_value(v));
        }
        let mut top = Map::new();
        top.insert("class".into(), J::String("EmsEvent".into()));
        top.insert("attrs".into(), J::Object(tree));
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            serde_json::to_string(&J::Object(top)).unwrap()
        );
        for (_, v) in &a {
            let mut ours = Vec::new();
            write_value(&mut ours, v);
            assert_eq!(ours, serde_json::to_vec(&encode_value(v)).unwrap());
        }
        let back = decode_object(&bytes).unwrap();
        assert_eq!(back.class, "EmsEvent");
        assert_eq!(back.attrs, a);
        // Order is kept.
        assert_eq!(
            back.attrs.keys().collect::<Vec<_>>(),
            a.keys().collect::<Vec<_>>()
        );
        assert!(decode_object(b"garbage").is_err());
    }

    #[test]
    fn savepoints_take_back_one_items_writes_and_nest() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("s.redb")).unwrap();
        let kept = store
            .create("Vm", attrs(&[("name", "kept".into())]))
            .unwrap();
        store.begin_unit();
        let first = store
            .create("Vm", attrs(&[("name", "first".into())]))
            .unwrap();
        let outer = store.savepoint().unwrap();
        store.update(&first, "name", "changed".into()).unwrap();
        store.update(&kept, "note", "x".into()).unwrap();
        let inner = store.savepoint().unwrap();
        let gone = store
            .create("Vm", attrs(&[("name", "gone".into())]))
            .unwrap();
        store
            .update(&first, "name", "changed twice".into())
            .unwrap();
        store.rollback_to(inner);
        assert_eq!(store.find("Vm", gone.id), None);
        assert_eq!(
            store.attribute(&first, "name"),
            Some(AttrValue::from("changed"))
        );
        store.rollback_to(outer);
        assert_eq!(
            store.attribute(&first, "name"),
            Some(AttrValue::from("first"))
        );
        assert_eq!(store.attribute(&kept, "note"), None);
        // A released savepoint keeps its writes.
        let sp = store.savepoint().unwrap();
        let last = store
            .create("Vm", attrs(&[("name", "last".into())]))
            .unwrap();
        store.release_savepoint(sp);
        store.commit_unit(|_| Ok(())).unwrap();
        let mut names: Vec<String> = store
            .list("Vm")
            .unwrap()
            .iter()
            .map(|r| store.attribute(r, "name").unwrap().to_text())
            .collect();
        names.sort();
        assert_eq!(names, ["first", "kept", "last"]);
        assert_eq!(store.attribute(&kept, "note"), None);
        assert!(store.find("Vm", last.id).is_some());
        // Without a unit there is nothing to come back to.
        assert_eq!(store.savepoint(), None);
    }

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

    /// The store at `path` opened again (which rebuilds an index of another
    /// version), checked by `verify`.
    fn reopened_consistent(path: &Path) -> RedbStore {
        let store = RedbStore::open(path).unwrap();
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        store
    }

    #[test]
    fn attr_index_is_rebuilt_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let store = RedbStore::open(&path).unwrap();
        for i in 0..5 {
            store
                .create(
                    "EmsEvent",
                    attrs(&[
                        ("dedup_key", AttrValue::str(format!("k{i}"))),
                        ("event_type", AttrValue::str("E")),
                    ]),
                )
                .unwrap();
        }
        // As a file written before the index existed: no entries, no version.
        let txn = store.db.begin_write().unwrap();
        txn.delete_table(ATTR_INDEX).unwrap();
        txn.open_table(ATTR_INDEX).unwrap();
        txn.open_table(META)
            .unwrap()
            .remove(ATTR_INDEX_VERSION_KEY)
            .unwrap();
        txn.commit().unwrap();
        assert!(!store.verify().unwrap().is_ok());
        drop(store);
        let store = reopened_consistent(&path);
        let found = store.find_by("EventStream", "dedup_key", &AttrValue::str("k3"));
        assert_eq!(found.len(), 1);
        assert_eq!(
            store
                .find_by("EventStream", "event_type", &AttrValue::str("E"))
                .len(),
            5
        );
    }

    #[test]
    fn index_keys_order_as_base_attr_value_id() {
        let key = |v: &[u8], id| index_entry_key("EventStream", "event_type", v, id);
        let mut keys = [
            key(b"\"b\"", 1),
            key(b"\"a\"", i64::MAX),
            key(b"\"a\"", -5),
            key(b"\"a\"", 7),
            key(b"\"a\"", 1_000_000_000_001),
            index_entry_key("EventStream", "chain_id", b"\"z\"", 1),
            index_entry_key("EventStreamX", "a", b"1", 1),
        ];
        keys.sort();
        let ids: Vec<i64> = keys.iter().map(|k| index_entry_id(k).unwrap()).collect();
        assert_eq!(ids, [1, -5, 7, 1_000_000_000_001, i64::MAX, 1, 1]);
        assert!(keys[0].starts_with(b"EventStream\0chain_id\0"));
        // A value that is a prefix of another stays in its own range.
        assert!(key(b"\"a\"", i64::MAX) < key(b"\"ab\"", i64::MIN));
        assert!(index_entry_id(b"short").is_err());
    }

    #[test]
    fn bucketed_index_finds_every_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("t.redb")).unwrap();
        // Ids in the first bucket, far later ones, and another region's.
        let first = REGION_BASE + 1;
        let ids = [
            first,
            first + 1,
            first + 511,
            first + 512,
            first + 5_000,
            first + 1_000_000,
            2 * REGION_BASE + 3,
        ];
        for (i, id) in ids.iter().enumerate() {
            let vm = if i % 2 == 0 { 7 } else { 8 };
            store
                .insert(
                    "EmsEvent",
                    *id,
                    attrs(&[
                        ("vm_or_template_id", AttrValue::Int(vm)),
                        ("host_id", AttrValue::Int(70)),
                        ("event_type", AttrValue::str("E")),
                    ]),
                )
                .unwrap();
        }
        // A VM (not bucketed: VmOrTemplate's host_id is a has-many).
        store
            .insert("Vm", first, attrs(&[("host_id", AttrValue::Int(70))]))
            .unwrap();
        let found = |class: &str, attr: &str, v: i64| -> Vec<i64> {
            let mut ids: Vec<i64> = store
                .find_by(class, attr, &AttrValue::Int(v))
                .iter()
                .map(|r| r.id)
                .collect();
            ids.sort_unstable();
            ids
        };
        let want = |pick: &dyn Fn(usize) -> bool| -> Vec<i64> {
            let mut w: Vec<i64> = (0..ids.len())
                .filter(|i| pick(*i))
                .map(|i| ids[i])
                .collect();
            w.sort_unstable();
            w
        };
        assert_eq!(
            found("EventStream", "vm_or_template_id", 7),
            want(&|i| i % 2 == 0)
        );
        assert_eq!(
            found("EventStream", "vm_or_template_id", 8),
            want(&|i| i % 2 == 1)
        );
        assert_eq!(
            found("EventStream", "vm_or_template_id", 9),
            Vec::<i64>::new()
        );
        assert_eq!(found("EventStream", "host_id", 70), want(&|_| true));
        assert_eq!(found("VmOrTemplate", "host_id", 70), vec![first]);
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        // The keys: by bucket before value, so one bucket's entries for
        // different VMs sit together.
        let k = |v: &[u8], id| index_entry_key("EventStream", "vm_or_template_id", v, id);
        assert!(k(b"9", first) < k(b"1", first + 512));
        assert!(k(b"1", first + 512) < k(b"9", first + 512));
        assert_eq!(
            index_entry_id(&k(b"9", first + 5_000)).unwrap(),
            first + 5_000
        );
    }

    #[test]
    fn tuple_keyed_index_of_older_files_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let store = RedbStore::open(&path).unwrap();
        let e = store
            .create(
                "EmsEvent",
                attrs(&[
                    ("dedup_key", AttrValue::str("k1")),
                    ("event_type", AttrValue::str("E")),
                ]),
            )
            .unwrap();
        // As a version-1 file: the tuple-keyed table, no flat one.
        let txn = store.db.begin_write().unwrap();
        txn.delete_table(ATTR_INDEX).unwrap();
        {
            let mut old = txn.open_table(OLD_ATTR_INDEX).unwrap();
            old.insert(("EventStream", "dedup_key", b"\"k1\"".as_slice(), e.id), ())
                .unwrap();
        }
        txn.open_table(META)
            .unwrap()
            .insert(ATTR_INDEX_VERSION_KEY, 1)
            .unwrap();
        txn.commit().unwrap();
        drop(store);
        let store = reopened_consistent(&path);
        let found = store.find_by("EventStream", "dedup_key", &AttrValue::str("k1"));
        assert_eq!(found.len(), 1);
        let txn = store.db.begin_read().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| redb::TableHandle::name(&t).to_string())
            .collect();
        assert!(!names.contains(&"attr_index".to_string()), "{names:?}");
        assert!(names.contains(&"attr_index_v2".to_string()), "{names:?}");
    }

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
