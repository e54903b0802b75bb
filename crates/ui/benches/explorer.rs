//! Rendering every page the web UI serves, server-side, on the ManageIQ
//! fixture domain (1,401 files, `../shared/fixtures/manageiq-content`):
//! the whole handler behind the session guard, through the router
//! (`tower`'s `oneshot`), body collected. Target: < 50 ms per page
//! (issue 21; figures in docs/performance.md). Skips with a message when
//! the fixture is absent.
//!
//! The site is what `automate api` serves: the fixture imported into a
//! temp datastore beside `Req` (`tests/data/requests`, unlocked: its
//! instance and method have edit pages), an engine with the Rhai runner
//! and control, and the API's state over a redb store in the temp dir,
//! the REST API mounted beside the UI. The store is seeded through the
//! real pipeline before anything is measured: a few hundred events sent
//! with `POST /api/event_streams` (`send`: handled by Automate with
//! recording on, each with its stored trace), automation requests created
//! from the UI's form (some approved and finished, some pending, some
//! retrying, so `/ui/retries` lists their scheduled retries).
//!
//! Not measured: `/ui/events/stream` (a server-sent event stream that
//! never ends), the redirects (`/`, `/ui`) and the POST routes.

use automate_datastore::Datastore;
use automate_engine::Engine;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "bench-token";
/// Events sent through the API before measuring.
const EVENTS: usize = 300;
/// Automation requests created from the form before measuring.
const REQUESTS: usize = 40;

fn fixture() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/manageiq-content/ManageIQ"
    ));
    dir.join("__domain__.yaml")
        .is_file()
        .then(|| dir.to_path_buf())
}

/// The datastore root in `tmp`: the fixture and `Req` imported.
fn datastore(tmp: &Path, fixture: &Path) -> PathBuf {
    let root = tmp.join("datastore");
    std::fs::create_dir_all(&root).expect("datastore dir");
    let req = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/requests/Req"
    ));
    for source in [fixture, req] {
        automate_datastore::import::import(
            &root,
            source,
            &automate_datastore::import::ImportOptions::default(),
        )
        .expect("import");
    }
    root
}

/// One request through the router: status, headers and body.
async fn call(
    router: &Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, axum::body::Bytes) {
    let res = router.clone().oneshot(req).await.expect("answer");
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, body)
}

/// A form body, percent-encoded.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// A POST of `body` (a form) with the session `cookie`.
fn post_form(uri: &str, cookie: &str, body: String) -> Request<Body> {
    Request::post(uri)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request")
}

/// Signs in; the session cookie and the session's CSRF token.
async fn sign_in(router: &Router) -> (String, String) {
    let (status, headers, _) = call(
        router,
        Request::post("/ui/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={TOKEN}")))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie")
        .to_string();
    let (_, _, page) = call(
        router,
        Request::get("/ui/explorer")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    let page = String::from_utf8_lossy(&page);
    let csrf = page
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the logout form's CSRF token")
        .to_string();
    (cookie, csrf)
}

