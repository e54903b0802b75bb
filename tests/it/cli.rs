//! CLI habits, on the real binary: tables with headers and one JSON
//! document (`--json`) for every list and show, times typed with `jiff`
//! (`--since 1h`, an impossible date refused naming the flag), colour only
//! when asked for or on a terminal and never with `NO_COLOR`, shell
//! completions, `import --preview` (nothing written), `export
//! --namespace/--class` and `export '*'`, and `datastore validate` over
//! the control policy files.

use super::common::process::{automate_on, stderr, stdout, stdout_ok, SEND_USER_RUN_VM};
use super::common::{copy_dir, manifest, shipped_datastore};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The small test domain (`Sample`, with the Rhai method `say`).
fn small() -> PathBuf {
    manifest("tests/data/datastore/small")
}

/// `automate` on `ds` with its store in `dir/automate.redb`, colour
/// settings cleared.
fn automate(ds: &Path, dir: &Path) -> Command {
    let mut cmd = automate_on(ds, &dir.join("automate.redb"));
    cmd.env_remove("NO_COLOR");
    cmd
}

fn run(cmd: &mut Command, args: &[&str]) -> Output {
    cmd.args(args).output().expect("run automate")
}

/// Every file below `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).expect("below base").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A store with one event (and so one EmsEvent row) in `dir`.
fn store_with_event(dir: &Path) {
    let o = run(&mut automate(&shipped_datastore(), dir), &SEND_USER_RUN_VM);
    stdout_ok(&o, "event send");
}

#[test]
fn every_list_has_a_header_and_every_json_is_one_document() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    store_with_event(dir);
    let ds = shipped_datastore();
    // (args, the header's first word, the JSON document's kind)
    let cases: &[(&[&str], &str, &str)] = &[
        (&["datastore", "list"], "DOMAIN", "array"),
        (&["datastore", "tree", "System/Event"], "", "array"),
        (&["datastore", "validate"], "", "object"),
        (&["datastore", "show", "/System/Process"], "", "object"),
        (&["retries", "list"], "ID", "array"),
        (&["events", "list"], "ID", "array"),
        (&["events", "list", "--since", "1h"], "ID", "array"),
        (&["request", "list"], "ID", "array"),
    ];
    for (args, header, kind) in cases {
        let text = stdout_ok(&run(&mut automate(&ds, dir), args), &args.join(" "));
        if !header.is_empty() {
            let first = text.lines().next().unwrap_or("");
            assert!(first.starts_with(&format!("{header} ")), "{args:?}: {text}");
            assert!(!text.contains('\t'), "{args:?}: columns, not tabs: {text}");
        }
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let out = stdout_ok(&run(&mut automate(&ds, dir), &with_json), "--json");
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{with_json:?}: not one JSON document ({e}): {out}"));
        let got = match v {
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            _ => "other",
        };
        assert_eq!(got, *kind, "{with_json:?}: {out}");
    }
    // The shapes the `--help` texts document.
    let json = |args: &[&str]| -> Value {
        serde_json::from_str(&stdout_ok(&run(&mut automate(&ds, dir), args), "json")).unwrap()
    };
    let domains = json(&["datastore", "list", "--json"]);
    assert_eq!(domains[0]["name"], "ManageIQ");
    assert_eq!(domains[0]["source"], "system");
    assert!(domains[0]["instances"].as_u64().is_some_and(|n| n > 0));
    let tree = json(&["datastore", "tree", "System/Event/EmsEvent", "--json"]);
    assert_eq!(tree[0]["domain"], "ManageIQ");
    assert_eq!(tree[0]["path"], "ManageIQ/System/Event/EmsEvent");
    let classes = tree[0]["classes"].as_array().unwrap();
    assert!(classes.iter().any(|c| c["name"] == "RHEVM"), "{tree}");
    let events = json(&["events", "list", "--json"]);
    // The EmsEvent, and the MiqEvent (vm_start) its handling raised.
    assert_eq!(events[0]["class"], "EmsEvent", "{events}");
    assert_eq!(events[0]["event_type"], "USER_RUN_VM", "{events}");
    let valid = json(&["datastore", "validate", "--json"]);
    assert_eq!(
        (valid["errors"].as_u64(), valid["warnings"].as_u64()),
        (Some(0), Some(0)),
        "{valid}"
    );
}

