//! Services, snapshots and provider custom attributes on stored objects in
//! Rhai: ManageIQ's `MiqAeServiceVm#add_to_service`, `remove_from_service`,
//! `create_snapshot`, `remove_snapshot`, `remove_all_snapshots`,
//! `revert_to_snapshot`, `MiqAeServiceVmOrTemplate#ems_custom_set`,
//! `ems_custom_get`, `ems_custom_keys`, `MiqAeServiceService#add_resource`,
//! `remove_resource`, `name=`, `description=`, `retire_now`,
//! `MiqAeServiceService.create` (`evm.vmdb("service").create(#{...})`) and
//! `MiqAeServiceSnapshot#remove`, `revert_to`, `current?` (`is_current`),
//! `get_current_snapshot`.
//!
//! | Rhai | what it does |
//! |---|---|
//! | `vm.add_to_service(service)` / `service.add_resource(vm_or_service)` | a `ServiceResource` row in the method's store ([`automate_vmdb::services::add_resource`]) |
//! | `vm.remove_from_service()` / `service.remove_resource(obj)` | marks the row removed |
//! | `vm.create_snapshot(name[, desc[, memory]])` | queues `create_snapshot` `[name, desc, memory]` |
//! | `vm.remove_snapshot(id)` / `snapshot.remove()` | queues `remove_snapshot` `[id]` |
//! | `vm.remove_all_snapshots()` | queues `remove_all_snapshots` |
//! | `vm.revert_to_snapshot(id)` / `snapshot.revert_to()` | queues `revert_to_snapshot` `[id]` |
//! | `vm.ems_custom_set(attr, value)` | queues `set_custom_field` `[attr, value]` |
//! | `service.retire_now()` | ManageIQ's `RetirementMixin#retire_now`: `retirement_state` `initializing` and the `request_service_retire` event |
//!
//! Membership is a database change, made in the method's store (the
//! event's unit of work in the pipeline) and committed with it. Snapshots
//! and custom fields are provider operations (`MiqQueue` messages of the
//! `ems_operations` role, [`super::operations::queue`]), performed by the
//! node running the provider's catcher; a snapshot id must name a snapshot
//! of the VM when the method asks.

use super::evm::{from_dynamic, runtime_error, with_runtime, VmdbClass, VmdbObject};
use super::operations::{no_method, queue};
use automate_engine::{AttrValue, Attributes, Level};
use automate_vmdb::services::{self, ServiceError};
use automate_vmdb::snapshots::{self, SnapshotError};
use automate_vmdb::tags;
use automate_vmdb::{base_class, VmdbRef};
use rhai::{Dynamic, EvalAltResult, ImmutableString, Map};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn is_vm(r: &VmdbRef) -> bool {
    base_class(&r.class) == Some("VmOrTemplate")
}

fn vm_only(r: &VmdbRef, called: &str) -> RhaiResult<()> {
    if is_vm(r) {
        Ok(())
    } else {
        Err(no_method(called, r))
    }
}

fn service_only(r: &VmdbRef, called: &str) -> RhaiResult<()> {
    if services::is_service(r) {
        Ok(())
    } else {
        Err(no_method(called, r))
    }
}

/// The stored object a Rhai value is, or ManageIQ's `ArgumentError`.
fn service_arg(called: &str, d: &Dynamic) -> RhaiResult<VmdbRef> {
    if d.is::<VmdbObject>() {
        let r = d.clone().cast::<VmdbObject>().0;
        if services::is_service(&r) {
            return Ok(r);
        }
        return Err(runtime_error(format!(
            "{called}: service must be a MiqAeServiceService, not a MiqAeService{}",
            r.class
        )));
    }
    Err(runtime_error(format!(
        "{called}: service must be a MiqAeServiceService, not {}",
        d.type_name()
    )))
}

