//! The datastore as it is on disk: domains, namespaces, classes, instances
//! and methods, each holding the YAML document it was read from.
//!
//! Every object keeps its parsed document ([`Mapping`]) as the single source
//! of truth, so what was read is what gets written: key order, nil vs `''`,
//! `'100'` vs `100`, unknown keys. Typed accessors ([`Field`], [`Class::schema`],
//! [`Instance::values`], ...) read from it. The loader ([`super::fs`]) checks
//! the document shapes, so the accessors never fail: a key of the wrong type
//! reads as absent.

use super::yaml::{Mapping, Value};

/// The `object_type` / `version` / `object` envelope every export file has.
#[derive(Debug, Clone, PartialEq)]
pub struct Document(pub Mapping);

impl Document {
    /// A fresh envelope, as ManageIQ's exporter writes it.
    pub fn new(object_type: &str, object: Mapping) -> Self {
        let mut m = Mapping::new();
        m.set("object_type", Value::Str(object_type.to_string()));
        m.set("version", Value::Float(1.0));
        m.set("object", Value::Map(object));
        Document(m)
    }

    /// The `object` mapping (`attributes`, and `schema`, `fields` or `inputs`);
    /// `None` when the file has none.
    pub fn object(&self) -> Option<&Mapping> {
        self.0.get("object").and_then(Value::as_map)
    }

    fn object_mut(&mut self) -> Option<&mut Mapping> {
        match self.0.get_mut("object") {
            Some(Value::Map(m)) => Some(m),
            _ => None,
        }
    }

    /// `object.attributes` (empty when missing).
    pub fn attributes(&self) -> &Mapping {
        static EMPTY: Mapping = Mapping(Vec::new());
        self.object()
            .and_then(|o| o.get("attributes"))
            .and_then(Value::as_map)
            .unwrap_or(&EMPTY)
    }

    /// Sets one attribute in place (appending it if new).
    pub fn set_attribute(&mut self, key: &str, value: Value) {
        if let Some(obj) = self.object_mut() {
            match obj.get_mut("attributes") {
                Some(Value::Map(attrs)) => attrs.set(key, value),
                _ => {
                    let mut attrs = Mapping::new();
                    attrs.set(key, value);
                    obj.set("attributes", Value::Map(attrs));
                }
            }
        }
    }

    /// Removes one attribute.
    pub fn remove_attribute(&mut self, key: &str) -> Option<Value> {
        match self.object_mut()?.get_mut("attributes") {
            Some(Value::Map(attrs)) => attrs.remove(key),
            _ => None,
        }
    }

    /// The `object.<key>` list of single-key maps (`schema`, `fields`, `inputs`).
    fn entries(&self, key: &str) -> Vec<(&str, &Mapping)> {
        let Some(items) = self
            .object()
            .and_then(|o| o.get(key))
            .and_then(Value::as_seq)
        else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| {
                let m = item.as_map()?;
                let (k, v) = m.0.first()?;
                Some((k.as_str(), v.as_map()?))
            })
            .collect()
    }

    /// The string attribute `key` (`None` for nil or absent).
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes().get_str(key)
    }
}

/// Who may change a domain (reference §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Shipped with the product (the `ManageIQ` domain): read-only.
    System,
    /// Written by users: the only source that may be changed.
    User,
    /// A user domain locked against change (ManageIQ's domain lock): read-only;
    /// the legacy `system: true` key reads as this.
    UserLocked,
    /// Imported from a Git repository (ManageIQ's Git-backed domains): read-only.
    Remote,
}

impl Source {
    /// Reads `source` as `__domain__.yaml` writes it (`system`, `user`,
    /// `user_locked`, `remote`; exact, lower case); `None` for anything else.
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "system" => Some(Source::System),
            "user" => Some(Source::User),
            "user_locked" => Some(Source::UserLocked),
            "remote" => Some(Source::Remote),
            _ => None,
        }
    }

    /// The name `__domain__.yaml` writes for the source (`user_locked`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::System => "system",
            Source::User => "user",
            Source::UserLocked => "user_locked",
            Source::Remote => "remote",
        }
    }

    /// `system`, `user_locked` and `remote` domains refuse every write command.
    pub fn is_read_only(self) -> bool {
        !matches!(self, Source::User)
    }
}

