//! REST API throughput: `POST /api/automation_requests` with
//! `auto_approve` for the shipped `/System/Request/HelloWorld` (a trivial
//! Rhai method), from 64 concurrent keep-alive clients, against a real
//! server on 127.0.0.1 over a real redb store. Every answer is a request
//! that was created, approved, run to `finished` and committed durably
//! (group commit: `src/api/batch.rs`).
//!
//! ```text
//! cargo bench --bench api
//! API_BENCH_CLIENTS=64 API_BENCH_SECS=10 cargo bench --bench api
//! ```
//!
//! The store is opened as `automate run` and `automate api` open it.
//! Prints requests/s and the p50 / p99 / max latencies. The client is a
//! minimal HTTP/1.1 client over tokio's `TcpStream`.

// The allocator the `automate` binary runs with.
#[global_allocator]
static ALLOC: automate_core::alloc::CountingAlloc = automate_core::alloc::CountingAlloc;

use automate_api::{router, serve, ApiState};
use automate_datastore::Datastore;
use automate_engine::Engine;
use automate_redb::RedbStore;
use automate_vmdb::ObjectStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one client saw: latencies (µs) of good answers, and failures.
#[derive(Default)]
struct Seen {
    latencies: Vec<u32>,
    failures: u64,
    first_failure: Option<String>,
}

/// One exchange on a kept-alive connection: the status and the body.
async fn exchange(
    conn: &mut BufReader<TcpStream>,
    request: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    conn.get_mut().write_all(request).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::other("connection closed in the headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await?;
    Ok((status, body))
}

async fn client(addr: SocketAddr, request: Arc<Vec<u8>>, warmup: Instant, end: Instant) -> Seen {
    let mut seen = Seen::default();
    let mut conn = match TcpStream::connect(addr).await {
        Ok(s) => {
            let _ = s.set_nodelay(true);
            BufReader::new(s)
        }
        Err(e) => {
            seen.failures += 1;
            seen.first_failure = Some(format!("connect: {e}"));
            return seen;
        }
    };
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        match exchange(&mut conn, &request).await {
            Ok((200, _)) => {
                if t0 >= warmup {
                    seen.latencies.push(t0.elapsed().as_micros() as u32);
                }
            }
            Ok((status, body)) => {
                seen.failures += 1;
                seen.first_failure.get_or_insert_with(|| {
                    format!("HTTP {status}: {}", String::from_utf8_lossy(&body))
                });
            }
            Err(e) => {
                seen.failures += 1;
                seen.first_failure.get_or_insert_with(|| e.to_string());
                break;
            }
        }
    }
    seen
}

fn main() {
    let clients = env_num("API_BENCH_CLIENTS", 64) as usize;
    let secs = env_num("API_BENCH_SECS", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        RedbStore::open(dir.path().join("bench.redb"))
            .expect("store")
            .with_relaxed_durability(true),
    );
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/datastore"));
    let (ds, problems) = Datastore::open(&root);
    assert!(problems.is_empty(), "{problems:?}");
    let (engine, _runner) =
        automate_control::with_control(Engine::new(Arc::new(ds)).with_store(store.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = serde_json::json!({
        "version": "1.1",
        "uri_parts": {"namespace": "System", "class": "Request", "instance": "HelloWorld", "message": "create"},
        "parameters": {"who": "bench"},
        "requester": {"auto_approve": true}
    })
    .to_string();
    let request = Arc::new(
        format!(
            "POST /api/automation_requests HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    );
    let stop = CancellationToken::new();
    let (seen, measured) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = router(
            ApiState::new(TOKEN, engine, store.clone()).expect("API state"),
            None,
        );
        tokio::spawn(serve(listener, app, stop.clone()));
        let start = Instant::now();
        let warmup = start + Duration::from_secs(1);
        let end = warmup + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..clients)
            .map(|_| tokio::spawn(client(addr, request.clone(), warmup, end)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("client task"));
        }
        (all, Instant::now().saturating_duration_since(warmup))
    });
    stop.cancel();
    let mut latencies: Vec<u32> = seen.iter().flat_map(|s| s.latencies.clone()).collect();
    let failures: u64 = seen.iter().map(|s| s.failures).sum();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let rate = latencies.len() as f64 / measured.as_secs_f64();
    let stored = store.list("MiqRequest").map(|l| l.len()).unwrap_or(0);
    println!(
        "api/automation_requests: {clients} clients, {:.1} s: {} requests ({:.0} requests/s), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {failures} failures, {stored} requests stored",
        measured.as_secs_f64(),
        latencies.len(),
        rate,
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    if let Some(f) = seen.iter().find_map(|s| s.first_failure.clone()) {
        println!("first failure: {f}");
    }
}
