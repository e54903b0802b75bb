//! What recording one delivery costs on its own (docs/performance.md,
//! "Session 14: recording"): the digest and the stored text of a real
//! record, as written now and as written before session 14 (SHA-256 over
//! a normalized copy built line by line with `format!`, the record as
//! JSON text that the row codec escapes again), in ns per delivery and
//! bytes per row.
//!
//!   automate events show ID --trace --json > record.json
//!   cargo run --release -p automate-events --example record_cost -- record.json

use automate_engine::{Level, TraceLine};
use automate_events::trace::{self, Outcome, Record};
use automate_vmdb::{write_attr_value, write_str};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::Instant;

/// The digest as session 13 computed it.
fn digest_v1(outcome: &Outcome, lines: &[TraceLine]) -> String {
    let mut h = Sha256::new();
    let mut buf = String::with_capacity(256);
    let mut feed = |h: &mut Sha256, s: &str| {
        buf.clear();
        trace::normalize(s, &mut buf);
        h.update(buf.as_bytes());
        h.update(b"\n");
    };
    for e in &outcome.generic_events {
        feed(&mut h, &format!("event {e}"));
    }
    for p in &outcome.policies {
        feed(
            &mut h,
            &format!("policy {} {} {}", p.policy, p.event, p.condition),
        );
    }
    for a in &outcome.alerts {
        feed(&mut h, &format!("alert {} {}", a.alert, a.event));
    }
    for m in &outcome.methods {
        let rc = m.rc.as_deref().unwrap_or("");
        feed(&mut h, &format!("method {} {} {rc}", m.location, m.method));
    }
    for o in &outcome.objects {
        let how = if o.created { "created" } else { "updated" };
        feed(
            &mut h,
            &format!("object {} {how} {}", o.class, o.attributes.join(",")),
        );
    }
    feed(
        &mut h,
        &format!("discarded {} retry {}", outcome.discarded, outcome.retry),
    );
    for e in &outcome.errors {
        feed(&mut h, &format!("error {e}"));
    }
    for l in lines {
        feed(&mut h, &l.text);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: record_cost RECORD.json (automate events show ID --trace --json)")?;
    let record: Record = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let lines: Vec<TraceLine> = record
        .trace
        .iter()
        .map(|t| TraceLine {
            depth: 0,
            level: Level::Info,
            text: t.clone(),
        })
        .collect();
    assert_eq!(
        digest_v1(&record.outcome, &lines),
        trace::digest(&record.outcome, &lines)
    );
    let n = 20_000;
    let mut row = Vec::with_capacity(16 << 10);
    // Before: JSON text, escaped again by the row codec.
    let old_digest = per_op(n, || {
        black_box(digest_v1(black_box(&record.outcome), black_box(&lines)));
    });
    let old_store = per_op(n, || {
        let text = serde_json::to_string(black_box(&record)).unwrap_or_default();
        row.clear();
        write_str(&mut row, &text);
        black_box(&row);
    });
    let text = serde_json::to_string(&record)?;
    row.clear();
    write_str(&mut row, &text);
    let old_bytes = row.len();
    // Now.
    let new_digest = per_op(n, || {
        black_box(trace::digest(black_box(&record.outcome), black_box(&lines)));
    });
    let new_store = per_op(n, || {
        let v = black_box(&record).to_attr();
        row.clear();
        write_attr_value(&mut row, &v);
        black_box(&row);
    });
    let v = record.to_attr();
    row.clear();
    write_attr_value(&mut row, &v);
    let new_bytes = row.len();
    let trace_bytes: usize = record.trace.iter().map(|l| l.len() + 1).sum();
    println!(
        "{} trace lines, {trace_bytes} bytes of trace text",
        record.trace.len()
    );
    println!(
        "before: digest {old_digest:.0} ns, stored text {old_store:.0} ns, {old_bytes} bytes in the row"
    );
    println!(
        "now:    digest {new_digest:.0} ns, stored text {new_store:.0} ns, {new_bytes} bytes in the row"
    );
    Ok(())
}