/// A domain: the root namespace of one overlay layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    /// The directory the domain lives in (its name, case kept).
    pub dir_name: String,
    /// `__domain__.yaml`.
    pub doc: Document,
    /// The namespaces directly in the domain directory, in name order.
    pub namespaces: Vec<Namespace>,
    /// The classes directly in the domain directory (rare; ManageIQ puts them in
    /// namespaces).
    pub classes: Vec<Class>,
    /// The `automate test` files (a class's `__tests__/`, the domain's
    /// `tests/`): (path below the domain directory, `/`-separated; bytes).
    /// ManageIQ ignores them; they travel with the domain through import
    /// and export.
    pub tests: Vec<(String, Vec<u8>)>,
}

impl Domain {
    /// The name from `__domain__.yaml`, else the directory name.
    pub fn name(&self) -> &str {
        self.doc.attr_str("name").unwrap_or(&self.dir_name)
    }

    /// `priority` (higher wins). `ManageIQ` is always 0.
    pub fn priority(&self) -> i64 {
        if self.name().eq_ignore_ascii_case("ManageIQ") {
            return 0;
        }
        self.doc
            .attributes()
            .get("priority")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// `enabled`; a `system` domain is always enabled, a missing flag means
    /// enabled (the datastore's own files are trusted).
    pub fn enabled(&self) -> bool {
        if self.source() == Source::System {
            return true;
        }
        self.doc
            .attributes()
            .get("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// `source`; the legacy `system: true` flag means `user_locked`.
    pub fn source(&self) -> Source {
        let attrs = self.doc.attributes();
        if let Some(s) = attrs.get_str("source").and_then(Source::parse) {
            return s;
        }
        if self.name().eq_ignore_ascii_case("ManageIQ") {
            return Source::System;
        }
        match attrs.get("system").and_then(Value::as_bool) {
            Some(true) => Source::UserLocked,
            _ => Source::User,
        }
    }

    /// Counts of (namespaces, classes, instances, methods) below the domain.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for ns in &self.namespaces {
            ns.add_counts(&mut c);
        }
        for class in &self.classes {
            class.add_counts(&mut c);
        }
        c
    }
}

/// How much a domain holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Namespaces, nested ones included.
    pub namespaces: usize,
    /// Classes.
    pub classes: usize,
    /// Instances of those classes.
    pub instances: usize,
    /// Methods of those classes.
    pub methods: usize,
}

/// A namespace directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    /// The namespace name: ManageIQ takes it from the directory, not the YAML.
    pub name: String,
    /// `__namespace__.yaml` (only `display_name` and `description` matter).
    pub doc: Document,
    /// The namespaces nested in this one.
    pub namespaces: Vec<Namespace>,
    /// The classes in this namespace.
    pub classes: Vec<Class>,
}

impl Namespace {
    fn add_counts(&self, c: &mut Counts) {
        c.namespaces += 1;
        for ns in &self.namespaces {
            ns.add_counts(c);
        }
        for class in &self.classes {
            class.add_counts(c);
        }
    }
}

/// A class: its schema, instances and methods.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// The directory, `<Name>.class` (may differ from the name).
    pub dir_name: String,
    /// `__class__.yaml`.
    pub doc: Document,
    /// The instances, one file each, in name order.
    pub instances: Vec<Instance>,
    /// The methods from `__methods__/`, in name order.
    pub methods: Vec<Method>,
}

impl Class {
    /// The class name from the YAML (falls back to the directory stem).
    pub fn name(&self) -> &str {
        self.doc.attr_str("name").unwrap_or_else(|| {
            self.dir_name
                .strip_suffix(".class")
                .unwrap_or(&self.dir_name)
        })
    }

    /// The schema fields, in file order.
    pub fn schema(&self) -> Vec<Field<'_>> {
        self.doc
            .entries("schema")
            .into_iter()
            .map(|(_, m)| Field(m))
            .collect()
    }

    fn add_counts(&self, c: &mut Counts) {
        c.classes += 1;
        c.instances += self.instances.len();
        c.methods += self.methods.len();
    }
}

/// One field definition of a class schema or of a method's inputs, with
/// every key ManageIQ writes. `None` is nil; `Some("")` is the empty string.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a>(pub &'a Mapping);

macro_rules! str_keys {
    ($($name:ident),*) => {
        $(
            #[doc = concat!("`", stringify!($name), "`")]
            pub fn $name(&self) -> Option<&'a str> {
                self.0.get_str(stringify!($name))
            }
        )*
    };
}

impl<'a> Field<'a> {
    str_keys!(
        aetype,
        display_name,
        datatype,
        owner,
        default_value,
        message,
        visibility,
        collect,
        scope,
        description,
        condition,
        on_entry,
        on_exit,
        on_error
    );

