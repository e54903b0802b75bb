//! The durable event queue, as the pipeline sees it: the [`EventQueue`]
//! trait and its values, defined in [`automate_vmdb::event_queue`] (where
//! its contract is: enqueue durably, claim leased batches, ack after the
//! handling's writes commit, release, release leases at start, depth, and
//! idempotent re-handling through the handler's de-duplication key) and
//! re-exported here. The pipeline is handed an `Arc<dyn EventQueue>` by
//! its composition root (`automate run` gives it
//! `automate_redb::RedbEventQueue`); it never opens one.

pub use automate_vmdb::event_queue::{
    CaughtEvent, Claim, ClaimedEvent, EventQueue, EVENT_KIND, LEASE,
};
