//! The datastore end to end: loading the real ManageIQ domain, import/export
//! round trips (directory and zip), the overlay index, hostile input (each
//! refused with file, line and reason, exit code 1, and the datastore left
//! byte for byte as it was), and `automate datastore list|tree|show|validate`.

use crate::common::copy_dir;
use crate::common::process::{stderr, stdout};
use automate_datastore::fs as dsfs;
use automate_datastore::import::{self, ImportError, ImportOptions};
use automate_datastore::{Index, Source};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real ManageIQ domain (1,401 files), or `None` (with a message) when
/// it is absent. With `AUTOMATE_REQUIRE_FIXTURES=1` an absent fixture fails.
pub fn fixture_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/manageiq-content/ManageIQ"
    ));
    if dir.join("__domain__.yaml").is_file() {
        return Some(dir);
    }
    if std::env::var("AUTOMATE_REQUIRE_FIXTURES").as_deref() == Ok("1") {
        panic!(
            "the ManageIQ fixture is missing at {} and AUTOMATE_REQUIRE_FIXTURES=1",
            dir.display()
        );
    }
    eprintln!(
        "skipping: the ManageIQ fixture is absent at {} (set AUTOMATE_REQUIRE_FIXTURES=1 to fail)",
        dir.display()
    );
    None
}

/// `tests/data/datastore/<rel>`.
pub fn data_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/datastore")
        .join(rel)
}

/// Runs the real binary against the datastore `ds`.
fn automate(ds: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(ds)
        .args(args)
        .env_remove("AUTOMATE_DATASTORE")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run automate")
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "automate failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Every file under `dir` (relative, `/`-separated) with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    crate::common::tree_entries(dir)
        .into_iter()
        .filter(|(_, _, kind)| !kind.is_dir())
        .map(|(rel, path, _)| (rel.replace('\\', "/"), std::fs::read(&path).unwrap()))
        .collect()
}

/// A recursive listing of `dir` (directories too) with a hash of each file.
fn snapshot(dir: &Path) -> BTreeMap<String, Option<u64>> {
    crate::common::tree_entries(dir)
        .into_iter()
        .map(|(rel, path, kind)| {
            if kind.is_dir() {
                (format!("{rel}/"), None)
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path).unwrap().hash(&mut h);
                (rel, Some(h.finish()))
            }
        })
        .collect()
}

/// Differences between two file maps, for a readable failure.
fn mismatches(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("missing: {k}")),
            Some(w) if w != v => {
                let line = String::from_utf8_lossy(v)
                    .lines()
                    .zip(String::from_utf8_lossy(w).lines())
                    .position(|(x, y)| x != y)
                    .map(|i| i + 1)
                    .unwrap_or(0);
                out.push(format!("differs: {k} (first at line {line})"));
            }
            _ => {}
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            out.push(format!("extra: {k}"));
        }
    }
    out
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A datastore holding the small `Sample` domain (priority 10).
fn sample_datastore() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempdir();
    let ds = tmp.path().join("ds");
    let o = automate(
        &ds,
        &[
            "import",
            data_dir("small/Sample").to_str().unwrap(),
            "--priority",
            "10",
        ],
    );
    assert_ok(&o);
    (tmp, ds)
}

