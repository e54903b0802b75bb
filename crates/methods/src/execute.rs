//! `evm.execute(name, args...)`: ManageIQ's `$evm.execute`, which calls
//! one of the `MiqAeServiceMethods` class methods by name.
//!
//! [`EXECUTE_METHODS`] is the table of the names automate has, each with
//! how many arguments it takes and the native that runs it; add a method
//! by adding a row (and a line to docs/porting-ruby-methods.md). A name
//! ManageIQ has but automate does not yet, or a name ManageIQ does not
//! have, fails the method with an error listing ManageIQ's names.
//!
//! As ManageIQ's `ar_method` does, a failure is logged
//! (`MiqAeServiceMethods.ar_method raised: <class>: <message>`) and raised
//! in the method, except for `category_delete` and `tag_delete`, which
//! answer `false` (their `!` forms raise).

use super::evm::{from_dynamic, runtime_error};
use automate_engine::{AttrValue, Level, Runtime};
use automate_vmdb::tags::{self, TagError};
use rhai::{Dynamic, EvalAltResult, Map};

/// What an execute method answers: a Rhai value, or an error raised in
/// the method.
pub type ExecuteResult = Result<Dynamic, Box<EvalAltResult>>;

/// A native behind one name: the running method's runtime and the
/// arguments after the name.
pub type ExecuteFn = fn(&mut Runtime<'_>, &[Dynamic]) -> ExecuteResult;

/// One row of [`EXECUTE_METHODS`].
#[derive(Debug, Clone, Copy)]
pub struct ExecuteMethod {
    /// The name as ManageIQ spells it (`category_exists?`).
    pub name: &'static str,
    /// The fewest arguments it takes.
    pub min_args: usize,
    /// The most arguments it takes.
    pub max_args: usize,
    /// The native.
    pub run: ExecuteFn,
}

/// The most arguments `evm.execute` passes on (Rhai has no variadic
/// functions: `execute` is registered for 0 to this many).
pub const MAX_ARGS: usize = 8;

/// `MiqAeServiceMethods`' class methods, every name `$evm.execute` takes in
/// ManageIQ.
pub const MANAGEIQ_METHODS: &[&str] = &[
    "send_email",
    "snmp_trap_v1",
    "snmp_trap_v2",
    "vm_templates",
    "category_exists?",
    "category_create",
    "category_delete!",
    "category_delete",
    "tag_exists?",
    "tag_create",
    "tag_delete!",
    "tag_delete",
    "create_provision_request",
    "create_automation_request",
    "create_service_provision_request",
    "create_retire_request",
];

/// The execute methods automate has.
pub const EXECUTE_METHODS: &[ExecuteMethod] = &[
    ExecuteMethod {
        name: "category_exists?",
        min_args: 1,
        max_args: 1,
        run: category_exists,
    },
    ExecuteMethod {
        name: "category_create",
        min_args: 0,
        max_args: 1,
        run: category_create,
    },
    ExecuteMethod {
        name: "category_delete!",
        min_args: 1,
        max_args: 1,
        run: category_delete_bang,
    },
    ExecuteMethod {
        name: "category_delete",
        min_args: 1,
        max_args: 1,
        run: category_delete,
    },
    ExecuteMethod {
        name: "tag_exists?",
        min_args: 2,
        max_args: 2,
        run: tag_exists,
    },
    ExecuteMethod {
        name: "tag_create",
        min_args: 1,
        max_args: 2,
        run: tag_create,
    },
    ExecuteMethod {
        name: "tag_delete!",
        min_args: 2,
        max_args: 2,
        run: tag_delete_bang,
    },
    ExecuteMethod {
        name: "tag_delete",
        min_args: 2,
        max_args: 2,
        run: tag_delete,
    },
];

/// The row for `name` (exact, as ManageIQ's `send` is; a leading `:` of a
/// Ruby symbol is dropped).
pub fn lookup(name: &str) -> Option<&'static ExecuteMethod> {
    let name = name.trim().trim_start_matches(':');
    EXECUTE_METHODS.iter().find(|m| m.name == name)
}

/// The error for a name automate cannot run.
pub fn unknown(name: &str) -> String {
    let ours: Vec<&str> = EXECUTE_METHODS
        .iter()
        .map(|m| m.name)
        .chain(super::outbound::EXECUTE_NAMES.iter().copied())
        .collect();
    if MANAGEIQ_METHODS.contains(&name.trim()) {
        format!(
            "execute method [{name}] is not available in automate yet; available: {} (see docs/porting-ruby-methods.md)",
            ours.join(", ")
        )
    } else {
        format!(
            "MiqAeException::MethodNotFound: undefined method `{name}' for MiqAeServiceMethods (unknown execute method [{name}]: ManageIQ's $evm.execute takes {}; automate has {})",
            MANAGEIQ_METHODS.join(", "),
            ours.join(", ")
        )
    }
}

