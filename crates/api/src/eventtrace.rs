//! An event's delivery record and the live event stream:
//! `GET /api/event_streams/{id}/trace` (the provider event as caught, what
//! its delivery did, its Automate trace and digest, as the handler stored
//! them: `automate_events::trace`) and `GET /api/events/stream`, the
//! handled events as server-sent events, filtered by `provider`, `type`,
//! `vm` and `since`, batched and throttled so a storm does not swamp a
//! browser.

use super::collection::RawQuery;
use super::objects::object_json;
use super::{base_url, blocking, ok, parse_id, path_arg, ApiError, ApiResult, ApiState};
use automate_events::stream::EventFilter;
use automate_events::trace::{LiveEvent, LiveFilter, Record};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often the live stream sends a message at most (10 a second).
pub const LIVE_EVERY: Duration = Duration::from_millis(100);
/// Most events in one message; beyond it (a storm) the rest of a tick's
/// events are counted as `dropped`, not sent.
pub const LIVE_BATCH: usize = 500;
/// Most stored events a `since` sends before the live ones.
pub const LIVE_BACKLOG: usize = 1000;

/// `GET /api/event_streams/{id}/trace`: the event (its attributes, the
/// provider's payload as caught in `full_data`) and its delivery's record:
/// `digest`, `recorded_on`, `uri`, `outcome` (generic events, policies,
/// alerts, methods with their return codes, objects created and changed,
/// errors), `trace` and `truncated`. 404 when the event has no record
/// (recording was off, it was a duplicate, or the record was pruned).
pub(super) async fn event_trace(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
) -> ApiResult {
    let id = parse_id(&path_arg(id)?)?;
    let raw = raw
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    if let Some((k, _)) = raw.first() {
        return Err(ApiError::bad_request(format!(
            "{k}: unknown parameter (the trace takes none)"
        )));
    }
    let store = state.store.clone();
    let base = base_url(&state);
    let v = blocking(move || {
        let obj = store
            .load("EventStream", id)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found(format!("event_streams/{id}: no such object")))?;
        let record = Record::of(&obj)
            .map_err(|e| ApiError::internal(format!("event_streams/{id}: {e}")))?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "event_streams/{id}/trace: no delivery record (events.trace off, a duplicate event, or pruned)"
                ))
            })?;
        let mut event = object_json("event_streams", id, &obj, &base);
        // The provider's payload as caught, as JSON rather than its text.
        if let Some(Value::String(text)) = event.get("full_data") {
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                event["full_data"] = v;
            }
        }
        let mut doc = json!({
            "href": format!("{base}/api/event_streams/{id}/trace"),
            "id": id.to_string(),
            "event": event,
        });
        if let (Value::Object(m), Ok(Value::Object(r))) = (&mut doc, serde_json::to_value(&record))
        {
            m.extend(r);
        }
        Ok(doc)
    })
    .await?;
    ok(v)
}

/// `GET /api/events/stream`: the events this node handles from now on (and
/// with `since`, the stored ones since then first, up to
/// [`LIVE_BACKLOG`]), as server-sent events: at most one message per
/// [`LIVE_EVERY`], each an `events` event whose data is `{"events": [...],
/// "dropped": n}` (`dropped`: events left out because the client fell
/// behind or a tick held more than [`LIVE_BATCH`]). Filters: `provider`
/// (its name), `type` (the event type), `vm` (a VM's name, provider
/// reference or id), `since`. The stream ends when the service shuts
/// down.
pub(super) async fn live(
    State(state): State<ApiState>,
    raw: RawQuery,
) -> Result<Response, ApiError> {
    let raw = raw
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    live_stream(state, raw).await
}

