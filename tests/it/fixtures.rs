//! One line in a plain `cargo test` run saying whether the shared
//! ManageIQ fixture is there: the tests that need it skip quietly without
//! it (their `skipping:` lines are captured by the test harness), so this
//! test says it where it is seen, on the terminal. With
//! `AUTOMATE_REQUIRE_FIXTURES=1` an absent fixture fails it.

use std::io::Write;
use std::path::PathBuf;

#[test]
fn fixtures_present_or_skipped() {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/manageiq-content/ManageIQ"
    ));
    let present = dir.join("__domain__.yaml").is_file();
    let required = std::env::var("AUTOMATE_REQUIRE_FIXTURES").as_deref() == Ok("1");
    let line = if present {
        format!(
            "fixtures: the ManageIQ fixture is present at {}; the fixture tests ran\n",
            dir.display()
        )
    } else {
        format!(
            "fixtures: the ManageIQ fixture is ABSENT at {}; the fixture tests were skipped (set \
             AUTOMATE_REQUIRE_FIXTURES=1 to fail instead)\n",
            dir.display()
        )
    };
    // Straight to the process's stderr: the harness captures `eprintln!`
    // of a passing test, not a write to the stream itself.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    assert!(present || !required, "{line}");
}
