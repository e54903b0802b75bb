//! Issue 16, item 7: a full disk under `automate run` (its own test
//! binary: it mounts a small tmpfs for the store and signals the process).
//!
//! `automate run` takes events over HTTP while the tmpfs holding its store
//! is filled: the store's writes wait for space, `/api/health` answers 503
//! `disk_full`, `POST /api/events` answers 503 `store_unavailable`; when
//! space is freed, everything resumes and every acknowledged (202) event
//! is handled. A SIGTERM while the disk is full ends the process (exit 1,
//! saying why) instead of waiting for space; a restart delivers what it
//! had queued.
//!
//! Needs `mount -t tmpfs` (root): without it the tests print why and skip,
//! unless `AUTOMATE_TEST_MOUNT=1` (CI sets it) makes them mandatory.

use automate_engine::AttrValue;
use automate_redb::RedbStore;
use automate_vmdb::ObjectStore;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "it/common/process.rs"]
mod process;
use process::{free_port, http_run_config, output_ok, wait_listening, write_drain_config};

const TOKEN: &str = "storefault-token";
const BATCH: usize = 20;
/// Every wait of these tests gives up after this long.
const BOUND: Duration = Duration::from_secs(120);

/// A tmpfs mounted for the test, unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts a tmpfs of `size` at `dir`; `None` (the test skips) when that
/// is refused, unless `AUTOMATE_TEST_MOUNT=1`.
fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(dir).expect("mount point");
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Mount(dir.to_path_buf())),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var("AUTOMATE_TEST_MOUNT").as_deref() != Ok("1"),
                "AUTOMATE_TEST_MOUNT=1 but mount -t tmpfs is refused: {why}"
            );
            eprintln!("skipped: mount -t tmpfs is refused ({}); run as root or set AUTOMATE_TEST_MOUNT=1 to require it", why.trim());
            None
        }
    }
}

fn automate(dir: &Path, db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_automate"));
    cmd.arg("--datastore")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/datastore"))
        .arg("--db")
        .arg(db)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_API_TOKEN");
    cmd
}

fn write_config(dir: &Path, port: u16) {
    std::fs::write(dir.join("automate.yaml"), http_run_config(port, TOKEN)).expect("config");
    write_drain_config(dir);
}

