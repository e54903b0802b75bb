//! Helpers for tests that run the `automate` binary as a process: shared by
//! the `it` binary (as `common::process`) and by the `crash` and
//! `storefault` binaries (included with `#[path]`), so each binary uses only
//! some of them.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Runs `cmd` and asserts that it succeeded (`what` names it in the
/// failure, with its stdout and stderr); its output.
pub fn output_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().expect(what);
    stdout_ok(&out, what);
    out
}

/// A process's stdout, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A process's stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that `out` is a success (`what` names it in the failure, with
/// its stdout and stderr); its stdout.
pub fn stdout_ok(out: &Output, what: &str) -> String {
    let text = stdout(out);
    assert!(out.status.success(), "{what}: {text}\n{}", stderr(out));
    text
}

/// The `automate` binary on the datastore at `datastore` with its store
/// at `db`, with `RUST_LOG` and `AUTOMATE_API_TOKEN` cleared.
pub fn automate_on(datastore: &Path, db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_automate"));
    cmd.arg("--datastore")
        .arg(datastore)
        .arg("--db")
        .arg(db)
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_API_TOKEN")
        .env_remove("AUTOMATE_SERVER");
    cmd
}

/// `automate event send` of a `USER_RUN_VM` of the VM `vm-1` from the
/// provider `rhevm01` (more options may follow).
pub const SEND_USER_RUN_VM: [&str; 8] = [
    "event",
    "send",
    "--provider",
    "rhevm01",
    "--type",
    "USER_RUN_VM",
    "--vm",
    "vm-1",
];

/// An `automate run` config: one RHEVM provider with an http catcher, two
/// workers, a blocking queue of 20,000, the API on `port` with `token`,
/// logs in `log/`.
pub fn http_run_config(port: u16, token: &str) -> String {
    format!(
        "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {{kind: http}}\n\
         workers: 2\n\
         queue: {{capacity: 20000, batch_max: 256, batch_wait_ms: 5, when_full: block}}\n\
         api: {{listen: \"127.0.0.1:{port}\", token: {token}}}\n\
         log: {{dir: log}}\n"
    )
}

/// Writes `dir/empty.jsonl` and `dir/drain.yaml`, a config whose only
/// catcher reads that empty file: `run --until-idle` on it drains the
/// queue and stops. Returns the config's path.
pub fn write_drain_config(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("empty.jsonl"), "").expect("empty.jsonl");
    let path = dir.join("drain.yaml");
    std::fs::write(
        &path,
        "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {kind: jsonl, path: empty.jsonl}\nworkers: 2\nlog: {dir: log}\n",
    )
    .expect("write drain config");
    path
}

/// Waits (at most `bound`) until `child` listens on `port`; panics with
/// `out()` (what it printed) if it exits first.
pub fn wait_listening(child: &mut Child, port: u16, bound: Duration, out: impl Fn() -> String) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "automate run exited with {status} before listening:\n{}",
                out()
            );
        }
        assert!(
            started.elapsed() < bound,
            "automate run does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Creates `n` VMs (named `{name_prefix}{i}`) in the redb store at `db`
/// and delivers `/SM/Counter/default?machine=<vm id>` (on the object
/// `{class}.<vm id>`) through the library with the datastore at
/// `datastore`: each machine's first pass must ask for a retry, written to
/// the store's scheduled-work table. Returns the VMs' ids (the machine ids).
pub fn start_machines(
    db: &Path,
    datastore: &Path,
    n: usize,
    name_prefix: &str,
    class: &str,
) -> Vec<i64> {
    use automate_engine::deliver::{deliver, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
    use automate_vmdb::ObjectStore;
    let store = automate_redb::RedbStore::open(db).expect("open store");
    let schedule = store.schedule();
    let vms: Vec<i64> = (1..=n)
        .map(|i| {
            let mut attrs = automate_engine::Attributes::default();
            attrs.insert(
                "name".into(),
                automate_engine::AttrValue::Str(format!("{name_prefix}{i}")),
            );
            store.create("VmOrTemplate", attrs).expect("create vm").id
        })
        .collect();
    let (ds, problems) = automate_datastore::Datastore::open(datastore);
    assert!(problems.is_empty(), "{problems:?}");
    let (engine, _runner) = automate_control::with_control(
        automate_engine::Engine::new(std::sync::Arc::new(ds))
            .with_store(std::sync::Arc::new(store)),
    );
    for &id in &vms {
        let d = Delivery {
            uri: format!("/SM/Counter/default?machine={id}"),
            attrs: Vec::new(),
            object: format!("{class}.{id}"),
            deliveries: 0,
        };
        let outcome = deliver(&engine, &schedule, &d, DEFAULT_MAX_DELIVERIES).expect("deliver");
        assert!(
            matches!(outcome, Outcome::Retry { .. }),
            "machine {id} should ask for a retry on its first pass"
        );
    }
    assert_eq!(schedule.len().expect("len"), n as u64);
    vms
}

/// Copies the directory tree `src` to `dst` (created).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

/// Ends a child `automate` the way an operator does: SIGTERM, then waits
/// (at most 60 s, then SIGKILL and `None`) so the store is closed cleanly
/// and read-only commands can open it afterwards.
pub fn terminate(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
