//! `automate run`: the whole event pipeline (catchers, durable queue,
//! workers, Automate) from `automate.yaml`, until SIGTERM or SIGINT (or,
//! with `--until-idle`, until the catchers' input is exhausted and the
//! queue is empty); then a graceful shutdown and the counts (exit 1 with
//! `--until-idle` when an event ended with an error).
//!
//! At start it refuses a datastore root that is missing, holds no domain
//! or does not validate ([`super::compose::checked_engine`]), then says
//! where the API listens and what runs. While it runs, a change under the
//! datastore root reloads it ([`super::watch`]); SIGHUP reloads it too and
//! reopens the log files (logrotate); SIGTERM and SIGINT drain and stop.
//!
//! Logs go to `<log.dir>/evm.log` (target `evm`) and
//! `<log.dir>/automation.log` (target `automation`) in ManageIQ's line
//! format, `[----] I, [2026-11-24T10:00:00.000123 #4242:1a]  INFO -- : ...`,
//! or as JSON lines with `--log-format json` (or `log.format: json`).
//! `RUST_LOG` filters (default: `info` for both targets); warnings and
//! errors of every target also go to stderr. The log files are written
//! through a buffer flushed every [`LOG_FLUSH`] and at exit (a line costs no
//! system call of its own; a crash loses at most the last
//! [`LOG_FLUSH`] of lines, never stored data), rotated by size
//! (`log.max_size`, `log.keep`), and a failed write (a full disk) is
//! counted and reported ([`super::logfile`]).

use super::logfile::{Dropped, LogFile, Rotation};
use super::{Global, LogFormat};
use anyhow::Context;
use automate_events::config::{self, Config};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// `automate run`'s configuration file and how it ends.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, default_value = "automate.yaml")]
    pub config: PathBuf,
    /// Stop once every catcher has ended (a `jsonl` file read, a `simulate`
    /// count reached) and the queue is empty, instead of waiting for a
    /// signal.
    #[arg(long)]
    pub until_idle: bool,
    /// Print the counts as JSON.
    #[arg(long)]
    pub json: bool,
    /// Benchmark only: instead of running the pipeline, measure the floor
    /// (the `simulate` providers' events only parsed, looked up in hash maps
    /// and counted, on `workers` threads) and print it as JSON.
    #[arg(long, hide = true)]
    pub floor: bool,
}

/// How often the log files' buffers are written out.
pub const LOG_FLUSH: Duration = Duration::from_millis(100);

type LogOut = Arc<Mutex<LogFile>>;

/// The log files [`init_file_logging`] opened and their count of dropped
/// lines: whoever set logging up flushes them at exit and reports the
/// count.
#[derive(Clone)]
pub(super) struct Logs {
    files: Arc<[LogOut]>,
    dropped: Dropped,
}

impl Logs {
    /// Writes out the log files' buffers.
    pub(super) fn flush(&self) {
        flush(&self.files);
    }

    /// Lines dropped so far because a write failed (all the files).
    pub(super) fn dropped_lines(&self) -> u64 {
        self.dropped.lines()
    }

    /// Writes out the buffers and opens the files again at their paths
    /// (SIGHUP: after `logrotate` renamed them, new files are started).
    pub(super) fn reopen(&self) {
        for f in self.files.iter() {
            if let Ok(mut f) = f.lock() {
                f.reopen_path();
            }
        }
    }
}

fn flush(files: &[LogOut]) {
    for f in files {
        if let Ok(mut f) = f.lock() {
            let _ = f.flush();
        }
    }
}

/// Runs the pipeline until a signal (or idle with `--until-idle`), shuts
/// it down and prints the counts; exits 1 when the object store took no
/// more writes or a catcher stopped with an error. Fails on a bad
/// configuration.
pub fn run(global: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(global, &args.config)?;
    super::password::install_key(&cfg)?;
    if args.floor {
        return floor(&cfg);
    }
    let format = match (global.log_format, cfg.log.format) {
        (LogFormat::Json, _) | (_, config::LogFormat::Json) => LogFormat::Json,
        _ => LogFormat::Text,
    };
    let logs = init_file_logging(
        &cfg.log.dir,
        format,
        Rotation {
            max_size: cfg.log.max_size.0,
            keep: cfg.log.keep,
        },
    )?;
    let result = run_inner(global, args, &cfg, &logs);
    logs.flush();
    result
}

