//! Reading and writing ManageIQ's export layout on disk.
//!
//! ```text
//! <Domain>/__domain__.yaml
//! <Domain>/<Ns>/__namespace__.yaml            (namespaces nest)
//! <Domain>/<Ns>/<Class>.class/__class__.yaml
//! <Domain>/<Ns>/<Class>.class/<instance>.yaml (`.missing` -> _missing.yaml)
//! <Domain>/<Ns>/<Class>.class/__methods__/<m>.yaml [+ <m>.rhai | <m>.rb]
//! ```
//!
//! Reading classifies files by where they are, never by `object_type`, skips
//! `.manifest.yaml` and every dot file, and keeps going past a bad file: each
//! problem is recorded with its file, line and field, and the rest loads.
//! Writing renders files in ManageIQ's export order, so a directory and a zip
//! export share one code path ([`render_domain`]).

use super::model::{Class, Document, Domain, Instance, Method, MethodBody, Namespace};
use super::yaml::{self, Mapping, Value};
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Something wrong with one file of the datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based, 0 when unknown.
    pub line: usize,
    /// 1-based, 0 when unknown.
    pub column: usize,
    /// The field or key concerned, when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: None,
            message: message.into(),
        }
    }

    pub fn at_line(mut self, line: usize) -> Self {
        self.line = line;
        self
    }

    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_string());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl From<yaml::YamlError> for Problem {
    fn from(e: yaml::YamlError) -> Self {
        Problem {
            file: e.file,
            line: e.line,
            column: e.column,
            field: None,
            message: e.message,
        }
    }
}

/// Domains read from a datastore root, and what was wrong on the way.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub domains: Vec<Domain>,
    pub problems: Vec<Problem>,
}

pub const DOMAIN_FILE: &str = "__domain__.yaml";
pub const NAMESPACE_FILE: &str = "__namespace__.yaml";
pub const CLASS_FILE: &str = "__class__.yaml";
pub const METHODS_DIR: &str = "__methods__";

/// Reads every domain under `root`: each child directory holding a
/// `__domain__.yaml`, or `root` itself when it holds one (a repository with
/// the domain at its root).
pub fn read_root(root: &Path) -> LoadReport {
    let mut report = LoadReport::default();
    if root.join(DOMAIN_FILE).is_file() {
        if let Some(d) = read_domain(root, &mut report.problems) {
            report.domains.push(d);
        }
        return report;
    }
    let entries = match sorted_entries(root) {
        Ok(e) => e,
        Err(e) => {
            report.problems.push(Problem::new(
                root,
                format!("cannot read the datastore directory: {e}"),
            ));
            return report;
        }
    };
    for (name, path) in entries {
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        if path.join(DOMAIN_FILE).is_file() {
            if let Some(d) = read_domain(&path, &mut report.problems) {
                report.domains.push(d);
            }
        }
    }
    report
}

/// Reads one domain directory. Returns `None` only when `__domain__.yaml`
/// itself cannot be read.
pub fn read_domain(dir: &Path, problems: &mut Vec<Problem>) -> Option<Domain> {
    let doc = read_doc(&dir.join(DOMAIN_FILE), problems)?;
    let dir_name = dir_name_of(dir);
    let mut domain = Domain {
        dir_name,
        doc,
        namespaces: Vec::new(),
        classes: Vec::new(),
    };
    if domain.doc.attr_str("name").is_none() {
        problems.push(
            Problem::new(&dir.join(DOMAIN_FILE), "the domain has no `name` attribute")
                .with_field("name"),
        );
    }
    let mut parsed = parse_classes_parallel(dir);
    read_children(
        dir,
        &mut domain.namespaces,
        &mut domain.classes,
        problems,
        &mut parsed,
    );
    Some(domain)
}

fn dir_name_of(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".to_string())
}

/// Classes parsed ahead of the walk: their directory → the class and the
/// problems found in it.
type ParsedClasses = HashMap<PathBuf, ParsedClass>;

/// One class directory's parse result.
type ParsedClass = (Option<Class>, Vec<Problem>);

/// Parses every class directory below `dir` on all cores. Classes hold
/// nearly all of a domain's files, so this is where loading spends its
/// time; the walk then only assembles the tree.
fn parse_classes_parallel(dir: &Path) -> ParsedClasses {
    let mut dirs = Vec::new();
    collect_class_dirs(dir, &mut dirs);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if threads < 2 || dirs.len() < 8 {
        return ParsedClasses::new();
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Vec<(PathBuf, ParsedClass)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, name)) = dirs.get(i) else {
                            break;
                        };
                        let mut problems = Vec::new();
                        let class = read_class(path, name, &mut problems);
                        out.push((path.clone(), (class, problems)));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    results.into_iter().flatten().collect()
}

/// Every class directory below `dir`, in walk order.
fn collect_class_dirs(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = sorted_entries(dir) else {
        return;
    };
    for (name, path) in entries {
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        if path.join(CLASS_FILE).is_file() {
            out.push((path, name));
        } else if path.join(NAMESPACE_FILE).is_file() {
            collect_class_dirs(&path, out);
        }
    }
}

