//! A schema of its own for each test, in the PostgreSQL this machine runs
//! (`AUTOMATE_TEST_PG_URL`, by default `host=127.0.0.1 user=postgres
//! dbname=test`), dropped afterwards. Without the server a test prints why
//! and skips; with `AUTOMATE_TEST_CLUSTER=1` (set by `.ci/run`) it fails.

pub mod proxy;

use crate::{Pg, PgConfig};
use std::sync::Arc;

/// The PostgreSQL tests use.
pub fn test_url() -> String {
    std::env::var("AUTOMATE_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

pub use automate_vmdb::testing::cluster_mandatory;

/// A throwaway schema `t_<name>_<pid>_<n>` and a runtime for the driver,
/// dropped with it.
pub struct TestDb {
    pg: Option<Arc<Pg>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestDb {
    /// A fresh schema for the test `name` (migrated), or `None` (after
    /// saying why) when PostgreSQL cannot be reached and the cluster tests
    /// are not mandatory.
    pub fn new(name: &str) -> Option<TestDb> {
        let schema = automate_vmdb::testing::unique_name(name);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the test");
        let mut config = PgConfig::new(test_url());
        config.schema = schema;
        config.pool_size = 8;
        match Pg::connect(&config, runtime.handle().clone()) {
            Ok(pg) => Some(TestDb {
                pg: Some(pg),
                runtime: Some(runtime),
            }),
            Err(e) if !cluster_mandatory() => {
                eprintln!("skipped: PostgreSQL is not reachable ({e}); AUTOMATE_TEST_CLUSTER=1 makes this a failure");
                None
            }
            Err(e) => panic!("PostgreSQL is not reachable and AUTOMATE_TEST_CLUSTER=1: {e}"),
        }
    }

    /// The connection pool in the test's schema.
    pub fn pg(&self) -> Arc<Pg> {
        self.pg.clone().expect("open until dropped")
    }

    /// The test's configuration (its schema), to connect again as another
    /// node would.
    pub fn config(&self) -> PgConfig {
        self.pg().config().clone()
    }

    /// The test's configuration with the server at `127.0.0.1:port` (a
    /// [`proxy::SilentProxy`]'s), the same user and database, and short
    /// timeouts: connect 1 s, keepalive 2 s, pool wait 1 s, statement 1 s,
    /// call 2 s.
    pub fn config_through(&self, port: u16) -> PgConfig {
        let mut config = self.config();
        let parsed: Option<tokio_postgres::Config> = test_url().parse().ok();
        let user = parsed
            .as_ref()
            .and_then(|c| c.get_user().map(str::to_string))
            .unwrap_or_else(|| "postgres".into());
        let db = parsed
            .as_ref()
            .and_then(|c| c.get_dbname().map(str::to_string))
            .unwrap_or_else(|| "test".into());
        config.url = format!("host=127.0.0.1 port={port} user={user} dbname={db}");
        config.pool_size = 4;
        config.timeouts = crate::PgTimeouts {
            connect: std::time::Duration::from_secs(1),
            keepalive: std::time::Duration::from_secs(2),
            pool_wait: std::time::Duration::from_secs(1),
            statement: std::time::Duration::from_secs(1),
            call: std::time::Duration::from_secs(2),
        };
        config
    }

    /// The port of the test's PostgreSQL (`AUTOMATE_TEST_PG_URL`'s, else
    /// 5432).
    pub fn port(&self) -> u16 {
        test_url()
            .parse::<tokio_postgres::Config>()
            .ok()
            .and_then(|c| c.get_ports().first().copied())
            .unwrap_or(5432)
    }

    /// The runtime the driver runs on.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("open until dropped")
            .handle()
            .clone()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(pg) = self.pg.take() {
            let schema = pg.schema().to_string();
            let p = pg.clone();
            let _ = pg.block(async move {
                if let Ok(c) = p.client().await {
                    let _ = c
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