fn object_arg(called: &str, d: &Dynamic) -> RhaiResult<VmdbRef> {
    if d.is::<VmdbObject>() {
        return Ok(d.clone().cast::<VmdbObject>().0);
    }
    Err(runtime_error(format!(
        "{called}: the resource must be a vmdb object (a VM or a service), not {}",
        d.type_name()
    )))
}

fn service_failure(called: &str, e: ServiceError) -> Box<EvalAltResult> {
    let kind = match e {
        ServiceError::AlreadyConnected { .. } => "MiqException::Error",
        ServiceError::Circular { .. } => "MiqException::MiqServiceCircularReferenceError",
        ServiceError::NotAService(_) | ServiceError::NotAResource { .. } => "ArgumentError",
        ServiceError::BlankName => "ActiveRecord::RecordInvalid",
        ServiceError::Store(_) => "ActiveRecord::StatementInvalid",
    };
    with_runtime(|rt, _, _| super::execute::raised(rt, kind, format!("{called}: {e}")))
        .unwrap_or_else(|e| e)
}

fn add(svc: &VmdbRef, res: &VmdbRef, called: &str) -> RhaiResult<Dynamic> {
    with_runtime(|rt, _, _| services::add_resource(rt.engine().store().as_ref(), svc, res))?
        .map(|row| Dynamic::from(VmdbObject(row)))
        .map_err(|e| service_failure(called, e))
}

fn add_to_service(vm: &VmdbRef, svc: &Dynamic) -> RhaiResult<Dynamic> {
    vm_only(vm, "add_to_service")?;
    let svc = service_arg("add_to_service", svc)?;
    add(&svc, vm, "add_to_service")
}

fn remove_from_service(vm: &VmdbRef) -> RhaiResult<Dynamic> {
    vm_only(vm, "remove_from_service")?;
    with_runtime(|rt, _, _| services::remove_from_service(rt.engine().store().as_ref(), vm))?
        .map(|s| {
            s.map(|s| Dynamic::from(VmdbObject(s)))
                .unwrap_or(Dynamic::UNIT)
        })
        .map_err(|e| service_failure("remove_from_service", e))
}

fn add_resource(svc: &VmdbRef, res: &Dynamic) -> RhaiResult<Dynamic> {
    service_only(svc, "add_resource")?;
    let res = object_arg("add_resource", res)?;
    add(svc, &res, "add_resource")
}

fn remove_resource(svc: &VmdbRef, res: &Dynamic) -> RhaiResult<bool> {
    service_only(svc, "remove_resource")?;
    let res = object_arg("remove_resource", res)?;
    with_runtime(|rt, _, _| services::remove_resource(rt.engine().store().as_ref(), svc, &res))?
        .map_err(|e| service_failure("remove_resource", e))
}

/// `service.name = x`, `service.description = x` (and the same for any
/// stored object: the attribute written in the method's store); a
/// service's name may not be blank.
fn set_text(o: &VmdbRef, attr: &str, value: Dynamic) -> RhaiResult<()> {
    let v = from_dynamic(value);
    if attr == "name" && services::is_service(o) && v.is_blank() {
        return Err(service_failure("name=", ServiceError::BlankName));
    }
    with_runtime(|rt, _, _| rt.engine().store().update(o, attr, v))?
        .map_err(|e| runtime_error(e.to_string()))
}

