//! Provider operations: ManageIQ's `MiqQueue` messages of the
//! `ems_operations` role, what `vm.stop`, `vm.start`, `vm.migrate(host)` ...
//! put on the queue (`MiqAeServiceEmsOperationsMixin#sync_or_async_ems_operation`)
//! for the provider's worker to perform.
//!
//! An operation is an object of the store, class [`CLASS`] (`MiqQueue`),
//! written through [`ObjectStore`] like any other: when a method runs in
//! the pipeline, its store is the event's unit of work, so the operation
//! is committed with the event that led to it (redb and PostgreSQL
//! alike). Its attributes are ManageIQ's columns (`class_name`,
//! `instance_id`, `method_name`, `args`, `zone`, `role`, `queue_name`,
//! `priority`, `msg_timeout`, `state`, `created_on`) plus `ems_id` (the
//! provider that performs it) and, once delivered, `delivered_on`,
//! `handler` (the node) and `message` (the outcome).
//!
//! States: `ready` (put), `dequeue` (taken by the node running the
//! provider's catcher), then `ok`, `warn` or `error`. ManageIQ deletes a
//! delivered message; automate keeps it with its final state, so the API
//! (`/api/provider_operations`) and `automate operations list` show what
//! was done.
//!
//! Each step logs ManageIQ's `evm.log` line (target `evm`):
//! `MIQ(MiqQueue.put) Message id: [..], ...` ([`full_log`]),
//! `MIQ(MiqQueue.get) ..., Dequeued in: [s] seconds`,
//! `MIQ(MiqQueue#deliver) Message id: [..], Delivering...`,
//! `MIQ(MiqQueue#delivered) Message id: [..], State: [ok], Delivered in [s] seconds`.

use crate::{ObjectStore, StoreError, StoredObject, VmdbRef};
use automate_core::time;
use automate_core::value::{AttrValue, Attributes};

/// The class (and base class) operations are stored under.
pub const CLASS: &str = "MiqQueue";
/// The server role that performs provider operations.
pub const ROLE: &str = "ems_operations";
/// `MiqQueue::NORMAL_PRIORITY`.
pub const NORMAL_PRIORITY: i64 = 100;
/// `MiqQueue::TIMEOUT`, in seconds.
pub const TIMEOUT_SECS: i64 = 600;

/// Where an operation is (`MiqQueue`'s `state`, with the final status
/// kept instead of deleting the row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpState {
    /// Put, waiting for the provider's worker.
    Ready,
    /// Taken by the node performing it.
    Dequeue,
    /// Performed.
    Ok,
    /// Not delivered: its target is gone.
    Warn,
    /// Failed (the provider refused it, or its catcher cannot perform
    /// operations).
    Error,
}

impl OpState {
    /// ManageIQ's text of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Ready => "ready",
            OpState::Dequeue => "dequeue",
            OpState::Ok => "ok",
            OpState::Warn => "warn",
            OpState::Error => "error",
        }
    }

    /// The state of a stored text; `None` for anything else.
    pub fn parse(s: &str) -> Option<OpState> {
        Some(match s {
            "ready" => OpState::Ready,
            "dequeue" => OpState::Dequeue,
            "ok" => OpState::Ok,
            "warn" => OpState::Warn,
            "error" => OpState::Error,
            _ => return None,
        })
    }
}

/// What to put on the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOperation {
    /// The target's class as stored (`Vm`, `VmOrTemplate`, ...).
    pub class_name: String,
    /// The target's id.
    pub instance_id: i64,
    /// The provider that performs it.
    pub ems_id: i64,
    /// ManageIQ's method name (`stop`, `migrate_via_ids`, `vm_destroy`...).
    pub method_name: String,
    /// Its arguments.
    pub args: Vec<AttrValue>,
}

/// One stored operation.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderOperation {
    /// Its id (`Message id`).
    pub id: i64,
    /// The target's class.
    pub class_name: String,
    /// The target's id.
    pub instance_id: i64,
    /// The provider that performs it (`None` if the stored row lacks it).
    pub ems_id: Option<i64>,
    /// ManageIQ's method name.
    pub method_name: String,
    /// Its arguments.
    pub args: Vec<AttrValue>,
    /// Where it is.
    pub state: OpState,
    /// When it was put (milliseconds since the epoch; 0 when unreadable).
    pub created_ms: i64,
}

