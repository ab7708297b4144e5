//! `rtctl presence ls [--user ID] [--limit N] [--cursor C]`: who is online in the
//! cluster, each user with its socket count and the nodes that hold its sockets; or one
//! user's sockets.
//!
//! Read from the cluster's Redis, as the nodes keep it (see `crate::presence`): a user
//! is online while one of its sockets' entries is unexpired; the users of a node that
//! died drop out when a survivor sweeps it, within three heartbeats.

use super::inspect::{self, InspectArgs, EXIT_CODES};
use super::Exit;
use crate::presence::SocketPresence;
use comfy_table::{Cell, CellAlignment};
use serde_json::{json, Value};
use std::collections::BTreeSet;

#[derive(clap::Args, Debug)]
pub struct PresenceCommand {
    #[command(subcommand)]
    pub action: PresenceAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum PresenceAction {
    /// List online users with their socket counts and nodes (or one user's sockets).
    #[command(after_help = EXIT_CODES)]
    Ls(PresenceLs),
}

#[derive(clap::Args, Debug)]
pub struct PresenceLs {
    /// Show this user's sockets and nodes instead (exit 1 when the user is offline).
    #[arg(long, value_name = "ID")]
    pub user: Option<String>,

    /// At most this many users (a page; the report says where the next one starts).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub limit: u64,

    /// Start after this user id: the `next_cursor` of the previous page (users are
    /// listed in id order, so paging neither skips nor repeats anyone who stays online).
    #[arg(long, value_name = "USER")]
    pub cursor: Option<String>,

    #[command(flatten)]
    pub inspect: InspectArgs,
}

/// One user of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub user: String,
    pub sockets: Vec<SocketPresence>,
}

impl UserRow {
    /// The nodes holding the user's sockets, sorted, each once.
    pub fn nodes(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.sockets.iter().map(|s| s.node.as_str()).collect();
        set.into_iter().collect()
    }

    fn to_json(&self) -> Value {
        json!({
            "userId": self.user,
            "sockets": self.sockets.len(),
            "nodes": self.nodes(),
        })
    }
}

/// A page of online users.
#[derive(Debug, Clone, PartialEq)]
pub struct UsersReport {
    pub online: usize,
    pub users: Vec<UserRow>,
    pub next_cursor: Option<String>,
}

impl UsersReport {
    pub fn to_json(&self) -> Value {
        json!({
            "online": self.online,
            "users": self.users.iter().map(UserRow::to_json).collect::<Vec<_>>(),
            "next_cursor": self.next_cursor,
        })
    }

    pub fn table(&self) -> String {
        let mut t = inspect::table(&["USER", "SOCKETS", "NODES"]);
        for u in &self.users {
            t.add_row(vec![
                Cell::new(&u.user),
                Cell::new(u.sockets.len()).set_alignment(CellAlignment::Right),
                Cell::new(u.nodes().join(", ")),
            ]);
        }
        let mut out = t.to_string();
        out.push_str(&format!(
            "\n{} user{} online",
            self.online,
            if self.online == 1 { "" } else { "s" }
        ));
        if let Some(next) = &self.next_cursor {
            out.push_str(&format!("; more with --cursor {next:?}"));
        }
        out
    }
}

/// One user's sockets, as JSON.
pub fn user_json(row: &UserRow) -> Value {
    let mut sockets = row.sockets.clone();
    sockets.sort_by(|a, b| (&a.node, &a.sid).cmp(&(&b.node, &b.sid)));
    json!({
        "userId": row.user,
        "online": !row.sockets.is_empty(),
        "sockets": sockets.iter().map(|s| json!({"sid": s.sid, "node": s.node})).collect::<Vec<_>>(),
    })
}

