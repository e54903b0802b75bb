//! Replay (issue 22 §2): re-deliver recorded events in a sandbox and say
//! which would now behave differently, and how.
//!
//! A [`Replayer`] re-runs a stored `EmsEvent` through the handler's own
//! delivery path ([`Handler::deliver_stored`]) on an engine whose object
//! store is a fresh [`Sandbox`] over the store the event was recorded in:
//! methods run, policies and alerts are evaluated, but every write,
//! scheduled retry and outbound action stays in the sandbox, which is
//! thrown away. The replay's [`Record`] is compared with the one stored
//! with the event ([`Record::of`]): equal digests mean the delivery would
//! behave as it did; otherwise [`OutcomeDiff`] says what changed
//! (relationships followed, methods run, attributes set, events raised,
//! policies, alerts, objects written, errors).
//!
//! Objects created in a sandbox get ids in a region of their own; before
//! the digest is taken, the ids of the objects the replay created are
//! mapped back to the ids of the objects the recorded delivery created
//! (same class, same order), so an unchanged delivery digests the same.
//! [`Replayer::handle`] replays an event that was never stored (a line of
//! a `.jsonl` file) the same way, through [`Handler::handle_in`].

use crate::handler::{Delivered, EvmLog, Handler, HandlerError, StoredEvent};
use crate::trace::{ObjectTouched, Outcome, Record, TraceConfig};
use crate::{Provider, ProviderEvent};
use automate_core::value::AttrValue;
use automate_engine::{Engine, TraceLine};
use automate_vmdb::sandbox::{Diff, Sandbox, SANDBOX_REGION};
use automate_vmdb::{ObjectStore, StoreError, StoredObject, REGION_BASE};
use serde::Serialize;
use std::sync::Arc;

/// Why an event could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The handler failed (the sandbox's reads of the base store).
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event lacks what a delivery needs, or its record is
    /// unreadable.
    #[error("EmsEvent {id}: field `{field}`: {message}")]
    BadEvent {
        /// The event's id.
        id: i64,
        /// The attribute.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// A stored `EmsEvent` as replay reads it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// What the delivery needs: id, type, VM and host ids.
    pub event: StoredEvent,
    /// The provider's kind (`source`: `RHEVM`, `VMWARE`, ...).
    pub source: String,
    /// When the provider raised it (ISO 8601 UTC).
    pub timestamp: String,
    /// The provider's id (`ems_id`).
    pub ems_id: Option<i64>,
    /// The VM's provider reference.
    pub vm_ems_ref: Option<String>,
    /// The provider's payload.
    pub full_data: serde_json::Value,
    /// The record stored with it (`None`: recording was off).
    pub record: Option<Record>,
}

impl Recorded {
    /// Reads event `id` from its stored attributes.
    pub fn of(id: i64, obj: &StoredObject) -> Result<Recorded, ReplayError> {
        let bad =
            |field: &'static str, message: String| ReplayError::BadEvent { id, field, message };
        let text = |k: &str| match obj.attrs.get(k) {
            Some(AttrValue::Str(s)) => Some(s.clone()),
            _ => None,
        };
        let int = |k: &str| match obj.attrs.get(k) {
            Some(AttrValue::Int(i)) => Some(*i),
            Some(AttrValue::Str(s)) => s.parse().ok(),
            _ => None,
        };
        let event_type = text("event_type")
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| bad("event_type", "missing or empty".into()))?;
        let record = Record::of(obj).map_err(|e| bad("automate_trace", e))?;
        let full_data = text("full_data")
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null);
        Ok(Recorded {
            event: StoredEvent {
                id,
                event_type,
                vm: int("vm_or_template_id"),
                host: int("host_id"),
            },
            source: text("source").unwrap_or_default(),
            timestamp: text("timestamp").unwrap_or_default(),
            ems_id: int("ems_id"),
            vm_ems_ref: text("vm_ems_ref"),
            full_data,
            record,
        })
    }
}

/// One replayed event.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The replay's record (its digest comparable with the recorded one).
    pub record: Record,
    /// The error the replayed delivery ended with, if any.
    pub error: Option<String>,
    /// What the replay would have written (the sandbox's diff).
    pub writes: Diff,
}

impl Replayed {
    /// The replay's outcome differs from `recorded` (by digest).
    pub fn changed_from(&self, recorded: &Record) -> bool {
        self.record.digest != recorded.digest
    }
}

/// Re-delivers recorded events in sandboxes over a base store: see the
/// module documentation.
pub struct Replayer {
    engine: Engine,
    base: Arc<dyn ObjectStore>,
    handler: Handler,
    max_bytes: usize,
}

impl Replayer {
    /// A replayer delivering with `engine` (the datastore and automation
    /// stack to replay against) over `engine`'s object store, which is
    /// only read. Fails when the store cannot be read.
    pub fn new(engine: Engine) -> Result<Replayer, ReplayError> {
        let base = engine.store().clone();
        // The handler's own lookups (the MiqServer and User it names) go
        // through a sandbox too: a store without them is not written.
        let setup = Arc::new(Sandbox::new(base.clone(), None));
        let handler =
            Handler::new(engine.clone().with_sandbox(setup), EvmLog::silent())?.deferring_retries();
        Ok(Replayer {
            engine,
            base,
            handler,
            max_bytes: TraceConfig::default().max_bytes,
        })
    }

