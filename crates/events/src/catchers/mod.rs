//! Event catchers: what listens to a provider's event bus and hands each
//! event to the pipeline (ManageIQ's `EventCatcher` workers, reference §9.1
//! item 1).
//!
//! Every catcher kind is a module with a serde config and a `build` step:
//!
//! * [`simulate`]: a seeded generator of realistic RHEV, OpenStack and
//!   VMware event streams (VMs powering on and off with consistent state) at
//!   a set rate;
//! * [`jsonl`]: one JSON event per line from a file (optionally tailed) or
//!   stdin;
//! * [`http`]: `POST /api/events` with token auth (served by the API
//!   listener, see [`http::router`]);
//! * [`amqp`]: OpenStack `oslo.messaging` notifications from a RabbitMQ topic
//!   exchange, acknowledged only once the pipeline has stored the event.
//!
//! A catcher sends [`Caught`] values into a bounded [`CaughtSender`] (so a
//! slow pipeline slows the catchers down). For every event it logs
//! ManageIQ's `MIQ(EventCatcher<Type>) EMS [<host>] as [<user>] Caught event
//! [<type>]` line (target `evm`); events whose type is in the provider's
//! [`Filter`] are logged as `... Skipping caught event [<type>]` and not
//! sent. A catcher that needs durability (amqp, http) attaches a oneshot to
//! the event and waits for the pipeline's answer: `Ok(())` once the event is
//! durably stored, `Err(reason)` (or a dropped sender) when it was not.
//!
//! In a cluster ([`Catchers::with_leases`]) each reading catcher runs only
//! on the node holding its provider's lease and resumes from the stored
//! position ([`lease`]).

pub mod amqp;
pub mod http;
pub mod jsonl;
pub mod lease;
pub mod operations;
pub mod oslo;
pub mod simulate;

use super::{Provider, ProviderEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// An event's `timestamp` in the event stream's one format (ISO 8601 UTC
/// with milliseconds, `2026-01-01T00:00:01.250Z`), from any form
/// [`automate_core::time::parse_time`] reads (a zone offset, a space for
/// the `T`, none to six fractional digits). A text that is not a time is
/// an error: catchers refuse such an event rather than
/// store its timestamp as given (which `--since` could never match).
pub fn normalise_timestamp(text: &str) -> Result<String, String> {
    use automate_core::time;
    time::parse_time(text).map(time::iso8601).ok_or_else(|| {
        format!(
            "[{}] is not a time (use ISO 8601, e.g. 2026-01-01T00:00:01Z)",
            text.chars().take(64).collect::<String>()
        )
    })
}

/// One caught event on its way to the pipeline.
#[derive(Debug)]
pub struct Caught {
    /// The provider the event came from.
    pub provider: Arc<Provider>,
    /// The event as the catcher parsed it.
    pub event: ProviderEvent,
    /// Set by catchers that need to know when the event is durably stored:
    /// answer `Ok(())` once it is, `Err(reason)` if it could not be. Dropping
    /// the sender counts as `Err`.
    pub ack: Option<oneshot::Sender<Result<(), String>>>,
}

impl Caught {
    /// Answers the catcher's durability question (a no-op for catchers that
    /// did not ask).
    pub fn complete(&mut self, result: Result<(), String>) {
        if let Some(tx) = self.ack.take() {
            let _ = tx.send(result);
        }
    }
}

/// The catcher's end of a durability question.
pub type AckReceiver = oneshot::Receiver<Result<(), String>>;

/// Where catchers send what they caught. Bounded: a full channel makes the
/// catchers wait (back-pressure).
pub type CaughtSender = mpsc::Sender<Caught>;

/// A bounded channel for caught events.
pub fn sink_pair(capacity: usize) -> (CaughtSender, mpsc::Receiver<Caught>) {
    mpsc::channel(capacity.max(1))
}

/// A provider's list of event types to drop (ManageIQ's event blacklist):
/// exact, case-sensitive matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    drop: BTreeSet<String>,
}

