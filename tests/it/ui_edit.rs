//! Editing in the web UI's Explorer (`crates/ui/src/edit.rs`) on the real
//! `automate api` binary over HTTP: an instance value saved changes one
//! line of its file in ManageIQ's layout and is reloaded at once; a field
//! the schema lacks, a locked domain and a Rhai body that does not compile
//! are refused with nothing written (the compile error at its line); a
//! fixed body is saved and the next `POST /api/automate/...` resolve runs
//! it. `ui_edit_in_a_real_browser` runs `tests/ui/edit.mjs` (Chromium).

use super::ui::{
    browser_ready, browser_script, header, http, login, start_api, ui_root, Killed, FORM, TOKEN,
};
use std::path::Path;

/// The probe class `Custom/Demo/Probe` (a `method` field `execute` whose
/// instance `default` calls the Rhai method `probe`, which sets
/// `$evm.root["probe"]`), beside [`ui_datastore`]'s domains.
pub(crate) fn probe_class(root: &Path) {
    let ns = root.join("Custom/Demo");
    let class = ns.join("Probe.class");
    std::fs::create_dir_all(class.join("__methods__")).unwrap();
    std::fs::write(
        ns.join("__namespace__.yaml"),
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Demo\n    \
         description:\n    display_name:\n    priority:\n    enabled:\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__class__.yaml"),
        "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    \
         display_name:\n    name: Probe\n    type:\n    inherits:\n    visibility:\n    owner:\n  \
         schema:\n  - field:\n      aetype: attribute\n      name: note\n      display_name:\n      \
         datatype: string\n      priority: 1\n      owner:\n      default_value: from the class\n      \
         substitute: true\n      message: create\n  - field:\n      aetype: method\n      \
         name: execute\n      display_name:\n      datatype: string\n      priority: 2\n      \
         owner:\n      default_value:\n      substitute: true\n      message: create\n",
    )
    .unwrap();
    std::fs::write(
        class.join("default.yaml"),
        "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    display_name:\n    \
         name: default\n    inherits:\n    description:\n  fields:\n  - execute:\n      value: probe\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__methods__/probe.yaml"),
        "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: probe\n    \
         display_name:\n    description: Marks the root\n    scope: instance\n    language: rhai\n    \
         location: inline\n  inputs: []\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__methods__/probe.rhai"),
        "// Marks the root so a test sees which body ran.\nevm.root[\"probe\"] = \"v1\";\nMIQ_OK\n",
    )
    .unwrap();
}

