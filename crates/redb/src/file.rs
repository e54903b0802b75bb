//! How the store's redb file is opened, checked and copied: read-write
//! through [`GuardedFile`] (a full disk waits, see [`super::health`]),
//! read-only for the commands that only read (no repair, no write, the
//! bytes stay as they are), panics inside redb turned into
//! [`StoreError::Damaged`] naming the file ([`guard`]), and the consistent
//! copy of `automate db backup` ([`backup`]). It does not know the store
//! built on it (`store` calls it; the integrity check of `automate db
//! check`, which opens the store, is `check`).
//!
//! **Backup.** The copy is *logical*: one read transaction (a snapshot of
//! the last commit, which the writer never changes under it) is read table
//! by table into a new redb file, committed durably, and renamed into
//! place. It runs beside a working writer (a read transaction never blocks
//! it), gives a compact file that opens without repair, and proves every
//! page it copies readable on the way. A raw copy of the file's bytes under
//! a read transaction would not be consistent (the header and the free
//! pages change with every commit), and a redb savepoint only keeps old
//! pages inside the same file, which does not help when that file is lost.

use super::backend;
use super::health::{GuardedFile, StoreHealth};
use super::schedule::{SCHEDULED, SCHEDULED_BY_ID, SCHEDULED_META};
use super::schema::{ATTR_INDEX, EMS_REFS, META, OBJECTS, SEQUENCES};
use automate_vmdb::{panic_text, BackendError, StoreError};
use redb::{
    Database, Key, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, TableDefinition,
    TableError, Value, WriteTransaction,
};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

/// The redb database of a store: writable, or opened read-only.
#[derive(Clone)]
pub(crate) enum Db {
    Rw(Arc<Database>),
    Ro(Arc<ReadOnlyDatabase>, Arc<Path>),
}

/// A write asked of a store opened read-only, or redb's refusal.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BeginWriteError {
    #[error("{0} is open read-only (a read-only command does not write)")]
    ReadOnly(String),
    #[error(transparent)]
    Redb(#[from] redb::TransactionError),
}

impl Db {
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Db::Rw(db) => db.begin_read(),
            Db::Ro(db, _) => db.begin_read(),
        }
    }

    pub(crate) fn begin_write(&self) -> Result<WriteTransaction, BeginWriteError> {
        match self {
            Db::Rw(db) => Ok(db.begin_write()?),
            Db::Ro(_, path) => Err(BeginWriteError::ReadOnly(path.display().to_string())),
        }
    }

    /// The writable database, `None` when read-only.
    pub(crate) fn writable(&self) -> Option<Arc<Database>> {
        match self {
            Db::Rw(db) => Some(db.clone()),
            Db::Ro(..) => None,
        }
    }
}

/// Opens (creating if needed) `path` for writing, through [`GuardedFile`].
pub(crate) fn open_guarded(
    path: &Path,
    cache_bytes: usize,
    health: Arc<StoreHealth>,
) -> Result<Database, StoreError> {
    let cannot = |error: BackendError| StoreError::Open {
        path: path.display().to_string(),
        error,
    };
    let file = GuardedFile::open(path, health).map_err(|e| cannot(BackendError::new(e)))?;
    guard(path, || {
        Database::builder()
            .set_cache_size(cache_bytes)
            .create_with_backend(file)
            .map_err(|e| cannot(BackendError::new(e)))
    })
}

/// Opens `path` read-only: nothing is written, and a file that needs a
/// repair (its last writer crashed) is refused rather than repaired.
pub(crate) fn open_read_only(path: &Path) -> Result<ReadOnlyDatabase, StoreError> {
    let p = path.display().to_string();
    guard(path, || {
        redb::Builder::new()
            .open_read_only(path)
            .map_err(|e| match e {
                redb::DatabaseError::RepairAborted => StoreError::NeedsRepair(p.clone()),
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(p.clone()),
                e => StoreError::OpenReadOnly {
                    path: p.clone(),
                    error: BackendError::new(e),
                },
            })
    })
}

thread_local! {
    /// Inside [`guard`] on this thread: a panic is caught, not printed.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
    /// The message of the last panic caught by [`guard`] on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Keeps panics inside [`guard`] off stderr (they become errors); every
/// other panic goes to the hook that was there before.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) > 0 {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let message = panic_text(info.payload());
                CAUGHT.with(|c| *c.borrow_mut() = Some(format!("{message}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, a call into redb on the store at `path`; a panic inside it
/// (redb panics on some damaged pages) becomes [`StoreError::Damaged`]
/// naming the file, and is not printed.
pub fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    install_hook();
    GUARDED.with(|g| g.set(g.get().saturating_add(1)));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get().saturating_sub(1)));
    out.unwrap_or_else(|_| {
        let detail = CAUGHT
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| "redb panicked".into());
        Err(StoreError::Damaged {
            path: path.display().to_string(),
            detail,
        })
    })
}

