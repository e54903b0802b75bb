//! The service-model methods of stored objects for tags, custom attributes
//! and request options: `vm.tag_assign`, `tag_unassign`, `tagged_with`
//! (Ruby's `tagged_with?`), `tags`, `custom_get`, `custom_set`,
//! `custom_keys`, and on requests and tasks `get_option`, `set_option`,
//! `options`. The rules (what is stored where, ManageIQ's answers) are in
//! [`automate_vmdb::tags`]; this module is the Rhai side, writing through
//! the running method's store (a unit of work's view in the pipeline, so
//! the writes commit with the event).

use super::evm::{from_dynamic, runtime_error, to_dynamic, with_runtime, VmdbObject};
use super::execute::raised;
use automate_engine::{AttrValue, Level, Runtime};
use automate_vmdb::tags::{self, Outcome, TagError};
use automate_vmdb::{base_class, VmdbRef};
use rhai::{Dynamic, EvalAltResult, ImmutableString, Map};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn failed(rt: &mut Runtime<'_>, e: TagError) -> Box<EvalAltResult> {
    match e {
        TagError::Untaggable(_) => raised(rt, "MiqAeException::UntaggableModel", e.to_string()),
        TagError::NoCustomAttributes { .. } => runtime_error(e.to_string()),
        e => raised(rt, "RuntimeError", e.to_string()),
    }
}

fn strings(v: Vec<String>) -> rhai::Array {
    v.into_iter().map(Dynamic::from).collect()
}

fn tag_list(o: &VmdbRef, category: Option<&str>) -> RhaiResult<rhai::Array> {
    with_runtime(
        |rt, _, _| match tags::tag_list(rt.engine().store().as_ref(), o, category) {
            Ok(v) => Ok(strings(v)),
            Err(e) => Err(failed(rt, e)),
        },
    )?
}

fn custom_keys(o: &VmdbRef) -> RhaiResult<rhai::Array> {
    with_runtime(
        |rt, _, _| match tags::custom_keys(rt.engine().store().as_ref(), o) {
            Ok(v) => Ok(strings(v)),
            Err(e) => Err(failed(rt, e)),
        },
    )?
}

fn assign(o: &VmdbRef, tag: &str, unassign: bool) -> RhaiResult<bool> {
    with_runtime(|rt, _, _| {
        let store = rt.engine().store().as_ref();
        let done = if unassign {
            tags::unassign(store, o, tag)
        } else {
            tags::assign(store, o, tag)
        };
        match done {
            Ok(Outcome::NoCategory(c)) => {
                rt.log(
                    Level::Warn,
                    format!(
                        "tag_assign: Tag category '{c}' not found, {} [{}] not tagged with [{tag}]",
                        o.class, o.id
                    ),
                );
                Ok(true)
            }
            Ok(Outcome::NoEntry(c, e)) => {
                rt.log(
                    Level::Warn,
                    format!("tag_assign: Tag name '{e}' not found in category '{c}', {} [{}] not tagged with [{tag}]", o.class, o.id),
                );
                Ok(true)
            }
            Ok(_) => Ok(true),
            Err(e) => Err(failed(rt, e)),
        }
    })?
}

/// The request or task `o`, or ManageIQ's NoMethodError for `method`.
fn check_request(o: &VmdbRef, method: &str) -> RhaiResult<()> {
    match base_class(&o.class) {
        Some("MiqRequest" | "MiqRequestTask") => Ok(()),
        _ => Err(runtime_error(format!(
            "undefined method `{method}' for {} [{}]: only requests and their tasks have options",
            o.class, o.id
        ))),
    }
}

fn key_text(k: &AttrValue) -> String {
    k.to_text().trim_start_matches(':').to_string()
}

/// The request's `options` hash as stored (an empty one when unset).
fn stored_options(rt: &Runtime<'_>, o: &VmdbRef) -> RhaiResult<Vec<(AttrValue, AttrValue)>> {
    match rt.engine().store().attribute(o, "options") {
        Ok(Some(AttrValue::Hash(pairs))) => Ok(pairs),
        Ok(_) => Ok(Vec::new()),
        Err(e) => Err(runtime_error(e.to_string())),
    }
}

fn get_option(o: &VmdbRef, key: &str) -> RhaiResult<Dynamic> {
    check_request(o, "get_option")?;
    let key = key.trim_start_matches(':');
    with_runtime(|rt, _, _| {
        let pairs = stored_options(rt, o)?;
        // MiqRequestMixin.get_option: an array answers its first element.
        Ok(match pairs.iter().find(|(k, _)| key_text(k) == key) {
            Some((_, AttrValue::Array(items))) => items.first().map_or(Dynamic::UNIT, to_dynamic),
            Some((_, v)) => to_dynamic(v),
            None => Dynamic::UNIT,
        })
    })?
}

fn set_option(o: &VmdbRef, key: &str, value: Dynamic) -> RhaiResult<Dynamic> {
    check_request(o, "set_option")?;
    let key = key.trim_start_matches(':').to_string();
    let v = from_dynamic(value.clone());
    with_runtime(|rt, _, _| {
        let mut pairs = stored_options(rt, o)?;
        match pairs.iter_mut().find(|(k, _)| key_text(k) == key) {
            Some(slot) => slot.1 = v,
            None => pairs.push((AttrValue::Str(key), v)),
        }
        rt.engine()
            .store()
            .update(o, "options", AttrValue::Hash(pairs))
            .map_err(|e| runtime_error(e.to_string()))
    })??;
    Ok(value)
}

