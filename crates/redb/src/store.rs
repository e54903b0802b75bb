//! The durable [`ObjectStore`] on a redb file: [`RedbStore`], how it is
//! opened, and its reads and writes (the store's own writes are one
//! transaction each; a unit of work's view, [`super::UnitStore`], buffers
//! them). See the [module docs](super) for the tables.

use super::cache::Shared;
use super::file::{self, BackupReport, Db};
use super::health::StoreHealth;
use super::schedule::RedbSchedule;
use super::schema::{self, seq_key, OBJECTS, SEQUENCES};
use super::unit::Unit;
use super::{backend, Batch};
use automate_core::value::{AttrValue, Attributes};
use automate_vmdb::query::Query;
use automate_vmdb::{
    base_class, AttrChange, ObjectStore, StoreError, StoredObject, VmdbRef, REGION_BASE,
};
use redb::{Database, ReadableTableMetadata};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// The region ids are allocated in when none is given.
const DEFAULT_REGION: i64 = 1;

pub(super) fn base_of(class: &str) -> Result<&'static str, StoreError> {
    base_class(class).ok_or_else(|| StoreError::UnknownClass(class.to_string()))
}

/// The durable [`ObjectStore`] on a redb file. See the module docs.
pub struct RedbStore {
    pub(super) db: Db,
    pub(super) path: PathBuf,
    /// Whether the file takes writes ([`super::health`]).
    pub(super) health: Arc<StoreHealth>,
    pub(super) region: i64,
    /// Object writes commit with [`redb::Durability::None`]: see
    /// [`RedbStore::with_relaxed_durability`].
    pub(super) relaxed: bool,
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("region", &self.region)
            .finish()
    }
}

