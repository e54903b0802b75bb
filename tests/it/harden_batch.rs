//! Issue 16, items 17 and 5 (second half): one failing or panicking item
//! of a group-committed batch never fails its neighbours, and what it
//! wrote is discarded. Here through the REST API's request writer: many
//! concurrent `POST /api/automation_requests`, some of them poisoned (their
//! method asks for a retry in `inf` seconds, which panicked in the
//! retry's time arithmetic), on a real server over a real redb store.
//! The pipeline's side (an event whose method writes and then fails or
//! panics) is `events::pipeline::tests`.

use automate::api::{router, serve, ApiState};
use automate::datastore::Datastore;
use automate::engine::Engine;
use automate::vmdb::RedbStore;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "batch-token";

fn copy_dir(src: &Path, dst: &Path) {
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

/// The shipped datastore plus `/System/Request/Poison`, whose method asks
/// for a retry in `inf` seconds.
fn poisoned_datastore(root: &Path) {
    copy_dir(&crate::common::shipped_datastore(), root);
    let class = root.join("ManageIQ/System/Request.class");
    std::fs::write(
        class.join("poison.yaml"),
        "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    display_name:\n    \
         name: Poison\n    inherits:\n    description: asks for a retry in inf seconds\n  \
         fields:\n  - meth1:\n      value: poison\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__methods__/poison.yaml"),
        "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: poison\n    \
         display_name:\n    description:\n    scope: instance\n    language: rhai\n    \
         location: inline\n  inputs: []\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__methods__/poison.rhai"),
        "evm.root[\"ae_result\"] = \"retry\";\nevm.root[\"ae_retry_interval\"] = \"inf\";\n",
    )
    .unwrap();
}

fn body(instance: &str) -> Vec<u8> {
    json!({
        "uri_parts": {"namespace": "System", "class": "Request", "instance": instance},
        "parameters": {"who": "Ada"},
        "requester": {"auto_approve": true}
    })
    .to_string()
    .into_bytes()
}

fn post(url: &str, body: &[u8]) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Auth-Token", TOKEN)
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn a_poisoned_request_never_fails_the_other_requests_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("datastore");
    poisoned_datastore(&root);
    let store = Arc::new(RedbStore::open(dir.path().join("api.redb")).unwrap());
    let (ds, problems) = Datastore::open(&root);
    assert!(problems.is_empty(), "{problems:?}");
    let (engine, _runner) =
        automate::methods::with_methods(Engine::new(Arc::new(ds)).with_store(store.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let base = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(ApiState::new(TOKEN, engine, store.clone()).unwrap(), None);
        tokio::spawn(serve(listener, app, stop.clone()));
        format!("http://{addr}")
    });
    let url = format!("{base}/api/automation_requests");
    let (good, poison) = (body("HelloWorld"), body("Poison"));
    // Several rounds of concurrent requests, every fourth one poisoned, so
    // that poisoned and good requests share group-commit batches.
    let mut answers = Vec::new();
    for _round in 0..3 {
        answers.extend(std::thread::scope(|scope| {
            let handles: Vec<_> = (0..32)
                .map(|i| {
                    let (url, b) = (&url, if i % 4 == 1 { &poison } else { &good });
                    scope.spawn(move || (i % 4 == 1, post(url, b)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        }));
    }
    stop.cancel();
    let mut created = 0;
    for (poisoned, (status, v)) in &answers {
        if !poisoned {
            assert_eq!(*status, 200, "a good request failed with its batch: {v}");
            assert_eq!(v["results"][0]["request_state"], "finished", "{v}");
        }
        if *status == 200 {
            created += 1;
        }
    }
    // A poisoned request that failed stored nothing: the requests stored
    // are exactly the ones answered as created.
    assert_eq!(store.list("MiqRequest").unwrap().len(), created);
    assert!(created >= 72, "{created}");
}
