//! Methods: the Rhai script runner with the `evm` API, and the native
//! builtins of the ManageIQ domain's event flow.