    /// `name`; `""` when absent.
    pub fn name(&self) -> &'a str {
        self.0.get_str("name").unwrap_or("")
    }

    /// `priority` (file order is what counts; gaps are allowed).
    pub fn priority(&self) -> Option<i64> {
        self.0.get("priority").and_then(Value::as_i64)
    }

    /// `substitute`: nil is coerced to false on import, but a missing key
    /// means the model default, true.
    pub fn substitute(&self) -> bool {
        match self.0.get("substitute") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Null) => false,
            Some(Value::Str(s)) => s.eq_ignore_ascii_case("true"),
            _ => true,
        }
    }

    /// `max_retries` as text (written as a quoted string, may be an int).
    pub fn max_retries(&self) -> Option<String> {
        scalar(self.0.get("max_retries"))
    }

    /// `max_time` as text (`"1.hour"`, `600`).
    pub fn max_time(&self) -> Option<String> {
        scalar(self.0.get("max_time"))
    }
}

/// A non-null scalar as text.
pub(crate) fn scalar(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(v) => v.scalar_text(),
    }
}

/// An instance of a class: values for some of its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The file name (`_missing.yaml`); the name itself comes from the YAML.
    pub file_name: String,
    /// The instance file (`object.attributes.name` and `object.fields`).
    pub doc: Document,
}

impl Instance {
    /// The instance name (`.missing` for `_missing.yaml`).
    pub fn name(&self) -> &str {
        self.doc.attr_str("name").unwrap_or("")
    }

    /// `(field name, value attributes)` in file order. Value attributes are
    /// `value, on_entry, on_exit, on_error, max_retries, max_time, collect`.
    pub fn values(&self) -> Vec<(&str, FieldValue<'_>)> {
        self.doc
            .entries("fields")
            .into_iter()
            .map(|(k, m)| (k, FieldValue(m)))
            .collect()
    }
}

/// The value attributes an instance sets for one field.
#[derive(Debug, Clone, Copy)]
pub struct FieldValue<'a>(pub &'a Mapping);

impl FieldValue<'_> {
    /// One of `value, on_entry, on_exit, on_error, max_retries, max_time,
    /// collect` as text; `None` when nil or absent.
    pub fn get(&self, key: &str) -> Option<String> {
        scalar(self.0.get(key))
    }
}

/// A method: metadata, inputs and (for inline methods) a body file.
#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    /// The `.yaml` file name.
    pub file_name: String,
    /// The method's `.yaml` (`name`, `location`, `language`, `scope`, `inputs`, and
    /// `data` when there is no body file).
    pub doc: Document,
    /// The body file beside it (`<m>.rhai`, `<m>.rb`, `<m>.pl`), byte for byte.
    pub body: Option<MethodBody>,
}

/// An inline method's body file.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodBody {
    /// The body file's name (`<m>.rhai`, `<m>.rb`, `<m>.pl`).
    pub file_name: String,
    /// Its content, byte for byte.
    pub bytes: Vec<u8>,
}

impl Method {
    /// The method name from the YAML; `""` when absent.
    pub fn name(&self) -> &str {
        self.doc.attr_str("name").unwrap_or("")
    }

    /// `builtin`, `inline`, `expression`, `playbook`, ...
    pub fn location(&self) -> &str {
        self.doc.attr_str("location").unwrap_or("inline")
    }

    /// `rhai`, `ruby`, `perl`.
    pub fn language(&self) -> &str {
        self.doc.attr_str("language").unwrap_or("ruby")
    }

    /// `scope`: `instance` (the default when absent) or `class`.
    pub fn scope(&self) -> &str {
        self.doc.attr_str("scope").unwrap_or("instance")
    }

    /// The method body: the body file, else `data` in the YAML.
    pub fn data(&self) -> Option<String> {
        match &self.body {
            Some(b) => Some(String::from_utf8_lossy(&b.bytes).into_owned()),
            None => self.doc.attr_str("data").map(str::to_string),
        }
    }

    /// `embedded_methods`: paths of methods loaded as modules.
    pub fn embedded_methods(&self) -> Vec<&str> {
        self.doc
            .attributes()
            .get("embedded_methods")
            .and_then(Value::as_seq)
            .map(|s| s.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// `options` (playbook settings and the like).
    pub fn options(&self) -> Option<&Mapping> {
        self.doc.attributes().get("options").and_then(Value::as_map)
    }

    /// The method's input fields.
    pub fn inputs(&self) -> Vec<Field<'_>> {
        self.doc
            .entries("inputs")
            .into_iter()
            .map(|(_, m)| Field(m))
            .collect()
    }
}