fn run_inner(
    global: &Global,
    args: RunArgs,
    cfg: &Config,
    logs: &Logs,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let started = Instant::now();
    let stats = rt.block_on(async {
        let mut signals = Signals::new()?;
        let super::compose::Started {
            pipeline,
            reloader,
            listening,
            cluster,
            outbound,
            pruner,
        } = super::compose::start(cfg, &global.datastore, &global.db).await?;
        tracing::info!(target: "evm", "MIQ(automate run) started: {} providers, {} workers, {} leases of a previous run released", cfg.providers.len(), cfg.workers, pipeline.released);
        // Hot reload: a change under the datastore root reloads it.
        let _watch = match super::watch::start(&global.datastore, reloader.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(target: "evm", "MIQ(automate run) the datastore is not watched ({e:#}): reload it with SIGHUP or `automate datastore reload`");
                None
            }
        };
        announce(global, cfg, listening, &reloader, args.json)?;
        // A store that failed (not a full disk, which waits for space)
        // ends the run: only a restart opens it again.
        loop {
            let sig = if args.until_idle {
                tokio::select! {
                    _ = pipeline.wait_idle() => break,
                    sig = signals.next() => sig,
                }
            } else {
                tokio::select! {
                    _ = pipeline.wait_store_failed() => break,
                    sig = signals.next() => sig,
                }
            };
            match sig {
                Sig::Stop(name) => {
                    tracing::info!(target: "evm", "MIQ(automate run) {name} received");
                    break;
                }
                Sig::Hangup => hangup(&reloader, logs).await,
            }
        }
        tracing::info!(target: "evm", "MIQ(automate run) shutting down: draining the queue");
        // A second SIGTERM or SIGINT while draining exits at once: what
        // was not handled stays queued (durably) for the next start.
        let shutdown = pipeline.shutdown();
        tokio::pin!(shutdown);
        let stats = loop {
            tokio::select! {
                stats = &mut shutdown => break stats,
                sig = signals.next() => match sig {
                    Sig::Hangup => logs.reopen(),
                    Sig::Stop(_) => {
                        tracing::warn!(target: "evm", "MIQ(automate run) second signal: exiting without draining; queued events are delivered at the next start");
                        logs.flush();
                        std::process::exit(130);
                    }
                },
            }
        };
        // The pruner stopped (it holds the store).
        drop(pruner);
        // The node's partitions and leases given up, its connections
        // closed: after the drain, which acked what it handled.
        drop(cluster);
        // The runner (kept by the reloader) gives the store back.
        drop(outbound);
        tracing::info!(target: "evm", "MIQ(automate run) stopped: {stats:?}");
        anyhow::Ok(stats)
    })?;
    let secs = started.elapsed().as_secs_f64();
    // The last lines are written out first: the drop count is final.
    logs.flush();
    let log_dropped = logs.dropped_lines();
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(&stats)?;
        v["seconds"] = serde_json::json!(secs);
        v["log_lines_dropped"] = serde_json::json!(log_dropped);
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "run: {} caught, {} skipped, {} rejected, {} queued, {} dropped, {} handled ({} duplicates, {} re-delivered), {} errors ({} failed and re-queued, {} dead-lettered), {} retries, {} left in the queue, {} log lines dropped, in {:.2} s ({:.0} events/s)",
            stats.caught,
            stats.skipped,
            stats.rejected,
            stats.enqueued,
            stats.dropped,
            stats.handled,
            stats.duplicates,
            stats.redelivered,
            stats.errors,
            stats.failed,
            stats.dead_lettered,
            stats.retries,
            stats.queued,
            log_dropped,
            secs,
            stats.handled as f64 / secs.max(1e-9)
        )?;
    }
    if let Some(e) = &stats.store_error {
        eprintln!("error: the object store took no more writes: {e}");
        eprintln!("  the {} events not handled stay queued in the file and are delivered at the next start; see docs/operations.md", stats.queued);
        return Ok(ExitCode::from(1));
    }
    if let Some(e) = &stats.catcher_error {
        eprintln!("error: a catcher stopped: {e}");
        return Ok(ExitCode::from(1));
    }
    if args.until_idle && stats.errors > 0 {
        eprintln!(
            "error: {} event{} ended with an error (evm.log says which)",
            stats.errors,
            if stats.errors == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Says on the terminal where the API listens and what runs: the
/// providers and their catchers, the workers, the datastore and the
/// store. On stdout, or on stderr with `--json` (stdout is then the
/// counts alone).
fn announce(
    global: &Global,
    cfg: &Config,
    listening: Option<std::net::SocketAddr>,
    reloader: &automate_control::Reloader,
    json: bool,
) -> anyhow::Result<()> {
    let mut text = String::new();
    if let Some(addr) = listening {
        text.push_str(&format!("automate run: listening on http://{addr}/api\n"));
    }
    let providers: Vec<String> = cfg
        .providers
        .iter()
        .map(|p| format!("{} ({} catcher)", p.provider.name, p.catcher.kind()))
        .collect();
    // In cluster mode there is no store file: the node and where its
    // cluster is instead (no password shown).
    let db = match &cfg.cluster {
        Some(c) => format!(
            "cluster node {} (PostgreSQL {} schema {}, NATS {} prefix {})",
            c.node,
            super::cluster::backend::shown_url(&c.postgres),
            c.schema,
            super::cluster::backend::shown_url(&c.nats),
            c.prefix
        ),
        None => format!("db {}", global.db.display()),
    };
    text.push_str(&format!(
        "automate run: {} provider{}: {}; {} worker{}; datastore {} ({} domain{}); {}\n",
        providers.len(),
        if providers.len() == 1 { "" } else { "s" },
        providers.join(", "),
        cfg.workers,
        if cfg.workers == 1 { "" } else { "s" },
        global.datastore.display(),
        reloader.domains(),
        if reloader.domains() == 1 { "" } else { "s" },
        db
    ));
    if json {
        eprint!("{text}");
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// SIGHUP: reloads the datastore, its methods and the control policies
/// (all-or-nothing; the outcome goes to evm.log) and reopens the log files
/// (after `logrotate` renamed them, new ones are started).
async fn hangup(reloader: &Arc<automate_control::Reloader>, logs: &Logs) {
    tracing::info!(target: "evm", "MIQ(automate run) SIGHUP received: reloading the datastore and reopening the log files");
    logs.reopen();
    let reloader = reloader.clone();
    let _ = tokio::task::spawn_blocking(move || reloader.reload_now()).await;
}

/// A signal `run` and `api` act on.
pub(super) enum Sig {
    /// SIGTERM or SIGINT (named): drain and stop.
    Stop(&'static str),
    /// SIGHUP: reload (and reopen the logs).
    Hangup,
}

/// SIGTERM, SIGINT and SIGHUP, registered once (inside the runtime) so
/// that none arriving between two waits is lost.
pub(super) struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers; call inside the Tokio runtime.
    pub(super) fn new() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("handling SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("handling SIGINT")?,
                hup: signal(SignalKind::hangup()).context("handling SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    pub(super) async fn next(&mut self) -> Sig {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Sig::Stop("SIGTERM"),
                _ = self.int.recv() => Sig::Stop("SIGINT"),
                _ = self.hup.recv() => Sig::Hangup,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Sig::Stop("Ctrl-C")
        }
    }
}

/// `run --floor`: [`automate_events::catchers::simulate::floor`] for each
/// `simulate` provider.
fn floor(cfg: &Config) -> anyhow::Result<ExitCode> {
    use automate_events::catchers::CatcherConfig;
    let mut out = std::io::stdout().lock();
    for p in &cfg.providers {
        if let CatcherConfig::Simulate(sim) = &p.catcher {
            let mut sim = sim.clone();
            sim.count = Some(sim.count.unwrap_or(100_000));
            let stats =
                automate_events::catchers::simulate::floor(&sim, &p.provider, cfg.workers.max(1));
            writeln!(out, "{}", serde_json::to_string(&stats)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Installs the global subscriber: evm.log, automation.log, stderr for
/// warnings. Returns the files (written out every [`LOG_FLUSH`] by a
/// thread of their own, and by [`Logs::flush`]).
pub(super) fn init_file_logging(
    dir: &Path,
    format: LogFormat,
    rotation: Rotation,
) -> anyhow::Result<Logs> {
    use tracing_subscriber::EnvFilter;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = matches!(format, LogFormat::Json);
    let dropped = Dropped::default();
    let open = |name: &str, target: &'static str| -> anyhow::Result<LogOut> {
        let path = dir.join(name);
        // The "N log lines dropped" line, in the file's format.
        let notice: super::logfile::Notice = if json {
            Box::new(move |out: &mut Vec<u8>, message: &str| {
                out.extend_from_slice(format_line(Level::WARN, message, true, target).as_bytes())
            })
        } else {
            Box::new(|out: &mut Vec<u8>, message: &str| {
                write_prefix(out, Level::WARN);
                out.extend_from_slice(message.as_bytes());
                out.push(b'\n');
            })
        };
        let f = LogFile::open(&path, rotation, notice, dropped.clone())
            .with_context(|| format!("opening {}", path.display()))?;
        let out: LogOut = Arc::new(Mutex::new(f));
        Ok(out)
    };
    let evm = open("evm.log", "evm")?;
    let automation = open("automation.log", "automation")?;
    let logs = Logs {
        files: Arc::from([evm.clone(), automation.clone()]),
        dropped,
    };
    // The flusher: the buffers reach the files every LOG_FLUSH.
    let files = logs.files.clone();
    let _ = std::thread::Builder::new()
        .name("automate-log-flush".into())
        .spawn(move || loop {
            std::thread::sleep(LOG_FLUSH);
            flush(&files);
        });
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,evm=info,automation=info"));
    let stderr = WarningsOnly(
        tracing_subscriber::fmt::layer()
            .with_writer(super::password::MaskedStderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
    );
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(FileLayer {
            target: "evm",
            out: evm,
            json,
        })
        .with(FileLayer {
            target: "automation",
            out: automation,
            json,
        })
        .with(stderr)
        .try_init();
    Ok(logs)
}

/// A layer that sees only warnings and errors (stderr's). Filtered in
/// `on_event` rather than with a per-layer filter: a per-layer filter makes
/// every callsite's interest "sometimes", so each of the ~50 log lines an
/// event writes would ask every filter again.
struct WarningsOnly<L>(L);

impl<S, L> Layer<S> for WarningsOnly<L>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        if *event.metadata().level() <= Level::WARN {
            self.0.on_event(event, ctx);
        }
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: LayerContext<'_, S>,
    ) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: LayerContext<'_, S>,
    ) {
        self.0.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: LayerContext<'_, S>) {
        self.0.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: LayerContext<'_, S>) {
        self.0.on_exit(id, ctx);
    }

    fn on_close(&self, id: tracing::span::Id, ctx: LayerContext<'_, S>) {
        self.0.on_close(id, ctx);
    }
}

/// Writes the events of one target to a file, one line each.
struct FileLayer {
    target: &'static str,
    out: LogOut,
    json: bool,
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Writes the `message` field straight into the log buffer (text format).
struct WriteMessage<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> Visit for WriteMessage<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = self.out.write_all(value.as_bytes());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.out, "{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for FileLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        if meta.target() != self.target {
            return;
        }
        if self.json {
            let mut msg = Message::default();
            event.record(&mut msg);
            let text = automate_password::sanitize(&msg.0);
            let line = format_line(*meta.level(), &text, self.json, self.target);
            if let Ok(mut out) = self.out.lock() {
                let _ = out.write_all(line.as_bytes());
                out.line_done();
            }
            return;
        }
        // Text: the prefix, then the message formatted in place, with no
        // line built in between.
        if let Ok(mut out) = self.out.lock() {
            let out = &mut *out;
            let start = out.line_start();
            write_prefix(out, *meta.level());
            event.record(&mut WriteMessage { out: &mut *out });
            out.mask_from(start);
            let _ = out.write_all(b"\n");
            out.line_done();
        }
    }
}

/// `[----] I, [2026-11-24T10:00:00.000123 #4242:1a]  INFO -- : `: what a
/// text line starts with, written to `out`. The date and time to the second
/// are formatted once a second per thread.
fn write_prefix(out: &mut impl Write, level: Level) {
    /// Per thread: the second the date was formatted for, the date to the
    /// second (`2026-11-24T10:00:00`), and ` #<pid>:<tid>] `.
    struct Cached {
        sec: i64,
        date: String,
        ids: String,
    }
    thread_local! {
        static CACHED: std::cell::RefCell<Cached> = std::cell::RefCell::new(Cached {
            sec: -1,
            date: String::new(),
            ids: format!(" #{}:{:x}] ", std::process::id(), thread_number()),
        });
    }
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let (sec, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let head: &[u8] = match level {
        Level::ERROR => b"[----] E, [",
        Level::WARN => b"[----] W, [",
        Level::INFO => b"[----] I, [",
        Level::DEBUG => b"[----] D, [",
        Level::TRACE => b"[----] T, [",
    };
    let tail: &[u8] = match level {
        Level::ERROR => b"ERROR -- : ",
        Level::WARN => b" WARN -- : ",
        Level::INFO => b" INFO -- : ",
        Level::DEBUG => b"DEBUG -- : ",
        Level::TRACE => b"TRACE -- : ",
    };
    // `.` and six digits of microseconds.
    let mut digits = [b'.', b'0', b'0', b'0', b'0', b'0', b'0'];
    let mut f = frac;
    for d in digits[1..].iter_mut().rev() {
        *d = b'0' + (f % 10) as u8;
        f /= 10;
    }
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.sec != sec {
            let ms = automate_core::time::iso8601(sec * 1000);
            // `2026-11-24T10:00:00.000Z` -> `2026-11-24T10:00:00`
            c.date = ms.get(..19).unwrap_or(&ms).to_string();
            c.sec = sec;
        }
        // Straight into the (buffered) log writer.
        for piece in [head, c.date.as_bytes(), &digits, c.ids.as_bytes(), tail] {
            let _ = out.write_all(piece);
        }
    })
}

fn level_letter(level: Level) -> char {
    match level {
        Level::ERROR => 'E',
        Level::WARN => 'W',
        Level::INFO => 'I',
        Level::DEBUG => 'D',
        Level::TRACE => 'T',
    }
}

/// The thread's number (`ThreadId(7)` → 7), worked out once per thread.
fn thread_number() -> u64 {
    thread_local! {
        static NUMBER: u64 = {
            let id = format!("{:?}", std::thread::current().id());
            id.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        };
    }
    NUMBER.with(|n| *n)
}

/// `2026-11-24T10:00:00.000123` (UTC).
fn timestamp_micros() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let ms = automate_core::time::iso8601(micros / 1000);
    format!("{}{:03}", ms.trim_end_matches('Z'), micros % 1000)
}

/// One log line, with its newline.
fn format_line(level: Level, message: &str, json: bool, target: &str) -> String {
    let ts = timestamp_micros();
    let (pid, tid) = (std::process::id(), thread_number());
    if json {
        let v = serde_json::json!({
            "timestamp": format!("{ts}Z"),
            "level": level.as_str(),
            "pid": pid,
            "tid": format!("{tid:x}"),
            "target": target,
            "message": message,
        });
        return format!("{v}\n");
    }
    let letter = level_letter(level);
    format!(
        "[----] {letter}, [{ts} #{pid}:{tid:x}] {:>5} -- : {message}\n",
        level.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_mask_encrypted_passwords() {
        use tracing_subscriber::layer::SubscriberExt;
        let dir = tempfile::tempdir().unwrap();
        for json in [false, true] {
            let path = dir.path().join(format!("evm-{json}.log"));
            let notice: super::super::logfile::Notice = Box::new(|_: &mut Vec<u8>, _: &str| {});
            let f = LogFile::open(&path, Rotation::default(), notice, Dropped::default()).unwrap();
            let out: LogOut = Arc::new(Mutex::new(f));
            let layer = FileLayer {
                target: "evm",
                out: out.clone(),
                json,
            };
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(subscriber, || {
                tracing::callsite::rebuild_interest_cache();
                tracing::info!(target: "evm", "MIQ(x) uri [miqaedb:/A/B/c?password::pw=v2:{{DUb5th63TM+zIB6RhnTtVg==}}] n={}", 1);
                tracing::info!(target: "evm", "plain line");
            });
            flush(&[out]);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("password::pw=********] n=1"), "{text}");
            assert!(!text.contains("v2:{"), "{text}");
            assert!(text.contains("plain line"), "{text}");
        }
    }

    #[test]
    fn line_format_is_manageiq_like() {
        let line = format_line(Level::INFO, "hello", false, "evm");
        assert!(line.starts_with("[----] I, ["), "{line}");
        assert!(line.ends_with("]  INFO -- : hello\n"), "{line}");
        let ts = &line[11..37];
        assert_eq!(ts.len(), 26, "{ts}");
        assert_eq!(&ts[10..11], "T");
        // The in-place writer makes the same shape.
        let mut prefix = Vec::new();
        write_prefix(&mut prefix, Level::INFO);
        let prefix = String::from_utf8(prefix).unwrap();
        assert_eq!(prefix.len(), line.len() - "hello\n".len(), "{prefix}");
        assert_eq!(&prefix[..11], &line[..11]);
        assert_eq!(&prefix[37..], &line[37..line.len() - 6]);
        let json: serde_json::Value =
            serde_json::from_str(&format_line(Level::WARN, "x", true, "automation")).unwrap();
        assert_eq!(json["level"], "WARN");
        assert_eq!(json["message"], "x");
    }
}
