//! Cluster mode's pieces that belong to the composition layer: they join
//! what no library crate knows together (a node's datastore root and its
//! [`automate_control::Reloader`] with the cluster's PostgreSQL). The
//! composition root (`compose.rs`) starts them when `cluster:` is
//! configured.
//!
//! * [`datastore`]: every node's datastore root kept equal to the domains
//!   PostgreSQL holds, and hot-reloaded when they change.
//! * [`backend`]: the connections to PostgreSQL and NATS and what is built
//!   on them (the store, the schedule, the leases, the queue), their
//!   health watched.

pub mod backend;
pub mod datastore;