/// `application/x-www-form-urlencoded` of `s`.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `POST /api/automate/Demo/Probe/default` resolve with methods executed:
/// the root's `probe` attribute.
fn probe(base: &str) -> String {
    let (s, _, body) = http(
        base,
        "POST",
        "/api/automate/Demo/Probe/default",
        &[
            ("X-Auth-Token", TOKEN),
            ("Content-Type", "application/json"),
        ],
        r#"{"action": "resolve", "execute_methods": true}"#,
    );
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].is_null(), "{v}");
    v["objects"][0]["attributes"]["probe"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn ui_edit_over_http() {
    let Some((dir, root)) = ui_root() else {
        return;
    };
    probe_class(&root);
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);
    let (cookie, csrf) = login(&base);
    let with = [("Cookie", cookie.as_str())];
    let post = [("Cookie", cookie.as_str()), FORM];

    // The instance page offers the form; the form has one row per field.
    let page = "/ui/explorer/instance/Custom/System/Event/EmsEvent/RHEVM/USER_RUN_VM";
    let (s, _, body) = http(&base, "GET", page, &with, "");
    assert_eq!(s, 200);
    assert!(body.contains(&format!("href=\"{page}?edit\"")), "{body}");
    let (s, _, form) = http(&base, "GET", &format!("{page}?edit"), &with, "");
    assert_eq!(s, 200, "{form}");
    assert!(form.contains("name=\"value:rel5\""), "{form}");
    assert!(form.contains("<label for=\"f-0\">"), "{form}");
    assert!(form.contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")));

    // Save one value: 303 back with the flash; one line of the file changed.
    let file = root.join("Custom/System/Event/EmsEvent/RHEVM.class/user_run_vm.yaml");
    let before = std::fs::read_to_string(&file).unwrap();
    let new = "/System/event_handlers/event_action_refresh?target=dest_vm";
    let (s, h, body) = http(
        &base,
        "POST",
        page,
        &post,
        &format!("csrf_token={csrf}&value%3Arel5={}", enc(new)),
    );
    assert_eq!(s, 303, "{body}");
    assert_eq!(
        header(&h, "location"),
        Some(format!("{page}?saved=saved").as_str())
    );
    let after = std::fs::read_to_string(&file).unwrap();
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(before.lines().count(), after.lines().count(), "{after}");
    assert_eq!(
        changed,
        vec![(
            "      value: \"/System/event_handlers/event_action_refresh_sync?target=src_vm\"",
            "      value: \"/System/event_handlers/event_action_refresh?target=dest_vm\""
        )],
        "{after}"
    );
    // The ManageIQ layout: export writes the same bytes.
    let out = dir.path().join("export");
    automate_datastore::export(
        &root,
        "Custom",
        &out,
        &automate_datastore::ExportOptions::default(),
    )
    .expect("export Custom");
    let exported = std::fs::read_to_string(
        out.join("Custom/System/Event/EmsEvent/RHEVM.class/user_run_vm.yaml"),
    )
    .unwrap();
    assert_eq!(exported, after, "the edit is byte-compatible with export");
    // Reloaded: the page shows the value and the flash.
    let (s, _, body) = http(&base, "GET", &format!("{page}?saved=saved"), &with, "");
    assert_eq!(s, 200);
    assert!(body.contains("role=\"status\">Saved.</p>"), "{body}");
    assert!(
        body.contains("event_action_refresh?target=dest_vm"),
        "{body}"
    );

    // A field the schema lacks: 422, the field named, nothing written.
    let (s, _, body) = http(
        &base,
        "POST",
        page,
        &post,
        &format!("csrf_token={csrf}&value%3Arel5=x&value%3Anope=1"),
    );
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("nope: no such field"), "{body}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), after);
    // A value that is not one line of text: the field's row says why.
    let (s, _, body) = http(
        &base,
        "POST",
        page,
        &post,
        &format!("csrf_token={csrf}&value%3Arel5=a%0Ab"),
    );
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("aria-invalid=\"true\""), "{body}");
    assert!(
        body.contains("rel5: the value holds the control character U+000A"),
        "{body}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), after);
    // Without the CSRF token: 403, nothing written.
    let (s, _, _) = http(&base, "POST", page, &post, "value%3Arel5=x");
    assert_eq!(s, 403);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), after);

    // A locked domain: read-only with why; a save is refused.
    let locked = "/ui/explorer/instance/ManageIQ/System/Process/Event";
    let (s, _, body) = http(&base, "GET", locked, &with, "");
    assert_eq!(s, 200);
    assert!(
        body.contains("Read-only: domain ManageIQ is system"),
        "{body}"
    );
    assert!(!body.contains("?edit\""), "no edit link: {body}");
    let miq_file = root.join("ManageIQ/System/Process.class/event.yaml");
    let miq_before = std::fs::read(&miq_file).unwrap();
    for req in [
        ("GET", format!("{locked}?edit"), String::new()),
        (
            "POST",
            locked.to_string(),
            format!("csrf_token={csrf}&value%3Arel1=x"),
        ),
    ] {
        let (s, _, body) = http(&base, req.0, &req.1, &post, &req.2);
        assert_eq!(s, 403, "{} {}: {body}", req.0, req.1);
        assert!(
            body.contains("copy it to an unlocked domain of higher priority"),
            "{body}"
        );
    }
    assert_eq!(std::fs::read(&miq_file).unwrap(), miq_before);

    // A Rhai method: the next resolve runs v1.
    assert_eq!(probe(&base), "v1");
    let mpage = "/ui/explorer/method/Custom/Demo/Probe/probe";
    let (s, _, body) = http(&base, "GET", &format!("{mpage}?edit"), &with, "");
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("<label for=\"body\">Body of /Custom/Demo/Probe/probe (Rhai)</label>"),
        "{body}"
    );
    assert!(
        body.contains("evm.root[&#34;probe&#34;] = &#34;v1&#34;;"),
        "{body}"
    );
    // A compile error: 422 at its line, the line marked, nothing written.
    let body_file = root.join("Custom/Demo/Probe.class/__methods__/probe.rhai");
    let v1 = std::fs::read_to_string(&body_file).unwrap();
    let broken = "// v2\r\nlet a = 1;\r\nevm.root[\"probe\"] = ;\r\nMIQ_OK\r\n";
    let (s, _, body) = http(
        &base,
        "POST",
        mpage,
        &post,
        &format!("csrf_token={csrf}&body={}", enc(broken)),
    );
    assert_eq!(s, 422, "{body}");
    assert!(
        body.contains("The method does not compile; nothing was saved."),
        "{body}"
    );
    assert!(
        body.contains("<a href=\"#err-line\">Line 3, column "),
        "{body}"
    );
    assert!(
        body.contains("<span class=\"ln err\" id=\"err-line\">"),
        "{body}"
    );
    assert_eq!(std::fs::read_to_string(&body_file).unwrap(), v1);
    assert_eq!(probe(&base), "v1", "the running method is unchanged");
    // Fixed: saved (LF line ends), reloaded, and the next resolve runs it.
    let fixed = "// v2\r\nlet a = 1;\r\nevm.root[\"probe\"] = `v${a + 1}`;\r\nMIQ_OK\r\n";
    let (s, h, body) = http(
        &base,
        "POST",
        mpage,
        &post,
        &format!("csrf_token={csrf}&body={}", enc(fixed)),
    );
    assert_eq!(s, 303, "{body}");
    assert_eq!(
        header(&h, "location"),
        Some(format!("{mpage}?saved=saved").as_str())
    );
    assert_eq!(
        std::fs::read_to_string(&body_file).unwrap(),
        fixed.replace("\r\n", "\n")
    );
    assert_eq!(probe(&base), "v2", "the next resolve runs the saved body");
    // The same body again: nothing to write.
    let (s, h, _) = http(
        &base,
        "POST",
        mpage,
        &post,
        &format!("csrf_token={csrf}&body={}", enc(fixed)),
    );
    assert_eq!(
        (s, header(&h, "location")),
        (303, Some(format!("{mpage}?saved=unchanged").as_str()))
    );
}

#[test]
fn ui_edit_in_a_real_browser() {
    let Some(ui_dir) = browser_ready() else {
        return;
    };
    let Some((dir, root)) = ui_root() else {
        return;
    };
    probe_class(&root);
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);
    browser_script(&ui_dir, "edit.mjs", &base, &[]);
}
