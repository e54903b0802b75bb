//! `automate.yaml`: providers and their catchers, workers, the event queue
//! and storm control, the API listener and the logs. `docs/configuration.md`
//! describes every key; `automate.example.yaml` is a commented example.
//!
//! Each catcher's settings and their checks live in its module
//! ([`super::catchers`]); this module only refers to them (and builds the
//! catchers, [`Config::build_catchers`]): the catchers never read the
//! configuration.
//!
//! Everything but `providers` has a default, so the smallest file is:
//!
//! ```yaml
//! providers:
//!   - name: rhevm01
//!     type: RHEVM
//!     hostname: rhevm01.example.com
//!     userid: admin@internal
//!     catcher: {kind: simulate, seed: 7, rate: 2}
//! ```

use super::catchers::{
    check_name, Catcher, CatcherConfig, CatcherError, Catchers, CaughtSender, Filter,
};
use super::Provider;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod lines;
mod methods;
pub use methods::{HttpConfig, MethodsConfig, SmtpConfig};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `providers`: the providers and their catchers; required, at least
    /// one.
    pub providers: Vec<ProviderConfig>,
    /// `workers`: event handler threads, 1 to [`MAX_WORKERS`]; default the
    /// number of CPUs, at most 8.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// `queue`: the durable event queue and storm control.
    #[serde(default)]
    pub queue: QueueConfig,
    /// `api`: the REST API listener.
    #[serde(default)]
    pub api: ApiConfig,
    /// `log`: where evm.log and automation.log go, and how.
    #[serde(default)]
    pub log: LogConfig,
    /// `engine`: what one instantiation may spend.
    #[serde(default)]
    pub engine: EngineConfig,
    /// `password`: where the region's v2 key is, for `password` fields'
    /// `v2:{...}` values (docs/configuration.md).
    #[serde(default)]
    pub password: PasswordConfig,
    /// `cluster`: PostgreSQL and NATS JetStream shared by several nodes
    /// (docs/cluster.md). Absent: the embedded mode (one process, redb).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// `methods`: what methods' outbound actions may do (the SMTP relay,
    /// the hosts `evm.http` may reach).
    #[serde(default)]
    pub methods: MethodsConfig,
    /// `events`: what is kept of each event's delivery.
    #[serde(default)]
    pub events: EventsConfig,
}

/// `events:`: what is kept of each event's delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// `events.trace`: each delivery's outcome and Automate trace, stored
    /// with the event, bounded by size and age.
    pub trace: crate::trace::TraceConfig,
}

/// `password:`: ManageIQ's v2 key, which decrypts `password` fields'
/// `v2:{...}` values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    /// `key_file`: the `v2_key` file (relative to the config file). Absent:
    /// `$KEY_ROOT/v2_key` when `KEY_ROOT` is set, else no key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl PasswordConfig {
    /// The v2 key: `key_file`, else `<key_root>/v2_key` (the `KEY_ROOT`
    /// the caller read), else none. A file named but missing or malformed
    /// is an error naming it.
    pub fn load_key(
        &self,
        key_root: Option<&Path>,
    ) -> Result<Option<automate_password::V2Key>, automate_password::PasswordError> {
        match (&self.key_file, key_root) {
            (Some(path), _) => automate_password::V2Key::load(path).map(Some),
            (None, Some(root)) => automate_password::V2Key::from_key_root(root).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// `cluster:`: where the shared PostgreSQL and NATS are, and this node's
/// name among the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `postgres`: a libpq URL or key=value string
    /// (`postgres://automate@db/vmdb`, `host=127.0.0.1 dbname=vmdb`).
    pub postgres: String,
    /// `schema`: the PostgreSQL schema the tables live in.
    #[serde(default = "default_cluster_name")]
    pub schema: String,
    /// `nats`: the NATS server with JetStream (`nats://127.0.0.1:4222`).
    pub nats: String,
    /// `prefix`: what the cluster's streams, subjects and KV buckets are
    /// named after.
    #[serde(default = "default_cluster_name")]
    pub prefix: String,
    /// `node`: this node's name, unique in the cluster.
    pub node: String,
    /// `region`: the ManageIQ region of the ids made (`region * 10^12 + seq`).
    #[serde(default = "default_region")]
    pub region: i64,
    /// `partitions`: how many partitions the event queue's subjects are
    /// split into (by provider and VM: one VM's events stay in order).
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// `lease_ttl_s`: how long a catcher's or partition's lease lives
    /// without renewal; a dead node's work is taken over after it.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_s: u64,
    /// `ack_wait_s`: how long a claimed event may stay unacked before
    /// JetStream delivers it again.
    #[serde(default = "default_ack_wait")]
    pub ack_wait_s: u64,
    /// `max_deliver`: deliveries of one event before it goes to the
    /// dead-letter stream.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: i64,
    /// `connect_timeout_s`: making a PostgreSQL connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_s: u64,
    /// `keepalive_s`: a PostgreSQL connection idle this long is probed
    /// (TCP keepalives) and dropped when the server is gone; also how long
    /// sent data may stay unacknowledged (twice it).
    #[serde(default = "default_keepalive")]
    pub keepalive_s: u64,
    /// `pool_wait_s`: waiting for a free connection of the pool.
    #[serde(default = "default_pool_wait")]
    pub pool_wait_s: u64,
    /// `statement_timeout_s`: one statement on the server (PostgreSQL's
    /// `statement_timeout`, and `idle_in_transaction_session_timeout`).
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_s: u64,
    /// `call_timeout_s`: one call to PostgreSQL in all (a read, a unit's
    /// writes): a silent server fails it after this.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_s: u64,
}

impl ClusterConfig {
    /// `field: message` texts of what is wrong with it.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(m) = check_name(&self.node, false) {
            out.push(format!("cluster.node: {m}"));
        }
        for (field, v) in [("schema", &self.schema), ("prefix", &self.prefix)] {
            let plain = !v.is_empty()
                && v.len() < 48
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !v.as_bytes()[0].is_ascii_digit();
            if !plain {
                out.push(format!(
                    "cluster.{field}: {v:?} is not a plain name (a letter, then letters, digits or _)"
                ));
            }
        }
        for (field, v) in [("postgres", &self.postgres), ("nats", &self.nats)] {
            if v.trim().is_empty() {
                out.push(format!("cluster.{field}: empty; where is the server?"));
            }
        }
        out
    }
}

