//! The web UI's browser scripts in Firefox: `tests/ui/explorer.mjs` and
//! `tests/ui/edit.mjs` with `AUTOMATE_BROWSER=firefox`, which makes
//! `tests/ui/lib.mjs` launch Debian's stock `firefox-esr` through
//! playwright-core's WebDriver BiDi support (its `moz-firefox` channel; no
//! patched Firefox). Skips with a printed reason when Firefox (or what the
//! Chromium test needs) is missing, unless `AUTOMATE_TEST_UI=1`.

use super::ui::{browser_ready, browser_script, start_api, ui_root, Killed};
use super::ui_edit::probe_class;
use std::path::Path;

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

#[test]
fn ui_in_firefox() {
    let Some(ui_dir) = browser_ready() else {
        return;
    };
    let Some(firefox) = firefox() else {
        return;
    };
    let Some((dir, root)) = ui_root() else {
        return;
    };
    probe_class(&root);
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);
    let env = [
        ("AUTOMATE_BROWSER", "firefox"),
        ("AUTOMATE_FIREFOX", firefox.as_str()),
    ];
    for script in ["explorer.mjs", "edit.mjs"] {
        let out = browser_script(&ui_dir, script, &base, &env);
        assert!(
            out.contains("browser: firefox"),
            "{script} ran in Firefox: {out}"
        );
    }
}