impl ProviderOperation {
    /// The operation stored as `obj` with id `id`; `None` when it is not
    /// one (no method name or target, an unknown state).
    pub fn from_stored(id: i64, obj: &StoredObject) -> Option<ProviderOperation> {
        let a = &obj.attrs;
        let int = |k: &str| match a.get(k) {
            Some(AttrValue::Int(i)) => Some(*i),
            Some(AttrValue::Str(s)) => s.trim().parse().ok(),
            _ => None,
        };
        let text = |k: &str| a.get(k).and_then(AttrValue::as_str).map(str::to_string);
        Some(ProviderOperation {
            id,
            class_name: text("class_name")?,
            instance_id: int("instance_id")?,
            ems_id: int("ems_id"),
            method_name: text("method_name")?,
            args: match a.get("args") {
                Some(AttrValue::Array(v)) => v.clone(),
                _ => Vec::new(),
            },
            state: OpState::parse(a.get("state").and_then(AttrValue::as_str)?)?,
            created_ms: a
                .get("created_on")
                .and_then(AttrValue::as_str)
                .and_then(time::parse_time)
                .unwrap_or(0),
        })
    }

    /// The target as a reference.
    pub fn target(&self) -> VmdbRef {
        VmdbRef {
            class: self.class_name.as_str().into(),
            id: self.instance_id,
        }
    }

    fn me(&self) -> VmdbRef {
        VmdbRef {
            class: CLASS.into(),
            id: self.id,
        }
    }
}

/// `Message id: [<id>]`: `MiqQueue.format_short_log_msg`.
pub fn short_log(id: i64) -> String {
    format!("Message id: [{id}]")
}

/// `MiqQueue.format_full_log_msg` of a stored operation's attributes.
pub fn full_log(id: i64, attrs: &Attributes) -> String {
    let t = |k: &str| attrs.get(k).map(AttrValue::to_text).unwrap_or_default();
    let args = match attrs.get("args") {
        Some(v @ AttrValue::Array(_)) => v.inspect(),
        _ => "[]".to_string(),
    };
    format!(
        "Message id: [{id}],  id: [], Zone: [{}], Role: [{}], Server: [], Ident: [{}], Target id: [], Instance id: [{}], Task id: [], Command: [{}.{}], Timeout: [{}], Priority: [{}], State: [{}], Deliver On: [], Data: [], Args: {args}",
        t("zone"),
        t("role"),
        t("queue_name"),
        t("instance_id"),
        t("class_name"),
        t("method_name"),
        t("msg_timeout"),
        t("priority"),
        t("state"),
    )
}

/// `MiqQueue.put`: stores the operation `ready` through `store` (the
/// caller's unit of work, when it has one) and logs the put line.
pub fn put(store: &dyn ObjectStore, op: NewOperation) -> Result<VmdbRef, StoreError> {
    let mut attrs = Attributes::default();
    attrs.insert("class_name".into(), AttrValue::Str(op.class_name));
    attrs.insert("instance_id".into(), AttrValue::Int(op.instance_id));
    attrs.insert("method_name".into(), AttrValue::Str(op.method_name));
    attrs.insert("args".into(), AttrValue::Array(op.args));
    attrs.insert("zone".into(), AttrValue::str("default"));
    attrs.insert("role".into(), AttrValue::str(ROLE));
    attrs.insert("queue_name".into(), AttrValue::str("generic"));
    attrs.insert("priority".into(), AttrValue::Int(NORMAL_PRIORITY));
    attrs.insert("msg_timeout".into(), AttrValue::Int(TIMEOUT_SECS));
    attrs.insert("state".into(), AttrValue::str(OpState::Ready.as_str()));
    attrs.insert("ems_id".into(), AttrValue::Int(op.ems_id));
    attrs.insert(
        "created_on".into(),
        AttrValue::Str(time::iso8601(time::now_ms())),
    );
    let shown = attrs.clone();
    let r = store.create(CLASS, attrs)?;
    tracing::info!(target: "evm", "MIQ(MiqQueue.put) {}", full_log(r.id, &shown));
    Ok(r)
}

