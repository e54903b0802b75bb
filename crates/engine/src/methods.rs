//! Method calls (reference §7): the call syntax of method fields and state
//! steps, method lookup with overlay, inputs, the `Invoking ...` line, and
//! dispatch by location: builtins run natively from a [`Builtins`] table,
//! inline Rhai bodies through a [`ScriptRunner`], and Ruby bodies are
//! refused with a pointer to the porting guide.

use super::error::EngineError;
use super::instantiate::cat;
use super::substitute::strip_domain;
use super::workspace::{Level, ObjectId};
use super::Runtime;
use automate_core::value::{AttrValue, Attributes};
use automate_datastore::index::{FieldDef, MethodDef};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// A method's exit status (reference §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodRc {
    /// `MIQ_OK` (0): the method succeeded.
    Ok,
    /// `MIQ_WARN` (4): succeeded, logged at warn.
    Warn,
    /// `MIQ_STOP` (8): the calling object is dropped
    /// ([`EngineError::Stop`]).
    Stop,
    /// `MIQ_ABORT` (16): the instantiation is aborted
    /// ([`EngineError::Abort`]).
    Abort,
    /// Any other code: aborts ([`EngineError::UnknownMethodRc`]).
    Unknown(i64),
}

impl MethodRc {
    /// ManageIQ's numeric codes.
    pub fn from_code(code: i64) -> MethodRc {
        match code {
            0 => MethodRc::Ok,
            4 => MethodRc::Warn,
            8 => MethodRc::Stop,
            16 => MethodRc::Abort,
            n => MethodRc::Unknown(n),
        }
    }

    /// `MIQ_OK`, `MIQ_WARN`, ... or `Unknown RC: [n]`, as the
    /// `Method exited with rc=` line writes it.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            MethodRc::Ok => "MIQ_OK".into(),
            MethodRc::Warn => "MIQ_WARN".into(),
            MethodRc::Stop => "MIQ_STOP".into(),
            MethodRc::Abort => "MIQ_ABORT".into(),
            MethodRc::Unknown(n) => format!("Unknown RC: [{n}]").into(),
        }
    }
}

