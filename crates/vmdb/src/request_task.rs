//! The rows of requests and their tasks that more than the request service
//! writes: `MiqRequest#update_request_status` (a request's state, status
//! and message follow its tasks'), and the two ways a provisioning task
//! (`MiqProvision`) ends outside the request service, because it waits on
//! its provider:
//!
//! * [`clone_failed`]: its `clone_to_vm` provider operation was refused
//!   ([`crate::operation::delivered`] with `error` or `warn` calls it), so
//!   the task finishes `Error` with the provider's reason;
//! * [`vm_appeared`]: the provider's create event for the new VM has been
//!   handled (the request service's after-delivery hook calls it), so the
//!   task finishes `Ok` with `destination`/`vm` set to the VM, as
//!   ManageIQ's `MiqProvision#poll_clone_complete` +
//!   `find_destination_in_vmdb` + `task_finished` do.
//!
//! The link between the two is the task's `new_vm_ems_ref` (ManageIQ's
//! `phase_context[:new_vm_ems_ref]`): the provider reference of the VM the
//! clone makes, recorded by the provider when it starts the clone.

use crate::operation::ProviderOperation;
use crate::{ObjectStore, StoreError, VmdbRef};
use automate_core::time::iso8601_secs_now;
use automate_core::value::AttrValue;

/// The stored class of a provisioning request.
pub const PROVISION_REQUEST_CLASS: &str = "MiqProvisionRequest";
/// The stored class of a provisioning request's task.
pub const PROVISION_TASK_CLASS: &str = "MiqProvision";
/// The provider operation a provisioning task sends to the template's
/// provider.
pub const CLONE_METHOD: &str = "clone_to_vm";
/// The task attribute holding the provider reference of the VM its clone
/// makes (ManageIQ's `phase_context[:new_vm_ems_ref]`).
pub const NEW_VM_REF: &str = "new_vm_ems_ref";
/// The provider events that say a clone's VM exists (RHEV, VMware,
/// OpenStack): [`vm_appeared`] is worth asking only for those.
pub const CREATED_EVENTS: &[&str] = &[
    "USER_ADD_VM_FINISHED_SUCCESS",
    "VmDeployedEvent",
    "VmClonedEvent",
    "compute.instance.create.end",
];

/// The tasks of `request`, by id.
pub fn tasks_of(store: &dyn ObjectStore, request: &VmdbRef) -> Result<Vec<VmdbRef>, StoreError> {
    let mut tasks = store.find_by(
        "MiqRequestTask",
        "miq_request_id",
        &AttrValue::Int(request.id),
    )?;
    tasks.sort_by_key(|t| t.id);
    Ok(tasks)
}

/// A stored attribute as text (`""` when absent).
fn text(store: &dyn ObjectStore, obj: &VmdbRef, name: &str) -> Result<String, StoreError> {
    Ok(store
        .attribute(obj, name)?
        .map(|v| v.to_text())
        .unwrap_or_default())
}

/// Sets `updated_on` to now.
pub fn touch(store: &dyn ObjectStore, obj: &VmdbRef) -> Result<(), StoreError> {
    store.update(obj, "updated_on", AttrValue::str(iso8601_secs_now()))
}

/// Sets a task's state, status and message (and `updated_on`).
pub fn set_task(
    store: &dyn ObjectStore,
    task: &VmdbRef,
    state: &str,
    status: &str,
    message: &str,
) -> Result<(), StoreError> {
    store.update(task, "state", AttrValue::str(state))?;
    store.update(task, "status", AttrValue::str(status))?;
    store.update(task, "message", AttrValue::str(message))?;
    touch(store, task)
}

