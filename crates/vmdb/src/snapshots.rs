//! VM snapshots: ManageIQ's `Snapshot` rows (`name`, `description`, `uid`,
//! `uid_ems`, `parent_uid`, `parent_id`, `current` (1 for the VM's current
//! snapshot, else 0), `create_time`, `total_size`, `vm_or_template_id`),
//! over [`ObjectStore`].
//!
//! A method asks for a snapshot (`vm.create_snapshot(...)`,
//! `vm.remove_snapshot(id)`...) as a provider operation; the provider
//! performs it and its inventory changes here (the `simulate` provider
//! through `automate_events::catchers::operations`, as ManageIQ's refresh
//! after the provider's snapshot events). A removed snapshot is deleted
//! ([`ObjectStore::delete`]); a row marked `deleted_on` (soft-deleted) is
//! left out by [`list`], [`current`] and [`find`] too.

use crate::services::DELETED_ON;
use crate::{base_class, ObjectStore, StoreError, VmdbRef};
use automate_core::value::{AttrValue, Attributes};

/// The class snapshots are stored under.
pub const CLASS: &str = "Snapshot";

/// A refused snapshot change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SnapshotError {
    /// No live snapshot of the VM has that id.
    #[error("Snapshot [{id}] not found for {class} [{vm}]")]
    NotFound {
        /// The id asked for.
        id: i64,
        /// The VM's class.
        class: String,
        /// The VM's id.
        vm: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn vm_id_of<S: ObjectStore + ?Sized>(store: &S, snap: &VmdbRef) -> Result<Option<i64>, StoreError> {
    Ok(store
        .attribute(snap, "vm_or_template_id")?
        .as_ref()
        .and_then(crate::associations::as_id))
}

fn is_live<S: ObjectStore + ?Sized>(store: &S, r: &VmdbRef) -> Result<bool, StoreError> {
    Ok(matches!(
        store.attribute(r, DELETED_ON)?,
        None | Some(AttrValue::Nil)
    ))
}

fn is_current<S: ObjectStore + ?Sized>(store: &S, r: &VmdbRef) -> Result<bool, StoreError> {
    Ok(matches!(
        store.attribute(r, "current")?,
        Some(AttrValue::Int(1)) | Some(AttrValue::Bool(true))
    ))
}

/// `vm.snapshots`: the VM's live snapshots, oldest first.
pub fn list<S: ObjectStore + ?Sized>(store: &S, vm: &VmdbRef) -> Result<Vec<VmdbRef>, StoreError> {
    if base_class(&vm.class) != Some("VmOrTemplate") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for s in store.find_by(CLASS, "vm_or_template_id", &AttrValue::Int(vm.id))? {
        if is_live(store, &s)? {
            out.push(s);
        }
    }
    out.sort_by_key(|r| r.id);
    Ok(out)
}

/// `vm.current_snapshot` (`snapshot.get_current_snapshot`): the snapshot
/// marked current, nil when none is.
pub fn current<S: ObjectStore + ?Sized>(
    store: &S,
    vm: &VmdbRef,
) -> Result<Option<VmdbRef>, StoreError> {
    for s in list(store, vm)? {
        if is_current(store, &s)? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// The live snapshot `id` of `vm`, or [`SnapshotError::NotFound`].
pub fn find<S: ObjectStore + ?Sized>(
    store: &S,
    vm: &VmdbRef,
    id: i64,
) -> Result<VmdbRef, SnapshotError> {
    let not_found = || SnapshotError::NotFound {
        id,
        class: vm.class.to_string(),
        vm: vm.id,
    };
    let snap = store.find(CLASS, id)?.ok_or_else(not_found)?;
    if vm_id_of(store, &snap)? != Some(vm.id) || !is_live(store, &snap)? {
        return Err(not_found());
    }
    Ok(snap)
}

/// What the provider reports for a new snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSnapshot {
    /// Its name.
    pub name: String,
    /// Its description (nil when none).
    pub description: Option<String>,
    /// The provider's id of it (`uid` and `uid_ems`).
    pub uid: String,
    /// Whether the VM's memory is in it.
    pub memory: bool,
    /// When it was taken (ISO 8601).
    pub create_time: String,
    /// Its size in bytes.
    pub total_size: i64,
}

/// Stores a new snapshot of `vm`, the VM's current one from now on (the
/// previous current one is its parent).
pub fn create(
    store: &dyn ObjectStore,
    vm: &VmdbRef,
    new: NewSnapshot,
) -> Result<VmdbRef, StoreError> {
    let parent = current(store, vm)?;
    let parent_uid = match &parent {
        Some(p) => store.attribute(p, "uid")?.unwrap_or(AttrValue::Nil),
        None => AttrValue::Nil,
    };
    if let Some(p) = &parent {
        store.update(p, "current", AttrValue::Int(0))?;
    }
    let mut a = Attributes::default();
    a.insert("name".into(), AttrValue::str(new.name));
    a.insert(
        "description".into(),
        new.description
            .map(AttrValue::str)
            .unwrap_or(AttrValue::Nil),
    );
    a.insert("uid".into(), AttrValue::str(new.uid.clone()));
    a.insert("uid_ems".into(), AttrValue::str(new.uid));
    a.insert("ems_ref".into(), AttrValue::Nil);
    a.insert("parent_uid".into(), parent_uid);
    a.insert(
        "parent_id".into(),
        parent
            .map(|p| AttrValue::Int(p.id))
            .unwrap_or(AttrValue::Nil),
    );
    a.insert("current".into(), AttrValue::Int(1));
    a.insert("create_time".into(), AttrValue::str(new.create_time));
    a.insert("total_size".into(), AttrValue::Int(new.total_size));
    a.insert("memory".into(), AttrValue::Bool(new.memory));
    a.insert("vm_or_template_id".into(), AttrValue::Int(vm.id));
    a.insert(
        "created_on".into(),
        AttrValue::str(automate_core::time::iso8601_secs_now()),
    );
    store.create(CLASS, a)
}

/// Deletes snapshot `id` of `vm`; its children take its parent, and
/// when it was current its parent becomes current.
pub fn remove(store: &dyn ObjectStore, vm: &VmdbRef, id: i64) -> Result<(), SnapshotError> {
    let snap = find(store, vm, id)?;
    let parent = store
        .attribute(&snap, "parent_id")?
        .unwrap_or(AttrValue::Nil);
    let parent_uid = store
        .attribute(&snap, "parent_uid")?
        .unwrap_or(AttrValue::Nil);
    let was_current = is_current(store, &snap)?;
    for s in list(store, vm)? {
        let p = store
            .attribute(&s, "parent_id")?
            .as_ref()
            .and_then(crate::associations::as_id);
        if p == Some(id) {
            store.update(&s, "parent_id", parent.clone())?;
            store.update(&s, "parent_uid", parent_uid.clone())?;
        }
    }
    store.delete(&snap)?;
    if was_current {
        if let Some(pid) = crate::associations::as_id(&parent) {
            if let Ok(p) = find(store, vm, pid) {
                store.update(&p, "current", AttrValue::Int(1))?;
            }
        }
    }
    Ok(())
}

/// Deletes every snapshot of `vm`; how many there were.
pub fn remove_all(store: &dyn ObjectStore, vm: &VmdbRef) -> Result<usize, StoreError> {
    let all = list(store, vm)?;
    for s in &all {
        store.delete(s)?;
    }
    Ok(all.len())
}

/// Makes snapshot `id` of `vm` its current one.
pub fn revert_to(store: &dyn ObjectStore, vm: &VmdbRef, id: i64) -> Result<(), SnapshotError> {
    let snap = find(store, vm, id)?;
    for s in list(store, vm)? {
        if s != snap && is_current(store, &s)? {
            store.update(&s, "current", AttrValue::Int(0))?;
        }
    }
    store.update(&snap, "current", AttrValue::Int(1))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn snap(name: &str) -> NewSnapshot {
        NewSnapshot {
            name: name.into(),
            description: None,
            uid: format!("uid-{name}"),
            memory: false,
            create_time: "2026-12-06T00:00:00Z".into(),
            total_size: 0,
        }
    }

    #[test]
    fn create_remove_revert() {
        let store = MemoryStore::new();
        let vm = store.create("Vm", Attributes::default()).unwrap();
        let a = create(&store, &vm, snap("a")).unwrap();
        let b = create(&store, &vm, snap("b")).unwrap();
        assert_eq!(list(&store, &vm).unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(current(&store, &vm).unwrap(), Some(b.clone()));
        assert_eq!(
            store.attribute(&b, "parent_uid").unwrap(),
            Some(AttrValue::str("uid-a"))
        );
        revert_to(&store, &vm, a.id).unwrap();
        assert_eq!(current(&store, &vm).unwrap(), Some(a.clone()));
        remove(&store, &vm, a.id).unwrap();
        assert_eq!(list(&store, &vm).unwrap(), vec![b.clone()]);
        assert_eq!(
            store.attribute(&b, "parent_id").unwrap(),
            Some(AttrValue::Nil)
        );
        assert!(matches!(
            remove(&store, &vm, a.id),
            Err(SnapshotError::NotFound { .. })
        ));
        assert_eq!(remove_all(&store, &vm).unwrap(), 1);
        assert!(list(&store, &vm).unwrap().is_empty());
    }
}
