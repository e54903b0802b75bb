//! `automate cluster status [--json]`: the cluster as a running node's
//! REST API sees it (`GET /api/cluster`, through `remote::find` as every
//! remote command: `--server`, or the service advertised beside `--db`):
//! its live nodes, the leases (which node runs each provider's catcher and
//! each queue partition), the event queue's depth and lag. An embedded
//! service (`automate run` or `automate api` on redb) answers as a cluster
//! of one node.

use super::table::Table;
use super::Global;
use automate_vmdb::cluster::ClusterStatus;
use std::io::Write;
use std::process::ExitCode;

/// `automate cluster ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCmd {
    /// The cluster's nodes, leases and event queue, from any running node.
    ///
    /// Tables of the nodes (name, url, up since, last seen, workers, events handled), the leases (key →
    /// node) and the queue (depth, lag, pending per partition), or with `--json` the API's document.
    Status {
        /// The `GET /api/cluster` document instead of the tables.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `automate cluster ...`.
pub fn run(global: &Global, cmd: ClusterCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ClusterCmd::Status { json } => {
            let Some(remote) = super::remote::find(global)? else {
                anyhow::bail!(
                    "cluster status: no running service found beside {} (start `automate run` or \
                     `automate api`, or pass --server URL of any node)",
                    global.db.display()
                );
            };
            let doc = remote.cluster()?;
            let mut out = std::io::stdout().lock();
            if json {
                super::table::print_json(&mut out, &doc)?;
                return Ok(ExitCode::SUCCESS);
            }
            let status: ClusterStatus = serde_json::from_value(doc).map_err(|e| {
                anyhow::anyhow!(
                    "cluster status: the answer of {} is not a cluster status: {e}",
                    remote.url()
                )
            })?;
            render(&mut out, &status)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The status as tables: nodes, leases, queue.
pub fn render(out: &mut impl Write, s: &ClusterStatus) -> anyhow::Result<()> {
    writeln!(
        out,
        "{} mode: {} node(s), answered by {}",
        s.mode,
        s.nodes.len(),
        s.node
    )?;
    writeln!(out)?;
    let mut t = Table::new(&[
        "NODE",
        "URL",
        "HOST",
        "PID",
        "UP SINCE",
        "LAST SEEN",
        "WORKERS",
        "HANDLED",
        "QUEUE",
    ])
    .right(&[3, 6, 7, 8]);
    for n in &s.nodes {
        t.row(vec![
            n.node.clone(),
            if n.url.is_empty() {
                "-".into()
            } else {
                n.url.clone()
            },
            n.host.clone(),
            n.pid.to_string(),
            n.started_on.clone(),
            n.last_seen.clone(),
            n.workers.to_string(),
            n.handled.to_string(),
            n.queue_depth.to_string(),
        ]);
    }
    t.print(out)?;
    writeln!(out)?;
    if s.leases.is_empty() {
        writeln!(
            out,
            "leases: none ({})",
            if s.mode == "embedded" {
                "one process runs everything"
            } else {
                "no node holds one"
            }
        )?;
    } else {
        let mut t = Table::new(&["LEASE", "NODE"]);
        for l in &s.leases {
            t.row(vec![l.key.clone(), l.node.clone()]);
        }
        t.print(out)?;
    }
    writeln!(out)?;
    let mut q = format!("queue: depth {}", s.queue.depth);
    if let Some(lag) = s.queue.lag_s {
        q.push_str(&format!(", lag {lag:.1} s"));
    }
    if let Some(d) = s.queue.dead_letters {
        q.push_str(&format!(", dead letters {d}"));
    }
    writeln!(out, "{q}")?;
    if !s.queue.partitions.is_empty() {
        let mut t = Table::new(&["PARTITION", "PENDING"]).right(&[0, 1]);
        for p in &s.queue.partitions {
            t.row(vec![p.partition.to_string(), p.pending.to_string()]);
        }
        t.print(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automate_vmdb::cluster::{NodeInfo, PartitionStatus, QueueStatus};
    use automate_vmdb::lease::LeaseInfo;

    #[test]
    fn the_tables_show_nodes_leases_and_the_queue() {
        let s = ClusterStatus {
            mode: "cluster".into(),
            node: "n1".into(),
            nodes: vec![NodeInfo {
                node: "n1".into(),
                url: "http://10.0.0.5:3000".into(),
                host: "evm1".into(),
                pid: 42,
                started_on: "2026-12-06T09:00:00.000Z".into(),
                last_seen: "2026-12-06T10:00:00.000Z".into(),
                workers: 4,
                handled: 1200,
                queue_depth: 3,
                ..NodeInfo::default()
            }],
            leases: vec![LeaseInfo {
                key: "catcher.rhevm01".into(),
                node: "n1".into(),
            }],
            queue: QueueStatus {
                depth: 3,
                lag_s: Some(0.42),
                partitions: vec![PartitionStatus {
                    partition: 0,
                    pending: 3,
                }],
                dead_letters: Some(0),
            },
        };
        let mut out = Vec::new();
        render(&mut out, &s).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("cluster mode: 1 node(s), answered by n1\n"),
            "{text}"
        );
        assert!(text.contains("n1    http://10.0.0.5:3000  evm1"), "{text}");
        assert!(text.contains("catcher.rhevm01  n1"), "{text}");
        assert!(
            text.contains("queue: depth 3, lag 0.4 s, dead letters 0"),
            "{text}"
        );
    }
}
