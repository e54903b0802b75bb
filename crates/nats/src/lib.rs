//! Cluster mode's work on NATS JetStream: the event queue (a work-queue
//! stream, subjects partitioned by provider and VM, acked only after the
//! event's unit of work is committed in PostgreSQL), the dead-letter
//! stream, the leases in a KV bucket (one catcher per provider in the
//! whole cluster; one node per partition), and the registry of nodes
//! `automate cluster status` reads.
//!
//! It implements the backend-neutral traits of `automate-vmdb`
//! ([`automate_vmdb::event_queue::EventQueue`]); the pipeline never knows
//! this crate. Only the binary's composition root names it.
//!
//! The traits are synchronous; `async-nats` is not. The [`Nats`] handle
//! bridges the two as `automate_postgres::Pg` does: [`Nats::block`] runs a
//! future on the runtime it was given and waits on the calling thread.

#![deny(missing_docs)]

pub mod lease;
pub mod nodes;
pub mod queue;
pub mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Where the cluster's NATS is, and the names this cluster uses in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// The server (`nats://127.0.0.1:4222`).
    pub url: String,
    /// What every stream, subject and KV bucket of this cluster is named
    /// after (`automate` by default; tests use one of their own): streams
    /// `<PREFIX>_EVENTS` and `<PREFIX>_DEAD`, subjects `<prefix>.events.…`,
    /// buckets `<prefix>-leases` and `<prefix>-nodes`.
    pub prefix: String,
    /// This node's name (unique in the cluster).
    pub node: String,
}

impl NatsConfig {
    /// The configuration for `url` and `node` with the prefix `automate`.
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            prefix: "automate".into(),
            node: node.into(),
        }
    }
}

/// A failure talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The prefix is not a plain name.
    #[error("cluster: NATS prefix {0:?} is not a plain name (letters, digits, _ and -)")]
    BadPrefix(String),
    /// No connection could be made.
    #[error("NATS at {url}: cannot connect: {error}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        error: String,
    },
    /// JetStream (or a KV bucket) refused or failed a request.
    #[error("NATS JetStream: {what}: {error}")]
    JetStream {
        /// What was asked (`creating the stream AUTOMATE_EVENTS`, ...).
        what: String,
        /// Why.
        error: String,
    },
    /// A lease's time to live under a second: the bucket's `max_age` 0
    /// means "never expires" to NATS (a dead node's leases would never
    /// run out), and a shorter TTL leaves no time to renew.
    #[error(
        "cluster: a lease's time to live must be 1 s or more, not {0:?} (cluster.lease_ttl_s)"
    )]
    BadLeaseTtl(std::time::Duration),
    /// The queue was opened with fewer partitions than the stream has
    /// consumers for: the events of the others would be stranded.
    #[error("cluster: cluster.partitions is {configured} but the stream {stream} has consumers for {found} partitions: the events queued in the others would never be claimed; set cluster.partitions to {found} (or more)")]
    TooFewPartitions {
        /// `cluster.partitions`.
        configured: u32,
        /// The partitions the stream's consumers show exist.
        found: u32,
        /// The events stream.
        stream: String,
    },
    /// The runtime the handle was given has stopped.
    #[error("NATS: the runtime running the client has stopped")]
    RuntimeGone,
}

impl NatsError {
    /// A JetStream failure of `what`.
    pub fn js(what: impl Into<String>, error: impl std::fmt::Display) -> NatsError {
        NatsError::JetStream {
            what: what.into(),
            error: error.to_string(),
        }
    }
}

impl From<NatsError> for automate_vmdb::StoreError {
    fn from(e: NatsError) -> automate_vmdb::StoreError {
        automate_vmdb::StoreError::Failed(automate_vmdb::BackendError::new(e))
    }
}

/// A connection to the cluster's NATS with its JetStream context and the
/// runtime its client runs on.
pub struct Nats {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    handle: tokio::runtime::Handle,
    config: NatsConfig,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("url", &automate_vmdb::shown::redact_url(&self.config.url))
            .field("prefix", &self.config.prefix)
            .field("node", &self.config.node)
            .finish_non_exhaustive()
    }
}

