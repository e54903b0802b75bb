//! Field values and `${...}` substitution (reference §5.2, §5.3, §5.6).
//!
//! `get_value` picks the instance value or the class default (or walks a
//! null-coalescing chain); `substitute` replaces each `${...}` with the value
//! it names: a workspace object's attribute (`${/#a}`, `${#a}`, `${../..#a}`,
//! `${ns/Class#a}`), a state var (`${state_var#k}`), the current message
//! (`${!current_message}`), or an attribute of another instance
//! (`${miqaedb:/ns/class/instance/attr}`). A trailing `.method` chain on an
//! attribute (`${/#event_stream.source}`, `${/#vm.name.length}`) reads
//! attributes of stored objects or applies a small allow-list of string
//! methods and the Ruby subset's (`nil?`, `blank?`, `present?`,
//! `include?(x)`, ..., `automate_core::ruby`).

use super::error::EngineError;
use super::workspace::{Level, ObjectId};
use super::Runtime;
use automate_core::ruby::{self, RValue};
use automate_core::uri::{self, Scheme, SplitOptions};
use automate_core::value::AttrValue;
use automate_datastore::index::{AeType, FieldDef, ValueDef, MISSING};
use automate_vmdb::service_model::{self, ReadError};
use automate_vmdb::StoreError;

