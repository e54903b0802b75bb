//! Issue 16, item 8: a damaged redb file. Read-only commands open it
//! read-only (its bytes stay as they are, nothing is repaired), a panic
//! inside redb is an error naming the file, `automate db check` reports
//! the damage, and `automate db backup` copies a running store.

use super::common::automate_in;
use super::common::process::free_port;
use automate_engine::{AttrValue, Attributes};
use automate_redb::RedbStore;
use automate_vmdb::ObjectStore;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

const EVENTS: usize = 4000;
const PAGE: u64 = 4096;

/// A store of `EVENTS` events (with some bulk, so the file has many pages).
fn build_store(path: &Path) {
    let store = RedbStore::open(path).unwrap();
    for chunk in 0..EVENTS / 500 {
        store
            .write_batch(|b| {
                for i in chunk * 500..(chunk + 1) * 500 {
                    let mut a = Attributes::default();
                    a.insert("event_type".into(), AttrValue::Str("USER_RUN_VM".into()));
                    a.insert(
                        "timestamp".into(),
                        AttrValue::Str("2026-01-01T00:00:00Z".into()),
                    );
                    a.insert("chain_id".into(), AttrValue::Str(format!("c{i}")));
                    a.insert("full_data".into(), AttrValue::Str("x".repeat(400)));
                    b.create("EmsEvent", a)?;
                }
                Ok(())
            })
            .unwrap();
    }
}

/// Zeroes `pages` pages in the middle of the file.
fn zero_middle(path: &Path, pages: u64) {
    let len = std::fs::metadata(path).unwrap().len();
    let at = (len / 2 / PAGE) * PAGE;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at)).unwrap();
    f.write_all(&vec![0u8; (pages * PAGE) as usize]).unwrap();
    f.sync_all().unwrap();
}

fn run(dir: &Path, db: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(super::common::shipped_datastore())
        .arg("--db")
        .arg(db)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_damaged_file_is_an_error_for_readers_never_a_panic_and_never_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.redb");
    build_store(&good);
    let bad = tmp.path().join("bad.redb");
    std::fs::copy(&good, &bad).unwrap();
    zero_middle(&bad, 16);
    let before = std::fs::read(&bad).unwrap();

    // The healthy file checks out.
    let o = run(tmp.path(), &good, &["db", "check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains(": ok ("), "{out}");
    assert!(out.contains(&format!("{EVENTS} objects")), "{out}");

    // Reading the damaged one is an error naming the file, not a panic.
    let o = run(tmp.path(), &bad, &["events", "list"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("bad.redb"), "{err}");
    assert!(err.contains("damaged"), "{err}");
    for args in [&["retries", "list"][..], &["request", "list"][..]] {
        let o = run(tmp.path(), &bad, args);
        let (out, err) = text(&o);
        assert!(!err.contains("panicked"), "{args:?}: {out}\n{err}");
    }
    // Read-only commands left every byte as it was (no repair, no header
    // write).
    assert!(std::fs::read(&bad).unwrap() == before, "the file changed");

    // `db check` reports it (exit 1), and leaves it alone too.
    let o = run(tmp.path(), &bad, &["db", "check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("DAMAGED"), "{out}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        std::fs::read(&bad).unwrap() == before,
        "db check changed the file"
    );
}

#[test]
fn a_read_only_store_refuses_writes_and_repairs() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.redb");
    build_store(&path);
    let before = std::fs::read(&path).unwrap();
    let store = RedbStore::open_read_only(&path).unwrap();
    assert_eq!(store.count().unwrap(), EVENTS as u64);
    let err = store.create("Vm", Attributes::default()).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    drop(store);
    assert!(std::fs::read(&path).unwrap() == before);

    // A file copied while a writer had it open (as after a crash) needs a
    // repair: a read-only command says so and leaves it alone.
    let writer = RedbStore::open(&path).unwrap();
    let crashed = tmp.path().join("crashed.redb");
    std::fs::copy(&path, &crashed).unwrap();
    drop(writer);
    let before = std::fs::read(&crashed).unwrap();
    let o = run(tmp.path(), &crashed, &["events", "list"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("needs a repair"), "{err}");
    assert!(std::fs::read(&crashed).unwrap() == before);
    // `db check` works on a copy, where the repair is allowed.
    let o = run(tmp.path(), &crashed, &["db", "check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(std::fs::read(&crashed).unwrap() == before);
}

fn post(port: u16, token: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, resp)
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    super::common::terminate(&mut child).expect("automate run stops on SIGTERM")
}

#[test]
fn db_backup_copies_a_running_store_through_its_api() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let token = "backup-token";
    std::fs::write(
        tmp.path().join("automate.yaml"),
        format!(
            "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {{kind: http}}\n\
             workers: 2\n\
             api: {{listen: \"127.0.0.1:{port}\", token: {token}}}\n\
             log: {{dir: log}}\n"
        ),
    )
    .unwrap();
    let child = automate_in(tmp.path())
        .current_dir(tmp.path())
        .args(["run", "--config", "automate.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "no listener");
        std::thread::sleep(Duration::from_millis(20));
    }
    let events = 50;
    let body: Vec<serde_json::Value> = (0..events)
        .map(|i| {
            serde_json::json!({"provider": "rhevm01", "event": {
                "event_type": "USER_RUN_VM", "timestamp": "2026-01-01T00:00:00Z",
                "chain_id": format!("b{i}"), "vm_ems_ref": format!("vm-{}", i % 7),
                "vm_name": format!("web-{}", i % 7)}})
        })
        .collect();
    let (status, resp) = post(
        port,
        token,
        "/api/events",
        &serde_json::Value::Array(body).to_string(),
    );
    assert_eq!(status, 202, "{resp}");
    // Wait until the events are handled (stored as EmsEvents).
    let started = Instant::now();
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        if r.contains("\"queue_depth\":0") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not drained: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The store is locked by the running process: the backup goes through
    // its API (address and token from --config).
    let dest = tmp.path().join("backup.redb");
    let o = automate_in(tmp.path())
        .current_dir(tmp.path())
        .args(["db", "backup"])
        .arg(&dest)
        .args(["--config", "automate.yaml"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("from the running service"), "{out}");
    let status = stop(child);
    assert!(status.success(), "automate run: {status}");

    let copy = RedbStore::open_read_only(&dest).unwrap();
    let chains: std::collections::BTreeSet<String> = copy
        .list("EventStream")
        .unwrap()
        .iter()
        .filter_map(|r| copy.load(&r.class, r.id).unwrap())
        .filter_map(|o| o.attrs.get("chain_id").map(AttrValue::to_text))
        .collect();
    assert_eq!(chains.len(), events, "{chains:?}");
    assert!(copy.verify().unwrap().is_ok());
    drop(copy);

    // Stopped: the backup is made locally, from the file opened read-only.
    let dest2 = tmp.path().join("backup2.redb");
    let o = automate_in(tmp.path())
        .arg("db")
        .arg("backup")
        .arg(&dest2)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(!out.contains("running service"), "{out}");
    let copy = RedbStore::open_read_only(&dest2).unwrap();
    assert_eq!(
        copy.count().unwrap(),
        RedbStore::open_read_only(tmp.path().join("automate.redb"))
            .unwrap()
            .count()
            .unwrap()
    );
}
