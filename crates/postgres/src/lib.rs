//! Cluster mode's shared system of record on PostgreSQL, as ManageIQ's VMDB
//! is: the objects (providers, VMs, hosts, the event stream, MiqEvents,
//! requests and tasks), the workers' units of work committed in one
//! transaction each, the scheduled work (retries, request work: claimed
//! with `FOR UPDATE SKIP LOCKED`) and the datastore itself (domains as
//! their export files, with a version, announced with `NOTIFY`).
//!
//! Everything here implements the backend-neutral traits of
//! `automate-vmdb` ([`automate_vmdb::ObjectStore`],
//! [`automate_vmdb::UnitOfWork`], [`automate_vmdb::Schedule`], ...): the
//! pipeline, the handler, the engine and the API never know this crate.
//! Only the binary's composition root names it.
//!
//! The traits are synchronous (the engine runs on worker threads); the
//! driver is `tokio-postgres` (async) over a `deadpool-postgres` pool. The
//! [`Pg`] handle bridges the two: [`Pg::block`] runs a future on the
//! runtime it was given and waits for it on the calling thread, which may
//! be any thread (a worker, a blocking task of the API), never a panic
//! for "a runtime inside a runtime".
//!
//! Nothing waits on PostgreSQL for ever ([`PgTimeouts`]): a connection is
//! made within `connect`, a dead peer is found by TCP keepalives and the
//! kernel's user timeout, a pool slot is waited for `pool_wait`, a
//! statement runs `statement` at most on the server (and a transaction
//! left idle by a vanished client is ended after it), and a whole
//! [`Pg::block`] call answers within `call` whatever happens below it
//! (a connection that silently stopped answering: the call fails with
//! [`PgError::Timeout`] and the pool's idle connections are dropped, so
//! the next call connects afresh).

#![deny(missing_docs)]

pub mod datastore;
pub mod migrate;
pub mod ping;
pub mod schedule;
pub mod store;
pub mod testing;
#[cfg(test)]
mod timeout_tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long anything may wait on PostgreSQL (`cluster:` in automate.yaml,
/// docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgTimeouts {
    /// Making a connection (TCP and startup), `connect_timeout_s`.
    pub connect: Duration,
    /// A connection idle this long is probed by TCP keepalives (every
    /// third of it, 3 probes) and dropped when the peer is gone; the same
    /// bounds data left unacknowledged (`TCP_USER_TIMEOUT`),
    /// `keepalive_s`.
    pub keepalive: Duration,
    /// Waiting for a free connection of the pool, `pool_wait_s`.
    pub pool_wait: Duration,
    /// One statement on the server (`statement_timeout`; also
    /// `idle_in_transaction_session_timeout`), `statement_timeout_s`.
    pub statement: Duration,
    /// One [`Pg::block`] call (and one unit's commit) in all, `call_timeout_s`.
    pub call: Duration,
}

impl Default for PgTimeouts {
    /// Connect 5 s, keepalive 10 s, pool wait 10 s, statement 30 s, call 60 s.
    fn default() -> PgTimeouts {
        PgTimeouts {
            connect: Duration::from_secs(5),
            keepalive: Duration::from_secs(10),
            pool_wait: Duration::from_secs(10),
            statement: Duration::from_secs(30),
            call: Duration::from_secs(60),
        }
    }
}

impl PgTimeouts {
    /// Sets `cfg`'s connect timeout, keepalives, user timeout and the
    /// session's server-side timeouts (on top of its `options`).
    fn apply(&self, cfg: &mut tokio_postgres::Config, schema: &str) {
        cfg.connect_timeout(self.connect);
        cfg.keepalives(true);
        cfg.keepalives_idle(self.keepalive);
        cfg.keepalives_interval((self.keepalive / 3).max(Duration::from_secs(1)));
        cfg.keepalives_retries(3);
        cfg.tcp_user_timeout(self.keepalive * 2);
        let ms = |d: Duration| d.as_millis().max(1);
        cfg.options(format!(
            "-c search_path={schema} -c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            ms(self.statement),
            ms(self.statement)
        ));
    }
}

