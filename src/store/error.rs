//! The store's one error type, and the one place that maps driver errors onto it.
//!
//! `Display` strings are safe to show a client: they never carry SQL, a database message
//! or a URL. The driver error stays reachable as the `source()` for logs.

use sqlx::error::ErrorKind;
use sqlx::migrate::MigrateError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection within the acquire timeout, the connection broke, or the server is
    /// shutting down / starting up / refusing connections. Retrying later may work.
    #[error("database unavailable")]
    Unavailable(#[source] Option<sqlx::Error>),

    /// A statement ran past the statement timeout and was cancelled.
    #[error("database timeout")]
    Timeout(#[source] sqlx::Error),

    /// The row (or the row a foreign key points at, e.g. a message's room) does not exist.
    #[error("not found")]
    NotFound,

    /// A unique constraint refused the write.
    #[error("conflict")]
    Conflict(#[source] sqlx::Error),

    /// The caller asked for something the schema does not allow.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),

    /// A setting that cannot work (a malformed URL, …). Reported at start, not to clients.
    #[error("invalid database configuration: {0}")]
    Config(String),

    /// A migration failed or the applied migrations do not match this binary's.
    #[error("database migration failed")]
    Migrate(#[source] MigrateError),

    /// Anything else the database said.
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// A stable code for acks and HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "db_unavailable",
            StoreError::Timeout(_) => "db_timeout",
            StoreError::NotFound => "not_found",
            StoreError::Conflict(_) => "conflict",
            StoreError::InvalidInput(_) => "invalid_input",
            StoreError::Config(_) => "db_config",
            StoreError::Migrate(_) => "db_migrate",
            StoreError::Database(_) => "db_error",
        }
    }

    /// Worth retrying later (the database, not the request, is the problem).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Timeout(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &err {
            E::RowNotFound => StoreError::NotFound,
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
                StoreError::Unavailable(Some(err))
            }
            E::Database(db) => {
                let code = db.code();
                let code = code.as_deref().unwrap_or("");
                match db.kind() {
                    ErrorKind::UniqueViolation => return StoreError::Conflict(err),
                    ErrorKind::ForeignKeyViolation => return StoreError::NotFound,
                    ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                        return StoreError::InvalidInput("rejected by a schema constraint")
                    }
                    _ => {}
                }
                // The two backends' codes overlap as numbers ("22021" & 0xff is SQLite's
                // BUSY), so each is read only against its own table.
                let postgres = db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some();
                let unavailable = if postgres {
                    is_pg_unavailable(code)
                } else {
                    is_sqlite_unavailable(code)
                };
                if unavailable {
                    StoreError::Unavailable(Some(err))
                } else if postgres && code.starts_with("22") {
                    // Class 22, data exception: a value the column cannot hold (a NUL
                    // byte, an out-of-range number). The request, not the server, is wrong.
                    StoreError::InvalidInput("the database refused a value")
                } else if code == "57014" {
                    // query_canceled: statement_timeout
                    StoreError::Timeout(err)
                } else {
                    StoreError::Database(err)
                }
            }
            _ => StoreError::Database(err),
        }
    }
}

impl From<MigrateError> for StoreError {
    fn from(err: MigrateError) -> Self {
        match err {
            MigrateError::Execute(e) => e.into(),
            other => StoreError::Migrate(other),
        }
    }
}

/// SQLSTATEs meaning "this server cannot serve you now", not "your query is wrong":
/// class 08 (connection exception), 53 (insufficient resources: too many connections,
/// disk full), 57P01–57P03 (admin/crash shutdown, cannot connect now), and 25006
/// (read_only_sql_transaction: a write reached a standby, e.g. during a failover).
fn is_pg_unavailable(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
}

/// SQLite result codes (sqlx reports the extended code as a number): BUSY (5) and
/// LOCKED (6) after busy_timeout, CANTOPEN (14), IOERR (10), FULL (13), READONLY (8).
fn is_sqlite_unavailable(code: &str) -> bool {
    match code.parse::<u32>() {
        Ok(n) => matches!(n & 0xff, 5 | 6 | 8 | 10 | 13 | 14),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            StoreError::from(sqlx::Error::PoolTimedOut).code(),
            "db_unavailable"
        );
        assert_eq!(
            StoreError::from(sqlx::Error::RowNotFound).code(),
            "not_found"
        );
        assert_eq!(
            StoreError::InvalidInput("a room needs two users").code(),
            "invalid_input"
        );
    }

    #[test]
    fn classifies_sqlstates() {
        assert!(is_pg_unavailable("08006"));
        assert!(is_pg_unavailable("57P01"));
        assert!(is_pg_unavailable("53300"));
        assert!(!is_pg_unavailable("42P01"));
        assert!(is_sqlite_unavailable("5"));
        assert!(is_sqlite_unavailable("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(!is_sqlite_unavailable("2067")); // SQLITE_CONSTRAINT_UNIQUE
        assert!(!is_sqlite_unavailable("42P01"));
    }

    #[test]
    fn messages_never_carry_driver_text() {
        let err = StoreError::from(sqlx::Error::Protocol("SELECT secret FROM users".into()));
        assert_eq!(err.to_string(), "database error");
    }
}
