//! The command line as a client of a running service (`src/cli/remote.rs`):
//! while `automate run` holds the store, every command that reads or
//! changes it works from a second process without flags (through the
//! advertised API) and prints what it prints against a stopped store; a
//! stale advertisement is ignored; when the store is held and no service
//! answers, the error names both ways out.

use super::common::{copy_dir, shipped_datastore, terminate};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `automate run`'s configuration: one provider whose jsonl catcher reads
/// an empty file, the API on a free port of 127.0.0.1, no token (the
/// service makes one for the session).
fn write_config(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("empty.jsonl"), "").unwrap();
    let path = dir.join("automate.yaml");
    std::fs::write(
        &path,
        "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {kind: jsonl, path: empty.jsonl}\n\
         workers: 2\napi: {listen: \"127.0.0.1:0\"}\nlog: {dir: log}\n",
    )
    .unwrap();
    path
}

/// One test directory: its own copy of the shipped datastore (import
/// writes it) and its store.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&shipped_datastore(), &dir.path().join("datastore"));
        write_config(dir.path());
        Site { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn db(&self) -> PathBuf {
        self.path().join("automate.redb")
    }

    /// `automate` in the site's directory on its datastore and store, no
    /// `--server`, no token, no `AUTOMATE_SERVER`.
    fn automate(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_automate"));
        cmd.current_dir(self.path())
            .arg("--datastore")
            .arg(self.path().join("datastore"))
            .arg("--db")
            .arg(self.db())
            .env_remove("RUST_LOG")
            .env_remove("AUTOMATE_API_TOKEN")
            .env_remove("AUTOMATE_SERVER");
        cmd
    }

    /// Starts `automate run` and waits (with a deadline) until its
    /// advertisement names an API that answers.
    fn start_run(&self) -> Child {
        self.start(&["run", "--config", "automate.yaml"])
    }

    /// Starts `automate ARGS` (`run` or `api`) and waits (with a deadline)
    /// until its advertisement names an API that answers.
    fn start(&self, args: &[&str]) -> Child {
        let mut child = self
            .automate()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let adv = self.path().join("automate.redb.server");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&adv) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                let url = v["url"].as_str().unwrap().trim_start_matches("http://");
                if std::net::TcpStream::connect(url).is_ok() {
                    return child;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("automate {args:?} exited with {status} before advertising its API");
            }
            assert!(
                Instant::now() < deadline,
                "automate {args:?} advertised no API"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `args` run here: exit code and stdout, the site's directory written
    /// as `<dir>` and times masked (they necessarily differ between the
    /// two sites: `created_on`, the MiqEvent's `timestamp`).
    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.automate().args(args).output().unwrap();
        let text =
            String::from_utf8_lossy(&out.stdout).replace(self.path().to_str().unwrap(), "<dir>");
        (out.status.code(), mask_times(&text))
    }
}