fn default_cluster_name() -> String {
    "automate".into()
}
fn default_region() -> i64 {
    1
}
fn default_partitions() -> u32 {
    16
}
fn default_lease_ttl() -> u64 {
    10
}
fn default_ack_wait() -> u64 {
    30
}
fn default_max_deliver() -> i64 {
    5
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_keepalive() -> u64 {
    10
}
fn default_pool_wait() -> u64 {
    10
}
fn default_statement_timeout() -> u64 {
    30
}
fn default_call_timeout() -> u64 {
    60
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}

/// One provider (ManageIQ's ExtManagementSystem) and how its events are
/// caught.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawProviderConfig")]
pub struct ProviderConfig {
    /// `name`, `type`, `hostname`, `userid`.
    #[serde(flatten)]
    pub provider: Provider,
    /// `catcher`: how the events are caught (`kind` and its settings).
    pub catcher: CatcherConfig,
    /// Event types to drop at the catcher (ManageIQ's blacklist).
    #[serde(default)]
    pub filter: Vec<String>,
}

impl ProviderConfig {
    /// The provider's event filter.
    pub fn event_filter(&self) -> Filter {
        Filter::new(self.filter.iter().cloned())
    }

    /// Builds this provider's catcher, sending into `out`.
    pub fn build_catcher(&self, out: CaughtSender) -> Result<Catcher, CatcherError> {
        self.catcher
            .build(Arc::new(self.provider.clone()), self.event_filter(), out)
    }
}

/// The provider entry as written: the same keys as [`ProviderConfig`], read
/// without `flatten` so that unknown keys (typos) are errors and errors
/// point at the right line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProviderConfig {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    hostname: String,
    userid: String,
    catcher: CatcherConfig,
    #[serde(default)]
    filter: Vec<String>,
}

impl From<RawProviderConfig> for ProviderConfig {
    fn from(r: RawProviderConfig) -> ProviderConfig {
        ProviderConfig {
            provider: Provider {
                name: r.name,
                kind: r.kind,
                hostname: r.hostname,
                userid: r.userid,
            },
            catcher: r.catcher,
            filter: r.filter,
        }
    }
}

/// What a full queue does with a new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// The catcher waits until there is room (back-pressure to the
    /// provider's bus).
    #[default]
    Block,
    /// The new event is dropped and counted.
    DropNewest,
    /// The new event is parked on disk: written to the durable queue
    /// beyond the capacity, counted and logged, and worked when the
    /// backlog drains (nothing waits, nothing is lost; memory stays
    /// bounded, only the file grows).
    Park,
}

/// The durable event queue and storm control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Most events waiting in the queue (the bounded backlog).
    pub capacity: usize,
    /// Most events committed in one group commit.
    pub batch_max: usize,
    /// Longest a batch waits to fill, in milliseconds, while the workers
    /// are busy (with them idle a batch is written at once).
    pub batch_wait_ms: u64,
    /// `queue.when_full`: what a new event meets once `capacity` events
    /// are waiting; default `block`.
    pub when_full: WhenFull,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 10_000,
            batch_max: 256,
            batch_wait_ms: 5,
            when_full: WhenFull::Block,
        }
    }
}

/// The REST API listener (also serves the `http` catcher's
/// `POST /api/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `host:port`.
    pub listen: String,
    /// The `X-Auth-Token` every request must carry. Empty refuses all
    /// requests. The `AUTOMATE_API_TOKEN` environment variable overrides it
    /// (the command line reads it: [`Config::load_with_token`]).
    pub token: String,
    /// What clients reach the API at (`https://automate.example.com`):
    /// every `href` starts with it. Unset, `href`s are paths (`/api/...`);
    /// the request's `Host` header is never used.
    pub public_url: Option<String>,
    /// What one client can make the server hold: connections, time, bytes,
    /// rows.
    pub limits: ApiLimits,
    /// Serve `GET /metrics` without the token (for a Prometheus that
    /// scrapes without credentials; the metrics name providers and event
    /// types, nothing else). Off by default: `/metrics` takes the token.
    pub metrics_public: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:3000".into(),
            token: String::new(),
            public_url: None,
            limits: ApiLimits::default(),
            metrics_public: false,
        }
    }
}

