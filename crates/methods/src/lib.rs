//! Methods: the Rhai script runner with the `evm` API, and the native
//! builtins of the ManageIQ domain's event flow.
//!
//! * [`rhai_runner`]: [`RhaiRunner`], the engine's [`ScriptRunner`] for
//!   `language: rhai` methods (compile cache, sandbox, embedded methods);
//! * [`evm`]: the `evm` object scripts see (ManageIQ's `$evm`) and the bridge
//!   from Rhai natives to the running [`Runtime`](automate_engine::Runtime);
//! * [`service_model`]: stored objects as ManageIQ's service models
//!   (associations, computed attributes, `NoMethodError`) and
//!   `evm.vmdb(...)` queries (`where`, `order`, `limit`, `count`);
//! * [`builtins`]: [`event_builtins`], the `System/event_handlers` and
//!   `System/Process` builtins;
//! * [`operations`]: VM operations (`vm.stop()`, `vm.migrate(host)`...)
//!   queued as provider operations;
//! * [`outbound`]: what a method does to the world (`send_email`,
//!   `create_notification`, `evm.http`, `create_automation_request`) and
//!   `field_timeout`, `ansible_stats_vars`, `set_stats`;
//! * [`functions`]: what the engine registers for scripts (Rhai metadata);
//! * [`process`]: `parse_provider_category` and `parse_automation_request`
//!   with ManageIQ's tables;
//! * [`events`]: raising generic events (`MiqEvent.raise_evm_event`),
//!   which runs the engine's [`Policies`] (`control`'s, given to
//!   [`with_methods`]; this module never names `control`);
//! * [`execute`]: `evm.execute(name, ...)`, ManageIQ's `$evm.execute`
//!   dispatcher table;
//! * [`tags`]: tags, custom attributes and request options on stored
//!   objects (`vm.tag_assign`, `vm.custom_set`, `request.get_option`, ...).
//!
//! `docs/porting-ruby-methods.md` maps `$evm` to `evm` for authors.
//!
//! [`ScriptRunner`]: automate_engine::ScriptRunner
//! [`Policies`]: automate_engine::Policies

#![deny(missing_docs)]

pub mod builtins;
pub mod events;
pub mod evm;
pub mod execute;
pub mod functions;
pub mod operations;
pub mod outbound;
pub mod process;
pub mod rhai_runner;
pub mod service_model;
pub mod services;
pub mod tags;

pub use builtins::event_builtins;
pub use rhai_runner::{CompileError, Compiled, RhaiLimits, RhaiRunner};

use automate_engine::{Engine, Policies};
use std::sync::Arc;

/// `engine` with the event builtins, `policies` (what a raised event runs:
/// `control`'s) and a [`RhaiRunner`]
/// with default limits, whose cache is
/// filled from the engine's datastore. Returns the runner too, for
/// `validate` ([`RhaiRunner::precompile`]) and reloads.
pub fn with_methods(engine: Engine, policies: Arc<dyn Policies>) -> (Engine, Arc<RhaiRunner>) {
    with_methods_and_limits(engine, RhaiLimits::default(), policies)
}

/// [`with_methods`] with explicit sandbox limits.
pub fn with_methods_and_limits(
    engine: Engine,
    limits: RhaiLimits,
    policies: Arc<dyn Policies>,
) -> (Engine, Arc<RhaiRunner>) {
    let runner = Arc::new(RhaiRunner::with_limits(limits));
    runner.precompile(&engine.datastore().index());
    let engine = with_event_builtins(engine, policies).with_scripts(runner.clone());
    (engine, runner)
}

/// `engine` with the event builtins and `policies`, and no script runner:
/// what `automate demo` runs with.
pub fn with_event_builtins(engine: Engine, policies: Arc<dyn Policies>) -> Engine {
    engine
        .with_builtins(event_builtins())
        .with_policies(policies)
}
