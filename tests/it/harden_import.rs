//! Hardening of the datastore's import, export and loader (issue 16, items
//! 2, 10, 11, 12 and the YAML part of 15): symbolic links, FIFOs and huge
//! bodies are refused naming the file, names that are not UTF-8 are refused
//! instead of colliding, an `--overwrite` killed between its renames is
//! rolled back, every export imports back (a property test), and a second
//! YAML document or a `*.YAML` file is reported, never silently dropped.

use automate_datastore::export::{self, ExportOptions};
use automate_datastore::fs::{self as dsfs, MAX_METHOD_BODY_BYTES};
use automate_datastore::import::{self, ImportError, ImportOptions};
use automate_datastore::model::{Class, Document, Domain, Instance, Method, MethodBody, Namespace};
use automate_datastore::swap;
use automate_datastore::yaml::{Mapping, Value};
use automate_datastore::zip_safety;
use automate_datastore::Datastore;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/datastore/small/Sample")
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// A copy of the small `Sample` domain at `dir/Sample`.
fn sample_copy(dir: &Path) -> PathBuf {
    let dst = dir.join("Sample");
    copy_dir(&sample(), &dst);
    dst
}

/// Every file and directory under `dir` (links listed, not followed) with
/// its bytes (`None` for a directory or a link).
fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    crate::common::tree_entries(dir)
        .into_iter()
        .map(|(rel, path, kind)| {
            if kind.is_dir() {
                (format!("{rel}/"), None)
            } else if kind.is_symlink() {
                (format!("{rel}@"), None)
            } else {
                (rel, Some(fs::read(&path).unwrap()))
            }
        })
        .collect()
}

