//! Authoring aids (issue 22 §5): `automate new domain|namespace|class|
//! instance|method` writes files that validate, import, and export back
//! byte for byte, and refuses locked domains and existing objects.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn automate(ds: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(ds)
        .arg("--db")
        .arg(ds.with_extension("redb"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_SERVER")
        .env_remove("AUTOMATE_API_TOKEN")
        .output()
        .expect("automate runs")
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file below `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    crate::common::tree_entries(dir)
        .into_iter()
        .filter(|(_, _, kind)| kind.is_file())
        .map(|(rel, path, _)| (rel, fs::read(path).expect("read")))
        .collect()
}

#[test]
fn every_new_kind_validates_imports_and_exports_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("ds");
    let steps: &[&[&str]] = &[
        &["new", "domain", "Acme"],
        &["new", "namespace", "Acme/Shop"],
        &["new", "namespace", "Acme/Shop/Orders"],
        &["new", "class", "Acme/Shop/Greeter"],
        &["new", "class", "Acme/Shop/Orders/Fulfil", "--state-machine"],
        &["new", "instance", "Acme/Shop/Greeter/Hello"],
        &["new", "instance", "Acme/Shop/Orders/Fulfil/default"],
        &["new", "instance", "Acme/Shop/Greeter/.missing"],
        &["new", "method", "Acme/Shop/Greeter/say_hello"],
        &[
            "new",
            "method",
            "Acme/Shop/Orders/Fulfil/pick",
            "--language",
            "rhai",
        ],
    ];
    for args in steps {
        let out = ok(automate(&root, args));
        assert!(out.starts_with("Created "), "{out}");
    }
    let made = files(&root.join("Acme"));
    let names: Vec<&str> = made.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "Shop/Greeter.class/__class__.yaml",
            "Shop/Greeter.class/__methods__/say_hello.rhai",
            "Shop/Greeter.class/__methods__/say_hello.yaml",
            "Shop/Greeter.class/_missing.yaml",
            "Shop/Greeter.class/hello.yaml",
            "Shop/Orders/Fulfil.class/__class__.yaml",
            "Shop/Orders/Fulfil.class/__methods__/pick.rhai",
            "Shop/Orders/Fulfil.class/__methods__/pick.yaml",
            "Shop/Orders/Fulfil.class/default.yaml",
            "Shop/Orders/__namespace__.yaml",
            "Shop/__namespace__.yaml",
            "__domain__.yaml",
        ]
    );
    let sm = String::from_utf8_lossy(&made["Shop/Orders/Fulfil.class/__class__.yaml"]).into_owned();
    assert!(
        sm.contains("aetype: state") && sm.contains("max_retries: '100'"),
        "{sm}"
    );

    // Validates with no problem at all (the Rhai bodies compile).
    let v = ok(automate(&root, &["datastore", "validate"]));
    assert!(v.contains("no problems"), "{v}");
    let listed = ok(automate(&root, &["datastore", "tree", "Acme"]));
    assert!(
        listed.contains("say_hello") && listed.contains("Fulfil"),
        "{listed}"
    );

    // Exports byte for byte.
    let out = tmp.path().join("out");
    ok(automate(&root, &["export", "Acme", &out.to_string_lossy()]));
    assert_eq!(files(&out.join("Acme")), made);
    // Imports into another datastore and is the same there.
    let other = tmp.path().join("other");
    ok(automate(
        &other,
        &["import", &out.join("Acme").to_string_lossy()],
    ));
    assert_eq!(files(&other.join("Acme")), made);

    // The method runs.
    let run = automate(&root, &["instantiate", "/Acme/Shop/Greeter/say_hello()"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{text}");
}

#[test]
fn new_refuses_existing_objects_missing_parents_bad_names_and_locked_domains() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("ds");
    ok(automate(&root, &["new", "domain", "Acme"]));
    ok(automate(&root, &["new", "namespace", "Acme/Shop"]));
    ok(automate(&root, &["new", "class", "Acme/Shop/Greeter"]));

    let e = refused(automate(&root, &["new", "domain", "acme"]));
    assert!(e.contains("domain `acme` already exists"), "{e}");
    let e = refused(automate(&root, &["new", "class", "Acme/shop/greeter"]));
    assert!(
        e.contains("class `Acme/shop/greeter` already exists"),
        "{e}"
    );
    let e = refused(automate(&root, &["new", "namespace", "Acme/Nope/Sub"]));
    assert!(
        e.contains("no namespace `Acme/Nope`") && e.contains("automate new namespace Acme/Nope"),
        "{e}"
    );
    let e = refused(automate(&root, &["new", "instance", "Acme/Shop/Missing/x"]));
    assert!(e.contains("no class `Acme/Shop/Missing`"), "{e}");
    let e = refused(automate(
        &root,
        &["new", "method", "Acme/Shop/Greeter/bad-name"],
    ));
    assert!(e.contains("method name `bad-name` is invalid"), "{e}");
    let e = refused(automate(
        &root,
        &["new", "method", "Acme/Shop/Greeter/m", "--language", "ruby"],
    ));
    assert!(e.contains("language `ruby` cannot be scaffolded"), "{e}");
    let e = refused(automate(&root, &["new", "domain", "ManageIQ"]));
    assert!(e.contains("shipped domain"), "{e}");

    // A locked domain refuses every new object.
    let file = root.join("Acme/__domain__.yaml");
    let text = fs::read_to_string(&file).expect("read");
    fs::write(&file, text.replace("source: user", "source: user_locked")).expect("write");
    let before = files(&root);
    let e = refused(automate(&root, &["new", "instance", "Acme/Shop/Greeter/x"]));
    assert!(
        e.contains("domain `Acme` is read-only (source: user_locked)"),
        "{e}"
    );
    assert_eq!(files(&root), before);
}

/// The JSON Schema of `docs/schema/<name>.schema.json`, compiled.
fn schema(name: &str) -> jsonschema::Validator {
    let path = crate::common::manifest(&format!("docs/schema/{name}.schema.json"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft202012::new(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Which schema a datastore file answers to, from its place in the layout.
fn kind_of(rel: &str) -> Option<&'static str> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if !name.ends_with(".yaml") || name == ".manifest.yaml" {
        return None;
    }
    Some(if name == "__domain__.yaml" {
        "domain"
    } else if name == "__namespace__.yaml" {
        "namespace"
    } else if name == "__class__.yaml" {
        "class"
    } else if rel.contains("/__tests__/") || rel.split('/').nth(1) == Some("tests") {
        "test"
    } else if rel.contains("/__methods__/") {
        "method"
    } else if rel.contains(".class/") {
        "instance"
    } else {
        return None;
    })
}

/// Validates every YAML file of the layout below `dir` (and `control/`
/// files) against its schema; returns how many, and every failure.
fn validate_tree(
    dir: &Path,
    validators: &BTreeMap<&str, jsonschema::Validator>,
) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut failures = Vec::new();
    for (rel, path, kind) in crate::common::tree_entries(dir) {
        if !kind.is_file() {
            continue;
        }
        let which =
            if rel.starts_with("control/") && (rel.ends_with(".yaml") || rel.ends_with(".yml")) {
                "control-policy"
            } else if let Some(k) = kind_of(&rel) {
                k
            } else {
                continue;
            };
        let text = fs::read_to_string(&path).expect("read");
        let value: serde_json::Value = match serde_saphyr::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{rel}: not YAML: {e}"));
                continue;
            }
        };
        checked += 1;
        for e in validators[which].iter_errors(&value) {
            failures.push(format!("{rel} ({which}): {} at {}", e, e.instance_path()));
        }
    }
    (checked, failures)
}

#[test]
fn the_json_schemas_accept_every_fixture_file_the_shipped_domain_and_scaffolds() {
    let names = [
        "domain",
        "namespace",
        "class",
        "instance",
        "method",
        "control-policy",
        "test",
        "automate-config",
    ];
    let validators: BTreeMap<&str, jsonschema::Validator> =
        names.iter().map(|n| (*n, schema(n))).collect();

    // Every file of ManageIQ's own domain (the fixture): 1,401.
    let fixture = crate::common::manifest("../shared/fixtures/manageiq-content");
    if fixture.is_dir() {
        let (checked, failures) = validate_tree(&fixture, &validators);
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert_eq!(checked, 1401, "fixture files checked");
    } else {
        eprintln!("skipped the fixture: {} is not there", fixture.display());
    }
    // The shipped datastore (with control/).
    let (checked, failures) = validate_tree(&crate::common::shipped_datastore(), &validators);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 80, "{checked}");

    // What `automate new` writes.
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("ds");
    ok(automate(&root, &["new", "domain", "Acme"]));
    ok(automate(&root, &["new", "namespace", "Acme/Shop"]));
    ok(automate(
        &root,
        &["new", "class", "Acme/Shop/Flow", "--state-machine"],
    ));
    ok(automate(
        &root,
        &["new", "instance", "Acme/Shop/Flow/default"],
    ));
    ok(automate(&root, &["new", "method", "Acme/Shop/Flow/pick"]));
    let (checked, failures) = validate_tree(&root, &validators);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 5);

    // automate.example.yaml, and what the schemas refuse.
    let example: serde_json::Value = serde_saphyr::from_str(
        &fs::read_to_string(crate::common::manifest("automate.example.yaml")).expect("read"),
    )
    .expect("yaml");
    let errors: Vec<String> = validators["automate-config"]
        .iter_errors(&example)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let bad_domain = serde_json::json!({"object_type": "domain", "version": 1.0,
        "object": {"attributes": {"name": "X", "source": "mine"}}});
    assert!(!validators["domain"].is_valid(&bad_domain));
    let bad_method = serde_json::json!({"object_type": "method", "version": 1.0,
        "object": {"attributes": {"name": "m", "language": "python"}, "inputs": []}});
    assert!(!validators["method"].is_valid(&bad_method));
    let test_file = serde_json::json!({"object_type": "automate_test", "version": 1.0,
        "cases": [{"name": "start", "event": {"event_type": "USER_RUN_VM", "source": "RHEVM"},
        "objects": [{"class": "VmOrTemplate", "attributes": {"name": "vm1"}}],
        "expect": {"events_raised": ["vm_start"], "policies": ["tag_prod"]}}]});
    let errors: Vec<String> = validators["test"]
        .iter_errors(&test_file)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let both = serde_json::json!({"object_type": "automate_test",
        "cases": [{"name": "x", "uri": "/A/B/c", "event": {"event_type": "E"}}]});
    assert!(!validators["test"].is_valid(&both));
    assert!(errors.is_empty(), "{errors:?}");
}
