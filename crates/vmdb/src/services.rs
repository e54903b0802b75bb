//! Services: ManageIQ's `Service` (a named group of VMs and other
//! services, in a tree) and `ServiceResource` (the row that puts a VM or a
//! child service in a service), over [`ObjectStore`], so a method's
//! changes commit with its unit of work on every backend.
//!
//! As in ManageIQ:
//!
//! * a service's parent is its `ancestry` (`"<root id>/.../<parent id>"`,
//!   nil for a root), its children the services whose `ancestry` is its
//!   own path; `root_service`, `parent_service`, `direct_service_children`,
//!   `all_service_children` (every descendant), `indirect_service_children`
//!   read it;
//! * membership is a `ServiceResource` row (`service_id`, `resource_type`
//!   the resource's base class, `resource_id`, `group_idx`...):
//!   `service.direct_vms` are the VMs of its rows, `service.vms` (and
//!   `all_vms`) those of its whole subtree, `vm.direct_service` the service
//!   of the VM's row and `vm.service` that service's root;
//! * [`add_resource`] refuses a resource already connected to a service
//!   (ManageIQ's `<Vm> <id>:<name> is already connected to a service.`) and a
//!   circular reference; a child service gets its parent's path as its
//!   `ancestry` (its own descendants follow);
//! * removing a resource ([`remove_resource`]) deletes its row
//!   ([`ObjectStore::delete`]); a row marked `deleted_on` (ManageIQ's
//!   soft delete) is left out by every read here too.
//!
//! Each change is several writes: they are made under a savepoint of the
//! store's unit of work, taken back together when one fails.

use crate::{base_class, ObjectStore, StoreError, VmdbRef};
use automate_core::value::{AttrValue, Attributes};

/// The class services are stored under.
pub const SERVICE: &str = "Service";
/// The class of the membership rows.
pub const RESOURCE: &str = "ServiceResource";
/// The attribute that marks a soft-deleted row (left out by the reads).
pub const DELETED_ON: &str = "deleted_on";

/// A refused service change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// The object given as the service is not one.
    #[error("service must be a MiqAeServiceService, not a {0}")]
    NotAService(String),
    /// The resource cannot be in a service (only VMs and services are).
    #[error("a {class} [{id}] cannot be a service resource: only VMs and services can")]
    NotAResource {
        /// Its class.
        class: String,
        /// Its id.
        id: i64,
    },
    /// ManageIQ's `enforce_single_service_parent`.
    #[error("<{class}> <{id}>:<{name}> is already connected to a service.")]
    AlreadyConnected {
        /// The resource's class.
        class: String,
        /// Its id.
        id: i64,
        /// Its name.
        name: String,
    },
    /// ManageIQ's `MiqServiceCircularReferenceError`.
    #[error(
        "Adding resource <{resource}> to Service <{service}> will create a circular reference"
    )]
    Circular {
        /// The resource's name.
        resource: String,
        /// The service's name.
        service: String,
    },
    /// A service needs a name (ManageIQ's validation).
    #[error("Validation failed: Service: Name can't be blank")]
    BlankName,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `r` is a service.
pub fn is_service(r: &VmdbRef) -> bool {
    base_class(&r.class) == Some(SERVICE)
}

fn text<S: ObjectStore + ?Sized>(store: &S, r: &VmdbRef, name: &str) -> Result<String, StoreError> {
    Ok(store
        .attribute(r, name)?
        .filter(|v| !matches!(v, AttrValue::Nil))
        .map(|v| v.to_text())
        .unwrap_or_default())
}

fn live<S: ObjectStore + ?Sized>(store: &S, r: &VmdbRef) -> Result<bool, StoreError> {
    Ok(matches!(
        store.attribute(r, DELETED_ON)?,
        None | Some(AttrValue::Nil)
    ))
}

