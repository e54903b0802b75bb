//! VM operations on a stored VM (`vm.stop()`, `vm.start()`,
//! `vm.migrate(host)` ...): ManageIQ's `MiqAeServiceVmOrTemplate` methods
//! that call `sync_or_async_ems_operation`, each of which puts a provider
//! operation ([`automate_vmdb::operation`], a `MiqQueue` message of the
//! `ems_operations` role) in the store the method runs on. In the pipeline
//! that store is the event's unit of work, so the operation is committed
//! with the event; the node running the provider's catcher then performs
//! it (the `simulate` provider by emitting the provider's own events,
//! which come back through the switchboard).
//!
//! | Rhai | ManageIQ | queued method |
//! |---|---|---|
//! | `vm.start()` `stop()` `suspend()` `shutdown_guest()` `reboot_guest()` `standby_guest()` `reset()` `unregister()` | the same | the same |
//! | `vm.migrate(host)` / `migrate(host, pool, priority, state)` | `migrate` | `migrate_via_ids` `[host_id, pool_id, priority, state]` |
//! | `vm.remove_from_disk()` / `remove_from_disk(sync)` | `remove_from_disk` | `vm_destroy` (always queued) |
//! | `vm.refresh()` | `refresh` (`refresh_ems`) | `refresh_ems` |
//! | `vm.scan()` / `scan(categories)` | `scan` | `scan` |
//! | `vm.retire_now()` | `retire_now` | `retire_now` |
//!
//! Each returns `true`, as ManageIQ's do. On an object that is not a VM
//! they are ManageIQ's `NoMethodError`; a VM without a provider
//! (`ems_id`) cannot be operated on and is an error naming it.

use super::evm::{runtime_error, with_runtime, VmdbObject};
use automate_engine::AttrValue;
use automate_vmdb::operation::{self, NewOperation};
use automate_vmdb::{base_class, VmdbRef};
use rhai::{Dynamic, EvalAltResult, ImmutableString};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// The operations taking no argument, queued under their own name
/// (`MiqAeServiceVmOrTemplate::METHODS_WITH_NO_ARGS`, and `reset`).
pub const NO_ARG_OPERATIONS: [&str; 9] = [
    "start",
    "stop",
    "suspend",
    "unregister",
    "shutdown_guest",
    "standby_guest",
    "reboot_guest",
    "reset",
    "retire_now",
];

/// ManageIQ's `NoMethodError` text for `method` on `obj`.
pub(crate) fn no_method(method: &str, obj: &VmdbRef) -> Box<EvalAltResult> {
    runtime_error(format!(
        "undefined method `{method}' for #<MiqAeService{} id: {}>",
        obj.class, obj.id
    ))
}

/// Puts `method_name(args)` for the VM `vm` on its provider's queue.
pub(crate) fn queue(
    vm: &VmdbRef,
    called: &str,
    method_name: &str,
    args: Vec<AttrValue>,
) -> RhaiResult<bool> {
    if base_class(&vm.class) != Some("VmOrTemplate") {
        return Err(no_method(called, vm));
    }
    with_runtime(|rt, _, _| {
        let store = rt.engine().store().clone();
        let ems_id = match store.attribute(vm, "ems_id") {
            Ok(Some(AttrValue::Int(i))) => i,
            Ok(Some(AttrValue::Str(s))) if s.trim().parse::<i64>().is_ok() => {
                s.trim().parse().unwrap_or_default()
            }
            Ok(_) => {
                return Err(runtime_error(format!(
                    "{called}: {} [{}] has no provider (ems_id): the operation cannot be sent",
                    vm.class, vm.id
                )))
            }
            Err(e) => return Err(runtime_error(format!("{called}: {e}"))),
        };
        operation::put(
            store.as_ref(),
            NewOperation {
                class_name: vm.class.to_string(),
                instance_id: vm.id,
                ems_id,
                method_name: method_name.to_string(),
                args,
            },
        )
        .map(|_| true)
        .map_err(|e| runtime_error(format!("{called}: {e}")))
    })?
}

