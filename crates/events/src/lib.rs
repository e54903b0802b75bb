//! The event front end: what a provider's event bus delivers, how the
//! handler persists it and hands it to Automate, with ManageIQ's evm.log
//! lines (`Caught event`, `Processing EMS event`, `Delivering ... to
//! Automate`, `...Complete`).
//!
//! [`handler`] is the synchronous core: persist one provider event as an
//! `EmsEvent` (de-duplicated, VMs and hosts created on first sight) and
//! deliver `/System/Process/Event?...` to the engine. [`scenario`] holds the
//! seed's event scenario that `automate demo` plays.

#![deny(missing_docs)]

pub mod autotest;
pub mod catchers;
pub mod config;
pub mod dead_letters;
pub mod handler;
pub mod metrics;
pub mod pipeline;
pub mod queue;
pub mod replay;
pub mod scenario;
pub mod stream;
pub mod trace;
pub mod when;

pub use handler::{
    Delivered, EvmLog, FirstSight, HandleOutcome, Handler, HandlerError, StoredEvent,
};
pub use metrics::Metrics;

/// The provider and event types the queue carries; defined beside the
/// [`queue::EventQueue`] contract in `automate_vmdb::event_queue`, so the
/// backends implementing it need not depend on this crate.
pub use automate_vmdb::event_queue::{Provider, ProviderEvent};
