//! Methods: the Rhai script runner with the `evm` API, and the native
//! builtins of the ManageIQ domain's event flow.

use crate::engine::Builtins;

/// The builtins `automate demo` runs with.
pub fn demo_builtins() -> Builtins {
    Builtins::standard()
}
