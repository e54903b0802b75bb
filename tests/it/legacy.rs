//! Exports made before 2016 (CloudForms 3.x era) still load: old domain and
//! namespace keys (`system`, no `source`/`tenant_id`), `key: ` with the
//! trailing space older libyaml wrote, instance files named with every `.`
//! turned into `_` (the name comes from the YAML), and the old single-class
//! `System/Event` layout. Re-exported, they come back in the current form
//! (no trailing spaces) with the same content.

use automate_datastore::fs as dsfs;
use automate_datastore::{Datastore, Index, Source};
use automate_engine::Engine;
use std::path::PathBuf;
use std::sync::Arc;

fn legacy_root() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/datastore/legacy"
    ))
}

#[test]
fn a_pre_2016_export_loads_and_resolves() {
    let report = dsfs::read_root(&legacy_root());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let domain = &report.domains[0];
    assert_eq!(domain.name(), "Legacy");
    // `system: true` is the old spelling of a locked domain.
    assert_eq!(domain.source(), Source::UserLocked);
    assert_eq!(domain.priority(), 3);

    let index = Index::build(&report.domains);
    // The file is sample-10_0_0_10.yaml; the name inside keeps its dots.
    let hosts = index
        .resolve("Infra", "Hosts", "sample-10.0.0.10")
        .expect("instance by its YAML name");
    assert!(hosts.instance("sample-10.0.0.10").is_some());
    assert!(hosts.instance("sample-10_0_0_10").is_none());

    // The old layout: System/Event is a class with one instance per event.
    let ds = Arc::new(Datastore::from_domains(&legacy_root(), &report.domains));
    let ws = Engine::new(ds)
        .instantiate("/System/Event/vm_create", &[])
        .expect("instantiates");
    let root = ws.root().expect("a root");
    assert_eq!(root.namespace, "Legacy/System");
    assert_eq!(
        root.get("logical_event").map(|v| v.to_text()).as_deref(),
        Some("vm_create")
    );
}

#[test]
fn a_pre_2016_export_re_exports_in_the_current_form_with_the_same_content() {
    let report = dsfs::read_root(&legacy_root());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let tmp = tempfile::tempdir().expect("tempdir");
    for (rel, bytes) in dsfs::render_domain(&report.domains[0], "Legacy") {
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(
            !text.lines().any(|l| l.ends_with(' ')),
            "{rel} still has a trailing space:\n{text}"
        );
        let path = tmp.path().join(&rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
    }
    let again = dsfs::read_root(tmp.path());
    assert!(again.problems.is_empty(), "{:?}", again.problems);
    assert_eq!(
        again.domains, report.domains,
        "same documents after a round trip"
    );
}
