//! The embedded mode's dead letters ([`StoredDeadLetters`]): the
//! `DeadLetterEvent` rows of the event stream the pipeline's workers write
//! after [`MAX_EVENT_ATTEMPTS`](crate::pipeline::MAX_EVENT_ATTEMPTS)
//! failed handlings (the event as caught and the last error, committed
//! with the event's ack). Retrying one enqueues its provider event again
//! (a new queue item, attempts from one) and marks the row `retried_on`,
//! so it leaves the list but stays in the event stream as history.

use automate_core::value::AttrValue;
use automate_vmdb::dead_letter::{DeadLetter, DeadLetters};
use automate_vmdb::event_queue::{EventQueue, Provider, ProviderEvent};
use automate_vmdb::page::PageQuery;
use automate_vmdb::served::ServedStore;
use automate_vmdb::{StoreError, StoredObject, VmdbRef};
use std::sync::Arc;

/// The class of a dead-lettered event's row.
pub const DEAD_LETTER_CLASS: &str = "DeadLetterEvent";

/// The attribute a retried dead letter is marked with (ISO 8601 UTC).
pub const RETRIED_ON: &str = "retried_on";

/// The dead letters of an embedded store: its `DeadLetterEvent` rows,
/// retried onto `queue`.
#[derive(Debug, Clone)]
pub struct StoredDeadLetters {
    store: Arc<dyn ServedStore>,
    queue: Option<Arc<dyn EventQueue>>,
    providers: Vec<Provider>,
}

impl StoredDeadLetters {
    /// The dead letters of `store` (listed only: a retry fails until
    /// [`StoredDeadLetters::with_queue`]). A row names its provider and
    /// source only: the provider is taken from `providers` (the configured
    /// ones) by name when it is there.
    pub fn new(store: Arc<dyn ServedStore>, providers: Vec<Provider>) -> StoredDeadLetters {
        StoredDeadLetters {
            store,
            queue: None,
            providers,
        }
    }

    /// Retries onto `queue`.
    pub fn with_queue(mut self, queue: Arc<dyn EventQueue>) -> StoredDeadLetters {
        self.queue = Some(queue);
        self
    }

    fn rows(&self, limit: usize) -> Result<Vec<(i64, StoredObject)>, StoreError> {
        let keep = |obj: &StoredObject| {
            obj.class == DEAD_LETTER_CLASS && !obj.attrs.contains_key(RETRIED_ON)
        };
        let q = PageQuery {
            offset: 0,
            limit,
            newest_first: false,
        };
        Ok(self.store.page("EventStream", q, Some(&keep))?.rows)
    }

    fn provider(&self, name: &str, source: &str) -> Provider {
        self.providers
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .unwrap_or_else(|| Provider {
                name: name.to_string(),
                kind: source.to_string(),
                hostname: name.to_string(),
                userid: String::new(),
            })
    }

    fn dead_letter(&self, id: i64, obj: &StoredObject) -> DeadLetter {
        let text = |k: &str| obj.attrs.get(k).map(AttrValue::to_text).unwrap_or_default();
        let opt = |k: &str| obj.attrs.get(k).map(AttrValue::to_text);
        let full_data = obj
            .attrs
            .get("full_data")
            .and_then(|v| v.as_str())
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Null);
        let attempts = match obj.attrs.get("attempts") {
            Some(AttrValue::Int(n)) => u32::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        DeadLetter {
            id: u64::try_from(id).unwrap_or(0),
            provider: self.provider(&text("provider"), &text("source")),
            event: ProviderEvent {
                event_type: text("event_type"),
                timestamp: text("timestamp"),
                chain_id: opt("chain_id"),
                vm_ems_ref: opt("vm_ems_ref"),
                vm_name: opt("vm_name"),
                host_ems_ref: opt("host_ems_ref"),
                host_name: opt("host_name"),
                full_data,
            },
            error: text("error"),
            attempts,
            dead_lettered_on: text("created_on"),
        }
    }
}