impl Nats {
    /// Connects to `config.url` with the client on `handle` (it reconnects
    /// by itself, with backoff, when the server goes away). Call it from
    /// any thread but a runtime's own worker in an async context.
    pub fn connect(
        config: &NatsConfig,
        handle: tokio::runtime::Handle,
    ) -> Result<Arc<Nats>, NatsError> {
        let ok = !config.prefix.is_empty()
            && config
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(NatsError::BadPrefix(config.prefix.clone()));
        }
        let url = config.url.clone();
        let name = format!("automate {}", config.node);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            let r = async_nats::ConnectOptions::new()
                .name(name)
                .retry_on_initial_connect()
                .connection_timeout(std::time::Duration::from_secs(5))
                .connect(url.as_str())
                .await;
            let _ = tx.send(r);
        });
        // The first connection is waited for (5 s at most), so that a wrong
        // URL is an error at start, not a silent retry loop.
        let client = match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(NatsError::Connect {
                    url: automate_vmdb::shown::redact_url(&config.url),
                    error: e.to_string(),
                })
            }
            Err(_) => {
                return Err(NatsError::Connect {
                    url: automate_vmdb::shown::redact_url(&config.url),
                    error: "no answer in 5 s".into(),
                })
            }
        };
        let wait = std::time::Instant::now();
        while client.connection_state() != async_nats::connection::State::Connected {
            if wait.elapsed() > std::time::Duration::from_secs(5) {
                return Err(NatsError::Connect {
                    url: automate_vmdb::shown::redact_url(&config.url),
                    error: "no connection in 5 s".into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let jetstream = async_nats::jetstream::new(client.clone());
        Ok(Arc::new(Nats {
            client,
            jetstream,
            handle,
            config: config.clone(),
        }))
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// The prefix of every name of this cluster.
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// The core client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.jetstream
    }

    /// The runtime the client runs on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Whether the client is connected now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Runs `fut` on the client's runtime and waits for its answer on this
    /// thread. Meant for synchronous code (the pipeline's threads); async
    /// code must call it through `tokio::task::spawn_blocking`. Called on a
    /// worker of a multi-thread runtime anyway, it waits in
    /// `tokio::task::block_in_place` (the worker's other tasks move to
    /// another thread); on a current-thread runtime it would deadlock.
    pub fn block<F, T>(&self, fut: F) -> Result<T, NatsError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        // On a worker thread of a multi-thread runtime the wait is moved
        // off the worker (`block_in_place`), so that it does not starve the
        // runtime (the future may need that very worker).
        let wait = move || rx.recv();
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        answer.map_err(|_| NatsError::RuntimeGone)
    }

    /// [`Nats::block`] for a fallible `fut` that may take `limit` at most:
    /// after that it is dropped and `what` fails (`no answer in …`).
    pub fn block_within<F, T>(&self, limit: Duration, what: &str, fut: F) -> Result<T, NatsError>
    where
        F: Future<Output = Result<T, NatsError>> + Send + 'static,
        T: Send + 'static,
    {
        let what = what.to_string();
        self.block(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Err(NatsError::js(what, format!("no answer in {limit:?}"))),
            }
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestNats;

    #[test]
    fn block_called_on_the_runtimes_only_worker_does_not_starve_it() {
        // A runtime of one worker, the client on it, and `block` called
        // from a task on that worker: the future it waits for needs the
        // same worker.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut config = NatsConfig::new(crate::testing::test_url(), "node1");
        config.prefix = "t_block_in_place".into();
        let nats = match Nats::connect(&config, rt.handle().clone()) {
            Ok(n) => n,
            Err(e) if !crate::testing::cluster_mandatory() => {
                eprintln!("skipped: NATS is not reachable ({e})");
                rt.shutdown_background();
                return;
            }
            Err(e) => panic!("NATS is not reachable and AUTOMATE_TEST_CLUSTER=1: {e}"),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let client = nats.client().clone();
            let r = nats
                .block(async move { client.flush().await.map(|_| 7).map_err(|e| e.to_string()) });
            let _ = tx.send(r);
        });
        let answer = rx.recv_timeout(Duration::from_secs(30));
        // A starved worker never ends: not waited for.
        rt.shutdown_background();
        assert_eq!(
            answer.expect("an answer (no starved worker)").unwrap(),
            Ok(7)
        );
    }

    #[test]
    fn a_call_without_an_answer_gives_up_after_its_limit() {
        let Some(t) = TestNats::new("block_within") else {
            return;
        };
        let nats = t.nats();
        let r = nats.block_within(
            Duration::from_millis(100),
            "waiting for nothing",
            std::future::pending::<Result<(), NatsError>>(),
        );
        let e = r.expect_err("no answer").to_string();
        assert!(
            e.contains("waiting for nothing") && e.contains("no answer"),
            "{e}"
        );
        assert_eq!(
            nats.block_within(Duration::from_secs(5), "x", async { Ok(7) })
                .unwrap(),
            7
        );
    }
}