/// A native builtin: runs on the object that called it, with its inputs.
pub type BuiltinFn = fn(&mut Runtime<'_>, ObjectId, &Attributes) -> Result<(), EngineError>;

/// The builtin methods by lower-cased name.
#[derive(Clone, Default)]
pub struct Builtins {
    map: FxHashMap<String, BuiltinFn>,
}

impl Builtins {
    /// The builtins of ManageIQ's `$/Object`: `log_object`, `log_workspace`.
    pub fn standard() -> Builtins {
        let mut b = Builtins::default();
        b.insert("log_object", log_object);
        b.insert("log_workspace", log_workspace);
        b
    }

    /// Registers `f` as the builtin `name` (case-insensitive), replacing
    /// any builtin of that name.
    pub fn insert(&mut self, name: &str, f: BuiltinFn) {
        self.map.insert(name.to_ascii_lowercase(), f);
    }

    /// Registers every name in `names` as a builtin that does nothing
    /// (benchmarks of the engine alone).
    pub fn with_noops(mut self, names: &[&str]) -> Builtins {
        fn noop(_: &mut Runtime<'_>, _: ObjectId, _: &Attributes) -> Result<(), EngineError> {
            Ok(())
        }
        for n in names {
            self.insert(n, noop);
        }
        self
    }

    /// The builtin `name` (case-insensitive), as a method of location
    /// `builtin` calls it.
    pub fn get(&self, name: &str) -> Option<BuiltinFn> {
        self.map
            .get(&*automate_datastore::index::lower(name))
            .copied()
    }

    /// Every registered name, lower-cased and sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.map.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// Runs inline script methods (Rhai).
pub trait ScriptRunner: Send + Sync {
    /// Runs `method` on object `obj` with its converted `inputs`.
    fn run(
        &self,
        rt: &mut Runtime<'_>,
        obj: ObjectId,
        method: &MethodDef,
        inputs: &Attributes,
    ) -> Result<MethodRc, EngineError>;
}

/// The control policies and alerts run on a generic event (ManageIQ's
/// `MiqPolicy.enforce_policy`, `MiqAlert.evaluate_alerts`), injected as the
/// builtins and the script runner are: `methods` raises events and calls
/// them, `control` implements them.
pub trait Policies: Send + Sync {
    /// Runs the policies on `event_type` for the event and its target.
    fn evaluate_policies(
        &self,
        rt: &mut Runtime<'_>,
        event: Option<&automate_vmdb::VmdbRef>,
        target: Option<&automate_vmdb::VmdbRef>,
        event_type: &str,
    );
    /// Runs the alerts on `event_type` for the event and its target.
    fn evaluate_alerts(
        &self,
        rt: &mut Runtime<'_>,
        event: Option<&automate_vmdb::VmdbRef>,
        target: Option<&automate_vmdb::VmdbRef>,
        event_type: &str,
    );
}

/// `log_object` (`MiqAeBuiltinMethod.miq_log_object`): every attribute of
/// the object, sorted by name.
fn log_object(rt: &mut Runtime<'_>, obj: ObjectId, _: &Attributes) -> Result<(), EngineError> {
    let mut attrs: Vec<(&String, &AttrValue)> = rt.ws.objects[obj].attributes.iter().collect();
    attrs.sort_by(|a, b| a.0.cmp(b.0));
    let mut lines = vec![
        RULE.to_string(),
        "Dumping Object".to_string(),
        "Listing Object Attributes:".to_string(),
    ];
    lines.extend(attrs.iter().map(|(k, v)| format!("\t{k}: {}", v.to_text())));
    lines.push(RULE.to_string());
    for l in lines {
        rt.log(Level::Info, l);
    }
    Ok(())
}

const RULE: &str = "===========================================";

/// `log_workspace` (`miq_log_workspace`): every object of the workspace,
/// one line each (ManageIQ dumps it as XML).
fn log_workspace(rt: &mut Runtime<'_>, _obj: ObjectId, _: &Attributes) -> Result<(), EngineError> {
    let mut lines = vec![RULE.to_string(), "Dumping Workspace".to_string()];
    for o in rt.ws.objects.iter().filter(|o| !o.removed) {
        lines.push(format!(
            "<MiqAeObject namespace=\"{}\" class=\"{}\" instance=\"{}\"> ({} attributes)",
            o.namespace,
            o.class,
            o.instance,
            o.attributes.len()
        ));
    }
    lines.push(RULE.to_string());
    for l in lines {
        rt.log(Level::Info, l);
    }
    Ok(())
}

/// A parsed method call: `[ns/]Class.method(k => v, ...)` or `method(...)`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Call {
    pub class: Option<String>,
    pub method: String,
    pub args: Vec<(String, CallArg)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum CallArg {
    Literal(AttrValue),
    /// A bare word: an attribute of the current object.
    Attribute(String),
}

/// Parses method-call syntax (reference §7.1).
pub(super) fn parse_call(text: &str) -> Result<Call, EngineError> {
    let t = text.trim();
    let invalid = || EngineError::InvalidMethod(format!("invalid method calling syntax: [{text}]"));
    let (name, args) = match t.find('(') {
        Some(p) => {
            let rest = t[p + 1..].trim_end();
            let inner = rest.strip_suffix(')').ok_or_else(invalid)?;
            (t[..p].trim(), Some(inner))
        }
        None => (t, None),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '/')
    {
        return Err(invalid());
    }
    let pieces: Vec<&str> = name.split('.').collect();
    let (class, method) = match pieces.as_slice() {
        [m] => (None, m.to_string()),
        [c, m] => (Some(c.to_string()), m.to_string()),
        _ => {
            return Err(EngineError::InvalidMethod(format!(
                "invalid method name: [{name}]"
            )))
        }
    };
    let mut out = Vec::new();
    if let Some(args) = args {
        for part in split_args(args) {
            let Some((k, v)) = part.split_once("=>") else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || !k.chars().all(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let arg = if v.len() >= 2
                && ((v.starts_with('\'') && v.ends_with('\''))
                    || (v.starts_with('"') && v.ends_with('"')))
            {
                CallArg::Literal(AttrValue::Str(v[1..v.len() - 1].to_string()))
            } else if let Ok(i) = v.parse::<i64>() {
                CallArg::Literal(AttrValue::Int(i))
            } else {
                CallArg::Attribute(v.to_string())
            };
            out.push((k.to_string(), arg));
        }
    }
    Ok(Call {
        class,
        method,
        args: out,
    })
}

/// Splits call arguments on commas outside quotes.
fn split_args(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quote) = (0, None);
    for (i, c) in s.char_indices() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            (',', None) => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl Runtime<'_> {
    /// A `method` field (reference §5.4).
    pub(super) fn process_method_field(
        &mut self,
        id: ObjectId,
        field: &FieldDef,
        value: Option<&automate_datastore::ValueDef>,
    ) -> Result<(), EngineError> {
        let Some(v) = self.get_value(id, field, value, false)? else {
            return Ok(());
        };
        let text = v.to_text();
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            return Ok(());
        }
        self.call_method_text(id, &text)
    }

    /// Runs a method given in call syntax on object `id`.
    pub(super) fn call_method_text(&mut self, id: ObjectId, text: &str) -> Result<(), EngineError> {
        let call = parse_call(text)?;
        let args = call
            .args
            .iter()
            .map(|(k, a)| {
                let v = match a {
                    CallArg::Literal(v) => v.clone(),
                    CallArg::Attribute(name) => {
                        self.attr(id, name).cloned().unwrap_or(AttrValue::Nil)
                    }
                };
                (k.clone(), v)
            })
            .collect();
        self.call_method(id, call.class.as_deref(), &call.method, args)
    }

    /// Looks a method up for object `id` and runs it (reference §7.1–§7.4).
    pub(super) fn call_method(
        &mut self,
        id: ObjectId,
        class: Option<&str>,
        name: &str,
        args: Vec<(String, AttrValue)>,
    ) -> Result<(), EngineError> {
        let method = self.find_method(id, class, name)?;
        let Some(method) = method else {
            // `$/Object` builtins every object can call.
            if class.is_none() {
                if let Some(f) = self.engine.builtins.get(name) {
                    let fq = format!("/$/Object/{}", name.to_lowercase());
                    self.log(
                        Level::Info,
                        format!("Invoking [builtin] method [{fq}] with inputs [{{}}]"),
                    );
                    return self.run_builtin(f, id, &Attributes::default());
                }
            }
            let o = &self.ws.objects[id];
            let where_ = match class {
                Some(c) => c.to_string(),
                None => format!("{}/{}", o.namespace, o.class),
            };
            return Err(EngineError::MethodNotFound(format!(
                "Method [{name}] not found in class [{where_}]"
            )));
        };
        self.invoke_method(id, method, &args)
    }

    /// Runs a method already looked up for object `id`: its inputs, the
    /// `Invoking` line, the call.
    pub(super) fn invoke_method(
        &mut self,
        id: ObjectId,
        method: Arc<MethodDef>,
        args: &[(String, AttrValue)],
    ) -> Result<(), EngineError> {
        let inputs = self.method_inputs(id, &method, args)?;
        let shown = automate_core::value::inspect_attributes(&inputs);
        if !self.engine().executes_methods() {
            // ManageIQ's read-only workspace (`MiqAeMethod.invoke`).
            self.log(
                Level::Info,
                super::instantiate::cat(&[
                    "Workspace Instantiation is READONLY -- skipping method [",
                    &method.fqname,
                    "] with inputs [",
                    &shown,
                    "]",
                ]),
            );
            self.ws.skipped_methods.push(method.fqname.clone());
            return Ok(());
        }
        self.log(
            Level::Info,
            super::instantiate::cat(&[
                "Invoking [",
                &method.location,
                "] method [",
                &method.fqname,
                "] with inputs [",
                &shown,
                "]",
            ]),
        );
        self.method_stack.push(method.clone());
        let result = self.dispatch(id, &method, &inputs);
        self.method_stack.pop();
        result
    }

    fn find_method(
        &self,
        id: ObjectId,
        class: Option<&str>,
        name: &str,
    ) -> Result<Option<Arc<MethodDef>>, EngineError> {
        let o = &self.ws.objects[id];
        let (ns, class_name, partial): (&str, &str, bool) = match class {
            None => (&o.namespace, &o.class, false),
            Some(spec) => match spec.rsplit_once('/') {
                None => (&o.namespace, spec, false),
                Some((ns, c)) if ns.starts_with('/') => (ns.trim_start_matches('/'), c, true),
                Some((ns, c)) => (ns, c, false),
            },
        };
        let relative_ns = if partial { ns } else { strip_domain(ns) };
        if let Some(m) = self.index.resolve_method(relative_ns, class_name, name) {
            return Ok(Some(m.clone()));
        }
        if !partial {
            if let Some(m) = self
                .index
                .class(ns, class_name)
                .and_then(|c| c.method(name))
            {
                return Ok(Some(m.clone()));
            }
        }
        Ok(None)
    }

    /// Method inputs (reference §7.2): call-site arg, else the object's
    /// attribute, else the input's default; converted by datatype.
    fn method_inputs(
        &mut self,
        id: ObjectId,
        method: &MethodDef,
        args: &[(String, AttrValue)],
    ) -> Result<Attributes, EngineError> {
        let mut inputs = Attributes::default();
        for field in &method.inputs {
            // Ruby's `args[key]`, then `obj.attributes[key] || obj.get_value(f)`
            // (nil and false fall through).
            let truthy = |v: &AttrValue| !matches!(v, AttrValue::Nil | AttrValue::Bool(false));
            let from_arg = args
                .iter()
                .find(|(k, _)| k == &field.name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_nil());
            let value = match from_arg {
                Some(v) => Some(v),
                None => match self.attr(id, &field.name) {
                    Some(v) if truthy(v) => Some(v.clone()),
                    _ => self.get_value(id, field, None, false)?,
                },
            };
            let value = match (value, &field.datatype) {
                (Some(v), Some(dt)) => Some(self.convert_attr(id, &field.name, v, dt)?),
                (v, _) => v,
            };
            // An attribute of the object feeding a typed input is converted
            // in place too.
            if let Some(dt) = field.datatype.as_deref().filter(|d| *d != "string") {
                if let Some(attr) = self.attr(id, &field.name).filter(|v| truthy(v)).cloned() {
                    let converted = self.convert_attr(id, &field.name, attr, dt)?;
                    self.set_attr(id, &field.name, converted);
                }
            }
            match value {
                Some(v) if !v.is_nil() => {
                    inputs.insert(field.name.clone(), v);
                }
                _ => {
                    return Err(EngineError::MethodParmMissing(
                        method.fqname.clone(),
                        field.name.clone(),
                    ))
                }
            }
        }
        Ok(inputs)
    }

    fn dispatch(
        &mut self,
        id: ObjectId,
        method: &MethodDef,
        inputs: &Attributes,
    ) -> Result<(), EngineError> {
        match method.location.as_str() {
            "builtin" => {
                let name = method
                    .body
                    .as_deref()
                    .filter(|d| !d.trim().is_empty())
                    .unwrap_or(&method.name)
                    .trim();
                let f = self.engine.builtins.get(name).ok_or_else(|| {
                    EngineError::MethodNotFound(format!(
                        "Built-In Method [miq_{}] does not exist",
                        name.to_lowercase()
                    ))
                })?;
                self.run_builtin(f, id, inputs)
            }
            "inline" => {
                if !method.language.eq_ignore_ascii_case("rhai") {
                    return Err(EngineError::InvalidMethod(format!(
                        "Method [{}] is written in {}, which automate does not run: port it to Rhai \
                         (see docs/porting-ruby-methods.md)",
                        method.fqname, method.language
                    )));
                }
                if method.body.as_deref().is_none_or(|b| b.trim().is_empty()) {
                    return Ok(());
                }
                let Some(scripts) = self.engine.scripts.clone() else {
                    return Err(EngineError::InvalidMethod(format!(
                        "Method [{}] is a Rhai method, but this engine has no script runner",
                        method.fqname
                    )));
                };
                let fq = method.fqname.as_str();
                self.log(Level::Info, cat(&["<AEMethod [", fq, "]> Starting "]));
                let rc = scripts.run(self, id, method, inputs);
                self.log(Level::Info, cat(&["<AEMethod [", fq, "]> Ending"]));
                let rc = rc?;
                let text = cat(&["Method exited with rc=", &rc.name()]);
                match rc {
                    MethodRc::Ok => {
                        self.log(Level::Info, text);
                        Ok(())
                    }
                    MethodRc::Warn => {
                        self.log(Level::Warn, text);
                        Ok(())
                    }
                    MethodRc::Stop => Err(EngineError::Stop(text)),
                    MethodRc::Abort => Err(EngineError::Abort(text)),
                    MethodRc::Unknown(_) => Err(EngineError::UnknownMethodRc(text)),
                }
            }
            other => Err(EngineError::InvalidMethod(format!(
                "Method [{}] has location [{other}], which automate does not run",
                method.fqname
            ))),
        }
    }

    /// Runs a builtin; any error inside it aborts (reference §7.3).
    fn run_builtin(
        &mut self,
        f: BuiltinFn,
        id: ObjectId,
        inputs: &Attributes,
    ) -> Result<(), EngineError> {
        match f(self, id, inputs) {
            Ok(()) => Ok(()),
            Err(e @ (EngineError::Abort(_) | EngineError::Budget(_))) => Err(e),
            Err(e) => Err(EngineError::Abort(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_syntax() {
        let c = parse_call("update_status(status => 'Provisioning', n => 3, x => attr)").unwrap();
        assert_eq!(c.class, None);
        assert_eq!(c.method, "update_status");
        assert_eq!(
            c.args,
            vec![
                (
                    "status".into(),
                    CallArg::Literal(AttrValue::Str("Provisioning".into()))
                ),
                ("n".into(), CallArg::Literal(AttrValue::Int(3))),
                ("x".into(), CallArg::Attribute("attr".into())),
            ]
        );
        let c = parse_call("/factory/method.test_class_method").unwrap();
        assert_eq!(c.class.as_deref(), Some("/factory/method"));
        assert!(parse_call("a.b.c").is_err());
        assert!(parse_call("bad syntax!").is_err());
    }
}