impl Filter {
    /// A filter dropping `types`; blank entries are ignored.
    pub fn new<I, S>(types: I) -> Filter
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Filter {
            drop: types
                .into_iter()
                .map(Into::into)
                .filter(|s: &String| !s.trim().is_empty())
                .collect(),
        }
    }

    /// Whether events of this type are dropped.
    pub fn drops(&self, event_type: &str) -> bool {
        self.drop.contains(event_type)
    }

    /// Whether no event type is dropped.
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty()
    }

    /// The dropped event types, sorted.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.drop.iter().map(String::as_str)
    }
}

/// Counters a catcher keeps while it runs (shared: read them while it runs
/// or after).
#[derive(Debug, Default)]
pub struct CatcherStats {
    /// Events parsed from the provider (filtered ones included).
    pub caught: AtomicU64,
    /// Events dropped by the provider's filter.
    pub skipped: AtomicU64,
    /// Events handed to the pipeline.
    pub sent: AtomicU64,
    /// Input that could not be parsed as an event (bad lines, bad messages,
    /// rejected requests).
    pub rejected: AtomicU64,
    /// Durable acknowledgements received (`Ok`).
    pub acked: AtomicU64,
    /// Negative answers (`Err` or dropped): the event is redelivered or the
    /// request failed.
    pub nacked: AtomicU64,
    /// Connection attempts that failed (amqp).
    pub reconnects: AtomicU64,
    /// Where bad input was found, e.g. `line 3: expected value at column 1`.
    problems: Mutex<Vec<String>>,
}

/// A copy of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Events parsed from the provider (filtered ones included).
    pub caught: u64,
    /// Events dropped by the provider's filter.
    pub skipped: u64,
    /// Events handed to the pipeline.
    pub sent: u64,
    /// Input that could not be parsed as an event.
    pub rejected: u64,
    /// Events the pipeline confirmed stored.
    pub acked: u64,
    /// Events the pipeline did not confirm (redelivered or failed).
    pub nacked: u64,
    /// Connection attempts that failed (amqp).
    pub reconnects: u64,
    /// Where bad input was found (the first 1,000).
    pub problems: Vec<String>,
}

impl CatcherStats {
    /// The counters as they are now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            caught: g(&self.caught),
            skipped: g(&self.skipped),
            sent: g(&self.sent),
            rejected: g(&self.rejected),
            acked: g(&self.acked),
            nacked: g(&self.nacked),
            reconnects: g(&self.reconnects),
            problems: self.problems.lock().map(|p| p.clone()).unwrap_or_default(),
        }
    }

    pub(crate) fn bump(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }

    /// Records bad input (kept: the first 1,000 problems).
    pub(crate) fn problem(&self, what: String) {
        Self::bump(&self.rejected);
        if let Ok(mut p) = self.problems.lock() {
            if p.len() < 1000 {
                p.push(what);
            }
        }
    }
}

/// Why a catcher could not be built or stopped running.
#[derive(Debug, thiserror::Error)]
pub enum CatcherError {
    /// The settings are refused when the catcher is built (a `simulate`
    /// setting out of range, an empty `jsonl` path, a bad `amqp` url), or a
    /// catcher's task failed while running.
    #[error("provider [{provider}]: {message}")]
    Config {
        /// The provider's `name` (`?` for a failed task).
        provider: String,
        /// What is wrong, naming the setting: `amqp url ...: ...`.
        message: String,
    },
    /// A `jsonl` catcher cannot open or read its file.
    #[error("provider [{provider}]: cannot read {path}: {source}")]
    Io {
        /// The provider's `name`.
        provider: String,
        /// The catcher's `path` setting.
        path: String,
        /// What the open or read returned.
        #[source]
        source: std::io::Error,
    },
    /// A listening socket cannot be bound (no catcher returns it today:
    /// the `http` catcher is served by the API listener).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The `host:port` asked for.
        addr: String,
        /// What the bind returned.
        #[source]
        source: std::io::Error,
    },
    /// The pipeline's receiving end is gone.
    #[error("provider [{0}]: the event pipeline is closed")]
    SinkClosed(String),
}

/// The longest name or text setting (provider names, queues, paths).
pub const MAX_NAME_LEN: usize = 1024;

