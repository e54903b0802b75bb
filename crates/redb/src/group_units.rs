//! [`UnitOfWork`] on the redb store: [`GroupUnits`], whose units
//! ([`GroupUnit`], a [`UnitStore`] handle) are handed to the group-commit
//! writer ([`GroupCommit`]) with the queue's acks and the retries, in one
//! durable transaction. What the event pipeline's workers write through.

use crate::{GroupCommit, GroupWriter, RedbStore, UnitStore};
use automate_vmdb::health::StoreHealth;
use automate_vmdb::{Committing, HandOver, ObjectStore, PipelineUnit, UnitOfWork};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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

/// One open unit of work of [`GroupUnits`]: its [`UnitStore`], handed
/// over to the group-commit writer.
#[derive(Debug)]
pub struct GroupUnit {
    unit: Arc<UnitStore>,
    group: GroupCommit,
}

impl PipelineUnit for GroupUnit {
    fn objects(&self) -> Arc<dyn ObjectStore> {
        self.unit.clone()
    }

    fn hand_over(&self, with: HandOver) -> Committing {
        let HandOver { schedule, acks } = with;
        let prepared = match self.unit.hand_over() {
            Ok(p) => p,
            Err(e) => {
                let (done, committing) = Committing::pair();
                let _ = done.send((Err(e), SystemTime::now()));
                return committing;
            }
        };
        self.group.submit(prepared, move |b| {
            for (item, run_at) in &schedule {
                b.schedule(item, *run_at)?;
            }
            b.complete_all(&acks)?;
            Ok(Vec::new())
        })
    }

    fn landed(&self) {
        self.unit.landed();
    }
}

impl UnitOfWork for GroupUnits {
    fn begin_unit(&self) -> Box<dyn PipelineUnit> {
        Box::new(GroupUnit {
            unit: self.store.begin_unit(),
            group: self.group.clone(),
        })
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
