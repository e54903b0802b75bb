//! `GET /api/cluster`: the cluster as the answering node sees it (what
//! `automate cluster status` prints): its live nodes (name, API url, pid,
//! host, version, up since, last heartbeat, workers, events handled, the
//! queue depth each saw, the partitions and catcher leases each holds),
//! the leases by key, and the event queue's depth and lag. The view is
//! given by the composition root ([`ApiState::with_cluster`]): cluster
//! mode's reads the node registry, the leases and JetStream; without one
//! the API answers the embedded mode's (this process as the one node).

use super::{blocking, ok, ApiError, ApiResult, ApiState};
use axum::extract::State;

/// `GET /api/cluster`.
pub(crate) async fn status(State(state): State<ApiState>) -> ApiResult {
    let s = state.clone();
    let status = blocking(move || {
        let mut status = s.cluster.view.status().map_err(ApiError::internal)?;
        if !s.cluster.given {
            // The embedded default: this API's own url and queue.
            let depth = s.queue_depth()?;
            status.queue.depth = depth;
            for n in &mut status.nodes {
                n.queue_depth = depth;
                if n.url.is_empty() {
                    n.url = s.public_url.to_string();
                }
            }
        }
        Ok(status)
    })
    .await?;
    ok(serde_json::to_value(status).map_err(ApiError::internal)?)
}