/// Checks a name or text setting: printable (no control characters, so no
/// newline or NUL), at most [`MAX_NAME_LEN`] bytes, and not blank unless
/// `may_be_empty`.
pub fn check_name(v: &str, may_be_empty: bool) -> Result<(), String> {
    if v.trim().is_empty() && !(may_be_empty && v.is_empty()) {
        return Err("empty".into());
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!("{v:?} holds the control character {c:?}"));
    }
    if v.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} bytes"));
    }
    Ok(())
}

/// A provider's catcher as configured: `kind` selects the module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CatcherConfig {
    /// `kind: simulate`: seeded, generated events ([`simulate`]).
    Simulate(simulate::SimulateConfig),
    /// `kind: jsonl`: one JSON event a line from a file or stdin
    /// ([`jsonl`]).
    Jsonl(jsonl::JsonlConfig),
    /// `kind: http`: events posted to `POST /api/events` ([`http`]).
    Http(http::HttpConfig),
    /// `kind: amqp`: oslo notifications from RabbitMQ ([`amqp`]).
    Amqp(amqp::AmqpConfig),
}

impl CatcherConfig {
    /// `simulate`, `jsonl`, `http` or `amqp`.
    pub fn kind(&self) -> &'static str {
        match self {
            CatcherConfig::Simulate(_) => "simulate",
            CatcherConfig::Jsonl(_) => "jsonl",
            CatcherConfig::Http(_) => "http",
            CatcherConfig::Amqp(_) => "amqp",
        }
    }

    /// Every problem of the settings, as (field under `catcher`, message);
    /// [`CatcherConfig::build`] refuses the first.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        match self {
            CatcherConfig::Simulate(c) => c.check(),
            CatcherConfig::Jsonl(c) => c.check(),
            CatcherConfig::Http(_) => Vec::new(),
            CatcherConfig::Amqp(c) => c.check(),
        }
    }

    /// Checks the settings and makes the catcher (nothing runs until
    /// [`Catcher::run`]).
    pub fn build(
        &self,
        provider: Arc<Provider>,
        filter: Filter,
        out: CaughtSender,
    ) -> Result<Catcher, CatcherError> {
        let ctx = Ctx {
            provider,
            filter,
            out,
            stats: Arc::new(CatcherStats::default()),
            resume: None,
            ops: None,
        };
        let inner = match self {
            CatcherConfig::Simulate(c) => Inner::Simulate(c.build(&ctx)?),
            CatcherConfig::Jsonl(c) => Inner::Jsonl(c.build(&ctx)?),
            CatcherConfig::Http(c) => Inner::Http(c.build(&ctx)?),
            CatcherConfig::Amqp(c) => Inner::Amqp(c.build(&ctx)?),
        };
        Ok(Catcher { ctx, inner })
    }
}

/// What every catcher shares: its provider, filter, output and counters.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub provider: Arc<Provider>,
    pub filter: Filter,
    pub out: CaughtSender,
    pub stats: Arc<CatcherStats>,
    /// Under a lease: where to resume and where to store the position.
    pub resume: Option<lease::Resume>,
    /// The provider operations to perform ([`operations`]), set by the
    /// pipeline.
    pub ops: Option<Arc<operations::Operations>>,
}

/// What [`Ctx::offer`] did with an event.
pub(crate) enum Offer {
    /// Filtered out: logged as skipped, not sent.
    Skipped,
    /// Sent; carries the durability answer when one was asked for.
    Sent(Option<AckReceiver>),
    /// Shutdown came while waiting for room in the pipeline.
    Cancelled,
    /// The pipeline is gone.
    Closed,
}

impl Ctx {
    /// Logs the caught line (or the skipping line for filtered types) and
    /// sends the event, waiting for room in the pipeline unless `shutdown`
    /// fires first.
    pub(crate) async fn offer(
        &self,
        event: ProviderEvent,
        durable: bool,
        shutdown: &CancellationToken,
    ) -> Offer {
        CatcherStats::bump(&self.stats.caught);
        if self.filter.drops(&event.event_type) {
            CatcherStats::bump(&self.stats.skipped);
            tracing::info!(target: "evm", "{}", skipping_line(&self.provider, &event.event_type));
            return Offer::Skipped;
        }
        tracing::info!(target: "evm", "{}", self.provider.caught_line(&event.event_type));
        let (ack, rx) = if durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let caught = Caught {
            provider: self.provider.clone(),
            event,
            ack,
        };
        tokio::select! {
            biased;
            r = self.out.send(caught) => match r {
                Ok(()) => {
                    CatcherStats::bump(&self.stats.sent);
                    Offer::Sent(rx)
                }
                Err(_) => Offer::Closed,
            },
            _ = shutdown.cancelled() => Offer::Cancelled,
        }
    }

