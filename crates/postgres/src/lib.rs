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

#![deny(missing_docs)]

pub mod datastore;
pub mod migrate;
pub mod schedule;
pub mod store;
pub mod testing;

use std::future::Future;
use std::sync::Arc;

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
        pg_config.options(format!("-c search_path={}", config.schema));
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
        cfg.options(format!("-c search_path={}", self.config.schema));
        cfg.connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| PgError::Connect {
                url: self.shown.clone(),
                error: e.to_string(),
            })
    }

    /// Runs `fut` on the driver's runtime and waits for its answer on this
    /// thread. Meant for synchronous code; async code must call it through
    /// `tokio::task::spawn_blocking`. Called on a worker of a multi-thread
    /// runtime anyway, it waits in `tokio::task::block_in_place`.
    pub fn block<F, T>(&self, fut: F) -> Result<T, PgError>
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
        answer.map_err(|_| PgError::RuntimeGone)
    }
}
