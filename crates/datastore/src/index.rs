//! The immutable, case-insensitive overlay index the engine resolves against.
//!
//! Built once from the loaded domains ([`Index::build`]); every name is
//! compared case-insensitively; lookups cost a few hash probes whatever the
//! size of the datastore. Overlay follows ManageIQ's domain search
//! (reference §3): among *enabled* domains, highest priority first, the first
//! domain holding the exact instance wins; only when none does, the first
//! holding a `.missing` instance in that class. A fully-qualified path
//! (`/ManageIQ/System/...`) is looked up in its own domain.

use super::model::{Class, Counts, Domain, Field, Namespace, Source};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// The name of the fallback instance.
pub const MISSING: &str = ".missing";

/// The kind of a schema field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeType {
    /// A value, substituted and stored on the object (the default).
    Attribute,
    /// A condition checked before the instance's fields: when false, the
    /// instance is dropped from the tree.
    Assertion,
    /// A method to run.
    Method,
    /// A URI to another instance, resolved and attached as a child.
    Relationship,
    /// A state of a state machine, with its `on_entry`, `on_exit` and
    /// `on_error` methods.
    State,
}

impl AeType {
    /// `None`/unknown means attribute, as in ManageIQ.
    pub fn parse(s: Option<&str>) -> AeType {
        match s.map(str::to_ascii_lowercase).as_deref() {
            Some("assertion") => AeType::Assertion,
            Some("method") => AeType::Method,
            Some("relationship") => AeType::Relationship,
            Some("state") => AeType::State,
            _ => AeType::Attribute,
        }
    }

    /// The name ManageIQ writes for the kind (`attribute`, `state`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AeType::Attribute => "attribute",
            AeType::Assertion => "assertion",
            AeType::Method => "method",
            AeType::Relationship => "relationship",
            AeType::State => "state",
        }
    }
}

/// A schema field or method input, typed for the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    /// The field name, case kept.
    pub name: String,
    /// What kind of field it is.
    pub aetype: AeType,
    /// `None` means string.
    pub datatype: Option<String>,
    /// The class's default value, used when an instance sets none; `None` is nil.
    pub default_value: Option<String>,
    /// Whether `${...}` in the value is substituted.
    pub substitute: bool,
    /// The message list, lower-cased (`["create"]` when blank).
    pub messages: Vec<String>,
    /// The `collect` expression, gathering values from the relationship's
    /// children into this object.
    pub collect: Option<String>,
    /// The method a state runs on entry.
    pub on_entry: Option<String>,
    /// The method a state runs on exit.
    pub on_exit: Option<String>,
    /// The method a state runs on error.
    pub on_error: Option<String>,
    /// How often a state may retry, as written (`"3"`, `3`).
    pub max_retries: Option<String>,
    /// How long a state may run, as written (`"1.hour"`, `600`).
    pub max_time: Option<String>,
}

impl FieldDef {
    fn from_field(f: Field<'_>) -> FieldDef {
        FieldDef {
            name: f.name().to_string(),
            aetype: AeType::parse(f.aetype()),
            datatype: f.datatype().map(str::to_string),
            default_value: f.default_value().map(str::to_string),
            substitute: f.substitute(),
            messages: parse_messages(f.message()),
            collect: f.collect().map(str::to_string),
            on_entry: f.on_entry().map(str::to_string),
            on_exit: f.on_exit().map(str::to_string),
            on_error: f.on_error().map(str::to_string),
            max_retries: f.max_retries(),
            max_time: f.max_time(),
        }
    }

    /// Does this field run for `message` (already lower-cased)?
    pub fn runs_for(&self, message: &str) -> bool {
        self.messages.iter().any(|m| m == "*" || m == message)
    }
}

/// `message` split on `,`, trimmed, lower-cased; blank means `create`.
pub fn parse_messages(message: Option<&str>) -> Vec<String> {
    let parts: Vec<String> = message
        .unwrap_or("")
        .split(',')
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        vec!["create".to_string()]
    } else {
        parts
    }
}

