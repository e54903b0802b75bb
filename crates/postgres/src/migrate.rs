//! The schema's versioned migrations, embedded in the binary and applied
//! on start ([`crate::Pg::connect`]): each once, in order, in a transaction
//! of its own, one node at a time (a transaction-scoped advisory lock), and
//! recorded in `schema_migrations`. A migration is never edited once
//! released: a change is a new one.

use crate::{Pg, PgError};

/// One migration: its version (the order), name and SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order; recorded in `schema_migrations`.
    pub version: i32,
    /// What it does, in a few words.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "objects",
        sql: include_str!("migrations/V1__objects.sql"),
    },
    Migration {
        version: 2,
        name: "scheduled",
        sql: include_str!("migrations/V2__scheduled.sql"),
    },
    Migration {
        version: 3,
        name: "datastore",
        sql: include_str!("migrations/V3__datastore.sql"),
    },
    Migration {
        version: 4,
        name: "unique provider references",
        sql: include_str!("migrations/V4__unique_refs.sql"),
    },
    Migration {
        version: 5,
        name: "unit commits",
        sql: include_str!("migrations/V5__unit_commits.sql"),
    },
    Migration {
        version: 6,
        name: "provider operations",
        sql: include_str!("migrations/V6__miq_queue.sql"),
    },
    Migration {
        version: 7,
        name: "notifications",
        sql: include_str!("migrations/V7__notifications.sql"),
    },
    Migration {
        version: 8,
        name: "state_key",
        sql: include_str!("migrations/V8__state_key.sql"),
    },
];

/// A lock key of this crate's own (`pg_advisory_xact_lock`).
const LOCK_KEY: i64 = 0x6175_746f_6d61_7465; // "automate"

/// Creates the schema when missing and applies the migrations it has not
/// had yet. Returns the versions applied now.
pub async fn apply(pg: &Pg) -> Result<Vec<i32>, PgError> {
    let mut client = pg.client().await?;
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", pg.schema()))
        .await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_on timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&m.version],
            )
            .await?;
        if done.is_some() {
            continue;
        }
        tx.batch_execute(m.sql)
            .await
            .map_err(|error| PgError::Migration {
                version: m.version,
                name: m.name,
                error,
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(target: "evm", "MIQ(PostgreSQL) schema {}: migration {} ({}) applied", pg.schema(), m.version, m.name);
        applied.push(m.version);
    }
    ensure_sequences(&mut client).await?;
    Ok(applied)
}

/// One id sequence per base class of the store
/// (`automate_vmdb::base_classes`), created when missing: a base class
/// added to the store (`Classification`, ...) needs no migration of its
/// own. Under the migrations' lock, so two nodes never race to create one.
async fn ensure_sequences(client: &mut deadpool_postgres::Object) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    let mut sql = String::new();
    for base in automate_vmdb::base_classes() {
        sql.push_str(&format!(
            "CREATE SEQUENCE IF NOT EXISTS objects_seq_{} INCREMENT BY 50;\n",
            base.to_ascii_lowercase()
        ));
    }
    tx.batch_execute(&sql).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase() {
        for w in MIGRATIONS.windows(2) {
            assert!(
                w[0].version < w[1].version,
                "{} then {}",
                w[0].version,
                w[1].version
            );
        }
    }

    #[test]
    fn migrations_apply_once_and_again_is_nothing() {
        let Some(db) = crate::testing::TestDb::new("migrate") else {
            return;
        };
        let pg = db.pg();
        let again = pg
            .block({
                let pg = pg.clone();
                async move { apply(&pg).await }
            })
            .unwrap()
            .unwrap();
        assert!(again.is_empty(), "{again:?}");
        let n: i64 = pg
            .block({
                let pg = pg.clone();
                async move {
                    let c = pg.client().await.unwrap();
                    c.query_one("SELECT count(*) FROM schema_migrations", &[])
                        .await
                        .unwrap()
                        .get(0)
                }
            })
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }
}
