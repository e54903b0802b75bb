//! Performing provider operations (`automate_vmdb::operation`: the
//! `MiqQueue` messages `vm.stop()` and friends put) on the node that runs
//! the provider's catcher, as ManageIQ's `ems_operations` worker does for
//! its provider.
//!
//! The pipeline gives every catcher an [`Operations`] (the object store,
//! this node's name and a probe saying whether everything caught so far
//! has been handled). The `simulate` catcher polls its provider's `ready`
//! operations while it runs, takes each (`dequeue`), performs it by
//! emitting the provider's own events for it (which flow back through the
//! switchboard: `USER_STOP_VM` → `vm_poweroff`) and marks it `ok`, or
//! `error` when the simulated provider refuses it. Once its `count` is
//! reached it keeps serving operations until the pipeline has handled
//! everything and no operation is ready, so `automate run --until-idle`
//! closes the loop.
//!
//! Catchers that only read a provider's events (`jsonl`, `http`, `amqp`)
//! cannot perform anything: [`refuse_loop`] marks their provider's ready
//! operations `error` with a message saying so. An external adapter would
//! instead read `ready` operations (`GET /api/provider_operations`) and
//! act on them (docs/porting-ruby-methods.md).

use super::{Ctx, Offer};
use crate::{Provider, ProviderEvent};
use automate_core::value::AttrValue;
use automate_vmdb::operation::{self, OpState, ProviderOperation};
use automate_vmdb::ObjectStore;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Whether every event caught so far has been handled (the pipeline's
/// queue is empty and nothing is on its way into it).
pub type Settled = Arc<dyn Fn() -> bool + Send + Sync>;

/// How often a catcher looks for ready operations.
pub const POLL: Duration = Duration::from_millis(100);

/// How often a catcher whose input has ended looks again (as
/// `Pipeline::wait_idle` does: its end is what `--until-idle` waits for).
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// What a catcher needs to perform its provider's operations.
pub struct Operations {
    store: Arc<dyn ObjectStore>,
    handler: String,
    settled: Settled,
    /// Provider name → its `ExtManagementSystem` id, once found.
    ems: Mutex<Vec<(String, i64)>>,
    /// `ready` rows found not to be operations: not read again by the
    /// polls (which read only `ready` rows: `ready_for_skipping`).
    done: Mutex<std::collections::HashSet<i64>>,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("handler", &self.handler)
            .finish_non_exhaustive()
    }
}

