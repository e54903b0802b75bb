//! What a server needs of its durable store beyond
//! [`ObjectStore`], backend-neutral: the [`ServedStore`] trait (pages,
//! committing and aborting the calling thread's unit of work, the scheduled
//! work, the file's health, a backup) and [`BackupReport`]. The REST API
//! (`automate-api`) holds its store as `Arc<dyn ServedStore>`, so it does
//! not name the backend; the redb store implements it.

use crate::health::StoreHealth;
use crate::page::Pages;
use crate::{ObjectStore, Schedule, StoreError};
use std::path::Path;
use std::sync::Arc;

/// What a backup copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackupReport {
    /// Objects in the copy.
    pub objects: u64,
    /// Scheduled-work items in the copy.
    pub scheduled: u64,
    /// The copy's size in bytes.
    pub bytes: u64,
}

/// A durable store as a server uses it: an [`ObjectStore`] (objects,
/// [`ObjectStore::load`], and the savepoints of the calling thread's unit,
/// [`ObjectStore::savepoint`]) with [`Pages`] and what follows. The
/// unit-of-work calls act on the calling thread's unit (see
/// [`UnitOfWork`](crate::UnitOfWork)); the engine's writes on that thread
/// land in it.
pub trait ServedStore: ObjectStore + Pages + std::fmt::Debug {
    /// Starts a unit of work on the calling thread (a unit already open is
    /// kept).
    fn begin_unit(&self);

    /// Commits the calling thread's unit in one durable transaction (all of
    /// it on disk when this returns, or none of it); the unit is closed
    /// either way.
    fn commit_unit(&self) -> Result<(), StoreError>;

    /// Discards the calling thread's unit.
    fn abort_unit(&self);

    /// The store's scheduled work (requests, retries, queued events).
    fn scheduled_work(&self) -> Arc<dyn Schedule>;

    /// The health of the store's file.
    fn health(&self) -> Arc<StoreHealth>;

    /// The store's file.
    fn path(&self) -> &Path;

    /// Writes a consistent copy of the store's last commit to `dest`.
    fn backup(&self, dest: &Path) -> Result<BackupReport, StoreError>;
}
