//! `/api/retries`: the state-machine retries scheduled in the object store
//! (`GET`, as `automate retries list` prints them) and running the ones
//! that have come due (`POST` with `{"action": "run_due"}`, as `automate
//! retries run-due` does), so that the command works while a service
//! holds the store.

use super::collection::{resource_query, select, CollectionQuery, RawQuery};
use super::{
    base_url, blocking, expect_action, json_object, ok, path_arg, ApiError, ApiResult, ApiState,
};
use automate_engine::deliver::{run_due, Outcome, DEFAULT_MAX_DELIVERIES, RETRY_KIND};
use automate_vmdb::WorkItem;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// At most this many retries are listed (as `automate retries list`).
const LIST_MAX: usize = 10_000;

/// The highest `max_deliveries` a `run_due` action takes.
const MAX_DELIVERIES_LIMIT: u32 = 10_000;

/// The most deliveries one `run_due` action makes (then it answers, what
/// is left still scheduled).
const ROUND_LIMIT: usize = 1_000;

/// One retry's row: `href`, `id`, `uri`, `deliveries` (runs so far) and
/// `attempts` (claims so far).
fn row(base: &str, id: u64, item: &WorkItem, attempts: u32) -> Value {
    json!({
        "href": format!("{base}/api/retries/{id}"),
        "id": id.to_string(),
        "uri": item.payload["uri"].as_str().unwrap_or(""),
        "deliveries": item.payload["deliveries"].as_u64().unwrap_or(0),
        "attempts": attempts,
    })
}

/// Every scheduled retry as a row: `href`, `id`, `uri`, `deliveries`
/// (runs so far) and `attempts` (claims so far), by id; at most
/// [`LIST_MAX`].
async fn rows(state: &ApiState) -> Result<Vec<Value>, ApiError> {
    let schedule = state.store.scheduled_work();
    let base = base_url(state);
    blocking(move || {
        let due = schedule
            .due(
                SystemTime::now() + Duration::from_secs(10 * 365 * 86_400),
                LIST_MAX,
            )
            .map_err(ApiError::internal)?;
        Ok(due
            .into_iter()
            .filter(|(_, item, _)| item.kind == RETRY_KIND)
            .map(|(id, item, attempts)| row(&base, id, &item, attempts))
            .collect::<Vec<Value>>())
    })
    .await
}

/// `GET /api/retries`: the scheduled retries as a ManageIQ collection
/// (`offset`, `limit`, `filter[]`, `sort_by`, `attributes`, `expand`, as
/// every collection).
pub(super) async fn list(State(state): State<ApiState>, raw: RawQuery) -> ApiResult {
    let q = CollectionQuery::parse(raw, &[], &state.limits)?;
    let all = rows(&state).await?;
    let count = all.len();
    let mut rows: Vec<Value> = all.into_iter().filter(|r| q.matches(r)).collect();
    let matched = rows.len();
    q.sort(&mut rows);
    let page = q.window(rows);
    ok(q.answer(
        "retries",
        count,
        Some(matched),
        page,
        &["run_due"],
        &base_url(&state),
    ))
}

/// `GET /api/retries/{id}`: one scheduled retry, or a 404.
pub(super) async fn show(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    raw: RawQuery,
) -> ApiResult {
    let id = path_arg(id)?;
    let attributes = resource_query(raw)?;
    let not_found = || ApiError::not_found(format!("retries/{id}: no such retry scheduled"));
    let n: u64 = id.parse().map_err(|_| not_found())?;
    let schedule = state.store.scheduled_work();
    let base = base_url(&state);
    let row = blocking(move || {
        Ok(schedule
            .get(n)
            .map_err(ApiError::internal)?
            .filter(|s| s.item.kind == RETRY_KIND)
            .map(|s| row(&base, s.id, &s.item, s.attempts)))
    })
    .await?
    .ok_or_else(not_found)?;
    ok(select(row, attributes.as_deref()))
}