    /// Keeps at most `max_bytes` of each replay's trace in its record.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Replayer {
        self.max_bytes = max_bytes;
        self
    }

    /// Re-delivers `ev` in a fresh sandbox.
    pub fn replay(&self, ev: &Recorded) -> Result<Replayed, ReplayError> {
        let sandbox = Arc::new(Sandbox::new(self.base.clone(), None));
        let engine = self.engine.clone().with_sandbox(sandbox.clone());
        let mut delivered = self.handler.deliver_stored(&engine, &ev.event, true)?;
        let recorded_objects = ev.record.as_ref().map(|r| r.outcome.objects.as_slice());
        Ok(finish(
            &mut delivered,
            recorded_objects,
            &sandbox,
            self.max_bytes,
        )?)
    }

    /// Handles `ev` (an event never stored: a `.jsonl` line) from
    /// `provider` in `sandbox`, as the live pipeline would: the event is
    /// stored, its VM and host created on first sight, and it is
    /// delivered, all in the sandbox. Pass one sandbox for a whole file
    /// so its events see each other, as they would live.
    pub fn handle(
        &self,
        sandbox: &Arc<Sandbox>,
        provider: &Provider,
        ev: &ProviderEvent,
    ) -> Result<Replayed, ReplayError> {
        let engine = self.engine.clone().with_sandbox(sandbox.clone());
        // A handler of its own: the provider it finds or creates lives in
        // this sandbox.
        let handler = Handler::new(engine.clone(), EvmLog::silent())?
            .deferring_retries()
            .with_trace(TraceConfig {
                enabled: true,
                max_bytes: self.max_bytes,
                ..TraceConfig::default()
            });
        let out = handler.handle_in(&engine, provider, ev)?;
        let record = out.record.ok_or_else(|| ReplayError::BadEvent {
            id: out.event_id,
            field: "event_type",
            message: "already stored in this replay (a duplicate): not delivered".into(),
        })?;
        Ok(Replayed {
            record,
            error: out.error.map(|e| e.to_string()),
            writes: sandbox.diff()?,
        })
    }
}

/// The replay's record, with the sandbox ids of the objects it created
/// mapped back to those `recorded` lists, and the sandbox's diff.
fn finish(
    d: &mut Delivered,
    recorded: Option<&[ObjectTouched]>,
    sandbox: &Sandbox,
    max_bytes: usize,
) -> Result<Replayed, StoreError> {
    let ids = id_map(d.objects.as_deref().unwrap_or_default(), recorded);
    let record = if ids.is_empty() {
        d.record(max_bytes)
    } else {
        let trace: Vec<TraceLine> = d
            .workspace
            .trace
            .iter()
            .map(|l| {
                let mut text = l.text.clone();
                for (from, to) in &ids {
                    if text.contains(from.as_str()) {
                        text = text.replace(from.as_str(), to);
                    }
                }
                TraceLine {
                    depth: l.depth,
                    level: l.level,
                    text,
                }
            })
            .collect();
        let mut record = d.record_over(&trace, max_bytes);
        let back: std::collections::HashMap<&str, &str> =
            ids.iter().map(|(f, t)| (f.as_str(), t.as_str())).collect();
        for o in &mut record.outcome.objects {
            if let Some(id) = back.get(o.id.to_string().as_str()) {
                o.id = id.parse().unwrap_or(o.id);
            }
        }
        record
    };
    Ok(Replayed {
        record,
        error: d.error.as_ref().map(ToString::to_string),
        writes: sandbox.diff()?,
    })
}

/// (sandbox id, recorded id) as text, for the objects both deliveries
/// created, paired by class in creation order.
fn id_map(replayed: &[ObjectTouched], recorded: Option<&[ObjectTouched]>) -> Vec<(String, String)> {
    let Some(recorded) = recorded else {
        return Vec::new();
    };
    let first_sandbox_id = SANDBOX_REGION * REGION_BASE;
    let mut out = Vec::new();
    let mut used = vec![false; recorded.len()];
    for o in replayed
        .iter()
        .filter(|o| o.created && o.id > first_sandbox_id)
    {
        if let Some(i) = recorded
            .iter()
            .enumerate()
            .position(|(i, r)| !used[i] && r.created && r.class == o.class)
        {
            used[i] = true;
            out.push((o.id.to_string(), recorded[i].id.to_string()));
        }
    }
    // Longest first: a sandbox id is never a prefix of another of the
    // same length, but keep the replacement order stable anyway.
    out.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    out
}

/// One aspect of an outcome that changed: what was there only before
/// (`removed`) and only now (`added`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Only in the recorded delivery.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Only in the replay.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
}

