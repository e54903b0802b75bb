//! The cluster's leases in a NATS KV bucket: [`KvLeases`], the
//! [`Leases`] of cluster mode (the contract is in
//! [`automate_vmdb::lease`]).
//!
//! A lease is the key itself in the bucket `<prefix>-leases` (history 1,
//! `max_age` = the lease's time to live), its value the holder's node
//! name. NATS 2.9 has no per-message TTL, so the bucket's `max_age` is the
//! TTL: every renewal writes the key again, and a key its holder stopped
//! renewing is removed by the server once it is `max_age` old. Taking a
//! lease is a compare-and-set on the key's revision (the stream's
//! `Nats-Expected-Last-Subject-Sequence`): revision 0 (or the revision of
//! a delete marker) when no node holds it, the holder's own last revision
//! when it renews; two nodes racing for a free key cannot both win, the
//! loser's write is refused. Releasing deletes the key, again only at the
//! revision this node wrote, so a node never releases a lease another
//! node took meanwhile.
//!
//! The catchers' positions live in a second bucket, `<prefix>-positions`
//! (history 1, no `max_age`): a position must outlive any node.
//!
//! Keys may hold any character (a provider's name): the bytes a KV key
//! cannot hold (anything but letters, digits, `_`, `-`, and `.` between
//! two non-empty parts) are written `=XX` (hex), and read back decoded.

use crate::{Nats, NatsError};
use async_nats::jetstream::kv::{self, Operation, Store, UpdateErrorKind};
use automate_vmdb::lease::{LeaseInfo, Leases};
use automate_vmdb::StoreError;
use futures_util::TryStreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The shortest time to live of a lease.
const MIN_TTL: Duration = Duration::from_secs(1);

/// How long a call to the lease store may wait for its answer: a renewal
/// stuck on a half-dead connection must not hold the renewing thread (its
/// failure is seen, and the leases it guards treated as lost).
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// The leases (and catcher positions) of a cluster in NATS KV buckets, as
/// one node sees them. Cheap to share (`Arc`).
pub struct KvLeases {
    nats: Arc<Nats>,
    leases: Store,
    positions: Store,
    ttl: Duration,
}

