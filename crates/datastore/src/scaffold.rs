//! Authoring aids: `automate new domain|namespace|class|instance|method
//! PATH` writes a new, empty object in ManageIQ's export layout, each file
//! as export writes it (the same Psych-style writer, so a scaffolded domain
//! exports back byte for byte), and nothing else: the files already there
//! are never rewritten.
//!
//! * `new domain D`: `D/__domain__.yaml` (source `user`, enabled, the
//!   highest priority + 1, tenant 1).
//! * `new namespace D/NS[/SUB...]`: `NS/__namespace__.yaml` (the parent
//!   namespaces must exist).
//! * `new class D/NS/CLASS [--state-machine]`: `CLASS.class/__class__.yaml`
//!   with an `execute` method field, or, for a state machine, ManageIQ's
//!   usual states (`pre`, `execute`, `post`, with `on_entry`/`on_exit`/
//!   `on_error` and `max_retries` on `execute`).
//! * `new instance D/NS/CLASS/INST`: `inst.yaml` with no values
//!   (`fields: []`; the class defaults apply).
//! * `new method D/NS/CLASS/METH [--language rhai]`:
//!   `__methods__/meth.yaml` (inline, instance scope) and `meth.rhai`.
//!
//! Names follow ManageIQ's rules ([`validate::bad_name`]); read-only domains
//! (`system`, `user_locked`, `remote`) and existing objects (compared
//! case-insensitively) are refused. Each file is written to a temporary
//! name and renamed into place; a new domain, namespace or class directory
//! is built aside and renamed in one step.

use super::dirs::domain_dirs;
use super::fs::{CLASS_FILE, DOMAIN_FILE, METHODS_DIR, NAMESPACE_FILE};
use super::import::{ensure_writable, ReadOnlyDomain, MANAGEIQ};
use super::model::Document;
use super::swap::{self, Workdir};
use super::validate::{self, NameKind};
use super::yaml::{self, Mapping, Value};
use std::path::{Path, PathBuf};

/// What to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKind {
    /// `D`
    Domain,
    /// `D/NS[/SUB...]`
    Namespace,
    /// `D/NS.../CLASS`, a state machine or not.
    Class {
        /// The schema of a state machine (states `pre`, `execute`, `post`).
        state_machine: bool,
    },
    /// `D/NS.../CLASS/INST`
    Instance,
    /// `D/NS.../CLASS/METH` (a Rhai method).
    Method,
}

impl NewKind {
    /// `domain`, `namespace`, `class`, `instance` or `method`.
    pub fn as_str(self) -> &'static str {
        match self {
            NewKind::Domain => "domain",
            NewKind::Namespace => "namespace",
            NewKind::Class { .. } => "class",
            NewKind::Instance => "instance",
            NewKind::Method => "method",
        }
    }
}

/// Why nothing was created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The path has too few or too many parts for the kind.
    #[error("`{path}` is not a {kind} path: expected {expected}")]
    BadPath {
        /// The path given.
        path: String,
        /// `domain`, `namespace`, ...
        kind: &'static str,
        /// What a path of that kind looks like.
        expected: &'static str,
    },
    /// A name ManageIQ would refuse.
    #[error("{kind} name `{name}` is invalid: {reason}")]
    BadName {
        /// `domain`, `namespace`, ...
        kind: &'static str,
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A parent (domain, namespace, class) does not exist.
    #[error("no {what} `{path}` in the datastore `{}`; create it first with `automate new {what} {path}`", root.display())]
    NoParent {
        /// `domain`, `namespace` or `class`.
        what: &'static str,
        /// Its path.
        path: String,
        /// The datastore root.
        root: PathBuf,
    },
    /// The object exists already.
    #[error("{kind} `{path}` already exists (`{}`)", file.display())]
    Exists {
        /// `domain`, `namespace`, ...
        kind: &'static str,
        /// The path given.
        path: String,
        /// What is there.
        file: PathBuf,
    },
    /// The domain is read-only.
    #[error(transparent)]
    ReadOnly(#[from] ReadOnlyDomain),
    /// A language other than Rhai.
    #[error("method language `{0}` cannot be scaffolded: only rhai methods run here (ruby methods are imported, never run)")]
    Language(String),
    /// Writing failed.
    #[error("cannot {action} `{}`: {error}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The error the operating system gave.
        #[source]
        error: std::io::Error,
    },
}