/// What an instance sets for one field (every part optional; nil kept).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueDef {
    /// The value as written, before substitution; `None` is nil.
    pub value: Option<String>,
    /// The `collect` expression.
    pub collect: Option<String>,
    /// The method a state runs on entry.
    pub on_entry: Option<String>,
    /// The method a state runs on exit.
    pub on_exit: Option<String>,
    /// The method a state runs on error.
    pub on_error: Option<String>,
    /// How often a state may retry, as written.
    pub max_retries: Option<String>,
    /// How long a state may run, as written.
    pub max_time: Option<String>,
}

/// An instance, its values aligned with the class's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceDef {
    /// The instance name, case kept (`.missing` for the fallback).
    pub name: String,
    /// `values[i]` is the value for `class.fields[i]`.
    pub values: Vec<Option<ValueDef>>,
    /// Field names the instance sets that the class does not define.
    pub unknown_fields: Vec<String>,
}

/// A method of a class.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodDef {
    /// The method name, case kept.
    pub name: String,
    /// `/<Domain>/<ns>/<Class>/<method>`.
    pub fqname: String,
    /// Where the body lives: `inline`, `builtin`, `expression`, `playbook`, ...
    pub location: String,
    /// The body's language: `rhai`, `ruby`, `perl`.
    pub language: String,
    /// `instance` or `class`.
    pub scope: String,
    /// The body (inline) or `data` (other locations).
    pub body: Option<Arc<str>>,
    /// The method's inputs, with their defaults, in file order.
    pub inputs: Vec<FieldDef>,
    /// Paths of methods loaded as modules before this one runs
    /// (ManageIQ's embedded methods).
    pub embedded_methods: Vec<String>,
}

/// A class of one domain, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassDef {
    /// The name of the domain the class belongs to.
    pub domain: Arc<str>,
    /// The namespace path without the domain (`System/Event/EmsEvent`).
    pub namespace: String,
    /// The class name, case kept.
    pub name: String,
    /// `Domain/ns`, built once ([`ClassDef::fq_namespace`]).
    fq_namespace: String,
    /// Fields in schema file order (which is priority order).
    pub fields: Vec<FieldDef>,
    /// The instances, in name order (look one up with [`ClassDef::instance`]).
    pub instances: Vec<InstanceDef>,
    instance_index: FxHashMap<String, usize>,
    methods: FxHashMap<String, Arc<MethodDef>>,
}

impl FieldDef {
    /// The field as the JSON views show it (`datastore show --json`,
    /// `GET /api/automate/<class>`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "aetype": self.aetype.as_str(),
            "datatype": self.datatype,
            "default_value": self.default_value,
            "message": self.messages.join(","),
            "substitute": self.substitute,
            "on_entry": self.on_entry,
            "on_exit": self.on_exit,
            "on_error": self.on_error,
            "collect": self.collect,
            "max_retries": self.max_retries,
            "max_time": self.max_time,
        })
    }
}

impl ClassDef {
    /// `Domain/ns` as ManageIQ's `Updated namespace` line shows it.
    pub fn fq_namespace(&self) -> &str {
        &self.fq_namespace
    }

    /// `/Domain/ns/Class`, as the views and the API name a class.
    pub fn fq_path(&self) -> String {
        format!("/{}", join_path(&self.fq_namespace, &self.name))
    }

    /// An instance by name, case-insensitively.
    pub fn instance(&self, name: &str) -> Option<&InstanceDef> {
        with_lower_key(&[name], |k| self.instance_index.get(k).copied()).map(|i| &self.instances[i])
    }

    /// A method by name, case-insensitively.
    pub fn method(&self, name: &str) -> Option<&Arc<MethodDef>> {
        with_lower_key(&[name], |k| self.methods.get(k))
    }

    /// The methods, in no particular order.
    pub fn methods(&self) -> impl Iterator<Item = &Arc<MethodDef>> {
        self.methods.values()
    }

