//! `automate datastore validate`: every problem in every file of a datastore.
//!
//! [`validate`] reports, sorted by file then line:
//!
//! * the loader's problems (YAML syntax with file:line, bad document shapes);
//! * names ManageIQ's models would refuse (domain and namespace `[\w.\-$]+`,
//!   class and instance `[\w.-]+`, method and field `\w+`, ASCII `\w` as in Ruby);
//! * names that differ only in case among siblings (namespaces, classes,
//!   instances, methods per scope, schema fields, method inputs, domains);
//! * values outside ManageIQ's lists: `aetype`, `datatype`, field `scope`,
//!   method `language`/`location`/`scope`, domain `source`;
//! * instance values for fields the class does not define (ManageIQ's
//!   `FieldNotFound`, which aborts an import);
//! * relationships whose target class exists in no domain. Only paths with no
//!   `${...}` are checked: substitutions cannot be resolved statically.
//!
//! [`check_domain`] is the per-domain part (no cross-domain relationship
//! check), which `import` uses to refuse a domain ManageIQ would refuse.
//!
//! * assertions outside the Ruby subset automate evaluates, and `${...}`
//!   method chains substitution cannot apply (`validate_ruby`).
//!
//! Dangling relationships and the Ruby checks are warnings ([`Report::warnings`]); the rest are
//! errors. Method bodies are not compiled here: [`validate_report`] takes
//! [`MethodBodyCheck`] hooks, where the Rhai compile check plugs in.

use super::fs::{self as dsfs, Problem, CLASS_FILE, DOMAIN_FILE, METHODS_DIR, NAMESPACE_FILE};
use super::index::{lower, Index};
use super::model::{Class, Document, Domain, Field, Method, Namespace};
use super::yaml::{Mapping, Value};
use automate_core::uri::{self, Scheme};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `aetype` values ManageIQ accepts (nil means attribute).
pub const AETYPES: &[&str] = &["assertion", "attribute", "method", "relationship", "state"];
/// `datatype` values ManageIQ accepts (nil means string).
pub const DATATYPES: &[&str] = &[
    "string",
    "symbol",
    "integer",
    "float",
    "boolean",
    "time",
    "array",
    "password",
    "null coalescing",
    "host",
    "vm",
    "storage",
    "ems",
    "policy",
    "server",
    "request",
    "provision",
    "user",
];
/// Field `scope` values.
pub const FIELD_SCOPES: &[&str] = &["class", "instance", "local"];
/// Method `scope` values.
pub const METHOD_SCOPES: &[&str] = &["class", "instance"];
/// Method `language` values (`rhai` is this product's; ruby and perl are kept, never run).
pub const LANGUAGES: &[&str] = &["rhai", "ruby", "perl"];
/// Method `location` values (`uri` is legacy but still found in old exports).
pub const LOCATIONS: &[&str] = &[
    "builtin",
    "inline",
    "expression",
    "playbook",
    "ansible_job_template",
    "ansible_workflow_template",
    "uri",
];
/// Domain `source` values.
pub const SOURCES: &[&str] = &["system", "user", "user_locked", "remote"];

/// A check run on every method (the Rhai compile check plugs in here): it
/// gets the method and the path of its `.yaml` file and returns problems.
pub type MethodBodyCheck = dyn Fn(&Method, &Path) -> Vec<Problem> + Sync;

/// What [`validate_report`] found, each list sorted by file then line.
#[derive(Debug, Default)]
pub struct Report {
    /// Files ManageIQ would refuse or the engine cannot use.
    pub errors: Vec<Problem>,
    /// Content that loads but points nowhere: relationships whose class
    /// exists in no domain (the shipped ManageIQ domain has 5 such leftovers),
    /// and files the loader skips on purpose (`*.YAML`).
    pub warnings: Vec<Problem>,
}

impl Report {
    /// Errors and warnings together, sorted by file then line.
    pub fn all(&self) -> Vec<Problem> {
        let mut v: Vec<Problem> = self.errors.iter().chain(&self.warnings).cloned().collect();
        sort_problems(&mut v);
        v
    }
}

/// Every problem in the datastore at `root` (errors and warnings), sorted
/// by file then line.
pub fn validate(root: &Path) -> Vec<Problem> {
    validate_report(root, &[]).all()
}