/// The files an `automate new` wrote, relative to the datastore root.
#[derive(Debug, Clone)]
pub struct Scaffolded {
    /// What was created.
    pub kind: NewKind,
    /// Its path as given (`Domain/Ns/Class/name`).
    pub path: String,
    /// The files written, `/`-separated, relative to the root.
    pub files: Vec<String>,
}

/// Creates the object `path` of `kind` in the datastore at `root`.
/// `language` is for methods (`rhai`, the default).
pub fn create(
    root: &Path,
    kind: NewKind,
    path: &str,
    language: Option<&str>,
) -> Result<Scaffolded, ScaffoldError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let bad_path = |expected| ScaffoldError::BadPath {
        path: path.to_string(),
        kind: kind.as_str(),
        expected,
    };
    let min = match kind {
        NewKind::Domain => 1,
        NewKind::Namespace | NewKind::Class { .. } => 2,
        NewKind::Instance | NewKind::Method => 4,
    };
    if parts.iter().any(|p| p.is_empty()) || parts.len() < min {
        return Err(bad_path(match kind {
            NewKind::Domain => "DOMAIN",
            NewKind::Namespace => "DOMAIN/NAMESPACE[/SUB...]",
            NewKind::Class { .. } => "DOMAIN/NAMESPACE[/SUB...]/CLASS",
            NewKind::Instance => "DOMAIN/NAMESPACE[/SUB...]/CLASS/INSTANCE",
            NewKind::Method => "DOMAIN/NAMESPACE[/SUB...]/CLASS/METHOD",
        }));
    }
    if kind == NewKind::Domain && parts.len() != 1 {
        return Err(bad_path("DOMAIN (one name, no `/`)"));
    }
    if let Some(l) = language.filter(|l| !l.eq_ignore_ascii_case("rhai")) {
        return Err(ScaffoldError::Language(l.to_string()));
    }
    let name = parts[parts.len() - 1];
    let name_kind = match kind {
        NewKind::Domain => NameKind::Domain,
        NewKind::Namespace => NameKind::Namespace,
        NewKind::Class { .. } => NameKind::Class,
        NewKind::Instance => NameKind::Instance,
        NewKind::Method => NameKind::Method,
    };
    let reason = validate::bad_name(name, name_kind)
        .or_else(|| {
            (name.starts_with('.') && !(kind == NewKind::Instance && name == ".missing"))
                .then(|| "it starts with `.` (only the instance `.missing` may)".to_string())
        })
        .or_else(|| {
            (kind == NewKind::Domain && name.eq_ignore_ascii_case(MANAGEIQ))
                .then(|| "`ManageIQ` is the shipped domain's".to_string())
        })
        .or_else(|| (name == "$").then(|| "`$` is reserved".to_string()));
    if let Some(reason) = reason {
        return Err(ScaffoldError::BadName {
            kind: kind.as_str(),
            name: name.to_string(),
            reason,
        });
    }
    let io = |action: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |error| ScaffoldError::Io {
            action,
            path,
            error,
        }
    };
    let (domains, _) = domain_dirs(root).map_err(io("read the datastore directory", root))?;
    let exists = |file: PathBuf| ScaffoldError::Exists {
        kind: kind.as_str(),
        path: path.to_string(),
        file,
    };
    let found = domains.iter().find(|d| {
        d.info.name.eq_ignore_ascii_case(parts[0]) || d.dir_name.eq_ignore_ascii_case(parts[0])
    });
    if kind == NewKind::Domain {
        if let Some(d) = found {
            return Err(exists(d.path.clone()));
        }
        if let Some(p) = child(root, name) {
            return Err(exists(p));
        }
        let priority = domains.iter().map(|d| d.info.priority).max().unwrap_or(0) + 1;
        let doc = Document::new(
            "domain",
            attrs(&[
                ("name", s(name)),
                ("description", Value::Null),
                ("display_name", Value::Null),
                ("priority", Value::Int(priority)),
                ("enabled", Value::Bool(true)),
                ("tenant_id", Value::Int(1)),
                ("source", s("user")),
                ("top_level_namespace", Value::Null),
            ]),
        );
        if !root.exists() {
            std::fs::create_dir_all(root).map_err(io("create the datastore directory", root))?;
        }
        let tmp = Workdir::new_in(root, swap::IMPORT_PREFIX)
            .map_err(io("create a temporary directory in", root))?;
        let new = tmp.path().join(name);
        std::fs::create_dir(&new).map_err(io("create directory", &new))?;
        write_file(&new.join(DOMAIN_FILE), &render(&doc))?;
        let dest = root.join(name);
        swap::swap_in(tmp, &new, &dest, None).map_err(io("move the new domain into", &dest))?;
        return Ok(Scaffolded {
            kind,
            path: path.to_string(),
            files: vec![format!("{name}/{DOMAIN_FILE}")],
        });
    }
    let Some(domain) = found else {
        return Err(ScaffoldError::NoParent {
            what: "domain",
            path: parts[0].to_string(),
            root: root.to_path_buf(),
        });
    };
    ensure_writable(&domain.info)?;

    // The namespaces on the way (all but the object's own name, and the
    // class for instances and methods).
    let ns_end = match kind {
        NewKind::Instance | NewKind::Method => parts.len() - 2,
        _ => parts.len() - 1,
    };
    let mut dir = domain.path.clone();
    let mut rel = domain.dir_name.clone();
    for (i, ns) in parts[1..ns_end].iter().enumerate() {
        match child(&dir, ns).filter(|p| p.join(NAMESPACE_FILE).is_file()) {
            Some(p) => {
                rel = format!("{rel}/{}", file_name(&p));
                dir = p;
            }
            None => {
                return Err(ScaffoldError::NoParent {
                    what: "namespace",
                    path: parts[..i + 2].join("/"),
                    root: root.to_path_buf(),
                })
            }
        }
    }
    match kind {
        NewKind::Namespace | NewKind::Class { .. } => {
            let (dir_name, file, doc) = if kind == NewKind::Namespace {
                let doc = Document::new(
                    "namespace",
                    attrs(&[
                        ("name", s(name)),
                        ("description", Value::Null),
                        ("display_name", Value::Null),
                        ("priority", Value::Null),
                        ("enabled", Value::Null),
                    ]),
                );
                (name.to_string(), NAMESPACE_FILE, doc)
            } else {
                let sm = matches!(
                    kind,
                    NewKind::Class {
                        state_machine: true
                    }
                );
                (format!("{name}.class"), CLASS_FILE, class_doc(name, sm))
            };
            if let Some(p) = child(&dir, &dir_name) {
                return Err(exists(p));
            }
            // A class and a namespace of one name cannot sit side by side
            // in ManageIQ's tables either (`Ns/X` would name both).
            let other = if kind == NewKind::Namespace {
                format!("{name}.class")
            } else {
                name.to_string()
            };
            if let Some(p) = child(&dir, &other) {
                return Err(exists(p));
            }
            let tmp = Workdir::new_in(&dir, swap::IMPORT_PREFIX)
                .map_err(io("create a temporary directory in", &dir))?;
            let new = tmp.path().join(&dir_name);
            std::fs::create_dir(&new).map_err(io("create directory", &new))?;
            write_file(&new.join(file), &render(&doc))?;
            let dest = dir.join(&dir_name);
            swap::swap_in(tmp, &new, &dest, None).map_err(io("move into place", &dest))?;
            Ok(Scaffolded {
                kind,
                path: path.to_string(),
                files: vec![format!("{rel}/{dir_name}/{file}")],
            })
        }
        NewKind::Instance | NewKind::Method => {
            let class = parts[parts.len() - 2];
            let Some(cdir) =
                child(&dir, &format!("{class}.class")).filter(|p| p.join(CLASS_FILE).is_file())
            else {
                return Err(ScaffoldError::NoParent {
                    what: "class",
                    path: parts[..parts.len() - 1].join("/"),
                    root: root.to_path_buf(),
                });
            };
            let crel = format!("{rel}/{}", file_name(&cdir));
            let stem = if name == ".missing" {
                "_missing".to_string()
            } else {
                name.to_ascii_lowercase()
            };
            if kind == NewKind::Instance {
                let file = format!("{stem}.yaml");
                if let Some(p) = child(&cdir, &file) {
                    return Err(exists(p));
                }
                let mut object = attrs(&[
                    ("display_name", Value::Null),
                    ("name", s(name)),
                    ("inherits", Value::Null),
                    ("description", Value::Null),
                ]);
                object.set("fields", Value::Seq(Vec::new()));
                let doc = Document(wrap("instance", object));
                write_file(&cdir.join(&file), &render(&doc))?;
                return Ok(Scaffolded {
                    kind,
                    path: path.to_string(),
                    files: vec![format!("{crel}/{file}")],
                });
            }
            let mdir = cdir.join(METHODS_DIR);
            let (yaml_file, body_file) = (format!("{stem}.yaml"), format!("{stem}.rhai"));
            if mdir.exists() {
                for f in [&yaml_file, &body_file, &format!("{stem}.rb")] {
                    if let Some(p) = child(&mdir, f) {
                        return Err(exists(p));
                    }
                }
            } else {
                std::fs::create_dir(&mdir).map_err(io("create directory", &mdir))?;
            }
            let mut object = attrs(&[
                ("name", s(name)),
                ("display_name", Value::Null),
                ("description", Value::Null),
                ("scope", s("instance")),
                ("language", s("rhai")),
                ("location", s("inline")),
            ]);
            object.set("inputs", Value::Seq(Vec::new()));
            let doc = Document(wrap("method", object));
            let ns_path = parts[1..parts.len() - 2].join("/");
            let body = format!(
                "// /{}/{ns_path}/{class}/{name}: a Rhai method (`automate new method`).\n\
                 // In scope: evm.root, evm.object, evm.inputs, evm.log(level, msg), ...\n\
                 // (docs/porting-ruby-methods.md). Return MIQ_OK, MIQ_WARN, MIQ_STOP or MIQ_ABORT.\n\
                 evm.log(\"info\", \"{name} started\");\n\
                 MIQ_OK\n",
                domain.info.name
            );
            // The body first: the YAML is what makes it a method.
            write_file(&mdir.join(&body_file), body.as_bytes())?;
            write_file(&mdir.join(&yaml_file), &render(&doc))?;
            Ok(Scaffolded {
                kind,
                path: path.to_string(),
                files: vec![
                    format!("{crel}/{METHODS_DIR}/{body_file}"),
                    format!("{crel}/{METHODS_DIR}/{yaml_file}"),
                ],
            })
        }
        NewKind::Domain => unreachable!("handled above"),
    }
}