/// `Service.create(name:, description:)`: a root service with
/// ManageIQ's defaults (`guid`, `visible`, `retired` false, `display`...)
/// and `extra` attributes (`service_template_id`, `lifecycle_state`...).
pub fn create(
    store: &dyn ObjectStore,
    name: &str,
    description: Option<&str>,
    extra: Attributes,
) -> Result<VmdbRef, ServiceError> {
    if name.trim().is_empty() {
        return Err(ServiceError::BlankName);
    }
    let mut a = Attributes::default();
    a.insert("name".into(), AttrValue::str(name));
    a.insert(
        "description".into(),
        description.map(AttrValue::str).unwrap_or(AttrValue::Nil),
    );
    a.insert(
        "guid".into(),
        AttrValue::str(uuid::Uuid::new_v4().to_string()),
    );
    a.insert("ancestry".into(), AttrValue::Nil);
    a.insert("visible".into(), AttrValue::Bool(true));
    a.insert("retired".into(), AttrValue::Bool(false));
    a.insert("retirement_state".into(), AttrValue::Nil);
    a.insert("lifecycle_state".into(), AttrValue::Nil);
    a.insert("service_template_id".into(), AttrValue::Nil);
    let now = AttrValue::str(automate_core::time::iso8601_secs_now());
    a.insert("created_at".into(), now.clone());
    a.insert("updated_at".into(), now);
    for (k, v) in extra {
        a.insert(k, v);
    }
    Ok(store.create(SERVICE, a)?)
}

/// The ids of a stored `ancestry` (`"1/2/3"`), root first.
pub fn ancestry_ids(v: Option<&AttrValue>) -> Vec<i64> {
    match v {
        Some(AttrValue::Str(s)) => s
            .split('/')
            .filter_map(|p| p.trim().parse::<i64>().ok())
            .collect(),
        Some(AttrValue::Int(i)) => vec![*i],
        _ => Vec::new(),
    }
}

fn ancestry_of<S: ObjectStore + ?Sized>(store: &S, svc: &VmdbRef) -> Result<Vec<i64>, StoreError> {
    Ok(ancestry_ids(store.attribute(svc, "ancestry")?.as_ref()))
}

/// The `ancestry` a child of `svc` carries: `svc`'s own path.
fn child_path(ancestry: &[i64], id: i64) -> String {
    let mut out = String::new();
    for a in ancestry.iter().chain(std::iter::once(&id)) {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(&a.to_string());
    }
    out
}

fn find_service<S: ObjectStore + ?Sized>(
    store: &S,
    id: i64,
) -> Result<Option<VmdbRef>, StoreError> {
    store.find(SERVICE, id)
}

/// `service.parent_service` (and `service.service`): nil for a root.
pub fn parent_service<S: ObjectStore + ?Sized>(
    store: &S,
    svc: &VmdbRef,
) -> Result<Option<VmdbRef>, StoreError> {
    match ancestry_of(store, svc)?.last() {
        Some(id) => find_service(store, *id),
        None => Ok(None),
    }
}

/// `service.root_service`: the top of its tree (itself for a root).
pub fn root_service<S: ObjectStore + ?Sized>(
    store: &S,
    svc: &VmdbRef,
) -> Result<VmdbRef, StoreError> {
    match ancestry_of(store, svc)?.first() {
        Some(id) => Ok(find_service(store, *id)?.unwrap_or_else(|| svc.clone())),
        None => Ok(svc.clone()),
    }
}

/// `service.direct_service_children` (`services`), by id.
pub fn direct_service_children<S: ObjectStore + ?Sized>(
    store: &S,
    svc: &VmdbRef,
) -> Result<Vec<VmdbRef>, StoreError> {
    let path = child_path(&ancestry_of(store, svc)?, svc.id);
    let mut out = store.find_by(SERVICE, "ancestry", &AttrValue::Str(path))?;
    out.sort_by_key(|r| r.id);
    Ok(out)
}

/// `service.all_service_children`: every descendant, breadth first.
pub fn all_service_children<S: ObjectStore + ?Sized>(
    store: &S,
    svc: &VmdbRef,
) -> Result<Vec<VmdbRef>, StoreError> {
    let mut out: Vec<VmdbRef> = Vec::new();
    let mut next = vec![svc.clone()];
    while let Some(s) = next.pop() {
        for c in direct_service_children(store, &s)? {
            if c.id != svc.id && !out.iter().any(|o| o.id == c.id) {
                out.push(c.clone());
                next.push(c);
            }
        }
    }
    Ok(out)
}