impl std::fmt::Debug for KvLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvLeases")
            .field("node", &self.nats.node())
            .field("bucket", &self.leases.name)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Creates the bucket `config.bucket`, or binds to it (updating its
/// configuration, a changed TTL say) when it exists already.
///
/// The stream is made here with the settings `async-nats` gives a bucket
/// (`Context::create_key_value` first reads the account's info, which
/// `async-nats` 0.42 cannot decode from a NATS 2.9 server), then bound
/// with `Context::get_key_value`.
pub(crate) async fn bucket(
    js: &async_nats::jetstream::Context,
    config: kv::Config,
) -> Result<Store, NatsError> {
    use async_nats::jetstream::stream;
    let name = config.bucket.clone();
    let what = || format!("creating the KV bucket {name}");
    let stream = stream::Config {
        name: format!("KV_{name}"),
        description: Some(config.description.clone()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: config.history.max(1),
        max_age: config.max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    if let Err(created) = js.create_stream(stream.clone()).await {
        if let Err(updated) = js.update_stream(stream).await {
            return Err(NatsError::js(
                what(),
                format!("{created}; then updating it: {updated}"),
            ));
        }
    }
    js.get_key_value(name.as_str())
        .await
        .map_err(|e| NatsError::js(what(), e))
}

impl KvLeases {
    /// The leases of `nats`'s cluster, each held for `ttl` after its last
    /// renewal: creates (or binds to) the buckets `<prefix>-leases` and
    /// `<prefix>-positions`. A `ttl` under 1 s is refused (the bucket's
    /// `max_age` 0 would mean leases that never expire).
    pub fn open(nats: Arc<Nats>, ttl: Duration) -> Result<Arc<KvLeases>, NatsError> {
        if ttl < MIN_TTL {
            return Err(NatsError::BadLeaseTtl(ttl));
        }
        let js = nats.jetstream().clone();
        let prefix = nats.prefix().to_string();
        let (leases, positions) = nats.block(async move {
            let leases = bucket(
                &js,
                kv::Config {
                    bucket: format!("{prefix}-leases"),
                    description: "automate: who runs what (catchers, partitions, nodes)".into(),
                    history: 1,
                    max_age: ttl,
                    ..Default::default()
                },
            )
            .await?;
            let positions = bucket(
                &js,
                kv::Config {
                    bucket: format!("{prefix}-positions"),
                    description: "automate: the catchers' positions in their buses".into(),
                    history: 1,
                    ..Default::default()
                },
            )
            .await?;
            Ok::<_, NatsError>((leases, positions))
        })??;
        tracing::info!(target: "evm", "MIQ(KvLeases.open) node [{}]: leases in the KV bucket [{}], TTL {:?}", nats.node(), leases.name, ttl);
        Ok(Arc::new(KvLeases {
            nats,
            leases,
            positions,
            ttl,
        }))
    }

    /// The time to live of a lease not renewed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The connection it works through.
    pub fn nats(&self) -> &Arc<Nats> {
        &self.nats
    }

    fn acquire_async(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<bool, NatsError>> {
        let store = self.leases.clone();
        let key = encode_key(key);
        let node = self.nats.node().to_string();
        async move {
            // Three rounds at most: a lost race is seen on the next read.
            for _ in 0..3 {
                let entry = store
                    .entry(key.as_str())
                    .await
                    .map_err(|e| NatsError::js(format!("reading the lease {key}"), e))?;
                let revision = match entry {
                    Some(e) if e.operation == Operation::Put => {
                        if e.value.as_ref() != node.as_bytes() {
                            return Ok(false);
                        }
                        e.revision
                    }
                    // Deleted (released): written again at the marker's revision.
                    Some(e) => e.revision,
                    // Never held, or expired.
                    None => 0,
                };
                match store
                    .update(key.as_str(), node.clone().into_bytes().into(), revision)
                    .await
                {
                    Ok(_) => return Ok(true),
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                    Err(e) => return Err(NatsError::js(format!("writing the lease {key}"), e)),
                }
            }
            Ok(false)
        }
    }
}

impl Leases for KvLeases {
    fn node(&self) -> &str {
        self.nats.node()
    }

    /// Creates the key when absent (never held, released, or expired),
    /// rewrites it at its revision when this node holds it; `false` when
    /// another node holds it (or won the race for it).
    fn acquire(&self, key: &str) -> Result<bool, StoreError> {
        let fut = self.acquire_async(key);
        Ok(self
            .nats
            .block_within(ANSWER_LIMIT, "renewing a lease", fut)?)
    }

    /// Deletes the key at the revision this node wrote (a lease another
    /// node holds is left alone).
    fn release(&self, key: &str) -> Result<(), StoreError> {
        let store = self.leases.clone();
        let key = encode_key(key);
        let node = self.nats.node().to_string();
        self.nats.block_within(ANSWER_LIMIT, "releasing a lease", async move {
            let entry = store
                .entry(key.as_str())
                .await
                .map_err(|e| NatsError::js(format!("reading the lease {key}"), e))?;
            if let Some(e) = entry {
                if e.operation == Operation::Put && e.value.as_ref() == node.as_bytes() {
                    if let Err(err) = store
                        .delete_expect_revision(key.as_str(), Some(e.revision))
                        .await
                    {
                        // Renewed or taken meanwhile: not ours to delete any more.
                        tracing::debug!(target: "evm", "MIQ(KvLeases.release) lease [{key}] not released: {err}");
                    }
                }
            }
            Ok::<_, NatsError>(())
        })?;
        Ok(())
    }

    /// Every lease held now, by key.
    fn held(&self) -> Result<Vec<LeaseInfo>, StoreError> {
        let store = self.leases.clone();
        let held = self
            .nats
            .block_within(ANSWER_LIMIT, "listing the leases", async move {
                let keys: Vec<String> = store
                    .keys()
                    .await
                    .map_err(|e| NatsError::js("listing the leases", e))?
                    .try_collect()
                    .await
                    .map_err(|e| NatsError::js("listing the leases", e))?;
                let mut held = Vec::with_capacity(keys.len());
                for key in keys {
                    // Expired or released since it was listed: skipped.
                    if let Some(e) = store
                        .entry(key.as_str())
                        .await
                        .map_err(|e| NatsError::js(format!("reading the lease {key}"), e))?
                    {
                        if e.operation == Operation::Put {
                            held.push(LeaseInfo {
                                key: decode_key(&key),
                                node: String::from_utf8_lossy(&e.value).into_owned(),
                            });
                        }
                    }
                }
                held.sort_by(|a, b| a.key.cmp(&b.key));
                Ok::<_, NatsError>(held)
            })?;
        Ok(held)
    }

    /// A third of the TTL: a holder misses two renewals before it loses
    /// the lease.
    fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn position(&self, provider: &str) -> Result<Option<u64>, StoreError> {
        let store = self.positions.clone();
        let key = encode_key(provider);
        let value = self.nats.block(async move {
            store
                .get(key.as_str())
                .await
                .map_err(|e| NatsError::js(format!("reading the position {key}"), e))
        })??;
        match value {
            None => Ok(None),
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| {
                    StoreError::Backend(format!(
                        "the stored position of the catcher [{provider}] is not a number: {:?}",
                        String::from_utf8_lossy(&v)
                    ))
                }),
        }
    }

    fn set_position(&self, provider: &str, position: u64) -> Result<(), StoreError> {
        let store = self.positions.clone();
        let key = encode_key(provider);
        self.nats.block(async move {
            store
                .put(key.as_str(), position.to_string().into_bytes().into())
                .await
                .map_err(|e| NatsError::js(format!("writing the position {key}"), e))
        })??;
        Ok(())
    }
}

/// `key` as a KV key: see the module docs.
pub(crate) fn encode_key(key: &str) -> String {
    fn plain(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
    }
    let dots_ok = !key.is_empty() && key.split('.').all(|part| !part.is_empty());
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if plain(b) || (b == b'.' && dots_ok) {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('=');
    }
    out
}

/// A KV key written by [`encode_key`], decoded.
pub(crate) fn decode_key(key: &str) -> String {
    if key == "=" {
        return String::new();
    }
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestNats;
    use std::time::Instant;

    #[test]
    fn keys_round_trip_through_the_kv_alphabet() {
        for key in [
            "catcher.vc1",
            "partition.3",
            "catcher.my provider",
            "catcher.a..b",
            ".x",
            "ünï=code",
            "",
        ] {
            let enc = encode_key(key);
            assert!(
                enc.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.=".contains(&b)),
                "{enc}"
            );
            assert!(!enc.starts_with('.') && !enc.ends_with('.') && !enc.contains(".."));
            assert_eq!(decode_key(&enc), key);
        }
        assert_eq!(encode_key("catcher.vc1"), "catcher.vc1");
    }

    fn two_nodes(name: &str, ttl: Duration) -> Option<(TestNats, Arc<KvLeases>, Arc<KvLeases>)> {
        let t = TestNats::new(name)?;
        let a = KvLeases::open(t.nats(), ttl).expect("leases of node1");
        let b = KvLeases::open(t.node("node2"), ttl).expect("leases of node2");
        Some((t, a, b))
    }

    #[test]
    fn a_lease_is_held_by_one_node_and_renewed_by_it() {
        let Some((_t, a, b)) = two_nodes("lease_exclusive", Duration::from_secs(30)) else {
            return;
        };
        assert_eq!(a.renew_every(), Duration::from_secs(10));
        assert!(a.acquire("catcher.vc1").unwrap());
        assert!(!b.acquire("catcher.vc1").unwrap());
        // Renewing keeps it.
        assert!(a.acquire("catcher.vc1").unwrap());
        assert!(a.acquire("catcher.vc1").unwrap());
        assert!(!b.acquire("catcher.vc1").unwrap());
        // Another key is free for the other node.
        assert!(b.acquire("partition.0").unwrap());
        assert!(!a.acquire("partition.0").unwrap());
        let held = a.held().unwrap();
        assert_eq!(
            held,
            vec![
                LeaseInfo {
                    key: "catcher.vc1".into(),
                    node: "node1".into()
                },
                LeaseInfo {
                    key: "partition.0".into(),
                    node: "node2".into()
                },
            ]
        );
        // Releasing a lease of another node does nothing.
        a.release("partition.0").unwrap();
        assert!(!a.acquire("partition.0").unwrap());
    }

    #[test]
    fn a_released_lease_is_taken_over_at_once() {
        let Some((_t, a, b)) = two_nodes("lease_release", Duration::from_secs(30)) else {
            return;
        };
        assert!(a.acquire("catcher.my provider").unwrap());
        assert!(!b.acquire("catcher.my provider").unwrap());
        a.release("catcher.my provider").unwrap();
        assert!(b.held().unwrap().is_empty());
        assert!(b.acquire("catcher.my provider").unwrap());
        assert!(!a.acquire("catcher.my provider").unwrap());
        assert_eq!(
            a.held().unwrap(),
            vec![LeaseInfo {
                key: "catcher.my provider".into(),
                node: "node2".into()
            }]
        );
    }

    #[test]
    fn a_lease_not_renewed_expires_and_the_other_node_takes_it() {
        let ttl = Duration::from_secs(2);
        let Some((_t, a, b)) = two_nodes("lease_expiry", ttl) else {
            return;
        };
        assert!(a.acquire("partition.1").unwrap());
        // Renewed by its holder past the TTL: still its.
        let start = Instant::now();
        while start.elapsed() < ttl + Duration::from_millis(500) {
            assert!(a.acquire("partition.1").unwrap());
            assert!(!b.acquire("partition.1").unwrap());
            std::thread::sleep(a.renew_every() / 3);
        }
        // Not renewed any more: node2 has it after the TTL (the server's
        // expiry runs on its own timer: waited for, up to 4 TTLs).
        let stopped = Instant::now();
        let mut taken = false;
        while stopped.elapsed() < ttl * 4 {
            if b.acquire("partition.1").unwrap() {
                taken = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(taken, "node2 took the expired lease");
        assert!(!a.acquire("partition.1").unwrap());
    }

    #[test]
    fn concurrent_acquires_have_exactly_one_winner() {
        let Some(t) = TestNats::new("lease_race") else {
            return;
        };
        let ttl = Duration::from_secs(30);
        let nodes: Vec<Arc<KvLeases>> = (1..=6)
            .map(|i| KvLeases::open(t.node(&format!("node{i}")), ttl).expect("leases"))
            .collect();
        for round in 0..5 {
            let key = format!("catcher.race{round}");
            let barrier = Arc::new(std::sync::Barrier::new(nodes.len()));
            let winners: Vec<bool> = std::thread::scope(|s| {
                let handles: Vec<_> = nodes
                    .iter()
                    .map(|n| {
                        let barrier = barrier.clone();
                        let key = key.clone();
                        s.spawn(move || {
                            barrier.wait();
                            n.acquire(&key).expect("acquire")
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("thread"))
                    .collect()
            });
            assert_eq!(winners.iter().filter(|w| **w).count(), 1, "{winners:?}");
            let winner = winners.iter().position(|w| *w).expect("a winner");
            let held = nodes[0].held().unwrap();
            let info = held.iter().find(|l| l.key == key).expect("held");
            assert_eq!(info.node, format!("node{}", winner + 1));
        }
    }

    #[test]
    fn a_ttl_under_a_second_is_refused() {
        let Some(t) = TestNats::new("lease_ttl") else {
            return;
        };
        for ttl in [Duration::ZERO, Duration::from_millis(999)] {
            let e = KvLeases::open(t.nats(), ttl).expect_err("refused");
            assert!(matches!(e, NatsError::BadLeaseTtl(d) if d == ttl), "{e}");
            assert!(e.to_string().contains("cluster.lease_ttl_s"), "{e}");
        }
        let l = KvLeases::open(t.nats(), Duration::from_secs(1)).unwrap();
        assert_eq!(Leases::ttl(l.as_ref()), Duration::from_secs(1));
    }

    #[test]
    fn positions_are_stored_apart_from_the_leases() {
        let Some((_t, a, b)) = two_nodes("lease_positions", Duration::from_secs(2)) else {
            return;
        };
        assert_eq!(a.position("vc 1").unwrap(), None);
        a.set_position("vc 1", 42).unwrap();
        assert_eq!(b.position("vc 1").unwrap(), Some(42));
        b.set_position("vc 1", 43).unwrap();
        assert_eq!(a.position("vc 1").unwrap(), Some(43));
        assert!(a.held().unwrap().is_empty());
    }
}