impl Change {
    fn of(before: &[String], after: &[String]) -> Change {
        let mut removed: Vec<String> = Vec::new();
        let mut rest: Vec<&String> = after.iter().collect();
        for b in before {
            match rest.iter().position(|a| *a == b) {
                Some(i) => {
                    rest.remove(i);
                }
                None => removed.push(b.clone()),
            }
        }
        Change {
            removed,
            added: rest.into_iter().cloned().collect(),
        }
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

/// How a replay's outcome differs from the recorded one, aspect by
/// aspect (each a [`Change`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeDiff {
    /// Relationships followed (`Following Relationship [..]`).
    pub relationships: Change,
    /// Methods run (with their return code).
    pub methods: Change,
    /// Attributes set on stored objects (`Class.attribute`).
    pub attributes: Change,
    /// Generic events raised.
    pub events_raised: Change,
    /// Policies evaluated (`policy on event: true|false`).
    pub policies: Change,
    /// Alerts fired.
    pub alerts: Change,
    /// Objects written (`Class created|updated|deleted`).
    pub objects: Change,
    /// Errors.
    pub errors: Change,
    /// Other trace lines (numbers of four digits or more left out).
    pub trace: Change,
}

/// The relationships a trace followed.
pub fn relationships(trace: &[String]) -> Vec<String> {
    trace
        .iter()
        .filter_map(|l| {
            l.split_once("Following Relationship [")
                .and_then(|(_, r)| r.rsplit_once(']'))
                .map(|(r, _)| r.to_string())
        })
        .collect()
}

fn methods(o: &Outcome) -> Vec<String> {
    o.methods
        .iter()
        .map(|m| match &m.rc {
            Some(rc) => format!("{} ({}, rc={rc})", m.method, m.location),
            None => format!("{} ({})", m.method, m.location),
        })
        .collect()
}

fn attributes(o: &Outcome) -> Vec<String> {
    o.objects
        .iter()
        .flat_map(|x| x.attributes.iter().map(move |a| format!("{}.{a}", x.class)))
        .collect()
}

fn objects(o: &Outcome) -> Vec<String> {
    o.objects
        .iter()
        .map(|x| {
            let what = if x.deleted {
                "deleted"
            } else if x.created {
                "created"
            } else {
                "updated"
            };
            format!("{} {what}", x.class)
        })
        .collect()
}

fn normalized(trace: &[String]) -> Vec<String> {
    trace
        .iter()
        .filter(|l| !l.contains("Following Relationship [") && !l.starts_with("Invoking ["))
        .map(|l| {
            let mut s = String::with_capacity(l.len());
            crate::trace::normalize(l, &mut s);
            s
        })
        .collect()
}

impl OutcomeDiff {
    /// What changed from `before` (recorded) to `after` (replayed).
    pub fn of(before: &Record, after: &Record) -> OutcomeDiff {
        let (b, a) = (&before.outcome, &after.outcome);
        let policy = |o: &Outcome| -> Vec<String> {
            o.policies
                .iter()
                .map(|p| format!("{} on {}: {}", p.policy, p.event, p.condition))
                .collect()
        };
        let alert = |o: &Outcome| -> Vec<String> {
            o.alerts
                .iter()
                .map(|x| format!("{} on {}", x.alert, x.event))
                .collect()
        };
        let mut trace = Change::of(&normalized(&before.trace), &normalized(&after.trace));
        // A cut trace only compares up to where it was cut.
        if before.truncated || after.truncated {
            trace = Change::default();
        }
        OutcomeDiff {
            relationships: Change::of(&relationships(&before.trace), &relationships(&after.trace)),
            methods: Change::of(&methods(b), &methods(a)),
            attributes: Change::of(&attributes(b), &attributes(a)),
            events_raised: Change::of(&b.generic_events, &a.generic_events),
            policies: Change::of(&policy(b), &policy(a)),
            alerts: Change::of(&alert(b), &alert(a)),
            objects: Change::of(&objects(b), &objects(a)),
            errors: Change::of(&b.errors, &a.errors),
            trace,
        }
    }

    /// The aspects that changed, as (heading, change), in a fixed order.
    pub fn sections(&self) -> Vec<(&'static str, &Change)> {
        [
            ("relationships followed", &self.relationships),
            ("methods run", &self.methods),
            ("attributes set", &self.attributes),
            ("events raised", &self.events_raised),
            ("policies", &self.policies),
            ("alerts", &self.alerts),
            ("objects written", &self.objects),
            ("errors", &self.errors),
            ("trace", &self.trace),
        ]
        .into_iter()
        .filter(|(_, c)| !c.is_empty())
        .collect()
    }

    /// The diff as indented text lines (`- ` before, `+ ` now), the
    /// trace's at most `max_trace` lines each way.
    pub fn lines(&self, max_trace: usize) -> Vec<String> {
        let mut out = Vec::new();
        for (heading, c) in self.sections() {
            out.push(format!("{heading}:"));
            let limit = if heading == "trace" {
                max_trace
            } else {
                usize::MAX
            };
            for (sign, list) in [("-", &c.removed), ("+", &c.added)] {
                for l in list.iter().take(limit) {
                    out.push(format!("  {sign} {l}"));
                }
                if list.len() > limit {
                    out.push(format!("  {sign} ... {} more", list.len() - limit));
                }
            }
        }
        out
    }
}