/// ManageIQ's `RetirementMixin#retire_now` for a service: nothing when it
/// is retired or retiring; else `retirement_state` becomes `initializing`
/// and `request_service_retire` is raised on it.
pub(crate) fn service_retire_now(svc: &VmdbRef) -> RhaiResult<bool> {
    with_runtime(|rt, obj, _| {
        let store = rt.engine().store().clone();
        let text = |k: &str| -> Result<String, Box<EvalAltResult>> {
            Ok(store
                .attribute(svc, k)
                .map_err(|e| runtime_error(format!("retire_now: {e}")))?
                .filter(|v| !v.is_blank())
                .map(|v| v.to_text())
                .unwrap_or_default())
        };
        let name = text("name")?;
        let state = text("retirement_state")?;
        if text("retired")? == "true" {
            rt.log(
                Level::Info,
                format!(
                    "Service: [id:<{}>, name:<{name}>] is already retired",
                    svc.id
                ),
            );
            return Ok(true);
        }
        if !(state.is_empty() || state == "error") {
            rt.log(
                Level::Info,
                format!(
                    "Service: [id:<{}>, name:<{name}>] retirement in progress",
                    svc.id
                ),
            );
            return Ok(true);
        }
        store
            .update(svc, "retirement_state", AttrValue::str("initializing"))
            .map_err(|e| runtime_error(format!("retire_now: {e}")))?;
        rt.log(Level::Info, "calling request_service_retire");
        let source = super::events::event_stream_of(rt, obj)
            .map_err(|e| runtime_error(format!("retire_now: {e}")))?;
        match super::events::raise_evm_event(
            rt,
            svc,
            "request_service_retire",
            &[],
            source.as_ref(),
        ) {
            Ok(_) => Ok(true),
            Err(automate_engine::EngineError::Budget(_)) => Err(super::evm::budget_up()),
            Err(e) => Err(runtime_error(format!("retire_now: {e}"))),
        }
    })?
}

fn snapshot_failure(called: &str, e: SnapshotError) -> Box<EvalAltResult> {
    runtime_error(format!("{called}: {e}"))
}

/// The snapshot id argument: an integer, digits, or a `Snapshot` object;
/// it must name a live snapshot of `vm`.
fn snapshot_id(vm: &VmdbRef, called: &str, id: &Dynamic) -> RhaiResult<i64> {
    let n = if id.is::<VmdbObject>() {
        Some(id.clone().cast::<VmdbObject>().0.id)
    } else {
        automate_vmdb::associations::as_id(&from_dynamic(id.clone()))
    };
    let Some(n) = n else {
        return Err(runtime_error(format!(
            "{called}: a snapshot id is an integer, not {}",
            id.type_name()
        )));
    };
    with_runtime(|rt, _, _| snapshots::find(rt.engine().store().as_ref(), vm, n))?
        .map(|_| n)
        .map_err(|e| snapshot_failure(called, e))
}

fn create_snapshot(
    vm: &VmdbRef,
    name: Dynamic,
    desc: Dynamic,
    memory: Dynamic,
) -> RhaiResult<bool> {
    vm_only(vm, "create_snapshot")?;
    let name = from_dynamic(name);
    if name.is_blank() {
        return Err(runtime_error("create_snapshot: a snapshot needs a name"));
    }
    let memory = !matches!(
        from_dynamic(memory),
        AttrValue::Nil | AttrValue::Bool(false)
    );
    queue(
        vm,
        "create_snapshot",
        "create_snapshot",
        vec![
            AttrValue::str(name.to_text()),
            from_dynamic(desc),
            AttrValue::Bool(memory),
        ],
    )
}

fn snapshot_op(vm: &VmdbRef, called: &str, id: &Dynamic) -> RhaiResult<bool> {
    vm_only(vm, called)?;
    let id = snapshot_id(vm, called, id)?;
    queue(vm, called, called, vec![AttrValue::Int(id)])
}

/// `snapshot.remove()`, `snapshot.revert_to()`: the operation on its VM.
fn on_snapshot(snap: &VmdbRef, called: &str, op: &str) -> RhaiResult<bool> {
    if base_class(&snap.class) != Some(snapshots::CLASS) {
        return Err(no_method(called, snap));
    }
    let vm = with_runtime(|rt, _, _| {
        rt.engine()
            .store()
            .attribute(snap, "vm_or_template")
            .map_err(|e| runtime_error(format!("{called}: {e}")))
    })??;
    match vm {
        Some(AttrValue::Object(vm)) => snapshot_op(&vm, op, &Dynamic::from(snap.id)),
        _ => Err(runtime_error(format!(
            "{called}: Snapshot [{}] has no VM",
            snap.id
        ))),
    }
}

