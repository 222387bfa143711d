//! The repository traits callers program against, and the records they exchange.
//!
//! Method names are distinct across traits so that one type can implement them all without
//! ambiguity, and [`Store`] bundles them for `Arc<dyn Store>`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use visitbridge_approval::{
    Configuration, ConfigurationId, EhrUserId, Environment, FhirBaseUrl, HistoryEntry, TenantId,
    Transitioned,
};

use crate::{AuditStore, MicrosoftObjectId, MicrosoftTenantId, StoreError};

/// An organisation using VisitBridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Our id for it.
    pub id: TenantId,
    /// Its display name.
    pub name: String,
    /// The Microsoft Entra tenant its admins and approvers sign in with.
    pub microsoft_tenant_id: MicrosoftTenantId,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// The link between an EHR user and their Microsoft account, made at their first launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLink {
    /// The EHR's FHIR base URL (the launch's `iss`).
    pub ehr_issuer: FhirBaseUrl,
    /// The EHR user id (`fhirUser`).
    pub ehr_user_id: EhrUserId,
    /// The Microsoft user's Entra tenant.
    pub microsoft_tenant_id: MicrosoftTenantId,
    /// The Microsoft user's object id.
    pub microsoft_object_id: MicrosoftObjectId,
    /// When the link was made or last confirmed.
    pub linked_at: DateTime<Utc>,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSession {
    /// The session's data, opaque to the store.
    pub data: Value,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
}

/// Configurations and their append-only approval history.
///
/// A configuration and the history entry of the transition that produced it are always written
/// together, in one transaction.
#[async_trait]
pub trait ConfigurationRepo: Send + Sync {
    /// Stores a newly created configuration with its creation entry.
    ///
    /// Fails with [`StoreError::AlreadyExists`] if the tenant already has a configuration for the
    /// same FHIR base URL and environment, and [`StoreError::UnknownTenant`] for an unknown tenant.
    ///
    /// A FHIR base URL and environment belong to one organisation: any write that gives them to a
    /// configuration that is not rejected fails with [`StoreError::HeldByAnotherTenant`] while
    /// another tenant holds them (see [`ConfigurationRepo::held_by_another_tenant`]). The check is
    /// made in the write's transaction, so of two concurrent creates one fails.
    async fn insert_configuration(&self, created: &Transitioned) -> Result<(), StoreError>;

    /// Stores a transition of an existing configuration and appends its history entry, if the
    /// stored configuration is still at the revision the transition started from; otherwise fails
    /// with [`StoreError::Conflict`] and changes nothing.
    ///
    /// Approving a FHIR base URL and environment that another configuration already serves fails
    /// with [`StoreError::AlreadyExists`].
    /// A write that gives the configuration a FHIR base URL and environment another tenant holds
    /// fails with [`StoreError::HeldByAnotherTenant`].
    async fn update_configuration(&self, transitioned: &Transitioned) -> Result<(), StoreError>;

    /// Whether a tenant other than `tenant` holds `fhir_base_url` in `environment`: it has a
    /// configuration for them that is not rejected, or whose approved version is for them. For
    /// answering early (before probing the URL); the writes check again.
    async fn held_by_another_tenant(
        &self,
        tenant: &TenantId,
        fhir_base_url: &FhirBaseUrl,
        environment: Environment,
    ) -> Result<bool, StoreError>;

    /// Inserts (revision 1) or updates (any later revision).
    async fn save_configuration(&self, transitioned: &Transitioned) -> Result<(), StoreError> {
        if transitioned.entry.revision == 1 {
            self.insert_configuration(transitioned).await
        } else {
            self.update_configuration(transitioned).await
        }
    }

    /// One configuration of a tenant; `None` if it does not exist *or belongs to another tenant*.
    async fn get_configuration(
        &self,
        tenant: &TenantId,
        id: &ConfigurationId,
    ) -> Result<Option<Configuration>, StoreError>;