    pub(crate) fn closed(&self) -> CatcherError {
        CatcherError::SinkClosed(self.provider.name.clone())
    }

    pub(crate) fn config_error(&self, message: impl Into<String>) -> CatcherError {
        CatcherError::Config {
            provider: self.provider.name.clone(),
            message: message.into(),
        }
    }

    /// Waits for the durability answer; `true` for `Ok(())`.
    pub(crate) async fn settle(stats: &CatcherStats, rx: Option<AckReceiver>) -> bool {
        let Some(rx) = rx else { return true };
        match rx.await {
            Ok(Ok(())) => {
                CatcherStats::bump(&stats.acked);
                true
            }
            _ => {
                CatcherStats::bump(&stats.nacked);
                false
            }
        }
    }
}

/// `MIQ(EventCatcher<Type>) EMS [<host>] as [<user>] Skipping caught event [<type>]`.
pub fn skipping_line(provider: &Provider, event_type: &str) -> String {
    format!(
        "MIQ({}) EMS [{}] as [{}] Skipping caught event [{}]",
        provider.catcher_name(),
        provider.hostname,
        provider.userid,
        event_type
    )
}

#[derive(Clone)]
enum Inner {
    Simulate(simulate::SimulateCatcher),
    Jsonl(jsonl::JsonlCatcher),
    Http(http::HttpCatcher),
    Amqp(amqp::AmqpCatcher),
}

/// A built catcher: run it until its input ends or `shutdown` fires.
#[derive(Clone)]
pub struct Catcher {
    ctx: Ctx,
    inner: Inner,
}

impl std::fmt::Debug for Catcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catcher")
            .field("provider", &self.ctx.provider.name)
            .field("kind", &self.kind())
            .finish()
    }
}

impl Catcher {
    /// The provider whose events this catcher catches.
    pub fn provider(&self) -> &Arc<Provider> {
        &self.ctx.provider
    }

    /// `simulate`, `jsonl`, `http` or `amqp` (its `catcher.kind`).
    pub fn kind(&self) -> &'static str {
        match self.inner {
            Inner::Simulate(_) => "simulate",
            Inner::Jsonl(_) => "jsonl",
            Inner::Http(_) => "http",
            Inner::Amqp(_) => "amqp",
        }
    }

    /// The counters, shared with the running catcher.
    pub fn stats(&self) -> Arc<CatcherStats> {
        self.ctx.stats.clone()
    }

    /// For an `http` catcher: what the `POST /api/events` endpoint needs to
    /// accept events for this provider ([`http::HttpState::add`]).
    pub fn http_endpoint(&self) -> Option<http::Endpoint> {
        match self.inner {
            Inner::Http(_) => Some(http::Endpoint {
                provider: self.ctx.provider.clone(),
                filter: self.ctx.filter.clone(),
                out: self.ctx.out.clone(),
                stats: self.ctx.stats.clone(),
            }),
            _ => None,
        }
    }

    /// Runs until the input ends (a `simulate` count, a `jsonl` file without
    /// `follow`) or `shutdown` is cancelled. An `http` catcher only waits for
    /// `shutdown`: its endpoint is served by the API listener.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), CatcherError> {
        let Catcher { ctx, inner } = self;
        match inner {
            Inner::Simulate(c) => c.run(ctx, shutdown).await,
            Inner::Jsonl(c) => c.run(ctx, shutdown).await,
            Inner::Http(c) => c.run(ctx, shutdown).await,
            Inner::Amqp(c) => c.run(ctx, shutdown).await,
        }
    }
}

