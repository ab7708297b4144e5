//! Store settings: flags with environment twins, parsed without I/O.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The embedded default: a SQLite file in the working directory, created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://realtime.db?mode=rwc";

/// Database settings. The server flattens these into its own arguments; `rtctl migrate`
/// uses them alone.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Primary database: `postgres://user:pass@host:5432/db` or `sqlite:path`. Writes and
    /// read-your-writes go here. The default is a SQLite file in the working directory.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,

    /// PostgreSQL read replica for reads that may lag (message history, notification
    /// lists). Ignored for SQLite.
    #[arg(long, env = "DATABASE_READ_REPLICA_URL", hide_env_values = true)]
    pub database_read_replica_url: Option<DatabaseUrl>,

    /// Most connections each pool (primary, replica) opens.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_pool_size: u32,

    /// Milliseconds to wait for a pooled connection before failing with `db_unavailable`.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value_t = 2_000)]
    pub db_acquire_timeout: u64,

    /// Milliseconds a statement may run (PostgreSQL `statement_timeout`; SQLite
    /// `busy_timeout`, how long a write waits for the lock).
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", default_value_t = 5_000)]
    pub db_statement_timeout: u64,

    /// Apply pending migrations at start. Default: on for SQLite, off for PostgreSQL, where
    /// production migrates once with `rtctl migrate` (N nodes building CONCURRENTLY indexes
    /// at once would wait on each other).
    #[arg(
        long,
        env = "DB_AUTO_MIGRATE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub db_auto_migrate: Option<bool>,
}

impl Default for StoreArgs {
    /// The embedded default, as with no flags and no environment.
    fn default() -> Self {
        StoreArgs {
            database_url: DatabaseUrl::new(DEFAULT_DATABASE_URL),
            database_read_replica_url: None,
            db_pool_size: 20,
            db_acquire_timeout: 2_000,
            db_statement_timeout: 5_000,
            db_auto_migrate: None,
        }
    }
}

impl StoreArgs {
    /// Settings for `url` with every other setting at its default.
    pub fn with_url(url: impl Into<String>) -> Self {
        StoreArgs {
            database_url: DatabaseUrl::new(url),
            ..StoreArgs::default()
        }
    }

    /// Whether to migrate at start: the explicit setting, else the backend's default.
    pub fn auto_migrate(&self) -> bool {
        self.db_auto_migrate
            .unwrap_or(matches!(self.database_url.backend(), Ok(Backend::Sqlite)))
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout)
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.db_statement_timeout)
    }
}

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A database URL. It may hold a password, so `Debug` and `Display` show it redacted
/// (`postgres://app:***@db:5432/app`); [`DatabaseUrl::expose`] gives the real one to the
/// driver and to nothing else.
///
/// Parsing accepts any string and [`DatabaseUrl::backend`] judges it later: a parse
/// error from clap would quote the raw value, password included, on stderr.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
}

/// A URL that is neither `postgres://`, `postgresql://` nor `sqlite:`; shown redacted.
#[derive(Debug, thiserror::Error)]
#[error("a database URL starts with postgres://, postgresql:// or sqlite: (got {0})")]
pub struct InvalidUrl(String);

impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl::new(s))
    }
}

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl {
            url: url.into().trim().to_owned(),
        }
    }

    /// Which database the URL points at, from its scheme.
    pub fn backend(&self) -> Result<Backend, InvalidUrl> {
        let s = self.url.as_str();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if s.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err(InvalidUrl(redact(s)))
        }
    }

    /// The URL with its password, for the driver only. Never log or print it.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// An in-memory SQLite database lives as long as its one connection.
    pub(crate) fn is_sqlite_memory(&self) -> bool {
        matches!(self.backend(), Ok(Backend::Sqlite))
            && (self.url.contains(":memory:") || self.url.contains("mode=memory"))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", redact(&self.url))
    }
}

/// `scheme://user:secret@host/db?password=x` → `scheme://user:***@host/db?password=***`.
fn redact(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let rest = match url.find("://") {
        Some(i) => {
            out.push_str(&url[..i + 3]);
            &url[i + 3..]
        }
        None => url,
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            let params: Vec<String> = tail[q + 1..]
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        store: StoreArgs,
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://app:s3cr3t@db.internal:5432/app"),
            "postgres://app:***@db.internal:5432/app"
        );
        assert_eq!(
            redact("postgresql://app:p@ss@db/app?sslmode=require&password=x"),
            "postgresql://app:***@db/app?sslmode=require&password=***"
        );
        assert_eq!(
            redact("postgres://db.internal/app"),
            "postgres://db.internal/app"
        );
        assert_eq!(
            redact("postgres://app@db.internal/app"),
            "postgres://app@db.internal/app"
        );
        assert_eq!(
            redact("sqlite://realtime.db?mode=rwc"),
            "sqlite://realtime.db?mode=rwc"
        );
        let url: DatabaseUrl = "postgres://u:hunter2@h/d".parse().unwrap();
        assert!(!format!("{url} {url:?}").contains("hunter2"));
    }

    #[test]
    fn rejects_other_schemes_without_echoing_secrets() {
        // clap accepts it (its error would quote the password); backend() refuses it.
        let cli = Cli::try_parse_from(["t", "--database-url", "mysql://u:hunter2@h/d"]).unwrap();
        let err = cli.store.database_url.backend().unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("mysql://u:***@h/d"), "{err}");
    }

    #[test]
    fn defaults_and_auto_migrate() {
        // The environment twins would override what this test checks.
        let twins = ["DATABASE_URL", "DB_POOL_SIZE", "DB_AUTO_MIGRATE"];
        if twins.iter().any(|v| std::env::var_os(v).is_some()) {
            return;
        }
        let cli = Cli::try_parse_from(["t"]).unwrap();
        assert_eq!(cli.store.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(cli.store.database_url.backend().unwrap(), Backend::Sqlite);
        assert_eq!(cli.store.db_pool_size, 20);
        assert!(cli.store.auto_migrate());

        let cli = Cli::try_parse_from(["t", "--database-url", "postgres://h/d"]).unwrap();
        assert!(!cli.store.auto_migrate());
        let cli =
            Cli::try_parse_from(["t", "--database-url", "postgres://h/d", "--db-auto-migrate"])
                .unwrap();
        assert!(cli.store.auto_migrate());
        let cli = Cli::try_parse_from(["t", "--db-auto-migrate=false"]).unwrap();
        assert!(!cli.store.auto_migrate());
        assert!(Cli::try_parse_from(["t", "--db-pool-size", "0"]).is_err());
    }
}
