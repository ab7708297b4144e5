//! Embedded migrations, one directory per backend (`migrations/postgres`,
//! `migrations/sqlite`), with the same versions in both.
//!
//! sqlx's `Migrator` does the work: a session advisory lock on PostgreSQL (one migrator
//! at a time), checksums of applied files, and files starting with `-- no-transaction`
//! run outside a transaction, which `CREATE INDEX CONCURRENTLY` requires. Around it this
//! module records what it applied and, on PostgreSQL, looks for INVALID indexes: an
//! interrupted concurrent build leaves one behind, the migration is retried, and its
//! `IF NOT EXISTS` then skips the broken index silently.

use super::{Db, StoreError};
use serde::Serialize;
use sqlx::migrate::{Migrate, Migrator};
use std::collections::HashSet;
use std::time::{Duration, Instant};

static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// What one `migrate` run did.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    pub backend: &'static str,
    /// Applied by this run, in order.
    pub applied: Vec<AppliedMigration>,
    /// Migrations this binary knows that were applied before this run.
    pub already_applied: usize,
    /// PostgreSQL indexes marked INVALID (an interrupted `CONCURRENTLY` build). The
    /// queries cannot use them; see [`MigrationReport::invalid_index_help`].
    pub invalid_indexes: Vec<String>,
    #[serde(rename = "elapsed_seconds", serialize_with = "seconds")]
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
    #[serde(rename = "elapsed_seconds", serialize_with = "seconds")]
    pub elapsed: Duration,
}

impl MigrationReport {
    /// How to repair the invalid indexes, or `None` when there are none.
    pub fn invalid_index_help(&self) -> Option<String> {
        if self.invalid_indexes.is_empty() {
            return None;
        }
        Some(format!(
            "invalid indexes (an interrupted CREATE INDEX CONCURRENTLY): {names}. For each, run \
             `DROP INDEX CONCURRENTLY <name>;`, delete its row from _sqlx_migrations \
             (`DELETE FROM _sqlx_migrations WHERE version = <N>;`) and run `rtctl migrate` again",
            names = self.invalid_indexes.join(", ")
        ))
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The migrations this binary carries for `db`'s backend.
fn migrator(db: &Db) -> &'static Migrator {
    match db {
        Db::Postgres(_) => &POSTGRES,
        Db::Sqlite(_) => &SQLITE,
    }
}

/// Applies pending migrations to `db` (the primary).
pub(super) async fn run(db: &Db) -> Result<MigrationReport, StoreError> {
    let started = Instant::now();
    let migrator = migrator(db);

    let before: HashSet<i64> = with_pool!(db, DB, pool => {
        let mut conn = pool.acquire().await?;
        conn.ensure_migrations_table().await?;
        conn.list_applied_migrations().await?
    })
    .into_iter()
    .map(|m| m.version)
    .collect();

    match db {
        Db::Postgres(pool) => migrator.run(pool).await?,
        Db::Sqlite(pool) => migrator.run(pool).await?,
    }

    // sqlx records each migration's execution time in nanoseconds.
    let timings: Vec<(i64, i64)> = with_pool!(db, DB, pool => {
        sqlx::query_as::<DB, (i64, i64)>(
            "SELECT version, execution_time FROM _sqlx_migrations WHERE success",
        )
        .fetch_all(pool)
        .await?
    });
    let applied = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !before.contains(&m.version))
        .filter_map(|m| {
            let nanos = timings.iter().find(|(v, _)| *v == m.version)?.1;
            Some(AppliedMigration {
                version: m.version,
                description: m.description.to_string(),
                elapsed: Duration::from_nanos(nanos.max(0) as u64),
            })
        })
        .collect();
    let already_applied = migrator
        .iter()
        .filter(|m| before.contains(&m.version))
        .count();

    let invalid_indexes = match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar::<_, String>(
                "SELECT c.relname::text FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indexrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE NOT i.indisvalid AND n.nspname = current_schema()
                 ORDER BY 1",
            )
            .fetch_all(pool)
            .await?
        }
        Db::Sqlite(_) => Vec::new(),
    };

    Ok(MigrationReport {
        backend: db.backend().as_str(),
        applied,
        already_applied,
        invalid_indexes,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_carry_the_same_versions() {
        let pg: Vec<i64> = POSTGRES.iter().map(|m| m.version).collect();
        let lite: Vec<i64> = SQLITE.iter().map(|m| m.version).collect();
        assert_eq!(pg, lite);
        assert!(pg.len() >= 4);
    }

    #[test]
    fn postgres_index_migrations_run_outside_a_transaction() {
        for m in POSTGRES.iter() {
            let code: String = m
                .sql
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            if code.contains("CONCURRENTLY") {
                assert!(
                    m.no_tx,
                    "{} must start with `-- no-transaction`",
                    m.description
                );
                assert_eq!(
                    code.matches(';').count(),
                    1,
                    "{}: one statement per file",
                    m.description
                );
            } else {
                assert!(!m.no_tx, "{} runs in a transaction", m.description);
            }
        }
    }
}