/// `MiqRequest#update_request_status`: the request's state is its tasks'
/// state when they all agree (else `active`), its status the worst of
/// theirs, its message the task's when there is one task.
pub fn update_request_status(store: &dyn ObjectStore, request: &VmdbRef) -> Result<(), StoreError> {
    let tasks = tasks_of(store, request)?;
    if tasks.is_empty() {
        return Ok(());
    }
    let states = tasks
        .iter()
        .map(|t| text(store, t, "state"))
        .collect::<Result<Vec<String>, _>>()?;
    let statuses = tasks
        .iter()
        .map(|t| text(store, t, "status"))
        .collect::<Result<Vec<String>, _>>()?;
    let first = states[0].clone();
    let state = if states.iter().all(|s| *s == first) {
        first
    } else {
        "active".to_string()
    };
    // ManageIQ reports a task still being prepared as an active request.
    let state = match state.as_str() {
        "pending" | "queued" => "active".to_string(),
        _ => state,
    };
    let status = ["Error", "Timeout", "Warn"]
        .into_iter()
        .find(|s| statuses.iter().any(|t| t == s))
        .unwrap_or("Ok");
    let message = if tasks.len() == 1 {
        text(store, &tasks[0], "message")?
    } else if state == "finished" && status == "Ok" {
        "Request complete".to_string()
    } else if state == "finished" {
        "Request completed with errors".to_string()
    } else {
        format!("{} tasks", tasks.len())
    };
    store.update(request, "request_state", AttrValue::str(state.clone()))?;
    store.update(request, "status", AttrValue::str(status))?;
    store.update(request, "message", AttrValue::str(message))?;
    if state == "finished" {
        store.update(request, "fulfilled_on", AttrValue::str(iso8601_secs_now()))?;
    }
    touch(store, request)
}

/// The provisioning task a `clone_to_vm` operation is for (its second
/// argument), when it is one and still unfinished.
fn open_task_of(
    store: &dyn ObjectStore,
    op: &ProviderOperation,
) -> Result<Option<VmdbRef>, StoreError> {
    if op.method_name != CLONE_METHOD {
        return Ok(None);
    }
    let Some(id) = op.args.get(1).and_then(crate::associations::as_id) else {
        return Ok(None);
    };
    let Some(task) = store.find("MiqRequestTask", id)? else {
        return Ok(None);
    };
    if text(store, &task, "state")? == "finished" {
        return Ok(None);
    }
    Ok(Some(task))
}

/// Finishes the request of `task` (when it has one) with its tasks.
fn update_parent(store: &dyn ObjectStore, task: &VmdbRef) -> Result<(), StoreError> {
    if let Some(AttrValue::Int(id)) = store.attribute(task, "miq_request_id")? {
        if let Some(request) = store.find("MiqRequest", id)? {
            update_request_status(store, &request)?;
        }
    }
    Ok(())
}

/// A `clone_to_vm` operation was refused (`error`) or not delivered
/// (`warn`): its task finishes `Error` with `message`, and its request
/// follows. Any other operation: nothing.
pub fn clone_failed(
    store: &dyn ObjectStore,
    op: &ProviderOperation,
    message: &str,
) -> Result<(), StoreError> {
    let Some(task) = open_task_of(store, op)? else {
        return Ok(());
    };
    tracing::error!(target: "evm", "MIQ(MiqProvision#poll_clone_complete) Provision task [{}]: the provider refused the clone: {message}", task.id);
    set_task(
        store,
        &task,
        "finished",
        "Error",
        &format!("Error: the provider refused the clone: {message}"),
    )?;
    update_parent(store, &task)
}