fn start(dir: &Path, db: &Path, port: u16) -> Child {
    let out = std::fs::File::create(dir.join("run.out")).expect("run.out");
    let mut child = automate(dir, db)
        .args(["run", "--config", "automate.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(out))
        .spawn()
        .expect("spawn automate run");
    wait_listening(&mut child, port, BOUND, || run_out(dir));
    child
}

fn run_out(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("run.out")).unwrap_or_default()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `GET /api/health`: status and body.
fn health(port: u16) -> (u16, String) {
    match agent()
        .get(&format!("http://127.0.0.1:{port}/api/health"))
        .call()
    {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

/// What the feeder saw.
#[derive(Default)]
struct Fed {
    acked: Mutex<BTreeSet<String>>,
    unavailable: AtomicUsize,
    other: Mutex<Vec<String>>,
}

/// Posts batches of events with unique chain ids (`{prefix}{n}`) until
/// `stop`; records the acknowledged ones.
fn feed(port: u16, prefix: &'static str, fed: Arc<Fed>, stop: Arc<AtomicBool>) {
    let agent = agent();
    let url = format!("http://127.0.0.1:{port}/api/events");
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let chains: Vec<String> = (n..n + BATCH).map(|i| format!("{prefix}{i}")).collect();
        n += BATCH;
        let body: Vec<serde_json::Value> = chains
            .iter()
            .enumerate()
            .map(|(i, c)| {
                serde_json::json!({"provider": "rhevm01", "event": {
                    "event_type": "USER_RUN_VM", "timestamp": "2026-01-01T00:00:00Z",
                    "chain_id": c, "vm_ems_ref": format!("vm-{}", i % 7),
                    "vm_name": format!("web-{}", i % 7),
                    "full_data": "y".repeat(2000)}})
            })
            .collect();
        let sent = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-Auth-Token", TOKEN)
            .send(serde_json::Value::Array(body).to_string().as_bytes());
        match sent {
            Ok(r) if r.status().as_u16() == 202 => {
                if let Ok(mut a) = fed.acked.lock() {
                    a.extend(chains);
                }
            }
            Ok(mut r) => {
                let status = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                if status == 503 && text.contains("store_unavailable") {
                    fed.unavailable.fetch_add(1, Ordering::SeqCst);
                } else if let Ok(mut o) = fed.other.lock() {
                    o.push(format!("{status} {text}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                if let Ok(mut o) = fed.other.lock() {
                    o.push(e.to_string());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn acked(fed: &Fed) -> BTreeSet<String> {
    fed.acked.lock().map(|a| a.clone()).unwrap_or_default()
}

/// Waits until `f` holds (bounded).
fn wait_for(what: &str, dir: &Path, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < BOUND,
            "gave up waiting for {what}; automate run said:\n{}",
            run_out(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fills the file system of `dir` with `dir/fill`.
fn fill_disk(dir: &Path) -> PathBuf {
    let path = dir.join("fill");
    let mut f = std::fs::File::create(&path).expect("filler");
    for chunk in [1 << 20, 4096] {
        let buf = vec![1u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

/// SIGTERM, then the exit status (bounded).
fn terminate(mut child: Child, dir: &Path) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        if started.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "automate run did not end on SIGTERM; it said:\n{}",
                run_out(dir)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The chain ids of the stored provider events (`EmsEvent`), and how many
/// of them there are.
fn stored_chains(db: &Path) -> (BTreeSet<String>, usize) {
    let store = RedbStore::open_read_only(db).expect("open the store");
    let refs = store.list("EventStream").expect("list");
    let chains: Vec<String> = refs
        .iter()
        .filter(|r| &*r.class == "EmsEvent")
        .filter_map(|r| store.load(&r.class, r.id).expect("load"))
        .filter_map(|o| o.attrs.get("chain_id").map(AttrValue::to_text))
        .collect();
    let n = chains.len();
    (chains.into_iter().collect(), n)
}

/// `automate run` on a store in a fresh tmpfs, fed events over HTTP by a
/// thread: [`Scenario::begin`] returns once some are acknowledged.
struct Scenario {
    child: Option<Child>,
    feeder: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    fed: Arc<Fed>,
    port: u16,
    db: PathBuf,
    mnt: PathBuf,
    // Dropped in this order: the process, the mount, the directory.
    _mount: Mount,
    tmp: tempfile::TempDir,
}

impl Scenario {
    /// [`Scenario::begin`], then fills the disk and waits until
    /// `/api/health` answers 503; the scenario and the filler file.
    fn begin_with_full_disk(prefix: &'static str) -> Option<(Scenario, PathBuf)> {
        let s = Scenario::begin(prefix)?;
        let filler = fill_disk(&s.mnt);
        wait_for("/api/health to answer 503", s.dir(), || {
            health(s.port).0 == 503
        });
        Some((s, filler))
    }

    /// `None` when no tmpfs can be mounted (the test skips).
    fn begin(prefix: &'static str) -> Option<Scenario> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mnt = tmp.path().join("mnt");
        let mount = mount_tmpfs(&mnt, "24m")?;
        let db = mnt.join("automate.redb");
        let port = free_port();
        write_config(tmp.path(), port);
        let child = start(tmp.path(), &db, port);
        let fed = Arc::new(Fed::default());
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = {
            let (fed, stop) = (fed.clone(), stop.clone());
            std::thread::spawn(move || feed(port, prefix, fed, stop))
        };
        let s = Scenario {
            child: Some(child),
            feeder: Some(feeder),
            stop,
            fed,
            port,
            db,
            mnt,
            _mount: mount,
            tmp,
        };
        wait_for("the first acknowledged events", s.dir(), || {
            acked(&s.fed).len() >= 100
        });
        Some(s)
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn stop_feeding(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(f) = self.feeder.take() {
            f.join().expect("feeder");
        }
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let child = self.child.take().expect("running");
        terminate(child, self.dir())
    }

    /// Every acknowledged event is stored, once.
    fn assert_all_handled(&self) {
        let acked = acked(&self.fed);
        let (stored, rows) = stored_chains(&self.db);
        let missing: Vec<&String> = acked.difference(&stored).collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged events not handled: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert_eq!(rows, stored.len(), "an event was stored twice");
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_full_disk_pauses_the_pipeline_and_it_resumes_when_space_returns() {
    // The disk fills: the store waits for space, says so, and the
    // pipeline takes no events.
    let Some((mut s, filler)) = Scenario::begin_with_full_disk("a") else {
        return;
    };
    wait_for("/api/health to say disk_full", s.dir(), || {
        let (status, body) = health(s.port);
        status == 503 && body.contains("disk_full")
    });
    wait_for("POST /api/events to answer 503", s.dir(), || {
        s.fed.unavailable.load(Ordering::SeqCst) > 0
    });

    // Space returns: everything resumes.
    std::fs::remove_file(&filler).expect("free the disk");
    wait_for("/api/health to answer 200", s.dir(), || {
        health(s.port).0 == 200
    });
    let before = acked(&s.fed).len();
    wait_for(
        "events acknowledged after the disk was freed",
        s.dir(),
        || acked(&s.fed).len() >= before + 5 * BATCH,
    );
    s.stop_feeding();
    let status = s.terminate();
    assert!(status.success(), "{status}: {}", run_out(s.dir()));
    s.assert_all_handled();
    eprintln!(
        "{} events acknowledged, {} posts refused with 503 store_unavailable while the disk was full",
        acked(&s.fed).len(),
        s.fed.unavailable.load(Ordering::SeqCst)
    );
    let other = s.fed.other.lock().map(|o| o.clone()).unwrap_or_default();
    assert!(
        other
            .iter()
            .all(|o| o.starts_with("503") || o.starts_with("504")),
        "{other:?}"
    );
}

#[test]
fn sigterm_while_the_disk_is_full_ends_the_process() {
    let Some((mut s, filler)) = Scenario::begin_with_full_disk("t") else {
        return;
    };

    // SIGTERM ends it although the drain cannot write: exit 1, saying why.
    let status = s.terminate();
    s.stop_feeding();
    let said = run_out(s.dir());
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("took no more writes"), "{said}");

    // With space again, a restart delivers what was acknowledged.
    std::fs::remove_file(&filler).expect("free the disk");
    output_ok(
        automate(s.dir(), &s.db).args(["run", "--until-idle", "--config", "drain.yaml"]),
        "drain",
    );
    s.assert_all_handled();
}
