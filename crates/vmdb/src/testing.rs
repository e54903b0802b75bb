//! What the cluster backends' test helpers (`automate_postgres::testing`,
//! `automate_nats::testing`) share: whether the cluster services are
//! mandatory, and a throwaway name for each test. Here so that neither
//! backend crate depends on the other.

use std::sync::atomic::{AtomicU32, Ordering};

/// True when `.ci/run` says the cluster services must be there
/// (`AUTOMATE_TEST_CLUSTER=1`): a test that cannot reach them fails
/// instead of skipping.
pub fn cluster_mandatory() -> bool {
    std::env::var("AUTOMATE_TEST_CLUSTER").is_ok_and(|v| v == "1")
}

/// A name no other test of any process uses: `t_<name>_<pid>_<n>`, `name`
/// lowercased with every other character than an ASCII letter or digit
/// as `_`, cut to 30 characters; `n` counts the calls in this process.
/// A valid PostgreSQL schema name and NATS stream/bucket prefix.
pub fn unique_name(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t_{}_{}_{}",
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            })
            .take(30)
            .collect::<String>(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized_and_never_repeat() {
        let a = unique_name("Store: Finds-By-Key");
        let b = unique_name("Store: Finds-By-Key");
        let prefix = format!("t_store__finds_by_key_{}_", std::process::id());
        assert!(a.starts_with(&prefix), "{a}");
        assert!(b.starts_with(&prefix), "{b}");
        assert_ne!(a, b);
        let long = unique_name(&"x".repeat(50));
        assert!(
            long.starts_with(&format!("t_{}_", "x".repeat(30))),
            "{long}"
        );
    }
}
