//! The web UI's Simulation page (`/ui/simulation`) on the real `automate
//! api` binary, over the ManageIQ fixture with the `Custom` overlay
//! (`ui::ui_root`) and a store holding a provider, a host, a VM and
//! an event.
//!
//! `simulation_over_http`: the form renders (entry points from
//! `/System/Process`, the object types, the objects of a type for htmx),
//! a simulation of `/System/Event/EmsEvent/RHEVM/USER_RUN_VM` shows the
//! object tree, the trace tree with the `.missing` fallback marked and the
//! methods with their return codes, the `automate instantiate` and `curl`
//! commands; nothing is persisted (the collections' counts and the VM are
//! unchanged); a bad URI or id is a clear error on the page.
//! `simulation_in_a_real_browser` runs `tests/ui/simulation.mjs`.

use super::ui::{browser_ready, browser_script, http, login, start_api, ui_root, Killed, TOKEN};
use automate_engine::{AttrValue, Attributes};
use automate_redb::RedbStore;
use std::path::Path;

pub(crate) const EMS: i64 = 1_000_000_000_001;
pub(crate) const HOST: i64 = 1_000_000_000_002;
pub(crate) const VM: i64 = 1_000_000_000_029;
pub(crate) const EVENT: i64 = 1_000_000_003_170;

fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `ui_datastore`'s `Custom` USER_RUN_VM with two more fields, as a user
/// would hook the event: `rel1` to an audit instance no domain has (so the
/// RHEVM class's `.missing` is used) and `meth1` running the Rhai method
/// `log_run`.
pub(crate) fn sim_overlay(root: &Path) {
    let inst = root.join("Custom/System/Event/EmsEvent/RHEVM.class/user_run_vm.yaml");
    let mut text = std::fs::read_to_string(&inst).unwrap();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(
        "  - rel1:\n      value: \"/System/Event/EmsEvent/RHEVM/USER_RUN_VM_AUDIT\"\n  \
         - meth1:\n      value: log_run\n",
    );
    std::fs::write(&inst, text).unwrap();
}

/// The store `start_api` opens (`<dir>/ui.redb`), with a provider, a
/// host, a VM on them and a USER_RUN_VM event for the VM.
pub(crate) fn seed_store(dir: &Path) {
    let store = RedbStore::open(dir.join("ui.redb")).unwrap();
    store
        .insert(
            "ExtManagementSystem",
            EMS,
            attrs(&[("name", "rhevm01".into()), ("type", "RHEVM".into())]),
        )
        .unwrap();
    store
        .insert("Host", HOST, attrs(&[("name", "host01".into())]))
        .unwrap();
    store
        .insert(
            "VmOrTemplate",
            VM,
            attrs(&[
                ("name", "web-01".into()),
                ("power_state", "off".into()),
                ("ems_id", AttrValue::Int(EMS)),
                ("host_id", AttrValue::Int(HOST)),
            ]),
        )
        .unwrap();
    store
        .insert(
            "EmsEvent",
            EVENT,
            attrs(&[
                ("event_type", "USER_RUN_VM".into()),
                ("source", "RHEVM".into()),
                ("vm_or_template_id", AttrValue::Int(VM)),
                ("ems_id", AttrValue::Int(EMS)),
            ]),
        )
        .unwrap();
}

