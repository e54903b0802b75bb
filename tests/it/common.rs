//! Fixtures shared by the test modules: a small RHEV world in a
//! `MemoryStore` (a provider, a host, a VM and its `USER_RUN_VM` EmsEvent,
//! with ManageIQ-style ids).

use automate_engine::{AttrValue, Attributes};
use automate_vmdb::MemoryStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod process;
pub use process::{copy_dir, terminate};

pub const VM: i64 = 1_000_000_000_029;
pub const HOST: i64 = 1_000_000_000_002;
pub const EMS: i64 = 1_000_000_000_001;
pub const EVENT: i64 = 1_000_000_003_170;

/// A path below the crate root.
pub fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Attributes from `(name, value)` pairs.
pub fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A RHEV provider, a host, the VM `vm_name` (powered off) and its
/// `USER_RUN_VM` EmsEvent.
pub fn rhev_store(vm_name: &str) -> Arc<MemoryStore> {
    let s = MemoryStore::new();
    s.insert(
        "ExtManagementSystem",
        EMS,
        attrs(&[
            ("name", "rhevm01".into()),
            ("type", "ManageIQ::Providers::Redhat::InfraManager".into()),
        ]),
    );
    s.insert("Host", HOST, attrs(&[("name", "host01".into())]));
    s.insert(
        "VmOrTemplate",
        VM,
        attrs(&[
            ("name", vm_name.into()),
            ("power_state", "off".into()),
            ("ems_id", AttrValue::Int(EMS)),
            ("host_id", AttrValue::Int(HOST)),
        ]),
    );
    s.insert(
        "EmsEvent",
        EVENT,
        attrs(&[
            ("event_namespace", "EmsEvent".into()),
            ("source", "RHEVM".into()),
            ("event_type", "USER_RUN_VM".into()),
            ("vm_or_template_id", AttrValue::Int(VM)),
            ("host_id", AttrValue::Int(HOST)),
            ("ems_id", AttrValue::Int(EMS)),
        ]),
    );
    Arc::new(s)
}

/// The position of the first line at or after `from` containing `needle`.
pub fn find_from(lines: &[String], from: usize, needle: &str) -> Option<usize> {
    lines[from..]
        .iter()
        .position(|l| l.contains(needle))
        .map(|p| p + from)
}

/// Asserts that `needles` appear in `lines` in this order.
pub fn assert_in_order(lines: &[String], needles: &[&str]) {
    let mut at = 0;
    for n in needles {
        match find_from(lines, at, n) {
            Some(p) => at = p + 1,
            None => panic!(
                "`{n}` not found (in order) after line {at}:\n{}",
                lines.join("\n")
            ),
        }
    }
}

/// Masks what changes from run to run in log text: 13-digit ids and
/// timestamps such as `2026-11-24T10:00:01Z` or `2026-11-24 10:00:01 UTC`
/// (`<time>`). Ids are numbered in order of first appearance (`<id1>`,
/// `<id2>`, ...): the same id is always the same number within one text,
/// so a line naming the wrong object changes the snapshot.
pub fn mask_ids_and_times(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut ids: Vec<&[char]> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 13 {
                let id = &chars[start..i];
                let n = match ids.iter().position(|seen| *seen == id) {
                    Some(p) => p + 1,
                    None => {
                        ids.push(id);
                        ids.len()
                    }
                };
                out.push_str(&format!("<id{n}>"));
            } else if i - start == 4 && chars.get(i) == Some(&'-') {
                // A space only inside `date time`.
                let time_char = |j: usize| {
                    let c = chars[j];
                    c.is_ascii_digit()
                        || "-:TZ.".contains(c)
                        || (c == ' ' && chars.get(j + 1).is_some_and(|n| n.is_ascii_digit()))
                };
                while i < chars.len() && time_char(i) {
                    i += 1;
                }
                out.push_str("<time>");
            } else {
                out.extend(&chars[start..i]);
            }
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// The shipped datastore (`datastore/`).
pub fn shipped_datastore() -> PathBuf {
    manifest("datastore")
}

/// The `automate` binary on the shipped datastore with its store in
/// `dir/automate.redb`, with `RUST_LOG` and `AUTOMATE_API_TOKEN` cleared.
pub fn automate_in(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_automate"));
    cmd.arg("--datastore")
        .arg(shipped_datastore())
        .arg("--db")
        .arg(dir.join("automate.redb"))
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_API_TOKEN")
        .env_remove("AUTOMATE_SERVER");
    cmd
}

/// The engine with control (`automate_control::with_control`) on the
/// datastore at `root`, which must load without problems, over `store`;
/// and its script runner (keep it while the engine runs).
pub fn control_engine(
    root: &Path,
    store: Arc<dyn automate_vmdb::ObjectStore>,
) -> (automate_engine::Engine, Arc<automate_methods::RhaiRunner>) {
    let (ds, problems) = automate_datastore::Datastore::open(root);
    assert!(problems.is_empty(), "{problems:?}");
    automate_control::with_control(automate_engine::Engine::new(Arc::new(ds)).with_store(store))
}

/// A multi-threaded runtime with two workers, for a test's API server.
pub fn api_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Serves the REST API (`engine` over `store`, answering to `token`) on
/// 127.0.0.1, port 0, in `rt` until `stop` is cancelled; its address.
pub fn serve_api(
    rt: &tokio::runtime::Runtime,
    token: &str,
    engine: automate_engine::Engine,
    store: Arc<automate_redb::RedbStore>,
    stop: &tokio_util::sync::CancellationToken,
) -> std::net::SocketAddr {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = automate_api::ApiState::new(token, engine, store).expect("API state");
        tokio::spawn(automate_api::serve(
            listener,
            automate_api::router(state, None),
            stop.clone(),
        ));
        addr
    })
}

/// Every entry below `dir`, depth first (links listed, not followed): its
/// path relative to `dir`, its path and its type.
pub fn tree_entries(dir: &Path) -> Vec<(String, PathBuf, std::fs::FileType)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf, std::fs::FileType)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let kind = entry.file_type().unwrap();
            out.push((rel, path.clone(), kind));
            if kind.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// Import options that only allow replacing a domain already there.
pub fn overwriting() -> automate_datastore::import::ImportOptions {
    automate_datastore::import::ImportOptions {
        overwrite: true,
        ..Default::default()
    }
}
