//! The retry runner: a thread that delivers the state-machine retries that
//! have come due ([`run_due`]) until the pipeline stops it.

use super::stats::{bump, Counters};
use automate_engine::deliver::{run_due, Outcome, DEFAULT_MAX_DELIVERIES};
use automate_engine::Engine;
use automate_vmdb::Schedule;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often due state-machine retries are looked for.
const RETRY_POLL: Duration = Duration::from_millis(250);

/// Runs due retries of `schedule` on `engine` until `stop` is set, counting
/// them (and their errors) in `counters`.
pub(super) fn retry_loop(
    engine: &Engine,
    schedule: &dyn Schedule,
    counters: &Counters,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        match run_due(engine, schedule, 16, DEFAULT_MAX_DELIVERIES) {
            Ok(outcomes) if !outcomes.is_empty() => {
                for o in &outcomes {
                    bump(&counters.retries, 1);
                    if matches!(o, Outcome::Error { .. } | Outcome::GaveUp(_)) {
                        bump(&counters.errors, 1);
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(target: "evm", "MIQ(MiqAeEngine.deliver) running due retries: {e}")
            }
        }
        std::thread::sleep(RETRY_POLL);
    }
}
