//! Integration tests: one test binary with a module per area, so the
//! 2-core machine links once. Each module builds real datastores on disk
//! (tempfile) and runs the real engine and the real `automate` binary.

/// As in the `automate` binary: the Rhai sandbox's memory limit needs it.
#[global_allocator]
static ALLOC: automate_core::alloc::CountingAlloc = automate_core::alloc::CountingAlloc;

mod api;
mod authoring;
mod autotest;
mod catchers;
mod cli;
mod client;
mod cluster;
mod cluster_datastore;
mod cluster_harden;
mod cluster_schedule;
mod cluster_status;
mod common;
mod control;
mod datastore;
mod demo;
mod engine;
mod events;
mod eventtrace;
mod fixtures;
mod git_domains;
mod harden_api;
mod harden_batch;
mod harden_budget;
mod harden_import;
mod harden_input;
mod harden_store;
mod hostile;
mod legacy;
mod methods;
mod metrics;
mod operations;
mod outbound;
mod password;
mod pipeline;
mod provision;
mod reload;
mod replay;
mod requests;
mod rest;
mod retries;
mod sandbox;
mod semantics;
mod service_model;
mod services;
mod storm;
mod tags;
mod ui;
mod ui_domains;
mod ui_edit;
mod ui_events;
mod ui_firefox;
mod ui_requests;
mod ui_sim;
mod vmdb;
