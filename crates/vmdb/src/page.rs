//! Paging through one base class of a store ([`Pages`]): the values of a
//! page query, backend-neutral, so the event stream's readers (`automate
//! events list`, `GET /api/event_streams`) and the API's collections do
//! not name the backend. The redb store reads a page lazily
//! (`automate_redb`'s `paging`).

use crate::{StoreError, StoredObject};

/// Which rows: skip `offset` (matching) rows, then take up to `limit`, from
/// the oldest id or (`newest_first`) from the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    /// Matching rows to skip.
    pub offset: usize,
    /// Most rows to return.
    pub limit: usize,
    /// Read from the newest id back.
    pub newest_first: bool,
}

/// A page and what it cost.
#[derive(Debug, Default)]
pub struct Page {
    /// Rows of the base class in the store (every one, matching the filter
    /// or not): keys counted, nothing decoded.
    pub total: usize,
    /// The page's rows in the order they were read.
    pub rows: Vec<(i64, StoredObject)>,
    /// Rows decoded to fill the page: `offset + limit` at most without a
    /// filter, `limit` when `offset` is 0.
    pub decoded: usize,
}

/// Keeps a row in the page (a filter over the decoded object).
pub type Keep<'a> = &'a dyn Fn(&StoredObject) -> bool;

/// A store that reads one page of a base class at a time.
pub trait Pages: Send + Sync {
    /// A page of the objects of `class`'s base class in one read snapshot:
    /// the rows `keep` accepts (all without it), `q.offset` of them
    /// skipped.
    fn page(&self, class: &str, q: PageQuery, keep: Option<Keep<'_>>) -> Result<Page, StoreError>;
}