/// [`validate`], split into errors and warnings, with extra per-method
/// checks (method body compilation plugs in here).
pub fn validate_report(root: &Path, method_checks: &[&MethodBodyCheck]) -> Report {
    let report = dsfs::read_root(root);
    let mut problems = report.problems;
    // `automate test` files travel with the domain: their syntax is checked
    // here too (file:line).
    problems.extend(crate::tests_file::validate(root));
    let root_is_domain = root.join(DOMAIN_FILE).is_file();
    let dirs: Vec<PathBuf> = report
        .domains
        .iter()
        .map(|d| {
            if root_is_domain {
                root.to_path_buf()
            } else {
                root.join(&d.dir_name)
            }
        })
        .collect();

    let mut seen: HashMap<String, &Path> = HashMap::new();
    for (domain, dir) in report.domains.iter().zip(&dirs) {
        let file = dir.join(DOMAIN_FILE);
        if let Some(first) = seen.get(&*lower(domain.name())) {
            problems.push(
                Problem::new(
                    &file,
                    format!(
                        "domain `{}` is also defined in `{}`: domain names must differ in more \
                         than case; rename one of them",
                        domain.name(),
                        first.display()
                    ),
                )
                .at_line(attr_line(&file, "name"))
                .with_field("name"),
            );
        } else {
            seen.insert(lower(domain.name()).into_owned(), dir);
        }
        problems.extend(check_domain(domain, dir));
        if !method_checks.is_empty() {
            for_each_method(domain, dir, &mut |m, path| {
                for check in method_checks {
                    problems.extend(check(m, path));
                }
            });
        }
    }

    let index = Index::build(&report.domains);
    // The loader's warnings (files it skips on purpose, such as `*.YAML`).
    let (mut warnings, mut problems): (Vec<Problem>, Vec<Problem>) =
        problems.into_iter().partition(|p| p.warning);
    for (domain, dir) in report.domains.iter().zip(&dirs) {
        warnings.extend(check_relationships(domain, dir, &index));
        warnings.extend(super::validate_ruby::check_ruby(domain, dir));
    }
    sort_problems(&mut problems);
    sort_problems(&mut warnings);
    Report {
        errors: problems,
        warnings,
    }
}

/// Sorts problems by file, line, column, then message.
pub fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by(|a, b| {
        (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
    });
}

/// The checks of one domain on its own (names, duplicates, value lists,
/// unknown instance fields). `dir` is the domain directory the files were
/// read from, used to name them.
pub fn check_domain(domain: &Domain, dir: &Path) -> Vec<Problem> {
    let mut out = Vec::new();
    let file = dir.join(DOMAIN_FILE);
    let name = domain.name();
    if let Some(reason) = bad_name(name, NameKind::Domain) {
        out.push(name_problem(&file, "domain", name, &reason));
    } else if name == "$" {
        out.push(name_problem(
            &file,
            "domain",
            name,
            "`$` is reserved for the built-in object namespace",
        ));
    }
    let attrs = domain.doc.attributes();
    check_enum(&mut out, &file, attrs, "source", SOURCES);
    check_type(&mut out, &file, attrs, "priority", ValueKind::Int);
    check_type(&mut out, &file, attrs, "enabled", ValueKind::Bool);
    check_level(dir, &domain.namespaces, &domain.classes, &mut out);
    out
}

/// Checks the namespaces and classes directly in `dir`, then recurses.
fn check_level(dir: &Path, namespaces: &[Namespace], classes: &[Class], out: &mut Vec<Problem>) {
    let mut ns_seen: HashMap<String, &str> = HashMap::new();
    for ns in namespaces {
        let ns_dir = dir.join(&ns.name);
        let file = ns_dir.join(NAMESPACE_FILE);
        if let Some(reason) = bad_name(&ns.name, NameKind::Namespace) {
            out.push(
                Problem::new(
                    &file,
                    format!(
                        "namespace directory name `{}` is invalid: {reason}; rename the directory",
                        ns.name
                    ),
                )
                .at_line(1),
            );
        }
        if let Some(first) = ns_seen.get(&*lower(&ns.name)) {
            out.push(
                Problem::new(
                    &file,
                    format!(
                        "namespace `{}` differs only in case from namespace `{first}` beside it; \
                         names are case-insensitive, so merge or rename one",
                        ns.name
                    ),
                )
                .at_line(1),
            );
        } else {
            ns_seen.insert(lower(&ns.name).into_owned(), &ns.name);
        }
        check_level(&ns_dir, &ns.namespaces, &ns.classes, out);
    }
    let mut class_seen: HashMap<String, &str> = HashMap::new();
    for class in classes {
        let class_dir = dir.join(&class.dir_name);
        let file = class_dir.join(CLASS_FILE);
        let name = class.name();
        if let Some(reason) = bad_name(name, NameKind::Class) {
            out.push(name_problem(&file, "class", name, &reason));
        }
        if let Some(first) = class_seen.get(&*lower(name)) {
            out.push(
                Problem::new(
                    &file,
                    format!(
                        "class `{name}` differs only in case from class `{first}` in the same \
                         namespace; names are case-insensitive, so rename one"
                    ),
                )
                .at_line(attr_line(&file, "name"))
                .with_field("name"),
            );
        } else {
            class_seen.insert(lower(name).into_owned(), name);
        }
        check_class(class, &class_dir, out);
    }
}

