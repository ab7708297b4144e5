//! `rtctl gen migrations`: the indexes our queries need (SR-2's three, and the one the
//! presence updates need) as migrations for an existing PostgreSQL schema, in sqlx's or Prisma's layout, one `CREATE INDEX CONCURRENTLY` each.

use crate::templates::Templates;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One of the indexes the hot queries need (requirements SR-2).
#[derive(Debug, Clone, Serialize)]
pub struct IndexSpec {
    pub name: &'static str,
    pub table: &'static str,
    pub columns: &'static str,
    pub unique: bool,
    pub purpose: &'static str,
}

/// The indexes, in the order they are applied: SR-2's three, then the one `PEERS_OF`
/// needs. The same definitions are the committed `migrations/postgres/0002`–`0005` (a
/// test keeps them equal).
pub const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        name: "idx_notifications_user_status",
        table: "notifications",
        columns: "user_id, status",
        unique: false,
        purpose: "SR-2: unread counts and a user's notification list.",
    },
    IndexSpec {
        name: "idx_messages_room_created",
        table: "messages",
        columns: "room_id, created_at DESC",
        unique: false,
        purpose: "SR-2: a room's history, newest first.",
    },
    IndexSpec {
        name: "idx_chat_rooms_users",
        table: "chat_rooms",
        columns: "user1_id, user2_id",
        unique: true,
        purpose: "SR-2: the room of a pair of users (and the pair's uniqueness).",
    },
    IndexSpec {
        name: "idx_chat_rooms_user2",
        table: "chat_rooms",
        columns: "user2_id, user1_id",
        unique: false,
        purpose: "A user's rooms where they are user2: the peers told of their presence.",
    },
];

#[derive(clap::Args, Debug)]
pub struct MigrationsArgs {
    /// `sqlx` (files `NNNN_name.sql` starting with `-- no-transaction`) or `prisma`
    /// (`prisma/migrations/<timestamp>_<name>/migration.sql`).
    #[arg(long, default_value = "sqlx", value_parser = ["sqlx", "prisma"])]
    pub format: String,

    /// Directory to write into.
    #[arg(short = 'o', long, default_value = ".")]
    pub output: PathBuf,

    /// First sqlx version number (after your existing migrations).
    #[arg(long, default_value_t = 2)]
    pub first_version: u32,

    /// Prisma timestamp prefix (`YYYYMMDDHHMMSS`; default: now, UTC). Each index adds one second.
    #[arg(long)]
    pub timestamp: Option<String>,
}

#[derive(Serialize)]
struct Ctx<'a> {
    index: IndexView<'a>,
}

#[derive(Serialize)]
struct IndexView<'a> {
    #[serde(flatten)]
    spec: &'a IndexSpec,
    quoted_columns: String,
}

/// `created_at DESC` → `"created_at" DESC` (Prisma quotes every identifier).
fn quote_columns(columns: &str) -> String {
    columns
        .split(',')
        .map(|c| {
            let mut parts = c.split_whitespace();
            let name = parts.next().unwrap_or_default();
            let rest: Vec<&str> = parts.collect();
            let mut out = format!("\"{name}\"");
            for r in rest {
                out.push(' ');
                out.push_str(r);
            }
            out
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl MigrationsArgs {
    /// The files to write: relative path → content.
    pub fn render(&self, templates: &Templates) -> anyhow::Result<Vec<(PathBuf, String)>> {
        let start = match &self.timestamp {
            Some(t) => chrono::NaiveDateTime::parse_from_str(t, "%Y%m%d%H%M%S")
                .map_err(|_| anyhow::anyhow!("--timestamp {t:?} is not YYYYMMDDHHMMSS"))?,
            None => chrono::Utc::now().naive_utc(),
        };
        let mut files = Vec::new();
        for (i, spec) in INDEXES.iter().enumerate() {
            let ctx = Ctx {
                index: IndexView {
                    spec,
                    quoted_columns: quote_columns(spec.columns),
                },
            };
            let (path, template) = if self.format == "prisma" {
                let ts = (start + chrono::Duration::seconds(i as i64)).format("%Y%m%d%H%M%S");
                (
                    Path::new("prisma/migrations")
                        .join(format!("{ts}_{}", spec.name))
                        .join("migration.sql"),
                    "migrations/prisma.sql.j2",
                )
            } else {
                (
                    PathBuf::from(format!(
                        "{:04}_{}.sql",
                        self.first_version + i as u32,
                        spec.name
                    )),
                    "migrations/sqlx.sql.j2",
                )
            };
            files.push((path, templates.render(template, ctx)?));
        }
        Ok(files)
    }

    pub fn run(self, templates: &Templates) -> anyhow::Result<()> {
        for (path, content) in self.render(templates)? {
            super::write_output(Some(&self.output.join(path)), &content)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(format: &str) -> MigrationsArgs {
        MigrationsArgs {
            format: format.into(),
            output: ".".into(),
            first_version: 2,
            timestamp: Some("20260101000000".into()),
        }
    }

    /// The statement of a migration file, comments and layout aside.
    fn statement(sql: &str) -> String {
        sql.lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .flat_map(str::split_whitespace)
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn sqlx_output_matches_the_committed_migrations() {
        let files = args("sqlx")
            .render(&Templates::load(None).unwrap())
            .unwrap();
        let committed = [
            include_str!("../../../migrations/postgres/0002_idx_notifications_user_status.sql"),
            include_str!("../../../migrations/postgres/0003_idx_messages_room_created.sql"),
            include_str!("../../../migrations/postgres/0004_idx_chat_rooms_users.sql"),
            include_str!("../../../migrations/postgres/0005_idx_chat_rooms_user2.sql"),
        ];
        assert_eq!(files.len(), 4);
        for ((path, content), committed) in files.iter().zip(committed) {
            assert!(content.starts_with("-- no-transaction\n"), "{path:?}");
            assert_eq!(statement(content), statement(committed), "{path:?}");
            assert_eq!(content.matches(';').count(), 1, "one statement in {path:?}");
        }
        assert_eq!(
            files[0].0,
            PathBuf::from("0002_idx_notifications_user_status.sql")
        );
    }

    #[test]
    fn prisma_layout_quotes_identifiers() {
        let files = args("prisma")
            .render(&Templates::load(None).unwrap())
            .unwrap();
        assert_eq!(
            files[1].0,
            PathBuf::from(
                "prisma/migrations/20260101000001_idx_messages_room_created/migration.sql"
            )
        );
        assert!(files[1]
            .1
            .contains(r#"ON "messages" ("room_id", "created_at" DESC);"#));
        assert!(files[2]
            .1
            .contains("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"idx_chat_rooms_users\""));
        assert!(!files[0].1.contains("no-transaction"));
    }
}
