//! The PostgreSQL implementation: a connection pool, TLS through rustls, migrations under an
//! advisory lock, and transactions that behave like SQLite's one writer.
//!
//! Every write runs in a `SERIALIZABLE` transaction and is retried (a few times, after a short
//! pause) when PostgreSQL reports a serialization failure or a deadlock: the outcome is as if writes
//! ran one at a time, which is what the SQLite backend gives with its single writer, so both
//! backends keep the same guarantees without a per-query argument. The claims of due work (outbox
//! rows, reconciliations) are the exception: they take rows with `FOR UPDATE SKIP LOCKED`, so that
//! workers on several replicas claim disjoint rows without waiting for each other.

mod changes;
mod configurations;
mod leases;
mod migrations;
mod outbox;
mod pending;
mod report;
mod sessions;
mod tenants;
mod user_links;
mod visits;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;

use crate::StoreError;

pub use migrations::MigrationReport;

/// How often a write is retried after a serialization failure or deadlock.
pub(crate) const MAX_TRANSACTION_RETRIES: u32 = 10;

/// How a [`PostgresStore`] connects, beyond its URL.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections the pool keeps at most (per process). Two services with a few workers each are
    /// served well by the default, 16; the server's `max_connections` must exceed the sum over all
    /// replicas.
    pub max_connections: usize,
    /// How long taking a connection from the pool may wait, connecting included.
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// All repositories on one PostgreSQL database, shared by any number of processes.
///
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    target: Arc<str>,
    changes: Arc<changes::ChangeFeed>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and brings its schema up to date (under an advisory
    /// lock, so replicas starting together migrate once).
    ///
    /// `url` is a libpq-style URL, `postgres://user:password@host:port/database?sslmode=require`.
    /// `sslmode` is `disable`, `prefer` or `require`; without it, TLS is required unless the host
    /// is a loopback address or a Unix socket. With TLS, the server's certificate is always
    /// verified (chain and host name, like libpq's `verify-full`) against the system's roots, or
    /// against the PEM file named by `sslrootcert` (for a managed service's CA bundle).
    pub async fn connect(url: &str, options: &PostgresOptions) -> Result<Self, StoreError> {
        let store = Self::connect_without_migrating(url, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema: for operators who migrate with a separate command
    /// before rolling out, and for that command. Fails if the database cannot be reached.
    pub async fn connect_without_migrating(
        url: &str,
        options: &PostgresOptions,
    ) -> Result<Self, StoreError> {
        let target = ConnectTarget::parse(url)?;
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(target.tls_config()?);
        let changes = changes::ChangeFeed::new(target.config.clone(), tls.clone(), origin_token());
        let manager = Manager::from_config(
            target.config.clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.acquire_timeout))
            .recycle_timeout(Some(options.acquire_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::DatabaseUrl {
                reason: "the connection pool could not be built",
                source: Some(Box::new(e)),
            })?;
        let store = Self {
            pool,
            target: target.display.into(),
            changes,
        };
        // Fail at start-up, not at the first request.
        drop(store.client().await?);
        Ok(store)
    }

    /// Applies the migrations not yet applied, under an advisory lock; what it did.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut client = self.client().await?;
        migrations::migrate(&mut client).await
    }

    /// The schema version (the number of migrations applied).
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let client = self.client().await?;
        migrations::current_version(&client).await
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }
}

/// A token telling this store's notices from other processes' (unique enough: process id, time
/// and a counter).
fn origin_token() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

/// Runs `$body` in a `SERIALIZABLE` transaction bound to `$tx`, committing if it gives `Ok`, and
/// runs it again from the start after a serialization failure or deadlock (see the module doc).
/// `$body` may `return` its result early; a `return`ed `Ok` commits too.
macro_rules! serializable {
    ($store:expr, |$tx:ident| $body:expr) => {
        $crate::postgres::transaction!(
            $store,
            ::tokio_postgres::IsolationLevel::Serializable,
            |$tx| $body
        )
    };
}
pub(crate) use serializable;

