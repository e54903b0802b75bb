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
        &["new", "method", "Acme/Shop/Orders/Fulfil/pick", "--language", "rhai"],
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
    assert!(sm.contains("aetype: state") && sm.contains("max_retries: '100'"), "{sm}");

    // Validates with no problem at all (the Rhai bodies compile).
    let v = ok(automate(&root, &["datastore", "validate"]));
    assert!(v.contains("no problems"), "{v}");
    let listed = ok(automate(&root, &["datastore", "tree", "Acme"]));
    assert!(listed.contains("say_hello") && listed.contains("Fulfil"), "{listed}");

    // Exports byte for byte.
    let out = tmp.path().join("out");
    ok(automate(&root, &["export", "Acme", &out.to_string_lossy()]));
    assert_eq!(files(&out.join("Acme")), made);
    // Imports into another datastore and is the same there.
    let other = tmp.path().join("other");
    ok(automate(&other, &["import", &out.join("Acme").to_string_lossy()]));
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
    assert!(e.contains("class `Acme/shop/greeter` already exists"), "{e}");
    let e = refused(automate(&root, &["new", "namespace", "Acme/Nope/Sub"]));
    assert!(
        e.contains("no namespace `Acme/Nope`") && e.contains("automate new namespace Acme/Nope"),
        "{e}"
    );
    let e = refused(automate(&root, &["new", "instance", "Acme/Shop/Missing/x"]));
    assert!(e.contains("no class `Acme/Shop/Missing`"), "{e}");
    let e = refused(automate(&root, &["new", "method", "Acme/Shop/Greeter/bad-name"]));
    assert!(e.contains("method name `bad-name` is invalid"), "{e}");
    let e = refused(automate(&root, &["new", "method", "Acme/Shop/Greeter/m", "--language", "ruby"]));
    assert!(e.contains("language `ruby` cannot be scaffolded"), "{e}");
    let e = refused(automate(&root, &["new", "domain", "ManageIQ"]));
    assert!(e.contains("shipped domain"), "{e}");

    // A locked domain refuses every new object.
    let file = root.join("Acme/__domain__.yaml");
    let text = fs::read_to_string(&file).expect("read");
    fs::write(&file, text.replace("source: user", "source: user_locked")).expect("write");
    let before = files(&root);
    let e = refused(automate(&root, &["new", "instance", "Acme/Shop/Greeter/x"]));
    assert!(e.contains("domain `Acme` is read-only (source: user_locked)"), "{e}");
    assert_eq!(files(&root), before);
}
