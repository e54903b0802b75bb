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
use super::yaml::{self, Value};
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Something wrong with one file of the datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or directory) the problem is in.
    pub file: PathBuf,
    /// 1-based, 0 when unknown.
    pub line: usize,
    /// 1-based, 0 when unknown.
    pub column: usize,
    /// The field or key concerned, when there is one.
    pub field: Option<String>,
    /// What is wrong, as one sentence for the user.
    pub message: String,
    /// A warning: the file is skipped or suspicious but nothing it holds is
    /// lost silently; an import still succeeds, `datastore validate` lists it
    /// as a warning.
    pub warning: bool,
}

impl Problem {
    /// An error in `file`, with no line, column or field yet.
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: None,
            message: message.into(),
            warning: false,
        }
    }

    /// Marks the problem as a warning (see [`Problem::warning`]).
    pub fn as_warning(mut self) -> Self {
        self.warning = true;
        self
    }

    /// Sets the 1-based line the problem is on.
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = line;
        self
    }

    /// Names the field or key the problem is about.
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

/// Displays a list of problems under a heading.
pub(super) struct ProblemList<'a> {
    /// What was refused (`import`, `export`).
    pub(super) what: &'a str,
    /// The source or domain directory concerned.
    pub(super) input: &'a Path,
    /// The problems, one a line.
    pub(super) problems: &'a [Problem],
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "`{}` has {n} problem{}; nothing was {}ed (fix them and retry):",
            self.input.display(),
            if n == 1 { "" } else { "s" },
            self.what
        )?;
        for p in self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
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
            warning: false,
        }
    }
}

/// Domains read from a datastore root, and what was wrong on the way.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The domains that loaded, each without the files that did not.
    pub domains: Vec<Domain>,
    /// Every file skipped or refused on the way, errors and warnings alike.
    pub problems: Vec<Problem>,
}

/// The file that makes a directory of the root a domain.
pub const DOMAIN_FILE: &str = "__domain__.yaml";
/// The file that describes a namespace directory.
pub const NAMESPACE_FILE: &str = "__namespace__.yaml";
/// The class's own file, inside `<Class>.class/`.
pub const CLASS_FILE: &str = "__class__.yaml";
/// The directory of a class's methods, inside `<Class>.class/`.
pub const METHODS_DIR: &str = "__methods__";

/// Largest method body file (`<m>.rhai`, `.rb`, `.pl`) accepted; a Rhai
/// body over it is also refused by the compiler
/// (`RhaiRunner::compile` in automate-methods).
pub const MAX_METHOD_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Reads every domain under `root`: each child directory holding a
/// `__domain__.yaml`, or `root` itself when it holds one (a repository with
/// the domain at its root).
///
/// Nothing below `root` is reached through a symbolic link: a link anywhere
/// in the tree (a domain directory, a namespace, a class file, a method
/// body) is reported as a problem naming it and not followed, and every file
/// is opened without following links and checked to lie inside its domain
/// directory. `root` itself may be a link (it is the operator's choice).
pub fn read_root(root: &Path) -> LoadReport {
    let mut report = LoadReport::default();
    if present(&root.join(DOMAIN_FILE)) {
        if let Some(d) = read_domain(root, &mut report.problems) {
            report.domains.push(d);
        }
        return report;
    }
    let entries = match sorted_entries(root, &mut report.problems) {
        Ok(e) => e,
        Err(e) => {
            report.problems.push(Problem::new(
                root,
                format!("cannot read the datastore directory: {e}"),
            ));
            return report;
        }
    };
    for e in entries {
        if !e.kind.is_dir() {
            continue;
        }
        if present(&e.path.join(DOMAIN_FILE)) {
            if let Some(d) = read_domain(&e.path, &mut report.problems) {
                report.domains.push(d);
            }
        }
    }
    report
}

/// Reads one domain directory. Returns `None` only when `__domain__.yaml`
/// itself cannot be read.
pub fn read_domain(dir: &Path, problems: &mut Vec<Problem>) -> Option<Domain> {
    // Every file read below must resolve inside this directory.
    let base = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let doc = read_doc(&dir.join(DOMAIN_FILE), &base, problems)?;
    let dir_name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".to_string());
    let mut domain = Domain {
        dir_name,
        doc,
        namespaces: Vec::new(),
        classes: Vec::new(),
        tests: Vec::new(),
    };
    if domain.doc.attr_str("name").is_none() {
        problems.push(
            Problem::new(&dir.join(DOMAIN_FILE), "the domain has no `name` attribute")
                .with_field("name"),
        );
    }
    let mut parsed = parse_classes_parallel(dir, &base);
    read_children(
        dir,
        &base,
        &mut domain.namespaces,
        &mut domain.classes,
        problems,
        &mut parsed,
    );
    domain.tests = read_tests(dir, &base, problems);
    Some(domain)
}

