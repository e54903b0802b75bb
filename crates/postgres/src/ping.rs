//! The health watch's question to PostgreSQL ("do you answer?") on a
//! connection of its own ([`PgPing`]), never one of the pool's: when the
//! workers hold every pooled connection (a busy node) a pooled ping would
//! wait for one and report PostgreSQL away, and the node would stop
//! claiming for nothing (the health flapping under load).

use crate::{Pg, PgError};
use std::sync::Arc;
use std::time::Duration;

/// Asks PostgreSQL `SELECT 1` on a dedicated connection, made on the first
/// ping and again after a failed one.
pub struct PgPing {
    pg: Arc<Pg>,
    client: Option<tokio_postgres::Client>,
    limit: Duration,
}

impl std::fmt::Debug for PgPing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPing")
            .field("pg", &self.pg)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

impl PgPing {
    /// A ping of `pg`'s server that answers within `limit` (connecting
    /// included).
    pub fn new(pg: Arc<Pg>, limit: Duration) -> PgPing {
        PgPing {
            pg,
            client: None,
            limit,
        }
    }

    /// `SELECT 1` on the ping's own connection (made when there is none or
    /// it was closed), within the limit; a failure drops the connection.
    /// Blocks: call it off the async threads.
    pub fn ping(&mut self) -> Result<(), String> {
        let client = self.client.take().filter(|c| !c.is_closed());
        let pg = self.pg.clone();
        let limit = self.limit;
        let asked = self
            .pg
            .block_within(limit + Duration::from_secs(1), async move {
                let asked = async {
                    let client = match client {
                        Some(c) => c,
                        None => {
                            let (c, connection) = pg.dedicated().await?;
                            tokio::spawn(async move {
                                let _ = connection.await;
                            });
                            c
                        }
                    };
                    client.simple_query("SELECT 1").await?;
                    Ok::<_, PgError>(client)
                };
                match tokio::time::timeout(limit, asked).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer in {} s", limit.as_secs_f64())),
                }
            });
        match asked {
            Ok(Ok(client)) => {
                self.client = Some(client);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        }
    }
}
