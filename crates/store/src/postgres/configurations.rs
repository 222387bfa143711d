//! Configurations and their append-only history on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use visitbridge_approval::{
    ApprovalState, Configuration, ConfigurationId, Environment, FhirBaseUrl, HistoryAction,
    HistoryEntry, TenantId, Transitioned,
};

use super::{PostgresStore, Violation, serializable, violated_constraint};
use crate::records::{
    CONFIGURATION as WHAT, ConfigurationRow as Row, check_consistent, from_json, to_i64, to_json,
    to_millis,
};
use crate::{ConfigurationRepo, StoreError};

/// Maps constraint violations of configuration writes to what they mean for the user (by the
/// constraint names of the migrations).
fn map_write_error(e: tokio_postgres::Error) -> StoreError {
    match violated_constraint(&e) {
        Some((Violation::Unique, "configurations_approved_issuer")) => StoreError::AlreadyExists(
            "another configuration is already approved for this FHIR base URL and environment",
        ),
        Some((Violation::Unique, "configurations_pkey")) => {
            StoreError::AlreadyExists("a configuration with this id already exists")
        }
        Some((Violation::Unique, _)) => StoreError::AlreadyExists(
            "this organisation already has a configuration for this FHIR base URL and environment",
        ),
        Some((Violation::ForeignKey, _)) => StoreError::UnknownTenant,
        None => StoreError::Postgres(e),
    }
}

/// Refuses a write that would give a FHIR base URL and environment to a second organisation (see
/// the SQLite backend). Checked inside the write's `SERIALIZABLE` transaction, so of two
/// concurrent creates one fails (or is retried and then refused).
async fn check_not_held_elsewhere(tx: &Transaction<'_>, row: &Row) -> Result<(), StoreError> {
    if row.state == ApprovalState::Rejected.as_str() {
        return Ok(());
    }
    if held_elsewhere(tx, &row.tenant_id, &row.fhir_base_url, row.environment).await? {
        return Err(StoreError::HeldByAnotherTenant);
    }
    Ok(())
}

const HELD_ELSEWHERE: &str = "SELECT 1 FROM configurations
     WHERE tenant_id <> $1
       AND ((fhir_base_url = $2 AND environment = $3 AND state <> $4)
            OR (approved_fhir_base_url = $2 AND approved_environment = $3))
     LIMIT 1";

async fn held_elsewhere(
    tx: &Transaction<'_>,
    tenant: &str,
    url: &str,
    environment: &str,
) -> Result<bool, StoreError> {
    Ok(tx
        .query_opt(
            HELD_ELSEWHERE,
            &[
                &tenant,
                &url,
                &environment,
                &ApprovalState::Rejected.as_str(),
            ],
        )
        .await?
        .is_some())
}

async fn append_history(
    tx: &Transaction<'_>,
    id: &str,
    entry: &HistoryEntry,
) -> Result<(), StoreError> {
    let document = to_json("history entry", entry)?;
    tx.execute(
        "INSERT INTO configuration_history
             (configuration_id, revision, at, actor, action, from_state, to_state, entry)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb)",
        &[
            &id,
            &to_i64(entry.revision)?,
            &to_millis(entry.at),
            &entry.actor.username.as_str(),
            &entry.action.kind().as_str(),
            &entry.from.map(|s| s.as_str()),
            &entry.to.as_str(),
            &document,
        ],
    )
    .await
    .map_err(|e| match violated_constraint(&e) {
        Some((Violation::Unique, _)) => StoreError::Conflict { what: WHAT },
        _ => StoreError::Postgres(e),
    })?;
    Ok(())
}

fn decode_all(rows: &[tokio_postgres::Row]) -> Result<Vec<Configuration>, StoreError> {
    rows.iter()
        .map(|row| from_json(WHAT, &row.try_get::<_, String>(0)?))
        .collect()
}

