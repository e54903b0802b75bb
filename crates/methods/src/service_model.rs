//! The service model in Rhai: what a method reads of a stored object
//! (`vm.name`, `vm.host.name`, `vm.normalized_name`, `vm.attributes`,
//! `event.src_vm`, `ems.vms`, ...; ManageIQ's `NoMethodError` for a name
//! the class does not have) and ActiveRecord-style queries
//! (`evm.vmdb("vm").where(#{name: "x", power_state: "on"}).order("name")
//! .limit(5)`, `.all()`, `.count()`, `.first()`).
//!
//! The reading rules are [`automate_vmdb::service_model`]'s (the same in
//! `${...}` substitution chains); queries are answered by the store's
//! [`ObjectStore::query`](automate_vmdb::ObjectStore::query), which every
//! backend plans for itself.
//!
//! A query ([`VmdbQuery`], ActiveRecord's relation) runs when it is read:
//! iterated (`for vm in q`), indexed (`q[0]`), counted (`q.count()`,
//! `q.len()`), or turned into an array (`q.to_a()`). Chaining (`where`,
//! `order`, `limit`, `offset`) only adds to it.

use super::evm::{from_dynamic, runtime_error, to_dynamic, with_runtime, VmdbClass, VmdbObject};
use automate_core::value::AttrValue;
use automate_vmdb::query::{Order, Query};
use automate_vmdb::service_model::{self, ReadError};
use rhai::{Dynamic, EvalAltResult, ImmutableString, Map};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// An ActiveRecord relation over one service-model class: see the module
/// docs.
#[derive(Debug, Clone)]
pub struct VmdbQuery(pub Query);

impl IntoIterator for VmdbQuery {
    type Item = RhaiResult<Dynamic>;
    type IntoIter = std::vec::IntoIter<RhaiResult<Dynamic>>;

    fn into_iter(self) -> Self::IntoIter {
        match run(&self.0) {
            Ok(found) => found.into_iter().map(Ok).collect::<Vec<_>>().into_iter(),
            Err(e) => vec![Err(e)].into_iter(),
        }
    }
}

/// Attribute or method `name` of `obj` as a Rhai value
/// ([`service_model::read`]); a [`service_model::NoMethod`] or a failed
/// read is the method's error.
pub fn read(obj: &VmdbObject, name: &str) -> RhaiResult<Dynamic> {
    with_runtime(|rt, _, _| service_model::read(rt.engine().store().as_ref(), &obj.0, name))?
        .map(|v| to_dynamic(&v))
        .map_err(|e: ReadError| runtime_error(e.to_string()))
}

/// The text of Rhai's "function not found" for a call on a stored object
/// (`vm.bogus()`, `vm.stop(1, 2)`), ManageIQ's `NoMethodError` form:
/// ``undefined method `bogus' for #<MiqAeMethodService::MiqAeServiceModelBase> (arguments: i64)``.
/// `None` when the call's receiver is not a stored object.
pub fn no_method_text(signature: &str) -> Option<String> {
    let (name, args) = signature.split_once(" (")?;
    let args = args.strip_suffix(')')?;
    let mut types = args.split(',').map(str::trim);
    let receiver = types.next()?;
    if !receiver.ends_with("VmdbObject") {
        return None;
    }
    let rest: Vec<&str> = types.collect();
    let detail = if rest.is_empty() {
        "no arguments".to_string()
    } else {
        format!("arguments: {}", rest.join(", "))
    };
    Some(format!(
        "undefined method `{name}' for #<MiqAeMethodService::MiqAeServiceModelBase> (a stored object; {detail})"
    ))
}

fn run(q: &Query) -> RhaiResult<Vec<Dynamic>> {
    with_runtime(|rt, _, _| rt.engine().store().query(q))?
        .map(|found| {
            found
                .into_iter()
                .map(|r| Dynamic::from(VmdbObject(r)))
                .collect()
        })
        .map_err(|e| runtime_error(e.to_string()))
}

