//! One page of a base class of the redb object store, read lazily: the
//! `objects` table is walked in id order (or from the newest id), rows are
//! decoded only while the page is being filled, and the walk stops once it
//! is full. A collection of 380,000 events asked for one row decodes one
//! row (or, with a filter, the rows up to the first that matches), never
//! the whole class. The API's collections and `automate events list` read
//! through it.

use super::codec::decode_object;
use super::schema::OBJECTS;
use super::{backend, RedbStore};
use automate_vmdb::{base_class, StoreError};

pub use automate_vmdb::page::{Keep, Page, PageQuery};

impl RedbStore {
    /// A page of the objects of `class`'s base class in one read snapshot:
    /// the rows `keep` accepts (all without it), `q.offset` of them
    /// skipped. Without `keep`, skipped rows are not decoded either. A row
    /// that cannot be decoded is logged and left out.
    pub fn page(
        &self,
        class: &str,
        q: PageQuery,
        keep: Option<Keep<'_>>,
    ) -> Result<Page, StoreError> {
        let base = base_class(class).ok_or_else(|| StoreError::UnknownClass(class.into()))?;
        let txn = self.db.begin_read().map_err(backend)?;
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        let range = || {
            objects
                .range((base, i64::MIN)..=(base, i64::MAX))
                .map_err(backend)
        };
        let mut page = Page::default();
        for entry in range()? {
            entry.map_err(backend)?;
            page.total += 1;
        }
        let rows: Box<dyn Iterator<Item = _>> = if q.newest_first {
            Box::new(range()?.rev())
        } else {
            Box::new(range()?)
        };
        let mut skipped = 0usize;
        for entry in rows {
            if page.rows.len() >= q.limit {
                break;
            }
            let (key, value) = entry.map_err(backend)?;
            let id = key.value().1;
            if keep.is_none() && skipped < q.offset {
                skipped += 1;
                continue;
            }
            page.decoded += 1;
            let obj = match decode_object(value.value()) {
                Ok(obj) => obj,
                Err(e) => {
                    tracing::warn!("{base} [{id}] cannot be decoded: {e}");
                    continue;
                }
            };
            if keep.is_some_and(|keep| !keep(&obj)) {
                continue;
            }
            if skipped < q.offset {
                skipped += 1;
                continue;
            }
            page.rows.push((id, obj));
        }
        Ok(page)
    }
}

impl automate_vmdb::page::Pages for RedbStore {
    fn page(&self, class: &str, q: PageQuery, keep: Option<Keep<'_>>) -> Result<Page, StoreError> {
        RedbStore::page(self, class, q, keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automate_core::value::{AttrValue, Attributes};
    use automate_vmdb::StoredObject;

    fn store_with(n: i64) -> (tempfile::TempDir, RedbStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path().join("page.redb")).expect("open");
        store
            .write_batch(|b| {
                for i in 0..n {
                    let mut a = Attributes::default();
                    let kind = if i % 10 == 0 { "RARE" } else { "COMMON" };
                    a.insert("event_type".into(), AttrValue::str(kind));
                    a.insert("n".into(), AttrValue::Int(i));
                    b.create("EmsEvent", a)?;
                }
                Ok(())
            })
            .expect("write");
        (dir, store)
    }

    fn n_of(obj: &StoredObject) -> i64 {
        match obj.attrs.get("n") {
            Some(AttrValue::Int(n)) => *n,
            other => panic!("n: {other:?}"),
        }
    }

    /// Without a filter a page decodes exactly its own rows, whatever the
    /// offset and however many rows the class holds.
    #[test]
    fn pages_decode_only_their_rows() {
        let (_dir, store) = store_with(2_000);
        let q = |offset, limit, newest_first| PageQuery {
            offset,
            limit,
            newest_first,
        };
        let p = store
            .page("EventStream", q(0, 1, true), None)
            .expect("page");
        assert_eq!((p.total, p.decoded, p.rows.len()), (2_000, 1, 1));
        assert_eq!(n_of(&p.rows[0].1), 1_999);

        let p = store
            .page("EmsEvent", q(1_500, 10, false), None)
            .expect("page");
        assert_eq!((p.total, p.decoded), (2_000, 10));
        let ns: Vec<i64> = p.rows.iter().map(|(_, o)| n_of(o)).collect();
        assert_eq!(ns, (1_500..1_510).collect::<Vec<_>>());

        let p = store
            .page("EventStream", q(1_995, 10, false), None)
            .expect("page");
        assert_eq!((p.decoded, p.rows.len()), (5, 5));
        let p = store
            .page("EventStream", q(0, 0, false), None)
            .expect("page");
        assert_eq!((p.total, p.decoded, p.rows.len()), (2_000, 0, 0));
    }

    /// With a filter the walk stops at the last row the page needs.
    #[test]
    fn filtered_pages_stop_when_full() {
        let (_dir, store) = store_with(2_000);
        let rare = |o: &StoredObject| o.attrs.get("event_type") == Some(&AttrValue::str("RARE"));
        let q = PageQuery {
            offset: 2,
            limit: 3,
            newest_first: true,
        };
        let p = store.page("EventStream", q, Some(&rare)).expect("page");
        let ns: Vec<i64> = p.rows.iter().map(|(_, o)| n_of(o)).collect();
        // Newest first: 1990, 1980 skipped; then 1970, 1960, 1950.
        assert_eq!(ns, vec![1_970, 1_960, 1_950]);
        assert_eq!(p.decoded, 50, "rows 1999..=1950 and no further");
        assert_eq!(p.total, 2_000);
    }
}