/// The API server's bounds (`api.limits`): every one is enforced before
/// the work it guards is done, and refused with its own answer (a closed
/// connection, 431, 413, 400 or 503) that names the key to raise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiLimits {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Seconds a client has to send a request's line and headers (counted
    /// from the end of the previous response on a kept-alive connection,
    /// so it is also the idle keep-alive timeout); then the connection is
    /// closed.
    pub header_read_timeout_secs: u64,
    /// Seconds a response may wait for a client that does not read it;
    /// then the connection is closed.
    pub write_timeout_secs: u64,
    /// Seconds one request may take, reading its body included; then it is
    /// answered 503 `timeout`.
    pub request_timeout_secs: u64,
    /// Bytes of request line and headers; more is answered 431 and closed.
    pub max_header_bytes: usize,
    /// Headers of one request; more is answered 431 and closed.
    pub max_headers: usize,
    /// Bytes of one request body; more is answered 413.
    pub max_body_bytes: usize,
    /// Rows a collection returns when the query has no `limit`.
    pub default_limit: usize,
    /// The largest `limit` a collection query may ask for (400 beyond).
    pub max_limit: usize,
    /// The most `resources` one bulk action may carry (413 beyond).
    pub max_resources: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: 512,
            header_read_timeout_secs: 10,
            write_timeout_secs: 30,
            request_timeout_secs: 60,
            max_header_bytes: 16 << 10,
            max_headers: 64,
            max_body_bytes: 1 << 20,
            default_limit: 1000,
            max_limit: 10_000,
            max_resources: 500,
        }
    }
}

impl ApiLimits {
    /// Every limit outside its range, as `api.limits.KEY: ...` messages
    /// (empty when all are sane).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |key: &str, v: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&v) {
                out.push(format!("api.limits.{key}: {v} is outside {lo}..={hi}"));
            }
        };
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        check("max_connections", n(self.max_connections), 1, 65_536);
        check(
            "header_read_timeout_secs",
            self.header_read_timeout_secs,
            1,
            3_600,
        );
        check("write_timeout_secs", self.write_timeout_secs, 1, 3_600);
        check("request_timeout_secs", self.request_timeout_secs, 1, 86_400);
        check("max_header_bytes", n(self.max_header_bytes), 1_024, 1 << 20);
        check("max_headers", n(self.max_headers), 1, 1_000);
        check("max_body_bytes", n(self.max_body_bytes), 1, 64 << 20);
        check("max_limit", n(self.max_limit), 1, 1_000_000);
        check("default_limit", n(self.default_limit), 1, n(self.max_limit));
        check("max_resources", n(self.max_resources), 1, 100_000);
        out
    }
}

/// `api.public_url` checked: `http(s)://host[:port][/path]`, no query,
/// fragment, blanks or control characters; the trailing `/` dropped.
pub fn check_public_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("api.public_url: {url:?} does not start with http:// or https://")
        })?;
    if rest.is_empty()
        || rest.starts_with('/')
        || url.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '"' | '<' | '>' | '\\')
        })
    {
        return Err(format!(
            "api.public_url: {url:?} is not a URL like https://automate.example.com"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod api_limits_tests {
    use super::*;

    const PROVIDER: &str = "providers:\n  - {name: r, type: RHEVM, hostname: h, userid: u, catcher: {kind: simulate}}\n";

    #[test]
    fn limits_default_sanely_and_are_bounded() {
        assert!(ApiLimits::default().problems().is_empty());
        let cfg = Config::from_yaml(
            &format!("{PROVIDER}api: {{public_url: 'https://a.example.com/', limits: {{max_limit: 50, default_limit: 20}}}}\n"),
            "t.yaml",
        )
        .expect("valid");
        assert_eq!(cfg.api.limits.max_limit, 50);
        assert_eq!(cfg.api.limits.max_connections, 512);
        let bad = ApiLimits {
            max_connections: 0,
            default_limit: 100,
            max_limit: 10,
            request_timeout_secs: u64::MAX,
            ..ApiLimits::default()
        };
        let problems = bad.problems().join("; ");
        for key in ["max_connections", "default_limit", "request_timeout_secs"] {
            assert!(
                problems.contains(&format!("api.limits.{key}")),
                "{problems}"
            );
        }
        let err = Config::from_yaml(
            &format!("{PROVIDER}api: {{limits: {{max_headers: 0}}}}\n"),
            "t.yaml",
        )
        .expect_err("refused");
        assert!(err.to_string().contains("api.limits.max_headers"), "{err}");
    }

    #[test]
    fn public_url_is_an_http_url() {
        assert_eq!(
            check_public_url("https://a.example.com:8443/automate/").as_deref(),
            Ok("https://a.example.com:8443/automate")
        );
        for bad in [
            "a.example.com",
            "ftp://x",
            "http://",
            "http://a b",
            "https://x/?q",
            "http:///x",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// ManageIQ's evm.log / automation.log lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Where logs go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `evm.log` and `automation.log` are written here; relative paths are
    /// relative to the config file.
    pub dir: PathBuf,
    /// `log.format`: `text` (default) or `json`.
    pub format: LogFormat,
    /// Seconds between `MIQ(automate run) stats {...}` lines in evm.log
    /// (counts so far, latency over the interval); 0 turns them off.
    pub stats_interval_secs: u64,
    /// A log file is rotated before it grows past this size.
    pub max_size: LogSize,
    /// Rotated files kept per log (`evm.log.1` ... `evm.log.<keep>`, at
    /// most [`MAX_LOG_KEEP`]); 0 keeps none.
    #[serde(deserialize_with = "log_keep")]
    pub keep: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            dir: PathBuf::from("log"),
            format: LogFormat::Text,
            stats_interval_secs: 60,
            max_size: LogSize(100 << 20),
            keep: 5,
        }
    }
}

/// Most rotated files `log.keep` may ask for.
pub const MAX_LOG_KEEP: u32 = 1000;
/// The smallest and largest `log.max_size`.
pub const LOG_SIZE_RANGE: std::ops::RangeInclusive<u64> = (4 << 10)..=(1 << 40);

fn log_keep<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let keep = u32::deserialize(d)?;
    if keep > MAX_LOG_KEEP {
        return Err(serde::de::Error::custom(format!(
            "log.keep: {keep} rotated files is more than the {MAX_LOG_KEEP} allowed"
        )));
    }
    Ok(keep)
}

/// `log.max_size`: bytes, written as a number or with a unit (`100MiB`,
/// `10 MB`, `512k`), between 4 KiB and 1 TiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LogSize(pub u64);

impl<'de> Deserialize<'de> for LogSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<LogSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        let bytes = match Raw::deserialize(d)? {
            Raw::Bytes(n) => n,
            Raw::Text(t) => parse_size(&t)
                .map_err(|e| serde::de::Error::custom(format!("log.max_size: {e}")))?,
        };
        if !LOG_SIZE_RANGE.contains(&bytes) {
            return Err(serde::de::Error::custom(format!(
                "log.max_size: {bytes} bytes is outside 4KiB..=1TiB"
            )));
        }
        Ok(LogSize(bytes))
    }
}

