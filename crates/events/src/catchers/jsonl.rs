//! The `jsonl` catcher: one JSON event per line, from a file or stdin.
//!
//! A line is a `ProviderEvent` object (`{"event_type": "USER_RUN_VM",
//! "timestamp": "...", "vm_ems_ref": "...", ...}`), an oslo notification
//! (`{"event_type": ..., "payload": {...}, ...}`), or an oslo.messaging 2.0
//! envelope (`{"oslo.message": "<json>"}`); the last two are parsed as the
//! `amqp` catcher parses them. Every timestamp is stored in the event
//! stream's one format ([`super::normalise_timestamp`]); one that is not a
//! time makes the line bad. Blank lines are ignored. A bad line is logged
//! as a warning naming the file, its line number and the field, counted in
//! the catcher's stats and skipped. With `follow`, the catcher keeps reading what is appended to the
//! file (like `tail -F`: a truncated or replaced file is read again from the
//! start) until shutdown; otherwise it ends at end of file.

use super::lease::Checkpoints;
use super::{oslo, CatcherError, Ctx, Offer};
use crate::ProviderEvent;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// `kind: jsonl` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// The file to read; `-` is stdin.
    pub path: String,
    /// Keep reading what is appended after the end of the file.
    #[serde(default)]
    pub follow: bool,
}

impl JsonlConfig {
    /// Every problem of these settings, as (field under `catcher`, message).
    pub(crate) fn check(&self) -> Vec<(&'static str, String)> {
        match super::check_name(&self.path, false) {
            Ok(()) => Vec::new(),
            Err(m) => vec![("path", m)],
        }
    }
}

/// How often a followed file is polled for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Longest accepted line.
const MAX_LINE: usize = 1 << 20;

/// Parses one line: a `ProviderEvent`, an oslo notification or an oslo
/// envelope.
pub fn parse_line(line: &str) -> Result<ProviderEvent, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    if oslo::looks_like_oslo(&v) {
        return oslo::parse_value(v).map_err(|e| e.to_string());
    }
    let mut ev: ProviderEvent = serde_json::from_value(v).map_err(|e| e.to_string())?;
    if ev.event_type.trim().is_empty() {
        return Err("empty event_type".into());
    }
    ev.timestamp =
        super::normalise_timestamp(&ev.timestamp).map_err(|e| format!("field timestamp: {e}"))?;
    Ok(ev)
}

/// A built `jsonl` catcher.
#[derive(Clone)]
pub(crate) struct JsonlCatcher {
    cfg: JsonlConfig,
}

impl JsonlConfig {
    pub(crate) fn build(&self, ctx: &Ctx) -> Result<JsonlCatcher, CatcherError> {
        if self.path.trim().is_empty() {
            return Err(ctx.config_error("jsonl path is empty (use - for stdin)"));
        }
        Ok(JsonlCatcher { cfg: self.clone() })
    }
}

impl JsonlCatcher {
    pub(crate) async fn run(
        self,
        ctx: Ctx,
        shutdown: CancellationToken,
    ) -> Result<(), CatcherError> {
        if self.cfg.path == "-" {
            let mut input = Input {
                reader: Box::new(BufReader::new(tokio::io::stdin())),
                name: "stdin".into(),
                file: None,
            };
            return read_lines(&ctx, &mut input, false, &shutdown).await;
        }
        let path = PathBuf::from(&self.cfg.path);
        let mut warned = false;
        let (reader, ident) = loop {
            match open(&path).await {
                Ok(r) => break r,
                // Followed files may appear later (tail -F).
                Err(e) if self.cfg.follow && e.kind() == std::io::ErrorKind::NotFound => {
                    if !warned {
                        warned = true;
                        tracing::warn!(
                            target: "evm",
                            "MIQ({}) EMS [{}] as [{}] {} does not exist yet: waiting for it",
                            ctx.provider.catcher_name(),
                            ctx.provider.hostname,
                            ctx.provider.userid,
                            self.cfg.path,
                        );
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(FOLLOW_POLL) => {}
                    }
                }
                Err(source) => {
                    return Err(CatcherError::Io {
                        provider: ctx.provider.name.clone(),
                        path: self.cfg.path.clone(),
                        source,
                    })
                }
            }
        };
        let mut input = Input {
            reader,
            name: self.cfg.path.clone(),
            file: Some(FileState {
                path,
                ident,
                pos: 0,
            }),
        };
        read_lines(&ctx, &mut input, self.cfg.follow, &shutdown).await
    }
}

type Reader = Box<dyn AsyncBufRead + Unpin + Send>;

/// What is being read.
struct Input {
    reader: Reader,
    name: String,
    file: Option<FileState>,
}

/// A followed file: where we are, and which file it is (to notice
/// truncation and rotation).
struct FileState {
    path: PathBuf,
    ident: Option<(u64, u64)>,
    pos: u64,
}