fn check_class(class: &Class, class_dir: &Path, out: &mut Vec<Problem>) {
    let class_file = class_dir.join(CLASS_FILE);
    check_fields(&class.doc, "schema", &class_file, false, out);
    let schema: Vec<Field<'_>> = class.schema();

    let mut inst_seen: HashMap<String, &str> = HashMap::new();
    for inst in &class.instances {
        let file = class_dir.join(&inst.file_name);
        let name = inst.name();
        if let Some(reason) = bad_name(name, NameKind::Instance) {
            out.push(name_problem(&file, "instance", name, &reason));
        }
        if let Some(first) = inst_seen.get(&*lower(name)) {
            out.push(
                Problem::new(
                    &file,
                    format!(
                        "instance `{name}` differs only in case from instance `{first}` of the \
                         same class; names are case-insensitive, so rename or delete one"
                    ),
                )
                .at_line(attr_line(&file, "name"))
                .with_field("name"),
            );
        } else {
            inst_seen.insert(lower(name).into_owned(), name);
        }
        let mut field_seen: HashMap<String, usize> = HashMap::new();
        for (i, (fname, _)) in inst.values().into_iter().enumerate() {
            let known = schema.iter().any(|f| f.name().eq_ignore_ascii_case(fname));
            if !known {
                out.push(
                    Problem::new(
                        &file,
                        format!(
                            "no such field in the schema of class `{}` (ManageIQ: \
                             FieldNotFound); add it to `{}/{CLASS_FILE}` or remove the value",
                            class.name(),
                            class.dir_name
                        ),
                    )
                    .at_line(entry_line(&file, "fields", i, None))
                    .with_field(fname),
                );
            }
            if field_seen.insert(lower(fname).into_owned(), i).is_some() {
                out.push(
                    Problem::new(&file, "the field is given more than once; keep one value")
                        .at_line(entry_line(&file, "fields", i, None))
                        .with_field(fname),
                );
            }
        }
    }

    let methods_dir = class_dir.join(METHODS_DIR);
    let mut method_seen: HashMap<(String, String), &str> = HashMap::new();
    for m in &class.methods {
        let file = methods_dir.join(&m.file_name);
        let name = m.name();
        if let Some(reason) = bad_name(name, NameKind::Method) {
            out.push(name_problem(&file, "method", name, &reason));
        }
        let key = (lower(m.scope()).into_owned(), lower(name).into_owned());
        if let Some(first) = method_seen.get(&key) {
            out.push(
                Problem::new(
                    &file,
                    format!(
                        "method `{name}` differs only in case from method `{first}` of the same \
                         class and scope; names are case-insensitive, so rename one"
                    ),
                )
                .at_line(attr_line(&file, "name"))
                .with_field("name"),
            );
        } else {
            method_seen.insert(key, name);
        }
        let attrs = m.doc.attributes();
        check_enum(out, &file, attrs, "language", LANGUAGES);
        check_enum(out, &file, attrs, "location", LOCATIONS);
        check_enum(out, &file, attrs, "scope", METHOD_SCOPES);
        check_fields(&m.doc, "inputs", &file, true, out);
    }
}