impl RedbStore {
    /// Opens (creating if needed) the store at `path`, with ids in region 1.
    /// Creates every table, the scheduled-work ones included, so a new file
    /// is complete from its first commit. The page cache is
    /// `DEFAULT_CACHE_MB` (64) MiB (`AUTOMATE_DB_CACHE_MB` overrides it).
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
        schema::create_tables(&txn)?;
        txn.commit().map_err(backend)?;
        Ok(RedbStore {
            db: Db::Rw(Arc::new(db)),
            path,
            health,
            region,
            relaxed: false,
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

    /// Writes a consistent copy of the last commit to `dest` (into a
    /// temporary file beside it, committed durably, then renamed over it),
    /// beside running writers; `dest` may not be the store itself.
    pub fn backup(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        self.guard(|| file::backup(&self.path, &self.db, dest))
    }

    /// Object writes ([`ObjectStore::create`], [`ObjectStore::update`],
    /// [`RedbStore::write_batch`]) commit with [`redb::Durability::None`]:
    /// no fsync; they reach the disk with the next durable commit (any
    /// [`Schedule`](automate_vmdb::Schedule) change, which stays durable), or are lost by a crash
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
    pub fn schedule(&self) -> RedbSchedule {
        RedbSchedule::from_created(self.db.clone())
    }

    /// Runs `f` over one write transaction and commits it: every create,
    /// update, delete and scheduled-work change `f` makes becomes durable
    /// together, with one fsync, or (when `f` fails or panics) not at all.
    ///
    /// Only one write transaction runs at a time (others wait), so `f`
    /// should be short and must not call this store's (or its
    /// [`Schedule`](automate_vmdb::Schedule)'s) own write methods, which would wait for `f` forever;
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

    /// The next id of `base` in this store's region, unique across threads
    /// and never one the file holds: the counter starts from the file's
    /// sequence (and past its largest id of that base and region).
    pub(super) fn alloc_id(&self, base: &'static str) -> Result<i64, StoreError> {
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
}

/// The reads, through `unit` (an open unit of work) when given.
impl RedbStore {
    pub(super) fn find_in(
        &self,
        unit: Option<&Mutex<Unit>>,
        class: &str,
        id: i64,
    ) -> Result<Option<VmdbRef>, StoreError> {
        if base_class(class).is_none() {
            return Ok(None);
        }
        self.layered_in(unit, |r| r.find(class, id))
    }

    pub(super) fn attribute_in(
        &self,
        unit: Option<&Mutex<Unit>>,
        obj: &VmdbRef,
        name: &str,
    ) -> Result<Option<AttrValue>, StoreError> {
        if name.eq_ignore_ascii_case("id") {
            return Ok(Some(AttrValue::Int(obj.id)));
        }
        if base_class(&obj.class).is_none() {
            return Ok(None);
        }
        self.layered_in(unit, |r| r.attribute(obj, name))
    }

    pub(super) fn load_in(
        &self,
        unit: Option<&Mutex<Unit>>,
        class: &str,
        id: i64,
    ) -> Result<Option<StoredObject>, StoreError> {
        let base = base_of(class)?;
        self.layered_in(unit, |r| r.objects.load_obj(base, id))
            .map(|o| o.map(Arc::unwrap_or_clone))
    }

    pub(super) fn list_in(
        &self,
        unit: Option<&Mutex<Unit>>,
        class: &str,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        let base = base_of(class)?;
        self.layered_in(unit, |r| {
            let mut out = Vec::new();
            r.objects.scan(base, &mut |id, obj| {
                out.push(VmdbRef {
                    class: Arc::from(obj.class.as_str()),
                    id,
                });
            })?;
            Ok(out)
        })
    }

    pub(super) fn find_by_in(
        &self,
        unit: Option<&Mutex<Unit>>,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        if base_class(class).is_none() {
            return Ok(Vec::new());
        }
        self.layered_in(unit, |r| r.find_by(class, attr, value))
    }

    pub(super) fn query_in(
        &self,
        unit: Option<&Mutex<Unit>>,
        q: &Query,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        q.base()?;
        self.layered_in(unit, |r| r.query(q))
    }

    pub(super) fn count_in(
        &self,
        unit: Option<&Mutex<Unit>>,
        q: &Query,
    ) -> Result<usize, StoreError> {
        q.base()?;
        self.layered_in(unit, |r| r.count(q))
    }

    pub(super) fn find_by_ems_ref_in(
        &self,
        unit: Option<&Mutex<Unit>>,
        class: &str,
        ems_id: i64,
        ems_ref: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        self.layered_in(unit, |r| r.find_by_ems_ref(class, ems_id, ems_ref))
    }
}

/// The store's own reads see what is committed; its writes commit at once
/// (one transaction each). Writes to commit together go through a unit of
/// work ([`RedbStore::begin_unit`]); savepoints are a unit's, so the store
/// answers `None` (the trait's default).
impl ObjectStore for RedbStore {
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        self.find_in(None, class, id)
    }

    fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
        self.attribute_in(None, obj, name)
    }

    fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
        self.load_in(None, class, id)
    }

    fn list(&self, class: &str) -> Result<Vec<VmdbRef>, StoreError> {
        self.list_in(None, class)
    }

    fn create(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        base_of(class)?;
        self.write_batch(|b| b.create(class, attrs))
    }

    fn update(&self, obj: &VmdbRef, name: &str, value: AttrValue) -> Result<(), StoreError> {
        base_of(&obj.class)?;
        self.write_batch(|b| b.update(obj, name, value))
    }

    /// Read, changed and written in one write transaction: redb runs one
    /// at a time, so the change is atomic.
    fn modify(&self, obj: &VmdbRef, name: &str, change: &AttrChange) -> Result<(), StoreError> {
        base_of(&obj.class)?;
        self.write_batch(|b| b.modify(obj, name, change))
    }

    fn delete(&self, obj: &VmdbRef) -> Result<bool, StoreError> {
        RedbStore::delete(self, obj)
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        self.find_by_in(None, class, attr, value)
    }

    /// One point lookup in the provider-reference table (`ems_ref` or
    /// `uid_ems`).
    fn find_by_ems_ref(
        &self,
        class: &str,
        ems_id: i64,
        ems_ref: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        self.find_by_ems_ref_in(None, class, ems_id, ems_ref)
    }

    /// Candidates through the attribute index when a condition allows.
    fn query(&self, q: &Query) -> Result<Vec<VmdbRef>, StoreError> {
        self.query_in(None, q)
    }

    fn count(&self, q: &Query) -> Result<usize, StoreError> {
        self.count_in(None, q)
    }
}

pub(super) fn lowercase_keys(attrs: Attributes) -> Attributes {
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
