//! What a server needs of its durable store beyond
//! [`ObjectStore`], backend-neutral: the [`ServedStore`] trait (pages,
//! units of work as [`ServedUnit`] handles, the scheduled work, the file's
//! health, a backup) and [`BackupReport`]. The REST API
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

/// A server's open unit of work ([`ServedStore::begin_unit`]): an
/// [`ObjectStore`] view whose writes it buffers, committed by
/// [`ServedUnit::commit`]; dropping it discards them.
pub trait ServedUnit: Send {
    /// The unit's objects: reads see its writes (then the store's),
    /// [`ObjectStore::create`] and [`ObjectStore::update`] are buffered in
    /// it, and [`ObjectStore::savepoint`] answers `Some`. A clone must not
    /// outlive the unit.
    fn objects(&self) -> Arc<dyn ObjectStore>;

    /// Commits the unit's writes in one durable transaction (all of it on
    /// disk when this returns, or none of it).
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A durable store as a server uses it: an [`ObjectStore`] (objects,
/// [`ObjectStore::load`]; its writes commit at once) with [`Pages`] and
/// what follows. Writes to commit together go through a unit of work
/// ([`ServedStore::begin_unit`]).
pub trait ServedStore: ObjectStore + Pages + std::fmt::Debug {
    /// Opens a unit of work on the store.
    fn begin_unit(self: Arc<Self>) -> Box<dyn ServedUnit>;

    /// The store's scheduled work (requests, retries, queued events).
    fn scheduled_work(&self) -> Arc<dyn Schedule>;

    /// The health of the store's file.
    fn health(&self) -> Arc<StoreHealth>;

    /// The store's file.
    fn path(&self) -> &Path;

    /// Writes a consistent copy of the store's last commit to `dest`.
    fn backup(&self, dest: &Path) -> Result<BackupReport, StoreError>;
}
