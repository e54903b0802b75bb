//! (a placeholder with the interface of ds-sync's module, replaced by it on merge)

use automate_control::Reloader;
use automate_postgres::Pg;
use std::path::Path;
use std::sync::Arc;

/// The sync of one node's datastore root with PostgreSQL.
#[derive(Debug)]
pub struct DatastoreSync;

/// Starts syncing the datastore `root` of node `node` with PostgreSQL.
pub fn start(
    _pg: Arc<Pg>,
    _root: &Path,
    _reloader: Arc<Reloader>,
    _node: &str,
) -> anyhow::Result<DatastoreSync> {
    Ok(DatastoreSync)
}
