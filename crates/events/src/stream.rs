//! Reading the stored event stream (EmsEvent, MiqEvent, RequestEvent rows):
//! filtered by type, time and count, for `automate events list` and
//! `GET /api/event_streams`.

use automate_core::time::{now_ms, parse_time};
use automate_engine::AttrValue;
use automate_vmdb::page::{PageQuery, Pages};
use automate_vmdb::{StoreError, StoredObject};

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
    /// Skip the newest `offset` events that match first (the page before
    /// the last `limit`).
    pub offset: usize,
}

impl EventFilter {
    /// A `since` value, as every time users type is read
    /// ([`crate::when::parse`]: a span ago such as `1h`, a number of
    /// seconds ago, RFC 3339, a date); the error names `flag`.
    pub fn parse_since(flag: &str, s: &str) -> Result<i64, crate::when::TimeArgError> {
        crate::when::parse(flag, s, now_ms())
    }

    /// Whether `obj` passes the type and time filters. Every row's
    /// `timestamp` is read with [`parse_time`], which takes the ISO 8601
    /// the stream is written in and the `Time#to_s` text
    /// (`2026-11-24 20:05:09 UTC`) older MiqEvent rows were stored with.
    pub fn matches(&self, obj: &StoredObject) -> bool {
        let text = |k: &str| obj.attrs.get(k).map(AttrValue::to_text).unwrap_or_default();
        if let Some(t) = &self.event_type {
            if text("event_type") != *t {
                return false;
            }
        }
        if let Some(since) = self.since_ms {
            if parse_time(&text("timestamp")).is_none_or(|ts| ts < since) {
                return false;
            }
        }
        true
    }
}

/// The stored event stream (EmsEvent, MiqEvent, RequestEvent), oldest
/// first, filtered; also how many events there are in all. Read from the
/// newest row back and only until the page is full
/// ([`Pages::page`]): `limit: Some(1)` over any number of events
/// decodes one row when there is no type or time filter.
pub fn event_streams(
    store: &(impl Pages + ?Sized),
    filter: &EventFilter,
) -> Result<(usize, Vec<(i64, StoredObject)>), StoreError> {
    let keep = |obj: &StoredObject| filter.matches(obj);
    let filtered = filter.event_type.is_some() || filter.since_ms.is_some();
    let q = PageQuery {
        offset: filter.offset,
        limit: filter.limit.unwrap_or(usize::MAX),
        newest_first: true,
    };
    let mut page = store.page("EventStream", q, if filtered { Some(&keep) } else { None })?;
    page.rows.reverse();
    Ok((page.total, page.rows))
}