fn automate(ds: &Path, args: &[&str], tmpdir: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_automate"));
    cmd.arg("--datastore")
        .arg(ds)
        .args(args)
        .env_remove("AUTOMATE_DATASTORE")
        .env("RUST_LOG", "warn");
    if let Some(t) = tmpdir {
        cmd.env("TMPDIR", t);
    }
    cmd.output().expect("run automate")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A datastore at `tmp/ds` holding `Sample`.
fn sample_datastore(tmp: &Path) -> PathBuf {
    let ds = tmp.join("ds");
    import::import(&ds, &sample(), &ImportOptions::default()).unwrap();
    ds
}

/// Imports `source` into a datastore holding `Sample`; the import must fail
/// naming everything in `expect`, and leave the datastore as it was.
fn refused(source: &Path, expect: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let ds = sample_datastore(tmp.path());
    let before = tree(&ds);
    let err = match import::import(&ds, source, &ImportOptions::default()) {
        Ok(s) => panic!("imported {s:?}"),
        Err(e) => e.to_string(),
    };
    for e in expect {
        assert!(err.contains(e), "{e:?} not in:\n{err}");
    }
    assert_eq!(before, tree(&ds), "a refused import changed the datastore");
    err
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

// ---------------------------------------------------------------------------
// Item 2: links, special files and sizes

#[cfg(unix)]
#[test]
fn a_symlinked_method_body_or_class_file_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret.txt");
    fs::write(&secret, "SECRET-TOKEN-4711\n").unwrap();
    let methods = "Demo/Greeting.class/__methods__";

    // The method body, to a file outside the tree and to /proc/self/environ.
    for target in [secret.as_path(), Path::new("/proc/self/environ")] {
        let src_dir = tempfile::tempdir().unwrap();
        let src = sample_copy(src_dir.path());
        let body = src.join(methods).join("say.rhai");
        fs::remove_file(&body).unwrap();
        symlink(target, &body);
        refused(&src, &["say.rhai", "symbolic link"]);
    }

    // `__class__.yaml`, pointing at a class file that is valid YAML.
    let src_dir = tempfile::tempdir().unwrap();
    let src = sample_copy(src_dir.path());
    let outside = tmp.path().join("class.yaml");
    let class_file = src.join("Demo/Greeting.class/__class__.yaml");
    fs::rename(&class_file, &outside).unwrap();
    symlink(&outside, &class_file);
    refused(&src, &["__class__.yaml", "symbolic link"]);

    // A namespace directory that is a link to a namespace elsewhere.
    let src_dir = tempfile::tempdir().unwrap();
    let src = sample_copy(src_dir.path());
    let ns_outside = tmp.path().join("Linked");
    copy_dir(&src.join("Demo"), &ns_outside);
    symlink(&ns_outside, &src.join("Linked"));
    refused(&src, &["Linked", "symbolic link"]);

    // A domain given as a link inside a directory of domains is not followed.
    let src_dir = tempfile::tempdir().unwrap();
    let real = sample_copy(tmp.path());
    symlink(&real, &src_dir.path().join("Sample"));
    refused(src_dir.path(), &["Sample", "symbolic link"]);
}

#[cfg(unix)]
#[test]
fn the_cli_import_refuses_a_linked_body_and_leaks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret.txt");
    fs::write(&secret, "SECRET-TOKEN-4711\n").unwrap();
    let src = sample_copy(&tmp.path().join("src"));
    let body = src.join("Demo/Greeting.class/__methods__/say.rhai");
    fs::remove_file(&body).unwrap();
    symlink(&secret, &body);
    let ds = tmp.path().join("ds");
    let o = automate(&ds, &["import", src.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("say.rhai: is a symbolic link"),
        "{}",
        text(&o)
    );
    let leaked = ds.exists()
        && tree(&ds)
            .values()
            .flatten()
            .any(|b| String::from_utf8_lossy(b).contains("SECRET-TOKEN"));
    assert!(!leaked, "the secret reached the datastore");
}

#[cfg(unix)]
#[test]
fn the_loader_reports_links_in_the_shipped_datastore_and_never_follows_them() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = sample_datastore(tmp.path());
    let secret = tmp.path().join("secret.txt");
    fs::write(&secret, "SECRET-TOKEN-4711\n").unwrap();
    let body = ds.join("Sample/Demo/Greeting.class/__methods__/say.rhai");
    fs::remove_file(&body).unwrap();
    symlink(&secret, &body);
    // A whole domain linked in from elsewhere.
    let other = tmp.path().join("elsewhere");
    let linked = sample_copy(&other);
    fs::write(
        linked.join("__domain__.yaml"),
        fs::read_to_string(linked.join("__domain__.yaml"))
            .unwrap()
            .replace("name: Sample", "name: Linked"),
    )
    .unwrap();
    symlink(&linked, &ds.join("Linked"));

    let (store, problems) = Datastore::open(&ds);
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        shown
            .iter()
            .any(|p| p.contains("say.rhai: is a symbolic link")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|p| p.contains("Linked: is a symbolic link")),
        "{shown:#?}"
    );
    let index = store.index();
    let names: Vec<String> = index.domains().iter().map(|d| d.name.to_string()).collect();
    assert_eq!(
        names,
        vec!["Sample".to_string()],
        "the linked domain loaded"
    );
    let leaked = index.all_classes().any(|c| {
        c.methods().any(|m| {
            m.body
                .as_deref()
                .is_some_and(|b| b.contains("SECRET-TOKEN"))
        })
    });
    assert!(!leaked, "the linked body was read");

    // `datastore validate` lists both and fails.
    let o = automate(&ds, &["datastore", "validate"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("symbolic link"), "{}", text(&o));
}

#[cfg(unix)]
#[test]
fn a_fifo_in_the_tree_is_refused_without_waiting_on_it() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = sample_copy(src_dir.path());
    let fifo = src.join("Demo/Greeting.class/waiting.yaml");
    match Command::new("mkfifo").arg(&fifo).status() {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("skipping: mkfifo is not available ({other:?})");
            return;
        }
    }
    refused(&src, &["waiting.yaml", "not a regular file"]);
}

#[test]
fn a_method_body_over_the_cap_is_refused() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = sample_copy(src_dir.path());
    let body = src.join("Demo/Greeting.class/__methods__/say.rhai");
    fs::write(&body, "# x\n".repeat(MAX_METHOD_BODY_BYTES / 4 + 1)).unwrap();
    refused(&src, &["say.rhai", "method body"]);
}

// ---------------------------------------------------------------------------
// Item 10: names that are not UTF-8

