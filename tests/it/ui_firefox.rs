//! The web UI's browser scripts in Firefox: every `tests/ui/*.mjs` with
//! `AUTOMATE_BROWSER=firefox`, which makes `tests/ui/lib.mjs` launch
//! Debian's stock `firefox-esr` through playwright-core's WebDriver BiDi
//! support (its `moz-firefox` channel; no patched Firefox). Each test
//! starts the server its Chromium test starts, with that test's setup
//! functions (`ui`, `ui_sim`, `ui_domains`, `ui_requests`, `ui_events`).
//! Screenshots stay Chromium's (`lib.mjs`'s `shot`). Skips with a printed
//! reason when Firefox (or what the Chromium test needs) is missing,
//! unless `AUTOMATE_TEST_UI=1`.

use super::common::process::free_port;
use super::ui::{browser_ready, browser_script, http, login, start_api, ui_root, Killed};
use super::ui_edit::probe_class;
use super::ui_sim::{seed_store, sim_overlay, EVENT, VM};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The Firefox binary, when it is installed.
fn firefox() -> Option<String> {
    let path = std::env::var("AUTOMATE_FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
    if Path::new(&path).is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("AUTOMATE_TEST_UI").as_deref() != Ok("1"),
        "AUTOMATE_TEST_UI=1 but {path} is missing (apt-get install -y firefox-esr)"
    );
    eprintln!(
        "skipping the Firefox test: {path} is missing (apt-get install -y firefox-esr; \
         AUTOMATE_TEST_UI=1 makes it mandatory)"
    );
    None
}

/// The `tests/ui` folder and the Firefox binary, when both are here.
fn ready() -> Option<(PathBuf, String)> {
    let ui_dir = browser_ready()?;
    Some((ui_dir, firefox()?))
}

/// Runs `script` in Firefox against `base` with `env` added; fails the
/// test unless it passed there. Its stdout.
fn in_firefox(
    ui_dir: &Path,
    firefox: &str,
    script: &str,
    base: &str,
    env: &[(&str, &str)],
) -> String {
    let mut all = vec![
        ("AUTOMATE_BROWSER", "firefox"),
        ("AUTOMATE_FIREFOX", firefox),
    ];
    all.extend_from_slice(env);
    let started = Instant::now();
    let out = browser_script(ui_dir, script, base, &all);
    assert!(
        out.contains("browser: firefox"),
        "{script} ran in Firefox: {out}"
    );
    eprintln!(
        "ui_firefox: {script} passed in Firefox in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    out
}

/// `explorer.mjs` and `edit.mjs` on `automate api` over the fixture (as
/// `ui::ui_in_a_real_browser` and `ui_edit::ui_edit_in_a_real_browser`).
#[test]
fn ui_in_firefox() {
    let Some((ui_dir, firefox)) = ready() else {
        return;
    };
    let Some((dir, root)) = ui_root() else {
        return;
    };
    probe_class(&root);
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);
    for script in ["explorer.mjs", "edit.mjs"] {
        in_firefox(&ui_dir, &firefox, script, &base, &[]);
    }
}

/// `simulation.mjs`, as `ui_sim::simulation_in_a_real_browser` runs it.
#[test]
fn simulation_in_firefox() {
    let Some((ui_dir, firefox)) = ready() else {
        return;
    };
    let Some((dir, root)) = ui_root() else {
        return;
    };
    sim_overlay(&root);
    seed_store(dir.path());
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);
    let (vm, event) = (VM.to_string(), EVENT.to_string());
    in_firefox(
        &ui_dir,
        &firefox,
        "simulation.mjs",
        &base,
        &[("AUTOMATE_UI_VM", &vm), ("AUTOMATE_UI_EVENT", &event)],
    );
}

/// `domains.mjs`, as `ui_domains::domains_in_a_real_browser` runs it; the
/// upload Firefox sent landed in the datastore.
#[test]
fn domains_in_firefox() {
    let Some((ui_dir, firefox)) = ready() else {
        return;
    };
    let Some((dir, root)) = ui_root() else {
        return;
    };
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);
    in_firefox(&ui_dir, &firefox, "domains.mjs", &base, &[]);
    assert!(root.join("BrowserCopy/__domain__.yaml").is_file());
}

/// `requests.mjs` on `automate run` (as
/// `ui_requests::requests_in_a_real_browser`), then, on the same server,
/// `retries.mjs` once a request of the hour-long `/Test/Slow/default` has
/// its retry scheduled.
#[test]
fn requests_and_retries_in_firefox() {
    let Some((ui_dir, firefox)) = ready() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("datastore");
    std::fs::create_dir_all(&root).unwrap();
    super::ui_requests::requests_datastore(&root);
    let (_child, base) = super::ui_requests::start_run(dir.path(), &root);
    in_firefox(&ui_dir, &firefox, "requests.mjs", &base, &[]);

    let (cookie, csrf) = login(&base);
    let id = super::ui_requests::request_slow(&base, &cookie, &csrf);
    // The service's workers run it: wait for its retry to be scheduled.
    let started = Instant::now();
    loop {
        let (s, _, page) = http(&base, "GET", "/ui/retries", &[("Cookie", &cookie)], "");
        assert_eq!(s, 200);
        if page.contains("/Test/Slow/default?AutomationTask") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "request {id}'s retry was not scheduled: {page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    in_firefox(&ui_dir, &firefox, "retries.mjs", &base, &[]);
}

/// `events.mjs` on `automate run` with recording on (as
/// `ui_events::the_events_pages_list_filter_stream_and_trace_events`
/// runs it), its live and storm figures printed.
#[test]
fn events_in_firefox() {
    let Some((ui_dir, firefox)) = ready() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    super::ui_events::site(dir.path(), port);
    let (_child, base) = super::ui_events::start_run(dir.path(), port);
    let out = in_firefox(&ui_dir, &firefox, "events.mjs", &base, &[]);
    for line in out
        .lines()
        .filter(|l| l.contains("storm:") || l.contains("live:"))
    {
        eprintln!("ui_firefox events: {line}");
    }
}