/// A size: a number of bytes, or a number with a unit (`100MiB`, `10 MB`,
/// `512k`; `k`/`KiB` are 1024, `KB` is 1000).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        "t" | "tib" => 1 << 40,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "[{text}]: unknown unit [{unit}] (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("[{text}]: not a size (a number of bytes, or e.g. 100MiB)"))?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || !(0.0..=u64::MAX as f64 / 2.0).contains(&bytes) {
        return Err(format!("[{text}]: out of range"));
    }
    Ok(bytes as u64)
}

/// What one instantiation may spend (an event's delivery, an API resolve,
/// a request's task), everything it triggers included
/// ([`automate_engine::budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Objects instantiated.
    pub max_objects: u64,
    /// Generic events raised.
    pub max_events: u64,
    /// Wall-clock seconds.
    pub max_seconds: u64,
    /// MiB held by the instantiation's thread beyond what it held at the
    /// start.
    pub max_memory_mb: u64,
}

impl EngineConfig {
    /// The largest value each key takes: beyond them a budget bounds
    /// nothing.
    const MAX_OBJECTS: u64 = 100_000_000;
    const MAX_EVENTS: u64 = 10_000_000;
    const MAX_SECONDS: u64 = 86_400;
    const MAX_MEMORY_MB: u64 = 1 << 20;

    /// The engine's budget limits.
    pub fn limits(&self) -> automate_engine::BudgetLimits {
        automate_engine::BudgetLimits {
            max_objects: self.max_objects,
            max_events: self.max_events,
            max_time: std::time::Duration::from_secs(self.max_seconds),
            max_memory: self.max_memory_mb.saturating_mul(1 << 20),
        }
    }

    /// Every key between 1 and its maximum: the keys that are not, as
    /// `engine.KEY: ...` messages.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, v, max) in [
            ("max_objects", self.max_objects, Self::MAX_OBJECTS),
            ("max_events", self.max_events, Self::MAX_EVENTS),
            ("max_seconds", self.max_seconds, Self::MAX_SECONDS),
            ("max_memory_mb", self.max_memory_mb, Self::MAX_MEMORY_MB),
        ] {
            if v == 0 || v > max {
                out.push(format!("engine.{key}: {v} is not between 1 and {max}"));
            }
        }
        out
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        let l = automate_engine::BudgetLimits::default();
        EngineConfig {
            max_objects: l.max_objects,
            max_events: l.max_events,
            max_seconds: l.max_time.as_secs(),
            max_memory_mb: l.max_memory >> 20,
        }
    }
}

/// The most event handler threads.
pub const MAX_WORKERS: usize = 256;
/// The largest `queue.capacity` (events in the backlog).
pub const MAX_QUEUE_CAPACITY: usize = 10_000_000;
/// The largest `queue.batch_max` (events in one group commit).
pub const MAX_BATCH: usize = 100_000;
/// The longest `queue.batch_wait_ms`.
pub const MAX_BATCH_WAIT_MS: u64 = 60_000;
/// The longest `log.stats_interval_secs` (a day).
pub const MAX_STATS_INTERVAL_SECS: u64 = 86_400;