/// Checks the field definitions of a class schema or of method inputs.
fn check_fields(doc: &Document, key: &str, file: &Path, inputs: bool, out: &mut Vec<Problem>) {
    let Some(items) = doc
        .object()
        .and_then(|o| o.get(key))
        .and_then(Value::as_seq)
    else {
        return;
    };
    let what = if inputs { "input" } else { "field" };
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let Some(def) = item
            .as_map()
            .and_then(|m| m.0.first())
            .and_then(|(_, v)| v.as_map())
        else {
            continue; // the loader reported the shape
        };
        let line = |sub: Option<&str>| entry_line(file, key, i, sub);
        let name = match def.get("name") {
            Some(Value::Str(s)) => s.clone(),
            Some(Value::Int(n)) => n.to_string(),
            _ => {
                out.push(
                    Problem::new(
                        file,
                        format!("{what} {} of `{key}` has no name; give it a `name:`", i + 1),
                    )
                    .at_line(line(None))
                    .with_field("name"),
                );
                continue;
            }
        };
        if let Some(reason) = bad_name(&name, NameKind::Field) {
            out.push(
                Problem::new(file, format!("{what} name is invalid: {reason}"))
                    .at_line(line(Some("name")))
                    .with_field(&name),
            );
        }
        if let Some(first) = seen.get(&*lower(&name)) {
            out.push(
                Problem::new(
                    file,
                    format!(
                        "{what} name differs only in case from {what} `{first}`; names are \
                         case-insensitive, so rename one"
                    ),
                )
                .at_line(line(Some("name")))
                .with_field(&name),
            );
        } else {
            seen.insert(lower(&name).into_owned(), name.clone());
        }
        for (k, allowed) in [
            ("aetype", AETYPES),
            ("datatype", DATATYPES),
            ("scope", FIELD_SCOPES),
        ] {
            match def.get(k) {
                None | Some(Value::Null) => {}
                Some(Value::Str(s)) if allowed.contains(&s.as_str()) => {}
                Some(v) => out.push(
                    Problem::new(
                        file,
                        format!("{what} {k} `{v}` is not one of {}", allowed.join(", ")),
                    )
                    .at_line(line(Some(k)))
                    .with_field(&name),
                ),
            }
        }
        match def.get("substitute") {
            None | Some(Value::Null) | Some(Value::Bool(_)) => {}
            Some(v) => out.push(
                Problem::new(
                    file,
                    format!("{what} substitute `{v}` must be true or false"),
                )
                .at_line(line(Some("substitute")))
                .with_field(&name),
            ),
        }
    }
}

/// Relationship targets of one domain that exist in no domain of `index`.
pub fn check_relationships(domain: &Domain, dir: &Path, index: &Index) -> Vec<Problem> {
    let mut out = Vec::new();
    relationships_level(dir, &domain.namespaces, &domain.classes, index, &mut out);
    out
}

fn relationships_level(
    dir: &Path,
    namespaces: &[Namespace],
    classes: &[Class],
    index: &Index,
    out: &mut Vec<Problem>,
) {
    for ns in namespaces {
        relationships_level(&dir.join(&ns.name), &ns.namespaces, &ns.classes, index, out);
    }
    for class in classes {
        let class_dir = dir.join(&class.dir_name);
        let class_file = class_dir.join(CLASS_FILE);
        let schema = class.schema();
        for (i, f) in schema.iter().enumerate() {
            if !f
                .aetype()
                .is_some_and(|a| a.eq_ignore_ascii_case("relationship"))
            {
                continue;
            }
            if let Some(target) = f.default_value() {
                if let Some(msg) = missing_target(target, index) {
                    out.push(
                        Problem::new(&class_file, msg)
                            .at_line(entry_line(&class_file, "schema", i, Some("default_value")))
                            .with_field(f.name()),
                    );
                }
            }
        }
        for inst in &class.instances {
            let file = class_dir.join(&inst.file_name);
            for (i, (fname, fv)) in inst.values().into_iter().enumerate() {
                let is_rel = schema.iter().any(|f| {
                    f.name().eq_ignore_ascii_case(fname)
                        && f.aetype()
                            .is_some_and(|a| a.eq_ignore_ascii_case("relationship"))
                });
                if !is_rel {
                    continue;
                }
                if let Some(target) = fv.get("value") {
                    if let Some(msg) = missing_target(&target, index) {
                        out.push(
                            Problem::new(&file, msg)
                                .at_line(entry_line(&file, "fields", i, Some("value")))
                                .with_field(fname),
                        );
                    }
                }
            }
        }
    }
}