/// Runs `$body` in a transaction of the given isolation level bound to `$tx`, committing if it
/// gives `Ok`, and runs it again from the start after a serialization failure or deadlock.
macro_rules! transaction {
    ($store:expr, $isolation:expr, |$tx:ident| $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            let mut client = $store.client().await?;
            let outcome: Result<_, $crate::StoreError> = async {
                let $tx = client
                    .build_transaction()
                    .isolation_level($isolation)
                    .start()
                    .await?;
                let value: Result<_, $crate::StoreError> = async { $body }.await;
                let value = value?;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match outcome {
                Err(e)
                    if $crate::postgres::is_transient(&e)
                        && attempt < $crate::postgres::MAX_TRANSACTION_RETRIES =>
                {
                    attempt += 1;
                    ::tokio::time::sleep($crate::postgres::retry_pause(attempt)).await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use transaction;

/// Whether a failed transaction may succeed when run again from the start.
pub(crate) fn is_transient(e: &StoreError) -> bool {
    match e {
        StoreError::Postgres(e) => matches!(
            e.code(),
            Some(&SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED)
        ),
        _ => false,
    }
}

/// The pause before retry `attempt` (from 1): up to 8 ms, 16 ms, … 128 ms, with full jitter,
/// so that transactions that failed together do not retry together. A pause spread only by the
/// process id, as before, had every task of one process retry in lockstep: under 64 concurrent
/// launches they kept conflicting until the retries ran out.
pub(crate) fn retry_pause(attempt: u32) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    let cap = 4u64 << attempt.min(5);
    // A fresh randomly keyed hasher per call: a random number without another dependency.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(1 + random % cap)
}

/// Which constraint a failed statement violated, by its name.
pub(crate) fn violated_constraint(e: &tokio_postgres::Error) -> Option<(Violation, &str)> {
    let db = e.as_db_error()?;
    let kind = match *db.code() {
        SqlState::UNIQUE_VIOLATION => Violation::Unique,
        SqlState::FOREIGN_KEY_VIOLATION => Violation::ForeignKey,
        _ => return None,
    };
    Some((kind, db.constraint().unwrap_or("")))
}

/// A kind of constraint violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    Unique,
    ForeignKey,
}

/// A parsed database URL: the driver's configuration, TLS roots, and a display form without the
/// password.
struct ConnectTarget {
    config: tokio_postgres::Config,
    root_certificate_file: Option<String>,
    display: String,
}

impl ConnectTarget {
    fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = |reason| StoreError::DatabaseUrl {
            reason,
            source: None,
        };
        let mut parsed = url::Url::parse(url).map_err(|e| StoreError::DatabaseUrl {
            reason: "the database URL is not a URL",
            source: Some(Box::new(e)),
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(invalid("a PostgreSQL URL starts with postgres://"));
        }
        // `sslrootcert` is libpq's; the driver does not know it.
        let mut root_certificate_file = None;
        let mut has_ssl_mode = false;
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter_map(|(k, v)| {
                if k == "sslrootcert" {
                    root_certificate_file = Some(v.into_owned());
                    return None;
                }
                has_ssl_mode |= k == "sslmode";
                Some((k.into_owned(), v.into_owned()))
            })
            .collect();
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        let mut config = tokio_postgres::Config::from_str(parsed.as_str()).map_err(|e| {
            StoreError::DatabaseUrl {
                reason: "the database URL has an unknown or invalid setting",
                source: Some(Box::new(e)),
            }
        })?;
        if !has_ssl_mode {
            let local = config.get_hosts().iter().all(|host| match host {
                Host::Tcp(name) => {
                    name == "localhost"
                        || name
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                }
                Host::Unix(_) => true,
            });
            config.ssl_mode(if local {
                SslMode::Prefer
            } else {
                SslMode::Require
            });
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("visitbridge");
        Ok(Self {
            config,
            root_certificate_file,
            display: crate::open::redacted(parsed.as_str()),
        })
    }

    /// rustls on aws-lc-rs, verifying against `sslrootcert` or the system's roots.
    fn tls_config(&self) -> Result<rustls::ClientConfig, StoreError> {
        let tls_error =
            |reason, e: Box<dyn std::error::Error + Send + Sync>| StoreError::DatabaseUrl {
                reason,
                source: Some(e),
            };
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_certificate_file {
            Some(path) => {
                use rustls_pki_types::pem::PemObject;
                let certificates = rustls_pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| tls_error("the sslrootcert file cannot be read", Box::new(e)))?;
                for certificate in certificates {
                    let certificate = certificate.map_err(|e| {
                        tls_error(
                            "the sslrootcert file holds an invalid certificate",
                            Box::new(e),
                        )
                    })?;
                    roots.add(certificate).map_err(|e| {
                        tls_error(
                            "the sslrootcert file holds an unusable certificate",
                            Box::new(e),
                        )
                    })?;
                }
                if roots.is_empty() {
                    return Err(StoreError::DatabaseUrl {
                        reason: "the sslrootcert file holds no certificate",
                        source: None,
                    });
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 && self.config.get_ssl_mode() == SslMode::Require {
                    tracing::warn!(
                        "no system root certificates were found: TLS connections to the database \
                         will fail; name a CA bundle with sslrootcert"
                    );
                }
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS could not be set up", Box::new(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// Reads columns of a PostgreSQL row for the shared record types.
impl crate::records::Columns for tokio_postgres::Row {
    type Error = tokio_postgres::Error;
    fn text(&self, index: usize) -> Result<String, Self::Error> {
        self.try_get(index)
    }
    fn opt_text(&self, index: usize) -> Result<Option<String>, Self::Error> {
        self.try_get(index)
    }
    fn int(&self, index: usize) -> Result<i64, Self::Error> {
        self.try_get(index)
    }
    fn opt_int(&self, index: usize) -> Result<Option<i64>, Self::Error> {
        self.try_get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_hosts_require_tls_unless_told_otherwise_and_passwords_are_not_shown() {
        let remote =
            ConnectTarget::parse("postgres://vb:secret@db.example.org/visitbridge").unwrap();
        assert_eq!(remote.config.get_ssl_mode(), SslMode::Require);
        assert!(!remote.display.contains("secret"), "{}", remote.display);
        let local = ConnectTarget::parse("postgres://vb@127.0.0.1:5432/visitbridge").unwrap();
        assert_eq!(local.config.get_ssl_mode(), SslMode::Prefer);
        let told = ConnectTarget::parse("postgres://vb@db.example.org/visitbridge?sslmode=disable")
            .unwrap();
        assert_eq!(told.config.get_ssl_mode(), SslMode::Disable);
        let bundle = ConnectTarget::parse(
            "postgresql://vb@db.example.org/vb?sslmode=require&sslrootcert=/etc/ssl/rds.pem",
        )
        .unwrap();
        assert_eq!(
            bundle.root_certificate_file.as_deref(),
            Some("/etc/ssl/rds.pem")
        );
        assert!(ConnectTarget::parse("mysql://x/y").is_err());
        assert!(ConnectTarget::parse("postgres://x/y?sslmode=sometimes").is_err());
    }
}