/// The live stream of [`live`] for the query `raw` (its `(key, value)`
/// pairs): what `GET /api/events/stream` answers, and what the web UI's
/// session-authenticated `GET /ui/events/stream` serves through
/// [`crate::events_stream`]. 400 on an unknown or empty parameter or a
/// bad `since`.
pub(crate) async fn live_stream(
    state: ApiState,
    raw: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let mut filter = LiveFilter::default();
    for (k, v) in raw {
        let slot = match k.as_str() {
            "provider" => &mut filter.provider,
            "type" => &mut filter.event_type,
            "vm" => &mut filter.vm,
            "since" => {
                filter.since_ms = Some(
                    EventFilter::parse_since("since", &v)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                );
                continue;
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "{k}: unknown parameter (the stream takes provider, type, vm, since)"
                )))
            }
        };
        if v.trim().is_empty() {
            return Err(ApiError::bad_request(format!("{k}: empty")));
        }
        *slot = Some(v);
    }
    // Subscribed before the backlog is read: nothing handled meanwhile is
    // missed (an event may come twice: in the backlog and live).
    let rx = state.live.subscribe();
    let backlog = match filter.since_ms {
        Some(since) => {
            let store = state.store.clone();
            let f = filter.clone();
            blocking(move || backlog(&*store, since, &f)).await?
        }
        None => Vec::new(),
    };
    let stop = state.shutdown.clone();
    let stream = futures_util::stream::unfold(
        Live {
            rx,
            filter,
            pending: backlog,
            dropped: 0,
            stop,
            ended: false,
        },
        next_message,
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The stored events since `since` that pass `filter`, oldest first, as
/// live events (their outcome from their record, when they have one).
fn backlog(
    store: &dyn automate_vmdb::served::ServedStore,
    since: i64,
    filter: &LiveFilter,
) -> Result<Vec<Arc<LiveEvent>>, ApiError> {
    let events = EventFilter {
        event_type: filter.event_type.clone(),
        since_ms: Some(since),
        limit: Some(LIVE_BACKLOG),
        offset: 0,
    };
    let (_, rows) =
        automate_events::stream::event_streams(store, &events).map_err(ApiError::internal)?;
    let mut providers = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (id, obj) in rows {
        let text = |k: &str| {
            obj.attrs
                .get(k)
                .map(automate_engine::AttrValue::to_text)
                .filter(|s| !s.is_empty())
        };
        let ems = obj.attrs.get("ems_id").and_then(|v| match v {
            automate_engine::AttrValue::Int(i) => Some(*i),
            _ => None,
        });
        let (provider, source) = match ems {
            Some(ems) => providers
                .entry(ems)
                .or_insert_with(|| {
                    let name = store
                        .attribute(
                            &automate_vmdb::VmdbRef {
                                class: Arc::from("ExtManagementSystem"),
                                id: ems,
                            },
                            "name",
                        )
                        .ok()
                        .flatten()
                        .map(|v| v.to_text())
                        .unwrap_or_default();
                    (name, text("source").unwrap_or_default())
                })
                .clone(),
            None => (String::new(), text("source").unwrap_or_default()),
        };
        let record = Record::of(&obj).ok().flatten();
        let outcome = record.map(|r| r.outcome).unwrap_or_default();
        let vm_id = text("vm_or_template_id");
        let vm_name = match obj.attrs.get("vm_or_template_id") {
            Some(automate_engine::AttrValue::Int(vm)) => store
                .attribute(
                    &automate_vmdb::VmdbRef {
                        class: Arc::from("VmOrTemplate"),
                        id: *vm,
                    },
                    "name",
                )
                .ok()
                .flatten()
                .map(|v| v.to_text()),
            _ => None,
        };
        let e = LiveEvent {
            id: id.to_string(),
            event_type: text("event_type").unwrap_or_default(),
            provider,
            source,
            timestamp: text("timestamp").unwrap_or_default(),
            vm_ems_ref: text("vm_ems_ref"),
            vm_name,
            vm_id,
            generic_events: outcome.generic_events,
            policies: outcome
                .policies
                .into_iter()
                .filter(|p| p.condition)
                .map(|p| p.policy)
                .collect(),
            alerts: outcome.alerts.into_iter().map(|a| a.alert).collect(),
            error: None,
        };
        if filter.matches(&e) {
            out.push(Arc::new(e));
        }
    }
    Ok(out)
}

/// A live stream's state between messages.
struct Live {
    rx: tokio::sync::broadcast::Receiver<Arc<LiveEvent>>,
    filter: LiveFilter,
    /// Events waiting for the next message.
    pending: Vec<Arc<LiveEvent>>,
    /// Events left out since the last message.
    dropped: u64,
    stop: tokio_util::sync::CancellationToken,
    ended: bool,
}

/// The next message: waits for an event, then gathers for the rest of the
/// tick ([`LIVE_EVERY`]), then sends what it has; `None` (the end of the
/// stream) once the service stops or the pipeline's stream closes.
async fn next_message(mut s: Live) -> Option<(Result<Event, std::convert::Infallible>, Live)> {
    if s.ended {
        return None;
    }
    if s.pending.is_empty() && s.dropped == 0 {
        // Wait for the first event of the next message.
        loop {
            tokio::select! {
                _ = s.stop.cancelled() => return None,
                got = s.rx.recv() => match got {
                    Ok(e) => {
                        if s.filter.matches(&e) {
                            s.pending.push(e);
                            break;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        s.dropped += n;
                        break;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }
    // Gather the rest of this tick.
    let tick = tokio::time::sleep(LIVE_EVERY);
    tokio::pin!(tick);
    loop {
        tokio::select! {
            _ = s.stop.cancelled() => {
                s.ended = true;
                break;
            }
            _ = &mut tick => break,
            got = s.rx.recv() => match got {
                Ok(e) => {
                    if s.filter.matches(&e) {
                        if s.pending.len() < LIVE_BATCH {
                            s.pending.push(e);
                        } else {
                            s.dropped += 1;
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => s.dropped += n,
                Err(RecvError::Closed) => {
                    s.ended = true;
                    break;
                }
            }
        }
    }
    let take = s.pending.len().min(LIVE_BATCH);
    let batch: Vec<Arc<LiveEvent>> = s.pending.drain(..take).collect();
    let shown: Vec<&LiveEvent> = batch.iter().map(|e| &**e).collect();
    let data = json!({"events": shown, "dropped": s.dropped}).to_string();
    s.dropped = 0;
    Some((Ok(Event::default().event("events").data(data)), s))
}
