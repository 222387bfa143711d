//! Choosing the backend from the configured database URL.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{MigrationReport, PostgresOptions, PostgresStore, SqliteStore, Store, StoreError};

/// Where the data lives, as configured: `sqlite:///path/to/file` (or a bare path) for the
/// embedded default, `postgres://…` (or `postgresql://…`) for a shared PostgreSQL.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum DatabaseLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (see [`PostgresStore::connect`] for its settings).
    Postgres(String),
}

impl DatabaseLocation {
    /// Parses a configured value.
    pub fn parse(value: &str) -> Result<Self, StoreError> {
        let value = value.trim();
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(Self::Postgres(value.to_owned()));
        }
        // A mistyped URL must not become a SQLite file named after it (and be printed, password
        // and all, as that file's path).
        let before_slash = value.split('/').next().unwrap_or_default();
        if lower.starts_with("postgres")
            || (before_slash.contains(':') && before_slash.contains('@'))
        {
            return Err(StoreError::DatabaseUrl {
                reason: "this looks like a mistyped PostgreSQL URL: it starts with postgres://",
                source: None,
            });
        }
        if let Some(path) = value.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::DatabaseUrl {
                    reason: "a sqlite:// URL needs a file path, e.g. sqlite:///var/lib/visitbridge/visitbridge.sqlite",
                    source: None,
                });
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some(path) = value.strip_prefix("sqlite:") {
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if value.contains("://") {
            return Err(StoreError::DatabaseUrl {
                reason: "the database must be a sqlite:// path or a postgres:// URL",
                source: None,
            });
        }
        if value.is_empty() {
            return Err(StoreError::DatabaseUrl {
                reason: "the database setting is empty",
                source: None,
            });
        }
        Ok(Self::Sqlite(PathBuf::from(value)))
    }

    /// The SQLite file, if it is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }

    /// Opens the store, bringing its schema up to date (a SQLite file's folder is created if
    /// missing).
    pub async fn open(&self, options: &PostgresOptions) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Self::Sqlite(path) => {
                create_folder_of(path)?;
                Arc::new(SqliteStore::open(path).await?)
            }
            Self::Postgres(url) => Arc::new(PostgresStore::connect(url, options).await?),
        })
    }

    /// Brings the schema up to date and stops: for operators who migrate before rolling out.
    pub async fn migrate(&self, options: &PostgresOptions) -> Result<MigrationReport, StoreError> {
        match self {
            Self::Sqlite(path) => {
                create_folder_of(path)?;
                let from = SqliteStore::version_of_file(path).await?;
                let to = SqliteStore::open(path).await?.schema_version().await?;
                Ok(MigrationReport { from, to })
            }
            Self::Postgres(url) => {
                PostgresStore::connect_without_migrating(url, options)
                    .await?
                    .migrate()
                    .await
            }
        }
    }
}

/// Creates the folder a SQLite file goes in, if missing.
fn create_folder_of(path: &std::path::Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.display().to_string(),
                source,
            })
        }
        _ => Ok(()),
    }
}

impl TryFrom<String> for DatabaseLocation {
    type Error = StoreError;
    fn try_from(value: String) -> Result<Self, StoreError> {
        Self::parse(&value)
    }
}

impl std::str::FromStr for DatabaseLocation {
    type Err = StoreError;
    fn from_str(value: &str) -> Result<Self, StoreError> {
        Self::parse(value)
    }
}

/// A SQLite file.
impl From<PathBuf> for DatabaseLocation {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

/// Never shows a password.
impl fmt::Debug for DatabaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// The location without its password, for logs and start-up banners.
impl fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

/// Settings of a PostgreSQL URL's query that carry a secret.
const SECRET_SETTINGS: &[&str] = &["password", "sslpassword"];

/// A database URL with its secrets (the user-info password, `?password=`, `?sslpassword=`)
/// replaced by `***`: what logs, banners and errors may show.
pub(crate) fn redacted(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "postgres://(unparsable URL)".to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_SETTINGS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (
                    k.into_owned(),
                    if secret { "***".into() } else { v.into_owned() },
                )
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_follows_the_url_and_passwords_are_never_shown() {
        assert_eq!(
            DatabaseLocation::parse("visitbridge.sqlite").unwrap(),
            DatabaseLocation::Sqlite("visitbridge.sqlite".into())
        );
        assert_eq!(
            DatabaseLocation::parse("sqlite:///var/lib/vb.sqlite").unwrap(),
            DatabaseLocation::Sqlite("/var/lib/vb.sqlite".into())
        );
        let pg = DatabaseLocation::parse("postgres://vb:hunter2@db.example.org/vb").unwrap();
        assert!(matches!(pg, DatabaseLocation::Postgres(_)));
        assert!(!pg.to_string().contains("hunter2"), "{pg}");
        assert!(!format!("{pg:?}").contains("hunter2"), "{pg:?}");
        // libpq also takes the password (and a client key's) as settings.
        let pg = DatabaseLocation::parse(
            "postgres://vb@db.example.org/vb?sslmode=require&password=hunter2&sslpassword=k3y",
        )
        .unwrap();
        let shown = pg.to_string();
        assert!(
            !shown.contains("hunter2") && !shown.contains("k3y"),
            "{shown}"
        );
        assert!(
            shown.contains("sslmode=require") && shown.contains("password=***"),
            "{shown}"
        );
        assert!(DatabaseLocation::parse("mysql://db/vb").is_err());
        // Mistyped URLs are refused, not taken for a file named after them.
        assert!(DatabaseLocation::parse("postgres;//vb:hunter2@db/vb").is_err());
        assert!(DatabaseLocation::parse("vb:hunter2@db.example.org/vb").is_err());
        assert!(matches!(
            DatabaseLocation::parse("POSTGRES://vb@db/vb"),
            Ok(DatabaseLocation::Postgres(_))
        ));
        assert!(DatabaseLocation::parse("sqlite://").is_err());
        assert!(DatabaseLocation::parse("  ").is_err());
    }
}
