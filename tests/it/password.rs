//! Password fields (issue 20 §3): ManageIQ's `v2:{...}` values decrypted
//! with the region's v2 key (checked against the `openssl` command line),
//! the `password` datatype and `decrypt` as ManageIQ's engine has them,
//! masking in traces, logs, `--json` and API answers, and `automate
//! password encrypt|decrypt`.

use automate_engine::{AttrValue, Engine, EngineError, Workspace};
use automate_password::V2Key;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::common::{api_runtime, control_engine, serve_api};

/// manageiq-password's public *test* key (its `spec/support/v2_key`).
pub const SPEC_KEY_YAML: &str =
    "---\n:algorithm: aes-256-cbc\n:key: 5ysYUd3Qrjj7DDplmEJHmnrFBEPS887JwOQv0jFYq2g=\n";

/// [`SPEC_KEY_YAML`] as a key.
pub fn spec_key() -> V2Key {
    V2Key::from_yaml(
        SPEC_KEY_YAML,
        Path::new("manageiq-password spec/support/v2_key"),
    )
    .unwrap()
}

const CLEAR: &str = "s3cr3t-Pa$$";

// ------------------------------------------------------------ openssl

fn openssl() -> Option<PathBuf> {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(PathBuf::from("openssl"))
    } else {
        eprintln!("skipped: no `openssl` command on this machine");
        None
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `openssl enc -aes-256-cbc [-d] -K .. -iv .. -base64 -A` on `input`.
fn openssl_enc(decrypt: bool, key: &[u8; 32], iv: &[u8; 16], input: &[u8]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["enc", "-aes-256-cbc", "-base64", "-A", "-K"])
        .arg(hex(key))
        .arg("-iv")
        .arg(hex(iv));
    if decrypt {
        cmd.arg("-d");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    // Through openssl too, so the key file is not made with our own base64.
    let mut child = Command::new("openssl")
        .args(["base64", "-A"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

#[test]
fn openssl_made_values_decrypt_and_ours_decrypt_with_openssl() {
    if openssl().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let iv: [u8; 16] = std::array::from_fn(|i| 200 - i as u8);
    let zero = [0u8; 16];
    // ManageIQ's usual key file: no `:iv:`, so a zero IV.
    let plain_file = dir.path().join("v2_key");
    std::fs::write(
        &plain_file,
        format!("---\n:algorithm: aes-256-cbc\n:key: {}\n", b64(&key)),
    )
    .unwrap();
    // With an explicit `:iv:`.
    let iv_file = dir.path().join("v2_key_iv");
    std::fs::write(
        &iv_file,
        format!(
            "---\n:algorithm: aes-256-cbc\n:key: {}\n:iv: {}\n",
            b64(&key),
            b64(&iv)
        ),
    )
    .unwrap();
    for (file, iv) in [(&plain_file, &zero), (&iv_file, &iv)] {
        let k = V2Key::load(file).unwrap();
        for clear in [CLEAR, "x", "exactly sixteen!", "ünïcödé パスワード"] {
            let theirs = format!("v2:{{{}}}", openssl_enc(false, &key, iv, clear.as_bytes()));
            assert_eq!(k.decrypt(&theirs).unwrap(), clear, "{theirs}");
            // Byte for byte the same ciphertext (CBC under a fixed IV).
            let ours = k.encrypt(clear);
            assert_eq!(ours, theirs);
            let payload = ours
                .strip_prefix("v2:{")
                .unwrap()
                .strip_suffix('}')
                .unwrap();
            let back = openssl_enc(true, &key, iv, format!("{payload}\n").as_bytes());
            assert_eq!(back, clear);
        }
    }
}

// ------------------------------------------------------------ the engine

/// Domain `PW` with `/PW/Sec/Creds`: `password` (datatype password),
/// `user`, `shown` (`pw=${/#password}`) and `execute` (method `check`).
/// Instances: `good` (encrypted `CLEAR` under `key`), `other_key`,
/// `malformed`, `plain`, `empty` (`v2:{}`).
fn write_domain(root: &Path, key: &V2Key) {
    let dom = root.join("PW");
    let cls = dom.join("Sec/Creds.class");
    std::fs::create_dir_all(cls.join("__methods__")).unwrap();
    std::fs::write(
        dom.join("__domain__.yaml"),
        "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: PW\n    description:\n    display_name:\n    priority: 50\n    enabled: true\n    tenant_id: 1\n    source: user\n    top_level_namespace:\n",
    )
    .unwrap();
    std::fs::write(
        dom.join("Sec/__namespace__.yaml"),
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Sec\n    description:\n    display_name:\n    priority:\n    enabled:\n",
    )
    .unwrap();
    let field = |aetype: &str, name: &str, datatype: &str, priority: u32, default: &str| {
        format!(
            "  - field:\n      aetype: {aetype}\n      name: {name}\n      display_name:\n      datatype: {datatype}\n      priority: {priority}\n      owner:\n      default_value: {default}\n      substitute: true\n      message: create\n      visibility:\n      collect:\n      scope:\n      description:\n      condition:\n      on_entry:\n      on_exit:\n      on_error:\n      max_retries:\n      max_time:\n"
        )
    };
    let class = format!(
        "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    display_name:\n    name: Creds\n    type:\n    inherits:\n    visibility:\n    owner:\n  schema:\n{}{}{}{}",
        field("attribute", "password", "password", 1, ""),
        field("attribute", "user", "string", 2, "admin"),
        field("attribute", "shown", "string", 3, "'pw=${/#password}'"),
        field("method", "execute", "string", 4, "check"),
    );
    std::fs::write(cls.join("__class__.yaml"), class).unwrap();
    let other = V2Key::from_bytes([9; 32], None, "other");
    for (name, value) in [
        ("good", key.encrypt(CLEAR)),
        ("other_key", other.encrypt(CLEAR)),
        ("malformed", "v2:{not*base64!}".to_string()),
        ("plain", CLEAR.to_string()),
        ("empty", "v2:{}".to_string()),
    ] {
        std::fs::write(
            cls.join(format!("{name}.yaml")),
            format!(
                "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    display_name:\n    name: {name}\n    inherits:\n    description:\n  fields:\n  - password:\n      value: \"{value}\"\n"
            ),
        )
        .unwrap();
    }
    std::fs::write(
        cls.join("__methods__/check.yaml"),
        "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: check\n    display_name:\n    description:\n    scope: instance\n    language: rhai\n    location: inline\n    options: {}\n  inputs: []\n",
    )
    .unwrap();
    let expected_enc = key.encrypt(CLEAR);
    std::fs::write(
        cls.join("__methods__/check.rhai"),
        r#"let clear = evm.root.decrypt("password");
evm.root["decrypted_ok"] = clear == "s3cr3t-Pa$$" || clear == "";
evm.root["seen"] = evm.root["password"];
evm.root["is_encrypted"] = evm.root.encrypted("password");
evm.root["user_encrypted"] = evm.root.encrypted("user");
evm.root["user_decrypted"] = evm.root.decrypt("user");
evm.root["enc_ok"] = evm.root.encrypted_string("password") == "EXPECTED";
evm.root["attrs_password"] = evm.root.attributes["password"];
evm.log("info", "connecting as " + evm.root["user"] + " with " + evm.root.encrypted_string("password"));
"#
        .replace("EXPECTED", &expected_enc),
    )
    .unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    key_root: PathBuf,
    key: V2Key,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key_root = dir.path().join("certs");
    std::fs::create_dir_all(&key_root).unwrap();
    std::fs::write(key_root.join("v2_key"), SPEC_KEY_YAML).unwrap();
    let key = V2Key::load(&key_root.join("v2_key")).unwrap();
    let root = dir.path().join("ds");
    write_domain(&root, &key);
    Fixture {
        _dir: dir,
        root,
        key_root,
        key,
    }
}

fn engine(f: &Fixture, key: Option<V2Key>) -> (Engine, Arc<automate_methods::RhaiRunner>) {
    let store = automate_vmdb::MemoryStore::new();
    let (mut engine, runner) = control_engine(&f.root, Arc::new(store));
    engine.options.emit_tracing = false;
    (engine.with_password_key(key.map(Arc::new)), runner)
}

fn attr<'w>(ws: &'w Workspace, name: &str) -> &'w AttrValue {
    ws.root_attr(name)
        .unwrap_or_else(|| panic!("no attribute {name}"))
}

fn trace_text(ws: &Workspace) -> String {
    ws.trace_lines().join("\n")
}

#[test]
fn password_fields_decrypt_and_stay_masked_as_in_manageiq() {
    let f = fixture();
    let (engine, _runner) = engine(&f, Some(f.key.clone()));
    let ws = engine.instantiate("/PW/Sec/Creds/good", &[]).unwrap();
    // MiqAePassword: the clear text is held, `to_s` masks it.
    assert_eq!(attr(&ws, "password"), &AttrValue::Password(CLEAR.into()));
    assert_eq!(attr(&ws, "password").to_text(), "********");
    // Substitution shows the mask.
    assert_eq!(attr(&ws, "shown"), &AttrValue::str("pw=********"));
    // `decrypt(k)` gives the clear text; `[k]` and `attributes` the mask.
    assert_eq!(attr(&ws, "decrypted_ok"), &AttrValue::Bool(true));
    assert_eq!(attr(&ws, "seen"), &AttrValue::str("********"));
    assert_eq!(attr(&ws, "attrs_password"), &AttrValue::str("********"));
    // `encrypted?(k)`, `encrypted_string(k)`; `decrypt` of another
    // attribute is its value (`decrypt_if_password`).
    assert_eq!(attr(&ws, "is_encrypted"), &AttrValue::Bool(true));
    assert_eq!(attr(&ws, "user_encrypted"), &AttrValue::Bool(false));
    assert_eq!(attr(&ws, "user_decrypted"), &AttrValue::str("admin"));
    assert_eq!(attr(&ws, "enc_ok"), &AttrValue::Bool(true));
    // The method's log line carried `v2:{...}`: masked, as `$evm.log`.
    let trace = trace_text(&ws);
    assert!(
        trace.contains("<AEMethod check> connecting as admin with ********"),
        "{trace}"
    );
    assert!(!trace.contains(CLEAR) && !trace.contains("v2:{"), "{trace}");
    // `--json`'s document.
    let doc = ws.to_json("/PW/Sec/Creds/good", None).to_string();
    assert!(doc.contains("\"password\":\"********\""), "{doc}");
    assert!(!doc.contains(CLEAR) && !doc.contains("v2:{"), "{doc}");
    // Debug (panics, `{:?}` in logs) masks too.
    assert!(!format!("{:?}", ws.root_attr("password")).contains(CLEAR));
    // `v2:{}` is the empty password.
    let ws = engine.instantiate("/PW/Sec/Creds/empty", &[]).unwrap();
    assert_eq!(attr(&ws, "password"), &AttrValue::Password(String::new()));
}

#[test]
fn a_password_that_does_not_decrypt_is_an_error_naming_the_field() {
    let f = fixture();
    let (engine, _runner) = engine(&f, Some(f.key.clone()));
    let fails = |instance: &str| -> String {
        let err = engine
            .instantiate(&format!("/PW/Sec/Creds/{instance}"), &[])
            .unwrap_err();
        assert!(matches!(err, EngineError::Password(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "password field [password] of [/PW/Sec/Creds/{instance}]: "
            )),
            "{text}"
        );
        assert!(!text.contains(CLEAR), "{text}");
        text
    };
    assert!(fails("other_key").contains("cannot decrypt encrypted string: bad padding"));
    assert!(fails("malformed").contains("not base64"));
    // ManageIQ: `MiqAePassword.decrypt` of clear text raises.
    assert!(fails("plain").contains("cannot decrypt plaintext string"));
    // Without a key: said so, naming KEY_ROOT and password.key_file.
    let (keyless, _runner) = engine_keyless(&f);
    let err = keyless
        .instantiate("/PW/Sec/Creds/good", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("password field [password]"), "{err}");
    assert!(
        err.contains("KEY_ROOT") && err.contains("password.key_file"),
        "{err}"
    );
    // A typed query arg converts (and fails) the same way.
    let err = engine
        .instantiate("/PW/Sec/Creds/good?password::extra=nope", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("password field [extra] of [/PW/Sec/Creds/good]"),
        "{err}"
    );
}

fn engine_keyless(f: &Fixture) -> (Engine, Arc<automate_methods::RhaiRunner>) {
    engine(f, None)
}

// ------------------------------------------------------------ the binary

fn automate(f: &Fixture, db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_automate"));
    cmd.arg("--datastore")
        .arg(&f.root)
        .arg("--db")
        .arg(db)
        .env("KEY_ROOT", &f.key_root)
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_API_TOKEN")
        .env_remove("AUTOMATE_SERVER");
    cmd
}

#[test]
fn instantiate_and_method_output_mask_passwords() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("automate.redb");
    for args in [
        vec!["instantiate", "--json", "/PW/Sec/Creds/good"],
        vec!["instantiate", "/PW/Sec/Creds/good"],
    ] {
        let out = automate(&f, &db).args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        assert!(stdout.contains("********"), "{stdout}");
        for leak in [CLEAR, "v2:{"] {
            assert!(
                !stdout.contains(leak) && !stderr.contains(leak),
                "{args:?} leaks {leak}: {stdout}{stderr}"
            );
        }
        if args[1] == "--json" {
            let doc: Value = serde_json::from_str(&stdout).unwrap();
            let root = &doc["objects"][0]["attributes"];
            assert_eq!(root["password"], "********", "{doc}");
            assert_eq!(root["decrypted_ok"], true, "{doc}");
        }
    }
    // Without KEY_ROOT: exit 1, the field named, nothing leaked.
    let out = automate(&f, &db)
        .env_remove("KEY_ROOT")
        .args(["instantiate", "/PW/Sec/Creds/good"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("password field [password] of [/PW/Sec/Creds/good]"),
        "{stderr}"
    );
    // An error quoting an encrypted value shows it masked.
    let out = automate(&f, &db)
        .args([
            "instantiate",
            "/PW/Sec/Creds/good?password::extra=v2:{AAAA}",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("v2:{AAAA}") && stderr.contains("********"),
        "{stderr}"
    );
}

#[test]
fn password_command_encrypts_and_decrypts() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("automate.redb");
    let run = |args: &[&str], stdin: Option<&str>, envs: bool| {
        let mut cmd = automate(&f, &db);
        if !envs {
            cmd.env_remove("KEY_ROOT");
        }
        let mut child = cmd
            .arg("password")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    };
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).trim_end().to_string();
    // manageiq-password's own vector, under its test key (KEY_ROOT).
    let out = run(&["encrypt", "test"], None, true);
    assert!(out.status.success());
    assert_eq!(text(&out), "v2:{DUb5th63TM+zIB6RhnTtVg==}");
    let out = run(&["decrypt"], Some("v2:{DUb5th63TM+zIB6RhnTtVg==}\n"), true);
    assert_eq!(text(&out), "test");
    // From stdin, one trailing newline dropped; --key instead of KEY_ROOT.
    let key_file = f.key_root.join("v2_key");
    let key_arg = key_file.to_str().unwrap();
    let out = run(
        &["encrypt", "--key", key_arg],
        Some(&format!("{CLEAR}\n")),
        false,
    );
    assert_eq!(text(&out), f.key.encrypt(CLEAR));
    // `--config`'s password.key_file, relative to the config file.
    let config = dir.path().join("automate.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n- name: p\n  type: RHEVM\n  hostname: h\n  userid: u\n  catcher:\n    kind: jsonl\n    path: events.jsonl\npassword:\n  key_file: {}\n",
            key_file.display()
        ),
    )
    .unwrap();
    let out = run(
        &[
            "decrypt",
            "--config",
            config.to_str().unwrap(),
            &f.key.encrypt(CLEAR),
        ],
        None,
        false,
    );
    assert_eq!(
        text(&out),
        CLEAR,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No key anywhere, a wrong key, a plain value: exit 1, clear errors.
    let out = run(&["decrypt", "v2:{DUb5th63TM+zIB6RhnTtVg==}"], None, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no v2 key"));
    let out = run(&["decrypt", "plain"], None, true);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot decrypt plaintext string"));
    // `password key` writes a new key that round-trips, and never overwrites.
    let new_key = dir.path().join("new_v2_key");
    let out = run(&["key", new_key.to_str().unwrap()], None, false);
    assert!(out.status.success());
    let k = V2Key::load(&new_key).unwrap();
    assert_eq!(k.decrypt(&k.encrypt(CLEAR)).unwrap(), CLEAR);
    let out = run(&["key", new_key.to_str().unwrap()], None, false);
    assert_eq!(out.status.code(), Some(1));
}

// ------------------------------------------------------------ the API

#[test]
fn api_resolve_masks_passwords() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(automate_redb::RedbStore::open(dir.path().join("a.redb")).unwrap());
    let (ds, problems) = automate_datastore::Datastore::open(&f.root);
    assert!(problems.is_empty(), "{problems:?}");
    let (engine, _runner) = automate_control::with_control(
        Engine::new(Arc::new(ds))
            .with_store(store.clone())
            .with_password_key(Some(Arc::new(f.key.clone()))),
    );
    let rt = api_runtime();
    let stop = tokio_util::sync::CancellationToken::new();
    let addr = serve_api(&rt, "tok", engine, store, &stop);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(&format!("http://{addr}/api/automate/PW/Sec/Creds/good"))
        .header("X-Auth-Token", "tok")
        .header("Content-Type", "application/json")
        .send(br#"{"action":"resolve"}"#.as_slice())
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap();
    stop.cancel();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], Value::Null, "{v}");
    assert_eq!(v["objects"][0]["attributes"]["password"], "********", "{v}");
    assert_eq!(v["objects"][0]["attributes"]["decrypted_ok"], true, "{v}");
    assert!(!body.contains(CLEAR) && !body.contains("v2:{"), "{body}");
}

