//! `rtctl nodes ls`: the live nodes of the cluster, as they register themselves with
//! every presence heartbeat (id, address, version, connections, start and last beat).
//!
//! A node is live while its registration is unexpired (two heartbeats): a node killed
//! with `kill -9` leaves the list within that, without anyone removing it.

use super::inspect::{self, InspectArgs, EXIT_CODES};
use super::Exit;
use crate::presence::NodeInfo;
use comfy_table::{Cell, CellAlignment};
use serde_json::{json, Value};

#[derive(clap::Args, Debug)]
pub struct NodesCommand {
    #[command(subcommand)]
    pub action: NodesAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum NodesAction {
    /// List live nodes: id, address, version, connections, uptime, last heartbeat (exit 1
    /// when there is none).
    #[command(after_help = EXIT_CODES)]
    Ls(NodesLs),
}

#[derive(clap::Args, Debug)]
pub struct NodesLs {
    #[command(flatten)]
    pub inspect: InspectArgs,
}

/// Live nodes, sorted by id, as seen at `now` (Unix ms).
#[derive(Debug, Clone, PartialEq)]
pub struct NodesReport {
    pub nodes: Vec<NodeInfo>,
    pub now: u64,
}

impl NodesReport {
    pub fn new(mut nodes: Vec<NodeInfo>, now: u64) -> NodesReport {
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        NodesReport { nodes, now }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "count": self.nodes.len(),
            "connections": self.nodes.iter().map(|n| n.connections).sum::<u64>(),
            "nodes": self.nodes.iter().map(|n| json!({
                "id": n.id,
                "address": n.address,
                "version": n.version,
                "connections": n.connections,
                "started_at": inspect::rfc3339(n.started_at),
                "last_heartbeat": inspect::rfc3339(n.heartbeat_at),
                "heartbeat_age_ms": self.now.saturating_sub(n.heartbeat_at),
            })).collect::<Vec<_>>(),
        })
    }

    pub fn table(&self) -> String {
        let mut t = inspect::table(&[
            "NODE",
            "ADDRESS",
            "VERSION",
            "CONNECTIONS",
            "UPTIME",
            "LAST HEARTBEAT",
        ]);
        for n in &self.nodes {
            let age = self.now.saturating_sub(n.heartbeat_at);
            t.add_row(vec![
                Cell::new(&n.id),
                Cell::new(&n.address),
                Cell::new(&n.version),
                Cell::new(n.connections).set_alignment(CellAlignment::Right),
                Cell::new(crate::probe::render::uptime(
                    self.now.saturating_sub(n.started_at) / 1000,
                ))
                .set_alignment(CellAlignment::Right),
                Cell::new(format!("{:.1}s ago", age as f64 / 1000.0))
                    .set_alignment(CellAlignment::Right),
            ]);
        }
        let connections: u64 = self.nodes.iter().map(|n| n.connections).sum();
        format!(
            "{t}\n{} live node{}, {connections} connection{}",
            self.nodes.len(),
            if self.nodes.len() == 1 { "" } else { "s" },
            if connections == 1 { "" } else { "s" },
        )
    }
}

impl NodesCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let NodesAction::Ls(ls) = self.action;
        let cluster = ls.inspect.presence().await?;
        let nodes = cluster.read("nodes", cluster.store().nodes()).await?;
        let report = NodesReport::new(nodes, inspect::now_ms());
        inspect::print(&ls.inspect, || report.table(), &report.to_json())?;
        if report.nodes.is_empty() {
            return Err(Exit::new(
                1,
                "no live node is registered in this Redis (check --presence-prefix)",
            )
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json() {
        let node = |id: &str, connections| NodeInfo {
            id: id.into(),
            address: "127.0.0.1:3001".into(),
            version: "0.1.0".into(),
            connections,
            started_at: 1_000_000,
            heartbeat_at: 1_000_000 + 65_000,
            indexed: true,
        };
        let r = NodesReport::new(vec![node("b", 2), node("a", 1)], 1_000_000 + 65_300);
        let v = r.to_json();
        assert_eq!(v["count"], 2);
        assert_eq!(v["connections"], 3);
        assert_eq!(v["nodes"][0]["id"], "a");
        assert_eq!(v["nodes"][0]["heartbeat_age_ms"], 300);
        assert_eq!(v["nodes"][0]["started_at"], "1970-01-01T00:16:40.000Z");
        let t = r.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[3].contains("1m 05s") && lines[3].contains("0.3s ago"),
            "{t}"
        );
        assert_eq!(lines.last(), Some(&"2 live nodes, 3 connections"));
    }
}
