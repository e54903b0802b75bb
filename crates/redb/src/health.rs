//! The health of the object store's file, and the storage backend that
//! keeps a full disk from wedging it.
//!
//! redb latches the first I/O error of a file: every later call answers
//! "Previous I/O error occurred" until the database is closed and opened
//! again. A full disk (`ENOSPC`, or a quota's `EDQUOT`) is the one such
//! error that goes away on its own, so the store's file is opened through
//! [`GuardedFile`], a [`StorageBackend`] over redb's own `FileBackend` that
//! never lets redb see it: a write or a resize the disk has no room for is
//! tried again every [`DISK_FULL_RETRY`] until it succeeds. Meanwhile the
//! writer waits (inside its commit, which keeps every write of the commit
//! as it was: nothing is lost or half-written), readers go on, and
//! [`StoreHealth`] says `disk_full` with the error, so the pipeline stops
//! taking events (the `http` catcher answers 503, the committer stops
//! reading the catchers' channel) and `/api/health` answers 503. When space
//! returns, the waiting write succeeds, the commit completes, the health
//! turns `ok` and everything resumes where it stopped.
//!
//! A process that must end while the disk is full (SIGTERM) calls
//! [`StoreHealth::give_up`]: the waiting write then fails, redb latches the
//! error and every commit fails fast, so a drain ends instead of waiting
//! for space. Nothing acknowledged is lost: an event is acknowledged only
//! after its durable commit, and the file stays at its last commit.
//!
//! Every other write or sync error (`EIO`, a failed `fsync`) is passed to
//! redb and marks the store `failed`: after a failed `fsync` the kernel may
//! have dropped the dirty pages, so trying again could report success for
//! data that never reached the disk (PostgreSQL stops for the same
//! reason). Only a new open (a restart of the process, which recovers the
//! file from its last commit) makes such a store usable again; `automate
//! run` ends with an error saying so. A panic inside redb caught at the
//! store's boundary ([`crate::RedbStore::guard`], a damaged page)
//! marks it `failed` too.

use redb::backends::FileBackend;
use redb::StorageBackend;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use automate_vmdb::health::{StoreFault, StoreHealth};

/// How often a write the disk had no room for is tried again.
pub const DISK_FULL_RETRY: Duration = Duration::from_millis(200);

/// Whether `e` says the disk (or the user's quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

/// redb's file backend, waiting out a full disk (see the module docs).
#[derive(Debug)]
pub struct GuardedFile {
    inner: FileBackend,
    health: Arc<StoreHealth>,
}

impl GuardedFile {
    /// Opens (creating if needed) `path` for reading and writing.
    pub fn open(path: &Path, health: Arc<StoreHealth>) -> std::io::Result<GuardedFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let inner = FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(GuardedFile { inner, health })
    }

    /// Runs a write, again and again while the disk is full.
    fn write_through(
        &self,
        op: &str,
        mut f: impl FnMut() -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        loop {
            match f() {
                Ok(()) => {
                    self.health.wrote();
                    return Ok(());
                }
                Err(e) if is_disk_full(&e) && !self.health.gave_up() => {
                    self.health.disk_full(op, &e);
                    std::thread::sleep(DISK_FULL_RETRY);
                }
                Err(e) => {
                    self.health.fail(format!(
                        "{op} failed: {e}; the store takes no more writes until the process is restarted (the file is recovered from its last commit)"
                    ));
                    return Err(e);
                }
            }
        }
    }
}

impl StorageBackend for GuardedFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.write_through("resizing the file", || self.inner.set_len(len))
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        // Never tried again: see the module docs.
        self.inner.sync_data().inspect_err(|e| {
            self.health.fail(format!(
                "fsync failed: {e}; the store takes no more writes until the process is restarted (the file is recovered from its last commit)"
            ))
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.write_through("writing", || self.inner.write(offset, data))
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_waits_and_clears_failed_stays() {
        let h = StoreHealth::new("x.redb");
        assert!(h.is_ok() && h.fault().is_none());
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(is_disk_full(&full));
        assert!(is_disk_full(&std::io::Error::from_raw_os_error(28)));
        h.disk_full("writing", &full);
        assert!(h.is_disk_full());
        let f = h.fault().unwrap();
        assert_eq!(f.state, "disk_full");
        assert_eq!(f.path, "x.redb");
        h.wrote();
        assert!(h.is_ok() && h.fault().is_none());
        h.fail("fsync failed");
        h.disk_full("writing", &full);
        h.wrote();
        assert!(h.is_failed());
        assert_eq!(h.fault().unwrap().state, "failed");
    }
}