    /// A class is a state machine when any field is a `state`.
    pub fn is_state_machine(&self) -> bool {
        self.fields.iter().any(|f| f.aetype == AeType::State)
    }
}

/// A domain's settings as the index sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainInfo {
    /// The domain's name, case kept.
    pub name: Arc<str>,
    /// Its priority: higher wins the overlay; `ManageIQ` is always 0.
    pub priority: i64,
    /// Whether the overlay searches it for partial paths; [`Index::class`]
    /// finds its classes either way.
    pub enabled: bool,
    /// Who may change it.
    pub source: Source,
    /// How much it holds (`datastore list`'s counts); zero where only
    /// `__domain__.yaml` was read ([`crate::dirs`]).
    pub counts: Counts,
}

/// The whole datastore, compiled for resolution. Immutable: a reload builds
/// a new one.
#[derive(Debug, Default)]
pub struct Index {
    /// All domains, highest priority first.
    domains: Vec<DomainInfo>,
    /// `lower(domain/ns/class)` → class (every domain, enabled or not).
    by_fqname: FxHashMap<String, Arc<ClassDef>>,
    /// `lower(ns/class)` → the classes of *enabled* domains with that
    /// relative path, highest priority first.
    by_relative: FxHashMap<String, Vec<Arc<ClassDef>>>,
    /// `lower(domain)` → every namespace path of the domain (`System`,
    /// `System/Event`, ...), case kept, sorted case-insensitively: the
    /// ones holding no class too.
    namespaces: FxHashMap<String, Vec<String>>,
}

/// What a domain or namespace holds directly ([`Index::children`]).
#[derive(Debug, Clone, Default)]
pub struct Children {
    /// The namespaces directly under it, by name (case-insensitively).
    pub namespaces: Vec<String>,
    /// The classes directly in it, by name (case-insensitively).
    pub classes: Vec<Arc<ClassDef>>,
}

impl Index {
    /// Compiles the given domains.
    pub fn build(domains: &[Domain]) -> Index {
        let mut infos: Vec<DomainInfo> = domains
            .iter()
            .map(|d| DomainInfo {
                name: Arc::from(d.name()),
                priority: d.priority(),
                enabled: d.enabled(),
                source: d.source(),
                counts: d.counts(),
            })
            .collect();
        let mut order: Vec<usize> = (0..domains.len()).collect();
        order.sort_by(|&a, &b| {
            infos[b]
                .priority
                .cmp(&infos[a].priority)
                .then_with(|| infos[a].name.cmp(&infos[b].name))
        });
        let mut index = Index::default();
        for &i in &order {
            let domain = &domains[i];
            let info = &infos[i];
            let mut classes = Vec::new();
            collect_classes(&domain.namespaces, &domain.classes, "", &mut classes);
            let mut paths = Vec::new();
            collect_namespaces(&domain.namespaces, "", &mut paths);
            paths.sort_by_key(|p| p.to_lowercase());
            index
                .namespaces
                .entry(lower(&info.name).into_owned())
                .or_insert(paths);
            for (ns, class) in classes {
                let def = Arc::new(compile_class(&info.name, &ns, class));
                let rel = lower(&join_path(&def.namespace, &def.name)).into_owned();
                let fq = format!("{}/{}", lower(&info.name), rel);
                index.by_fqname.entry(fq).or_insert_with(|| def.clone());
                if info.enabled {
                    index.by_relative.entry(rel).or_default().push(def);
                }
            }
        }
        index.domains = order.iter().map(|&i| infos[i].clone()).collect();
        infos.clear();
        index
    }

