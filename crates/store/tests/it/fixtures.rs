//! Shared set-up: a fresh database on either backend, tenants, and configurations in various
//! states.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use tempfile::TempDir;
use visitbridge_approval::*;
use visitbridge_store::*;

/// A store of either backend.
pub(crate) type AnyStore = Arc<dyn Store>;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database: a SQLite file in a temporary directory, or a new database on the
/// test process's throwaway PostgreSQL server.
pub(crate) struct TestDb {
    pub(crate) backend: Backend,
    dir: Option<TempDir>,
    url: String,
}

impl TestDb {
    pub(crate) async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("vb.sqlite").display().to_string();
        Self {
            backend: Backend::Sqlite,
            dir: Some(dir),
            url,
        }
    }

    pub(crate) async fn postgres() -> Self {
        let server = visitbridge_testpg::shared().unwrap_or_else(|e| panic!("{e}"));
        Self {
            backend: Backend::Postgres,
            dir: None,
            url: server.create_database().await.unwrap(),
        }
    }

    /// A new store on this database with its own connections, as another process would open it.
    pub(crate) async fn open(&self) -> AnyStore {
        match self.backend {
            Backend::Sqlite => Arc::new(SqliteStore::open(&self.url).await.unwrap()),
            Backend::Postgres => Arc::new(
                PostgresStore::connect(&self.url, &PostgresOptions::default())
                    .await
                    .unwrap(),
            ),
        }
    }

    /// The store a test works with (see [`TestDb::open`]).
    pub(crate) async fn store(&self) -> AnyStore {
        self.open().await
    }

    /// Runs one SQL statement directly, around the store (to check what the database itself
    /// refuses); the database's error message on failure.
    pub(crate) async fn execute_raw(&self, sql: &str) -> Result<u64, String> {
        match self.backend {
            Backend::Sqlite => {
                let path = std::path::PathBuf::from(&self.url);
                let sql = sql.to_owned();
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
                    conn.pragma_update(None, "foreign_keys", "ON")
                        .map_err(|e| e.to_string())?;
                    conn.execute(&sql, [])
                        .map(|n| n as u64)
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap()
            }
            Backend::Postgres => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                tokio::spawn(connection);
                client.execute(sql, &[]).await.map_err(|e| {
                    e.as_db_error()
                        .map(|db| db.message().to_owned())
                        .unwrap_or_else(|| e.to_string())
                })
            }
        }
    }

    /// The schema version the database is at.
    pub(crate) async fn schema_version(&self) -> u32 {
        match self.backend {
            Backend::Sqlite => SqliteStore::open(&self.url)
                .await
                .unwrap()
                .schema_version()
                .await
                .unwrap(),
            Backend::Postgres => {
                PostgresStore::connect_without_migrating(&self.url, &PostgresOptions::default())
                    .await
                    .unwrap()
                    .schema_version()
                    .await
                    .unwrap()
            }
        }
    }

    /// The database's URL (a file path for SQLite).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The directory of a SQLite database, kept alive with the value.
    #[allow(dead_code)]
    pub(crate) fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(TempDir::path)
    }
}

pub(crate) fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap() + Duration::minutes(minutes)
}

pub(crate) fn tenant_id(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

pub(crate) fn tenant(name: &str) -> Tenant {
    Tenant {
        id: tenant_id(name),
        name: format!("{name} health"),
        microsoft_tenant_id: MicrosoftTenantId::new(format!("{name}-entra-tid")).unwrap(),
        created_at: at(0),
    }
}

/// Adds tenant `name` to the store.
pub(crate) async fn with_tenant(store: &AnyStore, name: &str) -> TenantId {
    store.insert_tenant(&tenant(name)).await.unwrap();
    tenant_id(name)
}

pub(crate) fn url(s: &str) -> FhirBaseUrl {
    FhirBaseUrl::parse(s, UrlPolicy::STRICT).unwrap()
}

pub(crate) fn settings(fhir: &str, environment: Environment) -> ConfigurationSettings {
    ConfigurationSettings {
        fhir_base_url: url(fhir),
        environment,
        ehr_vendor: visitbridge_approval::EhrVendor::Epic,
        approver: Username::new("analyst@example.org").unwrap(),
        ehr_client: EhrClientSettings {
            client_id: ClientId::new("vb-client").unwrap(),
            patient_client_id: None,
            auth: ClientAuth::PrivateKeyJwt,
            scope_style: ScopeStyle::V1,
            send_epic_client_id_header: false,
        },
    }
}

pub(crate) fn admin(tenant: &TenantId) -> Actor {
    Actor::admin(tenant.clone(), Username::new("admin@example.org").unwrap())
}

pub(crate) fn approver(tenant: &TenantId) -> Actor {
    Actor::approver(
        tenant.clone(),
        Username::new("analyst@example.org").unwrap(),
    )
}

/// Creates a configuration and stores it; returns the stored value.
pub(crate) async fn create(
    store: &AnyStore,
    tenant: &TenantId,
    id: &str,
    fhir: &str,
    environment: Environment,
) -> Configuration {
    let created = Configuration::create(
        &admin(tenant),
        ConfigurationId::new(id).unwrap(),
        settings(fhir, environment),
        at(0),
    )
    .unwrap();
    store.insert_configuration(&created).await.unwrap();
    created.configuration
}

/// Takes a stored configuration through submit, EHR sign-in and approval, storing each step.
pub(crate) async fn approve(store: &AnyStore, config: Configuration) -> Configuration {
    let tenant = config.tenant().clone();
    let url = config.settings().fhir_base_url.clone();
    let t = config.submit(&admin(&tenant), at(1)).unwrap();
    store.update_configuration(&t).await.unwrap();
    let t = t
        .configuration
        .record_ehr_validation(
            &approver(&tenant),
            &url,
            EhrUserId::new("Practitioner/abc").unwrap(),
            at(2),
        )
        .unwrap();
    store.update_configuration(&t).await.unwrap();
    let t = t.configuration.approve(&approver(&tenant), at(3)).unwrap();
    store.update_configuration(&t).await.unwrap();
    t.configuration
}

pub(crate) const URL: &str = "https://ehr.example.org/api/FHIR/R4";
pub(crate) const TEST_URL: &str = "https://ehr-tst.example.org/api/FHIR/R4";
