//! Dead letters, backend-neutral: the provider events whose handling
//! failed too many times, kept aside with their last error so an operator
//! can look at them and send them through again
//! (`automate events dead-letter list|retry`, `GET|POST /api/dead_letters`).
//!
//! Two implementations stand behind [`DeadLetters`]: the embedded mode's
//! `DeadLetterEvent` rows (written by the pipeline's workers after
//! `MAX_EVENT_ATTEMPTS`, in the same commit as the event's ack;
//! `automate_events::pipeline::StoredDeadLetters`) and cluster mode's
//! JetStream dead-letter stream (an event delivered `max_deliver` times
//! without an ack). Retrying puts the stored provider event back on the
//! event queue as a new event (its attempts start again at one) and
//! removes, or marks, the dead letter.

use crate::event_queue::{Provider, ProviderEvent};
use crate::StoreError;
use serde::Serialize;

/// One dead-lettered event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Its id among the dead letters (a `DeadLetterEvent` row's id, a
    /// sequence of the dead-letter stream): what [`DeadLetters::retry`]
    /// takes.
    pub id: u64,
    /// The provider that sent the event.
    pub provider: Provider,
    /// The event as caught.
    pub event: ProviderEvent,
    /// Why its last handling failed (empty when the backend does not know:
    /// an event JetStream gave up redelivering).
    pub error: String,
    /// How many times it was handled (delivered).
    pub attempts: u32,
    /// When it was dead-lettered (ISO 8601 UTC).
    pub dead_lettered_on: String,
}

/// The dead letters of a backend: list them, send them through again.
pub trait DeadLetters: Send + Sync + std::fmt::Debug {
    /// Up to `limit` dead letters not yet retried, oldest first.
    fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError>;

    /// Puts the dead letters `ids` back on the event queue (each a new
    /// event, its attempts starting again) and takes them off the list;
    /// the ids retried, in order (an unknown id, or one already retried,
    /// is skipped).
    fn retry(&self, ids: &[u64]) -> Result<Vec<u64>, StoreError>;

    /// [`DeadLetters::retry`] of every dead letter listed now.
    fn retry_all(&self) -> Result<Vec<u64>, StoreError> {
        let ids: Vec<u64> = self.list(usize::MAX)?.iter().map(|d| d.id).collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        self.retry(&ids)
    }
}
