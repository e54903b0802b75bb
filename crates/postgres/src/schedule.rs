//! Scheduled work on PostgreSQL (the `scheduled` table of migration 2):
//! state-machine retries and request work, due at `run_at`, claimed by any
//! node with `FOR UPDATE SKIP LOCKED` and leased to it until `lease_until`.

use crate::PgError;
use automate_vmdb::{to_micros, WorkItem};
use std::time::SystemTime;

/// Inserts `items` into `scheduled` inside `tx` (a unit of work's
/// transaction: the retries an event's handling scheduled commit with
/// it); their ids, in order.
pub async fn insert_many(
    tx: &tokio_postgres::Transaction<'_>,
    items: &[(WorkItem, SystemTime)],
) -> Result<Vec<u64>, PgError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = items.iter().map(|(w, _)| w.kind.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = items.iter().map(|(w, _)| &w.payload).collect();
    let run_at: Vec<i64> = items
        .iter()
        .map(|(_, t)| i64::try_from(to_micros(*t)).unwrap_or(i64::MAX))
        .collect();
    let rows = tx
        .query(
            "INSERT INTO scheduled (kind, payload, run_at)
             SELECT * FROM unnest($1::text[], $2::jsonb[], $3::bigint[])
             RETURNING id",
            &[&kinds, &payloads, &run_at],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
        .collect())
}