/// The domain's `automate test` files, read as bytes (their syntax is
/// `datastore validate`'s business): (path below `dir`, bytes).
fn read_tests(dir: &Path, base: &Path, problems: &mut Vec<Problem>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for f in crate::tests_file::find(dir) {
        let Ok(rel) = f.strip_prefix(dir) else {
            continue;
        };
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        match read_plain(&f, base, crate::yaml::MAX_FILE_BYTES, "test file") {
            Ok(bytes) => out.push((rel.join("/"), bytes)),
            Err(p) => problems.push(p),
        }
    }
    out
}

/// Whether something exists at `path`, without following a link there (a
/// link is then refused, naming it, when it is read).
pub fn present(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Classes parsed ahead of the walk: their directory → the class and the
/// problems found in it.
type ParsedClasses = HashMap<PathBuf, ParsedClass>;

/// One class directory's parse result.
type ParsedClass = (Option<Class>, Vec<Problem>);

/// Parses every class directory below `dir` on all cores. Classes hold
/// nearly all of a domain's files, so this is where loading spends its
/// time; the walk then only assembles the tree.
fn parse_classes_parallel(dir: &Path, base: &Path) -> ParsedClasses {
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
                        let class = read_class(path, name, base, &mut problems);
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

/// Every class directory below `dir`, in walk order. (The walk that
/// follows reports what is wrong on the way; this one only looks.)
fn collect_class_dirs(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let mut ignored = Vec::new();
    let Ok(entries) = sorted_entries(dir, &mut ignored) else {
        return;
    };
    for e in entries {
        if !e.kind.is_dir() {
            continue;
        }
        if present(&e.path.join(CLASS_FILE)) {
            out.push((e.path, e.name));
        } else if present(&e.path.join(NAMESPACE_FILE)) {
            collect_class_dirs(&e.path, out);
        }
    }
}

fn read_children(
    dir: &Path,
    base: &Path,
    namespaces: &mut Vec<Namespace>,
    classes: &mut Vec<Class>,
    problems: &mut Vec<Problem>,
    parsed: &mut ParsedClasses,
) {
    let entries = match sorted_entries(dir, problems) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem::new(dir, format!("cannot read directory: {e}")));
            return;
        }
    };
    for Entry { name, path, kind } in entries {
        if !kind.is_dir() {
            continue;
        }
        if present(&path.join(CLASS_FILE)) {
            let class = match parsed.remove(&path) {
                Some((class, mut found)) => {
                    problems.append(&mut found);
                    class
                }
                None => read_class(&path, &name, base, problems),
            };
            if let Some(c) = class {
                classes.push(c);
            }
        } else if present(&path.join(NAMESPACE_FILE)) {
            if let Some(doc) = read_doc(&path.join(NAMESPACE_FILE), base, problems) {
                let mut ns = Namespace {
                    name: name.clone(),
                    doc,
                    namespaces: Vec::new(),
                    classes: Vec::new(),
                };
                read_children(
                    &path,
                    base,
                    &mut ns.namespaces,
                    &mut ns.classes,
                    problems,
                    parsed,
                );
                namespaces.push(ns);
            }
        } else if name != METHODS_DIR
            && !(name == crate::tests_file::DOMAIN_TESTS_DIR
                && dir.canonicalize().is_ok_and(|d| d == base))
        {
            problems.push(Problem::new(
                &path,
                "directory has neither __namespace__.yaml nor __class__.yaml; it was skipped \
                 (ManageIQ skips it too)",
            ));
        }
    }
}

fn read_class(
    dir: &Path,
    dir_name: &str,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<Class> {
    let class_file = dir.join(CLASS_FILE);
    let doc = read_doc(&class_file, base, problems)?;
    check_name(&doc, &class_file, problems);
    check_entries(&doc, "schema", &class_file, problems);
    let mut class = Class {
        dir_name: dir_name.to_string(),
        doc,
        instances: Vec::new(),
        methods: Vec::new(),
    };
    let entries = match sorted_entries(dir, problems) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem::new(
                dir,
                format!("cannot read class directory: {e}"),
            ));
            return Some(class);
        }
    };
    for e in entries {
        if e.kind.is_dir() {
            if e.name == METHODS_DIR {
                read_methods(&e.path, base, &mut class.methods, problems);
            }
            continue;
        }
        if e.name == CLASS_FILE {
            continue;
        }
        if !e.name.ends_with(".yaml") {
            problems.extend(misnamed_yaml(&e));
            continue;
        }
        if let Some(doc) = read_doc(&e.path, base, problems) {
            check_name(&doc, &e.path, problems);
            check_entries(&doc, "fields", &e.path, problems);
            class.instances.push(Instance {
                file_name: e.name,
                doc,
            });
        }
    }
    Some(class)
}