    /// All domains, highest priority first.
    pub fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }

    /// The domain named `name`, case-insensitively.
    pub fn domain(&self, name: &str) -> Option<&DomainInfo> {
        self.domains
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }

    /// ManageIQ's domain search (`find_first_fq_domain`): the class that a
    /// partial `ns/class/instance` resolves to, or `None` when no enabled
    /// domain has the instance or a `.missing` for it.
    pub fn resolve(&self, ns: &str, class: &str, instance: &str) -> Option<&Arc<ClassDef>> {
        let candidates = self.classes_at(ns, class);
        candidates
            .iter()
            .find(|c| c.instance(instance).is_some())
            .or_else(|| candidates.iter().find(|c| c.instance(MISSING).is_some()))
    }

    /// A class by its fully-qualified namespace (`Domain/ns`) and name.
    pub fn class(&self, fq_ns: &str, class: &str) -> Option<&Arc<ClassDef>> {
        with_lower_key(&[fq_ns, class], |k| self.by_fqname.get(k))
    }

    /// The classes of enabled domains at a partial `ns/class`, highest
    /// priority first.
    pub fn classes_at(&self, ns: &str, class: &str) -> &[Arc<ClassDef>] {
        with_lower_key(&[ns, class], |k| self.by_relative.get(k))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// A method at a partial `ns/class/method` with overlay: the first
    /// enabled domain by priority that has it.
    pub fn resolve_method(&self, ns: &str, class: &str, method: &str) -> Option<&Arc<MethodDef>> {
        self.classes_at(ns, class)
            .iter()
            .find_map(|c| c.method(method))
    }

    /// Every class in the index (each domain's own), for validation and listing.
    pub fn all_classes(&self) -> impl Iterator<Item = &Arc<ClassDef>> {
        self.by_fqname.values()
    }

    /// Every namespace path of `domain` (`System/Event`, ...), sorted
    /// case-insensitively, empty ones included.
    pub fn namespaces(&self, domain: &str) -> &[String] {
        self.namespaces
            .get(&*lower(domain))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The namespaces and classes directly under `ns` (`""`: the top) of
    /// `domain` (case-insensitively); `None` when `domain` is unknown or
    /// `ns` is neither empty nor one of its namespaces.
    pub fn children(&self, domain: &str, ns: &str) -> Option<Children> {
        let info = self.domain(domain)?;
        let all = self.namespaces(&info.name);
        let ns_l = lower(ns);
        if !ns.is_empty() && !all.iter().any(|p| lower(p) == ns_l) {
            return None;
        }
        let namespaces = all
            .iter()
            .filter_map(|p| {
                let pl = lower(p);
                let rest = if ns.is_empty() {
                    &p[..]
                } else if pl.len() > ns_l.len()
                    && pl.starts_with(&*ns_l)
                    && pl.as_bytes()[ns_l.len()] == b'/'
                {
                    &p[ns_l.len() + 1..]
                } else {
                    return None;
                };
                (!rest.contains('/')).then(|| rest.to_string())
            })
            .collect();
        let mut classes: Vec<Arc<ClassDef>> = self
            .by_fqname
            .values()
            .filter(|c| c.domain == info.name && lower(&c.namespace) == ns_l)
            .cloned()
            .collect();
        classes.sort_by_key(|c| c.name.to_lowercase());
        Some(Children {
            namespaces,
            classes,
        })
    }

    /// Wildcard relationship expansion (`/NS/CLASS/prefix*`): the instances
    /// of the single highest-priority enabled domain that has any match,
    /// as `(class, instance name)` sorted by name.
    pub fn wildcard(&self, ns: &str, class: &str, prefix: &str) -> Vec<(Arc<ClassDef>, String)> {
        let p = lower(prefix);
        for c in self.classes_at(ns, class) {
            let mut names: Vec<String> = c
                .instances
                .iter()
                .filter(|i| lower(&i.name).starts_with(&*p))
                .map(|i| i.name.clone())
                .collect();
            if !names.is_empty() {
                names.sort();
                return names.into_iter().map(|n| (c.clone(), n)).collect();
            }
        }
        Vec::new()
    }
}

fn collect_classes<'a>(
    namespaces: &'a [Namespace],
    classes: &'a [Class],
    prefix: &str,
    out: &mut Vec<(String, &'a Class)>,
) {
    for c in classes {
        out.push((prefix.to_string(), c));
    }
    for ns in namespaces {
        let path = join_path(prefix, &ns.name);
        collect_classes(&ns.namespaces, &ns.classes, &path, out);
    }
}

fn collect_namespaces(namespaces: &[Namespace], prefix: &str, out: &mut Vec<String>) {
    for ns in namespaces {
        let path = join_path(prefix, &ns.name);
        collect_namespaces(&ns.namespaces, &path, out);
        out.push(path);
    }
}

fn compile_class(domain: &Arc<str>, ns: &str, class: &Class) -> ClassDef {
    let fields: Vec<FieldDef> = class
        .schema()
        .into_iter()
        .map(FieldDef::from_field)
        .collect();
    let mut instances = Vec::with_capacity(class.instances.len());
    let mut instance_index = FxHashMap::default();
    for inst in &class.instances {
        let mut values = vec![None; fields.len()];
        let mut unknown_fields = Vec::new();
        for (fname, fv) in inst.values() {
            match fields
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(fname))
            {
                Some(pos) => {
                    values[pos] = Some(ValueDef {
                        value: fv.get("value"),
                        collect: fv.get("collect"),
                        on_entry: fv.get("on_entry"),
                        on_exit: fv.get("on_exit"),
                        on_error: fv.get("on_error"),
                        max_retries: fv.get("max_retries"),
                        max_time: fv.get("max_time"),
                    })
                }
                None => unknown_fields.push(fname.to_string()),
            }
        }
        let name = inst.name().to_string();
        // The first of two names differing only in case wins (validate reports it).
        instance_index
            .entry(lower(&name).into_owned())
            .or_insert(instances.len());
        instances.push(InstanceDef {
            name,
            values,
            unknown_fields,
        });
    }
    let mut methods = FxHashMap::default();
    for m in &class.methods {
        let name = m.name().to_string();
        let def = MethodDef {
            fqname: format!("/{}/{}/{}", domain, join_path(ns, class.name()), name),
            location: m.location().to_string(),
            language: m.language().to_string(),
            scope: m.scope().to_string(),
            body: m.data().map(Arc::from),
            inputs: m.inputs().into_iter().map(FieldDef::from_field).collect(),
            embedded_methods: m
                .embedded_methods()
                .into_iter()
                .map(str::to_string)
                .collect(),
            name,
        };
        methods
            .entry(lower(&def.name).into_owned())
            .or_insert_with(|| Arc::new(def));
    }
    let fq_namespace = if ns.is_empty() {
        domain.to_string()
    } else {
        format!("{domain}/{ns}")
    };
    ClassDef {
        domain: domain.clone(),
        namespace: ns.to_string(),
        fq_namespace,
        name: class.name().to_string(),
        fields,
        instances,
        instance_index,
        methods,
    }
}

/// Calls `f` with the lower-cased, `/`-joined non-empty `parts`, built on
/// the stack when they are short ASCII (every real name), so a lookup does
/// not allocate.
fn with_lower_key<R>(parts: &[&str], f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 192];
    let mut n = 0;
    let mut fits = true;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        let need = part.len() + usize::from(n > 0);
        if !part.is_ascii() || n + need > buf.len() {
            fits = false;
            break;
        }
        if n > 0 {
            buf[n] = b'/';
            n += 1;
        }
        for b in part.bytes() {
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
    }
    if fits {
        if let Ok(key) = std::str::from_utf8(&buf[..n]) {
            return f(key);
        }
    }
    let joined: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    f(&joined.join("/").to_lowercase())
}

/// Joins path segments with `/`, skipping empty ones.
pub fn join_path(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Lower-cases a name for case-insensitive comparison, without allocating
/// when it is already lower-case ASCII.
pub fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(s.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(s)
        }
    } else {
        std::borrow::Cow::Owned(s.to_lowercase())
    }
}
