//! Delivery with durable retries (ManageIQ's `MiqAeEngine.deliver`,
//! reference §6.6).
//!
//! [`deliver`] instantiates a URI. When the root ends with
//! `ae_result = retry`, the URI is scheduled again in the store's durable
//! scheduled-work table, `ae_retry_interval` from now (sub-second allowed),
//! with the state the next pass needs (`ae_state`, `ae_state_retries`,
//! `ae_state_started`, the state vars and the nested machines' saved state)
//! as extra attributes. [`run_due`] claims the retries that have come due
//! and delivers each again. A claim is a lease: if the process dies before
//! the retry is completed, it comes due again after the lease (at least
//! once). A delivery that has retried `max_deliveries` times is given up,
//! so no machine retries forever.
//!
//! [`deliver_deferred`] does not write the retry: it hands it back as a
//! [`PendingRetry`] for the caller to schedule in its own transaction (the
//! pipeline writes it with the worker batch that stores the event and acks
//! it, so a crash leaves both or neither).
//!
//! After every delivery, on every path, the engine's [`AfterDelivery`]
//! hook runs (ManageIQ's `vmdb_object.after_ae_delivery`; `requests`
//! installs the one that finishes an `AutomationTask` and its request).

use super::{Engine, EngineError, Workspace};
use automate_core::time::{after_now, parse_duration_secs};
use automate_vmdb::{BackendError, Schedule, StoreError, WorkItem};
use std::time::{Duration, SystemTime};

/// The work-item kind of a scheduled Automate retry.
pub const RETRY_KIND: &str = "automate_retry";

/// The retry bound when the caller gives none.
pub const DEFAULT_MAX_DELIVERIES: u32 = 100;

/// How long a claimed retry is leased before it comes due again.
pub const RETRY_LEASE: Duration = Duration::from_secs(300);

/// One delivery to Automate: a URI, its attributes and the object it is for.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    /// The Automate URI to instantiate (`/System/Process/Event`, a query
    /// allowed).
    pub uri: String,
    /// Name/value pairs given to the root object as attributes (ManageIQ's
    /// `attrs`); a retry carries the `ae_state*` it needs here too.
    #[serde(default)]
    pub attrs: Vec<(String, String)>,
    /// `EmsEvent.1000000000001`, for the log lines; empty when none.
    #[serde(default)]
    pub object: String,
    /// How many times this delivery has run before (0 for the first).
    #[serde(default)]
    pub deliveries: u32,
}

/// How one delivery ended.
#[derive(Debug)]
pub enum Outcome {
    /// Finished (`ae_result` ok, or anything but retry and error).
    Done(Workspace),
    /// Scheduled again: the work item's id (`None` when the caller writes
    /// it, see [`deliver_deferred`]) and when it runs.
    Retry {
        /// What this pass built.
        workspace: Workspace,
        /// The scheduled work item's id.
        id: Option<u64>,
        /// When the retry comes due (`ae_retry_interval` from now).
        run_at: SystemTime,
    },
    /// `ae_result = error`, or the engine returned an error.
    Error {
        /// What the delivery built before it failed.
        workspace: Workspace,
        /// The engine's error; `None` when the root set `ae_result = error`
        /// (or refused a bad `ae_retry_interval`).
        error: Option<EngineError>,
    },
    /// It wanted to retry, but had already run `max_deliveries` times.
    GaveUp(Workspace),
}

impl Outcome {
    /// The workspace the delivery built, whatever the outcome.
    pub fn into_workspace(self) -> Workspace {
        match self {
            Outcome::Done(w) | Outcome::GaveUp(w) => w,
            Outcome::Retry { workspace, .. } | Outcome::Error { workspace, .. } => workspace,
        }
    }

    /// The workspace the delivery built, borrowed.
    pub fn workspace(&self) -> &Workspace {
        match self {
            Outcome::Done(w) | Outcome::GaveUp(w) => w,
            Outcome::Retry { workspace, .. } | Outcome::Error { workspace, .. } => workspace,
        }
    }
}

/// What runs after every delivery (first delivery, [`run_due`],
/// [`deliver_deferred`]) with its outcome: ManageIQ's
/// `vmdb_object.after_ae_delivery`. Installed with
/// [`Engine::with_after_delivery`]; the engine has none by default.
/// Failures are the hook's to log: the delivery itself has happened.
pub trait AfterDelivery: Send + Sync {
    /// Called once per delivery, after any retry it asked for is scheduled
    /// (or handed back, for [`deliver_deferred`]).
    fn after_delivery(&self, engine: &Engine, delivery: &Delivery, outcome: &Outcome);
}