/// `service.indirect_service_children`: the descendants that are not
/// children.
pub fn indirect_service_children<S: ObjectStore + ?Sized>(
    store: &S,
    svc: &VmdbRef,
) -> Result<Vec<VmdbRef>, StoreError> {
    let direct = direct_service_children(store, svc)?;
    Ok(all_service_children(store, svc)?
        .into_iter()
        .filter(|d| !direct.contains(d))
        .collect())
}

/// `service.service_resources`: its live membership rows, by id.
pub fn service_resources<S: ObjectStore + ?Sized>(
    store: &S,
    svc: &VmdbRef,
) -> Result<Vec<VmdbRef>, StoreError> {
    let mut out = Vec::new();
    for r in store.find_by(RESOURCE, "service_id", &AttrValue::Int(svc.id))? {
        if live(store, &r)? {
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.id);
    Ok(out)
}

/// The object a membership row names (`resource_type`, `resource_id`).
fn resource_of<S: ObjectStore + ?Sized>(
    store: &S,
    row: &VmdbRef,
) -> Result<Option<VmdbRef>, StoreError> {
    let class = text(store, row, "resource_type")?;
    let Some(id) = store
        .attribute(row, "resource_id")?
        .as_ref()
        .and_then(crate::associations::as_id)
    else {
        return Ok(None);
    };
    if base_class(&class).is_none() {
        return Ok(None);
    }
    store.find(&class, id)
}

/// `service.direct_vms`: the VMs of its own rows.
pub fn direct_vms<S: ObjectStore + ?Sized>(
    store: &S,
    svc: &VmdbRef,
) -> Result<Vec<VmdbRef>, StoreError> {
    let mut out = Vec::new();
    for row in service_resources(store, svc)? {
        if text(store, &row, "resource_type")? != "VmOrTemplate" {
            continue;
        }
        if let Some(vm) = resource_of(store, &row)? {
            out.push(vm);
        }
    }
    Ok(out)
}

/// `service.vms` and `service.all_vms`: the VMs of the service and of
/// every service below it.
pub fn all_vms<S: ObjectStore + ?Sized>(
    store: &S,
    svc: &VmdbRef,
) -> Result<Vec<VmdbRef>, StoreError> {
    let mut out = direct_vms(store, svc)?;
    for child in all_service_children(store, svc)? {
        for vm in direct_vms(store, &child)? {
            if !out.contains(&vm) {
                out.push(vm);
            }
        }
    }
    Ok(out)
}

/// `service.indirect_vms`: the VMs of the services below it.
pub fn indirect_vms<S: ObjectStore + ?Sized>(
    store: &S,
    svc: &VmdbRef,
) -> Result<Vec<VmdbRef>, StoreError> {
    let direct = direct_vms(store, svc)?;
    Ok(all_vms(store, svc)?
        .into_iter()
        .filter(|v| !direct.contains(v))
        .collect())
}

/// The live membership row putting `res` in a service (its first, by id).
fn row_of<S: ObjectStore + ?Sized>(
    store: &S,
    res: &VmdbRef,
) -> Result<Option<VmdbRef>, StoreError> {
    let Some(base) = base_class(&res.class) else {
        return Ok(None);
    };
    let mut rows = store.find_by(RESOURCE, "resource_id", &AttrValue::Int(res.id))?;
    rows.sort_by_key(|r| r.id);
    for row in rows {
        if text(store, &row, "resource_type")? == base && live(store, &row)? {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

/// `vm.direct_service`: the service the VM's row names.
pub fn direct_service<S: ObjectStore + ?Sized>(
    store: &S,
    res: &VmdbRef,
) -> Result<Option<VmdbRef>, StoreError> {
    let Some(row) = row_of(store, res)? else {
        return Ok(None);
    };
    match store
        .attribute(&row, "service_id")?
        .as_ref()
        .and_then(crate::associations::as_id)
    {
        Some(id) => find_service(store, id),
        None => Ok(None),
    }
}

/// `vm.service`: the root of the VM's direct service.
pub fn service_of_vm<S: ObjectStore + ?Sized>(
    store: &S,
    vm: &VmdbRef,
) -> Result<Option<VmdbRef>, StoreError> {
    match direct_service(store, vm)? {
        Some(s) => Ok(Some(root_service(store, &s)?)),
        None => Ok(None),
    }
}

/// Runs `f` under a savepoint of the store's unit of work: its writes
/// are kept when it succeeds and taken back when it fails.
fn atomically<T>(
    store: &dyn ObjectStore,
    f: impl FnOnce() -> Result<T, ServiceError>,
) -> Result<T, ServiceError> {
    let sp = store.savepoint();
    let out = f();
    if let Some(sp) = sp {
        match &out {
            Ok(_) => store.release_savepoint(sp),
            Err(_) => store.rollback_to(sp),
        }
    }
    out
}

/// Re-paths `svc` under `new_ancestry` (nil: a root), and its descendants
/// with it.
fn set_ancestry(
    store: &dyn ObjectStore,
    svc: &VmdbRef,
    new_ancestry: &[i64],
) -> Result<(), StoreError> {
    let old = ancestry_of(store, svc)?;
    let descendants = all_service_children(store, svc)?;
    let new_value = if new_ancestry.is_empty() {
        AttrValue::Nil
    } else {
        AttrValue::Str(
            new_ancestry
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join("/"),
        )
    };
    store.update(svc, "ancestry", new_value)?;
    // Each descendant's ancestry is `old/svc/...`: it becomes `new/svc/...`.
    for d in descendants {
        let ids = ancestry_of(store, &d)?;
        let rest = ids.get(old.len()..).unwrap_or(&[]);
        let path: Vec<i64> = new_ancestry.iter().chain(rest).copied().collect();
        store.update(
            &d,
            "ancestry",
            AttrValue::Str(
                path.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("/"),
            ),
        )?;
    }
    Ok(())
}

/// `service.add_resource(res)` (`add_resource!`, `vm.add_to_service`,
/// `child.parent_service = service`): the membership row, made (or the
/// one there, when `res` is already in this service).
pub fn add_resource(
    store: &dyn ObjectStore,
    svc: &VmdbRef,
    res: &VmdbRef,
) -> Result<VmdbRef, ServiceError> {
    if !is_service(svc) {
        return Err(ServiceError::NotAService(svc.class.to_string()));
    }
    let base = match base_class(&res.class) {
        Some(b @ ("VmOrTemplate" | "Service")) => b,
        _ => {
            return Err(ServiceError::NotAResource {
                class: res.class.to_string(),
                id: res.id,
            })
        }
    };
    if store.find(SERVICE, svc.id)?.is_none() {
        return Err(StoreError::NotFound(svc.class.to_string(), svc.id).into());
    }
    if store.find(base, res.id)?.is_none() {
        return Err(StoreError::NotFound(res.class.to_string(), res.id).into());
    }
    // ManageIQ's enforce_single_service_parent: a VM (or service) already
    // in a service is refused, even when it is this one.
    let connected = match base {
        "Service" => parent_service(store, res)?.is_some(),
        _ => direct_service(store, res)?.is_some(),
    };
    if connected {
        return Err(ServiceError::AlreadyConnected {
            class: res.class.to_string(),
            id: res.id,
            name: text(store, res, "name")?,
        });
    }
    let svc_ancestry = ancestry_of(store, svc)?;
    if base == "Service" && (res.id == svc.id || svc_ancestry.contains(&res.id)) {
        return Err(ServiceError::Circular {
            resource: text(store, res, "name")?,
            service: text(store, svc, "name")?,
        });
    }
    atomically(store, || {
        let mut a = Attributes::default();
        a.insert("service_id".into(), AttrValue::Int(svc.id));
        a.insert("resource_type".into(), AttrValue::str(base));
        a.insert("resource_id".into(), AttrValue::Int(res.id));
        a.insert("group_idx".into(), AttrValue::Int(0));
        a.insert("scaling_min".into(), AttrValue::Int(1));
        a.insert("scaling_max".into(), AttrValue::Int(-1));
        a.insert("provision_index".into(), AttrValue::Int(0));
        a.insert(
            "created_at".into(),
            AttrValue::str(automate_core::time::iso8601_secs_now()),
        );
        let row = store.create(RESOURCE, a)?;
        if base == "Service" {
            let mut path = svc_ancestry.clone();
            path.push(svc.id);
            set_ancestry(store, res, &path)?;
        }
        Ok(row)
    })
}

/// `service.remove_resource(res)`: deletes `res`'s row in `svc` (a
/// child service becomes a root); `false` when `res` was not in `svc`.
pub fn remove_resource(
    store: &dyn ObjectStore,
    svc: &VmdbRef,
    res: &VmdbRef,
) -> Result<bool, ServiceError> {
    if !is_service(svc) {
        return Err(ServiceError::NotAService(svc.class.to_string()));
    }
    let Some(base) = base_class(&res.class) else {
        return Ok(false);
    };
    let mut found = None;
    for row in service_resources(store, svc)? {
        let id = store
            .attribute(&row, "resource_id")?
            .as_ref()
            .and_then(crate::associations::as_id);
        if id == Some(res.id) && text(store, &row, "resource_type")? == base {
            found = Some(row);
            break;
        }
    }
    let is_child = base == "Service" && parent_service(store, res)?.as_ref() == Some(svc);
    if found.is_none() && !is_child {
        return Ok(false);
    }
    atomically(store, || {
        if let Some(row) = &found {
            store.delete(row)?;
        }
        if is_child {
            set_ancestry(store, res, &[])?;
        }
        Ok(true)
    })
}

/// `vm.remove_from_service`: takes the VM out of its direct service;
/// `None` when it was in none, else that service.
pub fn remove_from_service(
    store: &dyn ObjectStore,
    res: &VmdbRef,
) -> Result<Option<VmdbRef>, ServiceError> {
    let svc = match base_class(&res.class) {
        Some("Service") => parent_service(store, res)?,
        _ => direct_service(store, res)?,
    };
    let Some(svc) = svc else { return Ok(None) };
    remove_resource(store, &svc, res)?;
    Ok(Some(svc))
}

/// The service-model associations of services, VMs and snapshots this
/// module and [`crate::snapshots`] answer ([`read`]), by base class.
pub fn association_names(base: &str) -> &'static [&'static str] {
    match base {
        "Service" => &[
            "all_service_children",
            "all_vms",
            "direct_service_children",
            "direct_vms",
            "indirect_service_children",
            "indirect_vms",
            "parent_service",
            "root_service",
            "service",
            "service_resources",
            "services",
            "vms",
        ],
        "VmOrTemplate" => &[
            "current_snapshot",
            "direct_service",
            "ems_custom_attributes",
            "service",
            "snapshots",
        ],
        _ => &[],
    }
}

fn many(v: Vec<VmdbRef>) -> AttrValue {
    AttrValue::Array(v.into_iter().map(AttrValue::Object).collect())
}

fn one(v: Option<VmdbRef>) -> AttrValue {
    v.map(AttrValue::Object).unwrap_or(AttrValue::Nil)
}

/// The association `name` of `obj` when it is one of
/// [`association_names`]; `None` for other names.
pub fn read<S: ObjectStore + ?Sized>(
    store: &S,
    obj: &VmdbRef,
    name: &str,
) -> Result<Option<AttrValue>, StoreError> {
    let Some(base) = base_class(&obj.class) else {
        return Ok(None);
    };
    Ok(Some(match (base, name) {
        ("Service", "vms" | "all_vms") => many(all_vms(store, obj)?),
        ("Service", "direct_vms") => many(direct_vms(store, obj)?),
        ("Service", "indirect_vms") => many(indirect_vms(store, obj)?),
        ("Service", "parent_service" | "service") => one(parent_service(store, obj)?),
        ("Service", "root_service") => AttrValue::Object(root_service(store, obj)?),
        ("Service", "direct_service_children" | "services") => {
            many(direct_service_children(store, obj)?)
        }
        ("Service", "all_service_children") => many(all_service_children(store, obj)?),
        ("Service", "indirect_service_children") => many(indirect_service_children(store, obj)?),
        ("Service", "service_resources") => many(service_resources(store, obj)?),
        ("VmOrTemplate", "service") => one(service_of_vm(store, obj)?),
        ("VmOrTemplate", "direct_service") => one(direct_service(store, obj)?),
        ("VmOrTemplate", "snapshots") => many(crate::snapshots::list(store, obj)?),
        ("VmOrTemplate", "current_snapshot") => one(crate::snapshots::current(store, obj)?),
        ("VmOrTemplate", "ems_custom_attributes") => {
            crate::tags::ems_custom_attribute_rows(store, obj)?
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn vm(store: &MemoryStore, name: &str) -> VmdbRef {
        let mut a = Attributes::default();
        a.insert("name".into(), AttrValue::str(name));
        store.create("Vm", a).unwrap()
    }

    #[test]
    fn membership_and_the_tree() {
        let store = MemoryStore::new();
        let top = create(&store, "top", Some("the top"), Attributes::default()).unwrap();
        let mid = create(&store, "mid", None, Attributes::default()).unwrap();
        let low = create(&store, "low", None, Attributes::default()).unwrap();
        add_resource(&store, &top, &mid).unwrap();
        add_resource(&store, &mid, &low).unwrap();
        let (a, b) = (vm(&store, "a"), vm(&store, "b"));
        add_resource(&store, &top, &a).unwrap();
        add_resource(&store, &low, &b).unwrap();

        assert_eq!(parent_service(&store, &low).unwrap(), Some(mid.clone()));
        assert_eq!(root_service(&store, &low).unwrap(), top);
        assert_eq!(
            direct_service_children(&store, &top).unwrap(),
            vec![mid.clone()]
        );
        assert_eq!(
            all_service_children(&store, &top).unwrap(),
            vec![mid.clone(), low.clone()]
        );
        assert_eq!(
            indirect_service_children(&store, &top).unwrap(),
            vec![low.clone()]
        );
        assert_eq!(direct_vms(&store, &top).unwrap(), vec![a.clone()]);
        assert_eq!(all_vms(&store, &top).unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(direct_service(&store, &b).unwrap(), Some(low.clone()));
        assert_eq!(service_of_vm(&store, &b).unwrap(), Some(top.clone()));

        // One service per VM; no cycles.
        assert!(matches!(
            add_resource(&store, &mid, &a),
            Err(ServiceError::AlreadyConnected { .. })
        ));
        let other = create(&store, "other", None, Attributes::default()).unwrap();
        assert!(matches!(
            add_resource(&store, &low, &top),
            Err(ServiceError::Circular { .. })
        ));
        assert!(matches!(
            add_resource(&store, &other, &other),
            Err(ServiceError::Circular { .. })
        ));
        assert!(matches!(
            add_resource(&store, &a, &b),
            Err(ServiceError::NotAService(_))
        ));

        // Taking mid out re-roots its subtree.
        assert!(remove_resource(&store, &top, &mid).unwrap());
        assert_eq!(parent_service(&store, &mid).unwrap(), None);
        assert_eq!(root_service(&store, &low).unwrap(), mid);
        assert_eq!(
            store.attribute(&low, "ancestry").unwrap(),
            Some(AttrValue::str(mid.id.to_string()))
        );
        assert_eq!(remove_from_service(&store, &a).unwrap(), Some(top.clone()));
        assert_eq!(direct_service(&store, &a).unwrap(), None);
        assert!(!remove_resource(&store, &top, &a).unwrap());
        add_resource(&store, &other, &a).unwrap();
        assert_eq!(service_of_vm(&store, &a).unwrap(), Some(other));
        assert!(matches!(
            create(&store, " ", None, Attributes::default()),
            Err(ServiceError::BlankName)
        ));
    }
}