/// Where the cluster's PostgreSQL is, and which part of it is ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// A libpq-style URL or key=value string
    /// (`postgres://automate@db.example.com/vmdb`).
    pub url: String,
    /// The schema every table lives in (created when missing): `automate`
    /// by default; tests use one of their own.
    pub schema: String,
    /// The ManageIQ region: ids are `region * 10^12 + sequence`.
    pub region: i64,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long anything may wait on the server.
    pub timeouts: PgTimeouts,
}

impl PgConfig {
    /// The configuration for `url` with the defaults: schema `automate`,
    /// region 1, 16 connections.
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            schema: "automate".into(),
            region: 1,
            pool_size: 16,
            timeouts: PgTimeouts::default(),
        }
    }
}

/// A failure talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse.
    #[error("cluster.postgres: {url:?} is not a PostgreSQL connection string: {error}")]
    BadUrl {
        /// The URL as configured (its password, if any, is not shown).
        url: String,
        /// The driver's reason.
        error: tokio_postgres::Error,
    },
    /// The schema name is not a plain identifier.
    #[error("cluster.postgres: schema {0:?} is not a plain SQL identifier (letters, digits, _)")]
    BadSchema(String),
    /// No connection could be made or taken from the pool.
    #[error("PostgreSQL at {url}: cannot connect: {error}")]
    Connect {
        /// Where (host and database, no password).
        url: String,
        /// Why.
        error: String,
    },
    /// A statement failed.
    #[error("PostgreSQL: {0}")]
    Sql(#[from] tokio_postgres::Error),
    /// A migration failed (it was rolled back; nothing of it is applied).
    #[error("PostgreSQL migration {version} ({name}) failed: {error}")]
    Migration {
        /// Its version.
        version: i32,
        /// Its name.
        name: &'static str,
        /// Why.
        error: tokio_postgres::Error,
    },
    /// A call had no answer within its bound (`cluster.call_timeout_s`):
    /// the server, or the way to it, stopped answering.
    #[error("PostgreSQL: no answer within {} s (cluster.call_timeout_s): the server or the network to it stopped answering", .0.as_secs_f64())]
    Timeout(Duration),
    /// The runtime the handle was given has stopped.
    #[error("PostgreSQL: the runtime running the driver has stopped")]
    RuntimeGone,
}

impl From<PgError> for automate_vmdb::StoreError {
    fn from(e: PgError) -> automate_vmdb::StoreError {
        automate_vmdb::StoreError::Failed(automate_vmdb::BackendError::new(e))
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> PgError {
        PgError::Connect {
            url: String::new(),
            error: e.to_string(),
        }
    }
}

/// A connection pool to the cluster's PostgreSQL, in one schema, with the
/// runtime its driver runs on.
pub struct Pg {
    pool: deadpool_postgres::Pool,
    handle: tokio::runtime::Handle,
    config: PgConfig,
    /// Where, for messages: host and database, never the password.
    shown: String,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("at", &self.shown)
            .field("schema", &self.config.schema)
            .finish_non_exhaustive()
    }
}