    /// All configurations of a tenant, oldest first.
    async fn list_configurations(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<Configuration>, StoreError>;

    /// The configuration whose *approved* version serves this FHIR base URL in this environment:
    /// what a launch from `iss` uses.
    async fn find_approved(
        &self,
        issuer: &FhirBaseUrl,
        environment: Environment,
    ) -> Result<Option<Configuration>, StoreError>;

    /// Every configuration whose approved version serves this FHIR base URL, in any environment
    /// (at most one per environment): to explain a launch that used the other environment's record.
    async fn find_approved_by_issuer(
        &self,
        issuer: &FhirBaseUrl,
    ) -> Result<Vec<Configuration>, StoreError>;

    /// A configuration's history, oldest first; empty if it does not exist or belongs to another
    /// tenant.
    async fn configuration_history(
        &self,
        tenant: &TenantId,
        id: &ConfigurationId,
    ) -> Result<Vec<HistoryEntry>, StoreError>;
}

/// Organisations.
#[async_trait]
pub trait TenantRepo: Send + Sync {
    /// Adds a tenant; [`StoreError::AlreadyExists`] if its id or Microsoft tenant id is taken.
    async fn insert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    /// A tenant by id.
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;
    /// The tenant whose people sign in with this Microsoft tenant.
    async fn tenant_by_microsoft_id(
        &self,
        microsoft_tenant_id: &MicrosoftTenantId,
    ) -> Result<Option<Tenant>, StoreError>;
    /// All tenants, by name.
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
}

/// EHR user ↔ Microsoft user links.
#[async_trait]
pub trait UserLinkRepo: Send + Sync {
    /// Creates or replaces the link of `(ehr_issuer, ehr_user_id)`.
    async fn upsert_user_link(&self, link: &UserLink) -> Result<(), StoreError>;
    /// The link of an EHR user, if any.
    async fn get_user_link(
        &self,
        ehr_issuer: &FhirBaseUrl,
        ehr_user_id: &EhrUserId,
    ) -> Result<Option<UserLink>, StoreError>;
    /// Removes a link; whether there was one.
    async fn delete_user_link(
        &self,
        ehr_issuer: &FhirBaseUrl,
        ehr_user_id: &EhrUserId,
    ) -> Result<bool, StoreError>;
}

/// Single-use, expiring items keyed by a random value: pending launches, OAuth `state`s.
#[async_trait]
pub trait PendingRepo: Send + Sync {
    /// Stores `payload` under `key` until `expires_at`; [`StoreError::AlreadyExists`] if the key
    /// is in use **by any kind**: keys are one namespace, so two flows keyed by the same value
    /// (e.g. an OAuth `state`) must derive distinct keys. `kind` names the flow, so a key from one
    /// flow cannot be taken by another.
    async fn put_pending(
        &self,
        key: &str,
        kind: &str,
        payload: &Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Removes and returns the item, atomically: of concurrent takes at most one gets it. `None`
    /// if there is none of that kind, or it expired at or before `now` (it is removed either way).
    async fn take_pending(
        &self,
        key: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Value>, StoreError>;
    /// Whether an item of `kind` is under `key` and still valid at `now`, without taking it (for
    /// single-use markers: "was this already used?").
    async fn has_pending(
        &self,
        key: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Removes items expired at or before `now`; how many.
    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Browser sessions.
#[async_trait]
pub trait SessionRepo: Send + Sync {
    /// Creates or replaces a session.
    async fn put_session(
        &self,
        id: &str,
        data: &Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// A session still valid at `now`.
    async fn get_session(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSession>, StoreError>;
    /// Removes a session; whether there was one.
    async fn delete_session(&self, id: &str) -> Result<bool, StoreError>;
    /// Removes sessions expired at or before `now`; how many.
    async fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Every repository, for callers that hold one `Arc<dyn Store>`.
pub trait Store:
    ConfigurationRepo + TenantRepo + UserLinkRepo + PendingRepo + SessionRepo + LeaseRepo + AuditStore
{
}

/// Named leases: which process does a piece of work that must run once across replicas (the
/// renewal of Graph subscriptions, for one), and until when. A holder that dies loses its lease
/// when it runs out; a live one renews it before then.
#[async_trait]
pub trait LeaseRepo: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `now + ttl`, if it is free, expired at
    /// `now`, or already `holder`'s. Whether `holder` holds it now.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;
    /// Gives the lease up if `holder` has it (a clean stop: another takes over at once). Whether
    /// it did.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError>;
}

impl<T> Store for T where
    T: ConfigurationRepo
        + TenantRepo
        + UserLinkRepo
        + PendingRepo
        + SessionRepo
        + LeaseRepo
        + AuditStore
        + ?Sized
{
}