/// Times such as `2026-11-24T10:00:01.123Z` become `<time>`.
fn mask_times(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let is_time = i + 10 < chars.len()
            && (i == 0 || !chars[i - 1].is_ascii_alphanumeric())
            && chars[i..i + 4].iter().all(char::is_ascii_digit)
            && chars[i + 4] == '-'
            && chars[i + 10] == 'T';
        if is_time {
            while i < chars.len() && (chars[i].is_ascii_digit() || "-:TZ.".contains(chars[i])) {
                i += 1;
            }
            out.push_str("<time>");
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Every command of issue 18 item 1, in an order whose documents are the
/// same on both sites (the request ids are the first ones).
const COMMANDS: &[&[&str]] = &[
    &[
        "event",
        "send",
        "--provider",
        "rhevm01",
        "--type",
        "USER_RUN_VM",
        "--vm",
        "vm-1",
        "--timestamp",
        "2026-01-01T00:00:01Z",
    ],
    &[
        "event",
        "send",
        "--provider",
        "rhevm01",
        "--type",
        "USER_RUN_VM",
        "--vm",
        "vm-1",
        "--timestamp",
        "2026-01-01T00:00:01Z",
    ],
    &["events", "list", "--json"],
    &["events", "list"],
    &[
        "events",
        "list",
        "--json",
        "--type",
        "USER_RUN_VM",
        "--limit",
        "1",
    ],
    &[
        "request",
        "create",
        "/System/Request/HelloWorld",
        "--attr",
        "a=1",
        "--json",
    ],
    &["request", "approve", "1000000000001", "--json"],
    &[
        "request",
        "create",
        "/System/Request/HelloWorld",
        "--userid",
        "jdoe",
    ],
    &[
        "request",
        "deny",
        "1000000000002",
        "--reason",
        "not today",
        "--json",
    ],
    &[
        "request",
        "create",
        "/System/Request/HelloWorld",
        "--auto-approve",
        "--json",
    ],
    &["request", "list", "--json"],
    &["request", "list"],
    &["request", "show", "1000000000001", "--json"],
    &["request", "show", "1000000000002"],
    &["request", "show", "999"],
    &["retries", "list"],
    &["retries", "run-due"],
    &["instantiate", "/System/Request/HelloWorld", "--json"],
    &["instantiate", "/System/Request/HelloWorld", "--attr", "x=y"],
    &[
        "instantiate",
        "/NoSuchNamespace/Request/HelloWorld",
        "--json",
    ],
    &["method", "run", "/System/Request/hello_world"],
    &["datastore", "list"],
    &["datastore", "tree", "ManageIQ/System/Request"],
    &["datastore", "show", "/System/Request/HelloWorld", "--json"],
    &["datastore", "validate"],
    &["export", "ManageIQ", "out.zip"],
    &["export", "ManageIQ", "outdir"],
    &["export", "NoSuchDomain", "none.zip"],
    &["import", "out.zip", "--domain", "Copy"],
    &["import", "out.zip", "--domain", "Copy"],
    &[
        "import",
        "datastore/ManageIQ",
        "--domain",
        "Copy2",
        "--priority",
        "7",
        "--disabled",
    ],
    &["datastore", "list"],
    // The service resolves against the imported domain at once.
    &["instantiate", "/Copy/System/Request/HelloWorld", "--json"],
    &["events", "list", "--json"],
    // The datastore as the service reads it, text and JSON.
    &["datastore", "list", "--json"],
    &["datastore", "tree"],
    &["datastore", "tree", "--json"],
    &["datastore", "tree", "System/Request", "--json"],
    &["datastore", "tree", "ManageIQ/System/Request/HelloWorld"],
    &["datastore", "tree", "NoSuchThing"],
    &["datastore", "show", "/ManageIQ/System/Request"],
    &["datastore", "show", "/System/Request", "--json"],
    &["datastore", "show", "/System/Request/HelloWorld"],
    &["datastore", "show", "/System/Request/NoSuchInstance"],
    &["datastore", "show", "/System/Request/hello_world()"],
    &[
        "datastore",
        "show",
        "/System/Request/hello_world()",
        "--json",
    ],
    &["datastore", "show", "/NoSuch/Class"],
    &["datastore", "validate", "--json"],
];

#[test]
fn every_command_works_while_run_holds_the_store_with_the_same_output() {
    // The stopped store: `run --until-idle` once (the objects a run makes
    // at start), then each command opens the store itself.
    let stopped = Site::new();
    let (code, _) = stopped.run(&["run", "--config", "automate.yaml", "--until-idle"]);
    assert_eq!(code, Some(0));
    assert!(
        !stopped.path().join("automate.redb.server").exists(),
        "a clean exit removes the advertisement"
    );
    let expected: Vec<_> = COMMANDS.iter().map(|c| stopped.run(c)).collect();

    // The running store: each command from a second process, no flags.
    let running = Site::new();
    let mut child = running.start_run();
    let adv = running.path().join("automate.redb.server");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&adv).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the advertisement holds the token");
    }
    let got: Vec<_> = COMMANDS.iter().map(|c| running.run(c)).collect();

    // With the advertisement's address and token given explicitly (and a
    // wrong token refused, naming --token).
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&adv).unwrap()).unwrap();
    let (url, token) = (v["url"].as_str().unwrap(), v["token"].as_str().unwrap());
    let flagged = running.run(&[
        "--server", url, "--token", token, "request", "list", "--json",
    ]);
    let refused = running
        .automate()
        .args(["--server", url, "--token", "wrong", "request", "list"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--token"));

    // `datastore reload` has the service reload its own datastore.
    let reloaded = running.run(&["datastore", "reload", "--json"]);
    assert_eq!(reloaded.0, Some(0), "{}", reloaded.1);
    let report: serde_json::Value = serde_json::from_str(&reloaded.1).unwrap();
    assert_eq!(report["ok"], true, "{report}");

    // `db backup` asks the advertised service for the copy (no flags).
    let backup = running.run(&["db", "backup", "backup.redb"]);
    assert_eq!(backup.0, Some(0), "{}", backup.1);
    assert!(
        backup.1.contains("from the running service at"),
        "{}",
        backup.1
    );

    assert!(terminate(&mut child).is_some_and(|s| s.success()));
    assert!(!adv.exists(), "a clean exit removes the advertisement");

    for ((cmd, want), have) in COMMANDS.iter().zip(&expected).zip(&got) {
        assert_eq!(have, want, "automate {}", cmd.join(" "));
    }
    assert_eq!(flagged, expected[10], "request list --json with --server");
    // The commands did their work: the documents are not empty.
    assert!(expected[2].1.contains("USER_RUN_VM"), "{}", expected[2].1);
    assert!(expected[10].1.contains("\"denied\""), "{}", expected[10].1);
    assert_eq!(expected[14].0, Some(1), "an unknown request fails");
    assert_eq!(expected[27].0, Some(1), "an unknown domain is not exported");
    // The exported tree is the same whichever path wrote it.
    let tree = |site: &Site| {
        super::common::tree_entries(&site.path().join("outdir"))
            .into_iter()
            .map(|(rel, path, kind)| (rel, kind.is_file().then(|| std::fs::read(path).unwrap())))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let exported = tree(&stopped);
    assert!(exported.len() > 10, "{exported:?}");
    assert_eq!(tree(&running), exported);
    assert_eq!(expected[29].0, Some(1), "an import over a domain fails");
    assert!(
        expected[32].1.contains("/Copy/System/Request/HelloWorld"),
        "{}",
        expected[32].1
    );
    // The datastore commands printed something, and fail alike.
    assert!(expected[34].1.contains("\"Copy2\""), "{}", expected[34].1);
    assert!(expected[35].1.contains("HelloWorld"), "{}", expected[35].1);
    assert_eq!(expected[39].0, Some(1), "an unknown tree path fails");
    assert!(expected[42].1.contains("instance "), "{}", expected[42].1);
    assert!(expected[45].1.contains("body"), "{}", expected[45].1);
    assert_eq!(expected[46].0, Some(1), "an unknown show path fails");
    assert!(
        expected[47].1.contains("\"problems\""),
        "{}",
        expected[47].1
    );
}

/// `datastore list|tree|show|validate` with `--server`: the answer is the
/// service's datastore (another directory than the client's
/// `--datastore`), printed as the service's own command line prints it.
#[test]
fn datastore_commands_read_the_services_datastore() {
    let service = Site::new();
    let (code, out) = service.run(&[
        "import",
        "datastore/ManageIQ",
        "--domain",
        "Elsewhere",
        "--priority",
        "9",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let commands: &[&[&str]] = &[
        &["datastore", "list"],
        &["datastore", "list", "--json"],
        &["datastore", "tree", "Elsewhere/System/Request"],
        &["datastore", "tree", "Elsewhere/System/Request", "--json"],
        &["datastore", "show", "/Elsewhere/System/Request/HelloWorld"],
        &["datastore", "show", "/System/Request", "--json"],
        &["datastore", "validate"],
        &["datastore", "validate", "--json"],
    ];
    let raw = |mut cmd: Command, args: &[&str]| {
        let out = cmd.args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // What the service's own datastore gives, read locally.
    let expected: Vec<_> = commands
        .iter()
        .map(|c| raw(service.automate(), c))
        .collect();

    let mut child = service.start(&["api", "--listen", "127.0.0.1:0"]);
    let adv = service.path().join("automate.redb.server");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&adv).unwrap()).unwrap();
    let (url, token) = (
        v["url"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    );
    // A client elsewhere: its own datastore (no `Elsewhere`) and store.
    let client = Site::new();
    let remote = |args: &[&str]| {
        let mut cmd = client.automate();
        cmd.args(["--server", &url, "--token", &token]);
        raw(cmd, args)
    };
    let got: Vec<_> = commands.iter().map(|c| remote(c)).collect();
    let local_list = raw(client.automate(), &["datastore", "list"]);
    // The actions' refusals: a show without a path, an unknown field, a
    // path that names nothing.
    let post = |path: &str, body: serde_json::Value| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .post(format!("{url}{path}"))
            .header("X-Auth-Token", &token)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        let text = resp.body_mut().read_to_string().unwrap();
        (resp.status().as_u16(), text)
    };
    let no_path = post("/api/automate", serde_json::json!({"action": "show"}));
    let unknown_field = post(
        "/api/automate",
        serde_json::json!({"action": "tree", "depth": 2}),
    );
    let nothing = post(
        "/api/automate",
        serde_json::json!({"action": "tree", "path": "Nowhere/At/All"}),
    );
    let bad_validate = post(
        "/api/automate_domains",
        serde_json::json!({"action": "validate", "path": "x"}),
    );
    assert!(terminate(&mut child).is_some_and(|s| s.success()));
    assert_eq!(no_path.0, 400, "{}", no_path.1);
    assert!(no_path.1.contains("path"), "{}", no_path.1);
    assert_eq!(unknown_field.0, 400, "{}", unknown_field.1);
    assert!(unknown_field.1.contains("depth"), "{}", unknown_field.1);
    assert_eq!(nothing.0, 404, "{}", nothing.1);
    assert!(nothing.1.contains("datastore tree"), "{}", nothing.1);
    assert_eq!(bad_validate.0, 400, "{}", bad_validate.1);

    for ((cmd, want), have) in commands.iter().zip(&expected).zip(&got) {
        assert_eq!(have, want, "automate --server URL {}", cmd.join(" "));
    }
    assert!(expected[0].1.contains("Elsewhere"), "{}", expected[0].1);
    assert!(!local_list.1.contains("Elsewhere"), "{}", local_list.1);
    let service_root = service.path().join("datastore");
    assert!(
        expected[7].1.contains(service_root.to_str().unwrap()),
        "{}",
        expected[7].1
    );
}

#[test]
fn a_stale_advertisement_is_ignored_and_removed() {
    let site = Site::new();
    let (code, _) = site.run(&["request", "create", "/System/Request/HelloWorld"]);
    assert_eq!(code, Some(0));
    // A process that has exited: its pid names no process (until reused).
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let adv = site.path().join("automate.redb.server");
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    std::io::Write::write_all(
        &mut file.open(&adv).unwrap(),
        format!("{{\"url\":\"http://127.0.0.1:9\",\"pid\":{pid},\"token\":\"t\"}}\n").as_bytes(),
    )
    .unwrap();
    let (code, out) = site.run(&["request", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("1000000000001") && out.contains("pending_approval"),
        "{out}"
    );
    assert!(!adv.exists(), "the stale advertisement is removed");
}

#[test]
fn a_held_store_without_a_service_names_both_ways() {
    let site = Site::new();
    let mut child = site.start_run();
    // The service's advertisement is gone (as if it predated them): the
    // store is held and nothing says where the API is.
    std::fs::remove_file(site.path().join("automate.redb.server")).unwrap();
    let out = site.automate().args(["events", "list"]).output().unwrap();
    let _ = terminate(&mut child);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("held by another process"), "{err}");
    assert!(err.contains("--server URL --token TOKEN"), "{err}");
    assert!(err.contains("stop that process"), "{err}");
}

#[test]
fn automate_api_advertises_itself_too() {
    let site = Site::new();
    let mut child = site.start(&["api", "--listen", "127.0.0.1:0"]);
    let adv = site.path().join("automate.redb.server");
    let created = site.run(&[
        "request",
        "create",
        "/System/Request/HelloWorld",
        "--auto-approve",
    ]);
    let listed = site.run(&["request", "list"]);
    assert!(terminate(&mut child).is_some_and(|s| s.success()));
    assert!(!adv.exists(), "a clean exit removes the advertisement");
    assert_eq!(created.0, Some(0), "{}", created.1);
    assert!(
        created.1.contains("approval_state: approved"),
        "{}",
        created.1
    );
    // The same store, opened by the command now that the service is gone.
    assert_eq!(site.run(&["request", "list"]), listed);
}

#[test]
fn retries_go_through_the_service_too() {
    let dir = tempfile::tempdir().unwrap();
    let datastore = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/retries"));
    let db = dir.path().join("automate.redb");
    let automate = || {
        let mut cmd = super::common::process::automate_on(&datastore, &db);
        cmd.current_dir(dir.path());
        cmd
    };
    let mut child = automate()
        .args(["api", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let adv = dir.path().join("automate.redb.server");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !adv.exists() {
        assert!(Instant::now() < deadline, "automate api advertised nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The machine asks for a retry in 0.05 s: scheduled through the API.
    let first = automate()
        .args(["instantiate", "--commit", "/SM/Counter/default?machine=7"])
        .output()
        .unwrap();
    // Listed through the API while it waits (`automate api` runs no
    // retries of its own).
    let pending = automate()
        .args(["retries", "list", "--json"])
        .output()
        .unwrap();
    // Run by the client's run-due or by the service's own retry runner:
    // either way nothing is left scheduled once it is done.
    let run = automate()
        .args(["retries", "run-due", "--wait", "--quiet"])
        .output()
        .unwrap();
    let listed = automate().args(["retries", "list"]).output().unwrap();
    assert!(terminate(&mut child).is_some_and(|s| s.success()));
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{text}");
    assert!(
        text.contains("Processed State=[count] with Result=[retry]"),
        "{text}"
    );
    let text = String::from_utf8_lossy(&pending.stdout);
    assert!(pending.status.success(), "{text}");
    let pending: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(pending.as_array().map(Vec::len), Some(1), "{pending}");
    assert!(
        pending[0]["uri"]
            .as_str()
            .unwrap_or("")
            .contains("/SM/Counter"),
        "{pending}"
    );
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{text}");
    assert!(text.ends_with("0 still scheduled\n"), "{text}");
    // No retry left: at most the table's header.
    assert!(
        String::from_utf8_lossy(&listed.stdout).lines().count() <= 1,
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    assert!(listed.status.success());
}