fn read_children(
    dir: &Path,
    namespaces: &mut Vec<Namespace>,
    classes: &mut Vec<Class>,
    problems: &mut Vec<Problem>,
    parsed: &mut ParsedClasses,
) {
    let entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem::new(dir, format!("cannot read directory: {e}")));
            return;
        }
    };
    for (name, path) in entries {
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        if path.join(CLASS_FILE).is_file() {
            let class = match parsed.remove(&path) {
                Some((class, mut found)) => {
                    problems.append(&mut found);
                    class
                }
                None => read_class(&path, &name, problems),
            };
            if let Some(c) = class {
                classes.push(c);
            }
        } else if path.join(NAMESPACE_FILE).is_file() {
            if let Some(doc) = read_doc(&path.join(NAMESPACE_FILE), problems) {
                let mut ns = Namespace {
                    name: name.clone(),
                    doc,
                    namespaces: Vec::new(),
                    classes: Vec::new(),
                };
                read_children(&path, &mut ns.namespaces, &mut ns.classes, problems, parsed);
                namespaces.push(ns);
            }
        } else if name != METHODS_DIR {
            problems.push(Problem::new(
                &path,
                "directory has neither __namespace__.yaml nor __class__.yaml; it was skipped \
                 (ManageIQ skips it too)",
            ));
        }
    }
}

fn read_class(dir: &Path, dir_name: &str, problems: &mut Vec<Problem>) -> Option<Class> {
    let class_file = dir.join(CLASS_FILE);
    let doc = read_doc(&class_file, problems)?;
    check_name(&doc, &class_file, problems);
    check_entries(&doc, "schema", &class_file, problems);
    let mut class = Class {
        dir_name: dir_name.to_string(),
        doc,
        instances: Vec::new(),
        methods: Vec::new(),
    };
    let entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem::new(
                dir,
                format!("cannot read class directory: {e}"),
            ));
            return Some(class);
        }
    };
    for (name, path) in entries {
        if name == METHODS_DIR && path.is_dir() {
            read_methods(&path, &mut class.methods, problems);
            continue;
        }
        if name.starts_with('.')
            || name == CLASS_FILE
            || !name.ends_with(".yaml")
            || !path.is_file()
        {
            continue;
        }
        if let Some(doc) = read_doc(&path, problems) {
            check_name(&doc, &path, problems);
            check_entries(&doc, "fields", &path, problems);
            class.instances.push(Instance {
                file_name: name,
                doc,
            });
        }
    }
    Some(class)
}

fn read_methods(dir: &Path, methods: &mut Vec<Method>, problems: &mut Vec<Problem>) {
    let entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem::new(
                dir,
                format!("cannot read methods directory: {e}"),
            ));
            return;
        }
    };
    for (name, path) in &entries {
        let Some(stem) = name.strip_suffix(".yaml") else {
            continue;
        };
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let Some(doc) = read_doc(path, problems) else {
            continue;
        };
        check_name(&doc, path, problems);
        check_entries(&doc, "inputs", path, problems);
        let body = ["rhai", "rb", "pl"].iter().find_map(|ext| {
            let file_name = format!("{stem}.{ext}");
            let body_path = dir.join(&file_name);
            if !body_path.is_file() {
                return None;
            }
            match fs::read(&body_path) {
                Ok(bytes) => Some(MethodBody { file_name, bytes }),
                Err(e) => {
                    problems.push(Problem::new(
                        &body_path,
                        format!("cannot read method body: {e}"),
                    ));
                    None
                }
            }
        });
        methods.push(Method {
            file_name: name.clone(),
            doc,
            body,
        });
    }
}

/// Reads and parses one YAML file, checking the envelope shape.
fn read_doc(path: &Path, problems: &mut Vec<Problem>) -> Option<Document> {
    let text = match read_text(path) {
        Ok(t) => t,
        Err(p) => {
            problems.push(p);
            return None;
        }
    };
    parse_doc(&text, path, problems)
}

