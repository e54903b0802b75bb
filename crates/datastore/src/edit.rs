//! In-place edits of a datastore on disk, as the web UI's Explorer makes
//! them: an instance's values ([`set_instance_values`]) and an inline Rhai
//! method's body ([`set_method_body`]).
//!
//! Both find the object under its domain directory by name
//! (case-insensitively, as the loader compares names), refuse read-only
//! domains (`system`, `user_locked`, `remote`: [`ensure_writable`]),
//! validate before anything is written, and write one file through a
//! temporary dot file (which the loader and the watcher ignore) renamed
//! into place. An instance is written by the same Psych-style writer export
//! uses, from the document it was read into, so a file export wrote
//! changes only on the lines of the values edited.

use super::dirs::domain_dirs;
use super::fs::{self as dsfs, Problem, CLASS_FILE, METHODS_DIR, NAMESPACE_FILE};
use super::import::{ensure_writable, ReadOnlyDomain};
use super::model::{Class, Document, Instance, Method, MethodBody};
use super::yaml::{self, Mapping, Value};
use std::path::{Path, PathBuf};

/// The longest value an edit accepts, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Why an edit wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The path does not name an object of that kind.
    #[error("`{path}` is not a {kind} path: expected DOMAIN/NAMESPACE[/SUB...]/CLASS/NAME")]
    BadPath {
        /// The path given.
        path: String,
        /// `instance` or `method`.
        kind: &'static str,
    },
    /// No such domain, namespace, class, instance or method on disk.
    #[error("no {what} `{path}` in the datastore `{}`", root.display())]
    NotFound {
        /// `domain`, `namespace`, `class`, `instance` or `method`.
        what: &'static str,
        /// Its path.
        path: String,
        /// The datastore root.
        root: PathBuf,
    },
    /// The domain is read-only.
    #[error(transparent)]
    ReadOnly(#[from] ReadOnlyDomain),
    /// A value that cannot be saved, naming its field.
    #[error("{field}: {message}")]
    BadValue {
        /// The field of the class's schema (or the name given).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The method cannot be edited here (not inline Rhai).
    #[error(
        "method `{path}` is {language} ({location}): only inline Rhai methods are edited here"
    )]
    NotRhai {
        /// The method's path.
        path: String,
        /// Its `language`.
        language: String,
        /// Its `location`.
        location: String,
    },
    /// The new body does not compile: the problems of the method check
    /// (file, line, column, message), nothing written.
    #[error("the method does not compile: {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Compile(Vec<Problem>),
    /// A file of the datastore could not be read as the loader reads it.
    #[error("{0}")]
    Unreadable(Problem),
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

/// What an edit wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    /// The file written (empty when nothing changed).
    pub file: Option<PathBuf>,
    /// The fields (or `body`) whose value changed, in the order given.
    pub changed: Vec<String>,
}

/// Where a class lives on disk.
struct ClassDir {
    dir: PathBuf,
    class: Class,
    /// The directory the files must lie in (for the loader's checks).
    base: PathBuf,
}

/// The class directory of `parts` (`[domain, ns..., class, name]`), its
/// domain checked writable.
fn class_dir(root: &Path, parts: &[&str]) -> Result<ClassDir, EditError> {
    let io = |action: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |error| EditError::Io {
            action,
            path,
            error,
        }
    };
    let not_found = |what, upto: usize| EditError::NotFound {
        what,
        path: parts[..upto].join("/"),
        root: root.to_path_buf(),
    };
    let (domains, _) = domain_dirs(root).map_err(io("read the datastore directory", root))?;
    let domain = domains
        .iter()
        .find(|d| {
            d.info.name.eq_ignore_ascii_case(parts[0]) || d.dir_name.eq_ignore_ascii_case(parts[0])
        })
        .ok_or_else(|| not_found("domain", 1))?;
    ensure_writable(&domain.info)?;
    let mut dir = domain.path.clone();
    let class_at = parts.len() - 2;
    for (i, ns) in parts.iter().enumerate().take(class_at).skip(1) {
        dir = child(&dir, ns)
            .filter(|p| p.join(NAMESPACE_FILE).is_file())
            .ok_or_else(|| not_found("namespace", i + 1))?;
    }
    let dir = child(&dir, &format!("{}.class", parts[class_at]))
        .filter(|p| p.join(CLASS_FILE).is_file())
        .ok_or_else(|| not_found("class", class_at + 1))?;
    let base = domain
        .path
        .canonicalize()
        .map_err(io("resolve", &domain.path))?;
    let doc = read_doc(&dir.join(CLASS_FILE), &base)?;
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(ClassDir {
        dir,
        class: Class {
            dir_name,
            doc,
            instances: Vec::new(),
            methods: Vec::new(),
        },
        base,
    })
}

