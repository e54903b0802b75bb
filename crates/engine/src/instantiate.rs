//! `instantiate(uri, parent)`: reference §4. Domain search, the object and
//! its `.missing` fallback, the cycle check, assertions, query args, then
//! the fields; and the per-object error handling of §4.1.

use super::collect::CollectSource;
use super::datatype::convert;
use super::error::EngineError;
use super::state_data;
use super::workspace::{Level, Object, ObjectId};
use super::Runtime;
use automate_core::ruby::{self, RValue, RubyError};
use automate_core::uri::{
    self, classify_arg_key_owned, split_array_value, ArgKey, ArrayElem, Scheme, Uri,
};
use automate_core::value::AttrValue;
use automate_datastore::index::{AeType, ClassDef, FieldDef, ValueDef, MISSING};
use std::sync::Arc;

impl Runtime<'_> {
    /// Instantiates `uri_text` as a child of `parent` (a root when `None`).
    /// Returns the new object, or `None` when it was dropped.
    pub fn instantiate(
        &mut self,
        uri_text: &str,
        parent: Option<ObjectId>,
    ) -> Result<Option<ObjectId>, EngineError> {
        let uri = uri::parse(uri_text)?;
        self.instantiate_parsed(uri_text, uri, parent)
    }

    /// [`Runtime::instantiate`] of a URI already parsed from `uri_text`.
    pub(super) fn instantiate_parsed(
        &mut self,
        uri_text: &str,
        uri: Uri,
        parent: Option<ObjectId>,
    ) -> Result<Option<ObjectId>, EngineError> {
        match uri.scheme_or(Scheme::MiqaeDb) {
            Scheme::MiqaeDb => self.instantiate_db(uri_text, uri, parent),
            Scheme::MiqaeWs => {
                let obj = self
                    .object_at_path(&uri.path)?
                    .ok_or_else(|| EngineError::ObjectNotFound(uri.path.clone()))?;
                let message = uri.message();
                let saved = self.enter(obj, message.clone());
                let result = self.process_fields(obj, &message);
                self.leave(saved);
                result.map(|_| Some(obj))
            }
            Scheme::MiqaeMethod | Scheme::Method => {
                let parts = uri::split_path(&uri.path);
                let name = parts.instance.clone().unwrap_or_default();
                let class = match (&parts.class, parts.namespace.is_empty()) {
                    (Some(c), true) => Some(c.clone()),
                    (Some(c), false) => Some(format!("{}/{}", parts.namespace, c)),
                    (None, _) => None,
                };
                let target = self.current.or(parent);
                let Some(obj) = target else {
                    return Err(EngineError::MethodNotFound(format!(
                        "Method [{name}] has no object to run on"
                    )));
                };
                let args: Vec<(String, AttrValue)> = uri
                    .query
                    .iter()
                    .map(|(k, v)| (k.clone(), AttrValue::Str(v.clone())))
                    .collect();
                self.call_method(obj, class.as_deref(), &name, args)?;
                Ok(None)
            }
            Scheme::MiqPeca => Ok(None),
        }
    }

    fn instantiate_db(
        &mut self,
        uri_text: &str,
        uri: Uri,
        parent: Option<ObjectId>,
    ) -> Result<Option<ObjectId>, EngineError> {
        let message = uri.message();
        let is_root = parent.is_none() && self.stack.is_empty();
        if is_root {
            self.log(Level::Info, cat(&["Instantiating [", uri_text, "]"]));
        }
        let parts = uri.path_parts();
        let mut args = uri.query;
        if is_root {
            args.append(&mut self.extra_args);
        }
        self.take_state_args(&mut args);

        let (mut ns, class_name) = match parts.class {
            Some(c) => (parts.namespace, c),
            None => match self.current {
                Some(cur) => {
                    let o = &self.ws.objects[cur];
                    (o.namespace.clone(), o.class.clone())
                }
                None => {
                    return Err(EngineError::InvalidPath(format!(
                        "Invalid URI <{uri_text}>: no class"
                    )))
                }
            },
        };
        let instance_req = parts.instance;

        // Domain search (reference §3).
        let mut class_def: Option<Arc<ClassDef>> = None;
        let mut searched = false;
        if let Some(def) =
            self.index
                .resolve(&ns, &class_name, instance_req.as_deref().unwrap_or(""))
        {
            let def = def.clone();
            ns = def.fq_namespace().to_string();
            self.log(
                Level::Info,
                cat(&["Updated namespace [", uri_text, "  ", &ns, "]"]),
            );
            class_def = Some(def);
            searched = true;
        }

        // `/ns/class/<requested instance>`: the object's name, and with the
        // message the cycle key (compared case-insensitively).
        let inst_display = instance_req.as_deref().unwrap_or("");
        let object_name = cat(&["/", &ns, "/", &class_name, "/", inst_display]);
        let cyclic = self.stack.iter().any(|f| {
            f.message == message
                && self.ws.objects[f.object]
                    .object_name
                    .eq_ignore_ascii_case(&object_name)
        });
        if cyclic || self.stack.len() >= self.engine.options.max_depth {
            let key = format!("{object_name} with message={message}");
            return Err(if cyclic {
                EngineError::CyclicalRelationship(key)
            } else {
                EngineError::TooDeep(self.engine.options.max_depth, key)
            });
        }

        let class_def = match class_def.or_else(|| self.index.class(&ns, &class_name).cloned()) {
            Some(c) => c,
            None => {
                let e = EngineError::ClassNotFound(format!("{ns}/{class_name}"));
                self.log(Level::Error, e.to_string());
                return Ok(None);
            }
        };
        let (instance_name, instance_idx, missing) = match instance_req {
            None => (".default".to_string(), None, None),
            Some(req) => match instance_position(&class_def, &req) {
                Some(i) => (class_def.instances[i].name.clone(), Some(i), None),
                None => {
                    self.log(
                        Level::Info,
                        format!(
                            "Instance [{object_name}] not found in MiqAeDatastore - trying [{MISSING}]"
                        ),
                    );
                    match instance_position(&class_def, MISSING) {
                        Some(i) => (MISSING.to_string(), Some(i), Some(req)),
                        None => {
                            let e = EngineError::InstanceNotFound(object_name);
                            self.log(Level::Error, e.to_string());
                            return Ok(None);
                        }
                    }
                }
            },
        };

        // Domain search already gave the class's `Domain/ns`.
        let namespace = if searched {
            ns
        } else {
            class_def.fq_namespace().to_string()
        };
        let mut object = Object {
            namespace,
            class: class_name,
            instance: instance_name,
            object_name,
            attributes: Default::default(),
            parent,
            children: Vec::new(),
            rels: Vec::new(),
            removed: false,
        };
        if let Some(req) = missing {
            object
                .attributes
                .insert("_missing_instance".to_string(), AttrValue::Str(req));
        }
        // One object of the top-level instantiation's budget.
        self.spend_object()?;
        let id = self.ws.objects.len();
        self.ws.objects.push(object);
        if let Some(p) = parent {
            self.ws.objects[p].children.push(id);
        }
        self.stack.push(super::Frame {
            object: id,
            message: message.clone(),
        });
        self.set_class(id, class_def.clone(), instance_idx);
        let is_machine = class_def.is_state_machine();
        if is_machine {
            self.push_state_machine(id);
        }
        let saved = self.enter(id, message.clone());
        let result = self.build_object(id, &class_def, instance_idx, args, &message);
        self.leave(saved);
        if is_machine {
            self.pop_state_machine(id);
        }
        self.stack.pop();
        match result {
            Ok(()) => Ok(Some(id)),
            Err(e) if e.is_datastore_error() => {
                self.log(Level::Error, e.to_string());
                Ok(Some(id))
            }
            Err(EngineError::AssertionFailure(m)) => {
                self.log(Level::Info, m);
                self.remove(id);
                Ok(None)
            }
            Err(EngineError::Stop(m)) => {
                self.log(Level::Info, format!("Stopping instantiation because [{m}]"));
                self.remove(id);
                Ok(None)
            }
            Err(EngineError::UnknownMethodRc(m)) => {
                self.log(
                    Level::Error,
                    format!("Aborting instantiation (unknown method return code) because [{m}]"),
                );
                Err(EngineError::UnknownMethodRc(m))
            }
            Err(EngineError::Abort(m)) => {
                self.log(Level::Info, format!("Aborting instantiation because [{m}]"));
                Err(EngineError::Abort(m))
            }
            Err(e) => Err(e),
        }
    }

    /// Assertions, query args, then the fields (reference §4.1 step 6).
    fn build_object(
        &mut self,
        id: ObjectId,
        class: &Arc<ClassDef>,
        instance: Option<usize>,
        args: Vec<(String, String)>,
        message: &str,
    ) -> Result<(), EngineError> {
        self.process_assertions(id, class, instance, message)?;
        self.process_args(id, args)?;
        self.process_fields(id, message)
    }

    /// Makes `id` the current object for `message`; returns what to restore.
    pub(super) fn enter(
        &mut self,
        id: ObjectId,
        message: String,
    ) -> (Option<ObjectId>, String, Option<usize>) {
        let saved = (
            self.current,
            std::mem::replace(&mut self.current_message, message),
            self.current_field.take(),
        );
        self.current = Some(id);
        saved
    }

    pub(super) fn leave(&mut self, saved: (Option<ObjectId>, String, Option<usize>)) {
        self.current = saved.0;
        self.current_message = saved.1;
        self.current_field = saved.2;
    }

    /// Drops an object from the tree (after a failed assertion or a stop).
    fn remove(&mut self, id: ObjectId) {
        self.ws.objects[id].removed = true;
        if let Some(p) = self.ws.objects[id].parent {
            self.ws.objects[p].children.retain(|&c| c != id);
        }
    }

    fn process_assertions(
        &mut self,
        id: ObjectId,
        class: &Arc<ClassDef>,
        instance: Option<usize>,
        message: &str,
    ) -> Result<(), EngineError> {
        for (pos, field) in class.fields.iter().enumerate() {
            if field.aetype != AeType::Assertion || !field.runs_for(message) {
                continue;
            }
            let value = field_value(class, instance, pos);
            let expr = self.get_value(id, field, value, true)?;
            let expr = match expr {
                Some(AttrValue::Str(s)) if !s.trim().is_empty() => s,
                _ => continue,
            };
            self.log(
                Level::Info,
                format!("Evaluating substituted assertion [{expr}]"),
            );
            self.evaluate_assertion(&expr)?;
        }
        Ok(())
    }

    /// Evaluates an assertion: as Ruby when it is in the subset ManageIQ
    /// domains use (`automate_core::ruby`: `%w(..).include?(x)`, `.nil?`,
    /// `.blank?`, `==`, `&&`, `=~`, ...), with `message` the current message
    /// as in ManageIQ's `eval`; otherwise as a Rhai expression (Ruby's
    /// single-quoted strings become Rhai strings first). The messages are
    /// Ruby's, angle brackets included.
    fn evaluate_assertion(&mut self, expr: &str) -> Result<(), EngineError> {
        let message = self.current_message.clone();
        let var = |name: &str| (name == "message").then(|| RValue::Str(message.clone()));
        match ruby::evaluate(expr, &var) {
            Ok(true) => return Ok(()),
            Ok(false) => {
                return Err(EngineError::AssertionFailure(format!(
                    "Assertion Failed: <{expr}>"
                )))
            }
            Err(RubyError::Eval(e)) => {
                self.log(Level::Error, format!("'{e}', evaluating assertion"));
                return Err(EngineError::AssertionFailure(format!(
                    "Assertion Evaluation Failed: <{expr}>"
                )));
            }
            Err(RubyError::Unsupported { .. }) => {}
        }
        let script = single_to_double_quotes(expr);
        let ast = match self.engine.assertions.compile_expression(&script) {
            Ok(ast) => ast,
            Err(e) => {
                self.log(
                    Level::Error,
                    format!("Assertion had the following Syntax Error: '{e}'"),
                );
                return Err(EngineError::AssertionFailure(format!(
                    "Syntax Error in Assertion: <{expr}>"
                )));
            }
        };
        match self.engine.assertions.eval_ast::<rhai::Dynamic>(&ast) {
            Ok(v) => {
                // Ruby truthiness: only nil and false fail.
                let truthy = !v.is_unit() && v.as_bool().unwrap_or(true);
                if truthy {
                    Ok(())
                } else {
                    Err(EngineError::AssertionFailure(format!(
                        "Assertion Failed: <{expr}>"
                    )))
                }
            }
            Err(e) => {
                self.log(Level::Error, format!("'{e}', evaluating assertion"));
                Err(EngineError::AssertionFailure(format!(
                    "Assertion Evaluation Failed: <{expr}>"
                )))
            }
        }
    }

    /// Query args become attributes (reference §2.4).
    fn process_args(
        &mut self,
        id: ObjectId,
        args: Vec<(String, String)>,
    ) -> Result<(), EngineError> {
        let store = self.engine.store.clone();
        for (key, value) in args {
            match classify_arg_key_owned(key) {
                ArgKey::Plain(name) => self.set_attr_owned(id, name, AttrValue::Str(value)),
                ArgKey::Typed { datatype, name } => {
                    let v = self.convert_attr(id, &name, AttrValue::Str(value), &datatype)?;
                    self.set_attr_owned(id, name, v);
                }
                ArgKey::ObjectRef { class, name } => {
                    // `<name>_id` when the value looks like an id (Ruby's
                    // `to_i.nonzero?`) and the object has no `<name>` yet.
                    if super::datatype::ruby_to_i(&value) != 0 && self.attr(id, &name).is_none() {
                        self.set_attr(id, &format!("{name}_id"), AttrValue::Str(value.clone()));
                    }
                    let v = convert(store.as_ref(), AttrValue::Str(value), &class)?;
                    self.set_attr_owned(id, name, v);
                }
                ArgKey::Array(name) => {
                    let mut items = Vec::new();
                    for elem in split_array_value(&value) {
                        items.push(match elem {
                            ArrayElem::Plain(s) => AttrValue::Str(s),
                            ArrayElem::Typed { class, value } => {
                                convert(store.as_ref(), AttrValue::Str(value), &class)?
                            }
                        });
                    }
                    self.set_attr_owned(id, name, AttrValue::Array(items));
                }
            }
        }
        Ok(())
    }

    /// Walks the fields in schema order for `message` (reference §5.1).
    pub(super) fn process_fields(
        &mut self,
        id: ObjectId,
        message: &str,
    ) -> Result<(), EngineError> {
        let Some((class, instance)) = self.class_of(id).cloned() else {
            return Ok(());
        };
        for (pos, field) in class.fields.iter().enumerate() {
            if !field.runs_for(message) {
                continue;
            }
            self.current_field = Some(pos);
            let value = field_value(&class, instance, pos);
            match field.aetype {
                AeType::Assertion => {}
                AeType::Attribute => self.process_attribute(id, field, value)?,
                AeType::Relationship => {
                    self.process_relationship(id, field, value)?;
                }
                AeType::Method => self.process_method_field(id, field, value)?,
                AeType::State => self.process_state(id, &class, instance, pos, message)?,
            }
        }
        self.current_field = None;
        Ok(())
    }

    fn process_attribute(
        &mut self,
        id: ObjectId,
        field: &FieldDef,
        value: Option<&ValueDef>,
    ) -> Result<(), EngineError> {
        let v = self.get_value(id, field, value, false)?;
        if let Some(v) = v {
            let converted = match &field.datatype {
                Some(dt) => self.convert_attr(id, &field.name, v, dt)?,
                None => v,
            };
            if !converted.is_nil() {
                self.set_attr(id, &field.name, converted);
            }
        }
        let collect = value
            .and_then(|v| v.collect.clone())
            .filter(|c| !c.trim().is_empty())
            .or_else(|| field.collect.clone());
        if let Some(collect) = collect.filter(|c| !c.trim().is_empty()) {
            self.process_collect(id, &field.name, &collect, CollectSource::Current)?;
        }
        Ok(())
    }

    /// Follows a relationship field (reference §5.4). Returns the children.
    pub(super) fn process_relationship(
        &mut self,
        id: ObjectId,
        field: &FieldDef,
        value: Option<&ValueDef>,
    ) -> Result<Option<Vec<ObjectId>>, EngineError> {
        let Some(v) = self.get_value(id, field, value, false)? else {
            return Ok(None);
        };
        let text = v.to_text();
        let collect = value
            .and_then(|v| v.collect.clone())
            .filter(|c| !c.trim().is_empty())
            .or_else(|| field.collect.clone());
        self.follow_relationship(id, &field.name, &text, collect.as_deref())
    }

    /// Follows one relationship value from object `id`. Returns the
    /// children (`Some(vec![])` for a wildcard that matched nothing), or
    /// `None` when the relationship was skipped or its target dropped.
    pub(super) fn follow_relationship(
        &mut self,
        id: ObjectId,
        field_name: &str,
        text: &str,
        collect: Option<&str>,
    ) -> Result<Option<Vec<ObjectId>>, EngineError> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Ok(None);
        }
        let mut rel = uri::parse(trimmed)?;
        if rel.scheme.is_none() {
            rel.scheme = Some(Scheme::MiqaeDb);
        }
        if rel.fragment.as_deref().is_none_or(|f| f.trim().is_empty()) {
            rel.fragment = Some(self.current_message.clone());
        }
        let rel_text = rel.to_string();
        self.log(
            Level::Info,
            cat(&["Following Relationship [", &rel_text, "]"]),
        );
        // Ruby's `rels`: an array for a wildcard (possibly empty), else the
        // child or nil; collect runs unless it is nil.
        // Ruby tests `relationship.include?('*')` for the Array form.
        let wildcard = rel_text.contains('*');
        let (children, found) = if rel.path.ends_with('*') && rel.scheme == Some(Scheme::MiqaeDb) {
            (self.follow_wildcard(id, &rel)?, true)
        } else {
            let child = self.instantiate_parsed(&rel_text, rel, Some(id))?;
            (child.into_iter().collect::<Vec<_>>(), child.is_some())
        };
        if let Some(collect) = collect.filter(|c| found && !c.trim().is_empty()) {
            let from = match children.as_slice() {
                [one] if !wildcard => CollectSource::One(*one),
                _ => CollectSource::Many(&children),
            };
            for expr in collect.split(';') {
                if !expr.trim().is_empty() {
                    self.process_collect(id, field_name, expr, from)?;
                }
            }
        }
        self.ws.objects[id]
            .rels
            .push((field_name.to_string(), children.clone()));
        self.log(
            Level::Info,
            cat(&["Followed  Relationship [", &rel_text, "]"]),
        );
        Ok(found.then_some(children))
    }

    /// `/NS/CLASS/prefix*`: every matching instance of the single
    /// highest-priority domain that has one (reference §3).
    fn follow_wildcard(&mut self, id: ObjectId, rel: &Uri) -> Result<Vec<ObjectId>, EngineError> {
        let parts = uri::split_path(&rel.path);
        let (Some(class), Some(inst)) = (parts.class.as_deref(), parts.instance.as_deref()) else {
            return Ok(Vec::new());
        };
        let prefix = inst.trim_end_matches('*');
        let matches = self.index.wildcard(&parts.namespace, class, prefix);
        let mut out = Vec::new();
        for (def, name) in matches {
            let child = Uri {
                scheme: rel.scheme,
                path: format!("/{}/{}/{}", def.fq_namespace(), def.name, name),
                query: rel.query.clone(),
                fragment: rel.fragment.clone(),
            };
            if let Some(c) = self.instantiate(&child.to_string(), Some(id))? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Takes `ae_state_data` (state vars) and `ae_state_previous` (saved
    /// state of nested machines) out of the query args; each is a JSON
    /// object (automate's form) or ManageIQ's YAML dump (`state_data`).
    /// Text that is neither is logged and ignored, as a missing blob is.
    fn take_state_args(&mut self, args: &mut Vec<(String, String)>) {
        if let Some(pos) = args.iter().position(|(k, _)| k == "ae_state_data") {
            let (_, data) = args.remove(pos);
            if let Some(id) = state_data::blob_reference(&data) {
                self.log(
                    Level::Warn,
                    format!(
                        "Failed to load BinaryBlob with ID [{id}] for MiqAeEngine::StateVarHash"
                    ),
                );
            }
            match state_data::parse_state_map(&data) {
                Ok(map) => {
                    let key = self.engine.password_key.clone();
                    let mut failed = Vec::new();
                    for (k, v) in map {
                        let path = format!("ae_state_data.{k}");
                        let v =
                            state_data::restore_passwords(v, key.as_deref(), &path, &mut failed);
                        self.ws.state_vars.insert(k, v);
                    }
                    self.warn_undecrypted(&failed);
                }
                Err(why) => self.log(Level::Warn, format!("Ignoring ae_state_data: {why}")),
            }
        }
        if let Some(pos) = args.iter().position(|(k, _)| k == "ae_state_previous") {
            let (_, data) = args.remove(pos);
            match state_data::parse_state_map(&data) {
                Ok(map) => {
                    self.ws.state_info.clear();
                    let key = self.engine.password_key.clone();
                    let mut failed = Vec::new();
                    for (machine, v) in map {
                        let path = format!("ae_state_previous.{machine}");
                        let v =
                            state_data::restore_passwords(v, key.as_deref(), &path, &mut failed);
                        let AttrValue::Hash(values) = v else {
                            continue;
                        };
                        let attrs = values.into_iter().map(|(k, v)| (k.to_text(), v)).collect();
                        self.ws.state_info.insert(machine, attrs);
                    }
                    self.warn_undecrypted(&failed);
                }
                Err(why) => self.log(Level::Warn, format!("Ignoring ae_state_previous: {why}")),
            }
        }
    }
}

impl Runtime<'_> {
    /// Logs the saved passwords of a retry that did not decrypt (each
    /// reads as the mask).
    fn warn_undecrypted(&mut self, failed: &[String]) {
        for f in failed {
            self.log(
                Level::Warn,
                format!(
                    "Saved password {f}: it reads as {}",
                    automate_password::MASK
                ),
            );
        }
    }
}

/// Concatenates `parts` into one string allocated once (trace lines carry
/// long URIs; `format!` would grow the string several times).
pub(super) fn cat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

/// The instance's value for field `pos`, if the object has an instance.
pub(super) fn field_value(
    class: &ClassDef,
    instance: Option<usize>,
    pos: usize,
) -> Option<&ValueDef> {
    instance.and_then(|i| class.instances[i].values.get(pos)?.as_ref())
}

fn instance_position(class: &ClassDef, name: &str) -> Option<usize> {
    let inst = class.instance(name)?;
    class.instances.iter().position(|i| std::ptr::eq(i, inst))
}

/// Turns Ruby's single-quoted string literals into Rhai's double-quoted ones.
fn single_to_double_quotes(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut in_single = false;
    let mut in_double = false;
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_single || in_double => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '\'' if !in_double => {
                in_single = !in_single;
                out.push('"');
            }
            '"' if in_single => out.push_str("\\\""),
            '"' => {
                in_double = !in_double;
                out.push('"');
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::single_to_double_quotes;

    #[test]
    fn ruby_quotes_become_rhai_strings() {
        assert_eq!(single_to_double_quotes("'a' == 'b'"), "\"a\" == \"b\"");
        assert_eq!(
            single_to_double_quotes("'say \"hi\"'"),
            "\"say \\\"hi\\\"\""
        );
        assert_eq!(single_to_double_quotes("\"it's\""), "\"it's\"");
    }
}
