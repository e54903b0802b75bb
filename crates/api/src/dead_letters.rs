//! `/api/dead_letters`: the events whose handling failed too many times
//! (`GET`, as `automate events dead-letter list` prints them) and sending
//! them through again (`POST` with `{"action": "retry", "ids": [...]}` or
//! `{"action": "retry", "all": true}`), over the process's
//! [`DeadLetters`](automate_vmdb::dead_letter::DeadLetters): the
//! `DeadLetterEvent` rows in embedded mode, the JetStream dead-letter
//! stream in cluster mode.

use super::collection::{CollectionQuery, RawQuery};
use super::{
    base_url, blocking, expect_action, json_object, ok, only_fields, ApiError, ApiResult, ApiState,
};
use automate_vmdb::dead_letter::DeadLetter;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};

/// At most this many dead letters are listed.
pub const LIST_MAX: usize = 10_000;

/// One dead letter as a row: `id` (a string, as every id), `provider`,
/// `source`, `event_type`, `timestamp`, `vm_ems_ref`, `error`,
/// `attempts`, `dead_lettered_on` and the whole `event`.
pub fn row(d: &DeadLetter) -> Value {
    json!({
        "id": d.id.to_string(),
        "provider": d.provider.name,
        "source": d.provider.kind,
        "event_type": d.event.event_type,
        "timestamp": d.event.timestamp,
        "vm_ems_ref": d.event.vm_ems_ref,
        "error": d.error,
        "attempts": d.attempts,
        "dead_lettered_on": d.dead_lettered_on,
        "event": d.event,
    })
}

/// `GET /api/dead_letters`: the dead letters not yet retried, oldest
/// first, as a collection (`offset`, `limit`, `filter[]`, `sort_by`, ...).
pub(super) async fn list(State(state): State<ApiState>, raw: RawQuery) -> ApiResult {
    let q = CollectionQuery::parse(raw, &[], &state.limits)?;
    let all = match state.dead_letters.clone() {
        None => Vec::new(),
        Some(d) => {
            blocking(move || {
                let list = d.list(LIST_MAX).map_err(ApiError::internal)?;
                Ok(list.iter().map(row).collect::<Vec<Value>>())
            })
            .await?
        }
    };
    let count = all.len();
    let mut rows: Vec<Value> = all.into_iter().filter(|r| q.matches(r)).collect();
    let matched = rows.len();
    q.sort(&mut rows);
    let page = q.window(rows);
    ok(q.answer(
        "dead_letters",
        count,
        Some(matched),
        page,
        &["retry"],
        &base_url(&state),
    ))
}

/// `POST /api/dead_letters` with `{"action": "retry", "ids": ["1", ...]}`
/// or `{"action": "retry", "all": true}`: puts them back on the event
/// queue and answers `{"retried": ["1", ...]}` (unknown ids skipped). 409
/// when this process has no event queue to retry onto.
pub(super) async fn action(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let obj = json_object(body, &state)?;
    expect_action(&obj, "retry")?;
    only_fields(&obj, "retry", &["action", "ids", "all"])?;
    let all = match obj.get("all") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "all: expected a boolean, got {other}"
            )))
        }
    };
    let ids: Vec<u64> = match obj.get("ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                match v {
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    Value::Number(n) => n.as_u64(),
                    _ => None,
                }
                .ok_or_else(|| ApiError::bad_request(format!("ids: [{v}] is not an id")))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "ids: expected a list of ids, got {other}"
            )))
        }
    };
    // Exactly one of the two: all with no ids, or ids without all.
    if all != ids.is_empty() {
        return Err(ApiError::bad_request(
            "retry: give either ids (a non-empty list) or all: true",
        ));
    }
    let Some(dead) = state.dead_letters.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this process has no event queue to retry dead letters onto",
        ));
    };
    let retried = blocking(move || {
        if all {
            dead.retry_all()
        } else {
            dead.retry(&ids)
        }
        .map_err(ApiError::internal)
    })
    .await?;
    let retried: Vec<String> = retried.iter().map(u64::to_string).collect();
    ok(json!({ "retried": retried }))
}
