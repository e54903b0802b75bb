//! `automate test` (issue 22 §3): test files in a class's `__tests__/` or a
//! domain's `tests/`, each case in a sandbox over a clean store; one line
//! per case, `N passed, M failed`, `--junit`, exit 1 on failure; `datastore
//! validate` checks their syntax; they travel through export and import.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{copy_dir, manifest};

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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_shipped_domain_passes_its_own_tests() {
    let ds = manifest("datastore");
    let tmp = tempfile::tempdir().unwrap();
    let junit = tmp.path().join("junit.xml");
    let out = automate(&ds, &["test", "--junit", junit.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for case in [
        "ok - USER_RUN_VM raises vm_start",
        "ok - USER_STOP_VM raises vm_poweroff",
        "ok - compute.instance.power_off.end raises vm_poweroff",
        "ok - request_created goes to the RequestEvent handler",
        "ok - HelloWorld greets the World by default",
    ] {
        assert!(text.contains(case), "{case}: {text}");
    }
    assert!(text.trim_end().ends_with("6 passed, 0 failed"), "{text}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuites name=\"automate test\" tests=\"6\" failures=\"0\">"),
        "{xml}"
    );
    // By domain name too.
    let out = automate(&ds, &["test", "ManageIQ"]);
    assert!(stdout(&out).trim_end().ends_with("6 passed, 0 failed"));
}

#[test]
fn a_failing_case_shows_expected_against_actual_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    copy_dir(&manifest("datastore"), &ds);
    // The method changed: its test now fails.
    let m = ds.join("ManageIQ/System/Request.class/__methods__/hello_world.rhai");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, text.replace("`Hello, ${who}!`", "`Hi, ${who}!`")).unwrap();
    let junit = tmp.path().join("junit.xml");
    let out = automate(&ds, &["test", "--junit", junit.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED - HelloWorld greets the World by default"),
        "{text}"
    );
    assert!(
        text.contains("attributes.hello_world: expected Hello, World!, got Hi, World!"),
        "{text}"
    );
    assert!(text.contains("ok - USER_RUN_VM raises vm_start"), "{text}");
    assert!(text.trim_end().ends_with("4 passed, 2 failed"), "{text}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"2\""), "{xml}");
    assert!(
        xml.contains(
            "<failure message=\"attributes.hello_world: expected Hello, World!, got Hi, World!\">"
        ),
        "{xml}"
    );

    // An expected error: a case for a URI that does not resolve.
    let t = ds.join("ManageIQ/tests/errors.yaml");
    std::fs::write(
        &t,
        "---\nobject_type: automate_test\nversion: 1.0\ncases:\n- name: no such instance\n  uri: /Nowhere/Nothing/none\n  expect:\n    error: Nowhere\n- name: unexpected error\n  uri: /Nowhere/Nothing/none\n",
    )
    .unwrap();
    let out = automate(&ds, &["test", t.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(text.contains("ok - no such instance"), "{text}");
    assert!(
        text.contains("FAILED - unexpected error\n    error: expected none, got"),
        "{text}"
    );
}

#[test]
fn validate_checks_test_files_and_they_travel_through_export_and_import() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    copy_dir(&manifest("datastore"), &ds);
    // Export (dir and zip) and import keep __tests__/ and tests/.
    for dest in ["out", "out.zip"] {
        let dest = tmp.path().join(dest);
        let out = automate(&ds, &["export", "ManageIQ", dest.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let other = tmp
            .path()
            .join(format!("imported-{}", dest.display().to_string().len()));
        let src = if dest.extension().is_some() {
            dest.clone()
        } else {
            dest.join("ManageIQ")
        };
        let out = automate(&other, &["import", src.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for rel in [
            "ManageIQ/tests/seed_events.yaml",
            "ManageIQ/System/Request.class/__tests__/hello_world.yaml",
        ] {
            assert_eq!(
                std::fs::read(other.join(rel)).unwrap(),
                std::fs::read(ds.join(rel)).unwrap(),
                "{rel}"
            );
        }
        // (The policies live beside the domains, not in them.)
        copy_dir(&ds.join("control"), &other.join("control"));
        let out = automate(&other, &["test"]);
        let text = stdout(&out);
        assert!(text.trim_end().ends_with("6 passed, 0 failed"), "{text}");
    }
    // A bad test file: validate names file, line and what is wrong.
    let t = ds.join("ManageIQ/System/Request.class/__tests__/bad.yaml");
    std::fs::write(
        &t,
        "---\nobject_type: automate_test\nversion: 1.0\ncases:\n- name: one\n  uri: /System/Request/HelloWorld\n  expect:\n    methdos: [x]\n",
    )
    .unwrap();
    let out = automate(&ds, &["datastore", "validate"]);
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("__tests__/bad.yaml:8"), "{all}");
    assert!(all.contains("methdos"), "{all}");
}
