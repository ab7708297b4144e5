//! `rtctl migrate`: apply pending migrations to the primary database, and say what ran.
//!
//! This is how production migrates PostgreSQL: once, from one process, before (or while)
//! the nodes roll out; the index migrations build CONCURRENTLY, so writes go on. The
//! embedded SQLite default migrates at server start instead. A read replica follows by
//! replication and is not contacted.
//!
//! Exit codes: 0 migrated (or nothing to do), 2 cannot connect, a migration failed, or an
//! index is left INVALID.

use crate::store::{MigrationReport, Store, StoreArgs};

#[derive(clap::Args, Debug)]
pub struct MigrateCommand {
    #[command(flatten)]
    store: StoreArgs,

    /// Output format: text for people, json for machines.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

impl MigrateCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        // The primary only (a replica follows by replication), and no migration inside
        // connect: this command runs it and reports it.
        let args = StoreArgs {
            database_read_replica_url: None,
            db_auto_migrate: Some(false),
            ..self.store
        };
        // Display of the URL hides its password.
        let url = &args.database_url;
        let store = Store::connect(&args)
            .await
            .map_err(|e| one_line(&e, format!("cannot connect to {url}")))?;
        let report = store.migrate().await;
        store.close().await;
        let report = report.map_err(|e| one_line(&e, format!("migrating {url} failed")))?;

        if self.format == "json" {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", text(&url.to_string(), &report));
        }
        match report.invalid_index_help() {
            Some(help) => anyhow::bail!(help),
            None => Ok(()),
        }
    }
}

/// `context: error: cause: cause`, leaving out a cause its parent already quoted (sqlx's
/// I/O error says "error communicating with database: Connection refused", then its
/// source says "Connection refused" again).
fn one_line(err: &(dyn std::error::Error + 'static), context: String) -> anyhow::Error {
    let mut line = context;
    let mut previous = String::new();
    let mut cause = Some(err);
    while let Some(e) = cause {
        let text = e.to_string();
        if !previous.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        previous = text;
        cause = e.source();
    }
    anyhow::anyhow!(line)
}

fn text(url: &str, report: &MigrationReport) -> String {
    let mut out = String::new();
    if report.applied.is_empty() {
        out.push_str(&format!(
            "{url}: up to date ({} migrations applied before)\n",
            report.already_applied
        ));
        return out;
    }
    out.push_str(&format!(
        "{url}: applied {} migration{} in {:.2} s ({} applied before)\n",
        report.applied.len(),
        if report.applied.len() == 1 { "" } else { "s" },
        report.elapsed.as_secs_f64(),
        report.already_applied,
    ));
    let width = report
        .applied
        .iter()
        .map(|m| m.description.len())
        .max()
        .unwrap_or(0);
    for m in &report.applied {
        out.push_str(&format!(
            "  {:04}  {:<width$}  {:>8.1} ms\n",
            m.version,
            m.description,
            m.elapsed.as_secs_f64() * 1000.0,
        ));
    }
    out
}
