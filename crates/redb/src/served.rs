//! [`ServedStore`] on the redb store: what the REST API reaches it
//! through beyond its `ObjectStore`, each call the store's own.

use crate::{BackupReport, RedbStore};
use automate_vmdb::health::StoreHealth;
use automate_vmdb::served::ServedStore;
use automate_vmdb::{Schedule, StoreError};
use std::path::Path;
use std::sync::Arc;

impl ServedStore for RedbStore {
    fn begin_unit(&self) {
        RedbStore::begin_unit(self);
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