/// `POST /api/retries` with `{"action": "run_due", "max_deliveries": N}`:
/// delivers the retries that are due now (at most 64 a round, until none
/// is) and answers the counts (`finished`, `retried`, `failed`), the
/// number of items `still_scheduled`, `next_due_in_ms` (when the next
/// scheduled item comes due, `null` when none is) and each delivery's
/// Automate `trace` lines.
pub(super) async fn action(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let obj = json_object(body, &state)?;
    expect_action(&obj, "run_due")?;
    let max_deliveries = match obj.get("max_deliveries") {
        None | Some(Value::Null) => DEFAULT_MAX_DELIVERIES,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n <= MAX_DELIVERIES_LIMIT)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "max_deliveries: expected an integer from 0 to {MAX_DELIVERIES_LIMIT}, got {v}"
                ))
            })?,
    };
    let (engine, schedule) = (state.engine.clone(), state.store.scheduled_work());
    let doc = blocking(move || {
        let (mut done, mut retried, mut failed) = (0u64, 0u64, 0u64);
        let mut trace: Vec<String> = Vec::new();
        // One request delivers at most ROUND_LIMIT retries (a machine that
        // retries at once would otherwise hold the request for as many
        // rounds as `max_deliveries` allows); what is left stays scheduled
        // and `still_scheduled` says so.
        let mut delivered = 0usize;
        while delivered < ROUND_LIMIT {
            let outcomes =
                run_due(&engine, &*schedule, 64, max_deliveries).map_err(ApiError::internal)?;
            if outcomes.is_empty() {
                break;
            }
            delivered += outcomes.len();
            for o in &outcomes {
                match o {
                    Outcome::Done(_) => done += 1,
                    Outcome::Retry { .. } => retried += 1,
                    Outcome::Error { .. } | Outcome::GaveUp(_) => failed += 1,
                }
                trace.extend(o.workspace().trace.iter().map(|l| l.text.clone()));
            }
        }
        let still = schedule.len().map_err(ApiError::internal)?;
        let next = schedule.next_due().map_err(ApiError::internal)?.map(|at| {
            at.duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_millis() as u64
        });
        Ok(json!({
            "finished": done,
            "retried": retried,
            "failed": failed,
            "still_scheduled": still,
            "next_due_in_ms": next,
            "trace": trace,
        }))
    })
    .await?;
    ok(doc)
}

/// One scheduled state-machine retry, as the web UI lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryView {
    /// The scheduled item's id (`/api/retries/{id}`).
    pub id: u64,
    /// The URI the retry delivers again.
    pub uri: String,
    /// Deliveries of the machine so far.
    pub deliveries: u64,
    /// Times the item has been claimed by a runner.
    pub attempts: u32,
    /// When it comes due (while claimed: when the claim's lease ends).
    pub run_at: SystemTime,
    /// Whether a runner holds it now (`running`), else it waits
    /// (`scheduled`).
    pub leased: bool,
}

/// Every scheduled retry (at most 10,000), by id, with its due time and
/// whether a runner holds it: what `GET /api/retries` lists, with the
/// schedule's times.
pub async fn scheduled_retries(state: &ApiState) -> Result<Vec<RetryView>, ApiError> {
    let schedule = state.store.scheduled_work();
    blocking(move || {
        let due = schedule
            .due(
                SystemTime::now() + Duration::from_secs(10 * 365 * 86_400),
                LIST_MAX,
            )
            .map_err(ApiError::internal)?;
        let mut out = Vec::new();
        for (id, item, _) in due.into_iter().filter(|(_, i, _)| i.kind == RETRY_KIND) {
            // Gone since the list was read: finished meanwhile.
            let Some(s) = schedule.get(id).map_err(ApiError::internal)? else {
                continue;
            };
            out.push(RetryView {
                id,
                uri: item.payload["uri"].as_str().unwrap_or("").to_string(),
                deliveries: item.payload["deliveries"].as_u64().unwrap_or(0),
                attempts: s.attempts,
                run_at: s.run_at,
                leased: s.leased,
            });
        }
        Ok(out)
    })
    .await
}