#[cfg(unix)]
#[test]
fn file_names_that_are_not_utf8_are_refused_naming_their_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let src_dir = tempfile::tempdir().unwrap();
    let src = sample_copy(src_dir.path());
    let class = src.join("Demo/Greeting.class");
    let hello = fs::read_to_string(class.join("hello.yaml")).unwrap();
    // Two instances whose names differ only in an invalid byte: a lossy
    // conversion makes both `a\u{FFFD}.yaml`, and one would be lost.
    for (byte, name) in [(0xffu8, "one"), (0xfe, "two")] {
        let mut file = b"a".to_vec();
        file.push(byte);
        file.extend_from_slice(b".yaml");
        let text = hello.replace("name: hello", &format!("name: {name}"));
        fs::write(class.join(OsStr::from_bytes(&file)), text).unwrap();
    }
    let err = refused(&src, &["a\\xff.yaml", "a\\xfe.yaml", "not valid UTF-8"]);
    assert_eq!(err.matches("not valid UTF-8").count(), 2, "{err}");

    // The loader of a datastore reports them the same way and loads neither.
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    copy_dir(src_dir.path(), &ds);
    let (store, problems) = Datastore::open(&ds);
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown
            .iter()
            .filter(|p| p.contains("not valid UTF-8"))
            .count(),
        2,
        "{shown:#?}"
    );
    let instances: usize = store.index().all_classes().map(|c| c.instances.len()).sum();
    assert_eq!(instances, 2, "only hello and .missing load");
}

// ---------------------------------------------------------------------------
// Item 11: the --overwrite window and debris

/// The state a kill between the two renames of an `--overwrite` leaves in
/// the journal fallback: the work directory with its (now unheld) lock,
/// the journal, the old domain moved aside, a half-written new domain, and
/// no `Sample` in the root.
fn crash_between_renames(ds: &Path) -> PathBuf {
    let work = ds.join(".import-k1ll3d");
    fs::create_dir(&work).unwrap();
    fs::write(work.join(swap::LOCK_FILE), "").unwrap();
    fs::write(work.join(swap::JOURNAL_FILE), "old=Sample\nnew=Sample\n").unwrap();
    fs::rename(ds.join("Sample"), work.join(swap::PREVIOUS_DIR)).unwrap();
    fs::create_dir_all(work.join("Sample/Demo")).unwrap();
    fs::write(work.join("Sample/__domain__.yaml"), "---\nobject_type: dom").unwrap();
    assert!(!ds.join("Sample").exists());
    work
}

#[test]
fn an_overwrite_killed_between_its_renames_is_rolled_back_by_the_next_open() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = sample_datastore(tmp.path());
    let before = tree(&ds.join("Sample"));
    let work = crash_between_renames(&ds);
    // Stale work directories of other kinds are removed too.
    fs::create_dir(ds.join(".import-0ld")).unwrap();
    fs::write(ds.join(".import-0ld/.lock"), "").unwrap();

    let (store, problems) = Datastore::open(&ds);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(tree(&ds.join("Sample")), before, "the domain is not intact");
    assert!(store.index().domains().iter().any(|d| &*d.name == "Sample"));
    assert!(!work.exists() && !ds.join(".import-0ld").exists());
    let left: Vec<String> = fs::read_dir(&ds)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["Sample".to_string()]);
}

#[test]
fn an_overwrite_killed_between_its_renames_is_rolled_back_by_the_next_import() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = sample_datastore(tmp.path());
    let before = tree(&ds.join("Sample"));
    let work = crash_between_renames(&ds);
    // A zip extraction killed half way, in the temp directory of the import.
    let tmpdir = tmp.path().join("tmp");
    let zip_debris = tmpdir.join(".automate-zip-k1ll3d");
    fs::create_dir_all(zip_debris.join("Sample")).unwrap();
    fs::write(zip_debris.join(".lock"), "").unwrap();
    let zip = tmp.path().join("s.zip");
    let out = tmp.path().join("other");
    fs::create_dir(&out).unwrap();
    let src = sample_copy(&out);
    fs::write(
        src.join("__domain__.yaml"),
        fs::read_to_string(src.join("__domain__.yaml"))
            .unwrap()
            .replace("name: Sample", "name: Other"),
    )
    .unwrap();
    let scratch = tmp.path().join("scratch");
    import::import(&scratch, &src, &ImportOptions::default()).unwrap();
    export::export(&scratch, "Other", &zip, &ExportOptions::default()).unwrap();

    let o = automate(&ds, &["import", zip.to_str().unwrap()], Some(&tmpdir));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(tree(&ds.join("Sample")), before, "the domain is not intact");
    assert!(ds.join("Other/__domain__.yaml").is_file());
    assert!(!work.exists(), "the import work directory is left");
    assert!(!zip_debris.exists(), "the zip extraction debris is left");
    assert_eq!(fs::read_dir(&tmpdir).unwrap().count(), 0);
}