fn ems_custom_set(vm: &VmdbRef, attr: Dynamic, value: Dynamic) -> RhaiResult<bool> {
    vm_only(vm, "ems_custom_set")?;
    let (attr, value) = (from_dynamic(attr), from_dynamic(value));
    with_runtime(|rt, _, _| {
        let name = rt
            .engine()
            .store()
            .attribute(vm, "name")
            .ok()
            .flatten()
            .map(|v| v.to_text())
            .unwrap_or_default();
        rt.log(
            Level::Info,
            format!(
                "Setting EMS Custom Key on {} id:<{}>, name:<{name}> with key={} to {}",
                vm.class,
                vm.id,
                attr.inspect(),
                value.inspect()
            ),
        );
    })?;
    queue(
        vm,
        "ems_custom_set",
        "set_custom_field",
        vec![AttrValue::str(attr.to_text()), value],
    )
}

fn ems_custom_get(vm: &VmdbRef, key: &str) -> RhaiResult<Dynamic> {
    with_runtime(|rt, _, _| tags::ems_custom_get(rt.engine().store().as_ref(), vm, key))?
        .map(|v| v.map(Dynamic::from).unwrap_or(Dynamic::UNIT))
        .map_err(|e| runtime_error(e.to_string()))
}

fn ems_custom_keys(vm: &VmdbRef) -> RhaiResult<rhai::Array> {
    with_runtime(|rt, _, _| tags::ems_custom_keys(rt.engine().store().as_ref(), vm))?
        .map(|v| v.into_iter().map(Dynamic::from).collect())
        .map_err(|e| runtime_error(e.to_string()))
}

/// `evm.vmdb("service").create(#{name: ..., description: ...})`.
fn create(class: &VmdbClass, options: Map) -> RhaiResult<Dynamic> {
    if base_class(&class.0) != Some(services::SERVICE) {
        return Err(runtime_error(format!(
            "create: undefined method `create' for MiqAeService{} (only services are created by methods)",
            class.0
        )));
    }
    let mut name = String::new();
    let mut description = None;
    let mut extra = Attributes::default();
    for (k, v) in options {
        let v = from_dynamic(v);
        match k.as_str() {
            "name" => name = v.to_text(),
            "description" => description = Some(v.to_text()),
            "service_template" => match v {
                AttrValue::Object(r) => {
                    extra.insert("service_template_id".into(), AttrValue::Int(r.id));
                }
                AttrValue::Nil => {}
                other => {
                    return Err(runtime_error(format!(
                        "create: service_template must be a MiqAeServiceServiceTemplate, not {}",
                        other.inspect()
                    )))
                }
            },
            other => {
                return Err(runtime_error(format!(
                    "create: unknown attribute [{other}] (a service is created with name, description and service_template)"
                )))
            }
        }
    }
    with_runtime(|rt, _, _| {
        services::create(
            rt.engine().store().as_ref(),
            &name,
            description.as_deref(),
            extra,
        )
    })?
    .map(|r| Dynamic::from(VmdbObject(r)))
    .map_err(|e| service_failure("create", e))
}