/// A copy of the small domain under `dir/<name>` with the domain renamed.
fn sample_copy(dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    copy_dir(&data_dir("small/Sample"), &dst);
    let f = dst.join("__domain__.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replace("name: Sample", &format!("name: {name}"))).unwrap();
    dst
}

/// Imports `source` into a datastore holding `Sample` and checks that it
/// fails with exit code 1, that stderr names everything in `expect`, and
/// that the datastore did not change.
fn assert_import_refused(source: &Path, extra: &[&str], expect: &[&str]) -> String {
    let (_tmp, ds) = sample_datastore();
    let before = snapshot(&ds);
    let mut args = vec!["import", source.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = automate(&ds, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1; stderr:\n{err}");
    for e in expect {
        assert!(err.contains(e), "stderr does not mention {e:?}:\n{err}");
    }
    assert_eq!(
        before,
        snapshot(&ds),
        "the datastore changed after a failed import"
    );
    err
}

// ---------------------------------------------------------------------------
// The real ManageIQ domain

#[test]
fn fixture_loads_with_zero_problems_and_expected_counts() {
    let Some(fixture) = fixture_dir() else { return };
    let report = dsfs::read_root(&fixture);
    let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(problems.is_empty(), "problems:\n{}", problems.join("\n"));
    assert_eq!(report.domains.len(), 1);
    let d = &report.domains[0];
    assert_eq!(d.name(), "ManageIQ");
    assert_eq!(d.priority(), 0);
    assert_eq!(d.source(), Source::System);
    let c = d.counts();
    assert_eq!(
        (c.namespaces, c.classes, c.instances, c.methods),
        (81, 120, 956, 243)
    );
    // The importer's own checks find nothing either.
    let problems = automate_datastore::validate::check_domain(d, &fixture);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn fixture_import_then_export_to_dir_is_byte_identical() {
    let Some(fixture) = fixture_dir() else { return };
    let tmp = tempdir();
    let ds = tmp.path().join("ds");
    let s = import::import(&ds, &fixture, &ImportOptions::default()).expect("import");
    assert_eq!(s.domain, "ManageIQ");
    assert_eq!(s.files, 1401);
    let out = tmp.path().join("out");
    let o = automate(&ds, &["export", "ManageIQ", out.to_str().unwrap()]);
    assert_ok(&o);
    let original = files(&fixture);
    let original: BTreeMap<_, _> = original
        .into_iter()
        .filter(|(k, _)| k.ends_with(".yaml") || k.ends_with(".rb"))
        .collect();
    assert_eq!(original.len(), 1401);
    let exported = files(&out.join("ManageIQ"));
    let diff = mismatches(&original, &exported);
    assert!(
        diff.is_empty(),
        "{} mismatches:\n{}",
        diff.len(),
        diff.join("\n")
    );
    // The datastore copy itself is identical too.
    let diff = mismatches(&original, &files(&ds.join("ManageIQ")));
    assert!(
        diff.is_empty(),
        "{} mismatches:\n{}",
        diff.len(),
        diff.join("\n")
    );
}

#[test]
fn fixture_export_to_zip_and_reimport_gives_identical_tree() {
    let Some(fixture) = fixture_dir() else { return };
    let tmp = tempdir();
    let ds1 = tmp.path().join("ds1");
    import::import(&ds1, &fixture, &ImportOptions::default()).expect("import");
    let zip_path = tmp.path().join("manageiq.zip");
    assert_ok(&automate(
        &ds1,
        &["export", "manageiq", zip_path.to_str().unwrap()],
    ));

    // ManageIQ's layout: directory entries, then `<Domain>/...` files.
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("ManageIQ/")),
        "{:?}",
        &names[..3]
    );
    assert!(names.contains(&"ManageIQ/".to_string()));
    assert!(names.contains(&"ManageIQ/System/Process.class/".to_string()));
    assert_eq!(names.iter().filter(|n| !n.ends_with('/')).count(), 1401);
    let entry = archive.by_name("ManageIQ/__domain__.yaml").unwrap();
    assert_eq!(entry.compression(), zip::CompressionMethod::Deflated);
    drop(entry);

    let ds2 = tmp.path().join("ds2");
    assert_ok(&automate(&ds2, &["import", zip_path.to_str().unwrap()]));
    let diff = mismatches(&files(&ds1), &files(&ds2));
    assert!(
        diff.is_empty(),
        "{} mismatches:\n{}",
        diff.len(),
        diff.join("\n")
    );
    assert_eq!(snapshot(&ds1), snapshot(&ds2));
}

#[test]
fn fixture_cli_list_tree_show() {
    let Some(fixture) = fixture_dir() else { return };
    let tmp = tempdir();
    let ds = tmp.path().join("ds");
    assert_ok(&automate(&ds, &["import", fixture.to_str().unwrap()]));
    assert_ok(&automate(
        &ds,
        &["import", data_dir("small/Sample").to_str().unwrap()],
    ));

    let o = automate(&ds, &["datastore", "list"]);
    assert_ok(&o);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("DOMAIN"), "{out}");
    assert!(
        lines[1].starts_with("Sample "),
        "highest priority first:\n{out}"
    );
    let miq: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        miq,
        ["ManageIQ", "0", "yes", "system", "81", "120", "956", "243"]
    );

    let o = automate(&ds, &["datastore", "tree", "ManageIQ/System/Process"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("  Event\n"), "{out}");
    assert!(out.contains("  parse_event_stream() [method]\n"), "{out}");

    let o = automate(&ds, &["datastore", "tree", "System/Event/EmsEvent"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("RHEVM [class]"), "{}", stdout(&o));

    // A partial class path says which domain it resolved to.
    let o = automate(&ds, &["datastore", "show", "/System/Process"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.starts_with("class /ManageIQ/System/Process (domain ManageIQ"),
        "{out}"
    );
    assert!(out.contains("rel5"), "{out}");

    // `datastore show PATH --json`, which must succeed.
    let show_json = |path: &str| -> serde_json::Value {
        let o = automate(&ds, &["datastore", "show", path, "--json"]);
        assert_ok(&o);
        serde_json::from_str(&stdout(&o)).unwrap()
    };

    // An instance merges class defaults and marks its own values.
    let v = show_json("/System/Event/EmsEvent/RHEVM/USER_RUN_VM");
    assert_eq!(v["kind"], "instance");
    assert_eq!(v["domain"], "ManageIQ");
    let fields = v["fields"].as_array().unwrap();
    let rel4 = fields.iter().find(|f| f["name"] == "rel4").unwrap();
    assert_eq!(rel4["from_instance"], true);
    assert!(rel4["value"]
        .as_str()
        .unwrap()
        .starts_with("/System/event_handlers/event_action_policy"));
    let guard = fields.iter().find(|f| f["name"] == "guard").unwrap();
    assert_eq!(guard["from_instance"], false);

    // A method: metadata, inputs, body.
    let v = show_json("/System/Process/parse_event_stream()");
    assert_eq!(v["kind"], "method");
    assert_eq!(v["location"], "builtin");

    // The shipped domain validates without errors (its 5 dangling
    // relationships are warnings).
    let o = automate(&ds, &["datastore", "validate"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("0 errors"), "{}", stdout(&o));
}

// ---------------------------------------------------------------------------
// Small domains

#[test]
fn small_domain_round_trips_through_dir_and_zip() {
    let (tmp, ds) = sample_datastore();
    let original = files(&data_dir("small/Sample"));
    let diff = mismatches(&original, &files(&ds.join("Sample")));
    assert!(diff.is_empty(), "{diff:?}");
    // The Rhai body comes along byte for byte.
    assert!(ds
        .join("Sample/Demo/Greeting.class/__methods__/say.rhai")
        .is_file());
    // The empty namespace survives.
    assert!(ds.join("Sample/Demo/Empty/__namespace__.yaml").is_file());

    let zip_path = tmp.path().join("sample.zip");
    assert_ok(&automate(
        &ds,
        &["export", "Sample", zip_path.to_str().unwrap()],
    ));
    let o = automate(&ds, &["export", "Sample", zip_path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    assert_ok(&automate(
        &ds,
        &[
            "export",
            "Sample",
            zip_path.to_str().unwrap(),
            "--overwrite",
        ],
    ));

    let ds2 = tmp.path().join("ds2");
    assert_ok(&automate(
        &ds2,
        &["import", zip_path.to_str().unwrap(), "--priority", "10"],
    ));
    assert_eq!(snapshot(&ds), snapshot(&ds2));

    let out = tmp.path().join("out");
    assert_ok(&automate(&ds, &["export", "sample", out.to_str().unwrap()]));
    let o = automate(&ds, &["export", "sample", out.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "existing export dir needs --overwrite"
    );
    assert_ok(&automate(
        &ds,
        &["export", "sample", out.to_str().unwrap(), "--overwrite"],
    ));
    assert!(mismatches(&original, &files(&out.join("Sample"))).is_empty());
}

#[test]
fn import_applies_priority_rename_and_enabled() {
    let (_tmp, ds) = sample_datastore();
    let src = data_dir("small/Sample");
    let s = import::import(
        &ds,
        &src,
        &ImportOptions {
            rename: Some("Copy".into()),
            enabled: Some(false),
            ..Default::default()
        },
    )
    .expect("import");
    assert_eq!(s.domain, "Copy");
    assert_eq!(s.priority, 11, "highest existing priority + 1");
    assert!(!s.enabled);
    let text = std::fs::read_to_string(ds.join("Copy/__domain__.yaml")).unwrap();
    assert!(text.contains("    name: Copy\n"), "{text}");
    assert!(text.contains("    priority: 11\n"), "{text}");
    assert!(text.contains("    enabled: false\n"), "{text}");

    // --overwrite keeps the replaced domain's priority unless told otherwise.
    let s = import::import(
        &ds,
        &src,
        &ImportOptions {
            rename: Some("copy".into()),
            overwrite: true,
            ..Default::default()
        },
    )
    .expect("overwrite");
    assert!(s.replaced);
    assert_eq!(s.priority, 11);
    assert!(!s.enabled, "kept from the replaced domain");
    assert!(ds.join("copy/__domain__.yaml").is_file());
    assert!(!ds.join("Copy").exists());
    // No temporary directory is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&ds)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn import_from_a_directory_of_domains_needs_a_choice() {
    let tmp = tempdir();
    let ds = tmp.path().join("ds");
    let src = data_dir("overlay");
    let err = import::import(&ds, &src, &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, ImportError::SeveralDomains { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("Base") && msg.contains("Custom") && msg.contains("--from"),
        "{msg}"
    );
    assert!(
        !ds.exists(),
        "a failed import into a missing root leaves nothing"
    );

    let o = automate(&ds, &["import", src.to_str().unwrap(), "--from", "custom"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("Imported domain Custom"),
        "{}",
        stdout(&o)
    );
    let err = import::import(
        &ds,
        &src,
        &ImportOptions {
            domain_filter: Some("Nope".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::DomainNotFound { .. }), "{err}");
}

// ---------------------------------------------------------------------------
// Overlay through the index

fn overlay_index() -> Index {
    let report = dsfs::read_root(&data_dir("overlay"));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.domains.len(), 3);
    Index::build(&report.domains)
}

#[test]
fn overlay_partial_path_resolves_to_highest_priority_enabled_domain() {
    let index = overlay_index();
    let names: Vec<&str> = index.domains().iter().map(|d| &*d.name).collect();
    assert_eq!(names, ["Dormant", "Custom", "Base"]);
    let c = index.resolve("System", "Demo", "Alpha").expect("resolves");
    assert_eq!(&*c.domain, "Custom");
    let classes: Vec<&str> = index
        .classes_at("System", "Demo")
        .iter()
        .map(|c| &*c.domain)
        .collect();
    assert_eq!(classes, ["Custom", "Base"]);
    // A class only Custom has.
    assert_eq!(
        &*index.resolve("Extra", "Thing", "One").unwrap().domain,
        "Custom"
    );
}

#[test]
fn overlay_real_instance_in_lower_domain_beats_missing_in_higher() {
    let index = overlay_index();
    let c = index.resolve("System", "Demo", "Beta").expect("resolves");
    assert_eq!(&*c.domain, "Base");
    assert!(c.instance("Beta").is_some());
    // No domain has Gamma: Custom's .missing.
    let c = index
        .resolve("System", "Demo", "Gamma")
        .expect("falls back");
    assert_eq!(&*c.domain, "Custom");
    assert!(c.instance("Gamma").is_none());
    assert!(c.instance(".missing").is_some());
}

#[test]
fn overlay_disabled_domain_is_invisible() {
    let index = overlay_index();
    let dormant = index.domain("dormant").unwrap();
    assert!(!dormant.enabled);
    // Dormant (priority 9) has Alpha, Beta and OnlyOff, yet never wins.
    assert_eq!(
        &*index.resolve("System", "Demo", "Alpha").unwrap().domain,
        "Custom"
    );
    let c = index.resolve("System", "Demo", "OnlyOff").unwrap();
    assert_eq!(&*c.domain, "Custom", "falls back to Custom's .missing");
    assert!(c.instance("OnlyOff").is_none());
    assert!(index
        .classes_at("System", "Demo")
        .iter()
        .all(|c| c.instance("OnlyOff").is_none()));
    // It is still there by its fully-qualified name.
    assert!(index.class("Dormant/System", "Demo").is_some());
}

#[test]
fn overlay_names_are_case_insensitive() {
    let index = overlay_index();
    let c = index.resolve("SYSTEM", "demo", "alpha").unwrap();
    assert_eq!(&*c.domain, "Custom");
    let inst = c.instance("aLpHa").unwrap();
    assert_eq!(inst.name, "ALPHA");
    let who = c
        .fields
        .iter()
        .position(|f| f.name.eq_ignore_ascii_case("WHO"))
        .unwrap();
    assert_eq!(
        inst.values[who].as_ref().unwrap().value.as_deref(),
        Some("custom-alpha")
    );
    assert!(index.class("base/system", "DEMO").is_some());
    assert!(index.domain("cUsToM").is_some());
}

// ---------------------------------------------------------------------------
// Hostile and bad input

/// Imports a copy of the small domain (as `Bad`) whose
/// `Demo/Greeting.class/<file>` is `edit` of what it was (`None`: a new
/// file): refused, saying each of `expect`; the error.
fn assert_bad_file_refused(
    file: &str,
    edit: impl FnOnce(Option<String>) -> String,
    expect: &[&str],
) -> String {
    let tmp = tempdir();
    let src = sample_copy(tmp.path(), "Bad");
    let f = src.join("Demo/Greeting.class").join(file);
    std::fs::write(&f, edit(std::fs::read_to_string(&f).ok())).unwrap();
    assert_import_refused(&src, &[], expect)
}

#[test]
fn import_rejects_truncated_yaml() {
    let err = assert_bad_file_refused(
        "hello.yaml",
        |text| {
            let text = text.unwrap();
            text[..text.find("value: \"/Demo").unwrap() + 12].to_string()
        },
        &["hello.yaml:14:", "nothing was imported"],
    );
    assert!(err.to_lowercase().contains("quoted"), "{err}");
}

#[test]
fn import_rejects_alias_bomb() {
    let mut bomb = String::from(
        "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    name: Bomb\n  fields: []\nlol:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 9].join(",");
        bomb.push_str(&format!("  {}: &{} [{refs}]\n", w[1], w[1]));
    }
    let err = assert_bad_file_refused(
        "bomb.yaml",
        |_| bomb,
        &["bomb.yaml", "nothing was imported"],
    );
    assert!(err.to_lowercase().contains("alias"), "{err}");
}

#[test]
fn import_rejects_deeply_nested_document() {
    let mut deep = String::from(
        "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    name: Deep\n  fields: []\nnest:\n",
    );
    for i in 1..=100 {
        deep.push_str(&format!("{}k{i}:\n", "  ".repeat(i)));
    }
    let err = assert_bad_file_refused(
        "deep.yaml",
        |_| deep,
        &["deep.yaml", "nothing was imported"],
    );
    assert!(
        err.to_lowercase().contains("depth") || err.to_lowercase().contains("nest"),
        "{err}"
    );
}

#[test]
fn import_rejects_unknown_instance_field() {
    assert_bad_file_refused(
        "hello.yaml",
        |text| text.unwrap().replace("- execute:", "- exekute:"),
        &["hello.yaml:15:", "field `exekute`", "FieldNotFound"],
    );
}

/// Writes a zip of `entries` (name, bytes), deflated.
fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip_writer(path, entries, opts).finish().unwrap();
}

/// A zip at `path` holding `entries` (name, bytes), written with `opts`,
/// still open for more.
fn zip_writer(
    path: &Path,
    entries: &[(&str, &[u8])],
    opts: zip::write::SimpleFileOptions,
) -> zip::ZipWriter<std::fs::File> {
    let mut zw = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in entries {
        zw.start_file(*name, opts).unwrap();
        zw.write_all(bytes).unwrap();
    }
    zw
}

/// The small domain's files as zip entries under `Evil/`.
fn sample_entries() -> Vec<(String, Vec<u8>)> {
    let tmp = tempdir();
    let src = sample_copy(tmp.path(), "Evil");
    files(&src)
        .into_iter()
        .map(|(k, v)| (format!("Evil/{k}"), v))
        .collect()
}

fn zip_with(path: &Path, extra: (&str, &[u8])) {
    let entries = sample_entries();
    let mut all: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    all.push(extra);
    write_zip(path, &all);
}

#[test]
fn import_rejects_zip_with_parent_dir_entry() {
    let tmp = tempdir();
    let z = tmp.path().join("evil.zip");
    zip_with(&z, ("Evil/../../escaped.yaml", b"---\n"));
    assert_import_refused(&z, &[], &["evil.zip", "Evil/../../escaped.yaml", "`..`"]);
    assert!(!tmp.path().join("escaped.yaml").exists());
}

#[test]
fn import_rejects_zip_with_absolute_entry() {
    let tmp = tempdir();
    let z = tmp.path().join("evil.zip");
    let target = tmp.path().join("abs.yaml");
    let name = target.to_str().unwrap().to_string();
    zip_with(&z, (&name, b"---\n"));
    assert_import_refused(&z, &[], &["evil.zip", "absolute path"]);
    assert!(!target.exists());
}

#[test]
fn import_rejects_zip_with_backslash_entry() {
    let tmp = tempdir();
    let z = tmp.path().join("evil.zip");
    zip_with(&z, ("Evil\\..\\x.yaml", b"---\n"));
    assert_import_refused(&z, &[], &["backslash"]);
}

#[test]
fn import_rejects_zip_bomb() {
    let tmp = tempdir();
    let z = tmp.path().join("bomb.zip");
    {
        let entries = sample_entries();
        let entries: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        let mut zw = zip_writer(&z, &entries, opts);
        zw.start_file("Evil/Demo/Greeting.class/zeros.yaml", opts)
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..200 {
            zw.write_all(&chunk).unwrap();
        }
        zw.finish().unwrap();
    }
    assert!(
        std::fs::metadata(&z).unwrap().len() < 2 << 20,
        "the bomb is small"
    );
    assert_import_refused(&z, &[], &["bomb.zip", "zeros.yaml", "zip bomb"]);
}

#[test]
fn import_of_an_existing_domain_needs_overwrite() {
    let (_tmp, ds) = sample_datastore();
    let before = snapshot(&ds);
    let o = automate(&ds, &["import", data_dir("small/Sample").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    assert_eq!(before, snapshot(&ds));
    // With --overwrite it is replaced, priority kept.
    let o = automate(
        &ds,
        &[
            "import",
            data_dir("small/Sample").to_str().unwrap(),
            "--overwrite",
        ],
    );
    assert_ok(&o);
    assert!(
        stdout(&o).contains("Replaced domain Sample (priority 10"),
        "{}",
        stdout(&o)
    );
    assert_eq!(before, snapshot(&ds));
}

#[test]
fn import_overwrite_of_a_read_only_domain_fails() {
    let (tmp, ds) = sample_datastore();
    let src = sample_copy(tmp.path(), "Locked");
    let f = src.join("__domain__.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replace("source: user", "source: user_locked")).unwrap();
    assert_ok(&automate(&ds, &["import", src.to_str().unwrap()]));
    let before = snapshot(&ds);
    let o = automate(&ds, &["import", src.to_str().unwrap(), "--overwrite"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("read-only (source: user_locked)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(before, snapshot(&ds));
    // Renaming another domain onto it is refused too.
    let o = automate(
        &ds,
        &[
            "import",
            data_dir("small/Sample").to_str().unwrap(),
            "--domain",
            "LOCKED",
            "--overwrite",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("read-only"), "{}", stderr(&o));
    assert_eq!(before, snapshot(&ds));
}

#[test]
fn import_manageiq_over_manageiq_updates_the_shipped_domain() {
    let (tmp, ds) = sample_datastore();
    let src = sample_copy(tmp.path(), "manageiq");
    let s = import::import(&ds, &src, &ImportOptions::default()).expect("import");
    assert_eq!(s.domain, "ManageIQ");
    assert_eq!((s.priority, s.enabled, s.source), (0, true, Source::System));
    let text = std::fs::read_to_string(ds.join("ManageIQ/__domain__.yaml")).unwrap();
    assert!(
        text.contains("    name: ManageIQ\n") && text.contains("    source: system\n"),
        "{text}"
    );

    // Updating it with --overwrite is allowed although it is read-only...
    let s = import::import(&ds, &src, &crate::common::overwriting()).expect("update");
    assert!(s.replaced);
    // ... but not from a domain renamed to ManageIQ.
    let err = import::import(
        &ds,
        &data_dir("small/Sample"),
        &ImportOptions {
            rename: Some("ManageIQ".into()),
            overwrite: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::ReadOnly(_)), "{err}");
    // And ManageIQ cannot get another priority or be disabled.
    let err = import::import(
        &ds,
        &src,
        &ImportOptions {
            overwrite: true,
            priority: Some(7),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::BadOption(_)), "{err}");
}

#[test]
fn import_rejects_bad_domain_names() {
    let (_tmp, ds) = sample_datastore();
    for bad in ["../escape", "a/b", "..", ".hidden", "sp ace"] {
        let err = import::import(
            &ds,
            &data_dir("small/Sample"),
            &ImportOptions {
                rename: Some(bad.into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, ImportError::BadName { .. }), "{bad}: {err}");
    }
}

// ---------------------------------------------------------------------------
// validate

#[test]
fn validate_lists_each_problem_kind() {
    let tmp = tempdir();
    let ds = tmp.path().join("ds");
    copy_dir(&data_dir("bad"), &ds);
    // Namespaces differing only in case, and a bad namespace name, cannot
    // live in the repository (case-insensitive checkouts): made here.
    for (dir, name) in [("Broken/ns", "ns"), ("Broken/Bad Ns", "Bad Ns")] {
        std::fs::create_dir_all(ds.join(dir)).unwrap();
        std::fs::write(
            ds.join(dir).join("__namespace__.yaml"),
            format!("---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n"),
        )
        .unwrap();
    }
    let o = automate(&ds, &["datastore", "validate"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let expect = [
        // loader: YAML error with line and column
        "Thing.class/truncated.yaml:6:11: ",
        // unknown instance field with its line
        "Thing.class/one.yaml:13: field `no_such_field`: no such field",
        // duplicates differing only in case
        "Thing.class/__class__.yaml:36: field `ATTR1`: field name differs only in case",
        "Thing.class/one_again.yaml:7: field `name`: instance `ONE` differs only in case",
        "__methods__/go_again.yaml:6: field `name`: method `GO` differs only in case",
        "Thing2.class/__class__.yaml:8: field `name`: class `THING` differs only in case",
        "differs only in case from namespace",
        // dangling relationships (class default and instance value)
        "Thing.class/__class__.yaml:61: field `rel1`: relationship `/Nowhere/Missing/inst`",
        "Thing.class/dangling.yaml:12: field `rel1`: relationship `/Ns/NoClass/x`",
        // bad names
        "spaced.yaml:7: field `name`: instance name `bad name` is invalid",
        "bad_method.yaml:6: field `name`: method name `bad-method` is invalid",
        "field `bad-field`: field name is invalid",
        "namespace directory name `Bad Ns` is invalid",
        // bad values
        "field `odd`: field aetype `frobnicate` is not one of",
        "field `odd`: field datatype `strnig` is not one of",
        "field `odd`: field scope `global` is not one of",
        "go.yaml:10: field `language`: language `cobol`",
        "go.yaml:11: field `location`: location `cloud`",
        "__domain__.yaml:12: field `source`: source `bogus`",
    ];
    for e in expect {
        assert!(out.contains(e), "validate output lacks {e:?}:\n{out}");
    }
    assert!(out.contains("(warning)"), "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.contains("errors, 2 warnings"), "{last}");
    // Sorted by file, then line.
    let problems = automate_datastore::validate(&ds);
    let keys: Vec<_> = problems.iter().map(|p| (p.file.clone(), p.line)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn validate_clean_datastore_exits_zero() {
    let o = automate(&data_dir("overlay"), &["datastore", "validate"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("no problems"), "{}", stdout(&o));
}
