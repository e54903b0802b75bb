//! Fuzz target: what users send as request and resolve parameters, through
//! the functions the API, `automate request` and the engine use. The input
//! is read as lines (lossy UTF-8): a duration (`ae_retry_interval`,
//! `max_time`), a time (`ae_state_started`, ISO 8601), then `key=value`
//! parameters. Nothing may panic; a duration that parses is within bounds
//! and can be added to now; a parameter naming a system key is refused; and
//! in the URI built from the parameters and the system's keys, every system
//! attribute has the system's value (the last one the engine reads).

#![no_main]

use automate_engine::keys::{attr_name, check_user_key, is_system_key, merge_args, SYSTEM_ATTRS};
use automate_core::time::{
    after_now, iso8601, parse_duration_secs, parse_time, parse_utc_text, MAX_DURATION_SECS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let duration = lines.next().unwrap_or_default();
    let time = lines.next().unwrap_or_default();

    if let Ok(d) = parse_duration_secs("ae_retry_interval", duration) {
        assert!(d.as_secs_f64() <= MAX_DURATION_SECS, "{duration:?} -> {d:?}");
        assert!(after_now(d).is_some(), "{duration:?} -> {d:?}");
    }
    if let Some(secs) = parse_utc_text(time) {
        assert!(secs.is_finite(), "{time:?}");
    }
    if let Some(ms) = parse_time(time) {
        // What iso8601 writes parses back to the same moment (when its
        // year is one input may have).
        let again = iso8601(ms);
        if let Some(back) = parse_time(&again) {
            assert_eq!(back, ms, "{time:?} -> {again:?}");
        }
    }

    let params: Vec<(String, String)> = lines
        .take(64)
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect();
    let map: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let refused = automate_requests::check_parameters("parameters", &map).is_err();
    assert_eq!(
        refused,
        map.keys().any(|k| is_system_key(k)),
        "{params:?}"
    );
    for (k, _) in &params {
        assert_eq!(check_user_key("attributes", k).is_err(), is_system_key(k), "{k:?}");
    }
    let _ = automate_requests::check_uri_part("instance", duration);

    // The system's keys, as a request's task delivery sets them.
    let system: Vec<(String, String)> = vec![
        ("AutomationTask::automation_task".into(), "7".into()),
        ("User::user".into(), "1".into()),
        ("object_name".into(), "hello".into()),
        ("vmdb_object_type".into(), "automation_task".into()),
    ];
    let merged = merge_args(system.clone(), params.iter().cloned());
    let uri = format!("/Test/Work/hello?{}", automate_core::uri::hash2query(&merged));
    let parsed = automate_core::uri::parse(&uri).expect("a URI built by hash2query parses");
    for (sk, sv) in &system {
        let name = attr_name(sk);
        // The engine sets attributes in query order: the last pair naming
        // the attribute wins.
        let last = parsed.query.iter().rev().find(|(k, _)| attr_name(k) == name);
        assert_eq!(
            last.map(|(_, v)| v.as_str()),
            Some(sv.as_str()),
            "{name} overridden in {uri}"
        );
    }
    for (k, _) in &parsed.query {
        let name = attr_name(k);
        if SYSTEM_ATTRS.contains(&name.as_str()) {
            assert!(
                system.iter().any(|(sk, _)| attr_name(sk) == name),
                "user key {k:?} reached the URI {uri}"
            );
        }
    }
});
