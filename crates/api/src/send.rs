//! `POST /api/event_streams` with `{"action": "send", "provider": {...},
//! "event": {...}}`: one provider event handled now, through the event
//! handler and Automate, as `automate event send` does (the http catcher's
//! `POST /api/events` only queues it). The answer carries the evm.log
//! lines the handling wrote, so that the command prints the same while a
//! service holds the store.

use super::{expect_action, in_unit, json_object, ok, ApiError, ApiResult, ApiState};
use automate_events::{EvmLog, Handler, Provider, ProviderEvent};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use serde_json::{json, Value};

/// A field of the body; 400 naming it when missing.
fn field<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a Value, ApiError> {
    obj.get(key)
        .ok_or_else(|| ApiError::bad_request(format!("{key}: missing")))
}

/// Handles the event and answers `event_id`, `duplicate`, the evm.log
/// `lines` (the catcher's `Caught event` line first) and Automate's
/// `error` (`null` when it ended well; the event stays stored either way).
pub(super) async fn action(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let obj = json_object(body, &state)?;
    expect_action(&obj, "send")?;
    let provider: Provider = serde_json::from_value(field(&obj, "provider")?.clone())
        .map_err(|e| ApiError::bad_request(format!("provider: {e}")))?;
    let event: ProviderEvent = serde_json::from_value(field(&obj, "event")?.clone())
        .map_err(|e| ApiError::bad_request(format!("event: {e}")))?;
    if event.event_type.trim().is_empty() {
        return Err(ApiError::bad_request("event.event_type: must not be empty"));
    }
    let engine = state.engine.clone();
    let schedule = state.store.scheduled_work();
    let first_sight = state.first_sight.clone();
    let (trace, live) = (state.trace.clone(), state.live.clone());
    let doc = in_unit(state.store.clone(), move |objects| {
        let log = EvmLog::default();
        let handler = Handler::new(engine.with_store(objects), log.clone())
            .map_err(ApiError::internal)?
            .with_schedule(schedule)
            .with_first_sight(first_sight)
            .with_trace(trace)
            .with_live(live);
        log.info(provider.caught_line(&event.event_type));
        let outcome = handler
            .handle(&provider, &event)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(json!({
            "event_id": outcome.event_id,
            "duplicate": outcome.duplicate,
            "lines": log.drain(),
            "error": outcome.error.map(|e| e.to_string()),
            "digest": outcome.record.map(|r| r.digest),
        }))
    })
    .await?;
    ok(doc)
}
