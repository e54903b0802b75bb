//! The catchers' log lines, as ManageIQ's event catchers write them
//! (`MIQ(EventCatcherOpenstack) EMS [..] as [..] Caught event [..]`),
//! captured from `tracing`.
//!
//! In a binary of its own: `tracing` caches each callsite's interest
//! process-wide, and in the `it` binary other tests' threads (with
//! subscribers of their own, or none) could have it cached as "never"
//! before this test's subscriber was in place, dropping its INFO lines
//! under load (seen in the full suite even after rebuilding the cache).

use automate_events::catchers::{jsonl::JsonlConfig, sink_pair, CatcherConfig, Filter};
use automate_events::Provider;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

fn openstack() -> Arc<Provider> {
    Arc::new(Provider {
        name: "rhosp-cont".into(),
        kind: "OPENSTACK".into(),
        hostname: "rhosp-cont".into(),
        userid: "admin".into(),
    })
}

fn data(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/catchers")
        .join(rel)
        .display()
        .to_string()
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn catchers_log_manageiq_lines() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_target(false)
        .with_level(false)
        .without_time()
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let (tx, _rx) = sink_pair(100);
            CatcherConfig::Jsonl(JsonlConfig {
                path: data("events.jsonl"),
                follow: false,
            })
            .build(openstack(), Filter::new(["VM_DOWN"]), tx)
            .unwrap()
            .run(CancellationToken::new())
            .await
            .unwrap();
        })
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let p = "MIQ(EventCatcherOpenstack) EMS [rhosp-cont] as [admin]";
    assert_eq!(
        lines[0],
        format!("{p} Caught event [USER_STARTED_VM]"),
        "{text}"
    );
    assert_eq!(
        lines[1],
        format!("{p} Caught event [compute.instance.power_on.start]")
    );
    assert!(
        lines[2].starts_with(&format!("{p} ")) && lines[2].contains("line 4: skipping bad event"),
        "{text}"
    );
    assert_eq!(
        lines[3],
        format!("{p} Caught event [compute.instance.power_on.end]")
    );
    assert_eq!(lines[4], format!("{p} Skipping caught event [VM_DOWN]"));
    assert_eq!(lines[5], format!("{p} Caught event [USER_RUN_VM]"));
    assert!(lines[6].contains("line 8: skipping bad event"), "{text}");
    assert_eq!(lines.len(), 7, "{text}");
}
