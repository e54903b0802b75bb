//! [`ServedStore`] on the redb store: what the REST API reaches it
//! through, each call the store's own.

use crate::{BackupReport, RedbStore};
use automate_vmdb::health::StoreHealth;
use automate_vmdb::served::ServedStore;
use automate_vmdb::{Savepoint, Schedule, StoreError, StoredObject};
use std::path::Path;
use std::sync::Arc;

impl ServedStore for RedbStore {
    fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
        <RedbStore as automate_vmdb::ObjectStore>::load(self, class, id)
    }

    fn begin_unit(&self) {
        RedbStore::begin_unit(self);
    }

    fn savepoint(&self) -> Option<Savepoint> {
        RedbStore::savepoint(self)
    }

    fn rollback_to(&self, sp: Savepoint) {
        RedbStore::rollback_to(self, sp);
    }

    fn release_savepoint(&self, sp: Savepoint) {
        RedbStore::release_savepoint(self, sp);
    }

    fn commit_unit(&self) -> Result<(), StoreError> {
        RedbStore::commit_unit(self, |_| Ok(()))
    }

    fn abort_unit(&self) {
        RedbStore::abort_unit(self);
    }

    fn scheduled_work(&self) -> Arc<dyn Schedule> {
        Arc::new(self.schedule())
    }

    fn health(&self) -> Arc<StoreHealth> {
        RedbStore::health(self)
    }

    fn path(&self) -> &Path {
        RedbStore::path(self)
    }

    fn backup(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        RedbStore::backup(self, dest)
    }
}