#[test]
fn a_finished_swap_whose_cleanup_was_killed_keeps_the_new_domain() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = sample_datastore(tmp.path());
    // The new domain is in place; the old one is still in `.previous`.
    let work = ds.join(".import-d0ne");
    fs::create_dir(&work).unwrap();
    fs::write(work.join(swap::LOCK_FILE), "").unwrap();
    fs::write(work.join(swap::JOURNAL_FILE), "old=Sample\nnew=Sample\n").unwrap();
    copy_dir(&ds.join("Sample"), &work.join(swap::PREVIOUS_DIR));
    let described = ds.join("Sample/__domain__.yaml");
    let new_text = fs::read_to_string(&described)
        .unwrap()
        .replace("Small test domain", "The new one");
    fs::write(&described, &new_text).unwrap();
    let (_store, problems) = Datastore::open(&ds);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(fs::read_to_string(&described).unwrap(), new_text);
    assert!(!work.exists());
}

#[test]
fn an_overwrite_import_replaces_the_domain_and_leaves_no_debris() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = sample_datastore(tmp.path());
    let src = sample_copy(&tmp.path().join("src"));
    fs::write(
        src.join("__domain__.yaml"),
        fs::read_to_string(src.join("__domain__.yaml"))
            .unwrap()
            .replace("Small test domain", "Replaced"),
    )
    .unwrap();
    let s = import::import(&ds, &src, &crate::common::overwriting()).unwrap();
    assert!(s.replaced);
    let text = fs::read_to_string(ds.join("Sample/__domain__.yaml")).unwrap();
    assert!(text.contains("Replaced"), "{text}");
    assert_eq!(fs::read_dir(&ds).unwrap().count(), 1, "debris in {ds:?}");

    // A killed export's work directory beside the destination goes too.
    let dest = tmp.path().join("out");
    fs::create_dir_all(dest.join(".export-k1ll3d/Sample")).unwrap();
    fs::write(dest.join(".export-k1ll3d/.lock"), "").unwrap();
    fs::write(dest.join(".export-k1ll3d.zip"), "PK").unwrap();
    export::export(&ds, "Sample", &dest, &ExportOptions::default()).unwrap();
    let left: Vec<String> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["Sample".to_string()]);
}

// ---------------------------------------------------------------------------
// Item 12: every export imports back

#[test]
fn a_large_compressible_method_body_exports_to_a_zip_that_imports_back() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = sample_datastore(tmp.path());
    let body = ds.join("Sample/Demo/Greeting.class/__methods__/say.rhai");
    let big = "evm.log(\"info\", \"a line of a long but legitimate method\");\n".repeat(25_000);
    assert!(big.len() > 1_400_000);
    fs::write(&body, &big).unwrap();
    let zip = tmp.path().join("big.zip");
    export::export(&ds, "Sample", &zip, &ExportOptions::default()).unwrap();
    let ratio = big.len() as u64 / fs::metadata(&zip).unwrap().len();
    assert!(
        ratio > 100,
        "the body compresses {ratio}:1, the old guard's limit"
    );
    let ds2 = tmp.path().join("ds2");
    import::import(&ds2, &zip, &ImportOptions::default()).unwrap();
    assert_eq!(
        fs::read(ds2.join("Sample/Demo/Greeting.class/__methods__/say.rhai")).unwrap(),
        big.as_bytes()
    );
}

#[test]
fn a_zip_entry_over_the_per_entry_cap_is_refused_even_if_it_declares_less() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let zip = tmp.path().join("bomb.zip");
    {
        let mut zw = zip::ZipWriter::new(fs::File::create(&zip).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        zw.start_file("Bomb/__domain__.yaml", opts).unwrap();
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..(zip_safety::MAX_ZIP_ENTRY_BYTES >> 20) + 1 {
            zw.write_all(&chunk).unwrap();
        }
        zw.finish().unwrap();
    }
    let err = match import::import(&tmp.path().join("ds"), &zip, &ImportOptions::default()) {
        Err(ImportError::Zip(e)) => e.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(
        err.contains("__domain__.yaml") && err.contains("zip bomb"),
        "{err}"
    );
}

fn name_strategy(first: &'static str) -> impl Strategy<Value = String> {
    "[a-z0-9_]{0,7}".prop_map(move |rest| format!("{first}{rest}"))
}

/// A generated domain: namespaces with classes, a schema, instances with
/// values, and methods with bodies (some large and compressible).
#[derive(Debug, Clone)]
struct Gen {
    domain: String,
    description: String,
    namespaces: Vec<(String, Vec<GenClass>)>,
}

#[derive(Debug, Clone)]
struct GenClass {
    name: String,
    fields: Vec<String>,
    instances: Vec<(String, Vec<String>)>,
    methods: Vec<(String, Vec<u8>)>,
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,30}",
        "[a-zA-Zé中 :#'\"-]{0,20}",
        "[a-z ]{0,10}\n[a-z ]{0,10}",
        Just(String::new()),
        Just("---".to_string()),
        Just("123".to_string()),
        Just("true".to_string()),
    ]
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..300),
        // Over 1 MiB and compressing far beyond 100:1 (the old guard's
        // limits), under the body cap.
        1 => ("[ -~]{1,40}", 1_100_000usize..2_000_000).prop_map(|(line, size)| {
            let line = format!("{line}\n");
            line.repeat(size / line.len() + 1).into_bytes()
        }),
    ]
}