// ------------------------------------------------- saved workspaces

/// The retries datastore's machine (`/SM/Counter`: retries until its third
/// pass) delivered with a password among its state vars (ManageIQ's saved
/// form, `password::v2:{...}`), on `schedule`: the retry saved holds the
/// password encrypted, never in clear; the retried workspace holds it
/// decrypted. Returns the first retry's stored payload (its text).
fn retry_keeps_a_password_encrypted(
    engine: &Engine,
    schedule: &dyn automate_vmdb::Schedule,
    key: &V2Key,
) -> String {
    use automate_engine::deliver::{deliver, run_due, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
    let state = format!(
        r#"{{"pw":"password::{}","user":"ada"}}"#,
        key.encrypt(CLEAR)
    );
    let d = Delivery {
        uri: "/SM/Counter/default?machine=1".into(),
        attrs: vec![("ae_state_data".into(), state)],
        object: String::new(),
        deliveries: 0,
    };
    let first = deliver(engine, schedule, &d, DEFAULT_MAX_DELIVERIES).unwrap();
    let Outcome::Retry {
        id: Some(id),
        ref workspace,
        ..
    } = first
    else {
        panic!("not a retry: {first:?}");
    };
    assert_eq!(
        workspace.state_vars.get("pw"),
        Some(&AttrValue::Password(CLEAR.into()))
    );
    let saved = schedule.get(id).unwrap().expect("the retry is stored");
    let text = saved.item.payload.to_string();
    assert!(!text.contains(CLEAR), "{text}");
    assert!(text.contains("password::v2:{"), "{text}");
    // The retried passes see the password decrypted.
    let mut seen = Vec::new();
    for _ in 0..200 {
        for o in run_due(engine, schedule, 16, DEFAULT_MAX_DELIVERIES).unwrap() {
            seen.push(o.workspace().state_vars.get("pw").cloned());
        }
        if schedule.is_empty().unwrap() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        seen,
        vec![Some(AttrValue::Password(CLEAR.into())); 2],
        "two retried passes"
    );
    text
}

fn retries_engine(store: Arc<dyn automate_vmdb::ObjectStore>, key: Option<V2Key>) -> Engine {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/retries"));
    let (mut engine, _runner) = control_engine(&root, store);
    engine.options.emit_tracing = false;
    engine.with_password_key(key.map(Arc::new))
}

#[test]
fn a_retry_saves_its_passwords_encrypted_in_the_redb_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ws.redb");
    let store = Arc::new(automate_redb::RedbStore::open(&path).unwrap());
    let key = spec_key();
    let engine = retries_engine(store.clone(), Some(key.clone()));
    let schedule = store.schedule();
    retry_keeps_a_password_encrypted(&engine, &schedule, &key);
    drop((engine, schedule, store));
    let raw = std::fs::read(&path).unwrap();
    assert!(
        !raw.windows(CLEAR.len()).any(|w| w == CLEAR.as_bytes()),
        "the clear password is in the file"
    );
}

