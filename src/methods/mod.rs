//! Methods: the Rhai script runner with the `evm` API, and the native
//! builtins of the ManageIQ domain's event flow.
//!
//! * [`rhai_runner`]: [`RhaiRunner`], the engine's [`ScriptRunner`] for
//!   `language: rhai` methods (compile cache, sandbox, embedded methods);
//! * [`evm`]: the `evm` object scripts see (ManageIQ's `$evm`) and the bridge
//!   from Rhai natives to the running [`Runtime`](crate::engine::Runtime);
//! * [`builtins`]: [`event_builtins`], the `System/event_handlers` and
//!   `System/Process` builtins;
//! * [`events`]: raising generic events (`MiqEvent.raise_evm_event`).
//!
//! `docs/porting-ruby-methods.md` maps `$evm` to `evm` for authors.
//!
//! [`ScriptRunner`]: crate::engine::ScriptRunner

pub mod alloc;
pub mod builtins;
pub mod events;
pub mod evm;
pub mod rhai_runner;

pub use builtins::event_builtins;
pub use rhai_runner::{CompileError, RhaiLimits, RhaiRunner};

use crate::engine::{Builtins, Engine};
use std::sync::Arc;

/// `engine` with the event builtins, a [`RhaiRunner`] with default
/// limits, whose cache is filled from the engine's datastore, and the
/// requests' after-delivery hook ([`crate::requests::with_requests`]). Returns the
/// runner too, for `validate` ([`RhaiRunner::precompile`]) and reloads.
pub fn with_methods(engine: Engine) -> (Engine, Arc<RhaiRunner>) {
    with_methods_and_limits(engine, RhaiLimits::default())
}

/// [`with_methods`] with explicit sandbox limits.
pub fn with_methods_and_limits(engine: Engine, limits: RhaiLimits) -> (Engine, Arc<RhaiRunner>) {
    let runner = Arc::new(RhaiRunner::with_limits(limits));
    runner.precompile(&engine.datastore().index());
    let engine = crate::requests::with_requests(engine)
        .with_builtins(event_builtins())
        .with_scripts(runner.clone());
    (engine, runner)
}

/// The builtins `automate demo` runs with: the same as [`event_builtins`].
pub fn demo_builtins() -> Builtins {
    event_builtins()
}
