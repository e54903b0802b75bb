//! [`ServedStore`] on the redb store: what the REST API reaches it
//! through beyond its `ObjectStore`, each call the store's own; its units
//! of work are [`UnitStore`] handles.

use crate::{BackupReport, RedbStore, UnitStore};
use automate_vmdb::health::StoreHealth;
use automate_vmdb::served::{ServedStore, ServedUnit};
use automate_vmdb::{ObjectStore, Schedule, StoreError};
use std::path::Path;
use std::sync::Arc;

/// A server's unit of work on the redb store: its [`UnitStore`].
#[derive(Debug)]
struct RedbServedUnit(Arc<UnitStore>);

impl ServedUnit for RedbServedUnit {
    fn objects(&self) -> Arc<dyn ObjectStore> {
        self.0.clone()
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.0.commit(|_| Ok(()))
    }
}

impl ServedStore for RedbStore {
    fn begin_unit(self: Arc<Self>) -> Box<dyn ServedUnit> {
        Box::new(RedbServedUnit(RedbStore::begin_unit(&self)))
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