/// A query as an attribute value: the array of its objects (nil, with
/// a warning, when the store cannot answer).
pub fn query_value(q: &VmdbQuery) -> AttrValue {
    with_runtime(|rt, _, _| match rt.engine().store().query(&q.0) {
        Ok(found) => AttrValue::Array(found.into_iter().map(AttrValue::Object).collect()),
        Err(e) => {
            rt.log(
                automate_engine::Level::Warn,
                format!("the query on {} could not be read: {e}", q.0.class),
            );
            AttrValue::Nil
        }
    })
    .unwrap_or(AttrValue::Nil)
}

fn count(q: &Query) -> RhaiResult<i64> {
    with_runtime(|rt, _, _| rt.engine().store().count(q))?
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
        .map_err(|e| runtime_error(e.to_string()))
}

/// `q` with the conditions of a Rhai map (`#{name: "x", host_id: 7}`; an
/// array value is any of its elements).
fn with_map(mut q: Query, conditions: Map) -> Query {
    for (k, v) in conditions {
        q = q.filter(k.as_str(), from_dynamic(v));
    }
    q
}

fn with_limit(mut q: Query, n: i64) -> RhaiResult<Query> {
    q.limit = Some(
        usize::try_from(n)
            .map_err(|_| runtime_error(format!("limit must be zero or more, not {n}")))?,
    );
    Ok(q)
}

fn with_offset(mut q: Query, n: i64) -> RhaiResult<Query> {
    q.offset = usize::try_from(n)
        .map_err(|_| runtime_error(format!("offset must be zero or more, not {n}")))?;
    Ok(q)
}

/// `order("name")`, `order("name desc")`, `order("host_id, name desc")`.
fn with_order(mut q: Query, keys: &str) -> Query {
    for key in keys.split(',').filter(|k| !k.trim().is_empty()) {
        q.order.push(Order::parse(key));
    }
    q
}

fn first(mut q: Query) -> RhaiResult<Dynamic> {
    if q.limit.is_none() {
        q.limit = Some(1);
    }
    Ok(run(&q)?.into_iter().next().unwrap_or(Dynamic::UNIT))
}

fn last(q: Query) -> RhaiResult<Dynamic> {
    Ok(run(&q)?.pop().unwrap_or(Dynamic::UNIT))
}

fn index(q: &Query, i: i64) -> RhaiResult<Dynamic> {
    let found = run(q)?;
    let at = if i < 0 {
        usize::try_from(-i)
            .ok()
            .and_then(|back| found.len().checked_sub(back))
    } else {
        usize::try_from(i).ok()
    };
    Ok(at
        .and_then(|at| found.get(at).cloned())
        .unwrap_or(Dynamic::UNIT))
}

fn class_query(c: &VmdbClass) -> Query {
    Query::new(&c.0)
}

