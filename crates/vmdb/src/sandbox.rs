//! A throwaway overlay over an object store and its scheduled work: the
//! sandbox a simulation runs in (`automate instantiate --sandbox`, the
//! API's resolve), and later replay and `automate test`.
//!
//! A [`Sandbox`] is an [`ObjectStore`] and a [`Schedule`]: reads see the
//! base store plus the sandbox's own writes; every write (a created object,
//! an updated attribute, scheduled work, a completed or rescheduled item)
//! goes only to the overlay, and nothing reaches the base. Outbound actions
//! a method would have performed (`send_email`, `evm.http`) are recorded
//! with [`Sandbox::suppress`] instead. [`Sandbox::diff`] answers what would
//! have been written, as a [`Diff`]; dropping the sandbox forgets it.
//!
//! Objects created in the sandbox get ids in a region of their own,
//! [`SANDBOX_REGION`] (`9000000000000000001`, ...): they never collide with
//! a stored object's id and take no id from the base store's sequences.
//! Scheduled work created in the sandbox gets ids from [`SANDBOX_WORK_ID`]
//! up, for the same reason.

use super::associations::{self, Lookup};
use super::schedule::{Claimed, Schedule, Scheduled, WorkItem};
use super::{base_class, ObjectStore, StoreError, StoredObject, VmdbRef, REGION_BASE};
use automate_core::value::{AttrValue, Attributes};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// The region of the ids objects created in a sandbox get: far above any
/// real region (ManageIQ's are 0..=999), so `region_of` shows them.
pub const SANDBOX_REGION: i64 = 9_000_000;

/// The first id of scheduled work created in a sandbox.
pub const SANDBOX_WORK_ID: u64 = 1 << 62;

/// (base class, id).
type Key = (&'static str, i64);

/// One object the sandbox holds: created in it, or copied from the base
/// on its first update (`before` keeps the base's attributes).
#[derive(Debug, Clone)]
struct Entry {
    class: Arc<str>,
    attrs: Attributes,
    /// The base's attributes; `None` for an object created in the sandbox.
    before: Option<Attributes>,
    /// Deleted in the sandbox (a stored object: hidden from its reads).
    deleted: bool,
}

/// Scheduled work the sandbox holds (created in it).
#[derive(Debug, Clone)]
struct Work {
    item: WorkItem,
    run_at: SystemTime,
    attempts: u32,
    leased: bool,
    done: bool,
}

#[derive(Debug, Default)]
struct Overlay {
    objects: BTreeMap<Key, Entry>,
    /// The order objects were first written in (for the diff).
    order: Vec<Key>,
    last_seq: BTreeMap<&'static str, i64>,
    work: BTreeMap<u64, Work>,
    next_work: u64,
    /// Base work completed in the sandbox (hidden from its reads).
    completed: BTreeSet<u64>,
    /// Base work rescheduled in the sandbox: id -> new time.
    rescheduled: BTreeMap<u64, SystemTime>,
    outbound: Vec<Suppressed>,
}

/// An outbound action a method asked for in a sandbox, not performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// The call: `send_email`, `evm.http`, ...
    pub call: String,
    /// What it would have done (`to [..] subject [..]`, `POST https://...`).
    pub detail: String,
}

/// An overlay over a base store (and, optionally, its scheduled work):
/// see the module documentation.
pub struct Sandbox {
    base: Arc<dyn ObjectStore>,
    base_schedule: Option<Arc<dyn Schedule>>,
    overlay: Mutex<Overlay>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

/// One attribute's change in [`Updated`].
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The attribute.
    pub attr: String,
    /// Its stored value; `None` when it had none.
    pub before: Option<AttrValue>,
    /// Its value after the simulation.
    pub after: AttrValue,
}

/// An object the simulation would have created.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// Its class (`MiqEvent`).
    pub class: String,
    /// Its sandbox id (in [`SANDBOX_REGION`]).
    pub id: i64,
    /// Its attributes.
    pub attrs: Attributes,
}

