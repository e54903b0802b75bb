//! automate-core: the values every layer of automate shares.
//!
//! [`uri`] is the grammar of Automate URIs, [`value`] the attribute values
//! a workspace holds (and [`value::VmdbRef`], a reference to a stored
//! object), [`time`] the one UTC calendar and the timestamp texts the
//! product writes and reads, and [`alloc`] the counting allocator behind the
//! Rhai sandbox's memory limit; [`ruby`] the Ruby subset of imported
//! domains' assertions, evaluated natively. Nothing here does I/O or knows a backend;
//! every other crate of the workspace builds on this one.

#![deny(missing_docs)]

pub mod alloc;
pub mod ruby;
pub mod time;
pub mod uri;
pub mod value;