/// Copies every row of one table (when the source has it).
fn copy_table<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let src = match from.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(backend(e)),
    };
    let mut dst = to.open_table(def).map_err(backend)?;
    let mut n = 0u64;
    for entry in redb::ReadableTable::iter(&src).map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        dst.insert(k.value(), v.value()).map_err(backend)?;
        n += 1;
    }
    Ok(n)
}

/// What `backup` copied (defined beside the
/// [`ServedStore`](automate_vmdb::served::ServedStore) trait).
pub use automate_vmdb::served::BackupReport;

/// Writes a consistent copy of the store read through `db` (its last
/// commit) to `dest` (see the module docs): into a temporary file beside
/// `dest`, committed durably, then renamed over it. `dest` may not be the
/// store itself.
pub(crate) fn backup(source: &Path, db: &Db, dest: &Path) -> Result<BackupReport, StoreError> {
    let fail = |what: &'static str, error: BackendError| StoreError::Backup {
        dest: dest.display().to_string(),
        what,
        error,
    };
    if same_file(source, dest) {
        return Err(StoreError::BackupOfItself {
            dest: dest.display().to_string(),
        });
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".automate-backup-")
        .suffix(".redb")
        .tempfile_in(&dir)
        .map_err(|e| fail("creating a temporary file", BackendError::new(e)))?;
    let report = guard(source, || {
        let snapshot = db.begin_read().map_err(backend)?;
        // A small page cache: the copy is written once, never read back.
        let out = Database::builder()
            .set_cache_size(16 << 20)
            .create(tmp.path())
            .map_err(|e| fail("creating", BackendError::new(e)))?;
        let txn = out.begin_write().map_err(backend)?;
        let objects = copy_table(&snapshot, &txn, OBJECTS)?;
        copy_table(&snapshot, &txn, SEQUENCES)?;
        copy_table(&snapshot, &txn, EMS_REFS)?;
        copy_table(&snapshot, &txn, ATTR_INDEX)?;
        copy_table(&snapshot, &txn, META)?;
        let scheduled = copy_table(&snapshot, &txn, SCHEDULED)?;
        copy_table(&snapshot, &txn, SCHEDULED_BY_ID)?;
        copy_table(&snapshot, &txn, SCHEDULED_META)?;
        txn.commit().map_err(backend)?;
        out.close()
            .map_err(|e| fail("closing", BackendError::new(e)))?;
        Ok(BackupReport {
            objects,
            scheduled,
            bytes: 0,
        })
    })?;
    let file = tmp
        .persist(dest)
        .map_err(|e| fail("renaming into place", BackendError::new(e.error)))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(BackupReport { bytes, ..report })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_guard_is_an_error_naming_the_file() {
        let out: Result<(), StoreError> = guard(Path::new("/x/s.redb"), || panic!("page 7"));
        match out {
            Err(StoreError::Damaged { path, detail }) => {
                assert_eq!(path, "/x/s.redb");
                assert!(detail.starts_with("page 7 at "), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // Errors and values pass through.
        assert_eq!(guard(Path::new("s"), || Ok(3)).unwrap(), 3);
    }

    #[test]
    fn an_open_that_fails_keeps_its_error_and_prints_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("s.redb");
        let health = Arc::new(StoreHealth::new(&path));
        let err = open_guarded(&path, 1 << 20, health).map(drop).unwrap_err();
        let StoreError::Open { error, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(
            err.to_string(),
            format!("object store: cannot open {}: {error}", path.display())
        );
        assert!(std::error::Error::source(&err).is_none());
    }

    #[test]
    fn backup_refuses_the_store_itself_and_copies_every_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = crate::RedbStore::open(&path).unwrap();
        automate_vmdb::ObjectStore::create(&store, "Vm", Default::default()).unwrap();
        store
            .schedule()
            .schedule(
                &automate_vmdb::WorkItem::new("k", serde_json::Value::Null),
                std::time::SystemTime::now(),
            )
            .unwrap();
        let refused = store.backup(&path).unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "object store: backup to {}: refused: that is the store itself",
                path.display()
            )
        );
        let dest = dir.path().join("b.redb");
        let r = store.backup(&dest).unwrap();
        assert_eq!((r.objects, r.scheduled), (1, 1));
        let copy = crate::RedbStore::open_read_only(&dest).unwrap();
        assert_eq!(copy.count().unwrap(), 1);
        assert!(copy.verify().unwrap().is_ok());
        assert_eq!(copy.schedule().len().unwrap(), 1);
    }
}