fn read_methods(dir: &Path, base: &Path, methods: &mut Vec<Method>, problems: &mut Vec<Problem>) {
    let entries = match sorted_entries(dir, problems) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem::new(
                dir,
                format!("cannot read methods directory: {e}"),
            ));
            return;
        }
    };
    for e in &entries {
        if e.kind.is_dir() {
            continue;
        }
        let Some(stem) = e.name.strip_suffix(".yaml") else {
            problems.extend(misnamed_yaml(e));
            continue;
        };
        let Some(doc) = read_doc(&e.path, base, problems) else {
            continue;
        };
        check_name(&doc, &e.path, problems);
        check_entries(&doc, "inputs", &e.path, problems);
        let body = ["rhai", "rb", "pl"].iter().find_map(|ext| {
            let file_name = format!("{stem}.{ext}");
            let i = entries
                .binary_search_by(|x| x.name.as_str().cmp(&file_name))
                .ok()?;
            let body = entries.get(i).filter(|x| !x.kind.is_dir())?;
            match read_plain(&body.path, base, MAX_METHOD_BODY_BYTES, "method body") {
                Ok(bytes) => Some(MethodBody { file_name, bytes }),
                Err(p) => {
                    problems.push(p);
                    None
                }
            }
        });
        methods.push(Method {
            file_name: e.name.clone(),
            doc,
            body,
        });
    }
}

/// A warning for a file whose extension is `.yaml` in another case (or
/// `.yml`): ManageIQ's importer globs `*.yaml`, case-sensitively, so it
/// never loads such a file, and neither does this loader, but it says so.
fn misnamed_yaml(e: &Entry) -> Option<Problem> {
    let (stem, ext) = e.name.rsplit_once('.')?;
    if stem.is_empty() || !(ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml")) {
        return None;
    }
    Some(
        Problem::new(
            &e.path,
            format!(
                "ignored: only `*.yaml` files are loaded (the extension is case-sensitive, as in \
                 ManageIQ), so `{}` is not; rename it to `{stem}.yaml` to load it, or remove it",
                e.name
            ),
        )
        .as_warning(),
    )
}

/// Reads and parses one YAML file, checking the envelope shape.
fn read_doc(path: &Path, base: &Path, problems: &mut Vec<Problem>) -> Option<Document> {
    let text = match read_text_in(path, base) {
        Ok(t) => t,
        Err(p) => {
            problems.push(p);
            return None;
        }
    };
    parse_doc(&text, path, problems)
}

/// Reads a file as UTF-8 text, refusing files over the YAML size budget,
/// links, and anything but a regular file in its own directory.
pub fn read_text(path: &Path) -> Result<String, Problem> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base = parent
        .canonicalize()
        .map_err(|e| Problem::new(path, format!("cannot read: {e}")))?;
    read_text_in(path, &base)
}