#[async_trait]
impl ConfigurationRepo for PostgresStore {
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
        serializable!(self, |tx| {
            check_not_held_elsewhere(&tx, &row).await?;
            tx.execute(
                "INSERT INTO configurations
                     (id, tenant_id, fhir_base_url, environment, state, version, revision,
                      approved_fhir_base_url, approved_environment, document, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb, $11, $12)",
                &[
                    &row.id,
                    &row.tenant_id,
                    &row.fhir_base_url,
                    &row.environment,
                    &row.state,
                    &row.version,
                    &row.revision,
                    &row.approved_fhir_base_url,
                    &row.approved_environment,
                    &row.document,
                    &row.created_at,
                    &row.updated_at,
                ],
            )
            .await
            .map_err(map_write_error)?;
            append_history(&tx, &row.id, &created.entry).await
        })
    }

    async fn update_configuration(&self, transitioned: &Transitioned) -> Result<(), StoreError> {
        check_consistent(transitioned)?;
        if transitioned.entry.revision < 2 {
            return Err(StoreError::InvalidRecord(
                "a new configuration must be inserted, not updated",
            ));
        }
        let row = Row::of(&transitioned.configuration)?;
        serializable!(self, |tx| {
            check_not_held_elsewhere(&tx, &row).await?;
            let changed = tx
                .execute(
                    "UPDATE configurations
                     SET fhir_base_url = $3, environment = $4, state = $5, version = $6,
                         revision = $7::bigint, approved_fhir_base_url = $8, approved_environment = $9,
                         document = $10::text::jsonb, updated_at = $11
                     WHERE id = $1 AND tenant_id = $2 AND revision = $7::bigint - 1",
                    &[
                        &row.id,
                        &row.tenant_id,
                        &row.fhir_base_url,
                        &row.environment,
                        &row.state,
                        &row.version,
                        &row.revision,
                        &row.approved_fhir_base_url,
                        &row.approved_environment,
                        &row.document,
                        &row.updated_at,
                    ],
                )
                .await
                .map_err(map_write_error)?;
            if changed == 0 {
                let exists = tx
                    .query_opt(
                        "SELECT 1 FROM configurations WHERE id = $1 AND tenant_id = $2",
                        &[&row.id, &row.tenant_id],
                    )
                    .await?
                    .is_some();
                return Err(if exists {
                    StoreError::Conflict { what: WHAT }
                } else {
                    StoreError::NotFound { what: WHAT }
                });
            }
            append_history(&tx, &row.id, &transitioned.entry).await
        })
    }

    async fn held_by_another_tenant(
        &self,
        tenant: &TenantId,
        fhir_base_url: &FhirBaseUrl,
        environment: Environment,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                HELD_ELSEWHERE,
                &[
                    &tenant.as_str(),
                    &fhir_base_url.as_str(),
                    &environment.as_str(),
                    &ApprovalState::Rejected.as_str(),
                ],
            )
            .await?
            .is_some())
    }

    async fn get_configuration(
        &self,
        tenant: &TenantId,
        id: &ConfigurationId,
    ) -> Result<Option<Configuration>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT document::text FROM configurations WHERE id = $1 AND tenant_id = $2",
                &[&id.as_str(), &tenant.as_str()],
            )
            .await?;
        row.map(|row| from_json(WHAT, &row.try_get::<_, String>(0)?))
            .transpose()
    }

    async fn list_configurations(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<Configuration>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT document::text FROM configurations WHERE tenant_id = $1
                 ORDER BY created_at, id",
                &[&tenant.as_str()],
            )
            .await?;
        decode_all(&rows)
    }

    async fn find_approved(
        &self,
        issuer: &FhirBaseUrl,
        environment: Environment,
    ) -> Result<Option<Configuration>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT document::text FROM configurations
                 WHERE approved_fhir_base_url = $1 AND approved_environment = $2",
                &[&issuer.as_str(), &environment.as_str()],
            )
            .await?;
        row.map(|row| from_json(WHAT, &row.try_get::<_, String>(0)?))
            .transpose()
    }

    async fn find_approved_by_issuer(
        &self,
        issuer: &FhirBaseUrl,
    ) -> Result<Vec<Configuration>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT document::text FROM configurations WHERE approved_fhir_base_url = $1
                 ORDER BY approved_environment",
                &[&issuer.as_str()],
            )
            .await?;
        decode_all(&rows)
    }

    async fn configuration_history(
        &self,
        tenant: &TenantId,
        id: &ConfigurationId,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT h.entry::text FROM configuration_history h
                 JOIN configurations c ON c.id = h.configuration_id
                 WHERE c.id = $1 AND c.tenant_id = $2
                 ORDER BY h.revision",
                &[&id.as_str(), &tenant.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| from_json("history entry", &row.try_get::<_, String>(0)?))
            .collect()
    }
}