/// Why a relationship value points nowhere, or `None` when its class exists
/// (or the value cannot be checked statically).
fn missing_target(value: &str, index: &Index) -> Option<String> {
    let v = value.trim();
    if v.is_empty() || v.contains("${") {
        return None;
    }
    let parsed = match uri::parse(v) {
        Ok(u) => u,
        Err(e) => {
            return Some(format!(
                "relationship `{v}` is not a valid Automate URI: {e}"
            ))
        }
    };
    if !matches!(parsed.scheme, None | Some(Scheme::MiqaeDb)) {
        return None;
    }
    let parts = uri::split_path(&parsed.path);
    let Some(class) = parts.class.as_deref() else {
        return Some(format!(
            "relationship `{v}` names no class: write it as /Namespace/Class/Instance"
        ));
    };
    let ns = parts.namespace.as_str();
    let found = index.class(ns, class).is_some()
        || index
            .domains()
            .iter()
            .any(|d| index.class(&join(&d.name, ns), class).is_some());
    if found {
        None
    } else {
        let path = if ns.is_empty() {
            format!("/{class}")
        } else {
            format!("/{ns}/{class}")
        };
        Some(format!(
            "relationship `{v}`: class `{path}` does not exist in any domain; fix the path or \
             add the class"
        ))
    }
}

fn join(a: &str, b: &str) -> String {
    super::index::join_path(a, b)
}

/// Calls `f` on every method of a domain with the path of its `.yaml` file.
pub fn for_each_method(domain: &Domain, dir: &Path, f: &mut dyn FnMut(&Method, &Path)) {
    fn level(
        dir: &Path,
        namespaces: &[Namespace],
        classes: &[Class],
        f: &mut dyn FnMut(&Method, &Path),
    ) {
        for ns in namespaces {
            level(&dir.join(&ns.name), &ns.namespaces, &ns.classes, f);
        }
        for class in classes {
            let mdir = dir.join(&class.dir_name).join(METHODS_DIR);
            for m in &class.methods {
                f(m, &mdir.join(&m.file_name));
            }
        }
    }
    level(dir, &domain.namespaces, &domain.classes, f);
}

// ---------------------------------------------------------------------------
// Names

/// Which naming rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// `[\w.\-$]+`
    Domain,
    /// `[\w.\-$]+`
    Namespace,
    /// `[\w.-]+`
    Class,
    /// `[\w.-]+` (`.missing` is legal)
    Instance,
    /// `\w+`
    Method,
    /// `\w+`
    Field,
}

/// Why `name` breaks ManageIQ's rule for `kind`, or `None` when it is fine.
/// `\w` is ASCII letters, digits and `_`, as in Ruby.
pub fn bad_name(name: &str, kind: NameKind) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".to_string());
    }
    let (ok, rule): (fn(char) -> bool, &str) = match kind {
        NameKind::Domain | NameKind::Namespace => (
            |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '$'),
            "letters, digits, `_`, `.`, `-` and `$`",
        ),
        NameKind::Class | NameKind::Instance => (
            |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
            "letters, digits, `_`, `.` and `-`",
        ),
        NameKind::Method | NameKind::Field => (
            |c| c.is_ascii_alphanumeric() || c == '_',
            "letters, digits and `_`",
        ),
    };
    if let Some(c) = name.chars().find(|&c| !ok(c)) {
        return Some(format!("{c:?} is not allowed (use only {rule})"));
    }
    if name.chars().all(|c| c == '.') {
        return Some("a name cannot be only dots".to_string());
    }
    None
}

fn name_problem(file: &Path, what: &str, name: &str, reason: &str) -> Problem {
    Problem::new(file, format!("{what} name `{name}` is invalid: {reason}"))
        .at_line(attr_line(file, "name"))
        .with_field("name")
}

// ---------------------------------------------------------------------------
// Attribute value checks

#[derive(Clone, Copy)]
enum ValueKind {
    Int,
    Bool,
}

fn check_enum(out: &mut Vec<Problem>, file: &Path, attrs: &Mapping, key: &str, allowed: &[&str]) {
    match attrs.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Str(s)) if allowed.contains(&s.as_str()) => {}
        Some(v) => out.push(
            Problem::new(
                file,
                format!("{key} `{v}` is not one of {}", allowed.join(", ")),
            )
            .at_line(attr_line(file, key))
            .with_field(key),
        ),
    }
}

