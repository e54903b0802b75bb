//! The unit-of-work seam of the event pipeline's workers, backend-neutral:
//! the [`UnitOfWork`] trait (begin, hand the unit over for a
//! durable commit with the queue's acks, landed) and [`Committing`], the
//! answer of a commit under way.
//!
//! The unit is still the calling thread's (the redb store buffers each
//! thread's writes; the engine's `create`/`update` on that thread land in
//! it): the trait names the steps a worker takes, so the pipeline does not
//! name the backend, but it is not yet an explicit handle passed down.

use crate::health::StoreHealth;
use crate::{StoreError, WorkItem};
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

/// A unit handed over for its commit ([`UnitOfWork::hand_over`]), not yet
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

/// A worker's units of work on a store, committed durably by its writer.
/// The pipeline calls it once per batch (begin, hand over, landed); the
/// writes between are the engine's and the handler's own `ObjectStore`
/// calls on the same thread, each event behind a savepoint of that store
/// ([`ObjectStore::savepoint`](crate::ObjectStore::savepoint)).
pub trait UnitOfWork: Send + Sync {
    /// Starts a unit of work on the calling thread: its writes are buffered
    /// until handed over; its reads see them. A unit already open is kept.
    fn begin_unit(&self);

    /// Hands the unit's writes, with `with`, to the writer for one durable
    /// transaction and returns at once; the unit stays open, and its reads
    /// keep seeing what was handed over until [`UnitOfWork::landed`].
    /// Hand-overs of one thread are committed in order.
    fn hand_over(&self, with: HandOver) -> Committing;

    /// The oldest hand-over of the calling thread is on disk.
    fn landed(&self);

    /// Discards the calling thread's unit (and what its reads kept of
    /// hand-overs not yet landed).
    fn abort_unit(&self);

    /// The health of the store's file (a full disk, a failed store).
    fn health(&self) -> Arc<StoreHealth>;

    /// Stops the writer once what was handed over is written (at
    /// shutdown); later hand-overs fail.
    fn close(&self);
}
