//! The unit-of-work seam of the event pipeline's workers, backend-neutral:
//! the [`UnitOfWork`] trait, which opens a [`PipelineUnit`] (an explicit
//! handle: an [`ObjectStore`] view whose writes it buffers, handed over
//! for a durable commit with the queue's acks, then landed) and
//! [`Committing`], the answer of a commit under way.
//!
//! The unit is a value passed down, not thread-local state: whoever holds
//! its view ([`PipelineUnit::objects`], which the worker makes its engine's
//! store for as long as it is busy) writes into it; the store itself never
//! buffers.

use crate::health::StoreHealth;
use crate::{ObjectStore, StoreError, WorkItem};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::SystemTime;

/// What a commit answers: the ids its extra work made (scheduled items),
/// and when the writer was done with it (on disk, or failed).
pub type CommitAnswer = (Result<Vec<u64>, StoreError>, SystemTime);

/// What is committed with a unit's writes, in the same durable
/// transaction.
#[derive(Debug, Default)]
pub struct HandOver {
    /// Scheduled work to write (the retries the deliveries asked for).
    pub schedule: Vec<(WorkItem, SystemTime)>,
    /// Queue ids to complete: the acks of the batch whose writes these are
    /// (a queue kept in the store's own file; see
    /// [`EventQueue`](crate::event_queue::EventQueue)).
    pub acks: Vec<u64>,
}

/// A unit handed over for its commit ([`PipelineUnit::hand_over`]), not yet
/// known to be on disk.
#[derive(Debug)]
pub struct Committing {
    answer: Receiver<CommitAnswer>,
}

impl Committing {
    /// A commit under way and the sender its writer answers on (dropping
    /// the sender unanswered reads as "the writer has stopped").
    pub fn pair() -> (Sender<CommitAnswer>, Committing) {
        let (tx, answer) = channel();
        (tx, Committing { answer })
    }

    /// Waits until the job is on disk (its ids) or has failed.
    pub fn wait(self) -> Result<Vec<u64>, StoreError> {
        self.wait_timed().0
    }

    /// [`Committing::wait`], with when the writer was done with the job
    /// (which may be well before this call returns: the caller went on).
    pub fn wait_timed(self) -> CommitAnswer {
        self.answer.recv().unwrap_or_else(|_| {
            (
                Err(StoreError::Backend("the store's writer has stopped".into())),
                SystemTime::now(),
            )
        })
    }
}

/// A worker's open unit of work ([`UnitOfWork::begin_unit`]): an
/// [`ObjectStore`] view whose writes are buffered in it
/// ([`PipelineUnit::objects`]), handed to the store's writer batch after
/// batch ([`PipelineUnit::hand_over`]). Dropping it discards what it holds
/// (its writes not handed over, and what its reads kept of hand-overs not
/// yet landed).
pub trait PipelineUnit: Send {
    /// The unit's objects: reads see its writes (then the store's),
    /// [`ObjectStore::create`] and [`ObjectStore::update`] are buffered in
    /// it, each item behind a savepoint ([`ObjectStore::savepoint`]
    /// answers `Some` here). [`ObjectStore::create_now`] is not buffered.
    /// A clone must not outlive the unit.
    fn objects(&self) -> Arc<dyn ObjectStore>;

    /// Hands the unit's writes, with `with`, to the writer for one durable
    /// transaction and returns at once; the unit stays open, and its reads
    /// keep seeing what was handed over until [`PipelineUnit::landed`].
    /// Hand-overs of one unit are committed in order.
    fn hand_over(&self, with: HandOver) -> Committing;

    /// The oldest hand-over of this unit is on disk.
    fn landed(&self);
}

/// A worker's units of work on a store, committed durably by its writer.
/// A worker opens one ([`UnitOfWork::begin_unit`]) when work arrives and
/// keeps it while it is busy: once per batch it hands the unit over, with
/// the batch's acks, and is told when that landed; the writes between are
/// the engine's and the handler's own, through [`PipelineUnit::objects`],
/// each event behind a savepoint of that view.
pub trait UnitOfWork: Send + Sync {
    /// Opens a unit of work: its writes are buffered until handed over; its
    /// reads see them.
    fn begin_unit(&self) -> Box<dyn PipelineUnit>;

    /// The health of the store's file (a full disk, a failed store).
    fn health(&self) -> Arc<StoreHealth>;

    /// Stops the writer once what was handed over is written (at
    /// shutdown); later hand-overs fail.
    fn close(&self);
}