/// Runs `evm.execute(name, args...)` on the running method's runtime.
pub fn dispatch(rt: &mut Runtime<'_>, name: &str, args: &[Dynamic]) -> ExecuteResult {
    let Some(m) = lookup(name) else {
        return Err(runtime_error(unknown(name)));
    };
    if args.len() < m.min_args || args.len() > m.max_args {
        let want = if m.min_args == m.max_args {
            m.min_args.to_string()
        } else {
            format!("{}..{}", m.min_args, m.max_args)
        };
        return Err(runtime_error(format!(
            "execute method [{}]: wrong number of arguments (given {}, expected {want})",
            m.name,
            args.len()
        )));
    }
    (m.run)(rt, args)
}

/// Registers `evm.execute` for 0 to [`MAX_ARGS`] arguments after the name.
pub(crate) fn register(engine: &mut rhai::Engine) {
    use super::evm::{with_runtime, Evm};
    use rhai::ImmutableString;
    fn run(name: &str, args: &[Dynamic]) -> ExecuteResult {
        // The outbound arms (`send_email`, `create_automation_request`)
        // reach the runtime themselves.
        if let Some(answer) = super::outbound::execute(name, args) {
            return answer;
        }
        with_runtime(|rt, _, _| dispatch(rt, name, args))?
    }
    engine.register_fn("execute", |_: &mut Evm, n: ImmutableString| run(&n, &[]));
    engine.register_fn("execute", |_: &mut Evm, n: ImmutableString, a: Dynamic| {
        run(&n, &[a])
    });
    engine.register_fn(
        "execute",
        |_: &mut Evm, n: ImmutableString, a: Dynamic, b: Dynamic| run(&n, &[a, b]),
    );
    engine.register_fn(
        "execute",
        |_: &mut Evm, n: ImmutableString, a: Dynamic, b: Dynamic, c: Dynamic| run(&n, &[a, b, c]),
    );
    engine.register_fn(
        "execute",
        |_: &mut Evm, n: ImmutableString, a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| {
            run(&n, &[a, b, c, d])
        },
    );
    engine.register_fn(
        "execute",
        |_: &mut Evm,
         n: ImmutableString,
         a: Dynamic,
         b: Dynamic,
         c: Dynamic,
         d: Dynamic,
         e: Dynamic| run(&n, &[a, b, c, d, e]),
    );
    engine.register_fn(
        "execute",
        |_: &mut Evm,
         n: ImmutableString,
         a: Dynamic,
         b: Dynamic,
         c: Dynamic,
         d: Dynamic,
         e: Dynamic,
         f: Dynamic| run(&n, &[a, b, c, d, e, f]),
    );
    // `create_provision_request` takes eight: version, template fields,
    // VM fields, requester, tags, values, EMS and EVM custom attributes.
    engine.register_fn(
        "execute",
        |_: &mut Evm,
         n: ImmutableString,
         a: Dynamic,
         b: Dynamic,
         c: Dynamic,
         d: Dynamic,
         e: Dynamic,
         f: Dynamic,
         g: Dynamic| run(&n, &[a, b, c, d, e, f, g]),
    );
    engine.register_fn(
        "execute",
        |_: &mut Evm,
         n: ImmutableString,
         a: Dynamic,
         b: Dynamic,
         c: Dynamic,
         d: Dynamic,
         e: Dynamic,
         f: Dynamic,
         g: Dynamic,
         h: Dynamic| run(&n, &[a, b, c, d, e, f, g, h]),
    );
}

// ------------------------------------------------------------ helpers

/// Argument `i` as text (a string, a symbol-like `:name`, or any value's
/// text).
pub fn text_arg(args: &[Dynamic], i: usize) -> String {
    match args.get(i) {
        Some(d) if d.is_string() => d.clone().into_string().unwrap_or_default(),
        Some(d) => from_dynamic(d.clone()).to_text(),
        None => String::new(),
    }
}

/// Argument `i` as an options hash (a Rhai map; `()` or absent is empty).
pub fn options_arg(
    method: &str,
    args: &[Dynamic],
    i: usize,
) -> Result<Vec<(String, AttrValue)>, Box<EvalAltResult>> {
    match args.get(i) {
        None => Ok(Vec::new()),
        Some(d) if d.is_unit() => Ok(Vec::new()),
        Some(d) if d.is_map() => Ok(d
            .clone()
            .cast::<Map>()
            .into_iter()
            .map(|(k, v)| (k.to_string(), from_dynamic(v)))
            .collect()),
        Some(d) => Err(runtime_error(format!(
            "execute method [{method}]: argument {} must be a map of options (#{{name: ...}}), not {}",
            i + 1,
            d.type_name()
        ))),
    }
}

