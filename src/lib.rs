//! automate: a Rust re-creation of the ManageIQ Automate engine.
//!
//! The crate is laid out like the product: [`uri`] parses Automate URIs,
//! [`datastore`] reads and writes domains in ManageIQ's export layout and
//! builds the overlay index, [`engine`] instantiates URIs into workspaces,
//! [`cli`] is the `automate` command. `docs/ARCHITECTURE.md` is the map.

pub mod api;
pub mod cli;
pub mod control;
pub mod datastore;
pub mod engine;
pub mod events;
pub mod methods;
pub mod requests;
pub mod uri;
pub mod vmdb;