/// Runs the engine's [`AfterDelivery`] hook, if it has one.
fn after_delivery(engine: &Engine, d: &Delivery, outcome: &Outcome) {
    if let Some(hook) = engine.after_delivery() {
        hook.after_delivery(engine, d, outcome);
    }
}

/// A retry a delivery asked for, not written yet.
#[derive(Debug, Clone)]
pub struct PendingRetry {
    /// The [`RETRY_KIND`] work item: the next [`Delivery`] as JSON.
    pub item: WorkItem,
    /// When it comes due.
    pub run_at: SystemTime,
}

/// Instantiates `d` and schedules a retry if the root asks for one.
pub fn deliver(
    engine: &Engine,
    schedule: &dyn Schedule,
    d: &Delivery,
    max_deliveries: u32,
) -> Result<Outcome, StoreError> {
    deliver_completing(engine, schedule, d, max_deliveries, None)
}

/// [`deliver`] for a claimed retry: the claim `done` is completed in the
/// same transaction that schedules the next retry, or right after the
/// delivery when there is none.
fn deliver_completing(
    engine: &Engine,
    schedule: &dyn Schedule,
    d: &Delivery,
    max_deliveries: u32,
    done: Option<u64>,
) -> Result<Outcome, StoreError> {
    let (mut outcome, retry) = deliver_inner(engine, d, None, max_deliveries)?;
    match (retry, done) {
        (Some(r), Some(done)) => set_retry_id(
            &mut outcome,
            schedule.schedule_and_complete(&r.item, r.run_at, done)?,
        ),
        (Some(r), None) => set_retry_id(&mut outcome, schedule.schedule(&r.item, r.run_at)?),
        (None, Some(done)) => {
            schedule.complete(done)?;
        }
        (None, None) => {}
    }
    // ManageIQ's `vmdb_object.after_ae_delivery` (on every path: first
    // delivery, `retries run-due`, the pipeline's retry runner).
    after_delivery(engine, d, &outcome);
    Ok(outcome)
}

/// [`deliver`] without writing the retry: the caller schedules the
/// [`PendingRetry`] in its own transaction (`Outcome::Retry` has no id).
/// `parsed` is `d.uri` parsed already, when its builder had it
/// ([`automate_core::uri::query_uri`]): the engine does not parse it again.
pub fn deliver_deferred(
    engine: &Engine,
    d: &Delivery,
    parsed: Option<automate_core::uri::Uri>,
    max_deliveries: u32,
) -> Result<(Outcome, Option<PendingRetry>), StoreError> {
    let (outcome, retry) = deliver_inner(engine, d, parsed, max_deliveries)?;
    after_delivery(engine, d, &outcome);
    Ok((outcome, retry))
}

fn set_retry_id(outcome: &mut Outcome, scheduled: u64) {
    if let Outcome::Retry { id, .. } = outcome {
        *id = Some(scheduled);
    }
}

