//! What a server needs of its durable store beyond
//! [`ObjectStore`](crate::ObjectStore), backend-neutral: the [`ServedStore`] trait (pages
//! and single objects, the calling thread's unit of work, the scheduled
//! work, the file's health, a backup) and [`BackupReport`]. The REST API
//! (`automate-api`) holds its store as `Arc<dyn ServedStore>`, so it does
//! not name the backend; the redb store implements it.

use crate::health::StoreHealth;
use crate::page::Pages;
use crate::{Savepoint, Schedule, StoreError, StoredObject};
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

/// A durable store as a server uses it. The unit-of-work calls act on the
/// calling thread's unit (see [`UnitOfWork`](crate::UnitOfWork)); the
/// engine's writes on that thread land in it.
pub trait ServedStore: Pages + std::fmt::Debug {
    /// One object by base class and id, decoded from the last commit.
    fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError>;

    /// Starts a unit of work on the calling thread (a unit already open is
    /// kept).
    fn begin_unit(&self);

    /// A point in the calling thread's unit to come back to; `None`
    /// without an open unit.
    fn savepoint(&self) -> Option<Savepoint>;

    /// Discards the unit's writes since `sp`, and ends `sp`.
    fn rollback_to(&self, sp: Savepoint);

    /// Ends `sp`, keeping the writes made since.
    fn release_savepoint(&self, sp: Savepoint);

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