/// The entry of `dir` named `name`, compared case-insensitively (dot
/// files aside).
fn child(dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(name))
        .map(|e| e.path())
}

/// A datastore file parsed as the loader parses it.
fn read_doc(path: &Path, base: &Path) -> Result<Document, EditError> {
    let text = dsfs::read_text_in(path, base).map_err(EditError::Unreadable)?;
    let mut problems = Vec::new();
    match dsfs::parse_doc(&text, path, &mut problems) {
        Some(doc) => Ok(doc),
        None => Err(EditError::Unreadable(
            problems
                .into_iter()
                .next()
                .unwrap_or_else(|| Problem::new(path, "the file does not parse")),
        )),
    }
}

/// The `.yaml` files of `dir` (not `__class__.yaml`, no dot files), sorted.
/// The YAML file in `dir` whose object is named `name` (case-insensitively,
/// as the datastore resolves names): its path, file name and document; a
/// `NotFound` naming the `what` at `parts` under `root` when none is.
fn find_named(
    dir: &Path,
    base: &Path,
    name: &str,
    what: &'static str,
    parts: &[&str],
    root: &Path,
) -> Result<(PathBuf, String, Document), EditError> {
    for file in yaml_files(dir) {
        let doc = read_doc(&file, base)?;
        if doc
            .attr_str("name")
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
        {
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok((file, file_name, doc));
        }
    }
    Err(EditError::NotFound {
        what,
        path: parts.join("/"),
        root: root.to_path_buf(),
    })
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .filter(|p| {
                    let n = p
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default();
                    n.ends_with(".yaml") && !n.starts_with('.') && n != CLASS_FILE
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn split<'a>(path: &'a str, kind: &'static str) -> Result<Vec<&'a str>, EditError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.len() < 4 || parts.iter().any(|p| p.is_empty()) {
        return Err(EditError::BadPath {
            path: path.to_string(),
            kind,
        });
    }
    Ok(parts)
}

/// Checks one value as the datastore would read it back: plain text (no
/// control character but tab), at most [`MAX_VALUE_BYTES`], and the same
/// text after a write and a read.
fn check_value(field: &str, text: &str) -> Result<(), EditError> {
    let bad = |message: String| EditError::BadValue {
        field: field.to_string(),
        message,
    };
    if text.len() > MAX_VALUE_BYTES {
        return Err(bad(format!(
            "the value is {} bytes; at most {MAX_VALUE_BYTES} are allowed",
            text.len()
        )));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(bad(format!(
            "the value holds the control character U+{:04X}; values are one line of text",
            c as u32
        )));
    }
    let mut m = Mapping::new();
    m.set("value", Value::Str(text.to_string()));
    let rendered = yaml::to_psych_yaml(&Value::Map(m));
    let back = yaml::parse_document(&rendered, Path::new("value"))
        .ok()
        .and_then(|v| {
            v.as_map()
                .and_then(|m| m.get("value"))
                .and_then(Value::scalar_text)
        });
    if back.as_deref() != Some(text) {
        return Err(bad(
            "the value would not read back as written; remove unusual characters".into(),
        ));
    }
    Ok(())
}

/// Sets the `value` of fields of the instance `path`
/// (`Domain/ns.../Class/instance`) in the datastore at `root`. Each change
/// is `(field, text)`; an empty text unsets the instance's value (the class
/// default applies). Field names must be in the class's schema
/// (case-insensitively); unchanged values are left as they are.
pub fn set_instance_values(
    root: &Path,
    path: &str,
    changes: &[(String, String)],
) -> Result<Edited, EditError> {
    let parts = split(path, "instance")?;
    let cd = class_dir(root, &parts)?;
    let name = parts[parts.len() - 1];
    let schema: Vec<String> = cd
        .class
        .schema()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    // Validate everything first.
    let mut resolved: Vec<(String, &str)> = Vec::new();
    for (field, text) in changes {
        let Some(f) = schema.iter().find(|f| f.eq_ignore_ascii_case(field)) else {
            return Err(EditError::BadValue {
                field: field.clone(),
                message: format!(
                    "no such field in the schema of class `{}`; the fields are {}",
                    cd.class.name(),
                    schema.join(", ")
                ),
            });
        };
        check_value(f, text)?;
        resolved.push((f.clone(), text.as_str()));
    }
    let (file, file_name, doc) = find_named(&cd.dir, &cd.base, name, "instance", &parts, root)?;
    let mut inst = Instance { file_name, doc };
    let mut changed = Vec::new();
    for (field, text) in resolved {
        if apply_value(&mut inst.doc, &schema, &field, text) {
            changed.push(field);
        }
    }
    if changed.is_empty() {
        return Ok(Edited {
            file: None,
            changed,
        });
    }
    let bytes = yaml::to_psych_yaml(&Value::Map(inst.doc.0.clone())).into_bytes();
    write_atomic(&file, &bytes)?;
    tracing::info!(target: "evm", "MIQ(Datastore#edit) instance {path}: set {} in {}", changed.join(", "), file.display());
    Ok(Edited {
        file: Some(file),
        changed,
    })
}

/// Sets `field`'s value in the instance document; whether it changed.
fn apply_value(doc: &mut Document, schema: &[String], field: &str, text: &str) -> bool {
    let Some(Value::Map(object)) = doc.0.get_mut("object") else {
        return false;
    };
    if !matches!(object.get("fields"), Some(Value::Seq(_))) {
        object.set("fields", Value::Seq(Vec::new()));
    }
    let Some(Value::Seq(items)) = object.get_mut("fields") else {
        return false;
    };
    let pos = items.iter().position(|it| {
        it.as_map()
            .and_then(|m| m.0.first())
            .is_some_and(|(k, _)| k.eq_ignore_ascii_case(field))
    });
    let current = pos
        .and_then(|i| items[i].as_map())
        .and_then(|m| m.0.first())
        .and_then(|(_, v)| v.as_map())
        .and_then(|m| m.get("value"))
        .and_then(|v| if v.is_null() { None } else { v.scalar_text() })
        .unwrap_or_default();
    if current == text {
        return false;
    }
    match pos {
        Some(i) => {
            let Some(Value::Map(entry)) = items.get_mut(i) else {
                return false;
            };
            let Some((_, attrs)) = entry.0.first_mut() else {
                return false;
            };
            if !matches!(attrs, Value::Map(_)) {
                *attrs = Value::Map(Mapping::new());
            }
            let Value::Map(attrs) = attrs else {
                return false;
            };
            if text.is_empty() {
                if attrs.len() <= 1 {
                    items.remove(i);
                } else {
                    attrs.set("value", Value::Null);
                }
            } else {
                attrs.set("value", Value::Str(text.to_string()));
            }
        }
        None => {
            if text.is_empty() {
                return false;
            }
            let mut attrs = Mapping::new();
            attrs.set("value", Value::Str(text.to_string()));
            let mut entry = Mapping::new();
            entry.set(field, Value::Map(attrs));
            // In schema order: before the first entry of a later field.
            let rank = |name: &str| schema.iter().position(|f| f.eq_ignore_ascii_case(name));
            let mine = rank(field);
            let at = items
                .iter()
                .position(|it| {
                    it.as_map()
                        .and_then(|m| m.0.first())
                        .and_then(|(k, _)| rank(k))
                        .zip(mine)
                        .is_some_and(|(theirs, mine)| theirs > mine)
                })
                .unwrap_or(items.len());
            items.insert(at, Value::Map(entry));
        }
    }
    true
}

/// Replaces the body of the inline Rhai method `path`
/// (`Domain/ns.../Class/method`) in the datastore at `root` with `body`,
/// after `check` (the method runner's compile check, as `datastore
/// validate` runs it) found no problem with the new body: its body file
/// (`<m>.rhai`), or its `data` attribute when it has none.
pub fn set_method_body(
    root: &Path,
    path: &str,
    body: &str,
    check: &dyn Fn(&Method, &Path) -> Vec<Problem>,
) -> Result<Edited, EditError> {
    let parts = split(path, "method")?;
    let cd = class_dir(root, &parts)?;
    let name = parts[parts.len() - 1];
    let mdir = cd.dir.join(METHODS_DIR);
    let (yaml_path, file_name, doc) = find_named(&mdir, &cd.base, name, "method", &parts, root)?;
    let stem = file_name
        .strip_suffix(".yaml")
        .unwrap_or(&file_name)
        .to_string();
    let body_file = ["rhai", "rb", "pl"]
        .iter()
        .map(|ext| format!("{stem}.{ext}"))
        .find(|f| mdir.join(f).is_file());
    let mut method = Method {
        file_name,
        doc,
        body: body_file.clone().map(|file_name| MethodBody {
            file_name,
            bytes: Vec::new(),
        }),
    };
    if !method.language().eq_ignore_ascii_case("rhai") || method.location() != "inline" {
        return Err(EditError::NotRhai {
            path: parts.join("/"),
            language: method.language().to_string(),
            location: method.location().to_string(),
        });
    }
    if body.len() > dsfs::MAX_METHOD_BODY_BYTES {
        return Err(EditError::BadValue {
            field: "body".into(),
            message: format!(
                "the body is {} bytes; at most {} are allowed",
                body.len(),
                dsfs::MAX_METHOD_BODY_BYTES
            ),
        });
    }
    let (target, bytes) = match &mut method.body {
        Some(b) => {
            b.bytes = body.as_bytes().to_vec();
            (mdir.join(&b.file_name), body.as_bytes().to_vec())
        }
        None => {
            method
                .doc
                .set_attribute("data", Value::Str(body.to_string()));
            (
                yaml_path.clone(),
                yaml::to_psych_yaml(&Value::Map(method.doc.0.clone())).into_bytes(),
            )
        }
    };
    let problems = check(&method, &yaml_path);
    if !problems.is_empty() {
        return Err(EditError::Compile(problems));
    }
    let old = std::fs::read(&target).unwrap_or_default();
    if old == bytes {
        return Ok(Edited {
            file: None,
            changed: Vec::new(),
        });
    }
    write_atomic(&target, &bytes)?;
    tracing::info!(target: "evm", "MIQ(Datastore#edit) method {path}: body saved to {}", target.display());
    Ok(Edited {
        file: Some(target),
        changed: vec!["body".into()],
    })
}

/// Writes `bytes` to `path` through a temporary dot file in the same
/// directory, synced, then renamed into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EditError> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.edit-{}.tmp", std::process::id()));
    let fail = |action: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |error| EditError::Io {
            action,
            path,
            error,
        }
    };
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(fail("create", &tmp))?;
        f.write_all(bytes).map_err(fail("write", &tmp))?;
        f.sync_all().map_err(fail("sync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(fail("rename into place", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(source: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("Dom");
        let c = d.join("Ns/Cls.class");
        std::fs::create_dir_all(c.join(METHODS_DIR)).unwrap();
        std::fs::write(
            d.join("__domain__.yaml"),
            format!("---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: Dom\n    priority: 1\n    enabled: true\n    source: {source}\n"),
        )
        .unwrap();
        std::fs::write(
            d.join("Ns/__namespace__.yaml"),
            "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Ns\n",
        )
        .unwrap();
        std::fs::write(
            c.join("__class__.yaml"),
            "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    name: Cls\n  schema:\n  - field:\n      aetype: attribute\n      name: a\n  - field:\n      aetype: attribute\n      name: b\n  - field:\n      aetype: method\n      name: c\n",
        )
        .unwrap();
        std::fs::write(
            c.join("inst.yaml"),
            "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    display_name:\n    name: Inst\n    inherits:\n    description:\n  fields:\n  - a:\n      value: one\n  - c:\n      value: three\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_value_changes_one_line_and_a_new_one_goes_in_schema_order() {
        let dir = setup("user");
        let file = dir.path().join("Dom/Ns/Cls.class/inst.yaml");
        let before = std::fs::read_to_string(&file).unwrap();
        let e = set_instance_values(
            dir.path(),
            "Dom/Ns/Cls/Inst",
            &[("A".into(), "uno".into()), ("c".into(), "three".into())],
        )
        .unwrap();
        assert_eq!(e.changed, vec!["a".to_string()]);
        let after = std::fs::read_to_string(&file).unwrap();
        let diff: Vec<_> = before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(diff, vec![("      value: one", "      value: uno")]);
        set_instance_values(dir.path(), "dom/ns/cls/inst", &[("b".into(), "42".into())]).unwrap();
        let after = std::fs::read_to_string(&file).unwrap();
        assert!(
            after.ends_with(
                "  - a:\n      value: uno\n  - b:\n      value: '42'\n  - c:\n      value: three\n"
            ),
            "{after}"
        );
        // Unset: the entry goes.
        set_instance_values(
            dir.path(),
            "Dom/Ns/Cls/Inst",
            &[("b".into(), String::new())],
        )
        .unwrap();
        let after = std::fs::read_to_string(&file).unwrap();
        assert!(!after.contains("- b:"), "{after}");
    }

    #[test]
    fn bad_fields_values_and_locked_domains_are_refused() {
        let dir = setup("user");
        let err = set_instance_values(dir.path(), "Dom/Ns/Cls/Inst", &[("zz".into(), "1".into())])
            .unwrap_err();
        assert!(err.to_string().starts_with("zz: no such field"), "{err}");
        let err = set_instance_values(
            dir.path(),
            "Dom/Ns/Cls/Inst",
            &[("a".into(), "x\ny".into())],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("control character U+000A"),
            "{err}"
        );
        let err = set_instance_values(dir.path(), "Dom/Ns/Cls/Nope", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                EditError::NotFound {
                    what: "instance",
                    ..
                }
            ),
            "{err}"
        );
        let locked = setup("user_locked");
        let err = set_instance_values(
            locked.path(),
            "Dom/Ns/Cls/Inst",
            &[("a".into(), "x".into())],
        )
        .unwrap_err();
        assert!(matches!(err, EditError::ReadOnly(_)), "{err}");
    }

    #[test]
    fn a_method_body_is_checked_before_it_is_written() {
        let dir = setup("user");
        let m = dir.path().join("Dom/Ns/Cls.class/__methods__");
        std::fs::write(
            m.join("run.yaml"),
            "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: Run\n    language: rhai\n    location: inline\n  inputs: []\n",
        )
        .unwrap();
        std::fs::write(m.join("run.rhai"), "MIQ_OK\n").unwrap();
        let refuse = |_: &Method, p: &Path| vec![Problem::new(p, "bad").at_line(2)];
        let err = set_method_body(dir.path(), "Dom/Ns/Cls/run", "x\n(\n", &refuse).unwrap_err();
        assert!(
            matches!(err, EditError::Compile(ref p) if p[0].line == 2),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(m.join("run.rhai")).unwrap(),
            "MIQ_OK\n"
        );
        let accept = |m: &Method, _: &Path| {
            assert_eq!(m.data().as_deref(), Some("MIQ_WARN\n"));
            Vec::new()
        };
        let e = set_method_body(dir.path(), "Dom/Ns/Cls/RUN", "MIQ_WARN\n", &accept).unwrap();
        assert_eq!(e.changed, vec!["body".to_string()]);
        assert_eq!(
            std::fs::read_to_string(m.join("run.rhai")).unwrap(),
            "MIQ_WARN\n"
        );
        let names: Vec<_> = std::fs::read_dir(&m)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }
}
