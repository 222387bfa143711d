//! Shared set-up: a store on a temporary file, tenants, and configurations in various states.

use chrono::{DateTime, Duration, TimeZone, Utc};
use tempfile::TempDir;
use visitbridge_approval::*;
use visitbridge_store::*;

/// A store on a fresh file; keep the directory alive as long as the store.
pub(crate) async fn store() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("vb.sqlite"))
        .await
        .unwrap();
    (store, dir)
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
pub(crate) async fn with_tenant(store: &SqliteStore, name: &str) -> TenantId {
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
    store: &SqliteStore,
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
pub(crate) async fn approve(store: &SqliteStore, config: Configuration) -> Configuration {
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