/// The `count` of each collection the store serves, and the VM as JSON.
fn store_state(base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for c in [
        "vms",
        "hosts",
        "providers",
        "event_streams",
        "automation_requests",
        "retries",
        "notifications",
    ] {
        let (s, _, body) = http(
            base,
            "GET",
            &format!("/api/{c}"),
            &[("X-Auth-Token", TOKEN)],
            "",
        );
        assert_eq!(s, 200, "/api/{c}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        out.push(format!("{c}={}/{}", v["count"], v["subcount"]));
    }
    let (s, _, vm) = http(
        base,
        "GET",
        &format!("/api/vms/{VM}"),
        &[("X-Auth-Token", TOKEN)],
        "",
    );
    assert_eq!(s, 200);
    out.push(vm);
    out
}

#[test]
fn simulation_over_http() {
    let Some((dir, root)) = ui_root() else {
        return;
    };
    sim_overlay(&root);
    seed_store(dir.path());
    let (child, base) = start_api(dir.path(), &root);
    let _child = Killed(child);

    // Without a session: the login form.
    let (s, h, _) = http(&base, "GET", "/ui/simulation", &[], "");
    assert_eq!(s, 303);
    assert!(super::ui::header(&h, "location")
        .unwrap_or("")
        .starts_with("/ui/login?next=/ui/simulation"));

    let (cookie, _csrf) = login(&base);
    let with = [("Cookie", cookie.as_str())];

    // The form: entry points from /System/Process, object types, rows.
    let (s, _, page) = http(&base, "GET", "/ui/simulation", &with, "");
    assert_eq!(s, 200, "{page}");
    for want in [
        "<option value=\"/System/Process/Request\" selected>",
        "<option value=\"/System/Process/Event\">",
        "<option value=\"/System/Process/Automation\">",
        "<option value=\"VmOrTemplate\">VM and Instance (VmOrTemplate)</option>",
        "<label for=\"sim-object\">Object id</label>",
        "id=\"attr-3\"",
        "name=\"execute_methods\" type=\"checkbox\" value=\"1\" checked",
        "<a href=\"/ui/simulation\" aria-current=\"page\">Simulation</a>",
    ] {
        assert!(page.contains(want), "{want} in {page}");
    }
    assert!(!page.contains("Result of"), "nothing run yet");

    // The objects of a type (the fragment htmx swaps in).
    let (s, _, frag) = http(
        &base,
        "GET",
        "/ui/simulation/objects?object_type=VmOrTemplate",
        &with,
        "",
    );
    assert_eq!(s, 200);
    assert!(
        frag.contains(&format!(
            "<option value=\"{VM}\">{VM}: web-01 (VmOrTemplate)</option>"
        )),
        "{frag}"
    );
    let (s, _, frag) = http(
        &base,
        "GET",
        "/ui/simulation/objects?object_type=Nope",
        &with,
        "",
    );
    assert_eq!(s, 400);
    assert!(frag.contains("not an object type"), "{frag}");
    let (s, _, frag) = http(&base, "GET", "/ui/simulation/row?n=4", &with, "");
    assert_eq!(s, 200);
    assert!(
        frag.contains("id=\"attr-4\"") && frag.contains("row?n=5"),
        "{frag}"
    );
    // "Add row" without JavaScript: the form again with one more row, not
    // run.
    let (s, _, page) = http(
        &base,
        "GET",
        "/ui/simulation?submitted=1&uri=/A/B/c&attr=x&value=1&attr=&value=&attr=&value=&add_row=1",
        &with,
        "",
    );
    assert_eq!(s, 200);
    assert!(page.contains("id=\"attr-4\"") && !page.contains("Result of"));
    assert!(page.contains("value=\"x\""), "the rows are kept");

    let before = store_state(&base);

    // USER_RUN_VM with the VM: the tree, the .missing fallback, methods.
    let q = format!(
        "/ui/simulation?entry=&uri=%2FSystem%2FEvent%2FEmsEvent%2FRHEVM%2FUSER_RUN_VM&message=create\
         &object_type=VmOrTemplate&object_id={VM}&attr=event_type&value=USER_RUN_VM\
         &attr=&value=&execute_methods=1&submitted=1&run=1"
    );
    let (s, _, page) = http(&base, "GET", &q, &with, "");
    assert_eq!(s, 200, "{page}");
    std::fs::write(std::env::temp_dir().join("automate-ui-sim.html"), &page).unwrap();
    for want in [
        "Result of <code>/System/Event/EmsEvent/RHEVM/USER_RUN_VM</code>",
        "<ul class=\"object-tree\">",
        "<code>/Custom/System/Event/EmsEvent/RHEVM/USER_RUN_VM</code>",
        "<ul class=\"trace-tree\">",
        "<span class=\"tk k-inst\">Instantiating</span>",
        "<span class=\"tk k-rel\">Relationship</span>",
        "class=\"t-relationship missing\"",
        "<span class=\"badge b-missing\">.missing fallback</span>",
        "not found in MiqAeDatastore - trying [.missing]",
        "<span class=\"tk k-meth\">Method</span>",
        "Sandbox: nothing was written",
        "automate instantiate /System/Event/EmsEvent/RHEVM/USER_RUN_VM --attr VmOrTemplate::vm=1000000000029 --attr event_type=USER_RUN_VM",
        "X-Auth-Token: $AUTOMATE_TOKEN",
        "/api/automate</textarea>",
        "id=\"permalink\"",
    ] {
        assert!(page.contains(want), "{want} in the result page");
    }
    assert!(!page.contains(TOKEN), "no real token printed");
    // The root got the VM.
    assert!(
        page.contains("<th scope=\"row\">vm_id</th><td class=\"v\">1000000000029</td>"),
        "vm_id"
    );
    // Methods with their return codes.
    assert!(page.contains("rc=MIQ_OK"), "a method's return code");

    // The permalink runs the same simulation.
    let link = page
        .split("<a href=\"")
        .find_map(|r| {
            r.split_once("\" id=\"permalink\"")
                .map(|(l, _)| l.to_string())
        })
        .expect("the permalink");
    let link = link.replace("&#38;", "&").replace("&amp;", "&");
    let (s, _, again) = http(&base, "GET", &link, &with, "");
    assert_eq!(s, 200);
    assert!(again.contains("<span class=\"badge b-missing\">.missing fallback</span>"));

    // Without methods: listed as not run.
    let (s, _, page) = http(
        &base,
        "GET",
        &q.replace("&execute_methods=1", ""),
        &with,
        "",
    );
    assert_eq!(s, 200);
    assert!(page.contains("Methods not run ("), "{page}");
    assert!(page.contains("<span class=\"badge b-skipped\">not run</span>"));
    assert!(page.contains("--no-methods"));
    assert!(page
        .replace("&#34;", "\"")
        .contains("\"execute_methods\":false"));

    // With the event (and the VM): the event's handlers run and would
    // write: the diff lists it, and the store is left as it was.
    let (s, _, page) = http(
        &base,
        "GET",
        &format!(
            "/ui/simulation?uri=%2FSystem%2FEvent%2FEmsEvent%2FRHEVM%2FUSER_RUN_VM\
             &object_type=EmsEvent&object_id={EVENT}&attr=VmOrTemplate%3A%3Avm&value={VM}\
             &execute_methods=1&submitted=1&run=1"
        ),
        &with,
        "",
    );
    assert_eq!(s, 200);
    assert!(!page.contains("Error: "), "the delivery succeeds");
    assert!(page.contains("change"), "{page}");
    assert!(
        page.contains("would update VmOrTemplate [1000000000029] power_state"),
        "the diff: {page}"
    );
    assert!(page.contains("<span class=\"badge b-missing\">.missing fallback</span>"));
    assert!(page.contains("VM web-01 started (43 times)"), "log_run ran");

    // Nothing was persisted.
    assert_eq!(store_state(&base), before, "the simulations wrote nothing");

    // Bad input: clear errors on the page.
    for (q, want) in [
        (
            "/ui/simulation?submitted=1&entry=&uri=System%2FNope&run=1",
            "URI: [System/Nope] is not an Automate URI",
        ),
        (
            "/ui/simulation?submitted=1&entry=&uri=&run=1",
            "Entry point: choose one, or type a URI",
        ),
        (
            "/ui/simulation?submitted=1&uri=%2FSystem%2FEvent%2FEmsEvent%2FRHEVM%2FUSER_RUN_VM&object_type=Host&object_id=5&run=1",
            "Object id: the store holds no Host with id 5",
        ),
        (
            "/ui/simulation?submitted=1&uri=%2FA%2FB%2Fc&attr=&value=orphan&run=1",
            "Attribute row 1: the value [orphan] has no name",
        ),
    ] {
        let (s, _, page) = http(&base, "GET", q, &with, "");
        assert_eq!(s, 400, "{q}");
        assert!(page.contains(want), "{want} in {page}");
        assert!(page.contains("role=\"alert\""));
    }
    // A URI no domain has: the engine's error, highlighted.
    let (s, _, page) = http(
        &base,
        "GET",
        "/ui/simulation?submitted=1&uri=%2FNo%2FSuch%2FClass&run=1",
        &with,
        "",
    );
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("<p class=\"error\" role=\"alert\">Error: "),
        "{page}"
    );
    assert!(page.contains("lvl-error"), "{page}");
    assert!(page.contains("No/Such"), "{page}");
}

#[test]
fn simulation_in_a_real_browser() {
    let Some(ui_dir) = browser_ready() else {
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
    browser_script(
        &ui_dir,
        "simulation.mjs",
        &base,
        &[("AUTOMATE_UI_VM", &vm), ("AUTOMATE_UI_EVENT", &event)],
    );
}