impl DeadLetters for StoredDeadLetters {
    fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self
            .rows(limit)?
            .iter()
            .map(|(id, obj)| self.dead_letter(*id, obj))
            .collect())
    }

    fn retry(&self, ids: &[u64]) -> Result<Vec<u64>, StoreError> {
        let mut found = Vec::new();
        for &id in ids {
            let Ok(row) = i64::try_from(id) else { continue };
            match self.store.load(DEAD_LETTER_CLASS, row)? {
                Some(obj)
                    if obj.class == DEAD_LETTER_CLASS && !obj.attrs.contains_key(RETRIED_ON) =>
                {
                    found.push(self.dead_letter(row, &obj))
                }
                _ => {}
            }
        }
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let Some(queue) = &self.queue else {
            return Err(StoreError::Backend(
                "no event queue to retry the dead letters onto".into(),
            ));
        };
        // Enqueued first: a crash before the rows are marked lists them
        // again, and a second retry is absorbed by the event's dedup key.
        let events: Vec<(Arc<Provider>, ProviderEvent)> = found
            .iter()
            .map(|d| (Arc::new(d.provider.clone()), d.event.clone()))
            .collect();
        queue.enqueue_batch(&events)?;
        let now = AttrValue::Str(automate_core::time::iso8601_secs_now());
        let unit = self.store.clone().begin_unit();
        let objects = unit.objects();
        for d in &found {
            let r = VmdbRef {
                class: Arc::from(DEAD_LETTER_CLASS),
                id: i64::try_from(d.id).unwrap_or_default(),
            };
            objects.update(&r, RETRIED_ON, now.clone())?;
        }
        drop(objects);
        unit.commit()?;
        tracing::info!(target: "evm", "MIQ(EmsEventHandler-dead_letter) {} dead letter(s) enqueued again: {:?}", found.len(), found.iter().map(|d| d.id).collect::<Vec<_>>());
        Ok(found.iter().map(|d| d.id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automate_core::value::Attributes;
    use automate_redb::{RedbEventQueue, RedbStore};
    use automate_vmdb::ObjectStore;

    fn dead_row(store: &RedbStore, vm: &str) -> i64 {
        let s = |v: &str| AttrValue::Str(v.to_string());
        let mut attrs = Attributes::default();
        attrs.insert("event_namespace".into(), s("DeadLetter"));
        attrs.insert("source".into(), s("RHEVM"));
        attrs.insert("provider".into(), s("rhevm01"));
        attrs.insert("event_type".into(), s("VM_DOWN"));
        attrs.insert("timestamp".into(), s("2026-01-01T00:00:00Z"));
        attrs.insert("vm_ems_ref".into(), s(vm));
        attrs.insert("vm_name".into(), s(vm));
        attrs.insert("full_data".into(), s(r#"{"k":1}"#));
        attrs.insert("error".into(), s("the handler panicked: boom"));
        attrs.insert("attempts".into(), AttrValue::Int(3));
        attrs.insert("created_on".into(), s("2026-01-01T00:00:01Z"));
        store.create(DEAD_LETTER_CLASS, attrs).unwrap().id
    }

    #[test]
    fn dead_letter_rows_are_listed_retried_onto_the_queue_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("d.redb")).unwrap());
        let a = dead_row(&store, "vm-a");
        let b = dead_row(&store, "vm-b");
        // An ordinary event is no dead letter.
        store
            .create("EmsEvent", Attributes::default())
            .expect("an EmsEvent");
        let queue = Arc::new(RedbEventQueue::open(store.schedule()).unwrap());
        let configured = Provider {
            name: "rhevm01".into(),
            kind: "RHEVM".into(),
            hostname: "rhevm.example.com".into(),
            userid: "admin@internal".into(),
        };
        let dead = StoredDeadLetters::new(store.clone(), vec![configured.clone()])
            .with_queue(queue.clone());
        let listed = dead.list(100).unwrap();
        let ids: Vec<u64> = listed.iter().map(|d| d.id).collect();
        assert_eq!(ids, vec![a as u64, b as u64]);
        assert_eq!(listed[0].provider, configured);
        assert_eq!(listed[0].event.vm_name.as_deref(), Some("vm-a"));
        assert_eq!(listed[0].event.full_data, serde_json::json!({"k": 1}));
        assert_eq!(listed[0].attempts, 3);
        assert_eq!(listed[0].error, "the handler panicked: boom");

        // An unknown id is skipped; a known one is enqueued once.
        assert_eq!(dead.retry(&[a as u64, 7]).unwrap(), vec![a as u64]);
        assert_eq!(queue.depth(), 1);
        let claim = queue.claim(10).unwrap();
        assert_eq!(claim.events.len(), 1);
        assert_eq!(claim.events[0].event.vm_ems_ref.as_deref(), Some("vm-a"));
        assert_eq!(claim.events[0].attempts, 1);
        assert!(store
            .load(DEAD_LETTER_CLASS, a)
            .unwrap()
            .unwrap()
            .attrs
            .contains_key(RETRIED_ON));
        // Retried once: off the list, and not retried again.
        assert_eq!(dead.retry(&[a as u64]).unwrap(), Vec::<u64>::new());
        assert_eq!(dead.retry_all().unwrap(), vec![b as u64]);
        assert!(dead.list(100).unwrap().is_empty());
    }

    #[test]
    fn a_retry_without_a_queue_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("d.redb")).unwrap());
        let a = dead_row(&store, "vm-a");
        let dead = StoredDeadLetters::new(store.clone(), Vec::new());
        assert_eq!(dead.list(10).unwrap()[0].provider.kind, "RHEVM");
        assert!(dead.retry(&[a as u64]).is_err());
        assert_eq!(dead.list(10).unwrap().len(), 1);
    }
}
