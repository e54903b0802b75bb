//! automate: the `automate` command, a Rust re-creation of the ManageIQ
//! Automate engine and event pipeline. The libraries are the workspace's
//! crates under `crates/`; this crate is the command line ([`cli`]) and the
//! composition root that wires them together ([`cli::compose`]).
//! `docs/ARCHITECTURE.md` is the map.

#![deny(missing_docs)]

pub mod cli;