/// The entry of `dir` named `name`, compared case-insensitively (dot files
/// aside).
fn child(dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(name))
        .map(|e| e.path())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

/// `{attributes: {...}}`.
fn attrs(pairs: &[(&str, Value)]) -> Mapping {
    let mut a = Mapping::new();
    for (k, v) in pairs {
        a.set(k, v.clone());
    }
    let mut object = Mapping::new();
    object.set("attributes", Value::Map(a));
    object
}

fn wrap(object_type: &str, object: Mapping) -> Mapping {
    Document::new(object_type, object).0
}

fn render(doc: &Document) -> Vec<u8> {
    yaml::to_psych_yaml(&Value::Map(doc.0.clone())).into_bytes()
}

/// One schema field with ManageIQ's 19 keys in their order.
fn field(aetype: &str, name: &str, priority: i64, extra: &[(&str, Value)]) -> Value {
    let mut f = Mapping::new();
    for (k, v) in [
        ("aetype", s(aetype)),
        ("name", s(name)),
        ("display_name", Value::Null),
        ("datatype", s("string")),
        ("priority", Value::Int(priority)),
        ("owner", Value::Null),
        ("default_value", Value::Null),
        ("substitute", Value::Bool(true)),
        ("message", s("create")),
        ("visibility", Value::Null),
        ("collect", Value::Null),
        ("scope", Value::Null),
        ("description", Value::Null),
        ("condition", Value::Null),
        ("on_entry", Value::Null),
        ("on_exit", Value::Null),
        ("on_error", Value::Null),
        ("max_retries", Value::Null),
        ("max_time", Value::Null),
    ] {
        f.set(k, v);
    }
    for (k, v) in extra {
        f.set(k, v.clone());
    }
    let mut entry = Mapping::new();
    entry.set("field", Value::Map(f));
    Value::Map(entry)
}

fn class_doc(name: &str, state_machine: bool) -> Document {
    let mut object = attrs(&[
        ("description", Value::Null),
        ("display_name", Value::Null),
        ("name", s(name)),
        ("type", Value::Null),
        ("inherits", Value::Null),
        ("visibility", Value::Null),
        ("owner", Value::Null),
    ]);
    let schema = if state_machine {
        vec![
            field("state", "pre", 1, &[]),
            field("state", "execute", 2, &[("max_retries", s("100"))]),
            field("state", "post", 3, &[]),
        ]
    } else {
        vec![field("method", "execute", 1, &[])]
    };
    object.set("schema", Value::Seq(schema));
    Document(wrap("class", object))
}

/// Writes `bytes` to `path` through a temporary file renamed into place.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ScaffoldError> {
    let tmp = path.with_file_name(format!(".{}.tmp", file_name(path)));
    let fail = |action: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |error| ScaffoldError::Io {
            action,
            path,
            error,
        }
    };
    std::fs::write(&tmp, bytes).map_err(fail("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(fail("rename into place", path))
}
