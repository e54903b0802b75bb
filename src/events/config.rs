//! `automate.yaml`: providers and their catchers, workers, the event queue
//! and storm control, the API listener and the logs. `docs/configuration.md`
//! describes every key; `automate.example.yaml` is a commented example.
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

use super::catchers::{Catcher, CatcherConfig, CatcherError, CaughtSender, Filter};
use super::Provider;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub providers: Vec<ProviderConfig>,
    /// Event handler threads.
    #[serde(default = "default_workers")]
    pub workers: usize,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub engine: EngineConfig,
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
    /// requests. The `AUTOMATE_API_TOKEN` environment variable overrides it.
    pub token: String,
    /// What clients reach the API at (`https://automate.example.com`):
    /// every `href` starts with it. Unset, `href`s are paths (`/api/...`);
    /// the request's `Host` header is never used.
    pub public_url: Option<String>,
    /// What one client can make the server hold: connections, time, bytes,
    /// rows.
    pub limits: ApiLimits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:3000".into(),
            token: String::new(),
            public_url: None,
            limits: ApiLimits::default(),
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
/// ([`crate::engine::budget`]).
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
    pub fn limits(&self) -> crate::engine::BudgetLimits {
        crate::engine::BudgetLimits {
            max_objects: self.max_objects,
            max_events: self.max_events,
            max_time: std::time::Duration::from_secs(self.max_seconds),
            max_memory: self.max_memory_mb.saturating_mul(1 << 20),
        }
    }

    /// Every key between 1 and its maximum.
    fn validate(&self) -> Result<(), String> {
        for (key, v, max) in [
            ("max_objects", self.max_objects, Self::MAX_OBJECTS),
            ("max_events", self.max_events, Self::MAX_EVENTS),
            ("max_seconds", self.max_seconds, Self::MAX_SECONDS),
            ("max_memory_mb", self.max_memory_mb, Self::MAX_MEMORY_MB),
        ] {
            if v == 0 || v > max {
                return Err(format!("engine.{key}: {v} is not between 1 and {max}"));
            }
        }
        Ok(())
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        let l = crate::engine::BudgetLimits::default();
        EngineConfig {
            max_objects: l.max_objects,
            max_events: l.max_events,
            max_seconds: l.max_time.as_secs(),
            max_memory_mb: l.max_memory >> 20,
        }
    }
}

/// Why the configuration cannot be used. `line`/`column` are 1-based, 0 when
/// unknown.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Files larger than this are refused.
const MAX_CONFIG_BYTES: usize = 4 << 20;

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
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
        if let Ok(token) = std::env::var("AUTOMATE_API_TOKEN") {
            if !token.is_empty() {
                cfg.api.token = token;
            }
        }
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: shown,
            message,
        })?;
        Ok(cfg)
    }

    /// Parses and checks configuration text; `name` is used in errors.
    pub fn from_yaml(text: &str, name: &str) -> Result<Config, ConfigError> {
        let cfg = Config::parse(text, name)?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: name.to_string(),
            message,
        })?;
        Ok(cfg)
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
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_depth: 64,
                max_nodes: 200_000,
            },
        };
        serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            ConfigError::Syntax {
                path: name.to_string(),
                line,
                column,
                message: first_line(&e.to_string()),
            }
        })
    }

    /// Checks what serde cannot: unique, non-empty names, sane numbers.
    pub fn validate(&self) -> Result<(), String> {
        if self.providers.is_empty() {
            return Err("providers: at least one provider is needed".into());
        }
        let mut names = HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            for (field, v) in [
                ("name", &p.provider.name),
                ("type", &p.provider.kind),
                ("hostname", &p.provider.hostname),
            ] {
                if v.trim().is_empty() {
                    return Err(format!("{at}.{field}: empty"));
                }
            }
            if !names.insert(p.provider.name.as_str()) {
                return Err(format!(
                    "{at}.name: provider [{}] is configured twice",
                    p.provider.name
                ));
            }
        }
        let mut queues = HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            match &p.catcher {
                CatcherConfig::Amqp(a) => {
                    let q = a.queue_name(&p.provider.name);
                    if !queues.insert((a.url.clone(), q.clone())) {
                        return Err(format!(
                            "providers[{i}].catcher.queue: queue [{q}] is already consumed by another provider"
                        ));
                    }
                }
                CatcherConfig::Http(_) if self.api.token.is_empty() => {
                    return Err(format!(
                        "providers[{i}].catcher: the http catcher needs api.token (or AUTOMATE_API_TOKEN)"
                    ));
                }
                _ => {}
            }
        }
        if self.workers == 0 {
            return Err("workers: must be at least 1".into());
        }
        if self.queue.capacity == 0 {
            return Err("queue.capacity: must be at least 1".into());
        }
        if self.queue.batch_max == 0 {
            return Err("queue.batch_max: must be at least 1".into());
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err()
            && !self.api.listen.contains(':')
        {
            return Err(format!(
                "api.listen: {:?} is not host:port",
                self.api.listen
            ));
        }
        if let Some(url) = &self.api.public_url {
            check_public_url(url)?;
        }
        let problems = self.api.limits.problems();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        self.engine.validate()?;
        Ok(())
    }

    /// Makes relative file paths (`log.dir`, `jsonl` catcher paths other
    /// than `-`) relative to `base`, the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.log.dir.is_relative() {
            self.log.dir = base.join(&self.log.dir);
        }
        for p in &mut self.providers {
            if let CatcherConfig::Jsonl(j) = &mut p.catcher {
                if j.path != "-" && Path::new(&j.path).is_relative() {
                    j.path = base.join(&j.path).display().to_string();
                }
            }
        }
    }

    /// The provider called `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.provider.name == name)
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
    fn engine_budget_is_read_and_bounded() {
        let base = "providers:\n  - name: r\n    type: RHEVM\n    hostname: h\n    userid: u\n    catcher: {kind: simulate}\n";
        let cfg = Config::from_yaml(base, "t.yaml").unwrap();
        assert_eq!(cfg.engine.limits(), crate::engine::BudgetLimits::default());
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
