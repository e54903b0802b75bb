//! Rendering the Explorer's pages server-side on the ManageIQ fixture
//! domain (1,401 files, `../shared/fixtures/manageiq-content`): the whole
//! handler behind the session guard, through the router (`tower`'s
//! `oneshot`), body collected. Target: < 50 ms per page
//! (docs/performance.md). Skips with a message when the fixture is absent.
//!
//! The Simulation pages run beside the API's state over an empty redb
//! store in a temp dir: the form, and a sandboxed simulation of
//! `/System/Event/EmsEvent/RHEVM/USER_RUN_VM` (the engine's run included).

use automate_datastore::Datastore;
use automate_engine::Engine;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "bench-token";

fn fixture() -> Option<std::path::PathBuf> {
    let root = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/manageiq-content"
    ));
    root.join("ManageIQ/__domain__.yaml")
        .is_file()
        .then(|| root.to_path_buf())
}

fn explorer(c: &mut Criterion) {
    let Some(root) = fixture() else {
        eprintln!("skipping: the ManageIQ fixture is absent (../shared/fixtures/manageiq-content)");
        return;
    };
    let (ds, problems) = Datastore::open(&root);
    assert!(
        problems.iter().all(|p| p.warning),
        "the fixture loads: {problems:?}"
    );
    let engine = Engine::new(Arc::new(ds));
    let tmp = tempfile::tempdir().expect("temp dir");
    let store =
        Arc::new(automate_redb::RedbStore::open(tmp.path().join("bench.redb")).expect("store"));
    let api = automate_api::ApiState::new(TOKEN, engine, store).expect("api state");
    let state = automate_ui::UiState::with_api(api);
    let router = automate_ui::router(state);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Sign in once: the session cookie every page request carries.
    let cookie = rt.block_on(async {
        let res = router
            .clone()
            .oneshot(
                Request::post("/ui/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(format!("token={TOKEN}")))
                    .expect("request"),
            )
            .await
            .expect("login");
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        res.headers()[header::SET_COOKIE]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("cookie")
            .to_string()
    });
    let pages = [
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
        ("simulation_form", "/ui/simulation"),
        (
            "simulation_run",
            "/ui/simulation?uri=%2FSystem%2FEvent%2FEmsEvent%2FRHEVM%2FUSER_RUN_VM&attr=event_type&value=USER_RUN_VM&execute_methods=1&submitted=1&run=1",
        ),
    ];
    let mut group = c.benchmark_group("ui_explorer");
    for (name, uri) in pages {
        let get = |uri: &str| {
            let router = router.clone();
            let req = Request::get(uri)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .expect("request");
            async move {
                let res = router.oneshot(req).await.expect("answer");
                let status = res.status();
                let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                    .await
                    .expect("body");
                (status, body.len())
            }
        };
        let (status, len) = rt.block_on(get(uri));
        assert_eq!(status, StatusCode::OK, "{uri}");
        eprintln!("{name}: {uri} is {len} bytes");
        group.bench_function(name, |b| b.iter(|| rt.block_on(get(uri))));
    }
    group.finish();
}

criterion_group!(benches, explorer);
criterion_main!(benches);
