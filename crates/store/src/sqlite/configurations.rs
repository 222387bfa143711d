//! Configurations and their append-only history on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};
use visitbridge_approval::{
    ApprovalState, Configuration, ConfigurationId, Environment, FhirBaseUrl, HistoryAction,
    HistoryEntry, TenantId, Transitioned,
};

use super::{SqliteStore, Violation, from_json, to_json, to_millis, violation};
use crate::records::{CONFIGURATION as WHAT, ConfigurationRow as Row, check_consistent, to_i64};
use crate::{ConfigurationRepo, StoreError};

/// Maps constraint violations of configuration writes to what they mean for the user.
fn map_write_error(e: rusqlite::Error) -> StoreError {
    match violation(&e) {
        Some((Violation::Unique, message)) if message.contains("approved_fhir_base_url") => {
            StoreError::AlreadyExists(
                "another configuration is already approved for this FHIR base URL and environment",
            )
        }
        Some((Violation::Unique, message)) if message.contains("configurations.id") => {
            StoreError::AlreadyExists("a configuration with this id already exists")
        }
        Some((Violation::Unique, _)) => StoreError::AlreadyExists(
            "this organisation already has a configuration for this FHIR base URL and environment",
        ),
        Some((Violation::ForeignKey, _)) => StoreError::UnknownTenant,
        None => StoreError::Sqlite(e),
    }
}

/// Refuses a write that would give a FHIR base URL and environment to a second organisation.
///
/// A configuration *holds* its current URL and environment unless it is rejected, and its
/// approved version's always (that version keeps serving launches). A row that holds its current
/// URL and environment may be written only if no other tenant's row holds them. Checked inside
/// the write transaction (`BEGIN IMMEDIATE`: one writer at a time), so two concurrent creates
/// cannot both succeed.
fn check_not_held_elsewhere(tx: &Transaction<'_>, row: &Row) -> Result<(), StoreError> {
    if row.state == ApprovalState::Rejected.as_str() {
        return Ok(());
    }
    if held_elsewhere(tx, &row.tenant_id, &row.fhir_base_url, row.environment)? {
        return Err(StoreError::HeldByAnotherTenant);
    }
    Ok(())
}

/// Whether a tenant other than `tenant` holds `url` in `environment`.
fn held_elsewhere(
    conn: &rusqlite::Connection,
    tenant: &str,
    url: &str,
    environment: &str,
) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM configurations
             WHERE tenant_id <> ?1
               AND ((fhir_base_url = ?2 AND environment = ?3 AND state <> ?4)
                    OR (approved_fhir_base_url = ?2 AND approved_environment = ?3))
             LIMIT 1",
            params![tenant, url, environment, ApprovalState::Rejected.as_str()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn append_history(tx: &Transaction<'_>, id: &str, entry: &HistoryEntry) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO configuration_history
             (configuration_id, revision, at, actor, action, from_state, to_state, entry)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            to_i64(entry.revision)?,
            to_millis(entry.at),
            entry.actor.username.as_str(),
            entry.action.kind().as_str(),
            entry.from.map(|s| s.as_str()),
            entry.to.as_str(),
            to_json("history entry", entry)?,
        ],
    )
    .map_err(|e| match violation(&e) {
        Some((Violation::Unique, _)) => StoreError::Conflict { what: WHAT },
        _ => StoreError::Sqlite(e),
    })?;
    Ok(())
}

fn decode_all(
    rows: impl Iterator<Item = rusqlite::Result<String>>,
) -> Result<Vec<Configuration>, StoreError> {
    rows.map(|doc| from_json(WHAT, &doc?)).collect()
}

#[async_trait]
impl ConfigurationRepo for SqliteStore {
    async fn insert_configuration(&self, created: &Transitioned) -> Result<(), StoreError> {
        check_consistent(created)?;
        if created.entry.revision != 1
            || !matches!(created.entry.action, HistoryAction::Created { .. })
        {
            return Err(StoreError::InvalidRecord(
                "only a newly created configuration can be inserted",
            ));
        }
        let row = Row::of(&created.configuration)?;
        let entry = created.entry.clone();
        self.write(move |tx| {
            check_not_held_elsewhere(tx, &row)?;
            tx.execute(
                "INSERT INTO configurations
                     (id, tenant_id, fhir_base_url, environment, state, version, revision,
                      approved_fhir_base_url, approved_environment, document, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    row.id,
                    row.tenant_id,
                    row.fhir_base_url,
                    row.environment,
                    row.state,
                    row.version,
                    row.revision,
                    row.approved_fhir_base_url,
                    row.approved_environment,
                    row.document,
                    row.created_at,
                    row.updated_at,
                ],
            )
            .map_err(map_write_error)?;
            append_history(tx, &row.id, &entry)
        })
        .await
    }

