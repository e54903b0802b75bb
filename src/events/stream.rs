//! Reading the stored event stream (EmsEvent, MiqEvent, RequestEvent rows):
//! filtered by type, time and count, for `automate events list` and
//! `GET /api/event_streams`.

use crate::engine::time::{now_ms, parse_time};
use crate::engine::AttrValue;
use crate::vmdb::{RedbStore, StoreError, StoredObject};

/// Which stored events to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Only events of this `event_type`.
    pub event_type: Option<String>,
    /// Only events whose `timestamp` is at or after this (ms since the
    /// epoch).
    pub since_ms: Option<i64>,
    /// Only the last `limit` events (by id).
    pub limit: Option<usize>,
}

impl EventFilter {
    /// A `since` value: RFC 3339, or a number of seconds ago. `None` when
    /// it is neither.
    pub fn parse_since(s: &str) -> Option<i64> {
        match s.trim().parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs >= 0.0 => Some(now_ms() - (secs * 1000.0) as i64),
            _ => parse_time(s),
        }
    }
}

/// The stored event stream (EmsEvent, MiqEvent, RequestEvent), oldest
/// first, filtered; also how many events there are in all.
pub fn event_streams(
    store: &RedbStore,
    filter: &EventFilter,
) -> Result<(usize, Vec<(i64, StoredObject)>), StoreError> {
    let refs = store.list("EventStream")?;
    let total = refs.len();
    let mut rows = Vec::new();
    for r in refs {
        let Some(obj) = store.load(&r.class, r.id)? else {
            continue;
        };
        let text = |k: &str| obj.attrs.get(k).map(AttrValue::to_text).unwrap_or_default();
        if let Some(t) = &filter.event_type {
            if text("event_type") != *t {
                continue;
            }
        }
        if let Some(since) = filter.since_ms {
            if parse_time(&text("timestamp")).is_none_or(|ts| ts < since) {
                continue;
            }
        }
        rows.push((r.id, obj));
    }
    if let Some(n) = filter.limit {
        let skip = rows.len().saturating_sub(n);
        rows.drain(..skip);
    }
    Ok((total, rows))
}
