//! [`UnitOfWork`] on the redb store: [`GroupUnits`], the calling thread's
//! unit of work ([`RedbStore::begin_unit`]) handed to the group-commit
//! writer ([`GroupCommit`]) with the queue's acks and the retries, in one
//! durable transaction. What the event pipeline's workers write through.

use crate::{GroupCommit, GroupWriter, RedbStore};
use automate_vmdb::health::StoreHealth;
use automate_vmdb::{Committing, HandOver, UnitOfWork};
use std::sync::{Arc, Mutex};

/// The redb store's units of work, committed by its group-commit writer.
#[derive(Debug)]
pub struct GroupUnits {
    store: Arc<RedbStore>,
    group: GroupCommit,
    /// Stopped by [`UnitOfWork::close`].
    writer: Mutex<Option<GroupWriter>>,
}

impl GroupUnits {
    /// Units of work on `store`, committed through `group`, whose writer
    /// thread `writer` is stopped by [`UnitOfWork::close`].
    pub fn new(store: Arc<RedbStore>, group: GroupCommit, writer: GroupWriter) -> GroupUnits {
        GroupUnits {
            store,
            group,
            writer: Mutex::new(Some(writer)),
        }
    }
}

impl UnitOfWork for GroupUnits {
    fn begin_unit(&self) {
        self.store.begin_unit();
    }

    fn hand_over(&self, with: HandOver) -> Committing {
        let HandOver { schedule, acks } = with;
        self.group.submit(self.store.hand_over(), move |b| {
            for (item, run_at) in &schedule {
                b.schedule(item, *run_at)?;
            }
            b.complete_all(&acks)?;
            Ok(Vec::new())
        })
    }

    fn landed(&self) {
        self.store.landed();
    }

    fn abort_unit(&self) {
        self.store.abort_unit();
    }

    fn health(&self) -> Arc<StoreHealth> {
        self.store.health()
    }

    fn close(&self) {
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = writer {
            w.stop();
        }
    }
}