    async fn update_configuration(&self, transitioned: &Transitioned) -> Result<(), StoreError> {
        check_consistent(transitioned)?;
        if transitioned.entry.revision < 2 {
            return Err(StoreError::InvalidRecord(
                "a new configuration must be inserted, not updated",
            ));
        }
        let row = Row::of(&transitioned.configuration)?;
        let entry = transitioned.entry.clone();
        self.write(move |tx| {
            check_not_held_elsewhere(tx, &row)?;
            let changed = tx
                .execute(
                    "UPDATE configurations
                     SET fhir_base_url = ?3, environment = ?4, state = ?5, version = ?6,
                         revision = ?7, approved_fhir_base_url = ?8, approved_environment = ?9,
                         document = ?10, updated_at = ?11
                     WHERE id = ?1 AND tenant_id = ?2 AND revision = ?7 - 1",
                    params![
                        row.id,
                        row.tenant_id,
                        row.fhir_base_url,
                        row.environment,
                        row.state,
                        row.version,
                        row.revision,
                        row.approved_fhir_base_url,
                        row.approved_environment,
                        row.document,
                        row.updated_at,
                    ],
                )
                .map_err(map_write_error)?;
            if changed == 0 {
                let exists = tx
                    .query_row(
                        "SELECT 1 FROM configurations WHERE id = ?1 AND tenant_id = ?2",
                        params![row.id, row.tenant_id],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                return Err(if exists {
                    StoreError::Conflict { what: WHAT }
                } else {
                    StoreError::NotFound { what: WHAT }
                });
            }
            append_history(tx, &row.id, &entry)
        })
        .await
    }

    async fn held_by_another_tenant(
        &self,
        tenant: &TenantId,
        fhir_base_url: &FhirBaseUrl,
        environment: Environment,
    ) -> Result<bool, StoreError> {
        let (tenant, url) = (
            tenant.as_str().to_owned(),
            fhir_base_url.as_str().to_owned(),
        );
        self.read(move |conn| held_elsewhere(conn, &tenant, &url, environment.as_str()))
            .await
    }

    async fn get_configuration(
        &self,
        tenant: &TenantId,
        id: &ConfigurationId,
    ) -> Result<Option<Configuration>, StoreError> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.as_str().to_owned());
        self.read(move |conn| {
            let doc: Option<String> = conn
                .query_row(
                    "SELECT document FROM configurations WHERE id = ?1 AND tenant_id = ?2",
                    params![id, tenant],
                    |row| row.get(0),
                )
                .optional()?;
            doc.map(|d| from_json(WHAT, &d)).transpose()
        })
        .await
    }

    async fn list_configurations(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<Configuration>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT document FROM configurations WHERE tenant_id = ?1
                 ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map(params![tenant], |row| row.get(0))?;
            decode_all(rows)
        })
        .await
    }

    async fn find_approved(
        &self,
        issuer: &FhirBaseUrl,
        environment: Environment,
    ) -> Result<Option<Configuration>, StoreError> {
        let issuer = issuer.as_str().to_owned();
        self.read(move |conn| {
            let doc: Option<String> = conn
                .query_row(
                    "SELECT document FROM configurations
                     WHERE approved_fhir_base_url = ?1 AND approved_environment = ?2",
                    params![issuer, environment.as_str()],
                    |row| row.get(0),
                )
                .optional()?;
            doc.map(|d| from_json(WHAT, &d)).transpose()
        })
        .await
    }

    async fn find_approved_by_issuer(
        &self,
        issuer: &FhirBaseUrl,
    ) -> Result<Vec<Configuration>, StoreError> {
        let issuer = issuer.as_str().to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT document FROM configurations WHERE approved_fhir_base_url = ?1
                 ORDER BY approved_environment",
            )?;
            let rows = stmt.query_map(params![issuer], |row| row.get(0))?;
            decode_all(rows)
        })
        .await
    }

    async fn configuration_history(
        &self,
        tenant: &TenantId,
        id: &ConfigurationId,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.as_str().to_owned());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT h.entry FROM configuration_history h
                 JOIN configurations c ON c.id = h.configuration_id
                 WHERE c.id = ?1 AND c.tenant_id = ?2
                 ORDER BY h.revision",
            )?;
            let rows = stmt.query_map(params![id, tenant], |row| row.get::<_, String>(0))?;
            rows.map(|entry| from_json("history entry", &entry?))
                .collect()
        })
        .await
    }
}
