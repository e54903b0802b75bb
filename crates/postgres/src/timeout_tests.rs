//! Nothing waits on PostgreSQL for ever: a silent server (a proxy that
//! takes the bytes and passes nothing on) makes a call fail within its
//! bound, and the health ping answers while the pool is taken.

use crate::ping::PgPing;
use crate::testing::proxy::SilentProxy;
use crate::testing::TestDb;
use crate::{Pg, PgError};
use std::time::Duration;

fn select_one(pg: &std::sync::Arc<Pg>) -> Result<(), String> {
    let p = pg.clone();
    pg.block(async move {
        let c = p.client().await.map_err(|e| e.to_string())?;
        c.simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())
            .map(|_| ())
    })
    .map_err(|e| e.to_string())?
}

#[test]
fn a_call_to_a_silent_server_fails_within_its_bound_then_connects_afresh() {
    let Some(db) = TestDb::new("silent") else {
        return;
    };
    let proxy = SilentProxy::new(db.port()).expect("proxy");
    let pg = Pg::connect(&db.config_through(proxy.port), db.handle()).expect("through the proxy");
    select_one(&pg).expect("answers before");
    proxy.silence();
    // The pooled connection is silent: the call ends with the bound's
    // error (2 s here), not when TCP gives up (~15 min).
    let p = pg.clone();
    let silent = pg.block(async move {
        let c = p.client().await?;
        c.simple_query("SELECT 1").await?;
        Ok::<_, PgError>(())
    });
    assert!(
        matches!(silent, Err(PgError::Timeout(d)) if d == Duration::from_secs(2)),
        "{silent:?}"
    );
    // New connections are silent too: the pool's wait (connect 1 s)
    // ends it.
    let again = select_one(&pg);
    assert!(again.is_err(), "{again:?}");
    proxy.speak();
    // The silent connection was dropped from the pool: the next call
    // connects afresh and is answered.
    select_one(&pg).expect("answers once the network does");
}

#[test]
fn the_health_ping_answers_while_the_workers_hold_every_pooled_connection() {
    let Some(db) = TestDb::new("ping_busy") else {
        return;
    };
    let pg = db.pg();
    let p = pg.clone();
    let size = pg.config().pool_size;
    let held = pg
        .block(async move {
            let mut held = Vec::new();
            for _ in 0..size {
                held.push(p.client().await?);
            }
            Ok::<_, PgError>(held)
        })
        .expect("block")
        .expect("every pooled connection");
    let mut ping = PgPing::new(pg.clone(), Duration::from_secs(3));
    assert_eq!(ping.ping(), Ok(()));
    assert_eq!(ping.ping(), Ok(()), "on its kept connection");
    drop(held);
}

#[test]
fn the_health_ping_of_a_silent_server_fails_then_reconnects() {
    let Some(db) = TestDb::new("ping_silent") else {
        return;
    };
    let proxy = SilentProxy::new(db.port()).expect("proxy");
    let pg = Pg::connect(&db.config_through(proxy.port), db.handle()).expect("through the proxy");
    let mut ping = PgPing::new(pg.clone(), Duration::from_secs(1));
    assert_eq!(ping.ping(), Ok(()));
    proxy.silence();
    let silent = ping.ping();
    assert!(
        silent.as_ref().is_err_and(|e| e.contains("no answer")),
        "{silent:?}"
    );
    proxy.speak();
    assert_eq!(ping.ping(), Ok(()), "a new connection of its own");
}