/// The operations of provider `ems_id` in state `ready`, oldest first (by
/// priority, then id, as `MiqQueue.get` orders them).
pub fn ready_for(
    store: &dyn ObjectStore,
    ems_id: i64,
) -> Result<Vec<ProviderOperation>, StoreError> {
    ready_for_skipping(store, ems_id, &mut std::collections::HashSet::new())
}

/// [`ready_for`] for a poller. The operations are found by `state`
/// (an indexed attribute on every backend: redb's `attr_index`,
/// PostgreSQL's `k_state`), so a poll reads the `ready` operations of every
/// provider (few: each is taken at the next poll of its catcher), never the
/// delivered ones kept with their final state, however many there are.
/// The ids in `done` are not read; a `ready` row that is no operation is
/// added to it (and warned about once).
pub fn ready_for_skipping(
    store: &dyn ObjectStore,
    ems_id: i64,
    done: &mut std::collections::HashSet<i64>,
) -> Result<Vec<ProviderOperation>, StoreError> {
    let mut out = Vec::new();
    let ready = AttrValue::str(OpState::Ready.as_str());
    for r in store.find_by(CLASS, "state", &ready)? {
        if done.contains(&r.id) {
            continue;
        }
        let Some(obj) = store.load(CLASS, r.id)? else {
            continue;
        };
        match ProviderOperation::from_stored(r.id, &obj) {
            Some(op) if op.state == OpState::Ready && op.ems_id == Some(ems_id) => out.push(op),
            Some(_) => {}
            None => {
                done.insert(r.id);
                tracing::warn!(target: "evm", "MIQ(MiqQueue.get) {} is not a provider operation (no class_name, instance_id, method_name or a known state): skipped", short_log(r.id));
            }
        }
    }
    out.sort_by_key(|o| o.id);
    Ok(out)
}

/// Every stored operation, by id.
pub fn list(store: &dyn ObjectStore) -> Result<Vec<(i64, StoredObject)>, StoreError> {
    let mut out = Vec::new();
    for r in store.list(CLASS)? {
        if let Some(obj) = store.load(CLASS, r.id)? {
            out.push((r.id, obj));
        }
    }
    Ok(out)
}

fn seconds_since(ms: i64) -> String {
    let secs = (time::now_ms() - ms).max(0) as f64 / 1000.0;
    format!("{secs:.3}")
}

/// `MiqQueue.get`: marks `op` `dequeue`, taken by `handler` (the node),
/// and logs the dequeue line.
pub fn dequeue(
    store: &dyn ObjectStore,
    op: &mut ProviderOperation,
    handler: &str,
) -> Result<(), StoreError> {
    let me = op.me();
    store.update(&me, "state", AttrValue::str(OpState::Dequeue.as_str()))?;
    store.update(&me, "handler", AttrValue::str(handler))?;
    op.state = OpState::Dequeue;
    let attrs = store
        .load(CLASS, op.id)?
        .map(|o| o.attrs)
        .unwrap_or_default();
    tracing::info!(target: "evm", "MIQ(MiqQueue.get) {}, Dequeued in: [{}] seconds", full_log(op.id, &attrs), seconds_since(op.created_ms));
    tracing::info!(target: "evm", "MIQ(MiqQueue#deliver) {}, Delivering...", short_log(op.id));
    Ok(())
}