/// ManageIQ's `ar_method`: logs a failure and raises it.
pub fn raised(rt: &mut Runtime<'_>, kind: &str, msg: impl Into<String>) -> Box<EvalAltResult> {
    let msg = msg.into();
    rt.log(
        Level::Error,
        format!("MiqAeServiceMethods.ar_method raised: <{kind}>: <{msg}>"),
    );
    runtime_error(msg)
}

fn tag_failure(rt: &mut Runtime<'_>, e: TagError) -> Box<EvalAltResult> {
    let kind = match e {
        TagError::Store(_) => "ActiveRecord::StatementInvalid",
        TagError::CategoryExists(_)
        | TagError::EntryExists { .. }
        | TagError::InvalidName { .. }
        | TagError::NoName(_) => "ActiveRecord::RecordInvalid",
        _ => "RuntimeError",
    };
    raised(rt, kind, e.to_string())
}

// ------------------------------------------------------ tags and categories

fn category_exists(rt: &mut Runtime<'_>, args: &[Dynamic]) -> ExecuteResult {
    let name = text_arg(args, 0);
    match tags::category_exists(rt.engine().store().as_ref(), &name) {
        Ok(b) => Ok(Dynamic::from(b)),
        Err(e) => Err(tag_failure(rt, e.into())),
    }
}

fn tag_exists(rt: &mut Runtime<'_>, args: &[Dynamic]) -> ExecuteResult {
    let (cat, entry) = (text_arg(args, 0), text_arg(args, 1));
    match tags::tag_exists(rt.engine().store().as_ref(), &cat, &entry) {
        Ok(b) => Ok(Dynamic::from(b)),
        Err(e) => Err(tag_failure(rt, e.into())),
    }
}

fn category_create(rt: &mut Runtime<'_>, args: &[Dynamic]) -> ExecuteResult {
    let options = options_arg("category_create", args, 0)?;
    match tags::create_category(rt.engine().store().as_ref(), &options) {
        Ok(c) => {
            rt.log(
                Level::Info,
                format!(
                    "MIQ(Classification.create_category!) Category [{}] created [{}]",
                    c.name(),
                    c.obj.id
                ),
            );
            Ok(Dynamic::TRUE)
        }
        Err(e) => Err(tag_failure(rt, e)),
    }
}

fn tag_create(rt: &mut Runtime<'_>, args: &[Dynamic]) -> ExecuteResult {
    let cat = text_arg(args, 0);
    let options = options_arg("tag_create", args, 1)?;
    match tags::create_entry(rt.engine().store().as_ref(), &cat, &options) {
        Ok(c) => {
            rt.log(
                Level::Info,
                format!(
                    "MIQ(Classification#add_entry) Entry [{}] created in category [{cat}] [{}]",
                    c.name(),
                    c.obj.id
                ),
            );
            Ok(Dynamic::TRUE)
        }
        Err(e) => Err(tag_failure(rt, e)),
    }
}

fn category_delete_bang(rt: &mut Runtime<'_>, args: &[Dynamic]) -> ExecuteResult {
    let name = text_arg(args, 0);
    match tags::delete_category(rt.engine().store().as_ref(), &name) {
        Ok(()) => Ok(Dynamic::TRUE),
        Err(e) => Err(tag_failure(rt, e)),
    }
}

fn category_delete(rt: &mut Runtime<'_>, args: &[Dynamic]) -> ExecuteResult {
    Ok(Dynamic::from(category_delete_bang(rt, args).is_ok()))
}

fn tag_delete_bang(rt: &mut Runtime<'_>, args: &[Dynamic]) -> ExecuteResult {
    let (cat, entry) = (text_arg(args, 0), text_arg(args, 1));
    match tags::delete_entry(rt.engine().store().as_ref(), &cat, &entry) {
        Ok(()) => Ok(Dynamic::TRUE),
        Err(e) => Err(tag_failure(rt, e)),
    }
}

fn tag_delete(rt: &mut Runtime<'_>, args: &[Dynamic]) -> ExecuteResult {
    Ok(Dynamic::from(tag_delete_bang(rt, args).is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_manageiq_methods_once_each() {
        for m in EXECUTE_METHODS {
            assert!(MANAGEIQ_METHODS.contains(&m.name), "{}", m.name);
            assert!(m.min_args <= m.max_args && m.max_args <= MAX_ARGS);
            assert_eq!(
                EXECUTE_METHODS.iter().filter(|o| o.name == m.name).count(),
                1
            );
        }
        assert!(lookup(":category_exists?").is_some());
        assert!(lookup("Category_exists?").is_none());
    }

    #[test]
    fn unknown_names_list_manageiq_s() {
        let e = unknown("bogus");
        assert!(
            e.starts_with("MiqAeException::MethodNotFound: undefined method `bogus' for MiqAeServiceMethods (unknown execute method [bogus]"),
            "{e}"
        );
        assert!(e.contains("send_email") && e.contains("tag_create"), "{e}");
        let e = unknown("vm_templates");
        assert!(e.contains("not available in automate yet"), "{e}");
    }
}