/// One user's sockets, as a table.
pub fn user_table(row: &UserRow) -> String {
    let mut sockets = row.sockets.clone();
    sockets.sort_by(|a, b| (&a.node, &a.sid).cmp(&(&b.node, &b.sid)));
    let mut t = inspect::table(&["SOCKET", "NODE"]);
    for s in &sockets {
        t.add_row(vec![&s.sid, &s.node]);
    }
    format!(
        "{t}\n{} has {} socket{} on {} node{}",
        row.user,
        sockets.len(),
        if sockets.len() == 1 { "" } else { "s" },
        row.nodes().len(),
        if row.nodes().len() == 1 { "" } else { "s" },
    )
}

impl PresenceCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let PresenceAction::Ls(ls) = self.action;
        ls.run().await
    }
}

impl PresenceLs {
    async fn run(self) -> anyhow::Result<()> {
        let cluster = self.inspect.presence().await?;
        let store = cluster.store();
        if let Some(user) = &self.user {
            let sockets = cluster
                .read("the user's sockets", store.sockets_of(user))
                .await?;
            let row = UserRow {
                user: user.clone(),
                sockets,
            };
            inspect::print(&self.inspect, || user_table(&row), &user_json(&row))?;
            if row.sockets.is_empty() {
                return Err(Exit::new(1, format!("user {user:?} is not online")).into());
            }
            return Ok(());
        }
        let report = cluster
            .read("online users", async {
                let online = store.online_count().await?;
                let page = store
                    .online_users(self.cursor.as_deref(), self.limit as usize)
                    .await?;
                // One multiplexed connection: the lookups are pipelined, not serial.
                let sockets = futures_util::future::try_join_all(
                    page.users.iter().map(|u| store.sockets_of(u)),
                )
                .await?;
                let users: Vec<UserRow> = page
                    .users
                    .into_iter()
                    .zip(sockets)
                    // A user whose last socket expired between the two reads is gone.
                    .filter(|(_, s)| !s.is_empty())
                    .map(|(user, sockets)| UserRow { user, sockets })
                    .collect();
                Ok(UsersReport {
                    online,
                    users,
                    next_cursor: page.next_cursor,
                })
            })
            .await?;
        inspect::print(&self.inspect, || report.table(), &report.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sid: &str, node: &str) -> SocketPresence {
        SocketPresence {
            sid: sid.into(),
            node: node.into(),
        }
    }

    #[test]
    fn users_table_and_json() {
        let report = UsersReport {
            online: 3,
            users: vec![
                UserRow {
                    user: "alice".into(),
                    sockets: vec![s("a1", "n2"), s("a2", "n1"), s("a3", "n2")],
                },
                UserRow {
                    user: "bob".into(),
                    sockets: vec![s("b1", "n1")],
                },
            ],
            next_cursor: Some("bob".into()),
        };
        assert_eq!(
            report.to_json(),
            json!({
                "online": 3,
                "users": [
                    {"userId": "alice", "sockets": 3, "nodes": ["n1", "n2"]},
                    {"userId": "bob", "sockets": 1, "nodes": ["n1"]},
                ],
                "next_cursor": "bob",
            })
        );
        let t = report.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].contains("USER") && lines[1].contains("NODES"),
            "{t}"
        );
        assert!(
            lines[3].contains("alice") && lines[3].contains("n1, n2"),
            "{t}"
        );
        assert_eq!(
            lines.last(),
            Some(&"3 users online; more with --cursor \"bob\"")
        );
    }

    #[test]
    fn one_user() {
        let row = UserRow {
            user: "alice".into(),
            sockets: vec![s("a2", "n2"), s("a1", "n1")],
        };
        assert_eq!(
            user_json(&row),
            json!({"userId": "alice", "online": true, "sockets": [
                {"sid": "a1", "node": "n1"}, {"sid": "a2", "node": "n2"}]})
        );
        assert!(user_table(&row).ends_with("alice has 2 sockets on 2 nodes"));
        let gone = UserRow {
            user: "x".into(),
            sockets: vec![],
        };
        assert_eq!(user_json(&gone)["online"], false);
    }
}