#[test]
fn method_run_json_is_the_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        &mut automate(&small(), tmp.path()),
        &["method", "run", "/Demo/Greeting/say", "--json"],
    );
    let v: Value = serde_json::from_str(&stdout_ok(&out, "method run --json")).unwrap();
    assert_eq!(v["uri"], "/Demo/Greeting/say");
    assert_eq!(v["error"], Value::Null);
    let trace: Vec<&str> = v["trace"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert!(trace.contains(&"<AEMethod say> hello"), "{trace:?}");
    // A failure is still one document, with the error, and exit 1.
    let out = run(
        &mut automate(&small(), tmp.path()),
        &["method", "run", "/Demo/Greeting/nothing", "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["error"].is_string(), "{v}");
}

#[test]
fn typed_times_are_checked_and_name_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ds = shipped_datastore();
    // (args, None: accepted; Some(flag): refused naming the flag)
    let send = |flag: &'static str, t: &'static str| -> Vec<&'static str> {
        vec!["event", "send", "--provider", "p", "--type", "T", flag, t]
    };
    let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
        (
            vec!["events", "list", "--since", "2026-02-31"],
            Some("--since"),
        ),
        (
            vec!["events", "list", "--since", "2026-13-01T00:00:00Z"],
            Some("--since"),
        ),
        (
            vec!["events", "list", "--since", "yesterday"],
            Some("--since"),
        ),
        (send("--timestamp", "2026-02-31"), Some("--timestamp")),
        (send("--time", "2026-02-30T10:00:00Z"), Some("--timestamp")),
        (send("--time", "2026-12-01T01:00:00+01:00"), None),
        (vec!["events", "list", "--since", "2026-12-01"], None),
        (vec!["events", "list", "--since", "30m"], None),
        (vec!["events", "list", "--since", "2d"], None),
        (vec!["events", "list", "--since", "3600"], None),
    ];
    for (args, refused) in &cases {
        let o = run(&mut automate(&ds, dir), args);
        match refused {
            None => {
                stdout_ok(&o, &args.join(" "));
            }
            Some(flag) => {
                assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stdout(&o));
                let err = stderr(&o);
                assert!(err.contains(&format!("error: {flag} ")), "{args:?}: {err}");
            }
        }
    }
    // The event stream's one format, whatever form was typed.
    let o = run(&mut automate(&ds, dir), &["events", "list", "--json"]);
    let v: Value = serde_json::from_str(&stdout_ok(&o, "events list")).unwrap();
    assert_eq!(v[0]["timestamp"], "2026-12-01T00:00:00.000Z", "{v}");
}

#[test]
fn colour_only_when_asked_or_on_a_terminal_and_never_with_no_color() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = shipped_datastore();
    // (--color, NO_COLOR, coloured)
    let cases: &[(Option<&str>, Option<&str>, bool)] = &[
        (None, None, false),
        (Some("auto"), None, false),
        (Some("always"), None, true),
        (Some("always"), Some("1"), false),
        (Some("never"), None, false),
        (None, Some(""), false),
    ];
    for &(color, no_color, coloured) in cases {
        let mut cmd = automate(&ds, tmp.path());
        if let Some(c) = color {
            cmd.args(["--color", c]);
        }
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        for args in [&["datastore", "list"][..], &["datastore", "validate"][..]] {
            let o = run(&mut cmd, args);
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(
                o.stdout.contains(&0x1b),
                coloured,
                "--color {color:?} NO_COLOR={no_color:?} {args:?}: {:?}",
                stdout(&o)
            );
            cmd = automate(&ds, tmp.path());
            if let Some(c) = color {
                cmd.args(["--color", c]);
            }
            if let Some(v) = no_color {
                cmd.env("NO_COLOR", v);
            }
        }
    }
    // `--json` is never coloured.
    let o = run(
        &mut automate(&ds, tmp.path()),
        &["--color", "always", "datastore", "list", "--json"],
    );
    assert!(!o.stdout.contains(&0x1b), "{}", stdout(&o));
}

/// On a real terminal (util-linux `script` gives the command one), the
/// header is coloured unless `NO_COLOR` is set.
#[test]
fn a_terminal_gets_colour_unless_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipping: no `script` to run the binary on a terminal");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let line = format!(
        "{} --datastore {} datastore list",
        env!("CARGO_BIN_EXE_automate"),
        shipped_datastore().display()
    );
    for (no_color, coloured) in [(None, true), (Some("1"), false)] {
        let mut cmd = Command::new("script");
        cmd.args(["-qefc", &line, "/dev/null"])
            .current_dir(tmp.path())
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let o = cmd.output().expect("script");
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("DOMAIN"), "{}", stdout(&o));
        assert_eq!(
            o.stdout.windows(4).any(|w| w == b"\x1b[1m"),
            coloured,
            "NO_COLOR={no_color:?}: {:?}",
            stdout(&o)
        );
    }
}

