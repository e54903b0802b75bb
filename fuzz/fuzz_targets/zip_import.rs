//! Fuzz target: arbitrary bytes imported as a `.zip` domain archive
//! (`datastore::import`) into an empty datastore in a temporary directory.
//! Errors are fine; panics are not, and nothing outside the temporary
//! directory may be written: `TMPDIR` points into it (the import extracts
//! the zip under `std::env::temp_dir()`), and every entry name the zip could
//! use to escape is refused by `extract_zip`. A successful import must leave
//! a datastore that opens.

#![no_main]

use automate_datastore::{import, Datastore, ImportOptions};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The fuzzer's private temporary directory (kept for the whole run).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("automate-fuzz-zip-")
            .tempdir()
            .expect("temporary directory")
            .keep();
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        std::env::set_var("TMPDIR", &tmp);
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let base = scratch();
    let run = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(base)
        .expect("run dir");
    let zip = run.path().join("domain.zip");
    std::fs::write(&zip, data).expect("write zip");
    let root = run.path().join("datastore");
    std::fs::create_dir(&root).expect("datastore dir");
    if import(&root, &zip, &ImportOptions::default()).is_ok() {
        let (ds, _problems) = Datastore::open(&root);
        let _ = ds.index();
    }
});