/// [`read_text`] for a file that must resolve inside `base` (canonical).
pub fn read_text_in(path: &Path, base: &Path) -> Result<String, Problem> {
    let bytes = read_plain(path, base, yaml::MAX_FILE_BYTES, "datastore file")?;
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

/// Reads the regular file at `path`, at most `max` bytes, without following
/// a link: the last component is opened with `O_NOFOLLOW` (a link is refused
/// naming it), a FIFO or device is never waited on (`O_NONBLOCK`, then the
/// opened file must be a regular one), and the file actually opened must
/// lie inside `base` (a canonical directory), which catches a directory
/// swapped for a link while the tree is read.
pub fn read_plain(path: &Path, base: &Path, max: usize, what: &str) -> Result<Vec<u8>, Problem> {
    let file = open_nofollow(path).map_err(|e| match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => symlink_problem(path),
        _ => Problem::new(path, format!("cannot read: {e}")),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Problem::new(path, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(Problem::new(
            path,
            "is not a regular file (a directory, pipe, socket or device); the datastore reads \
             only plain files",
        ));
    }
    let too_big = |len: u64| {
        Problem::new(
            path,
            format!("file is {len} bytes, more than the {max} allowed for a {what}"),
        )
    };
    let limit = u64::try_from(max).unwrap_or(u64::MAX);
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    match real_path(&file, path) {
        Some(real) if real.starts_with(base) => {}
        Some(real) => {
            return Err(Problem::new(
                path,
                format!(
                    "resolves to `{}`, outside `{}`; the datastore never reads a file outside \
                     its own tree (a linked directory on the way?)",
                    real.display(),
                    base.display()
                ),
            ))
        }
        None => {
            return Err(Problem::new(
                path,
                "cannot tell where the file lies (neither /proc/self/fd nor the canonical path \
                 answered); not read",
            ))
        }
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(max));
    io::Read::read_to_end(
        &mut io::Read::take(file, limit.saturating_add(1)),
        &mut bytes,
    )
    .map_err(|e| Problem::new(path, format!("cannot read: {e}")))?;
    if bytes.len() > max {
        return Err(too_big(u64::try_from(bytes.len()).unwrap_or(u64::MAX)));
    }
    Ok(bytes)
}

fn symlink_problem(path: &Path) -> Problem {
    Problem::new(
        path,
        "is a symbolic link; the datastore reads only plain files and directories and never \
         follows a link (it could pull any file of the host into the datastore): replace it \
         with the file or directory it points to",
    )
}

/// Opens `path` for reading without following a link in its last component
/// and without blocking on a FIFO.
fn open_nofollow(path: &Path) -> io::Result<fs::File> {
    let mut opts = fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        let flags = (OFlags::NOFOLLOW | OFlags::NONBLOCK).bits();
        opts.custom_flags(i32::try_from(flags).unwrap_or(0));
    }
    #[cfg(not(unix))]
    {
        if fs::symlink_metadata(path)?.file_type().is_symlink() {
            return Err(io::Error::other("is a symbolic link"));
        }
    }
    opts.open(path)
}

/// Where the opened `file` really is: on Linux the kernel's own answer
/// (`/proc/self/fd/N`, immune to renames racing the check), elsewhere the
/// canonical form of `path`.
fn real_path(file: &fs::File, path: &Path) -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(p) = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            return Some(p);
        }
    }
    let _ = file;
    path.canonicalize().ok()
}

/// A path for messages with every byte that is not UTF-8 written as `\xNN`
/// (`Path::display` would turn them all into the same `�`).
pub fn escape_path(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_encoded_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
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

/// One entry of a directory being read.
struct Entry {
    name: String,
    path: PathBuf,
    /// The entry's own type (a link is never followed to find it).
    kind: fs::FileType,
}

/// The entries of `dir` sorted by name, without dot files (`.manifest.yaml`
/// and every hidden file are not the datastore's). A symbolic link, or a
/// name that is not UTF-8 (two such names would collide once converted to
/// text), is reported in `problems` with its path and left out.
fn sorted_entries(dir: &Path, problems: &mut Vec<Problem>) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let raw = entry.file_name();
        if raw.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        let path = entry.path();
        let Some(name) = raw.to_str() else {
            problems.push(Problem::new(
                &path,
                format!(
                    "the name `{}` is not valid UTF-8; rename it (names are compared as text, so \
                     two such names would become one and one of them would be lost)",
                    escape_path(&path)
                ),
            ));
            continue;
        };
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            problems.push(symlink_problem(&path));
            continue;
        }
        out.push(Entry {
            name: name.to_string(),
            path,
            kind,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
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
    for (rel, bytes) in &domain.tests {
        out.push((format!("{dir_name}/{rel}"), bytes.clone()));
    }
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

/// Writes the rendered files of `domain` below `parent/<dir_name>/`.
/// Returns the number of files written.
pub fn write_domain(domain: &Domain, parent: &Path, dir_name: &str) -> Result<usize, WriteError> {
    let rendered = render_domain(domain, dir_name);
    let top = parent.join(dir_name);
    fs::create_dir_all(&top).map_err(WriteError::during("create directory", &top))?;
    for (rel, bytes) in &rendered {
        let path = parent.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(WriteError::during("create directory", dir))?;
        }
        fs::write(&path, bytes).map_err(WriteError::during("write", &path))?;
    }
    Ok(rendered.len())
}

/// An I/O failure while writing, with what was being done and where.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {error}", path.display())]
pub struct WriteError {
    /// What was being done (`create directory`, `write`, ...).
    pub action: &'static str,
    /// The file or directory concerned.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub error: io::Error,
}

impl WriteError {
    /// Wraps the `io::Error` of `action` on `path` (for `map_err`).
    pub fn during(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WriteError {
        let path = path.to_path_buf();
        move |error| WriteError {
            action,
            path,
            error,
        }
    }
}