fn check_type(out: &mut Vec<Problem>, file: &Path, attrs: &Mapping, key: &str, kind: ValueKind) {
    let (ok, expected) = match (kind, attrs.get(key)) {
        (_, None | Some(Value::Null)) => (true, ""),
        (ValueKind::Int, Some(Value::Int(_))) => (true, ""),
        (ValueKind::Bool, Some(Value::Bool(_))) => (true, ""),
        (ValueKind::Int, _) => (false, "an integer"),
        (ValueKind::Bool, _) => (false, "true or false"),
    };
    if !ok {
        let shown = attrs.get(key).map(|v| v.to_string()).unwrap_or_default();
        out.push(
            Problem::new(file, format!("{key} `{shown}` must be {expected}"))
                .at_line(attr_line(file, key))
                .with_field(key),
        );
    }
}

// ---------------------------------------------------------------------------
// Finding lines in the file text (the YAML tree carries no positions)

fn read(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_default()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The line of attribute `key` (the first `key:` after `attributes:`), else 0.
pub fn attr_line(file: &Path, key: &str) -> usize {
    let text = read(file);
    let needle = format!("{key}:");
    let mut in_attrs = false;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if t.starts_with("attributes:") {
            in_attrs = true;
            continue;
        }
        if in_attrs && t.starts_with(&needle) {
            return i + 1;
        }
    }
    0
}

/// The line of entry `idx` of the list `object.<list_key>` (or of its
/// sub-key `sub`, when found inside the entry), else the list's line, else 0.
pub fn entry_line(file: &Path, list_key: &str, idx: usize, sub: Option<&str>) -> usize {
    entry_line_in(&read(file), list_key, idx, sub)
}

fn entry_line_in(text: &str, list_key: &str, idx: usize, sub: Option<&str>) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let key = format!("{list_key}:");
    let Some(start) = lines.iter().position(|l| l.trim_start().starts_with(&key)) else {
        return 0;
    };
    let key_indent = indent(lines[start]);
    let mut items = Vec::new();
    let mut item_indent = None;
    let mut end = lines.len();
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        if l.trim().is_empty() {
            continue;
        }
        let ind = indent(l);
        let is_item = l[ind..].starts_with('-');
        match item_indent {
            None if is_item && ind >= key_indent => item_indent = Some(ind),
            None => {
                end = i;
                break;
            }
            Some(_) => {}
        }
        let it = item_indent.unwrap_or(key_indent);
        if ind < it || (ind == it && !is_item) {
            end = i;
            break;
        }
        if ind == it && is_item {
            items.push(i);
        }
    }
    let Some(&first) = items.get(idx) else {
        return start + 1;
    };
    let last = items.get(idx + 1).copied().unwrap_or(end);
    if let Some(sub) = sub {
        let needle = format!("{sub}:");
        for (i, l) in lines.iter().enumerate().take(last).skip(first) {
            let t = l.trim_start().trim_start_matches("- ");
            if t.starts_with(&needle) {
                return i + 1;
            }
        }
    }
    first + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(bad_name("ManageIQ", NameKind::Domain).is_none());
        assert!(bad_name("my-domain.v2$", NameKind::Domain).is_none());
        assert!(bad_name("a/b", NameKind::Domain).is_some());
        assert!(bad_name("..", NameKind::Domain).is_some());
        assert!(bad_name(".missing", NameKind::Instance).is_none());
        assert!(bad_name("catalogItem-create", NameKind::Instance).is_none());
        assert!(bad_name("a b", NameKind::Instance).is_some());
        assert!(bad_name("rel1", NameKind::Field).is_none());
        assert!(bad_name("rel-1", NameKind::Field).is_some());
        assert!(bad_name("é", NameKind::Method).is_some());
        assert!(bad_name("", NameKind::Class).is_some());
    }

    #[test]
    fn entry_lines() {
        let text = "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    name: x\n  fields:\n  - rel1:\n      value: a\n  - rel2:\n      on_entry: b\n      value: c\n";
        assert_eq!(entry_line_in(text, "fields", 0, None), 8);
        assert_eq!(entry_line_in(text, "fields", 1, None), 10);
        assert_eq!(entry_line_in(text, "fields", 1, Some("value")), 12);
        assert_eq!(entry_line_in(text, "fields", 5, None), 7);
        assert_eq!(entry_line_in(text, "schema", 0, None), 0);
    }
}