fn object_arg(called: &str, what: &str, base: &str, d: &Dynamic) -> RhaiResult<Option<i64>> {
    if d.is_unit() {
        return Ok(None);
    }
    if d.is::<VmdbObject>() {
        let r = d.clone().cast::<VmdbObject>().0;
        if base_class(&r.class) == Some(base) {
            return Ok(Some(r.id));
        }
        return Err(runtime_error(format!(
            "{called}: {what} Class must be MiqAeService{base}, but is <MiqAeService{}>",
            r.class
        )));
    }
    Err(runtime_error(format!(
        "{called}: {what} Class must be MiqAeService{base}, but is <{}>",
        d.type_name()
    )))
}

fn migrate(
    vm: &VmdbRef,
    host: &Dynamic,
    pool: &Dynamic,
    priority: &str,
    state: Dynamic,
) -> RhaiResult<bool> {
    let host_id = object_arg("migrate", "Host", "Host", host)?.ok_or_else(|| {
        runtime_error("migrate: Host Class must be MiqAeServiceHost, but is <()>")
    })?;
    // No resource pools in the store: a pool, if given, must be nil.
    if !pool.is_unit() {
        return Err(runtime_error(format!(
            "migrate: Pool Class must be MiqAeServiceResourcePool, but is <{}> (automate stores no resource pools: pass ())",
            pool.type_name()
        )));
    }
    let state = super::evm::from_dynamic(state);
    queue(
        vm,
        "migrate",
        "migrate_via_ids",
        vec![
            AttrValue::Int(host_id),
            AttrValue::Nil,
            AttrValue::str(priority),
            state,
        ],
    )
}

/// Registers the operations on `VmdbObject`.
pub(crate) fn register(engine: &mut rhai::Engine) {
    for name in NO_ARG_OPERATIONS {
        engine.register_fn(name, move |o: &mut VmdbObject| -> RhaiResult<bool> {
            // A service's retirement is a request event, not an operation.
            if name == "retire_now" && automate_vmdb::services::is_service(&o.0) {
                return super::services::service_retire_now(&o.0);
            }
            queue(&o.0, name, name, Vec::new())
        });
    }
    engine.register_fn("refresh", |o: &mut VmdbObject| -> RhaiResult<bool> {
        queue(&o.0, "refresh", "refresh_ems", Vec::new())
    });
    engine.register_fn("scan", |o: &mut VmdbObject| -> RhaiResult<bool> {
        queue(&o.0, "scan", "scan", Vec::new())
    });
    engine.register_fn(
        "scan",
        |o: &mut VmdbObject, categories: Dynamic| -> RhaiResult<bool> {
            let cats = super::evm::from_dynamic(categories);
            queue(&o.0, "scan", "scan", vec![cats])
        },
    );
    engine.register_fn(
        "remove_from_disk",
        |o: &mut VmdbObject| -> RhaiResult<bool> {
            queue(&o.0, "remove_from_disk", "vm_destroy", Vec::new())
        },
    );
    engine.register_fn(
        "remove_from_disk",
        |o: &mut VmdbObject, _sync: bool| -> RhaiResult<bool> {
            queue(&o.0, "remove_from_disk", "vm_destroy", Vec::new())
        },
    );
    engine.register_fn(
        "migrate",
        |o: &mut VmdbObject, host: Dynamic| -> RhaiResult<bool> {
            migrate(
                &o.0,
                &host,
                &Dynamic::UNIT,
                "defaultPriority",
                Dynamic::UNIT,
            )
        },
    );
    engine.register_fn(
        "migrate",
        |o: &mut VmdbObject, host: Dynamic, pool: Dynamic| -> RhaiResult<bool> {
            migrate(&o.0, &host, &pool, "defaultPriority", Dynamic::UNIT)
        },
    );
    engine.register_fn(
        "migrate",
        |o: &mut VmdbObject,
         host: Dynamic,
         pool: Dynamic,
         priority: ImmutableString|
         -> RhaiResult<bool> { migrate(&o.0, &host, &pool, &priority, Dynamic::UNIT) },
    );
    engine.register_fn(
        "migrate",
        |o: &mut VmdbObject,
         host: Dynamic,
         pool: Dynamic,
         priority: ImmutableString,
         state: Dynamic|
         -> RhaiResult<bool> { migrate(&o.0, &host, &pool, &priority, state) },
    );
}
