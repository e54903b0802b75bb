//! The `jsonl` catcher: one JSON event per line, from a file or stdin.
//!
//! A line is a `ProviderEvent` object (`{"event_type": "USER_RUN_VM",
//! "timestamp": "...", "vm_ems_ref": "...", ...}`), an oslo notification
//! (`{"event_type": ..., "payload": {...}, ...}`), or an oslo.messaging 2.0
//! envelope (`{"oslo.message": "<json>"}`); the last two are parsed as the
//! `amqp` catcher parses them. Blank lines are ignored. A bad line is logged
//! as a warning naming its line number, counted in the catcher's stats and
//! skipped. With `follow`, the catcher keeps reading what is appended to the
//! file (like `tail -f`) until shutdown; otherwise it ends at end of file.

use super::{oslo, CatcherError, Ctx, Offer};
use crate::events::ProviderEvent;
use serde::{Deserialize, Serialize};
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
    let ev: ProviderEvent = serde_json::from_value(v).map_err(|e| e.to_string())?;
    if ev.event_type.trim().is_empty() {
        return Err("empty event_type".into());
    }
    Ok(ev)
}

/// A built `jsonl` catcher.
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
            let reader = BufReader::new(tokio::io::stdin());
            return read_lines(&ctx, reader, "stdin", false, &shutdown).await;
        }
        let file = tokio::fs::File::open(&self.cfg.path)
            .await
            .map_err(|source| CatcherError::Io {
                provider: ctx.provider.name.clone(),
                path: self.cfg.path.clone(),
                source,
            })?;
        let reader = BufReader::new(file);
        read_lines(&ctx, reader, &self.cfg.path, self.cfg.follow, &shutdown).await
    }
}

async fn read_lines<R: AsyncBufRead + Unpin>(
    ctx: &Ctx,
    mut reader: R,
    name: &str,
    follow: bool,
    shutdown: &CancellationToken,
) -> Result<(), CatcherError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut lineno: u64 = 0;
    loop {
        let n = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            r = reader.read_until(b'\n', &mut buf) => r.map_err(|source| CatcherError::Io {
                provider: ctx.provider.name.clone(),
                path: name.to_string(),
                source,
            })?,
        };
        let complete = buf.last() == Some(&b'\n');
        if n == 0 || !complete {
            // End of input for now: a partial last line waits for its end
            // when following, and is taken as is otherwise.
            if follow && buf.len() <= MAX_LINE {
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
        if !handle_line(ctx, &line, lineno, name, shutdown).await? {
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
) -> Result<bool, CatcherError> {
    let parsed = if raw.len() > MAX_LINE {
        Err(format!("line longer than {MAX_LINE} bytes"))
    } else {
        match std::str::from_utf8(raw) {
            Ok(text) if text.trim().is_empty() => return Ok(true),
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
            ctx.stats.problem(format!("line {lineno}: {e}"));
            Ok(true)
        }
        Ok(ev) => match ctx.offer(ev, false, shutdown).await {
            Offer::Sent(_) | Offer::Skipped => Ok(true),
            Offer::Cancelled => Ok(false),
            Offer::Closed => Err(ctx.closed()),
        },
    }
}