/// Reads a file as UTF-8 text, refusing files over the YAML size budget.
pub fn read_text(path: &Path) -> Result<String, Problem> {
    let meta = fs::metadata(path).map_err(|e| Problem::new(path, format!("cannot read: {e}")))?;
    if meta.len() > yaml::MAX_FILE_BYTES as u64 {
        return Err(Problem::new(
            path,
            format!(
                "file is {} bytes, more than the {} allowed for a datastore file",
                meta.len(),
                yaml::MAX_FILE_BYTES
            ),
        ));
    }
    let bytes = fs::read(path).map_err(|e| Problem::new(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        Problem::new(
            path,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Parses an export file's text and checks its envelope.
pub fn parse_doc(text: &str, path: &Path, problems: &mut Vec<Problem>) -> Option<Document> {
    let value = match yaml::parse_document(text, path) {
        Ok(v) => v,
        Err(e) => {
            problems.push(e.into());
            return None;
        }
    };
    let Value::Map(map) = value else {
        problems.push(
            Problem::new(
                path,
                "expected a mapping with `object_type`, `version` and `object`",
            )
            .at_line(1),
        );
        return None;
    };
    match map.get("object") {
        Some(Value::Map(obj)) => {
            if !matches!(obj.get("attributes"), Some(Value::Map(_))) {
                problems.push(
                    Problem::new(path, "`object.attributes` is missing or not a mapping")
                        .at_line(find_line(text, "attributes:"))
                        .with_field("attributes"),
                );
                return None;
            }
        }
        _ => {
            problems.push(
                Problem::new(path, "`object` is missing or not a mapping")
                    .at_line(find_line(text, "object:"))
                    .with_field("object"),
            );
            return None;
        }
    }
    Some(Document(map))
}

fn check_name(doc: &Document, path: &Path, problems: &mut Vec<Problem>) {
    if doc.attr_str("name").is_none() {
        problems.push(
            Problem::new(path, "`name` attribute is missing or not a string").with_field("name"),
        );
    }
}

/// Checks that `object.<key>` is absent or a list of `{name: {mapping}}`.
fn check_entries(doc: &Document, key: &str, path: &Path, problems: &mut Vec<Problem>) {
    let Some(v) = doc.object().and_then(|o| o.get(key)) else {
        return;
    };
    let items = match v {
        Value::Null => return,
        Value::Seq(items) => items,
        _ => {
            problems.push(Problem::new(path, format!("`{key}` must be a list")).with_field(key));
            return;
        }
    };
    for (i, item) in items.iter().enumerate() {
        let ok = match item.as_map() {
            Some(m) if m.len() == 1 => matches!(m.0[0].1, Value::Map(_) | Value::Null),
            _ => false,
        };
        if !ok {
            problems.push(
                Problem::new(
                    path,
                    format!(
                        "entry {} of `{key}` must be a single `name: {{...}}` mapping",
                        i + 1
                    ),
                )
                .with_field(key),
            );
        }
    }
}

/// The 1-based number of the first line containing `needle` (0 if none).
pub fn find_line(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or(0)
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // Symlinks are not followed: a datastore is plain files.
        if entry.file_type()?.is_symlink() {
            continue;
        }
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

/// One file of a rendered domain: a `/`-separated path relative to the
/// export root (starting with the domain directory) and its bytes.
pub type RenderedFile = (String, Vec<u8>);

/// Renders a domain into its export files, in ManageIQ's write order: the
/// domain file, then each namespace depth-first with its classes sorted by
/// name; per class `__class__.yaml`, the instances, then the methods.
pub fn render_domain(domain: &Domain, dir_name: &str) -> Vec<RenderedFile> {
    let mut out = Vec::new();
    out.push((format!("{dir_name}/{DOMAIN_FILE}"), render_doc(&domain.doc)));
    render_level(dir_name, &domain.namespaces, &domain.classes, &mut out);
    out
}

fn render_level(
    prefix: &str,
    namespaces: &[Namespace],
    classes: &[Class],
    out: &mut Vec<RenderedFile>,
) {
    let mut sorted: Vec<&Class> = classes.iter().collect();
    sorted.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
    for class in sorted {
        let cdir = format!("{prefix}/{}", class.dir_name);
        out.push((format!("{cdir}/{CLASS_FILE}"), render_doc(&class.doc)));
        for inst in &class.instances {
            out.push((format!("{cdir}/{}", inst.file_name), render_doc(&inst.doc)));
        }
        for m in &class.methods {
            if let Some(body) = &m.body {
                out.push((
                    format!("{cdir}/{METHODS_DIR}/{}", body.file_name),
                    body.bytes.clone(),
                ));
            }
            out.push((
                format!("{cdir}/{METHODS_DIR}/{}", m.file_name),
                render_doc(&m.doc),
            ));
        }
    }
    for ns in namespaces {
        let nsdir = format!("{prefix}/{}", ns.name);
        out.push((format!("{nsdir}/{NAMESPACE_FILE}"), render_doc(&ns.doc)));
        render_level(&nsdir, &ns.namespaces, &ns.classes, out);
    }
}

fn render_doc(doc: &Document) -> Vec<u8> {
    yaml::to_psych_yaml(&Value::Map(doc.0.clone())).into_bytes()
}

/// Writes a domain below `parent` as `<parent>/<dir_name>/...`.
pub fn write_domain(domain: &Domain, parent: &Path, dir_name: &str) -> std::io::Result<()> {
    for (rel, bytes) in render_domain(domain, dir_name) {
        let path = parent.join(&rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, bytes)?;
    }
    Ok(())
}

/// A mapping from `(key, value)` pairs, for building documents in code.
pub fn mapping(pairs: Vec<(&str, Value)>) -> Mapping {
    Mapping(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}