impl Runtime<'_> {
    /// The value of a field for object `id` (reference §5.2), substituted.
    /// `None` when the field has no value at all. `required` is the
    /// assertion mode: a missing attribute is an error.
    pub(super) fn get_value(
        &mut self,
        id: ObjectId,
        field: &FieldDef,
        value: Option<&ValueDef>,
        required: bool,
    ) -> Result<Option<AttrValue>, EngineError> {
        let inst_value = value.and_then(|v| v.value.as_deref());
        if field
            .datatype
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case("null coalescing"))
        {
            let Some(chain) = inst_value.or(field.default_value.as_deref()) else {
                return Ok(None);
            };
            for part in chain.split("||") {
                let part = part.trim();
                match self.substitute(id, part, required) {
                    Ok(s) if !s.trim().is_empty() => return Ok(Some(AttrValue::Str(s))),
                    Ok(_) => {}
                    Err(e) => self.log(
                        Level::Warn,
                        format!("{e}, while evaluating :{part} null coalecing attribute"),
                    ),
                }
            }
            return Ok(None);
        }
        let raw = match inst_value {
            Some(v) if !v.trim().is_empty() => v,
            _ => match field.default_value.as_deref() {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        if field.substitute {
            Ok(Some(AttrValue::Str(self.substitute(id, raw, required)?)))
        } else {
            Ok(Some(AttrValue::Str(raw.to_string())))
        }
    }

    /// Replaces every `${...}` in `text` from object `id`'s point of view.
    pub fn substitute(
        &mut self,
        id: ObjectId,
        text: &str,
        required: bool,
    ) -> Result<String, EngineError> {
        if !text.contains("${") {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                break;
            };
            let inner = &after[..end];
            out.push_str(&rest[..start]);
            if inner.is_empty() {
                out.push_str("${}");
            } else {
                let v = self.uri2value(id, inner, required)?;
                out.push_str(&v.to_text());
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The value one `${inner}` names (reference §5.3 `uri2value`).
    pub(super) fn uri2value(
        &mut self,
        id: ObjectId,
        inner: &str,
        required: bool,
    ) -> Result<AttrValue, EngineError> {
        // The common `${#attr}` and `${/#attr.method}` need no URI parse.
        if inner.trim() == inner {
            if let Some(fragment) = inner.strip_prefix('#') {
                return self.ws_value(id, "", Some(fragment), inner, required);
            }
            if let Some(fragment) = inner.strip_prefix("/#") {
                return self.ws_value(id, "/", Some(fragment), inner, required);
            }
        }
        let u = uri::parse(inner)?;
        match u.scheme_or(Scheme::MiqaeWs) {
            Scheme::MiqaeWs => self.ws_value(id, &u.path, u.fragment.as_deref(), inner, required),
            Scheme::MiqaeDb => self.miqaedb_value(inner, &u),
            _ => Ok(AttrValue::Str(inner.to_string())),
        }
    }

    /// `${path#attr[.method...]}` on a workspace object (or the state vars).
    fn ws_value(
        &mut self,
        id: ObjectId,
        path: &str,
        fragment: Option<&str>,
        inner: &str,
        required: bool,
    ) -> Result<AttrValue, EngineError> {
        if let Some(name) = path.strip_prefix('!') {
            if name.eq_ignore_ascii_case("current_message") {
                return Ok(AttrValue::Str(self.current_message.clone()));
            }
            return Err(EngineError::MethodNotFound(format!(
                "Method [{path}] Not Found for Current Object"
            )));
        }
        let Some(fragment) = fragment else {
            return Err(EngineError::InvalidPath(format!(
                "substitution ${{{inner}}} names no attribute (expected `path#attribute`)"
            )));
        };
        let mut segments = automate_core::ruby::split_chain(fragment);
        let attr = segments.remove(0);
        let value = if path.eq_ignore_ascii_case("state_var") {
            // State-var keys keep their case (reference §2.6).
            match self.ws.state_vars.get(attr) {
                Some(v) => v.clone(),
                None if required => {
                    return Err(EngineError::AttributeNotFound(
                        format!("State var {attr}"),
                        path.to_string(),
                    ))
                }
                None => AttrValue::Nil,
            }
        } else {
            let saved = self.current;
            self.current = Some(id);
            let obj = self.object_at_path(path);
            self.current = saved;
            let obj = obj?.ok_or_else(|| EngineError::ObjectNotFound(path.to_string()))?;
            let attr = automate_datastore::index::lower(attr);
            match self.ws.objects[obj].attributes.get(&*attr) {
                Some(v) => v.clone(),
                None if required => {
                    return Err(EngineError::AttributeNotFound(
                        attr.into_owned(),
                        path.to_string(),
                    ))
                }
                None => AttrValue::Nil,
            }
        };
        let mut value = value;
        for seg in segments {
            match self.call_value_method(&value, seg)? {
                Ok(v) => value = v,
                Err(msg) => {
                    self.log(Level::Warn, format!("Error during substitution: {msg}"));
                    return Ok(AttrValue::Nil);
                }
            }
        }
        Ok(value)
    }

    /// `${miqaedb:/ns/class/instance/attr#message}`: a detached object of
    /// that instance (domain search and `.missing` apply, with their log
    /// lines), its attribute fields only.
    fn miqaedb_value(&mut self, inner: &str, u: &uri::Uri) -> Result<AttrValue, EngineError> {
        let (parts, attr) = uri::split_path_with(
            &u.path,
            SplitOptions {
                has_instance_name: true,
                has_attribute_name: true,
            },
        );
        let attr = attr.unwrap_or_default().to_lowercase();
        let Some(class_name) = parts.class.as_deref() else {
            return Ok(AttrValue::Nil);
        };
        let requested = parts.instance.as_deref();
        let message = u.message();
        let mut ns = parts.namespace.clone();
        let def = match self
            .index
            .resolve(&ns, class_name, requested.unwrap_or(""))
            .cloned()
        {
            Some(d) => {
                ns = d.fq_namespace().to_string();
                self.log(Level::Info, format!("Updated namespace [{inner}  {ns}]"));
                d
            }
            None => self
                .index
                .class(&ns, class_name)
                .cloned()
                .ok_or_else(|| EngineError::ClassNotFound(format!("{ns}/{class_name}")))?,
        };
        let object_name = format!("/{ns}/{class_name}/{}", requested.unwrap_or(""));
        let mut attributes = super::Attributes::default();
        let (instance_name, inst) = match requested {
            None => (".default".to_string(), None),
            Some(req) => match def.instance(req) {
                Some(i) => (i.name.clone(), Some(i)),
                None => {
                    self.log(
                        Level::Info,
                        format!(
                            "Instance [{object_name}] not found in MiqAeDatastore - trying [{MISSING}]"
                        ),
                    );
                    attributes.insert("_missing_instance".to_string(), AttrValue::str(req));
                    match def.instance(MISSING) {
                        Some(i) => (MISSING.to_string(), Some(i)),
                        None => return Err(EngineError::InstanceNotFound(object_name)),
                    }
                }
            },
        };
        // Evaluate the attribute fields into a scratch object so that
        // `${#x}` inside them sees earlier fields of the same instance.
        let scratch = self.ws.objects.len();
        self.ws.objects.push(super::Object {
            namespace: def.fq_namespace().to_string(),
            class: class_name.to_string(),
            instance: instance_name,
            object_name,
            attributes,
            parent: None,
            children: Vec::new(),
            rels: Vec::new(),
            removed: true,
        });
        let result = (|| {
            for (pos, field) in def.fields.iter().enumerate() {
                if field.aetype != AeType::Attribute || !field.runs_for(&message) {
                    continue;
                }
                let value = inst.and_then(|i| i.values.get(pos).and_then(Option::as_ref));
                let v = self.get_value(scratch, field, value, false)?;
                if let Some(v) = v {
                    let v = match &field.datatype {
                        Some(dt) => self.convert_attr(scratch, &field.name, v, dt)?,
                        None => v,
                    };
                    if !v.is_nil() {
                        self.set_attr(scratch, &field.name, v);
                    }
                }
            }
            Ok::<_, EngineError>(())
        })();
        let value = self.ws.objects[scratch].attributes.get(&attr).cloned();
        self.ws.objects.truncate(scratch);
        result?;
        Ok(value.unwrap_or(AttrValue::Nil))
    }

    /// A method named in a substitution chain, applied to a value: the
    /// inner `Err` is a method the value does not answer (logged, nil), the
    /// outer one a failed object-store read (the substitution fails).
    fn call_value_method(
        &self,
        value: &AttrValue,
        seg: &str,
    ) -> Result<Result<AttrValue, String>, EngineError> {
        let (name, arg) = match seg.find('(') {
            Some(p) if seg.ends_with(')') => (&seg[..p], Some(seg[p + 1..seg.len() - 1].trim())),
            _ => (seg, None),
        };
        let arg = arg.map(|a| {
            a.trim_start_matches(':')
                .trim_matches(|c| c == '\'' || c == '"')
        });
        if let AttrValue::Object(r) = value {
            // Every object answers Ruby's and ActiveSupport's predicates.
            match name {
                "nil?" | "blank?" => return Ok(Ok(AttrValue::Bool(false))),
                "present?" => return Ok(Ok(AttrValue::Bool(true))),
                _ => {}
            }
            let store = self.engine.store.as_ref();
            let undefined = || format!("undefined method `{name}' for {}::{}", r.class, r.id);
            return Ok(match (name, arg) {
                // `MiqRequest#get_option(key)`: `options[key]`, the first
                // element when it is an array.
                ("get_option", Some(key)) => match store.attribute(r, "options")? {
                    Some(options) => Ok(match hash_get(&options, key) {
                        AttrValue::Array(items) => {
                            items.into_iter().next().unwrap_or(AttrValue::Nil)
                        }
                        v => v,
                    }),
                    None => Err(undefined()),
                },
                ("[]", Some(key)) => Ok(store.attribute(r, key)?.unwrap_or(AttrValue::Nil)),
                // The service model's reads: associations, computed
                // attributes, ManageIQ's NoMethodError (logged, nil).
                (_, None) => match service_model::read(store, r, name) {
                    Ok(v) => Ok(v),
                    Err(ReadError::NoMethod(e)) => Err(e.to_string()),
                    // A dangling reference: logged, nil, as before.
                    Err(ReadError::Store(e @ StoreError::NotFound(..))) => Err(e.to_string()),
                    Err(ReadError::Store(e)) => return Err(e.into()),
                },
                _ => Err(undefined()),
            });
        }
        Ok(text_method(value, name, arg))
    }

    /// The workspace object a path names, from the current object's point
    /// of view (reference §5.6): `""` the current object, `/` the root,
    /// `.`/`..` relative, `[ns/]Class` the nearest ancestor of that class,
    /// else a workspace-wide `[domain/]ns/class/instance` lookup.
    pub fn object_at_path(&self, path: &str) -> Result<Option<ObjectId>, EngineError> {
        let Some(current) = self.current else {
            return Ok(None);
        };
        let owned;
        let mut path = path;
        if let Some(rest) = path.strip_prefix("/.") {
            owned = format!(".{rest}");
            path = &owned;
        }
        if path.is_empty() {
            return Ok(Some(current));
        }
        if path == "/" {
            return Ok(Some(self.root_of(current)));
        }
        if path.starts_with('.') {
            let mut obj = current;
            for part in path.split('/') {
                match part {
                    "" | "." => {}
                    ".." => match self.ws.objects[obj].parent {
                        Some(p) => obj = p,
                        None => return Ok(None),
                    },
                    other => {
                        return Err(EngineError::InvalidPath(format!(
                            "bad part [{other}] in path [{path}]"
                        )))
                    }
                }
            }
            return Ok(Some(obj));
        }
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let Some((class, ns_segs)) = segs.split_last() else {
            return Ok(None);
        };
        let ns = ns_segs.join("/");
        let mut p = self.ws.objects[current].parent;
        while let Some(o) = p {
            let obj = &self.ws.objects[o];
            if obj.class.eq_ignore_ascii_case(class)
                && (ns.is_empty() || strip_domain(&obj.namespace).eq_ignore_ascii_case(&ns))
            {
                return Ok(Some(o));
            }
            p = obj.parent;
        }
        if segs.len() < 3 {
            return Ok(None);
        }
        let n = segs.len();
        let (inst, class, ns) = (segs[n - 1], segs[n - 2], segs[..n - 2].join("/"));
        let candidates = self.ws.objects.iter().enumerate().filter(|(_, o)| {
            !o.removed && o.class.eq_ignore_ascii_case(class) && glob_match(inst, &o.instance)
        });
        let mut fallback = None;
        for (i, o) in candidates {
            if o.namespace.eq_ignore_ascii_case(&ns) {
                return Ok(Some(i));
            }
            if fallback.is_none() && strip_domain(&o.namespace).eq_ignore_ascii_case(&ns) {
                fallback = Some(i);
            }
        }
        Ok(fallback)
    }
}

/// `hash[key]` for a hash value, with symbol and string keys alike.
fn hash_get(value: &AttrValue, key: &str) -> AttrValue {
    match value {
        AttrValue::Hash(pairs) => pairs
            .iter()
            .find(|(k, _)| k.to_text() == key)
            .map(|(_, v)| v.clone())
            .unwrap_or(AttrValue::Nil),
        _ => AttrValue::Nil,
    }
}

/// A namespace without its first segment (the domain).
pub(super) fn strip_domain(ns: &str) -> &str {
    ns.split_once('/').map(|(_, rest)| rest).unwrap_or("")
}

/// Case-insensitive shell glob with `*` and `?`.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A string, array or hash method named in a substitution chain, applied
/// to a value that is not a stored object.
fn text_method(value: &AttrValue, name: &str, arg: Option<&str>) -> Result<AttrValue, String> {
    let text = value.to_text();
    Ok(match (name, arg) {
        ("upcase", None) => AttrValue::Str(text.to_uppercase()),
        ("downcase", None) => AttrValue::Str(text.to_lowercase()),
        ("capitalize", None) => {
            let mut c = text.chars();
            AttrValue::Str(match c.next() {
                Some(f) => {
                    f.to_uppercase().collect::<String>() + c.as_str().to_lowercase().as_str()
                }
                None => String::new(),
            })
        }
        ("strip", None) => AttrValue::Str(text.trim().to_string()),
        ("length" | "size", None) => match value {
            AttrValue::Array(a) => AttrValue::Int(a.len() as i64),
            _ => AttrValue::Int(text.chars().count() as i64),
        },
        ("to_s", None) => AttrValue::Str(text),
        ("to_i", None) => AttrValue::Int(super::datatype::ruby_to_i(&text)),
        ("first", None) => match value {
            AttrValue::Array(a) => a.first().cloned().unwrap_or(AttrValue::Nil),
            _ => return Err(format!("undefined method `first' for \"{text}\"")),
        },
        ("get_option" | "[]", Some(key)) => match value {
            AttrValue::Hash(_) => hash_get(value, key),
            _ => return Err(format!("undefined method `{name}' for \"{text}\"")),
        },
        _ => return ruby_method(value, name, arg),
    })
}

/// The other methods of the Ruby subset (`automate_core::ruby::METHODS`:
/// `nil?`, `blank?`, `present?`, `empty?`, `include?(x)`, ...) on a value
/// that is not a stored object; ManageIQ passes the one argument as written,
/// a `:symbol` as a Symbol.
fn ruby_method(value: &AttrValue, name: &str, arg: Option<&str>) -> Result<AttrValue, String> {
    let args: Vec<RValue> = arg
        .map(|a| RValue::Str(a.to_string()))
        .into_iter()
        .collect();
    ruby::call(&to_ruby(value), name, &args)
        .map(from_ruby)
        .map_err(|e| e.to_string())
}

/// An attribute value as a value of the Ruby subset.
pub(super) fn to_ruby(v: &AttrValue) -> RValue {
    match v {
        AttrValue::Nil => RValue::Nil,
        AttrValue::Str(s) => RValue::Str(s.clone()),
        AttrValue::Int(i) => RValue::Int(*i),
        AttrValue::Float(f) => RValue::Float(*f),
        AttrValue::Bool(b) => RValue::Bool(*b),
        AttrValue::Symbol(s) => RValue::Sym(s.clone()),
        AttrValue::Array(items) => RValue::Array(items.iter().map(to_ruby).collect()),
        other => RValue::Str(other.to_text()),
    }
}

fn from_ruby(v: RValue) -> AttrValue {
    match v {
        RValue::Nil => AttrValue::Nil,
        RValue::Bool(b) => AttrValue::Bool(b),
        RValue::Int(i) => AttrValue::Int(i),
        RValue::Float(f) => AttrValue::Float(f),
        RValue::Str(s) => AttrValue::Str(s),
        RValue::Sym(s) => AttrValue::Symbol(s),
        RValue::Array(items) => AttrValue::Array(items.into_iter().map(from_ruby).collect()),
        RValue::Regex(src, _) => AttrValue::Str(src),
    }
}