fn class_strategy() -> impl Strategy<Value = GenClass> {
    (
        name_strategy("C"),
        proptest::collection::btree_set(name_strategy("f"), 1..4),
        proptest::collection::btree_map(name_strategy("i"), 0..4usize, 0..3),
        proptest::collection::btree_map(name_strategy("m"), body_strategy(), 0..3),
    )
        .prop_flat_map(|(name, fields, instances, methods)| {
            let fields: Vec<String> = fields.into_iter().collect();
            let n = fields.len();
            let instances: Vec<_> = instances
                .into_keys()
                .map(move |i| (Just(i), proptest::collection::vec(value_strategy(), n)))
                .collect();
            (
                Just(name),
                Just(fields),
                instances,
                Just(methods.into_iter().collect::<Vec<_>>()),
            )
        })
        .prop_map(|(name, fields, instances, methods)| GenClass {
            name,
            fields,
            instances,
            methods,
        })
}

fn gen_strategy() -> impl Strategy<Value = Gen> {
    (
        name_strategy("D"),
        value_strategy(),
        proptest::collection::btree_map(
            name_strategy("N"),
            proptest::collection::vec(class_strategy(), 0..3),
            1..3,
        ),
    )
        .prop_map(|(domain, description, namespaces)| Gen {
            domain,
            description,
            namespaces: namespaces
                .into_iter()
                .map(|(n, mut classes)| {
                    // Class names must differ in more than case.
                    classes.sort_by(|a, b| a.name.cmp(&b.name));
                    classes.dedup_by(|a, b| a.name == b.name);
                    (n, classes)
                })
                .collect(),
        })
}