/// A stored object the simulation would have changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated {
    /// Its class.
    pub class: String,
    /// Its id.
    pub id: i64,
    /// The attributes that differ, in the order they were first set.
    pub changes: Vec<Change>,
}

/// Work the simulation would have scheduled (a state-machine retry, a
/// request's task).
#[derive(Debug, Clone, PartialEq)]
pub struct WouldSchedule {
    /// The item (`kind` and payload).
    pub item: WorkItem,
    /// When it would have run.
    pub run_at: SystemTime,
}

/// What a simulation would have written: [`Sandbox::diff`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    /// Objects created, in creation order.
    pub created: Vec<Created>,
    /// Stored objects changed, attribute by attribute.
    pub updated: Vec<Updated>,
    /// Stored objects that would have been deleted: (class, id).
    pub deleted: Vec<(String, i64)>,
    /// Work scheduled and not also completed in the sandbox.
    pub scheduled: Vec<WouldSchedule>,
    /// Stored scheduled work that would have been completed (ids).
    pub completed: Vec<u64>,
    /// Stored scheduled work that would have been moved: (id, new time).
    pub rescheduled: Vec<(u64, SystemTime)>,
    /// Outbound actions not performed.
    pub outbound: Vec<Suppressed>,
}

impl Diff {
    /// Nothing would have been written or sent.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.updated.is_empty()
            && self.deleted.is_empty()
            && self.scheduled.is_empty()
            && self.completed.is_empty()
            && self.rescheduled.is_empty()
            && self.outbound.is_empty()
    }

    /// The diff as text lines, one per change (what `automate instantiate`
    /// prints after the trace).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.created {
            out.push(format!(
                "would create {} [{}] {}",
                c.class,
                c.id,
                automate_core::value::inspect_attributes(&c.attrs)
            ));
        }
        for u in &self.updated {
            for ch in &u.changes {
                out.push(format!(
                    "would update {} [{}] {}: {} -> {}",
                    u.class,
                    u.id,
                    ch.attr,
                    ch.before
                        .as_ref()
                        .map_or_else(|| "(none)".to_string(), AttrValue::inspect),
                    ch.after.inspect()
                ));
            }
        }
        for (class, id) in &self.deleted {
            out.push(format!("would delete {class} [{id}]"));
        }
        for s in &self.scheduled {
            out.push(format!(
                "would schedule [{}] at {} {}",
                s.item.kind,
                at_text(s.run_at),
                s.item.payload
            ));
        }
        for id in &self.completed {
            out.push(format!("would complete scheduled work [{id}]"));
        }
        for (id, at) in &self.rescheduled {
            out.push(format!(
                "would reschedule scheduled work [{id}] at {}",
                at_text(*at)
            ));
        }
        for o in &self.outbound {
            out.push(format!("would send {} {}", o.call, o.detail));
        }
        out
    }

    /// The diff as JSON (`--json`'s `diff` field, the API's answer).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let attrs = |a: &Attributes| {
            serde_json::Value::Object(
                a.iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.inspect())))
                    .collect(),
            )
        };
        json!({
            "created": self.created.iter().map(|c| json!({
                "class": c.class, "id": c.id, "attributes": attrs(&c.attrs),
            })).collect::<Vec<_>>(),
            "updated": self.updated.iter().map(|u| json!({
                "class": u.class, "id": u.id,
                "changes": u.changes.iter().map(|c| json!({
                    "attribute": c.attr,
                    "before": c.before.as_ref().map(AttrValue::inspect),
                    "after": c.after.inspect(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "deleted": self.deleted.iter().map(|(class, id)| json!({
                "class": class, "id": id,
            })).collect::<Vec<_>>(),
            "scheduled": self.scheduled.iter().map(|s| json!({
                "kind": s.item.kind, "payload": s.item.payload,
                "run_at": at_text(s.run_at),
            })).collect::<Vec<_>>(),
            "completed": self.completed,
            "rescheduled": self.rescheduled.iter().map(|(id, at)| json!({
                "id": id, "run_at": at_text(*at),
            })).collect::<Vec<_>>(),
            "outbound": self.outbound.iter().map(|o| json!({
                "call": o.call, "detail": o.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

/// A scheduled time as ISO 8601 (milliseconds, UTC).
fn at_text(t: SystemTime) -> String {
    let ms = super::to_micros(t) / 1000;
    automate_core::time::iso8601(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn unknown(class: &str) -> StoreError {
    StoreError::UnknownClass(class.to_string())
}

impl Sandbox {
    /// A sandbox over `base`, its scheduled work reading `schedule` (or
    /// none: the sandbox's own only).
    pub fn new(base: Arc<dyn ObjectStore>, schedule: Option<Arc<dyn Schedule>>) -> Sandbox {
        Sandbox {
            base,
            base_schedule: schedule,
            overlay: Mutex::new(Overlay {
                next_work: SANDBOX_WORK_ID,
                ..Overlay::default()
            }),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Overlay>, StoreError> {
        self.overlay
            .lock()
            .map_err(|_| StoreError::Backend("sandbox lock poisoned".into()))
    }

    /// Records an outbound action a method asked for and the sandbox did
    /// not perform.
    pub fn suppress(&self, call: &str, detail: &str) {
        if let Ok(mut o) = self.overlay.lock() {
            o.outbound.push(Suppressed {
                call: call.to_string(),
                detail: detail.to_string(),
            });
        }
    }

    /// What the simulation would have written and sent so far.
    pub fn diff(&self) -> Result<Diff, StoreError> {
        let o = self.lock()?;
        let mut diff = Diff::default();
        for key in &o.order {
            let Some(e) = o.objects.get(key) else {
                continue;
            };
            if e.deleted {
                diff.deleted.push((e.class.to_string(), key.1));
                continue;
            }
            match &e.before {
                None => diff.created.push(Created {
                    class: e.class.to_string(),
                    id: key.1,
                    attrs: e.attrs.clone(),
                }),
                Some(before) => {
                    let changes: Vec<Change> = e
                        .attrs
                        .iter()
                        .filter(|(k, v)| before.get(k.as_str()) != Some(*v))
                        .map(|(k, v)| Change {
                            attr: k.clone(),
                            before: before.get(k.as_str()).cloned(),
                            after: v.clone(),
                        })
                        .collect();
                    if !changes.is_empty() {
                        diff.updated.push(Updated {
                            class: e.class.to_string(),
                            id: key.1,
                            changes,
                        });
                    }
                }
            }
        }
        diff.scheduled = o
            .work
            .values()
            .filter(|w| !w.done)
            .map(|w| WouldSchedule {
                item: w.item.clone(),
                run_at: w.run_at,
            })
            .collect();
        diff.completed = o.completed.iter().copied().collect();
        diff.rescheduled = o.rescheduled.iter().map(|(k, v)| (*k, *v)).collect();
        diff.outbound = o.outbound.clone();
        Ok(diff)
    }

    /// The object's attributes as the sandbox sees them (its own copy,
    /// else the base's) with its class.
    fn current(&self, base: &'static str, id: i64) -> Result<Option<Entry>, StoreError> {
        if let Some(e) = self.lock()?.objects.get(&(base, id)) {
            return Ok(Some(e.clone()));
        }
        Ok(self.base.load(base, id)?.map(|s| Entry {
            class: Arc::from(s.class.as_str()),
            attrs: s.attrs,
            before: None,
            deleted: false,
        }))
    }

    /// Merges the base's answer with the overlay's objects of `base` for
    /// which `keep` holds, by id.
    fn merged(
        &self,
        base: &'static str,
        from_base: Vec<VmdbRef>,
        keep: impl Fn(&Attributes) -> bool,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        let o = self.lock()?;
        let mut out: Vec<VmdbRef> = from_base
            .into_iter()
            .filter(|r| !o.objects.contains_key(&(base, r.id)))
            .collect();
        for ((b, id), e) in o.objects.range((base, i64::MIN)..=(base, i64::MAX)) {
            debug_assert_eq!(*b, base);
            if !e.deleted && keep(&e.attrs) {
                out.push(VmdbRef {
                    class: e.class.clone(),
                    id: *id,
                });
            }
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    fn schedule_one(o: &mut Overlay, item: &WorkItem, run_at: SystemTime, leased: bool) -> u64 {
        let id = o.next_work;
        o.next_work += 1;
        o.work.insert(
            id,
            Work {
                item: item.clone(),
                run_at,
                attempts: u32::from(leased),
                leased,
                done: false,
            },
        );
        id
    }

    /// The base's due work (not completed in the sandbox) and the
    /// sandbox's, due by `now`, oldest first.
    fn all_due(
        &self,
        now: SystemTime,
    ) -> Result<Vec<(u64, WorkItem, u32, SystemTime)>, StoreError> {
        let mut out = Vec::new();
        let from_base = match &self.base_schedule {
            Some(s) => s.due(now, usize::MAX)?,
            None => Vec::new(),
        };
        let o = self.lock()?;
        for (id, item, attempts) in from_base {
            if o.completed.contains(&id) {
                continue;
            }
            if let Some(at) = o.rescheduled.get(&id) {
                if *at > now {
                    continue;
                }
            }
            out.push((id, item, attempts, now));
        }
        for (id, w) in &o.work {
            if !w.done && w.run_at <= now {
                out.push((*id, w.item.clone(), w.attempts, w.run_at));
            }
        }
        Ok(out)
    }
}

/// The sandbox's reads, as the association rules look them up.
struct Reads<'a>(&'a Sandbox);

impl Lookup for Reads<'_> {
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        ObjectStore::find(self.0, class, id)
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        ObjectStore::find_by(self.0, class, attr, value)
    }
}

impl ObjectStore for Sandbox {
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(None);
        };
        if let Some(e) = self.lock()?.objects.get(&(base, id)) {
            return Ok((!e.deleted).then(|| VmdbRef {
                class: e.class.clone(),
                id,
            }));
        }
        self.base.find(class, id)
    }

    fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
        if name.eq_ignore_ascii_case("id") {
            return Ok(Some(AttrValue::Int(obj.id)));
        }
        let Some(base) = base_class(&obj.class) else {
            return Ok(None);
        };
        let in_overlay = self.lock()?.objects.get(&(base, obj.id)).cloned();
        let attrs = match in_overlay {
            Some(e) if e.deleted => return Ok(None),
            Some(e) => e.attrs,
            // A stored object's own attributes (and the base's computed
            // ones) from the base; its associations below, over the
            // sandbox, so they see the sandbox's objects too.
            None => {
                let lower = name.to_ascii_lowercase();
                if associations::belongs_to(&lower).is_none()
                    && associations::has_many(base, &lower).is_none()
                {
                    return self.base.attribute(obj, name);
                }
                match self.base.load(base, obj.id)? {
                    Some(s) => s.attrs,
                    None => return Ok(None),
                }
            }
        };
        associations::resolve(
            &Reads(self),
            base,
            obj.id,
            &attrs,
            &name.to_ascii_lowercase(),
        )
    }

    fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
        let base = base_class(class).ok_or_else(|| unknown(class))?;
        if let Some(e) = self.lock()?.objects.get(&(base, id)) {
            return Ok((!e.deleted).then(|| StoredObject {
                class: e.class.to_string(),
                attrs: e.attrs.clone(),
            }));
        }
        self.base.load(class, id)
    }

    fn list(&self, class: &str) -> Result<Vec<VmdbRef>, StoreError> {
        let base = base_class(class).ok_or_else(|| unknown(class))?;
        let from_base = self.base.list(class)?;
        self.merged(base, from_base, |_| true)
    }

    fn create(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        let base = base_class(class).ok_or_else(|| unknown(class))?;
        let mut o = self.lock()?;
        let seq = o.last_seq.entry(base).or_insert(0);
        *seq += 1;
        let id = SANDBOX_REGION * REGION_BASE + *seq;
        let class: Arc<str> = Arc::from(class);
        o.objects.insert(
            (base, id),
            Entry {
                class: class.clone(),
                attrs,
                before: None,
                deleted: false,
            },
        );
        o.order.push((base, id));
        Ok(VmdbRef { class, id })
    }

    fn update(&self, obj: &VmdbRef, name: &str, value: AttrValue) -> Result<(), StoreError> {
        let base = base_class(&obj.class).ok_or_else(|| unknown(&obj.class))?;
        let key = (base, obj.id);
        let name = name.to_ascii_lowercase();
        if let Some(e) = self.lock()?.objects.get_mut(&key) {
            if e.deleted {
                return Err(StoreError::NotFound(obj.class.to_string(), obj.id));
            }
            e.attrs.insert(name, value);
            return Ok(());
        }
        let Some(stored) = self.current(base, obj.id)? else {
            return Err(StoreError::NotFound(obj.class.to_string(), obj.id));
        };
        let mut o = self.lock()?;
        let e = o.objects.entry(key).or_insert_with(|| Entry {
            class: stored.class,
            before: Some(stored.attrs.clone()),
            attrs: stored.attrs,
            deleted: false,
        });
        e.attrs.insert(name, value);
        if !o.order.contains(&key) {
            o.order.push(key);
        }
        Ok(())
    }

    fn delete(&self, obj: &VmdbRef) -> Result<bool, StoreError> {
        let base = base_class(&obj.class).ok_or_else(|| unknown(&obj.class))?;
        let key = (base, obj.id);
        {
            let mut o = self.lock()?;
            if let Some(e) = o.objects.get_mut(&key) {
                if e.deleted {
                    return Ok(false);
                }
                if e.before.is_none() {
                    // Created in the sandbox: as if it never was.
                    o.objects.remove(&key);
                    o.order.retain(|k| *k != key);
                } else {
                    e.deleted = true;
                }
                return Ok(true);
            }
        }
        let Some(stored) = self.base.load(base, obj.id)? else {
            return Ok(false);
        };
        let mut o = self.lock()?;
        o.objects.insert(
            key,
            Entry {
                class: Arc::from(stored.class.as_str()),
                before: Some(stored.attrs.clone()),
                attrs: stored.attrs,
                deleted: true,
            },
        );
        if !o.order.contains(&key) {
            o.order.push(key);
        }
        Ok(true)
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(Vec::new());
        };
        let from_base = self.base.find_by(class, attr, value)?;
        let attr = attr.to_ascii_lowercase();
        self.merged(base, from_base, |a| a.get(&attr) == Some(value))
    }
}

impl Schedule for Sandbox {
    fn schedule(&self, item: &WorkItem, run_at: SystemTime) -> Result<u64, StoreError> {
        let mut o = self.lock()?;
        Ok(Self::schedule_one(&mut o, item, run_at, false))
    }

    fn schedule_and_complete(
        &self,
        item: &WorkItem,
        run_at: SystemTime,
        done: u64,
    ) -> Result<u64, StoreError> {
        let id = self.schedule(item, run_at)?;
        self.complete(done)?;
        Ok(id)
    }

    fn schedule_many(&self, items: &[(WorkItem, SystemTime)]) -> Result<Vec<u64>, StoreError> {
        let mut o = self.lock()?;
        Ok(items
            .iter()
            .map(|(i, at)| Self::schedule_one(&mut o, i, *at, false))
            .collect())
    }

    fn schedule_many_claimed(
        &self,
        items: &[(WorkItem, SystemTime)],
    ) -> Result<Vec<u64>, StoreError> {
        let mut o = self.lock()?;
        Ok(items
            .iter()
            .map(|(i, at)| Self::schedule_one(&mut o, i, *at, true))
            .collect())
    }

    fn due(&self, now: SystemTime, limit: usize) -> Result<Vec<(u64, WorkItem, u32)>, StoreError> {
        let mut all = self.all_due(now)?;
        all.sort_by_key(|(id, _, _, at)| (*at, *id));
        Ok(all
            .into_iter()
            .take(limit)
            .map(|(id, item, attempts, _)| (id, item, attempts))
            .collect())
    }

    fn claim_due(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.claim(now, limit, lease, None)
    }

    fn claim_due_kind(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
        kind: &str,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.claim(now, limit, lease, Some(kind))
    }

    fn count_kind(&self, kind: &str) -> Result<u64, StoreError> {
        let from_base = match &self.base_schedule {
            Some(s) => s.count_kind(kind)?,
            None => 0,
        };
        let o = self.lock()?;
        let mine = o
            .work
            .values()
            .filter(|w| !w.done && w.item.kind == kind)
            .count() as u64;
        // Base work completed here no longer counts.
        let mut gone = 0u64;
        if let Some(s) = &self.base_schedule {
            for id in &o.completed {
                if s.get(*id)?.is_some_and(|w| w.item.kind == kind) {
                    gone += 1;
                }
            }
        }
        Ok(from_base.saturating_sub(gone) + mine)
    }

    fn complete(&self, id: u64) -> Result<bool, StoreError> {
        let mut o = self.lock()?;
        if let Some(w) = o.work.get_mut(&id) {
            let was = !w.done;
            w.done = true;
            return Ok(was);
        }
        if o.completed.contains(&id) {
            return Ok(false);
        }
        drop(o);
        let exists = match &self.base_schedule {
            Some(s) => s.get(id)?.is_some(),
            None => false,
        };
        if exists {
            self.lock()?.completed.insert(id);
        }
        Ok(exists)
    }

    fn complete_many(&self, ids: &[u64]) -> Result<usize, StoreError> {
        let mut n = 0;
        for id in ids {
            if self.complete(*id)? {
                n += 1;
            }
        }
        Ok(n)
    }

    fn reschedule(&self, id: u64, run_at: SystemTime) -> Result<bool, StoreError> {
        let mut o = self.lock()?;
        if let Some(w) = o.work.get_mut(&id) {
            if w.done {
                return Ok(false);
            }
            w.run_at = run_at;
            w.leased = false;
            return Ok(true);
        }
        if o.completed.contains(&id) {
            return Ok(false);
        }
        drop(o);
        let exists = match &self.base_schedule {
            Some(s) => s.get(id)?.is_some(),
            None => false,
        };
        if exists {
            self.lock()?.rescheduled.insert(id, run_at);
        }
        Ok(exists)
    }

    fn release_leases(&self, now: SystemTime) -> Result<usize, StoreError> {
        let mut o = self.lock()?;
        let mut n = 0;
        for w in o.work.values_mut() {
            if w.leased && !w.done {
                w.leased = false;
                w.run_at = now;
                n += 1;
            }
        }
        Ok(n)
    }

    fn get(&self, id: u64) -> Result<Option<Scheduled>, StoreError> {
        {
            let o = self.lock()?;
            if let Some(w) = o.work.get(&id) {
                return Ok((!w.done).then(|| Scheduled {
                    id,
                    item: w.item.clone(),
                    attempts: w.attempts,
                    run_at: w.run_at,
                    leased: w.leased,
                }));
            }
            if o.completed.contains(&id) {
                return Ok(None);
            }
        }
        let Some(s) = &self.base_schedule else {
            return Ok(None);
        };
        let found = s.get(id)?;
        let moved = self.lock()?.rescheduled.get(&id).copied();
        Ok(found.map(|mut w| {
            if let Some(at) = moved {
                w.run_at = at;
                w.leased = false;
            }
            w
        }))
    }

    fn next_due(&self) -> Result<Option<SystemTime>, StoreError> {
        let from_base = match &self.base_schedule {
            Some(s) => s.next_due()?,
            None => None,
        };
        let o = self.lock()?;
        let mine = o.work.values().filter(|w| !w.done).map(|w| w.run_at).min();
        Ok(match (from_base, mine) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn len(&self) -> Result<u64, StoreError> {
        let from_base = match &self.base_schedule {
            Some(s) => s.len()?,
            None => 0,
        };
        let o = self.lock()?;
        let mine = o.work.values().filter(|w| !w.done).count() as u64;
        Ok(from_base.saturating_sub(o.completed.len() as u64) + mine)
    }
}

impl Sandbox {
    /// Claims due work: the sandbox's own is leased in the overlay; the
    /// base's is copied into the overlay (leased there) and hidden from
    /// the base's answers, so nothing is written to the base.
    fn claim(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
        kind: Option<&str>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut due = self.all_due(now)?;
        due.retain(|(_, item, _, _)| kind.is_none_or(|k| item.kind == k));
        due.sort_by_key(|(id, _, _, at)| (*at, *id));
        due.truncate(limit);
        let lease_until = now + lease;
        let mut o = self.lock()?;
        let mut out = Vec::with_capacity(due.len());
        for (id, item, attempts, run_at) in due {
            let id = match o.work.get_mut(&id) {
                Some(w) => {
                    w.leased = true;
                    w.attempts += 1;
                    w.run_at = lease_until;
                    id
                }
                None => {
                    // A base item: completed there as far as the sandbox
                    // sees, its lease held by a copy in the overlay.
                    o.completed.insert(id);
                    let copy = Self::schedule_one(&mut o, &item, lease_until, true);
                    if let Some(w) = o.work.get_mut(&copy) {
                        w.attempts = attempts + 1;
                    }
                    copy
                }
            };
            out.push(Claimed {
                id,
                item,
                attempts: attempts + 1,
                run_at,
                lease_until,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn world() -> Arc<MemoryStore> {
        let m = MemoryStore::new();
        m.insert(
            "Host",
            REGION_BASE + 1,
            attrs(&[("name", AttrValue::str("host01"))]),
        );
        m.insert(
            "Vm",
            REGION_BASE + 7,
            attrs(&[
                ("name", AttrValue::str("vm-1")),
                ("power_state", AttrValue::str("off")),
                ("host_id", AttrValue::Int(REGION_BASE + 1)),
            ]),
        );
        Arc::new(m)
    }

    #[test]
    fn writes_go_to_the_overlay_and_reads_see_both() {
        let base = world();
        let sb = Sandbox::new(base.clone(), None);
        let vm = VmdbRef {
            class: Arc::from("Vm"),
            id: REGION_BASE + 7,
        };
        sb.update(&vm, "power_state", AttrValue::str("on")).unwrap();
        assert_eq!(
            sb.attribute(&vm, "power_state").unwrap(),
            Some(AttrValue::str("on"))
        );
        assert_eq!(
            base.attribute(&vm, "power_state").unwrap(),
            Some(AttrValue::str("off")),
            "the base is untouched"
        );
        let ev = sb
            .create(
                "MiqEvent",
                attrs(&[
                    ("event_type", AttrValue::str("vm_start")),
                    ("vm_or_template_id", AttrValue::Int(vm.id)),
                ]),
            )
            .unwrap();
        assert_eq!(crate::region_of(ev.id), SANDBOX_REGION);
        assert_eq!(base.list("EventStream").unwrap(), Vec::new());
        assert_eq!(sb.list("EventStream").unwrap(), vec![ev.clone()]);
        // An association from a sandbox object to a stored one, and the
        // stored VM's has_many seeing the sandbox's event.
        assert_eq!(
            sb.attribute(&ev, "vm_or_template").unwrap(),
            Some(AttrValue::Object(vm.clone()))
        );
        assert_eq!(
            sb.find_by("EventStream", "event_type", &AttrValue::str("vm_start"))
                .unwrap(),
            vec![ev.clone()]
        );
        // The base's next id is unchanged by the sandbox's create.
        let real = base.create("EmsEvent", Attributes::default()).unwrap();
        assert_eq!(real.id, REGION_BASE + 1);
        let d = sb.diff().unwrap();
        assert_eq!(d.created.len(), 1);
        assert_eq!(d.created[0].class, "MiqEvent");
        assert_eq!(
            d.updated,
            vec![Updated {
                class: "Vm".into(),
                id: vm.id,
                changes: vec![Change {
                    attr: "power_state".into(),
                    before: Some(AttrValue::str("off")),
                    after: AttrValue::str("on"),
                }],
            }]
        );
        let text = d.lines();
        assert!(
            text[0].starts_with("would create MiqEvent [9000000000000000001]"),
            "{text:?}"
        );
        assert_eq!(
            text[1],
            "would update Vm [1000000000007] power_state: \"off\" -> \"on\""
        );
        // A changed object no longer matches the base's find_by answer.
        assert_eq!(
            sb.find_by("Vm", "power_state", &AttrValue::str("off"))
                .unwrap(),
            Vec::new()
        );
        assert!(sb
            .update(
                &VmdbRef {
                    class: Arc::from("Host"),
                    id: 5
                },
                "x",
                AttrValue::Nil
            )
            .is_err());
    }

    #[test]
    fn scheduled_work_and_outbound_stay_in_the_sandbox() {
        let sb = Sandbox::new(world(), None);
        let item = WorkItem::new("ae_retry", serde_json::json!({"uri": "/A/B/c"}));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(60);
        let id = sb.schedule(&item, at).unwrap();
        assert!(id >= SANDBOX_WORK_ID);
        assert_eq!(sb.count_kind("ae_retry").unwrap(), 1);
        assert_eq!(sb.len().unwrap(), 1);
        sb.suppress("send_email", "to [a@b.c] subject [hi]");
        let d = sb.diff().unwrap();
        assert_eq!(d.scheduled.len(), 1);
        assert_eq!(d.scheduled[0].item, item);
        assert_eq!(
            d.lines().last().map(String::as_str),
            Some("would send send_email to [a@b.c] subject [hi]")
        );
        let now = at + Duration::from_secs(1);
        let claimed = sb.claim_due(now, 10, Duration::from_secs(30)).unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(sb.complete(claimed[0].id).unwrap());
        assert!(sb.diff().unwrap().scheduled.is_empty());
        assert!(sb.is_empty().unwrap());
        let j = d.to_json();
        assert_eq!(j["scheduled"][0]["kind"], "ae_retry");
        assert_eq!(j["outbound"][0]["call"], "send_email");
    }
    #[test]
    fn deletes_hide_the_object_and_leave_the_base_alone() {
        let base = world();
        let sb = Sandbox::new(base.clone(), None);
        let vm = VmdbRef {
            class: Arc::from("Vm"),
            id: REGION_BASE + 7,
        };
        assert!(sb.delete(&vm).unwrap());
        assert!(!sb.delete(&vm).unwrap(), "a second delete finds nothing");
        assert_eq!(sb.find("Vm", vm.id).unwrap(), None);
        assert_eq!(sb.load("Vm", vm.id).unwrap(), None);
        assert_eq!(sb.attribute(&vm, "name").unwrap(), None);
        assert_eq!(sb.list("Vm").unwrap(), Vec::new());
        assert_eq!(
            sb.find_by("Vm", "name", &AttrValue::str("vm-1")).unwrap(),
            Vec::new()
        );
        assert!(sb.update(&vm, "name", AttrValue::str("x")).is_err());
        assert!(
            base.find("Vm", vm.id).unwrap().is_some(),
            "the base keeps it"
        );
        // An object created and deleted in the sandbox leaves no trace.
        let ev = sb.create("MiqEvent", Attributes::default()).unwrap();
        assert!(sb.delete(&ev).unwrap());
        let d = sb.diff().unwrap();
        assert!(d.created.is_empty());
        assert_eq!(d.deleted, vec![("Vm".to_string(), vm.id)]);
        assert_eq!(
            d.lines(),
            vec!["would delete Vm [1000000000007]".to_string()]
        );
        assert_eq!(d.to_json()["deleted"][0]["class"], "Vm");
        // A missing object: nothing to delete.
        let gone = VmdbRef {
            class: Arc::from("Host"),
            id: 99,
        };
        assert!(!sb.delete(&gone).unwrap());
    }
}