/// One problem [`Config::validate`] found: the field path
/// (`providers[2].catcher.rate`), the line it is on (0 when unknown) and
/// what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The key's path from the top of the file: `queue.capacity`,
    /// `providers[2].catcher.rate`.
    pub field: String,
    /// The 1-based line of the key in the file; 0 when unknown.
    pub line: u64,
    /// What is wrong, e.g. `100000 is out of range 1..=256`.
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem of a configuration, one a line: `path:line: field: message`
/// (`path: field: message` when the line is unknown).
fn issues_text(path: &str, issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues
        .iter()
        .map(|i| match i.line {
            0 => format!("{path}: {i}"),
            n => format!("{path}:{n}: {i}"),
        })
        .collect();
    lines.join("\n")
}

/// Why the configuration cannot be used. `line`/`column` are 1-based, 0 when
/// unknown.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (missing, unreadable, not UTF-8).
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file as given.
        path: String,
        /// What the read returned.
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or YAML of the wrong shape: an unknown key, a missing
    /// `providers`, a string where a number belongs (serde's message).
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file (or the name given to [`Config::from_yaml`]).
        path: String,
        /// Where the parser stopped (1-based; 0 when unknown).
        line: u64,
        /// Where the parser stopped (1-based; 0 when unknown).
        column: u64,
        /// The parser's message, first line only.
        message: String,
    },
    /// The file as a whole is refused (larger than 4 MiB).
    #[error("{path}: {message}")]
    Invalid {
        /// The file (or the name given to [`Config::from_yaml`]).
        path: String,
        /// What is wrong: `larger than 4194304 bytes`.
        message: String,
    },
    /// Every problem the checks beyond types found, all at once.
    #[error("{}", issues_text(path, issues))]
    Issues {
        /// The file (or the name given to [`Config::from_yaml`]).
        path: String,
        /// The problems, in the order [`Config::validate`] found them.
        issues: Vec<ConfigIssue>,
    },
}

