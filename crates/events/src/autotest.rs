//! `automate test` (issue 22 §3): runs the cases of a test file
//! ([`automate_datastore::tests_file`]), each in a sandbox over a clean
//! in-memory store holding only the case's `objects`, and checks its
//! expectations.
//!
//! An `event` case goes through the handler as a provider event would
//! ([`Handler::handle_in`]: stored, its VM and host found or created, then
//! delivered); a `uri` case is instantiated with its `attributes`. Either
//! way methods run and policies are evaluated; writes, retries and
//! outbound actions stay in the sandbox. A case's failures say what was
//! expected against what happened.

use crate::handler::{EvmLog, Handler, HandlerError};
use crate::replay::relationships;
use crate::trace::{self, Outcome, TraceConfig};
use crate::{Provider, ProviderEvent};
use automate_datastore::tests_file::{Case, Expect};
use automate_engine::deliver::{deliver, Delivery, Outcome as Delivered, DEFAULT_MAX_DELIVERIES};
use automate_engine::{AttrValue, Attributes, Engine, Workspace};
use automate_vmdb::sandbox::Sandbox;
use automate_vmdb::{MemoryStore, ObjectStore, StoreError};
use std::sync::Arc;

/// Why a case could not be run at all (not a failed expectation).
#[derive(Debug, thiserror::Error)]
pub enum AutotestError {
    /// The case's event is not a provider event.
    #[error("case `{case}`: field `event`: {message}")]
    BadEvent {
        /// The case.
        case: String,
        /// What is wrong.
        message: String,
    },
    /// A seeded object could not be stored.
    #[error("case `{case}`: field `objects`: {message}")]
    BadObject {
        /// The case.
        case: String,
        /// What is wrong.
        message: String,
    },
    /// The handler failed.
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a case did.
#[derive(Debug, Clone, Default)]
pub struct Ran {
    /// Its outcome (events raised, policies, methods, ...).
    pub outcome: Outcome,
    /// The relationships followed.
    pub relationships: Vec<String>,
    /// The root object's attributes after the run, as text.
    pub attributes: Vec<(String, String)>,
    /// The sandbox's changes (`would create ...`, `would update ...`).
    pub vmdb: Vec<String>,
    /// The error the run ended with.
    pub error: Option<String>,
}

/// Runs test cases with an engine's datastore and automation stack.
pub struct Runner {
    engine: Engine,
}

impl Runner {
    /// A runner instantiating with `engine` (its store is not used: each
    /// case gets a clean one).
    pub fn new(engine: Engine) -> Runner {
        Runner { engine }
    }

    /// Runs `case`; its failed expectations (empty: it passed).
    pub fn run(&self, case: &Case) -> Result<Vec<String>, AutotestError> {
        let ran = self.execute(case)?;
        Ok(check(&case.expect, &ran))
    }

    /// Runs `case` and says what it did.
    pub fn execute(&self, case: &Case) -> Result<Ran, AutotestError> {
        let base = Arc::new(MemoryStore::new());
        let sandbox = Arc::new(Sandbox::new(base.clone(), None));
        let engine = self
            .engine
            .clone()
            .with_store(base.clone())
            .with_sandbox(sandbox.clone());
        let (ws, outcome, error) = match (&case.event, &case.uri) {
            (Some(ev), _) => {
                let (provider, event) = provider_event(&case.name, &ev.0)?;
                let handler = Handler::new(engine.clone(), EvmLog::silent())?
                    .deferring_retries()
                    .with_trace(TraceConfig {
                        enabled: true,
                        ..TraceConfig::default()
                    });
                let ems = handler.provider_ref(&provider)?;
                seed(&case.name, &base, case, Some(ems.id))?;
                let out = handler.handle_in(&engine, &provider, &event)?;
                let ws = out.workspace.unwrap_or_default();
                let outcome = out
                    .record
                    .map(|r| r.outcome)
                    .unwrap_or_else(|| trace::outcome_of(&ws.trace));
                (ws, outcome, out.error.map(|e| e.to_string()))
            }
            (None, Some(uri)) => {
                seed(&case.name, &base, case, None)?;
                let attrs = case
                    .attributes
                    .iter()
                    .map(|(k, v)| {
                        let text = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), text)
                    })
                    .collect();
                let d = Delivery {
                    uri: uri.clone(),
                    attrs,
                    object: String::new(),
                    deliveries: 0,
                };
                let (ws, error) = match deliver(&engine, &*sandbox, &d, DEFAULT_MAX_DELIVERIES)? {
                    Delivered::Error { workspace, error } => (workspace, error),
                    other => (other.into_workspace(), None),
                };
                let mut outcome = trace::outcome_of(&ws.trace);
                if let Some(e) = &error {
                    outcome.errors.push(e.to_string());
                }
                (ws, outcome, error.map(|e| e.to_string()))
            }
            (None, None) => {
                return Err(AutotestError::BadEvent {
                    case: case.name.clone(),
                    message: "give an `event` or a `uri`".into(),
                })
            }
        };
        let lines: Vec<String> = ws.trace.iter().map(|l| l.text.clone()).collect();
        Ok(Ran {
            relationships: relationships(&lines),
            attributes: root_attributes(&ws),
            vmdb: sandbox.diff()?.lines(),
            error: error.or_else(|| outcome.errors.first().cloned()),
            outcome,
        })
    }
}