/// Registers the query type and the object reads.
pub(crate) fn register(engine: &mut rhai::Engine) {
    engine.register_type_with_name::<VmdbQuery>("VmdbQuery");
    engine.register_iterator_result::<VmdbQuery, Dynamic>();

    // --- evm.vmdb("vm") ...: the class starts a query.
    engine.register_fn("all", |c: &mut VmdbClass| VmdbQuery(class_query(c)));
    engine.register_fn("where", |c: &mut VmdbClass, m: Map| {
        VmdbQuery(with_map(class_query(c), m))
    });
    engine.register_fn(
        "where",
        |c: &mut VmdbClass, attr: ImmutableString, value: Dynamic| {
            VmdbQuery(class_query(c).filter(&attr, from_dynamic(value)))
        },
    );
    engine.register_fn("order", |c: &mut VmdbClass, keys: ImmutableString| {
        VmdbQuery(with_order(class_query(c), &keys))
    });
    engine.register_fn("limit", |c: &mut VmdbClass, n: i64| {
        with_limit(class_query(c), n).map(VmdbQuery)
    });
    engine.register_fn("count", |c: &mut VmdbClass| count(&class_query(c)));
    engine.register_fn("first", |c: &mut VmdbClass| first(class_query(c)));
    engine.register_fn("last", |c: &mut VmdbClass| last(class_query(c)));
    engine.register_fn("find_by", |c: &mut VmdbClass, m: Map| {
        first(with_map(class_query(c), m))
    });

    // --- the relation.
    engine.register_fn("all", |q: &mut VmdbQuery| q.clone());
    engine.register_fn("where", |q: &mut VmdbQuery, m: Map| {
        VmdbQuery(with_map(q.0.clone(), m))
    });
    engine.register_fn(
        "where",
        |q: &mut VmdbQuery, attr: ImmutableString, value: Dynamic| {
            VmdbQuery(q.0.clone().filter(&attr, from_dynamic(value)))
        },
    );
    engine.register_fn("order", |q: &mut VmdbQuery, keys: ImmutableString| {
        VmdbQuery(with_order(q.0.clone(), &keys))
    });
    engine.register_fn("limit", |q: &mut VmdbQuery, n: i64| {
        with_limit(q.0.clone(), n).map(VmdbQuery)
    });
    engine.register_fn("offset", |q: &mut VmdbQuery, n: i64| {
        with_offset(q.0.clone(), n).map(VmdbQuery)
    });
    for name in ["count", "len", "size", "length"] {
        engine.register_fn(name, |q: &mut VmdbQuery| count(&q.0));
    }
    for name in ["size", "length"] {
        engine.register_get(name, |q: &mut VmdbQuery| count(&q.0));
    }
    engine.register_fn("is_empty", |q: &mut VmdbQuery| {
        Ok::<_, Box<EvalAltResult>>(count(&q.0)? == 0)
    });
    engine.register_fn("first", |q: &mut VmdbQuery| first(q.0.clone()));
    engine.register_fn("last", |q: &mut VmdbQuery| last(q.0.clone()));
    engine.register_fn("find_by", |q: &mut VmdbQuery, m: Map| {
        first(with_map(q.0.clone(), m))
    });
    for name in ["to_a", "to_array"] {
        engine.register_fn(name, |q: &mut VmdbQuery| run(&q.0));
    }
    engine.register_indexer_get(|q: &mut VmdbQuery, i: i64| index(&q.0, i));
    engine.register_fn("to_string", |q: &mut VmdbQuery| format!("{:?}", q.0));
    engine.register_fn("to_debug", |q: &mut VmdbQuery| format!("{:?}", q.0));

    // --- objects: reads by the service model's rules.
    engine.register_indexer_get(|o: &mut VmdbObject, key: ImmutableString| read(o, &key));
    engine.register_fn("respond_to", |o: &mut VmdbObject, name: ImmutableString| {
        with_runtime(|rt, _, _| {
            service_model::responds_to(rt.engine().store().as_ref(), &o.0, &name)
        })?
        .map_err(|e| runtime_error(e.to_string()))
    });
    engine.register_fn("reload", |o: &mut VmdbObject| o.clone());
    engine.register_get("attributes", |o: &mut VmdbObject| read(o, "attributes"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_method_text_names_the_method_for_stored_objects_only() {
        assert_eq!(
            no_method_text("bogus (VmdbObject)").as_deref(),
            Some("undefined method `bogus' for #<MiqAeMethodService::MiqAeServiceModelBase> (a stored object; no arguments)")
        );
        assert!(
            no_method_text("stop (automate_methods::evm::VmdbObject, i64, string)")
                .is_some_and(|t| t.contains("arguments: i64, string"))
        );
        assert_eq!(no_method_text("foo (i64)"), None);
        assert_eq!(no_method_text("nonsense"), None);
    }

    #[test]
    fn values_become_conditions() {
        let mut m = Map::new();
        m.insert("name".into(), Dynamic::from("x"));
        m.insert("host_id".into(), Dynamic::from(7_i64));
        let q = with_map(Query::new("vm"), m);
        assert_eq!(q.conditions.len(), 2);
        let q = with_order(q, "name desc, id");
        assert_eq!(q.order.len(), 2);
        assert!(q.order[0].descending);
        assert!(with_limit(Query::new("vm"), -1).is_err());
        assert_eq!(
            q.conditions
                .iter()
                .find(|c| c.attr == "host_id")
                .map(|c| c.values.clone()),
            Some(vec![AttrValue::Int(7), AttrValue::str("7")])
        );
    }
}