fn map(pairs: Vec<(&str, Value)>) -> Mapping {
    Mapping(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

fn build(g: &Gen) -> Domain {
    let attrs = |pairs| Value::Map(map(pairs));
    let domain_doc = Document::new(
        "domain",
        map(vec![(
            "attributes",
            attrs(vec![
                ("name", s(&g.domain)),
                ("description", s(&g.description)),
                ("priority", Value::Int(1)),
                ("enabled", Value::Bool(true)),
                ("source", s("user")),
            ]),
        )]),
    );
    let namespaces = g
        .namespaces
        .iter()
        .map(|(ns, classes)| Namespace {
            name: ns.clone(),
            doc: Document::new(
                "namespace",
                map(vec![("attributes", attrs(vec![("name", s(ns))]))]),
            ),
            namespaces: Vec::new(),
            classes: classes.iter().map(build_class).collect(),
        })
        .collect();
    Domain {
        dir_name: g.domain.clone(),
        doc: domain_doc,
        namespaces,
        classes: Vec::new(),
        tests: Vec::new(),
    }
}

fn build_class(c: &GenClass) -> Class {
    let schema: Vec<Value> = c
        .fields
        .iter()
        .map(|f| {
            Value::Map(map(vec![(
                "field",
                Value::Map(map(vec![
                    ("aetype", s("attribute")),
                    ("name", s(f)),
                    ("datatype", s("string")),
                ])),
            )]))
        })
        .collect();
    let instances = c
        .instances
        .iter()
        .map(|(name, values)| {
            let fields: Vec<Value> = c
                .fields
                .iter()
                .zip(values)
                .map(|(f, v)| Value::Map(map(vec![(f, Value::Map(map(vec![("value", s(v))])))])))
                .collect();
            Instance {
                file_name: format!("{name}.yaml"),
                doc: Document::new(
                    "instance",
                    map(vec![
                        ("attributes", Value::Map(map(vec![("name", s(name))]))),
                        ("fields", Value::Seq(fields)),
                    ]),
                ),
            }
        })
        .collect();
    let methods = c
        .methods
        .iter()
        .map(|(name, body)| Method {
            file_name: format!("{name}.yaml"),
            doc: Document::new(
                "method",
                map(vec![
                    (
                        "attributes",
                        Value::Map(map(vec![
                            ("name", s(name)),
                            ("scope", s("instance")),
                            ("language", s("rhai")),
                            ("location", s("inline")),
                        ])),
                    ),
                    ("inputs", Value::Seq(Vec::new())),
                ]),
            ),
            body: Some(MethodBody {
                file_name: format!("{name}.rhai"),
                bytes: body.clone(),
            }),
        })
        .collect();
    Class {
        dir_name: format!("{}.class", c.name),
        doc: Document::new(
            "class",
            map(vec![
                ("attributes", Value::Map(map(vec![("name", s(&c.name))]))),
                ("schema", Value::Seq(schema)),
            ]),
        ),
        instances,
        methods,
    }
}

/// The files of a domain directory (bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(dir)
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every domain the datastore accepts exports to a directory and to a
    /// zip that both import back to the same files.
    #[test]
    fn every_export_imports_back(g in gen_strategy()) {
        let tmp = tempfile::tempdir().unwrap();
        let domain = build(&g);
        let src = tmp.path().join("src");
        dsfs::write_domain(&domain, &src, &g.domain).unwrap();
        let ds = tmp.path().join("ds");
        import::import(&ds, &src.join(&g.domain), &ImportOptions::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let original = files(&ds.join(&g.domain));

        let out = tmp.path().join("out");
        let zip = tmp.path().join("d.zip");
        export::export(&ds, &g.domain, &out, &ExportOptions::default()).unwrap();
        export::export(&ds, &g.domain, &zip, &ExportOptions::default()).unwrap();
        prop_assert_eq!(&files(&out.join(&g.domain)), &original);

        for (n, source) in [(2, out.join(&g.domain)), (3, zip)] {
            let back = tmp.path().join(format!("ds{n}"));
            import::import(&back, &source, &ImportOptions::default())
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", source.display())))?;
            prop_assert_eq!(&files(&back.join(&g.domain)), &original);
        }
    }
}

// ---------------------------------------------------------------------------
// Item 15 (YAML part): nothing is dropped without a word

#[test]
fn a_second_yaml_document_is_an_error_with_its_line() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = sample_copy(src_dir.path());
    let file = src.join("Demo/Greeting.class/hello.yaml");
    let mut yaml = fs::read_to_string(&file).unwrap();
    let lines = yaml.lines().count();
    yaml.push_str("---\nobject_type: instance\nobject:\n  attributes:\n    name: lost\n");
    fs::write(&file, yaml).unwrap();
    let at = format!("hello.yaml:{}:1", lines + 1);
    refused(&src, &[&at, "2 YAML documents"]);

    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    copy_dir(src_dir.path(), &ds);
    let o = automate(&ds, &["datastore", "validate"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&at), "{}", text(&o));
}

#[test]
fn an_upper_case_yaml_file_is_a_warning_naming_it() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = sample_copy(src_dir.path());
    let class = src.join("Demo/Greeting.class");
    fs::copy(class.join("hello.yaml"), class.join("shout.YAML")).unwrap();
    fs::copy(
        class.join("__methods__/say.yaml"),
        class.join("__methods__/loud.Yaml"),
    )
    .unwrap();

    // validate: two warnings, exit 0 (ManageIQ does not load them either).
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    copy_dir(src_dir.path(), &ds);
    let o = automate(&ds, &["datastore", "validate"], None);
    assert!(o.status.success(), "{}", text(&o));
    for name in ["shout.YAML", "loud.Yaml"] {
        assert!(
            text(&o)
                .lines()
                .any(|l| l.contains(name) && l.contains("rename it") && l.ends_with("(warning)")),
            "{name}: {}",
            text(&o)
        );
    }

    // import: succeeds, and says what it did not load.
    let ds2 = tmp.path().join("ds2");
    let o = automate(&ds2, &["import", src.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning:") && err.contains("shout.YAML"),
        "{err}"
    );
    assert!(!ds2.join("Sample/Demo/Greeting.class/shout.YAML").exists());
}