#[test]
fn a_retry_saves_its_passwords_encrypted_in_postgres() {
    let Some(db) = automate_postgres::testing::TestDb::new("saved_passwords") else {
        return;
    };
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    let key = spec_key();
    let engine = retries_engine(store.clone(), Some(key.clone()));
    let schedule = automate_vmdb::served::ServedStore::scheduled_work(&*store);
    retry_keeps_a_password_encrypted(&engine, schedule.as_ref(), &key);
}

/// Without a v2 key the saved state can be neither decrypted nor
/// encrypted: the password reads as the mask, is saved as the mask (never
/// in clear), and the retry says so.
#[test]
fn without_a_key_a_retry_saves_the_mask_and_warns() {
    use automate_engine::deliver::{deliver, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(automate_redb::RedbStore::open(dir.path().join("k.redb")).unwrap());
    let keyless = retries_engine(store.clone(), None);
    let schedule = store.schedule();
    let state = format!(r#"{{"pw":"password::{}"}}"#, spec_key().encrypt(CLEAR));
    let d = Delivery {
        uri: "/SM/Counter/default?machine=2".into(),
        attrs: vec![("ae_state_data".into(), state)],
        object: String::new(),
        deliveries: 0,
    };
    let first = deliver(&keyless, &schedule, &d, DEFAULT_MAX_DELIVERIES).unwrap();
    let Outcome::Retry {
        id: Some(id),
        workspace,
        ..
    } = first
    else {
        panic!("not a retry");
    };
    assert_eq!(
        workspace.state_vars.get("pw"),
        Some(&AttrValue::Password("********".into()))
    );
    let trace = workspace.trace_lines().join("\n");
    assert!(
        trace.contains("Saved password ae_state_data.pw: "),
        "{trace}"
    );
    assert!(
        trace.contains("No v2 key configured (password.key_file or $KEY_ROOT/v2_key): password ae_state_data.pw is saved with the retry as ********"),
        "{trace}"
    );
    let stored = schedule.get(id).unwrap().unwrap().item.payload.to_string();
    assert!(
        !stored.contains(CLEAR) && !stored.contains("password::"),
        "{stored}"
    );
    let mut ws = keyless
        .instantiate("/SM/Counter/default?machine=3", &[])
        .unwrap();
    ws.state_vars
        .insert("pw".into(), AttrValue::Password(CLEAR.into()));
    let (args, masked) = ws.retry_args_with(None);
    assert_eq!(masked, ["ae_state_data.pw"]);
    let data = &args.iter().find(|(k, _)| k == "ae_state_data").unwrap().1;
    assert!(
        !data.contains(CLEAR) && data.contains("\"********\""),
        "{data}"
    );
}
