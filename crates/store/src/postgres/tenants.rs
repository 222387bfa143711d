//! Organisations on PostgreSQL.

use async_trait::async_trait;
use visitbridge_approval::TenantId;

use super::{PostgresStore, Violation, serializable, violated_constraint};
use crate::records::{from_millis, to_millis};
use crate::{MicrosoftTenantId, StoreError, Tenant, TenantRepo};

const COLUMNS: &str = "id, name, microsoft_tenant_id, created_at";

fn tenant(row: &tokio_postgres::Row) -> Result<Tenant, StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        what: "tenant",
        detail: detail.to_owned(),
    };
    Ok(Tenant {
        id: TenantId::new(row.try_get::<_, String>(0)?).map_err(|_| corrupt("invalid id"))?,
        name: row.try_get(1)?,
        microsoft_tenant_id: MicrosoftTenantId::new(row.try_get::<_, String>(2)?)
            .map_err(|_| corrupt("invalid Microsoft tenant id"))?,
        created_at: from_millis("tenant", row.try_get(3)?)?,
    })
}

#[async_trait]
impl TenantRepo for PostgresStore {
    async fn insert_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
        serializable!(self, |tx| {
            tx.execute(
                "INSERT INTO tenants (id, name, microsoft_tenant_id, created_at)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &t.id.as_str(),
                    &t.name,
                    &t.microsoft_tenant_id.as_str(),
                    &to_millis(t.created_at),
                ],
            )
            .await
            .map_err(|e| match violated_constraint(&e) {
                Some((Violation::Unique, _)) => StoreError::AlreadyExists(
                    "a tenant with this id or Microsoft tenant id already exists",
                ),
                _ => StoreError::Postgres(e),
            })?;
            Ok(())
        })
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM tenants WHERE id = $1");
        client
            .query_opt(&sql, &[&id.as_str()])
            .await?
            .as_ref()
            .map(tenant)
            .transpose()
    }

    async fn tenant_by_microsoft_id(
        &self,
        microsoft_tenant_id: &MicrosoftTenantId,
    ) -> Result<Option<Tenant>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM tenants WHERE microsoft_tenant_id = $1");
        client
            .query_opt(&sql, &[&microsoft_tenant_id.as_str()])
            .await?
            .as_ref()
            .map(tenant)
            .transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM tenants ORDER BY name, id");
        client.query(&sql, &[]).await?.iter().map(tenant).collect()
    }
}
