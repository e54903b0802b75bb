//! Fuzz target: `automate.yaml` text (lossy UTF-8) through the config
//! loader and its checks (`Config::from_yaml`). Errors are fine, panics are
//! not; a config that loads has every number within its bounds and every
//! name printable, and one that is refused for its values names each
//! problem's field.

#![no_main]

use automate_events::config::{
    Config, ConfigError, MAX_BATCH, MAX_BATCH_WAIT_MS, MAX_QUEUE_CAPACITY,
    MAX_STATS_INTERVAL_SECS, MAX_WORKERS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::from_yaml(&text, "fuzz.yaml") {
        Ok(cfg) => {
            assert!(cfg.validate().is_empty());
            assert!((1..=MAX_WORKERS).contains(&cfg.workers));
            assert!((1..=MAX_QUEUE_CAPACITY).contains(&cfg.queue.capacity));
            assert!((1..=MAX_BATCH).contains(&cfg.queue.batch_max));
            assert!(cfg.queue.batch_wait_ms <= MAX_BATCH_WAIT_MS);
            assert!(cfg.log.stats_interval_secs <= MAX_STATS_INTERVAL_SECS);
            let mut names = std::collections::HashSet::new();
            for p in &cfg.providers {
                let name = &p.provider.name;
                assert!(!name.trim().is_empty() && !name.chars().any(char::is_control), "{name:?}");
                assert!(names.insert(name.trim().to_lowercase()), "{name:?} twice");
                assert!(p.catcher.check().is_empty());
            }
        }
        Err(ConfigError::Issues { issues, .. }) => {
            assert!(!issues.is_empty());
            for i in &issues {
                assert!(!i.field.is_empty() && !i.message.is_empty(), "{i:?}");
            }
        }
        Err(_) => {}
    }
});