/// True for a plain SQL identifier (what a schema name may be here).
fn plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl Pg {
    /// Connects to `config.url` with the driver on `handle`, creates the
    /// schema when missing and applies the migrations not yet applied
    /// ([`migrate::MIGRATIONS`]; one node at a time, under an advisory
    /// lock). Call it from any thread but a runtime's own worker in an
    /// async context (it waits).
    pub fn connect(config: &PgConfig, handle: tokio::runtime::Handle) -> Result<Arc<Pg>, PgError> {
        if !plain_identifier(&config.schema) {
            return Err(PgError::BadSchema(config.schema.clone()));
        }
        let mut pg_config: tokio_postgres::Config =
            config.url.parse().map_err(|error| PgError::BadUrl {
                url: automate_vmdb::shown::redact_url(&config.url),
                error,
            })?;
        config.timeouts.apply(&mut pg_config, &config.schema);
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("automate");
        }
        let shown = format!(
            "{}/{}",
            pg_config
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default(),
            pg_config.get_dbname().unwrap_or("")
        );
        let manager = deadpool_postgres::Manager::from_config(
            pg_config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .wait_timeout(Some(config.timeouts.pool_wait))
            .create_timeout(Some(config.timeouts.connect))
            .recycle_timeout(Some(config.timeouts.connect))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| PgError::Connect {
                url: shown.clone(),
                error: e.to_string(),
            })?;
        let pg = Arc::new(Pg {
            pool,
            handle,
            config: config.clone(),
            shown,
        });
        let me = pg.clone();
        pg.block(async move { migrate::apply(&me).await })??;
        Ok(pg)
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &PgConfig {
        &self.config
    }

    /// The schema its tables live in.
    pub fn schema(&self) -> &str {
        &self.config.schema
    }

    /// The ManageIQ region of the ids it makes.
    pub fn region(&self) -> i64 {
        self.config.region
    }

    /// The bound of one call ([`PgTimeouts::call`]).
    pub fn call_timeout(&self) -> Duration {
        self.config.timeouts.call
    }

    /// The bound of a unit's commit: its writes ([`PgTimeouts::call`]),
    /// then the check of a commit in doubt (twice the statement bound and
    /// a connection).
    pub fn commit_timeout(&self) -> Duration {
        let t = &self.config.timeouts;
        t.call + t.statement * 2 + t.connect + Duration::from_secs(1)
    }

    /// Forgets the pool's idle connections (after a call found the server
    /// silent: one of them may be the dead one); the next calls connect
    /// afresh.
    pub fn drop_idle_connections(&self) {
        let dropped = self.pool.retain(|_, _| false).removed.len();
        if dropped > 0 {
            tracing::info!(target: "evm", "MIQ(Pg) {dropped} idle PostgreSQL connection(s) dropped after a call without answer; the next calls connect afresh");
        }
    }

    /// The runtime the driver runs on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// A connection from the pool (its `search_path` is the schema).
    pub async fn client(&self) -> Result<deadpool_postgres::Object, PgError> {
        self.pool.get().await.map_err(|e| PgError::Connect {
            url: self.shown.clone(),
            error: e.to_string(),
        })
    }

    /// A connection of its own, outside the pool, with the task driving it
    /// (for `LISTEN`: its notifications arrive on the returned stream).
    pub async fn dedicated(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
        ),
        PgError,
    > {
        let mut cfg: tokio_postgres::Config =
            self.config.url.parse().map_err(|error| PgError::BadUrl {
                url: automate_vmdb::shown::redact_url(&self.config.url),
                error,
            })?;
        self.config.timeouts.apply(&mut cfg, &self.config.schema);
        cfg.connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| PgError::Connect {
                url: self.shown.clone(),
                error: e.to_string(),
            })
    }

    /// Runs `fut` on the driver's runtime and waits for its answer on this
    /// thread, [`Pg::call_timeout`] at most ([`PgError::Timeout`], the
    /// future dropped, the pool's idle connections forgotten). Meant for
    /// synchronous code; async code must call it through
    /// `tokio::task::spawn_blocking`. Called on a worker of a multi-thread
    /// runtime anyway, it waits in `tokio::task::block_in_place`.
    pub fn block<F, T>(&self, fut: F) -> Result<T, PgError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.block_within(self.config.timeouts.call, fut)
    }

    /// [`Pg::block`] with a bound of its own (a unit's commit: its writes
    /// within the call bound, then the check of a commit in doubt).
    pub fn block_within<F, T>(&self, bound: Duration, fut: F) -> Result<T, PgError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let pool = self.pool.clone();
        self.handle.spawn(async move {
            let answer = tokio::time::timeout(bound, fut).await;
            if answer.is_err() {
                // The future (and the connection it held) is dropped by
                // now: that connection may be the silent one.
                let _ = pool.retain(|_, _| false);
                tracing::warn!(target: "evm", "MIQ(Pg) a PostgreSQL call had no answer in {} s: idle connections dropped", bound.as_secs_f64());
            }
            let _ = tx.send(answer);
        });
        // On a worker thread of a multi-thread runtime the wait is moved
        // off the worker (`block_in_place`), so that it does not starve the
        // runtime (the future may need that very worker). The wait has a
        // bound of its own too (a runtime too busy to run the timer).
        let wait = move || rx.recv_timeout(bound + Duration::from_secs(5));
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        match answer {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(_)) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(PgError::Timeout(bound))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(PgError::RuntimeGone),
        }
    }
}