/// Files larger than this are refused.
const MAX_CONFIG_BYTES: usize = 4 << 20;

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Config::load_with_token(path, None)
    }

    /// Reads and checks a configuration file, with `api.token` replaced by
    /// `token` when it is given and not empty (before the checks: the
    /// http catcher needs a token). The command line passes the
    /// `AUTOMATE_API_TOKEN` environment variable; the library reads none.
    pub fn load_with_token(
        path: impl AsRef<Path>,
        token: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: shown.clone(),
            source,
        })?;
        let mut cfg = Config::parse(&text, &shown)?;
        if let Some(base) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            cfg.resolve_paths(base);
        }
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            cfg.api.token = token.to_string();
        }
        cfg.checked(&text, &shown)
    }

    /// Parses and checks configuration text; `name` is used in errors.
    pub fn from_yaml(text: &str, name: &str) -> Result<Config, ConfigError> {
        Config::parse(text, name)?.checked(text, name)
    }

    /// `self` when [`Config::validate`] finds nothing, else every issue
    /// with its line in `text`.
    fn checked(self, text: &str, name: &str) -> Result<Config, ConfigError> {
        let mut issues = self.validate();
        if issues.is_empty() {
            return Ok(self);
        }
        let lines = lines::Lines::of(text, yaml_options());
        for i in &mut issues {
            i.line = lines.line_of(&i.field);
        }
        Err(ConfigError::Issues {
            path: name.to_string(),
            issues,
        })
    }

    /// Parses without [`Config::validate`].
    fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid {
                path: name.to_string(),
                message: format!("larger than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            ConfigError::Syntax {
                path: name.to_string(),
                line,
                column,
                message: first_line(&e.to_string()),
            }
        })
    }

    /// Checks what serde cannot: names (not empty, printable, unique
    /// regardless of case) and numbers (each within its bounds). Returns
    /// every problem, not only the first (their lines are 0 here; loading
    /// fills them in).
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut issue = |field: String, message: String| {
            issues.push(ConfigIssue {
                field,
                line: 0,
                message,
            })
        };
        if self.providers.is_empty() {
            issue("providers".into(), "at least one provider is needed".into());
        }
        let mut names: Vec<String> = Vec::new();
        let mut queues = HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            for (field, v) in [
                ("name", &p.provider.name),
                ("type", &p.provider.kind),
                ("hostname", &p.provider.hostname),
                ("userid", &p.provider.userid),
            ] {
                if let Err(m) = check_name(v, field == "userid") {
                    issue(format!("{at}.{field}"), m);
                }
            }
            let folded = p.provider.name.trim().to_lowercase();
            if let Some(j) = names.iter().position(|n| *n == folded) {
                issue(
                    format!("{at}.name"),
                    format!(
                        "provider [{}] is configured twice (providers[{j}].name; names are compared ignoring case)",
                        p.provider.name
                    ),
                );
            }
            names.push(folded);
            for (j, f) in p.filter.iter().enumerate() {
                if let Err(m) = check_name(f, false) {
                    issue(format!("{at}.filter[{j}]"), m);
                }
            }
            for (field, m) in p.catcher.check() {
                issue(format!("{at}.catcher.{field}"), m);
            }
            match &p.catcher {
                CatcherConfig::Amqp(a) => {
                    let q = a.queue_name(&p.provider.name);
                    if !queues.insert((a.url.clone(), q.to_lowercase())) {
                        issue(
                            format!("{at}.catcher.queue"),
                            format!("queue [{q}] is already consumed by another provider"),
                        );
                    }
                }
                CatcherConfig::Http(_) if self.api.token.is_empty() => issue(
                    format!("{at}.catcher"),
                    "the http catcher needs api.token (or AUTOMATE_API_TOKEN)".into(),
                ),
                _ => {}
            }
        }
        let mut bound = |field: &str, v: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&v) {
                issue(field.into(), format!("{v} is out of range {lo}..={hi}"));
            }
        };
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        bound("workers", n(self.workers), 1, n(MAX_WORKERS));
        if let Some(c) = &self.cluster {
            bound("cluster.partitions", u64::from(c.partitions), 1, 1024);
            bound("cluster.lease_ttl_s", c.lease_ttl_s, 2, 600);
            bound("cluster.ack_wait_s", c.ack_wait_s, 1, 3600);
            bound(
                "cluster.max_deliver",
                u64::try_from(c.max_deliver).unwrap_or(0),
                1,
                1000,
            );
            bound(
                "cluster.region",
                u64::try_from(c.region).unwrap_or(0),
                0,
                9999,
            );
            bound("cluster.connect_timeout_s", c.connect_timeout_s, 1, 300);
            bound("cluster.keepalive_s", c.keepalive_s, 1, 3600);
            bound("cluster.pool_wait_s", c.pool_wait_s, 1, 600);
            bound(
                "cluster.statement_timeout_s",
                c.statement_timeout_s,
                1,
                86_400,
            );
            bound(
                "cluster.call_timeout_s",
                c.call_timeout_s,
                c.statement_timeout_s.clamp(1, 86_400),
                86_400,
            );
        }
        bound(
            "queue.capacity",
            n(self.queue.capacity),
            1,
            n(MAX_QUEUE_CAPACITY),
        );
        bound("queue.batch_max", n(self.queue.batch_max), 1, n(MAX_BATCH));
        bound(
            "queue.batch_wait_ms",
            self.queue.batch_wait_ms,
            0,
            MAX_BATCH_WAIT_MS,
        );
        bound(
            "log.stats_interval_secs",
            self.log.stats_interval_secs,
            0,
            MAX_STATS_INTERVAL_SECS,
        );
        if self.api.listen.parse::<std::net::SocketAddr>().is_err()
            && !self.api.listen.contains(':')
            || check_name(&self.api.listen, false).is_err()
        {
            issue(
                "api.listen".into(),
                format!("{:?} is not host:port", self.api.listen),
            );
        }
        if let Some(c) = self.api.token.chars().find(|c| c.is_control()) {
            issue(
                "api.token".into(),
                format!("holds the control character {c:?} (a header cannot carry it)"),
            );
        }
        if self.log.dir.as_os_str().as_encoded_bytes().contains(&0) {
            issue("log.dir".into(), "holds a NUL byte".into());
        }
        // `field: message` texts of the api and engine checks.
        let mut others: Vec<String> = self.api.limits.problems();
        if let Some(url) = &self.api.public_url {
            others.extend(check_public_url(url).err());
        }
        others.extend(self.engine.problems());
        others.extend(self.methods.problems());
        others.extend(
            self.events
                .trace
                .problems()
                .into_iter()
                .map(|(field, m)| format!("events.trace.{field}: {m}")),
        );
        if let Some(c) = &self.cluster {
            others.extend(c.problems());
        }
        for m in others {
            match m.split_once(": ") {
                Some((field, message)) => issue(field.into(), message.into()),
                None => issue("config".into(), m),
            }
        }
        issues
    }

    /// Makes relative file paths (`log.dir`, `jsonl` catcher paths other
    /// than `-`) relative to `base`, the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.log.dir.is_relative() {
            self.log.dir = base.join(&self.log.dir);
        }
        if let Some(key) = self.password.key_file.as_mut().filter(|k| k.is_relative()) {
            *key = base.join(&*key);
        }
        for p in &mut self.providers {
            if let CatcherConfig::Jsonl(j) = &mut p.catcher {
                if j.path != "-" && Path::new(&j.path).is_relative() {
                    j.path = base.join(&j.path).display().to_string();
                }
            }
        }
    }

    /// Builds every provider's catcher, in order, all sending into `out`
    /// (the `http` ones served with `api.token`).
    pub fn build_catchers(&self, out: CaughtSender) -> Result<Catchers, CatcherError> {
        let catchers = self
            .providers
            .iter()
            .map(|p| p.build_catcher(out.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Catchers::new(catchers, &self.api.token))
    }

    /// The provider called `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.provider.name == name)
    }
}

/// The parser's budgets for a config file.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 64,
            max_nodes: 200_000,
        },
    }
}

