//! `rtctl rooms ls [--namespace NS] [--room R] [--limit N]`: Socket.IO rooms with their
//! member counts summed over every live node.
//!
//! Each node writes a snapshot of its rooms (namespace → room → local members) with its
//! presence heartbeat, into a per-node Redis hash that expires with the node (see
//! `crate::presence`). Reading is one hash lookup per live node: no request to the nodes
//! and no wait for the slowest of them, at the price of counts up to one heartbeat old.
//! A socket's own-id room is not listed (every socket has one).

use super::inspect::{self, InspectArgs, EXIT_CODES};
use super::Exit;
use comfy_table::{Cell, CellAlignment};
use serde_json::{json, Value};

#[derive(clap::Args, Debug)]
pub struct RoomsCommand {
    #[command(subcommand)]
    pub action: RoomsAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum RoomsAction {
    /// List rooms with their member counts across all nodes.
    #[command(after_help = EXIT_CODES)]
    Ls(RoomsLs),
}

#[derive(clap::Args, Debug)]
pub struct RoomsLs {
    /// Only this namespace (`/chat`); exit 1 when no live node serves it.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,

    /// Only this room; exit 1 when it has no members anywhere.
    #[arg(long, value_name = "R")]
    pub room: Option<String>,

    /// At most this many rooms (the largest first).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,

    #[command(flatten)]
    pub inspect: InspectArgs,
}

/// One room of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRow {
    pub namespace: String,
    pub room: String,
    pub members: usize,
}

/// Rooms, the largest first (then by namespace and name), and how many matched in all.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomsReport {
    pub total: usize,
    pub rooms: Vec<RoomRow>,
}

impl RoomsReport {
    pub fn new(mut rooms: Vec<RoomRow>, limit: usize) -> RoomsReport {
        rooms.sort_by(|a, b| {
            b.members
                .cmp(&a.members)
                .then_with(|| a.namespace.cmp(&b.namespace))
                .then_with(|| a.room.cmp(&b.room))
        });
        let total = rooms.len();
        rooms.truncate(limit);
        RoomsReport { total, rooms }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "total": self.total,
            "rooms": self.rooms.iter().map(|r| json!({
                "namespace": r.namespace,
                "room": r.room,
                "members": r.members,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn table(&self) -> String {
        let mut t = inspect::table(&["NAMESPACE", "ROOM", "MEMBERS"]);
        for r in &self.rooms {
            t.add_row(vec![
                Cell::new(&r.namespace),
                Cell::new(&r.room),
                Cell::new(r.members).set_alignment(CellAlignment::Right),
            ]);
        }
        let shown = if self.rooms.len() < self.total {
            format!(" (showing the {} largest)", self.rooms.len())
        } else {
            String::new()
        };
        format!(
            "{t}\n{} room{}{shown}",
            self.total,
            if self.total == 1 { "" } else { "s" }
        )
    }
}

impl RoomsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let RoomsAction::Ls(ls) = self.action;
        ls.run().await
    }
}

impl RoomsLs {
    async fn run(self) -> anyhow::Result<()> {
        let cluster = self.inspect.presence().await?;
        let store = cluster.store();
        let served = cluster.read("namespaces", store.namespaces()).await?;
        let namespaces = match &self.namespace {
            Some(ns) if !served.contains(ns) => {
                let report = RoomsReport::new(Vec::new(), 0);
                inspect::print(&self.inspect, || report.table(), &report.to_json())?;
                return Err(Exit::new(
                    1,
                    format!(
                        "no live node serves namespace {ns:?} (served: {})",
                        if served.is_empty() {
                            "none".to_owned()
                        } else {
                            served.join(", ")
                        }
                    ),
                )
                .into());
            }
            Some(ns) => vec![ns.clone()],
            None => served,
        };
        let mut rows = Vec::new();
        for ns in namespaces {
            let rooms = cluster.read("rooms", store.rooms(&ns)).await?;
            rows.extend(
                rooms
                    .into_iter()
                    .filter(|(room, _)| self.room.as_ref().is_none_or(|r| r == room))
                    .map(|(room, members)| RoomRow {
                        namespace: ns.clone(),
                        room,
                        members,
                    }),
            );
        }
        let report = RoomsReport::new(rows, self.limit as usize);
        inspect::print(&self.inspect, || report.table(), &report.to_json())?;
        match &self.room {
            Some(room) if report.total == 0 => {
                Err(Exit::new(1, format!("room {room:?} has no members on any live node")).into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ns: &str, room: &str, members: usize) -> RoomRow {
        RoomRow {
            namespace: ns.into(),
            room: room.into(),
            members,
        }
    }

    #[test]
    fn largest_first_and_limited() {
        let r = RoomsReport::new(
            vec![
                row("/chat", "room:2", 1),
                row("/", "R", 3),
                row("/chat", "room:1", 3),
            ],
            2,
        );
        assert_eq!(
            r.to_json(),
            json!({"total": 3, "rooms": [
                {"namespace": "/", "room": "R", "members": 3},
                {"namespace": "/chat", "room": "room:1", "members": 3},
            ]})
        );
        assert!(
            r.table().ends_with("3 rooms (showing the 2 largest)"),
            "{}",
            r.table()
        );
    }
}