fn root_attributes(ws: &Workspace) -> Vec<(String, String)> {
    ws.root()
        .map(|o| {
            o.attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_text()))
                .collect()
        })
        .unwrap_or_default()
}

/// The provider and the event of a case's `event` object.
fn provider_event(
    case: &str,
    ev: &serde_json::Value,
) -> Result<(Provider, ProviderEvent), AutotestError> {
    let bad = |message: String| AutotestError::BadEvent {
        case: case.to_string(),
        message,
    };
    let mut map = ev
        .as_object()
        .cloned()
        .ok_or_else(|| bad("not a mapping".into()))?;
    let text = |v: Option<serde_json::Value>| v.and_then(|v| v.as_str().map(String::from));
    let kind = text(map.remove("source")).unwrap_or_else(|| "RHEVM".into());
    let name = text(map.remove("provider")).unwrap_or_else(|| format!("{kind} test provider"));
    map.entry("timestamp")
        .or_insert_with(|| "2026-01-01T00:00:00Z".into());
    let line = serde_json::Value::Object(map).to_string();
    let event = crate::catchers::jsonl::parse_line(&line).map_err(bad)?;
    Ok((
        Provider {
            hostname: name.clone(),
            name,
            kind,
            userid: "admin".into(),
        },
        event,
    ))
}

/// Seeds the case's objects into `store`; a VM or host without `ems_id`
/// belongs to the event's provider `ems`.
fn seed(
    case_name: &str,
    store: &MemoryStore,
    case: &Case,
    ems: Option<i64>,
) -> Result<(), AutotestError> {
    for (i, o) in case.objects.iter().enumerate() {
        let mut attrs = Attributes::default();
        for (k, v) in &o.attributes {
            attrs.insert(k.to_lowercase(), automate_engine::datatype::from_json(v));
        }
        let owned = ["VmOrTemplate", "Vm", "Host", "Template"]
            .iter()
            .any(|c| o.class.eq_ignore_ascii_case(c) || o.class.ends_with(&format!("::{c}")));
        if let (Some(ems), true, false) = (ems, owned, attrs.contains_key("ems_id")) {
            attrs.insert("ems_id".into(), AttrValue::Int(ems));
        }
        let stored = match o.id {
            Some(id) => store
                .insert(&o.class, id, attrs)
                .map(|_| ())
                .ok_or_else(|| format!("unknown class [{}]", o.class)),
            None => store
                .create(&o.class, attrs)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        stored.map_err(|e| AutotestError::BadObject {
            case: case_name.to_string(),
            message: format!("object {} ({}): {e}", i + 1, o.class),
        })?;
    }
    Ok(())
}

fn list(v: &[String]) -> String {
    format!("[{}]", v.join(", "))
}

/// Each expectation of `expect` that `ran` does not meet, as `what:
/// expected .., got ..`.
pub fn check(expect: &Expect, ran: &Ran) -> Vec<String> {
    let mut out = Vec::new();
    let o = &ran.outcome;
    if let Some(want) = &expect.events_raised {
        if *want != o.generic_events {
            out.push(format!(
                "events_raised: expected {}, got {}",
                list(want),
                list(&o.generic_events)
            ));
        }
    }
    let fired: Vec<String> = o
        .policies
        .iter()
        .filter(|p| p.condition)
        .map(|p| p.policy.clone())
        .collect();
    let methods: Vec<String> = o.methods.iter().map(|m| m.method.clone()).collect();
    let each = |out: &mut Vec<String>,
                what: &str,
                want: &Option<Vec<String>>,
                got: &[String],
                exact: bool| {
        for w in want.iter().flatten() {
            let found = got.iter().any(|g| {
                if exact {
                    g == w
                } else {
                    g.contains(w.as_str())
                }
            });
            if !found {
                out.push(format!("{what}: expected {w}, got {}", list(got)));
            }
        }
    };
    each(&mut out, "policies", &expect.policies, &fired, true);
    each(&mut out, "methods", &expect.methods, &methods, false);
    each(
        &mut out,
        "relationships",
        &expect.relationships,
        &ran.relationships,
        false,
    );
    each(&mut out, "vmdb", &expect.vmdb, &ran.vmdb, false);
    for (k, v) in expect.attributes.iter().flatten() {
        let want = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let got = ran
            .attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone());
        if got.as_deref() != Some(want.as_str()) {
            out.push(format!(
                "attributes.{k}: expected {want}, got {}",
                got.unwrap_or_else(|| "(none)".into())
            ));
        }
    }
    match (&expect.error, &ran.error) {
        (None, Some(e)) => out.push(format!("error: expected none, got {e}")),
        (Some(w), None) => out.push(format!("error: expected {w}, got none")),
        (Some(w), Some(e)) if !e.contains(w.as_str()) => {
            out.push(format!("error: expected {w}, got {e}"))
        }
        _ => {}
    }
    out
}
