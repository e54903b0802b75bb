//! A prefix of its own for each test (its streams and KV buckets deleted
//! afterwards), on the NATS this machine runs (`AUTOMATE_TEST_NATS_URL`, by
//! default `nats://127.0.0.1:4222`). Without the server a test prints why
//! and skips; with `AUTOMATE_TEST_CLUSTER=1` (set by `.ci/run`) it fails.

use crate::{Nats, NatsConfig};
use std::sync::Arc;

/// The NATS server tests use.
pub fn test_url() -> String {
    std::env::var("AUTOMATE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub use automate_vmdb::testing::cluster_mandatory;

/// A throwaway prefix `t_<name>_<pid>_<n>` and a runtime for the client.
pub struct TestNats {
    nats: Option<Arc<Nats>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestNats {
    /// A fresh prefix for the test `name` as node `node1`, or `None` (after
    /// saying why) when NATS cannot be reached and the cluster tests are
    /// not mandatory.
    pub fn new(name: &str) -> Option<TestNats> {
        let prefix = automate_vmdb::testing::unique_name(name);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the test");
        let mut config = NatsConfig::new(test_url(), "node1");
        config.prefix = prefix;
        match Nats::connect(&config, runtime.handle().clone()) {
            Ok(nats) => Some(TestNats {
                nats: Some(nats),
                runtime: Some(runtime),
            }),
            Err(e) if !cluster_mandatory() => {
                eprintln!("skipped: NATS is not reachable ({e}); AUTOMATE_TEST_CLUSTER=1 makes this a failure");
                None
            }
            Err(e) => panic!("NATS is not reachable and AUTOMATE_TEST_CLUSTER=1: {e}"),
        }
    }

    /// The connection, as node `node1`.
    pub fn nats(&self) -> Arc<Nats> {
        self.nats.clone().expect("open until dropped")
    }

    /// Another connection with the same prefix, as node `node` (a second
    /// node of the same cluster).
    pub fn node(&self, node: &str) -> Arc<Nats> {
        let mut config = self.nats().config().clone();
        config.node = node.into();
        Nats::connect(&config, self.handle()).expect("a second connection")
    }

    /// The runtime the client runs on.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("open until dropped")
            .handle()
            .clone()
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        if let Some(nats) = self.nats.take() {
            let js = nats.jetstream().clone();
            let prefix = nats.prefix().to_string();
            let _ = nats.block(async move {
                use futures_util::StreamExt;
                let mut names = js.stream_names();
                let mut mine = Vec::new();
                while let Some(Ok(name)) = names.next().await {
                    let lower = name.to_ascii_lowercase();
                    if lower.starts_with(&prefix.to_ascii_lowercase())
                        || lower.starts_with(&format!("kv_{}", prefix.to_ascii_lowercase()))
                    {
                        mine.push(name);
                    }
                }
                for name in mine {
                    let _ = js.delete_stream(&name).await;
                }
            });
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