#[test]
fn completions_for_every_shell() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let o = run(
            &mut automate(&shipped_datastore(), tmp.path()),
            &["completions", shell],
        );
        let text = stdout_ok(&o, shell);
        assert!(text.contains("automate"), "{shell}: {text}");
        assert!(text.contains("datastore"), "{shell}: subcommands: {text}");
        if shell == "bash" {
            // bash itself accepts the script and registers the completion.
            let file = tmp.path().join("automate.bash");
            std::fs::write(&file, &text).unwrap();
            let o = Command::new("bash")
                .arg("-c")
                .arg(format!("source {} && complete -p automate", file.display()))
                .output()
                .expect("bash");
            assert!(stdout(&o).contains("_automate automate"), "{}", stderr(&o));
        }
    }
    let o = run(
        &mut automate(&shipped_datastore(), tmp.path()),
        &["completions", "tcsh"],
    );
    assert_eq!(o.status.code(), Some(2), "a usage error: {}", stderr(&o));
}

#[test]
fn import_preview_writes_nothing_and_lists_the_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    copy_dir(&shipped_datastore(), &ds);
    let before = snapshot(&ds);
    let sample = small().join("Sample");
    let s = sample.to_str().unwrap();
    // A new domain: every file is an add.
    let o = run(&mut automate(&ds, tmp.path()), &["import", s, "--preview"]);
    let text = stdout_ok(&o, "preview");
    assert!(
        text.starts_with("Preview (nothing written): import domain Sample"),
        "{text}"
    );
    assert!(text.contains("\nCHANGE  KIND"), "{text}");
    assert!(
        text.contains("add     method     Demo/Greeting.class/__methods__/say.rhai"),
        "{text}"
    );
    assert_eq!(snapshot(&ds), before, "a preview writes nothing");
    // The same errors as the import: an existing domain needs --overwrite.
    let miq = shipped_datastore().join("ManageIQ");
    let o = run(
        &mut automate(&ds, tmp.path()),
        &["import", miq.to_str().unwrap(), "--preview"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    // Replacing a domain: what is removed, changed and kept.
    stdout_ok(
        &run(&mut automate(&ds, tmp.path()), &["import", s]),
        "import",
    );
    let edited = tmp.path().join("edited");
    copy_dir(&sample, &edited.join("Sample"));
    std::fs::remove_file(edited.join("Sample/Demo/Greeting.class/hello.yaml")).unwrap();
    std::fs::write(
        edited.join("Sample/Demo/Greeting.class/__methods__/say.rhai"),
        "evm.log(\"info\", \"bye\");\nMIQ_OK\n",
    )
    .unwrap();
    let before = snapshot(&ds);
    let o = run(
        &mut automate(&ds, tmp.path()),
        &[
            "import",
            edited.join("Sample").to_str().unwrap(),
            "--overwrite",
            "--preview",
            "--json",
        ],
    );
    let v: Value = serde_json::from_str(&stdout_ok(&o, "preview --json")).unwrap();
    assert_eq!(snapshot(&ds), before, "a preview writes nothing");
    assert_eq!(v["replaces"], true);
    let changes: Vec<(&str, &str, &str)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap(),
                c["kind"].as_str().unwrap(),
                c["file"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                "update",
                "method",
                "Demo/Greeting.class/__methods__/say.rhai"
            ),
            ("remove", "instance", "Demo/Greeting.class/hello.yaml"),
        ],
        "{v}"
    );
    assert!(v["unchanged"].as_u64().is_some_and(|n| n > 0), "{v}");
}