fn options(o: &VmdbRef) -> RhaiResult<Map> {
    check_request(o, "options")?;
    with_runtime(|rt, _, _| {
        Ok(stored_options(rt, o)?
            .iter()
            .map(|(k, v)| (key_text(k).into(), to_dynamic(v)))
            .collect())
    })?
}

/// The setter of a computed property (`tags`, `custom_keys`, `options`).
/// Rhai writes a property back after calling a method on its value
/// (`vm.tags.len()`); without a setter that write-back would reach the
/// indexer and store the computed value as an attribute. An unchanged
/// value is that write-back, and nothing; any other is an assignment,
/// which ManageIQ does not have either.
fn read_only(name: &str, unchanged: bool, instead: &str) -> RhaiResult<()> {
    if unchanged {
        Ok(())
    } else {
        Err(runtime_error(format!(
            "undefined method `{name}=': {name} cannot be assigned; use {instead}"
        )))
    }
}

fn same(a: &Dynamic, b: &Dynamic) -> bool {
    a.to_string() == b.to_string()
}

/// Registers the methods on `VmdbObject`.
pub(crate) fn register(engine: &mut rhai::Engine) {
    engine.register_set(
        "tags",
        |o: &mut VmdbObject, v: rhai::Array| -> RhaiResult<()> {
            let now = Dynamic::from_array(tag_list(&o.0, None)?);
            read_only(
                "tags",
                same(&now, &Dynamic::from_array(v)),
                "tag_assign and tag_unassign",
            )
        },
    );
    engine.register_set(
        "custom_keys",
        |o: &mut VmdbObject, v: rhai::Array| -> RhaiResult<()> {
            let now = Dynamic::from_array(custom_keys(&o.0)?);
            read_only(
                "custom_keys",
                same(&now, &Dynamic::from_array(v)),
                "custom_set",
            )
        },
    );
    engine.register_set("options", |o: &mut VmdbObject, v: Map| -> RhaiResult<()> {
        let now = Dynamic::from_map(options(&o.0)?);
        read_only("options", same(&now, &Dynamic::from_map(v)), "set_option")
    });
    engine.register_fn("tag_assign", |o: &mut VmdbObject, tag: ImmutableString| {
        assign(&o.0, &tag, false)
    });
    engine.register_fn(
        "tag_unassign",
        |o: &mut VmdbObject, tag: ImmutableString| assign(&o.0, &tag, true),
    );
    engine.register_fn(
        "tagged_with",
        |o: &mut VmdbObject, cat: ImmutableString, entry: ImmutableString| -> RhaiResult<bool> {
            with_runtime(|rt, _, _| {
                match tags::tagged_with(rt.engine().store().as_ref(), &o.0, &cat, &entry) {
                    Ok(b) => Ok(b),
                    Err(e) => Err(failed(rt, e)),
                }
            })?
        },
    );
    engine.register_get("tags", |o: &mut VmdbObject| tag_list(&o.0, None));
    engine.register_fn("tags", |o: &mut VmdbObject| tag_list(&o.0, None));
    engine.register_fn("tags", |o: &mut VmdbObject, cat: ImmutableString| {
        tag_list(&o.0, Some(&cat))
    });
    engine.register_fn("tags", |o: &mut VmdbObject, cat: Dynamic| {
        if cat.is_unit() {
            tag_list(&o.0, None)
        } else {
            tag_list(&o.0, Some(&cat.to_string()))
        }
    });

    engine.register_get("custom_keys", |o: &mut VmdbObject| custom_keys(&o.0));
    engine.register_fn("custom_keys", |o: &mut VmdbObject| custom_keys(&o.0));
    engine.register_fn(
        "custom_get",
        |o: &mut VmdbObject, key: ImmutableString| -> RhaiResult<Dynamic> {
            with_runtime(|rt, _, _| {
                match tags::custom_get(rt.engine().store().as_ref(), &o.0, &key) {
                    Ok(v) => Ok(v.map_or(Dynamic::UNIT, Dynamic::from)),
                    Err(e) => Err(failed(rt, e)),
                }
            })?
        },
    );
    engine.register_fn(
        "custom_set",
        |o: &mut VmdbObject, key: ImmutableString, value: Dynamic| -> RhaiResult<Dynamic> {
            let v = from_dynamic(value.clone());
            with_runtime(|rt, _, _| {
                let shown = v.inspect();
                match tags::custom_set(rt.engine().store().as_ref(), &o.0, &key, &v) {
                    Ok(()) => {
                        rt.log(
                            Level::Info,
                            format!("MIQ(MiqAeService{}#custom_set) Setting EVM Custom Key on {} id:<{}> with key={:?} to {shown}", o.0.class, o.0.class, o.0.id, key.as_str()),
                        );
                        Ok(value)
                    }
                    Err(e) => Err(failed(rt, e)),
                }
            })?
        },
    );

    engine.register_fn("get_option", |o: &mut VmdbObject, key: ImmutableString| {
        get_option(&o.0, &key)
    });
    engine.register_fn(
        "set_option",
        |o: &mut VmdbObject, key: ImmutableString, value: Dynamic| set_option(&o.0, &key, value),
    );
    engine.register_get("options", |o: &mut VmdbObject| options(&o.0));
    engine.register_fn("options", |o: &mut VmdbObject| options(&o.0));
}