/// Sends `EVENTS` provider events through `POST /api/event_streams`
/// (`send`): handled now by Automate on the fixture, recorded with their
/// traces. The id of a `USER_RUN_VM` among them.
async fn seed_events(router: &Router) -> i64 {
    const TYPES: [&str; 6] = [
        "USER_RUN_VM",
        "VM_DOWN",
        "USER_STOP_VM",
        "USER_ADD_VM",
        "USER_SUSPEND_VM",
        "USER_REMOVE_VM",
    ];
    let mut run_vm = 0;
    for i in 0..EVENTS {
        let event_type = TYPES[i % TYPES.len()];
        let vm = format!("vm-{:03}", i % 40);
        let body = serde_json::json!({"action": "send",
            "provider": {"name": "rhevm01", "type": "RHEVM", "hostname": "rhevm01.example.com",
                "userid": "admin@internal"},
            "event": {"event_type": event_type,
                "timestamp": format!("2026-12-06T10:{:02}:{:02}Z", i / 60 % 60, i % 60),
                "chain_id": format!("bench-{i}"), "vm_ems_ref": format!("/api/vms/{vm}"),
                "vm_name": vm, "full_data": {"name": event_type, "vm": {"name": vm}}}});
        let (status, _, answer) = call(
            router,
            Request::post("/api/event_streams")
                .header("X-Auth-Token", TOKEN)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let v: serde_json::Value = serde_json::from_slice(&answer).expect("json");
        if event_type == "USER_RUN_VM" {
            run_vm = v["event_id"].as_i64().expect("event_id");
        }
    }
    run_vm
}

/// Creates `REQUESTS` automation requests from the form: `/Test/Work/hello`
/// approved (it finishes), pending ones, and `/Test/Counter/default`
/// approved (its state machine retries: nothing runs the retries here,
/// so they stay scheduled). The id of a finished request.
async fn seed_requests(router: &Router, cookie: &str, csrf: &str) -> String {
    let mut finished = String::new();
    for i in 0..REQUESTS {
        let (class, instance, approve) = match i % 4 {
            0 | 1 => ("Work", "hello", true),
            2 => ("Work", "hello", false),
            _ => ("Counter", "default", true),
        };
        let who = format!("user{i}");
        let body = form(&[
            ("csrf_token", csrf),
            ("namespace", "Test"),
            ("class", class),
            ("instance", instance),
            ("attr_key_0", "who"),
            ("attr_value_0", &who),
            ("user_name", "jdoe"),
        ]);
        let (status, headers, page) = call(router, post_form("/ui/requests", cookie, body)).await;
        assert_eq!(
            status,
            StatusCode::SEE_OTHER,
            "{}",
            String::from_utf8_lossy(&page)
        );
        let to = headers[header::LOCATION].to_str().expect("location");
        let id = to.trim_start_matches("/ui/requests/").to_string();
        if approve {
            let body = form(&[("csrf_token", csrf), ("reason", "bench")]);
            let (status, _, _) = call(
                router,
                post_form(&format!("/ui/requests/{id}/approve"), cookie, body),
            )
            .await;
            assert_eq!(status, StatusCode::SEE_OTHER, "approve {id}");
            if class == "Work" {
                finished = id;
            }
        }
    }
    finished
}

fn pages(c: &mut Criterion) {
    let Some(fixture) = fixture() else {
        eprintln!("skipping: the ManageIQ fixture is absent (../shared/fixtures/manageiq-content)");
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = datastore(tmp.path(), &fixture);
    let (ds, problems) = Datastore::open(&root);
    assert!(
        problems.iter().all(|p| p.warning),
        "the datastore loads: {problems:?}"
    );
    let store =
        Arc::new(automate_redb::RedbStore::open(tmp.path().join("bench.redb")).expect("store"));
    let engine = Engine::new(Arc::new(ds)).with_store(store.clone());
    let (engine, _runner) = automate_control::with_control(engine);
    let api = automate_api::ApiState::new(TOKEN, engine, store).expect("api state");
    let state = automate_ui::UiState::with_api(api.clone());
    let router = automate_ui::mount(automate_api::router(api, None), state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (cookie, event, request) = rt.block_on(async {
        let (cookie, csrf) = sign_in(&router).await;
        let started = std::time::Instant::now();
        let event = seed_events(&router).await;
        let request = seed_requests(&router, &cookie, &csrf).await;
        eprintln!(
            "seeded {EVENTS} events and {REQUESTS} requests through the API and the UI in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        (cookie, event, request)
    });
    let event_page = format!("/ui/events/{event}");
    let request_page = format!("/ui/requests/{request}");
    let pages: Vec<(&str, &str)> = vec![
        ("login", "/ui/login"),
        ("not_found", "/ui/no-such-page"),
        ("home", "/ui/explorer"),
        ("domain", "/ui/explorer/domain/ManageIQ"),
        (
            "namespace",
            "/ui/explorer/namespace/ManageIQ/System/Event/EmsEvent",
        ),
        (
            "class",
            "/ui/explorer/class/ManageIQ/System/Event/EmsEvent/RHEVM",
        ),
        (
            "instance",
            "/ui/explorer/instance/ManageIQ/System/Event/EmsEvent/RHEVM/USER_RUN_VM",
        ),
        (
            "method",
            "/ui/explorer/method/ManageIQ/System/Process/parse_provider_category",
        ),
        ("search", "/ui/explorer/search?q=vm"),
        (
            "resolve",
            "/ui/explorer/resolve?path=/System/Event/EmsEvent/RHEVM/NO_SUCH_EVENT",
        ),
        ("children", "/ui/explorer/children?path=/ManageIQ/System"),
        (
            "instance_edit",
            "/ui/explorer/instance/Req/Test/Work/hello?edit",
        ),
        ("method_edit", "/ui/explorer/method/Req/Test/Work/hello?edit"),
        ("simulation_form", "/ui/simulation"),
        (
            "simulation_run",
            "/ui/simulation?uri=%2FSystem%2FEvent%2FEmsEvent%2FRHEVM%2FUSER_RUN_VM&attr=event_type&value=USER_RUN_VM&execute_methods=1&submitted=1&run=1",
        ),
        (
            "simulation_objects",
            "/ui/simulation/objects?object_type=VmOrTemplate",
        ),
        ("simulation_row", "/ui/simulation/row?n=4"),
        ("events", "/ui/events"),
        ("events_filtered", "/ui/events?type=USER_RUN_VM&vm=vm-001"),
        ("event", &event_page),
        ("requests", "/ui/requests"),
        ("request", &request_page),
        ("request_new", "/ui/requests/new"),
        ("retries", "/ui/retries"),
        ("domains", "/ui/domains"),
        ("domain_export", "/ui/domains/Req/export"),
    ];
    let mut group = c.benchmark_group("ui_pages");
    for (name, uri) in pages {
        // The login form is for those without a session (with one, it
        // redirects).
        let signed_in = name != "login";
        let get = |uri: &str| {
            let router = router.clone();
            let mut req = Request::get(uri);
            if signed_in {
                req = req.header(header::COOKIE, &cookie);
            }
            let req = req.body(Body::empty()).expect("request");
            async move {
                let (status, _, body) = call(&router, req).await;
                (status, body.len())
            }
        };
        let (status, len) = rt.block_on(get(uri));
        let expected = if name == "not_found" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(status, expected, "{uri}");
        eprintln!("{name}: {uri} is {len} bytes");
        group.bench_function(name, |b| b.iter(|| rt.block_on(get(uri))));
    }
    group.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