/// The delivery itself, and the retry its root asks for (not written).
fn deliver_inner(
    engine: &Engine,
    d: &Delivery,
    parsed: Option<automate_core::uri::Uri>,
    max_deliveries: u32,
) -> Result<(Outcome, Option<PendingRetry>), StoreError> {
    let (mut ws, error) = match parsed {
        Some(uri) => engine.instantiate_traced_parsed(&d.uri, uri, &d.attrs),
        None => engine.instantiate_traced(&d.uri, &d.attrs),
    };
    let result = ws.result();
    let state = ws
        .root_attr("ae_state")
        .map(|v| v.to_text())
        .unwrap_or_default();
    let object = if d.object.is_empty() {
        "Automate".to_string()
    } else {
        d.object.clone()
    };
    if error.is_some() || result.eq_ignore_ascii_case("error") {
        let message = ws
            .root_attr("ae_message")
            .map(|v| v.to_text())
            .or_else(|| error.as_ref().map(|e| e.to_string()))
            .unwrap_or_default();
        ws.log_line(
            super::Level::Error,
            format!(
                "MIQ(MiqAeEngine.deliver) Error delivering {} for object [{object}] with state [{state}] to Automate: {message}",
                super::inspect_delivery_attrs(&d.attrs)
            ),
        );
        return Ok((
            Outcome::Error {
                workspace: ws,
                error,
            },
            None,
        ));
    }
    if !result.eq_ignore_ascii_case("retry") {
        return Ok((Outcome::Done(ws), None));
    }
    if d.deliveries + 1 >= max_deliveries {
        ws.log_line(
            super::Level::Error,
            format!(
                "MIQ(MiqAeEngine.deliver) Giving up on [{}] for object [{object}] with state [{state}]: \
                 {} deliveries, the most allowed (retry bound)",
                d.uri,
                d.deliveries + 1
            ),
        );
        return Ok((Outcome::GaveUp(ws), None));
    }
    // A retry interval from the workspace (set by a method, or sent in the
    // URI) is checked and bounded: `inf`, `1e300`, negatives and the like
    // end the delivery with an error naming it, and never reach the
    // `SystemTime` arithmetic below.
    let interval = ws
        .root_attr("ae_retry_interval")
        .map(|v| v.to_text())
        .filter(|t| !t.trim().is_empty())
        .map_or(Ok(Duration::ZERO), |t| {
            parse_duration_secs("ae_retry_interval", &t)
        })
        .map(|i| (i, after_now(i)));
    let (interval, run_at) = match interval {
        Ok((i, Some(run_at))) => (i, run_at),
        Ok((i, None)) => {
            let e = format!(
                "ae_retry_interval: [{}] seconds from now is past the end of time",
                i.as_secs_f64()
            );
            return Ok((retry_refused(ws, d, &object, &state, e), None));
        }
        Err(e) => return Ok((retry_refused(ws, d, &object, &state, e.to_string()), None)),
    };
    let interval = interval.as_secs_f64();
    let mut attrs: Vec<(String, String)> = d
        .attrs
        .iter()
        .filter(|(k, _)| !k.starts_with("ae_state"))
        .cloned()
        .collect();
    let (saved, masked) = ws.retry_args_with(engine.password_key().map(|k| &**k));
    attrs.extend(saved);
    for path in masked {
        ws.log_line(
            super::Level::Warn,
            format!(
                "MIQ(MiqAeEngine.deliver) No v2 key configured (password.key_file or $KEY_ROOT/v2_key): password {path} is saved with the retry as {} and the retried method sees the mask, not the password",
                automate_password::MASK
            ),
        );
    }
    let next = Delivery {
        uri: d.uri.clone(),
        attrs,
        object: d.object.clone(),
        deliveries: d.deliveries + 1,
    };
    ws.log_line(
        super::Level::Info,
        format!(
            "MIQ(MiqAeEngine.deliver) Requeuing {} for object [{object}] with state [{state}] to Automate for delivery in [{}] seconds",
            super::inspect_delivery_attrs(&next.attrs),
            format_seconds(interval)
        ),
    );
    let payload =
        serde_json::to_value(&next).map_err(|e| StoreError::Encode(BackendError::new(e)))?;
    let item = WorkItem::new(RETRY_KIND, payload);
    Ok((
        Outcome::Retry {
            workspace: ws,
            id: None,
            run_at,
        },
        Some(PendingRetry { item, run_at }),
    ))
}

/// Claims the retries due now (at most `limit`) and delivers each again.
/// Each is completed only after its delivery (and any new retry) is stored.
pub fn run_due(
    engine: &Engine,
    schedule: &dyn Schedule,
    limit: usize,
    max_deliveries: u32,
) -> Result<Vec<Outcome>, StoreError> {
    let claimed = schedule.claim_due_kind(SystemTime::now(), limit, RETRY_LEASE, RETRY_KIND)?;
    let mut out = Vec::with_capacity(claimed.len());
    for c in claimed {
        if c.item.kind != RETRY_KIND {
            continue;
        }
        let d: Delivery = match serde_json::from_value(c.item.payload.clone()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(target: "evm", "scheduled retry {} is unreadable ({e}); dropped", c.id);
                schedule.complete(c.id)?;
                continue;
            }
        };
        out.push(deliver_completing(
            engine,
            schedule,
            &d,
            max_deliveries,
            Some(c.id),
        )?);
    }
    Ok(out)
}

/// The outcome of a delivery whose retry cannot be scheduled (its
/// interval was refused): an error naming why, logged as ManageIQ logs a
/// failed delivery.
fn retry_refused(
    mut ws: Workspace,
    d: &Delivery,
    object: &str,
    state: &str,
    why: String,
) -> Outcome {
    ws.log_line(
        super::Level::Error,
        format!(
            "MIQ(MiqAeEngine.deliver) Error delivering {} for object [{object}] with state [{state}] to Automate: {why}",
            super::inspect_delivery_attrs(&d.attrs)
        ),
    );
    Outcome::Error {
        workspace: ws,
        error: Some(EngineError::Abort(why)),
    }
}

fn format_seconds(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{}", s as i64)
    } else {
        format!("{s}")
    }
}