/// Registers the methods on `VmdbObject` and `VmdbClass`.
pub(crate) fn register(engine: &mut rhai::Engine) {
    engine.register_fn("add_to_service", |o: &mut VmdbObject, s: Dynamic| {
        add_to_service(&o.0, &s)
    });
    engine.register_fn("remove_from_service", |o: &mut VmdbObject| {
        remove_from_service(&o.0)
    });
    engine.register_fn("add_resource", |o: &mut VmdbObject, r: Dynamic| {
        add_resource(&o.0, &r)
    });
    engine.register_fn("remove_resource", |o: &mut VmdbObject, r: Dynamic| {
        remove_resource(&o.0, &r)
    });
    for attr in ["name", "description"] {
        engine.register_set(attr, move |o: &mut VmdbObject, v: Dynamic| {
            set_text(&o.0, attr, v)
        });
    }
    engine.register_fn("create_snapshot", |o: &mut VmdbObject, name: Dynamic| {
        create_snapshot(&o.0, name, Dynamic::UNIT, Dynamic::FALSE)
    });
    engine.register_fn(
        "create_snapshot",
        |o: &mut VmdbObject, name: Dynamic, desc: Dynamic| {
            create_snapshot(&o.0, name, desc, Dynamic::FALSE)
        },
    );
    engine.register_fn(
        "create_snapshot",
        |o: &mut VmdbObject, name: Dynamic, desc: Dynamic, memory: Dynamic| {
            create_snapshot(&o.0, name, desc, memory)
        },
    );
    engine.register_fn("remove_snapshot", |o: &mut VmdbObject, id: Dynamic| {
        snapshot_op(&o.0, "remove_snapshot", &id)
    });
    engine.register_fn("revert_to_snapshot", |o: &mut VmdbObject, id: Dynamic| {
        snapshot_op(&o.0, "revert_to_snapshot", &id)
    });
    engine.register_fn("remove_all_snapshots", |o: &mut VmdbObject| {
        vm_only(&o.0, "remove_all_snapshots")?;
        queue(
            &o.0,
            "remove_all_snapshots",
            "remove_all_snapshots",
            Vec::new(),
        )
    });
    engine.register_fn("remove", |o: &mut VmdbObject| {
        on_snapshot(&o.0, "remove", "remove_snapshot")
    });
    engine.register_fn("revert_to", |o: &mut VmdbObject| {
        on_snapshot(&o.0, "revert_to", "revert_to_snapshot")
    });
    engine.register_fn("is_current", |o: &mut VmdbObject| -> RhaiResult<bool> {
        if base_class(&o.0.class) != Some(snapshots::CLASS) {
            return Err(no_method("current?", &o.0));
        }
        with_runtime(|rt, _, _| rt.engine().store().attribute(&o.0, "current"))?
            .map(|v| matches!(v, Some(AttrValue::Int(1)) | Some(AttrValue::Bool(true))))
            .map_err(|e| runtime_error(e.to_string()))
    });
    engine.register_fn(
        "get_current_snapshot",
        |o: &mut VmdbObject| -> RhaiResult<Dynamic> {
            if base_class(&o.0.class) != Some(snapshots::CLASS) {
                return Err(no_method("get_current_snapshot", &o.0));
            }
            with_runtime(|rt, _, _| {
                let store = rt.engine().store();
                match store.attribute(&o.0, "vm_or_template")? {
                    Some(AttrValue::Object(vm)) => snapshots::current(store.as_ref(), &vm),
                    _ => Ok(None),
                }
            })?
            .map(|s| {
                s.map(|s| Dynamic::from(VmdbObject(s)))
                    .unwrap_or(Dynamic::UNIT)
            })
            .map_err(|e| runtime_error(e.to_string()))
        },
    );
    engine.register_fn(
        "ems_custom_set",
        |o: &mut VmdbObject, attr: Dynamic, value: Dynamic| ems_custom_set(&o.0, attr, value),
    );
    engine.register_fn(
        "ems_custom_get",
        |o: &mut VmdbObject, key: ImmutableString| ems_custom_get(&o.0, &key),
    );
    engine.register_fn("ems_custom_keys", |o: &mut VmdbObject| {
        ems_custom_keys(&o.0)
    });
    engine.register_get("ems_custom_keys", |o: &mut VmdbObject| {
        ems_custom_keys(&o.0)
    });
    engine.register_fn("create", |c: &mut VmdbClass, options: Map| {
        create(c, options)
    });
}