/// (device, inode) on Unix.
#[cfg(unix)]
fn ident(m: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn ident(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

async fn open(path: &Path) -> std::io::Result<(Reader, Option<(u64, u64)>)> {
    let file = tokio::fs::File::open(path).await?;
    let id = ident(&file.metadata().await?);
    Ok((Box::new(BufReader::new(file)), id))
}

impl Input {
    /// At end of a followed file: reopens it when it was truncated or
    /// replaced (log rotation). `true` when reading starts over.
    async fn reopen_if_replaced(&mut self, ctx: &Ctx) -> bool {
        let Some(f) = &mut self.file else {
            return false;
        };
        let Ok(meta) = tokio::fs::metadata(&f.path).await else {
            // Gone for now (mid-rotation): keep waiting.
            return false;
        };
        let replaced = ident(&meta).is_some() && ident(&meta) != f.ident;
        if !replaced && meta.len() >= f.pos {
            return false;
        }
        let Ok((reader, id)) = open(&f.path).await else {
            return false;
        };
        tracing::info!(
            target: "evm",
            "MIQ({}) EMS [{}] as [{}] {} was {}: reading it from the start",
            ctx.provider.catcher_name(),
            ctx.provider.hostname,
            ctx.provider.userid,
            self.name,
            if replaced { "replaced" } else { "truncated" },
        );
        self.reader = reader;
        f.ident = id;
        f.pos = 0;
        true
    }
}

async fn read_lines(
    ctx: &Ctx,
    input: &mut Input,
    follow: bool,
    shutdown: &CancellationToken,
) -> Result<(), CatcherError> {
    let mut marks = Checkpoints::new(ctx);
    let r = read_lines_from(ctx, input, follow, shutdown, &mut marks).await;
    marks.finish(ctx).await;
    r
}

/// [`read_lines`] with the position bookkeeping: under a lease, the lines
/// up to the stored position are read and skipped, and the position (the
/// line number of the last line offered) is stored as the events are
/// queued.
async fn read_lines_from(
    ctx: &Ctx,
    input: &mut Input,
    follow: bool,
    shutdown: &CancellationToken,
    marks: &mut Checkpoints,
) -> Result<(), CatcherError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut lineno: u64 = 0;
    let mut skip = marks.from();
    loop {
        let n = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            r = input.reader.read_until(b'\n', &mut buf) => r.map_err(|source| CatcherError::Io {
                provider: ctx.provider.name.clone(),
                path: input.name.clone(),
                source,
            })?,
        };
        if let Some(f) = &mut input.file {
            f.pos += n as u64;
        }
        let complete = buf.last() == Some(&b'\n');
        if n == 0 || !complete {
            // End of input for now: a partial last line waits for its end
            // when following, and is taken as is otherwise.
            if follow && buf.len() <= MAX_LINE {
                if n == 0 && input.reopen_if_replaced(ctx).await {
                    // The old file's unterminated last line, as it is.
                    let rest = std::mem::take(&mut buf);
                    if !rest.is_empty()
                        && lineno + 1 > skip
                        && !handle_line(ctx, &rest, lineno + 1, &input.name, shutdown, marks)
                            .await?
                    {
                        return Ok(());
                    }
                    lineno = 0;
                    skip = 0;
                    marks.restart(ctx).await;
                    continue;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(FOLLOW_POLL) => continue,
                }
            }
            if buf.is_empty() {
                return Ok(());
            }
        }
        lineno += 1;
        let line = std::mem::take(&mut buf);
        let done = n == 0 || (!complete && !follow);
        if lineno > skip && !handle_line(ctx, &line, lineno, &input.name, shutdown, marks).await? {
            return Ok(());
        }
        if done {
            return Ok(());
        }
    }
}

/// Parses and offers one line; `Ok(false)` on shutdown.
async fn handle_line(
    ctx: &Ctx,
    raw: &[u8],
    lineno: u64,
    name: &str,
    shutdown: &CancellationToken,
    marks: &mut Checkpoints,
) -> Result<bool, CatcherError> {
    let parsed = if raw.len() > MAX_LINE {
        Err(format!("line longer than {MAX_LINE} bytes"))
    } else {
        match std::str::from_utf8(raw) {
            Ok(text) if text.trim().is_empty() => {
                marks.advance(ctx, lineno, None).await;
                return Ok(true);
            }
            Ok(text) => parse_line(text.trim()),
            Err(e) => Err(format!("not UTF-8: {e}")),
        }
    };
    match parsed {
        Err(e) => {
            tracing::warn!(
                target: "evm",
                "MIQ({}) EMS [{}] as [{}] {name} line {lineno}: skipping bad event: {e}",
                ctx.provider.catcher_name(),
                ctx.provider.hostname,
                ctx.provider.userid,
            );
            ctx.stats.problem(format!("{name}:{lineno}: {e}"));
            marks.advance(ctx, lineno, None).await;
            Ok(true)
        }
        Ok(ev) => {
            let ack = match ctx.offer(ev, marks.durable(), shutdown).await {
                Offer::Sent(ack) => ack,
                Offer::Skipped => None,
                Offer::Cancelled => return Ok(false),
                Offer::Closed => return Err(ctx.closed()),
            };
            marks.advance(ctx, lineno, ack).await;
            Ok(true)
        }
    }
}