#[test]
fn export_a_namespace_a_class_or_every_domain() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    copy_dir(&shipped_datastore(), &ds);
    stdout_ok(
        &run(
            &mut automate(&ds, tmp.path()),
            &["import", small().join("Sample").to_str().unwrap()],
        ),
        "import",
    );
    let files = |dir: &Path| -> Vec<String> {
        snapshot(dir)
            .into_keys()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    };
    // A class: the domain file, the namespace files on the way, the class.
    let out = tmp.path().join("class");
    let o = run(
        &mut automate(&ds, tmp.path()),
        &[
            "export",
            "ManageIQ",
            out.to_str().unwrap(),
            "--namespace",
            "system/event/emsevent",
            "--class",
            "rhevm",
        ],
    );
    stdout_ok(&o, "export --class");
    let got = files(&out);
    assert!(
        got.contains(&"ManageIQ/__domain__.yaml".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&"ManageIQ/System/__namespace__.yaml".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&"ManageIQ/System/Event/EmsEvent/RHEVM.class/user_run_vm.yaml".to_string()),
        "{got:?}"
    );
    assert!(
        got.iter()
            .all(|f| !f.contains("OPENSTACK") && !f.contains("Process")),
        "{got:?}"
    );
    // It imports as it is, under another name.
    let o = run(
        &mut automate(&ds, tmp.path()),
        &[
            "import",
            out.join("ManageIQ").to_str().unwrap(),
            "--domain",
            "Part",
        ],
    );
    assert!(
        stdout_ok(&o, "import the part").contains("1 classes"),
        "{}",
        stdout(&o)
    );
    // A namespace: all of it.
    let out = tmp.path().join("ns");
    stdout_ok(
        &run(
            &mut automate(&ds, tmp.path()),
            &[
                "export",
                "ManageIQ",
                out.to_str().unwrap(),
                "--namespace",
                "System/Event",
            ],
        ),
        "export --namespace",
    );
    let got = files(&out);
    assert!(got.iter().any(|f| f.contains("OPENSTACK.class")), "{got:?}");
    assert!(got.iter().all(|f| !f.contains("System/Process")), "{got:?}");
    // Errors name what is missing.
    for (args, needle) in [
        (&["--namespace", "Nope"][..], "no namespace `Nope`"),
        (
            &["--namespace", "System", "--class", "Nope"][..],
            "no class `System/Nope`",
        ),
    ] {
        let mut all = vec!["export", "ManageIQ", "unused"];
        all.extend_from_slice(args);
        let o = run(&mut automate(&ds, tmp.path()), &all);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    let o = run(
        &mut automate(&ds, tmp.path()),
        &["export", "ManageIQ", "x", "--class", "C"],
    );
    assert_eq!(o.status.code(), Some(2), "--class needs --namespace");
    let o = run(
        &mut automate(&ds, tmp.path()),
        &["export", "*", "unused", "--namespace", "System"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not `*`"), "{}", stderr(&o));
    // Every domain: one directory each, or one zip.
    let out = tmp.path().join("all");
    let text = stdout_ok(
        &run(
            &mut automate(&ds, tmp.path()),
            &["export", "*", out.to_str().unwrap()],
        ),
        "export *",
    );
    assert_eq!(text.lines().count(), 3, "{text}");
    for d in ["ManageIQ", "Sample", "Part"] {
        assert!(out.join(d).join("__domain__.yaml").is_file(), "{d}: {text}");
    }
    let zip = tmp.path().join("all.zip");
    stdout_ok(
        &run(
            &mut automate(&ds, tmp.path()),
            &["export", "*", zip.to_str().unwrap()],
        ),
        "export * zip",
    );
    let again = tmp.path().join("again");
    let o = run(
        &mut automate(&again, tmp.path()),
        &["import", zip.to_str().unwrap(), "--from", "Sample"],
    );
    stdout_ok(&o, "import from the zip of every domain");
}

#[test]
fn validate_reports_control_policy_files_at_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    copy_dir(&shipped_datastore(), &ds);
    let control = ds.join("control");
    std::fs::create_dir_all(&control).unwrap();
    std::fs::write(
        control.join("zz-bad.yaml"),
        "policies:\n- name: p\n  events: [vm_start]\n  actions:\n  - shout: x\n",
    )
    .unwrap();
    let o = run(&mut automate(&ds, tmp.path()), &["datastore", "validate"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(
        text.contains("zz-bad.yaml:4: field `policies[0].actions[0]`: "),
        "{text}"
    );
    let o = run(
        &mut automate(&ds, tmp.path()),
        &["datastore", "validate", "--json"],
    );
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["errors"], 1, "{v}");
    assert_eq!(v["problems"][0]["line"], 4, "{v}");
    assert_eq!(v["problems"][0]["severity"], "error", "{v}");
}