/// Every configured provider's catcher, plus the HTTP endpoint state when
/// any provider takes events over HTTP.
pub struct Catchers {
    /// One catcher a provider, in the configuration's order.
    pub catchers: Vec<Catcher>,
    /// Serve it with [`http::router`], merged into the REST API (whose
    /// server sets the connection limits). `None` when no provider uses
    /// the `http` catcher.
    pub http: Option<http::HttpState>,
    /// The cluster's leases: each reading catcher runs only while this
    /// node holds its lease ([`lease`]); `None` in the embedded mode.
    leases: Option<Arc<dyn automate_vmdb::lease::Leases>>,
}

impl Catchers {
    /// Gathers the providers' built catchers (all sending into one
    /// channel); the `http` ones' endpoints go into one
    /// [`http::HttpState`] that asks for `token`. The configuration builds
    /// them (`Config::build_catchers`): this module knows each catcher's
    /// settings, not the configuration file.
    pub fn new(catchers: Vec<Catcher>, token: &str) -> Catchers {
        let mut http: Option<http::HttpState> = None;
        for c in &catchers {
            if let Some(ep) = c.http_endpoint() {
                http.get_or_insert_with(|| http::HttpState::new(token))
                    .add(ep);
            }
        }
        Catchers {
            catchers,
            http,
            leases: None,
        }
    }

    /// Runs each reading catcher (`simulate`, `jsonl`, `amqp`) only while
    /// this node holds its lease `catcher.<provider>` of `leases`, resuming
    /// from its stored position ([`lease`]). The `http` catcher is a push
    /// endpoint every node serves: it takes no lease.
    pub fn with_leases(mut self, leases: Arc<dyn automate_vmdb::lease::Leases>) -> Catchers {
        self.leases = Some(leases);
        self
    }

    /// Gives every catcher the provider operations to perform (the
    /// `simulate` catcher performs them; the others mark them `error`):
    /// see [`operations`].
    pub fn set_operations(&mut self, ops: Arc<operations::Operations>) {
        for c in &mut self.catchers {
            c.ctx.ops = Some(ops.clone());
        }
    }

    /// [`Catchers::with_leases`] in place.
    pub fn set_leases(&mut self, leases: Arc<dyn automate_vmdb::lease::Leases>) {
        self.leases = Some(leases);
    }

    /// Runs every catcher until all have ended or `shutdown` fires; the first
    /// error cancels the rest and is returned.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), CatcherError> {
        let mut set = tokio::task::JoinSet::new();
        let stop = shutdown.child_token();
        for c in self.catchers {
            let s = stop.clone();
            // A catcher that cannot perform provider operations marks its
            // provider's ready ones `error` while it runs, and stops doing
            // so when it ends (a finished jsonl file lets the run end).
            let refuse = match (&c.ctx.ops, c.kind() == "simulate") {
                (Some(ops), false) => {
                    let token = s.child_token();
                    let refuse = operations::refuse_loop(
                        ops.clone(),
                        c.ctx.provider.clone(),
                        c.kind(),
                        token.clone(),
                    );
                    Some((token, refuse))
                }
                _ => None,
            };
            let catcher: std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<(), CatcherError>> + Send>,
            > = match &self.leases {
                Some(l) if c.kind() != "http" => Box::pin(lease::run_leased(c, l.clone(), s)),
                _ => Box::pin(async move { c.run(s).await }),
            };
            set.spawn(async move {
                let Some((token, refuse)) = refuse else {
                    return catcher.await;
                };
                let refusing = tokio::spawn(refuse);
                let r = catcher.await;
                token.cancel();
                let _ = refusing.await;
                r
            });
        }
        let mut first = None;
        while let Some(r) = set.join_next().await {
            let r = match r {
                Ok(r) => r,
                Err(e) => Err(CatcherError::Config {
                    provider: String::from("?"),
                    message: format!("catcher task failed: {e}"),
                }),
            };
            if let Err(e) = r {
                tracing::error!(target: "evm", "MIQ(EventCatcher) {e}");
                stop.cancel();
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matches_exactly() {
        let f = Filter::new(["VM_DOWN", " "]);
        assert!(f.drops("VM_DOWN"));
        assert!(!f.drops("vm_down"));
        assert_eq!(f.types().count(), 1);
    }
}