/// `MiqQueue#delivered`: the final `state` and `message` of `op`, logged
/// (an error also as ManageIQ's `Error: [..]` line). A refused
/// `clone_to_vm` also finishes its provisioning task with the error
/// ([`crate::request_task::clone_failed`]).
pub fn delivered(
    store: &dyn ObjectStore,
    op: &mut ProviderOperation,
    state: OpState,
    message: &str,
) -> Result<(), StoreError> {
    let me = op.me();
    match state {
        OpState::Error => {
            tracing::error!(target: "evm", "MIQ(MiqQueue#deliver) {}, Error: [{message}]", short_log(op.id))
        }
        OpState::Warn => {
            tracing::warn!(target: "evm", "MIQ(MiqQueue#deliver) {} will not be delivered because {message}", short_log(op.id))
        }
        _ => {}
    }
    store.update(&me, "state", AttrValue::str(state.as_str()))?;
    store.update(&me, "message", AttrValue::str(message))?;
    store.update(
        &me,
        "delivered_on",
        AttrValue::Str(time::iso8601(time::now_ms())),
    )?;
    op.state = state;
    tracing::info!(target: "evm", "MIQ(MiqQueue#delivered) {}, State: [{}], Delivered in [{}] seconds", short_log(op.id), state.as_str(), seconds_since(op.created_ms));
    if matches!(state, OpState::Error | OpState::Warn) {
        // A refused `clone_to_vm` ends its provisioning task.
        crate::request_task::clone_failed(store, op, message)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn new_op(ems_id: i64, method: &str) -> NewOperation {
        NewOperation {
            class_name: "Vm".into(),
            instance_id: 7,
            ems_id,
            method_name: method.into(),
            args: vec![],
        }
    }

    #[test]
    fn put_get_deliver() {
        let store = MemoryStore::new();
        let a = put(&store, new_op(1, "stop")).unwrap();
        let b = put(&store, new_op(2, "start")).unwrap();
        let mut ready = ready_for(&store, 1).unwrap();
        assert_eq!(ready.len(), 1);
        let op = &mut ready[0];
        assert_eq!((op.id, op.method_name.as_str()), (a.id, "stop"));
        assert_eq!(op.target().id, 7);
        dequeue(&store, op, "node1").unwrap();
        assert!(ready_for(&store, 1).unwrap().is_empty());
        delivered(&store, op, OpState::Ok, "Message delivered successfully").unwrap();
        let stored = store.load(CLASS, a.id).unwrap().unwrap();
        assert_eq!(stored.attrs.get("state"), Some(&AttrValue::str("ok")));
        assert_eq!(stored.attrs.get("handler"), Some(&AttrValue::str("node1")));
        assert_eq!(ready_for(&store, 2).unwrap()[0].id, b.id);
        assert_eq!(list(&store).unwrap().len(), 2);
    }

    #[test]
    fn a_poller_reads_only_ready_operations() {
        let store = MemoryStore::new();
        let a = put(&store, new_op(1, "stop")).unwrap();
        let mut done = std::collections::HashSet::new();
        let mut ready = ready_for_skipping(&store, 1, &mut done).unwrap();
        assert_eq!(ready.len(), 1);
        dequeue(&store, &mut ready[0], "node1").unwrap();
        // Taken, not final: read again at the next poll.
        assert!(ready_for_skipping(&store, 1, &mut done).unwrap().is_empty());
        assert!(done.is_empty());
        delivered(
            &store,
            &mut ready[0],
            OpState::Ok,
            "Message delivered successfully",
        )
        .unwrap();
        assert!(ready_for_skipping(&store, 1, &mut done).unwrap().is_empty());
        // Not found by the state it no longer has: nothing to remember.
        assert!(done.is_empty());
        assert_eq!(
            store.load(CLASS, a.id).unwrap().unwrap().attrs.get("state"),
            Some(&AttrValue::str("ok"))
        );
        // A new one still comes through.
        let b = put(&store, new_op(1, "start")).unwrap();
        let ready = ready_for_skipping(&store, 1, &mut done).unwrap();
        assert_eq!(ready.iter().map(|o| o.id).collect::<Vec<_>>(), [b.id]);
    }

    #[test]
    fn full_log_is_manageiqs() {
        let store = MemoryStore::new();
        let mut op = new_op(1, "migrate_via_ids");
        op.args = vec![AttrValue::Int(5), AttrValue::Nil];
        let r = put(&store, op).unwrap();
        let obj = store.load(CLASS, r.id).unwrap().unwrap();
        let line = full_log(r.id, &obj.attrs);
        assert!(
            line.starts_with(&format!("Message id: [{}],  id: [], Zone: [default], Role: [ems_operations], Server: [], Ident: [generic], Target id: [], Instance id: [7], Task id: [], Command: [Vm.migrate_via_ids], Timeout: [600], Priority: [100], State: [ready]", r.id)),
            "{line}"
        );
        assert!(line.ends_with("Args: [5, nil]"), "{line}");
    }

    #[test]
    fn states_round_trip() {
        for s in [
            OpState::Ready,
            OpState::Dequeue,
            OpState::Ok,
            OpState::Warn,
            OpState::Error,
        ] {
            assert_eq!(OpState::parse(s.as_str()), Some(s));
        }
        assert_eq!(OpState::parse("done"), None);
    }
}
