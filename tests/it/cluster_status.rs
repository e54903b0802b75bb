//! `GET /api/cluster` and `automate cluster status` in the embedded mode:
//! the API answers this process as the one node of a cluster (named after
//! the host, no leases, its queue depth); the command prints it as tables
//! or `--json`, through the service advertised beside `--db`.

use crate::common::{
    api_runtime, control_engine, copy_dir, serve_api, shipped_datastore, terminate,
};
use automate_redb::RedbStore;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn get(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    let mut resp = req.call().unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

#[test]
fn the_embedded_api_answers_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path().join("api.redb")).unwrap());
    let (engine, _runner) = control_engine(&shipped_datastore(), store.clone());
    let rt = api_runtime();
    let stop = CancellationToken::new();
    let base = format!("http://{}", serve_api(&rt, "tok", engine, store, &stop));

    let (status, _) = get(&format!("{base}/api/cluster"), None);
    assert_eq!(status, 401, "the token is needed");
    let (status, v) = get(&format!("{base}/api/cluster"), Some("tok"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["mode"], "embedded");
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{v}");
    assert_eq!(nodes[0]["node"], v["node"]);
    assert_eq!(nodes[0]["pid"], std::process::id());
    assert_eq!(nodes[0]["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["leases"].as_array().unwrap().is_empty());
    assert_eq!(v["queue"]["depth"], 0);
    stop.cancel();
}

/// `automate run` with one jsonl provider reading `lines` (embedded mode,
/// the API on a free port), and the command line beside it.
fn site(lines: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_datastore(), &dir.path().join("datastore"));
    std::fs::write(dir.path().join("events.jsonl"), lines).unwrap();
    std::fs::write(
        dir.path().join("automate.yaml"),
        "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {kind: jsonl, path: events.jsonl, follow: true}\n\
         workers: 2\napi: {listen: \"127.0.0.1:0\"}\nlog: {dir: log}\n",
    )
    .unwrap();
    dir
}

fn automate(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_automate"));
    cmd.current_dir(dir)
        .arg("--datastore")
        .arg(dir.join("datastore"))
        .arg("--db")
        .arg(dir.join("automate.redb"))
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_API_TOKEN")
        .env_remove("AUTOMATE_SERVER");
    cmd
}

#[test]
fn cluster_status_prints_the_running_service_as_one_node() {
    let dir = site("{\"event_type\": \"USER_RUN_VM\", \"timestamp\": \"2026-01-01T00:00:01Z\", \"vm_ems_ref\": \"/api/vms/1\", \"vm_name\": \"web-01\"}\n");
    let path = dir.path();

    // No service yet: the command says how to reach one.
    let out = automate(path).args(["cluster", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no running service") && err.contains("--server"),
        "{err}"
    );

    let mut child = automate(path)
        .args(["run", "--config", "automate.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let adv = path.join("automate.redb.server");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&adv) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let url = v["url"].as_str().unwrap().trim_start_matches("http://");
            if std::net::TcpStream::connect(url).is_ok() {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("automate run exited with {status} before advertising its API");
        }
        assert!(Instant::now() < deadline, "automate run advertised no API");
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = automate(path)
        .args(["cluster", "status", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "embedded");
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{v}");
    let node = nodes[0]["node"].as_str().unwrap().to_string();
    assert_eq!(nodes[0]["pid"], child.id());

    let out = automate(path).args(["cluster", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    terminate(&mut child);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("embedded mode: 1 node(s), answered by {node}"),
        "{text}"
    );
    assert!(lines[2].starts_with("NODE"), "{text}");
    assert!(lines[3].starts_with(&node), "{text}");
    assert!(
        text.contains("leases: none (one process runs everything)"),
        "{text}"
    );
    assert!(text.contains("queue: depth "), "{text}");
}
