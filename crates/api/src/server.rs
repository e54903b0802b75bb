//! The API's HTTP/1 server: the accept loop and the bounds that keep one
//! client (or a few hundred slow ones) from holding the server
//! (`api.limits`, [`ApiLimits`]).
//!
//! axum's own `serve` sets no header-read timeout and no connection cap, so
//! connections are driven here with hyper's `http1::Builder`: a timer and
//! `header_read_timeout` (a client that sends half a header, or an idle
//! kept-alive connection, is closed), `max_header_size` / `max_buf_size` /
//! `max_headers` (431 and close), a semaphore on accepted connections (one
//! past the cap gets a 503 and is closed at once, so the backlog never
//! fills with stalled clients), and a write timeout on the socket
//! (`tokio-io-timeout`: a client that stops reading its answer is
//! dropped). The router adds the per-request deadline and the body limit
//! ([`deadline`], `DefaultBodyLimit`). Shutdown is graceful: open
//! connections finish their current request, bounded by the request
//! deadline.

use super::ApiError;
use automate_events::catchers::http::error_response;
use automate_events::config::ApiLimits;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;

/// hyper refuses a read buffer smaller than this.
const MIN_BUF: usize = 8192;

/// What a connection past `max_connections` is told before it is closed.
fn busy_answer(max: usize) -> Vec<u8> {
    let body = serde_json::json!({"error": {
        "kind": "busy",
        "message": format!(
            "the server already serves {max} connections (api.limits.max_connections); retry later"
        ),
    }})
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` within `limits` until `shutdown`; then
/// waits (at most the request deadline) for the requests in progress.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &ApiLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(target: "evm", "MIQ(Api) listening on http://{addr}/api");
    }
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF))
        .max_headers(limits.max_headers);
    let write_timeout = Duration::from_secs(limits.write_timeout_secs);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let busy = busy_answer(limits.max_connections);
    let graceful = GracefulShutdown::new();
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // EMFILE and the like: the cap keeps them rare; wait
                    // instead of spinning.
                    tracing::warn!(target: "evm", "MIQ(Api) accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // A fresh socket's send buffer takes these few bytes at once;
            // whatever it does not take is not waited for.
            let _ = tcp.try_write(&busy);
            tracing::warn!(target: "evm", "MIQ(Api) connection refused: {} connections already open (api.limits.max_connections)", limits.max_connections);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let mut io = TimeoutStream::new(tcp);
        io.set_write_timeout(Some(write_timeout));
        let io = TokioIo::new(Box::pin(io));
        let conn = http.serve_connection(io, TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target: "evm", "MIQ(Api) connection closed: {e}");
            }
            drop(permit);
        });
    }
    let grace = Duration::from_secs(limits.request_timeout_secs.saturating_add(1));
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(target: "evm", "MIQ(Api) connections still open after {} s of shutdown were dropped", grace.as_secs());
    }
    Ok(())
}

/// The per-request deadline the router applies: a request (its body read,
/// its handler) that takes longer than `request_timeout_secs` is answered
/// 503 `timeout` (work handed to a blocking thread may still finish; its
/// answer is dropped). The body limit is axum's `DefaultBodyLimit` (read
/// up to the limit, then 413 from [`too_large`]), so a client that writes
/// its whole body before reading still gets the 413.
pub(super) async fn deadline(
    State(limits): State<Arc<ApiLimits>>,
    req: Request,
    next: Next,
) -> Response {
    let secs = limits.request_timeout_secs;
    match tokio::time::timeout(Duration::from_secs(secs), next.run(req)).await {
        Ok(response) => response,
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {secs} s (api.limits.request_timeout_secs)"),
        ),
    }
}

/// 413 for a body over `max` bytes.
pub(super) fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than {max} bytes (api.limits.max_body_bytes)"),
    )
}