/// The first line of a (possibly multi-line, snippet-decorated) message,
/// without the parser's own `error: line N column M: ` prefix (the error
/// shows `path:line:column` already).
fn first_line(s: &str) -> String {
    let line = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(s);
    let line = line.strip_prefix("error: ").unwrap_or(line);
    if let Some(rest) = line.strip_prefix("line ") {
        let mut words = rest.splitn(4, ' ');
        let (n, col, m) = (words.next(), words.next(), words.next());
        if let (Some(n), Some("column"), Some(m), Some(tail)) = (n, col, m, words.next()) {
            if n.bytes().all(|b| b.is_ascii_digit()) && m.ends_with(':') {
                return tail.to_string();
            }
        }
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_everything_but_providers() {
        let cfg = Config::from_yaml(
            "providers:\n  - name: r\n    type: RHEVM\n    hostname: r.example.com\n    userid: admin@internal\n    catcher: {kind: simulate}\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(cfg.queue, QueueConfig::default());
        assert_eq!(cfg.api.listen, "127.0.0.1:3000");
        assert_eq!(cfg.log.format, LogFormat::Text);
        assert!(cfg.workers >= 1);
        assert_eq!(cfg.providers[0].catcher.kind(), "simulate");
    }

    #[test]
    fn the_cluster_section_has_defaults_and_is_checked() {
        let base = "providers:\n  - name: r\n    type: RHEVM\n    hostname: r.example.com\n    userid: admin@internal\n    catcher: {kind: simulate}\n";
        let cfg = Config::from_yaml(
            &format!("{base}cluster: {{postgres: \"host=127.0.0.1 dbname=test\", nats: \"nats://127.0.0.1:4222\", node: n1}}\n"),
            "t.yaml",
        )
        .unwrap();
        let c = cfg.cluster.unwrap();
        assert_eq!(
            (c.schema.as_str(), c.prefix.as_str(), c.node.as_str()),
            ("automate", "automate", "n1")
        );
        assert_eq!(
            (c.partitions, c.lease_ttl_s, c.max_deliver, c.region),
            (16, 10, 5, 1)
        );
        assert_eq!(
            (
                c.connect_timeout_s,
                c.keepalive_s,
                c.pool_wait_s,
                c.statement_timeout_s,
                c.call_timeout_s
            ),
            (5, 10, 10, 30, 60)
        );
        assert!(Config::from_yaml(base, "t.yaml").unwrap().cluster.is_none());
        let err = Config::from_yaml(
            &format!("{base}cluster:\n  postgres: \"\"\n  nats: n\n  node: n1\n  schema: \"a;drop\"\n  partitions: 0\n"),
            "bad.yaml",
        )
        .err();
        let Some(ConfigError::Issues { issues, .. }) = &err else {
            panic!("{err:?}");
        };
        let got: Vec<(&str, u64)> = issues.iter().map(|i| (i.field.as_str(), i.line)).collect();
        assert_eq!(
            got,
            [
                ("cluster.partitions", 12),
                ("cluster.schema", 11),
                ("cluster.postgres", 8)
            ]
        );
        // A call may not end before its statements may.
        let err = Config::from_yaml(
            &format!("{base}cluster:\n  postgres: p\n  nats: n\n  node: n1\n  statement_timeout_s: 30\n  call_timeout_s: 10\n"),
            "bad.yaml",
        )
        .err();
        let Some(ConfigError::Issues { issues, .. }) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].field, "cluster.call_timeout_s");
        assert!(issues[0].message.contains("30..="), "{}", issues[0].message);
    }

    /// Every number is bounded, every name checked, and all problems come
    /// back at once, each with its field path and line.
    #[test]
    fn every_issue_is_reported_with_its_line() {
        let text = "providers:\n  - name: a\n    type: RHEVM\n    hostname: h\n    userid: u\n    catcher: {kind: simulate, rate: 1e-300, vms: 100000000}\n  - name: A\n    type: RHEVM\n    hostname: \"h\\nx\"\n    userid: u\n    catcher: {kind: simulate, start: \"99999-01-01T00:00:00Z\"}\n  - name: \"b\\0\"\n    type: OPENSTACK\n    hostname: h\n    userid: u\n    catcher: {kind: amqp, prefetch: 0}\nworkers: 100000\nqueue: {capacity: 0, batch_max: 1000000000, batch_wait_ms: 99999999}\nlog: {stats_interval_secs: 18446744073709551615}\n";
        let err = Config::from_yaml(text, "bad.yaml").err();
        let Some(ConfigError::Issues { issues, .. }) = &err else {
            panic!("{err:?}");
        };
        let got: Vec<(&str, u64)> = issues.iter().map(|i| (i.field.as_str(), i.line)).collect();
        assert_eq!(
            got,
            [
                ("providers[0].catcher.rate", 6),
                ("providers[0].catcher.vms", 6),
                ("providers[1].hostname", 9),
                ("providers[1].name", 7),
                ("providers[1].catcher.start", 11),
                ("providers[2].name", 12),
                ("providers[2].catcher.prefetch", 16),
                ("workers", 17),
                ("queue.capacity", 18),
                ("queue.batch_max", 18),
                ("queue.batch_wait_ms", 18),
                ("log.stats_interval_secs", 19),
            ]
        );
        let shown = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            shown.contains("bad.yaml:7: providers[1].name: provider [A] is configured twice"),
            "{shown}"
        );
        assert_eq!(shown.lines().count(), 12, "{shown}");
    }

    #[test]
    fn engine_budget_is_read_and_bounded() {
        let base = "providers:\n  - name: r\n    type: RHEVM\n    hostname: h\n    userid: u\n    catcher: {kind: simulate}\n";
        let cfg = Config::from_yaml(base, "t.yaml").unwrap();
        assert_eq!(
            cfg.engine.limits(),
            automate_engine::BudgetLimits::default()
        );
        let cfg = Config::from_yaml(
            &format!("{base}engine: {{max_objects: 50, max_seconds: 3}}\n"),
            "t.yaml",
        )
        .unwrap();
        assert_eq!(cfg.engine.limits().max_objects, 50);
        assert_eq!(cfg.engine.limits().max_time.as_secs(), 3);
        assert_eq!(cfg.engine.max_events, EngineConfig::default().max_events);
        for bad in [
            "max_objects: 0",
            "max_seconds: 100000000",
            "max_memory_mb: 0",
        ] {
            let err = Config::from_yaml(&format!("{base}engine: {{{bad}}}\n"), "t.yaml")
                .unwrap_err()
                .to_string();
            assert!(err.contains("engine.max_"), "{bad}: {err}");
        }
        assert!(
            Config::from_yaml(&format!("{base}engine: {{max_object: 5}}\n"), "t.yaml").is_err()
        );
    }

    /// `password.key_file` is relative to the config file, wins over
    /// `KEY_ROOT`, and a bad one is an error naming the file.
    #[test]
    fn password_key_file_is_read_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("certs");
        std::fs::create_dir_all(&certs).expect("dir");
        let key = automate_password::V2Key::from_bytes([3; 32], None, "k");
        std::fs::write(certs.join("v2_key"), key.to_yaml()).expect("written");
        let path = dir.path().join("automate.yaml");
        let base = "providers:\n  - {name: r, type: RHEVM, hostname: h, userid: u, catcher: {kind: simulate}}\n";
        std::fs::write(
            &path,
            format!("{base}password: {{key_file: certs/v2_key}}\n"),
        )
        .expect("w");
        let cfg = Config::load(&path).expect("valid");
        assert_eq!(cfg.password.key_file, Some(certs.join("v2_key")));
        let loaded = cfg
            .password
            .load_key(Some(Path::new("/nowhere")))
            .expect("key");
        assert_eq!(
            loaded.expect("some").decrypt(&key.encrypt("x")),
            Ok("x".into())
        );
        // Absent: KEY_ROOT's, else none.
        let none = Config::from_yaml(base, "t.yaml").expect("valid");
        assert_eq!(none.password.load_key(None), Ok(None));
        assert!(none.password.load_key(Some(&certs)).expect("key").is_some());
        let err = none
            .password
            .load_key(Some(Path::new("/nowhere")))
            .unwrap_err();
        assert!(err.to_string().contains("/nowhere/v2_key"), "{err}");
        std::fs::write(&path, format!("{base}password: {{key_file: missing}}\n")).expect("w");
        let err = Config::load(&path)
            .expect("valid")
            .password
            .load_key(None)
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(Config::from_yaml(&format!("{base}password: {{keyfile: x}}\n"), "t.yaml").is_err());
    }

    /// The token the command line passes (`AUTOMATE_API_TOKEN`) replaces
    /// `api.token` before the checks; an empty one does not.
    #[test]
    fn a_given_token_replaces_api_token_before_the_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("automate.yaml");
        let text = "providers:\n  - {name: r, type: RHEVM, hostname: h, userid: u, catcher: {kind: http}}\n";
        std::fs::write(&path, text).expect("written");
        let err = Config::load(&path).expect_err("the http catcher needs a token");
        assert!(err.to_string().contains("api.token"), "{err}");
        assert!(Config::load_with_token(&path, Some("")).is_err());
        let cfg = Config::load_with_token(&path, Some("s3cr3t")).expect("valid");
        assert_eq!(cfg.api.token, "s3cr3t");
        std::fs::write(&path, format!("{text}api: {{token: from-file}}\n")).expect("written");
        assert_eq!(Config::load(&path).expect("valid").api.token, "from-file");
        let cfg = Config::load_with_token(&path, Some("s3cr3t")).expect("valid");
        assert_eq!(cfg.api.token, "s3cr3t");
    }

    #[test]
    fn errors_name_the_line() {
        let err = Config::from_yaml(
            "providers:\n  - name: r\n    type: RHEVM\n    hostname: h\n    userid: u\n    catcher: {kind: teleport}\n",
            "t.yaml",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("t.yaml:"), "{text}");
        match err {
            ConfigError::Syntax { line, .. } => assert!(line >= 1, "{text}"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn log_rotation_keys_parse_with_units_and_are_bounded() {
        let base = "providers:\n  - {name: r, type: RHEVM, hostname: h, userid: u, catcher: {kind: simulate}}\n";
        let cfg = Config::from_yaml(
            &format!("{base}log: {{max_size: 64KiB, keep: 3}}\n"),
            "t.yaml",
        )
        .unwrap();
        assert_eq!((cfg.log.max_size, cfg.log.keep), (LogSize(64 << 10), 3));
        let cfg =
            Config::from_yaml(&format!("{base}log: {{max_size: 1000000}}\n"), "t.yaml").unwrap();
        assert_eq!((cfg.log.max_size, cfg.log.keep), (LogSize(1_000_000), 5));
        let cfg = Config::from_yaml(base, "t.yaml").unwrap();
        assert_eq!(cfg.log.max_size, LogSize(100 << 20));
        for (bad, says) in [
            ("max_size: 10 parsecs", "unknown unit"),
            ("max_size: 100", "outside"),
            ("max_size: 2TiB", "outside"),
            ("max_size: inf", "unknown unit"),
            ("keep: 5000", "log.keep"),
        ] {
            let err = Config::from_yaml(&format!("{base}log: {{{bad}}}\n"), "t.yaml")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(says) && err.starts_with("t.yaml:"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("100 MB"), Ok(100_000_000));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        for bad in ["", "MiB", "10 parsecs", "1e999", "-5", "inf", "."] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
