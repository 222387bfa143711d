//! The store's error type.

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record changed since it was read (optimistic concurrency); reload and retry.
    #[error("the {what} was changed by someone else; reload it and try again")]
    Conflict {
        /// What changed, e.g. "configuration".
        what: &'static str,
    },
    /// A record with the same unique key exists.
    #[error("{0}")]
    AlreadyExists(&'static str),
    /// Another organisation holds the configuration's FHIR base URL and environment: it has a
    /// configuration for them that is not rejected, or an approved version of one. One FHIR base
    /// URL and environment belongs to one organisation.
    #[error(
        "another organisation already has a configuration for this FHIR base URL and environment; \
         a FHIR base URL belongs to one organisation: check the URL, or ask VisitBridge's operator \
         if it is really yours"
    )]
    HeldByAnotherTenant,
    /// The record to change does not exist.
    #[error("the {what} does not exist")]
    NotFound {
        /// What was missing, e.g. "configuration".
        what: &'static str,
    },
    /// The folder of a SQLite file could not be created.
    #[error("cannot create the database folder {path}")]
    Folder {
        /// The folder.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The referenced tenant does not exist.
    #[error("the tenant does not exist")]
    UnknownTenant,
    /// The caller passed something the store cannot keep as it is.
    #[error("invalid record: {0}")]
    InvalidRecord(&'static str),
    /// A stored record could not be decoded. The detail names the kind of failure and where,
    /// never the stored content.
    #[error("stored {what} could not be decoded ({detail})")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// The kind of failure and its position.
        detail: String,
    },
    /// The database refused the operation.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused the operation, or the connection to it failed. Displayed with the
    /// server's SQLSTATE, not its message (which may quote the row's values); the message is in
    /// the source.
    #[error("database error: {}", postgres_summary(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be taken from the pool in time (the database is unreachable, or
    /// every connection is busy).
    #[error("no database connection is available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The database URL or its TLS settings cannot be used.
    #[error("{reason}")]
    DatabaseUrl {
        /// What is wrong, for the operator.
        reason: &'static str,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The database's schema is newer than this program knows (a newer release migrated it).
    #[error(
        "the database schema is at version {found}, newer than this release's {known}: run the          newer release, or restore a backup taken before it migrated"
    )]
    SchemaTooNew {
        /// The version found.
        found: u32,
        /// The newest version this program knows.
        known: u32,
    },
    /// Bringing the schema up to date failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// The blocking task running the operation failed (panicked or was cancelled).
    #[error("storage task failed")]
    Task,
}

impl StoreError {
    pub(crate) fn corrupt(what: &'static str, e: &serde_json::Error) -> Self {
        Self::Corrupt {
            what,
            detail: format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        }
    }
}

/// `db error (SQLSTATE 40001)` for an error the server answered; the client's own words
/// otherwise (a closed connection, a timeout).
fn postgres_summary(e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(code) => format!("{e} (SQLSTATE {})", code.code()),
        None => e.to_string(),
    }
}