impl Operations {
    /// Operations read from and written to `store`, taken by `handler`
    /// (this node), with the pipeline's `settled` probe.
    pub fn new(store: Arc<dyn ObjectStore>, handler: &str, settled: Settled) -> Operations {
        Operations {
            store,
            handler: handler.to_string(),
            settled,
            ems: Mutex::new(Vec::new()),
            done: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Whether everything caught so far has been handled.
    pub fn settled(&self) -> bool {
        (self.settled)()
    }

    /// The provider's `ExtManagementSystem` id (`None` before its first
    /// event was handled).
    fn ems_id(&self, provider: &Provider) -> Option<i64> {
        if let Ok(cache) = self.ems.lock() {
            if let Some((_, id)) = cache.iter().find(|(n, _)| *n == provider.name) {
                return Some(*id);
            }
        }
        let found = self
            .store
            .find_by(
                "ExtManagementSystem",
                "name",
                &AttrValue::str(provider.name.as_str()),
            )
            .ok()?
            .into_iter()
            .next()?;
        if let Ok(mut cache) = self.ems.lock() {
            cache.push((provider.name.clone(), found.id));
        }
        Some(found.id)
    }

    /// The provider's ready operations, taken (`dequeue`) by this node.
    fn take_ready(&self, provider: &Provider) -> Vec<ProviderOperation> {
        let Some(ems_id) = self.ems_id(provider) else {
            return Vec::new();
        };
        let found = match self.done.lock() {
            Ok(mut done) => operation::ready_for_skipping(self.store.as_ref(), ems_id, &mut done),
            Err(_) => operation::ready_for(self.store.as_ref(), ems_id),
        };
        let ready = match found {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(target: "evm", "MIQ(MiqQueue.get) provider [{}]: cannot read its operations: {e}", provider.name);
                return Vec::new();
            }
        };
        let mut taken = Vec::with_capacity(ready.len());
        for mut op in ready {
            match operation::dequeue(self.store.as_ref(), &mut op, &self.handler) {
                Ok(()) => taken.push(op),
                Err(e) => {
                    tracing::error!(target: "evm", "MIQ(MiqQueue.get) {}: cannot take it: {e}", operation::short_log(op.id))
                }
            }
        }
        taken
    }

    /// Records the outcome of `op`.
    fn finish(&self, op: &mut ProviderOperation, state: OpState, message: &str) {
        if let Err(e) = operation::delivered(self.store.as_ref(), op, state, message) {
            tracing::error!(target: "evm", "MIQ(MiqQueue#delivered) {}: cannot record its state [{}]: {e}", operation::short_log(op.id), state.as_str());
        }
    }

    /// A performed `clone_to_vm` (ManageIQ's `start_clone` and the
    /// refresh that follows): the new VM, named by the provider's last
    /// event for it, is stored (`template: false`, its provider, host,
    /// name and reference) unless it is already, and its task records
    /// the VM's reference (`new_vm_ems_ref`), so that the create event,
    /// once handled, finishes the task
    /// (`automate_vmdb::request_task::vm_appeared`). Failures are logged.
    fn record_clone(&self, op: &ProviderOperation, events: &[ProviderEvent]) {
        use automate_vmdb::request_task::{CLONE_METHOD, NEW_VM_REF};
        if op.method_name != CLONE_METHOD {
            return;
        }
        let (Some(ev), Some(ems_id)) = (events.last(), op.ems_id) else {
            return;
        };
        let Some(vm_ref) = ev.vm_ems_ref.clone() else {
            return;
        };
        let store = self.store.as_ref();
        let result = (|| -> Result<(), automate_vmdb::StoreError> {
            if let Some(task_id) = op.args.get(1).and_then(automate_vmdb::associations::as_id) {
                if let Some(task) = store.find("MiqRequestTask", task_id)? {
                    store.update(&task, NEW_VM_REF, AttrValue::Str(vm_ref.clone()))?;
                }
            }
            if store
                .find_by_ems_ref("VmOrTemplate", ems_id, &vm_ref)?
                .is_some()
            {
                return Ok(());
            }
            let mut attrs = automate_core::value::Attributes::default();
            let name = ev.vm_name.clone().unwrap_or_else(|| vm_ref.clone());
            attrs.insert("name".into(), AttrValue::Str(name));
            attrs.insert("ems_ref".into(), AttrValue::Str(vm_ref.clone()));
            attrs.insert("ems_id".into(), AttrValue::Int(ems_id));
            attrs.insert("template".into(), AttrValue::Bool(false));
            if let Some(h) = &ev.host_ems_ref {
                // The host too, when this is its first sight (as the
                // event handler would create it; a concurrent creation
                // by the handler is found instead).
                let host = match store.find_by_ems_ref("Host", ems_id, h)? {
                    Some(host) => host,
                    None => {
                        let mut row = automate_core::value::Attributes::default();
                        let name = ev.host_name.clone().unwrap_or_else(|| h.clone());
                        row.insert("name".into(), AttrValue::Str(name));
                        row.insert("ems_ref".into(), AttrValue::Str(h.clone()));
                        row.insert("ems_id".into(), AttrValue::Int(ems_id));
                        match store.create_now("Host", row) {
                            Ok(r) => r,
                            Err(e) => store.find_by_ems_ref("Host", ems_id, h)?.ok_or(e)?,
                        }
                    }
                };
                attrs.insert("host_id".into(), AttrValue::Int(host.id));
            }
            store.create_now("VmOrTemplate", attrs).map(|_| ())
        })();
        if let Err(e) = result {
            tracing::error!(target: "evm", "MIQ(MiqProvision#start_clone) {}: cannot record the new VM [{vm_ref}]: {e}", operation::short_log(op.id));
        }
    }

    /// Writes what the provider's inventory holds after `op` into the
    /// store (all of it or, when a write fails, an error saying why).
    fn apply(&self, op: &ProviderOperation, change: &InventoryChange) -> Result<(), String> {
        use automate_vmdb::snapshots;
        let store = self.store.as_ref();
        let vm = op.target();
        let done = match change {
            InventoryChange::SnapshotCreated(new) => snapshots::create(store, &vm, new.clone())
                .map(|_| ())
                .map_err(|e| e.to_string()),
            InventoryChange::SnapshotRemoved(id) => {
                snapshots::remove(store, &vm, *id).map_err(|e| e.to_string())
            }
            InventoryChange::AllSnapshotsRemoved => snapshots::remove_all(store, &vm)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            InventoryChange::SnapshotReverted(id) => {
                snapshots::revert_to(store, &vm, *id).map_err(|e| e.to_string())
            }
            InventoryChange::CustomField { name, value } => {
                automate_vmdb::tags::ems_custom_set(store, &vm, name, value)
                    .map_err(|e| e.to_string())
            }
        };
        done.map_err(|e| {
            format!("the provider performed it, but its inventory could not be stored: {e}")
        })
    }

    /// The stored provider reference (`ems_ref`) of the operation's
    /// target VM.
    pub(crate) fn vm_ref(&self, op: &ProviderOperation) -> Option<String> {
        match self.store.attribute(&op.target(), "ems_ref") {
            Ok(Some(v)) => Some(v.to_text()),
            _ => None,
        }
    }

    /// The provider reference (`ems_ref`) of the host with id `id`.
    pub(crate) fn host_ref(&self, id: i64) -> Option<String> {
        let host = self.store.find("Host", id).ok()??;
        match self.store.attribute(&host, "ems_ref") {
            Ok(Some(v)) => Some(v.to_text()),
            _ => None,
        }
    }
}

/// What a provider's inventory holds after it performed an operation (what
/// ManageIQ's refresh would store): written to the store before the
/// operation's events are sent, so the events' handling finds it.
#[derive(Debug, Clone, PartialEq)]
pub enum InventoryChange {
    /// `create_snapshot`: the new snapshot, now the VM's current one.
    SnapshotCreated(automate_vmdb::snapshots::NewSnapshot),
    /// `remove_snapshot`: the snapshot with this id is gone.
    SnapshotRemoved(i64),
    /// `remove_all_snapshots`.
    AllSnapshotsRemoved,
    /// `revert_to_snapshot`: the snapshot with this id is current.
    SnapshotReverted(i64),
    /// `set_custom_field`: the VM's provider custom attribute (a blank
    /// value removes it).
    CustomField {
        /// Its key.
        name: String,
        /// Its value.
        value: AttrValue,
    },
}

/// What performing an operation gave: the provider's events and its
/// inventory change, or why it refused.
pub(crate) type Performed = Result<(Vec<ProviderEvent>, Option<InventoryChange>), String>;

/// A taken operation with what performing it needs from the store: its
/// VM's provider reference and, for a migration, the destination host's.
pub(crate) struct Taken {
    /// The operation.
    pub op: ProviderOperation,
    /// The target VM's `ems_ref`.
    pub vm_ref: Option<String>,
    /// `migrate_via_ids`: the destination host's `ems_ref`.
    pub host_ref: Option<String>,
}

/// How a catcher performs one operation.
pub(crate) type Perform<'a> = dyn FnMut(&Taken) -> Performed + Send + 'a;

/// Takes the provider's ready operations and performs each with
/// `perform`, offering the events it returns to the pipeline; returns how
/// many operations were taken, or `None` when the pipeline closed or
/// shutdown came. The store is read and written off the runtime's threads.
pub(crate) async fn serve_ready(
    ctx: &Ctx,
    shutdown: &CancellationToken,
    perform: &mut Perform<'_>,
) -> Option<usize> {
    let Some(ops) = ctx.ops.clone() else {
        return Some(0);
    };
    let provider = ctx.provider.clone();
    let o = ops.clone();
    let taken = tokio::task::spawn_blocking(move || {
        o.take_ready(&provider)
            .into_iter()
            .map(|op| {
                let vm_ref = o.vm_ref(&op);
                let host_ref = match (op.method_name.as_str(), op.args.first()) {
                    ("migrate_via_ids", Some(AttrValue::Int(id))) => o.host_ref(*id),
                    _ => None,
                };
                Taken {
                    op,
                    vm_ref,
                    host_ref,
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .ok()?;
    let n = taken.len();
    for t in taken {
        let performed = match perform(&t) {
            Ok((events, Some(change))) => {
                let (o, op) = (ops.clone(), t.op.clone());
                match tokio::task::spawn_blocking(move || o.apply(&op, &change)).await {
                    Ok(Ok(())) => Ok(events),
                    Ok(Err(why)) => Err(why),
                    Err(e) => Err(format!("storing the provider's inventory failed: {e}")),
                }
            }
            Ok((events, None)) => Ok(events),
            Err(why) => Err(why),
        };
        let (state, message, stop) = match performed {
            Ok(events) => {
                if t.op.method_name == automate_vmdb::request_task::CLONE_METHOD {
                    let (o, op, evs) = (ops.clone(), t.op.clone(), events.clone());
                    let _ = tokio::task::spawn_blocking(move || o.record_clone(&op, &evs)).await;
                }
                let mut stopped = false;
                for ev in events {
                    match ctx.offer(ev, false, shutdown).await {
                        Offer::Sent(_) | Offer::Skipped => {}
                        Offer::Cancelled | Offer::Closed => {
                            stopped = true;
                            break;
                        }
                    }
                }
                if stopped {
                    (
                        OpState::Error,
                        "the catcher stopped before the operation's events were sent".to_string(),
                        true,
                    )
                } else {
                    (
                        OpState::Ok,
                        "Message delivered successfully".to_string(),
                        false,
                    )
                }
            }
            Err(why) => (OpState::Error, why, false),
        };
        let o = ops.clone();
        let mut op = t.op;
        let _ = tokio::task::spawn_blocking(move || o.finish(&mut op, state, &message)).await;
        if stop {
            return None;
        }
    }
    Some(n)
}

/// After a catcher's own input has ended: serves operations until the
/// pipeline has handled everything and none is ready (or shutdown).
pub(crate) async fn serve_until_settled(
    ctx: &Ctx,
    shutdown: &CancellationToken,
    perform: &mut Perform<'_>,
) {
    let Some(ops) = ctx.ops.clone() else { return };
    loop {
        // Settled first, then the operations: an operation written by
        // the last event handled is committed before the queue is empty.
        let o = ops.clone();
        let settled = tokio::task::spawn_blocking(move || o.settled())
            .await
            .unwrap_or(true);
        match serve_ready(ctx, shutdown, perform).await {
            None => return,
            Some(0) if settled => return,
            Some(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(SETTLE_POLL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// For a catcher that cannot perform operations (`jsonl`, `http`,
/// `amqp`): marks its provider's ready operations `error`, every
/// [`POLL`], until `shutdown` (and once more then).
pub(crate) async fn refuse_loop(
    ops: Arc<Operations>,
    provider: Arc<Provider>,
    kind: &'static str,
    shutdown: CancellationToken,
) {
    let why = format!(
        "provider [{}] is read through a {kind} catcher, which cannot perform operations \
         (only the simulate catcher does; an external adapter reads the ready operations \
         from GET /api/provider_operations)",
        provider.name
    );
    loop {
        let stop = shutdown.is_cancelled();
        let (o, p, w) = (ops.clone(), provider.clone(), why.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for mut op in o.take_ready(&p) {
                o.finish(&mut op, OpState::Error, &w);
            }
        })
        .await;
        if stop {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}
