//! `GET /metrics` (the service's metrics in Prometheus' text format, from
//! the [`Metrics`] the composition root made) and the middleware that
//! counts every request by method, route template and status
//! (`automate_api_requests_total`): the template of [`ROUTES`] the router
//! matched, never the raw path, so the label sets stay bounded.

use super::{blocking, ApiError, ApiResult, ApiState, ROUTES};
use automate_events::metrics::{Metrics, CONTENT_TYPE, OTHER, UNMATCHED};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// `GET /metrics`: every metric, encoded off the async threads (the
/// gauges read the store).
pub(super) async fn metrics(State(state): State<ApiState>) -> ApiResult {
    let m = state.metrics.clone();
    let text = blocking(move || m.encode().map_err(ApiError::internal)).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// Counts the request once answered (401s, 404s and timeouts included).
pub(super) async fn count(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |p| route_of(p.as_str()));
    let method = req.method().clone();
    let response = next.run(req).await;
    metrics.api_request(method.as_str(), route, response.status().as_u16());
    response
}

/// The [`ROUTES`] path of the router's matched path (`{*path}` is the
/// table's `{path}`); [`OTHER`] for one the table does not hold.
fn route_of(matched: &str) -> &'static str {
    ROUTES
        .iter()
        .map(|r| r.path)
        .find(|p| {
            *p == matched
                || p.strip_suffix("{path}")
                    .zip(matched.strip_suffix("{*path}"))
                    .is_some_and(|(a, b)| a == b)
        })
        .unwrap_or(OTHER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matched_paths_are_route_templates() {
        assert_eq!(route_of("/api/vms/{id}"), "/api/vms/{id}");
        assert_eq!(route_of("/api/automate/{*path}"), "/api/automate/{path}");
        assert_eq!(route_of("/metrics"), "/metrics");
        assert_eq!(route_of("/somewhere/else"), OTHER);
    }
}
