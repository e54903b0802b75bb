//! `GET /metrics` (`docs/operations.md`, Metrics): the pipeline of
//! `automate run`'s composition root on a real redb store, with the REST
//! API on 127.0.0.1, fed over the http catcher; and the `automate api`
//! binary with `api.metrics_public`. Each scrape is checked against the
//! exposition format's grammar (OpenMetrics text) by [`parse`], then its
//! values against what was sent.

use crate::common::process::free_port;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TOKEN: &str = "metrics-token";

fn datastore_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/datastore"))
}

/// One exchange: status, `Content-Type` and body.
fn exchange(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let result = match body {
        None => {
            let mut req = if method == "GET" {
                agent.get(url)
            } else {
                panic!("{method} without a body")
            };
            if let Some(t) = token {
                req = req.header("X-Auth-Token", t);
            }
            req.call()
        }
        Some(b) => {
            let mut req = agent.post(url).header("Content-Type", "application/json");
            if let Some(t) = token {
                req = req.header("X-Auth-Token", t);
            }
            req.send(b.as_bytes())
        }
    };
    let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, ctype, text)
}

/// One sample of a scrape.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape's samples, read by the exposition format's grammar: `# HELP`,
/// `# TYPE`, `# UNIT` lines naming a family, samples of the family whose
/// `TYPE` came last (with the suffixes its type allows), label values
/// with only `\\`, `\"` and `\n` escaped, and `# EOF` last. Panics naming
/// the line that breaks it.
fn parse(text: &str) -> Vec<Sample> {
    fn metric_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn label_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }
    fn number(s: &str) -> Option<f64> {
        match s {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            s => s.parse().ok(),
        }
    }
    /// `{k="v",...}` at the start of `s`: the labels and the rest.
    fn labels(s: &str, line: &str) -> (BTreeMap<String, String>, String) {
        let mut out = BTreeMap::new();
        let mut chars = s.chars().peekable();
        assert_eq!(chars.next(), Some('{'), "{line}");
        if chars.peek() == Some(&'}') {
            chars.next();
            return (out, chars.collect());
        }
        loop {
            let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert!(label_name(&name), "label name {name:?} in {line}");
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("escape \\{other:?} in {line}"),
                    },
                    Some('"') => break,
                    Some('\n') | None => panic!("unterminated label value in {line}"),
                    Some(c) => value.push(c),
                }
            }
            assert!(out.insert(name, value).is_none(), "label twice in {line}");
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                other => panic!("{other:?} after a label in {line}"),
            }
        }
        (out, chars.collect())
    }

    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the scrape ends in # EOF");
    assert!(text.ends_with('\n'));
    let mut family: Option<(String, String)> = None;
    let mut samples = Vec::new();
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, arg) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("no name: {line}"));
            assert!(metric_name(name), "{line}");
            match (kw, arg) {
                (Some("HELP"), Some(help)) => {
                    // An escaped string: no bare `"`, only `\\`, `\n`, `\"`.
                    let mut chars = help.chars();
                    while let Some(c) = chars.next() {
                        assert!(c != '"', "a bare quote in {line}");
                        if c == '\\' {
                            assert!(matches!(chars.next(), Some('\\' | 'n' | '"')), "{line}");
                        }
                    }
                }
                (Some("TYPE"), Some(t)) => {
                    assert!(
                        ["counter", "gauge", "histogram", "info", "unknown"].contains(&t),
                        "{line}"
                    );
                    family = Some((name.to_string(), t.to_string()));
                }
                (Some("UNIT"), Some(u)) => {
                    assert!(name.ends_with(&format!("_{u}")), "{line}")
                }
                _ => panic!("not a descriptor: {line}"),
            }
            continue;
        }
        let end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..end];
        assert!(metric_name(name), "{line}");
        let (labels, rest) = if line[end..].starts_with('{') {
            labels(&line[end..], line)
        } else {
            (BTreeMap::new(), line[end..].to_string())
        };
        let mut fields = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value: {line}"))
            .split(' ');
        let value = fields
            .next()
            .and_then(number)
            .unwrap_or_else(|| panic!("not a number: {line}"));
        assert!(fields.next().is_none_or(|t| number(t).is_some()), "{line}");
        let (fam, kind) = family
            .as_ref()
            .unwrap_or_else(|| panic!("a sample before its TYPE: {line}"));
        let suffix = name
            .strip_prefix(fam.as_str())
            .unwrap_or_else(|| panic!("{name} is not of family {fam}"));
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        assert!(allowed.contains(&suffix), "{name} in a {kind}: {line}");
        if suffix == "_bucket" {
            assert!(labels.contains_key("le"), "a bucket without le: {line}");
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The value of the sample `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
}

/// The sum of every sample `name`.
fn total(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// An http-catcher event of `provider`.
fn event(provider: &str, event_type: &str, second: u32, vm: &str) -> serde_json::Value {
    json!({"provider": provider, "event": {"event_type": event_type,
        "timestamp": format!("2026-01-01T00:00:{second:02}Z"),
        "vm_ems_ref": format!("/api/vms/{vm}"), "vm_name": vm}})
}

#[test]
fn a_scrape_counts_the_events_sent_by_provider_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "providers:\n\
         \x20 - {{name: rhevm01, type: RHEVM, hostname: r, userid: u, catcher: {{kind: http}}, filter: [VM_FILTERED]}}\n\
         \x20 - {{name: vc01, type: VMware, hostname: v, userid: u, catcher: {{kind: http}}}}\n\
         workers: 2\napi: {{listen: '127.0.0.1:{port}', token: {TOKEN}}}\n"
    );
    let cfg = automate_events::config::Config::from_yaml(&yaml, "metrics.yaml").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pipeline = rt
        .block_on(automate::cli::compose::start(
            &cfg,
            &datastore_dir(),
            &dir.path().join("metrics.redb"),
        ))
        .unwrap()
        .pipeline;
    let base = format!("http://127.0.0.1:{port}");
    let events_url = format!("{base}/api/events");
    let metrics_url = format!("{base}/metrics");

    // rhevm01: 3 USER_RUN_VM and one sent twice (a duplicate: handled,
    // not delivered again), 2 VM_DOWN, one filtered type; vc01: 2.
    let rhev = json!([
        event("rhevm01", "USER_RUN_VM", 1, "vm-1"),
        event("rhevm01", "USER_RUN_VM", 2, "vm-2"),
        event("rhevm01", "USER_RUN_VM", 3, "vm-3"),
        event("rhevm01", "USER_RUN_VM", 1, "vm-1"),
        event("rhevm01", "VM_DOWN", 4, "vm-1"),
        event("rhevm01", "VM_DOWN", 5, "vm-2"),
        event("rhevm01", "VM_FILTERED", 6, "vm-3"),
    ])
    .to_string();
    let vc = json!([
        event("vc01", "VmPoweredOnEvent", 7, "vm-10"),
        event("vc01", "VmPoweredOnEvent", 8, "vm-11"),
    ])
    .to_string();
    let posted = [
        exchange("POST", &events_url, Some(TOKEN), Some(&rhev)),
        exchange("POST", &events_url, Some(TOKEN), Some(&vc)),
    ];
    let wrong_token = exchange("POST", &events_url, Some("wrong"), Some(&vc));
    let not_found = exchange(
        "GET",
        &format!("{base}/api/nothing_here"),
        Some(TOKEN),
        None,
    );
    let anonymous = exchange("GET", &metrics_url, None, None);

    // Scrape until the workers have handled all 8 and the queue is empty
    // (a poll with a deadline).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (scrape, ctype, text) = loop {
        let (status, ctype, text) = exchange("GET", &metrics_url, Some(TOKEN), None);
        assert_eq!(status, 200, "{text}");
        let samples = parse(&text);
        let handled = total(&samples, "automate_events_handled_total");
        // The last batch is acked (leaves the queue) once it is on disk.
        let queued = value(&samples, "automate_queue_depth", &[]);
        if (handled >= 8.0 && queued == Some(0.0)) || Instant::now() > deadline {
            break (samples, ctype, text);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    rt.block_on(pipeline.shutdown());

    for (status, _, body) in &posted {
        assert_eq!(*status, 202, "{body}");
    }
    assert_eq!(wrong_token.0, 401, "{}", wrong_token.2);
    assert_eq!(not_found.0, 404, "{}", not_found.2);
    assert_eq!(anonymous.0, 401, "{}", anonymous.2);
    assert!(anonymous.2.contains("unauthorized"), "{}", anonymous.2);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");

    let s = &scrape;
    let by = |name: &str, provider: &str, t: &str| {
        value(s, name, &[("provider", provider), ("type", t)])
    };
    for (name, n) in [
        ("automate_events_caught_total", 1.0),
        ("automate_events_handled_total", 1.0),
        ("automate_events_failed_total", 0.0),
    ] {
        assert_eq!(
            by(name, "rhevm01", "USER_RUN_VM"),
            Some(4.0 * n),
            "{name}\n{text}"
        );
        assert_eq!(
            by(name, "rhevm01", "VM_DOWN"),
            Some(2.0 * n),
            "{name}\n{text}"
        );
        assert_eq!(
            by(name, "vc01", "VmPoweredOnEvent"),
            Some(2.0 * n),
            "{name}\n{text}"
        );
        assert_eq!(by(name, "rhevm01", "VM_FILTERED"), None, "filtered: {text}");
        assert_eq!(total(s, name), 8.0 * n, "{name}\n{text}");
    }

    // Every event but the duplicate was delivered: one instantiation each.
    let count = value(s, "automate_instantiation_seconds_count", &[]);
    assert_eq!(count, Some(7.0), "{text}");
    let inf = value(
        s,
        "automate_instantiation_seconds_bucket",
        &[("le", "+Inf")],
    );
    assert_eq!(inf, count, "{text}");
    let buckets: Vec<f64> = s
        .iter()
        .filter(|x| x.name == "automate_instantiation_seconds_bucket")
        .map(|x| x.value)
        .collect();
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {text}"
    );
    assert!(value(s, "automate_instantiation_seconds_sum", &[]).is_some_and(|v| v > 0.0));

    // Batch commits: at least one of each kind, at most one per event.
    for kind in ["queue", "handled"] {
        let n =
            value(s, "automate_batch_commit_seconds_count", &[("kind", kind)]).unwrap_or_default();
        assert!((1.0..=8.0).contains(&n), "{kind}: {n}\n{text}");
        let inf = value(
            s,
            "automate_batch_commit_seconds_bucket",
            &[("kind", kind), ("le", "+Inf")],
        );
        assert_eq!(inf, Some(n), "{text}");
    }

    assert_eq!(value(s, "automate_queue_depth", &[]), Some(0.0), "{text}");
    let scheduled = value(s, "automate_retries_scheduled", &[]).expect("retries_scheduled");
    let due = value(s, "automate_retries_due", &[]).expect("retries_due");
    assert!(due <= scheduled, "{text}");

    // API requests by route template and status.
    let api = |method: &str, route: &str, status: &str| {
        value(
            s,
            "automate_api_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(api("POST", "/api/events", "202"), Some(2.0), "{text}");
    assert_eq!(api("POST", "/api/events", "401"), Some(1.0), "{text}");
    assert_eq!(api("GET", "unmatched", "404"), Some(1.0), "{text}");
    assert_eq!(api("GET", "/metrics", "401"), Some(1.0), "{text}");
    assert!(
        !text.contains("nothing_here"),
        "raw paths are never labels: {text}"
    );

    assert_eq!(
        value(s, "automate_reloads_total", &[("outcome", "ok")]),
        Some(0.0)
    );
    assert_eq!(
        value(s, "automate_reloads_total", &[("outcome", "failed")]),
        Some(0.0)
    );
}

#[test]
fn metrics_are_public_only_when_configured() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("automate.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  - {{name: r, type: RHEVM, hostname: h, userid: u, catcher: {{kind: http}}}}\n\
             api: {{token: {TOKEN}, metrics_public: true}}\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(datastore_dir())
        .arg("--db")
        .arg(dir.path().join("api.redb"))
        .args(["api", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("automate api: listening on ")
        .and_then(|u| u.strip_suffix("/api"))
        .map(str::to_string);
    let result = base.map(|base| {
        let denied = exchange("GET", &format!("{base}/api/automate"), None, None);
        let resolved = exchange(
            "POST",
            &format!("{base}/api/automate/System/Request/HelloWorld"),
            Some(TOKEN),
            Some(r#"{"action": "resolve"}"#),
        );
        let first = exchange("GET", &format!("{base}/metrics"), None, None);
        let second = exchange("GET", &format!("{base}/metrics"), None, None);
        (denied, resolved, first, second)
    });
    let _ = child.kill();
    let _ = child.wait();
    let (denied, resolved, first, second) = result.unwrap_or_else(|| panic!("printed {line:?}"));
    assert_eq!(denied.0, 401, "the rest of the API keeps its token");
    assert_eq!(resolved.0, 200, "{}", resolved.2);
    assert_eq!(first.0, 200, "{}", first.2);
    assert_eq!(second.0, 200, "{}", second.2);
    let s = parse(&second.2);
    // `automate api`: the events queued and the retries in the store.
    assert_eq!(
        value(&s, "automate_queue_depth", &[]),
        Some(0.0),
        "{}",
        second.2
    );
    assert_eq!(value(&s, "automate_retries_scheduled", &[]), Some(0.0));
    assert_eq!(value(&s, "automate_retries_due", &[]), Some(0.0));
    // The API's resolve is an instantiation too.
    assert_eq!(
        value(&s, "automate_instantiation_seconds_count", &[]),
        Some(1.0),
        "{}",
        second.2
    );
    let api = |route: &str, status: &str| {
        value(
            &s,
            "automate_api_requests_total",
            &[("method", "GET"), ("route", route), ("status", status)],
        )
    };
    assert_eq!(api("/api/automate", "401"), Some(1.0), "{}", second.2);
    assert_eq!(
        api("/metrics", "200"),
        Some(1.0),
        "the first scrape: {}",
        second.2
    );
}

#[test]
fn the_grammar_check_refuses_what_is_not_the_exposition_format() {
    let ok = "# HELP a_b A.\n# TYPE a_b counter\na_b_total{x=\"1\\\"2\"} 3\n# EOF\n";
    assert_eq!(parse(ok)[0].labels["x"], "1\"2");
    for bad in [
        "# TYPE a counter\na_total 1\n",                     // no EOF
        "a 1\n# EOF\n",                                      // no TYPE
        "# TYPE a counter\na 1\n# EOF\n",                    // counter sample without _total
        "# TYPE a gauge\na{x=\"1\n# EOF\n",                  // unterminated
        "# TYPE a gauge\na{x=\"\\t\"} 1\n# EOF\n",           // bad escape
        "# TYPE a gauge\na one\n# EOF\n",                    // not a number
        "# TYPE a histogram\na_bucket 1\n# EOF\n",           // bucket without le
        "# HELP a say \"hi\"\n# TYPE a gauge\na 1\n# EOF\n", // a bare quote in HELP
    ] {
        let caught = std::panic::catch_unwind(|| parse(bad));
        assert!(caught.is_err(), "accepted {bad:?}");
    }
}