/// The VM `vm` has been seen through its provider's create event: the
/// unfinished provisioning task waiting for it (its `new_vm_ems_ref` is
/// the VM's `ems_ref`, on the same provider) finishes `Ok` with the VM as
/// its `destination` (`task.vm`), and its request follows. Answers the
/// task, or `None` when no task waits for this VM.
pub fn vm_appeared(store: &dyn ObjectStore, vm: &VmdbRef) -> Result<Option<VmdbRef>, StoreError> {
    let ems_ref = text(store, vm, "ems_ref")?;
    if ems_ref.is_empty() {
        return Ok(None);
    }
    let ems_id = store.attribute(vm, "ems_id")?;
    for task in store.find_by("MiqRequestTask", NEW_VM_REF, &AttrValue::Str(ems_ref))? {
        if store.attribute(&task, "dest_ems_id")? != ems_id
            || text(store, &task, "state")? == "finished"
        {
            continue;
        }
        let name = text(store, vm, "name")?;
        store.update(&task, "destination_id", AttrValue::Int(vm.id))?;
        store.update(&task, "destination_type", AttrValue::str("VmOrTemplate"))?;
        store.update(&task, "vm_id", AttrValue::Int(vm.id))?;
        store.update(&task, "phase", AttrValue::str("poll_clone_complete"))?;
        let server = store
            .find_by("MiqServer", "name", &AttrValue::str("EVM"))?
            .into_iter()
            .next()
            .map(|s| text(store, &s, "name"))
            .transpose()?
            .unwrap_or_else(|| "EVM".to_string());
        let message = format!("[{server}] VM [{name}] Provisioned Successfully");
        tracing::info!(target: "evm", "MIQ(MiqProvision#poll_clone_complete) Provision task [{}]: VM [{name}] id [{}] found in the VMDB", task.id, vm.id);
        set_task(store, &task, "finished", "Ok", &message)?;
        update_parent(store, &task)?;
        return Ok(Some(task));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{self, NewOperation, OpState};
    use crate::MemoryStore;
    use automate_core::value::Attributes;

    fn row(pairs: &[(&str, AttrValue)]) -> Attributes {
        let mut a = Attributes::default();
        for (k, v) in pairs {
            a.insert((*k).into(), v.clone());
        }
        a
    }

    fn request_with_task(store: &MemoryStore) -> (VmdbRef, VmdbRef) {
        let request = store
            .create(
                PROVISION_REQUEST_CLASS,
                row(&[("request_state", AttrValue::str("active"))]),
            )
            .unwrap();
        let task = store
            .create(
                PROVISION_TASK_CLASS,
                row(&[
                    ("miq_request_id", AttrValue::Int(request.id)),
                    ("state", AttrValue::str("active")),
                    ("status", AttrValue::str("Ok")),
                    ("dest_ems_id", AttrValue::Int(5)),
                    (NEW_VM_REF, AttrValue::str("vm-77")),
                ]),
            )
            .unwrap();
        (request, task)
    }

    #[test]
    fn the_vm_appearing_finishes_its_task_and_request() {
        let store = MemoryStore::new();
        let (request, task) = request_with_task(&store);
        let other_ems = store
            .create(
                "VmOrTemplate",
                row(&[
                    ("name", AttrValue::str("x")),
                    ("ems_ref", AttrValue::str("vm-77")),
                    ("ems_id", AttrValue::Int(6)),
                ]),
            )
            .unwrap();
        assert_eq!(vm_appeared(&store, &other_ems).unwrap(), None);
        let vm = store
            .create(
                "VmOrTemplate",
                row(&[
                    ("name", AttrValue::str("web-001")),
                    ("ems_ref", AttrValue::str("vm-77")),
                    ("ems_id", AttrValue::Int(5)),
                ]),
            )
            .unwrap();
        assert_eq!(vm_appeared(&store, &vm).unwrap(), Some(task.clone()));
        assert_eq!(text(&store, &task, "state").unwrap(), "finished");
        assert_eq!(
            store.attribute(&task, "vm_id").unwrap(),
            Some(AttrValue::Int(vm.id))
        );
        assert_eq!(
            text(&store, &task, "message").unwrap(),
            "[EVM] VM [web-001] Provisioned Successfully"
        );
        assert_eq!(text(&store, &request, "request_state").unwrap(), "finished");
        assert_eq!(text(&store, &request, "status").unwrap(), "Ok");
        // Once finished, seen again: nothing.
        assert_eq!(vm_appeared(&store, &vm).unwrap(), None);
    }

    #[test]
    fn a_refused_clone_fails_its_task_and_request() {
        let store = MemoryStore::new();
        let (request, task) = request_with_task(&store);
        let r = operation::put(
            &store,
            NewOperation {
                class_name: "VmOrTemplate".into(),
                instance_id: 9,
                ems_id: 5,
                method_name: CLONE_METHOD.into(),
                args: vec![AttrValue::str("web-001"), AttrValue::Int(task.id)],
            },
        )
        .unwrap();
        let mut op = operation::ready_for(&store, 5).unwrap().remove(0);
        assert_eq!(op.id, r.id);
        operation::dequeue(&store, &mut op, "n1").unwrap();
        operation::delivered(&store, &mut op, OpState::Error, "no such template").unwrap();
        assert_eq!(text(&store, &task, "status").unwrap(), "Error");
        assert!(text(&store, &task, "message")
            .unwrap()
            .contains("no such template"));
        assert_eq!(text(&store, &request, "request_state").unwrap(), "finished");
        assert_eq!(text(&store, &request, "status").unwrap(), "Error");
    }
}
