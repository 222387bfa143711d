//! Tenants (organisations) on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use visitbridge_approval::TenantId;

use super::{SqliteStore, Violation, from_millis, to_millis, violation};
use crate::{MicrosoftTenantId, StoreError, Tenant, TenantRepo};

const COLUMNS: &str = "id, name, microsoft_tenant_id, created_at";

fn decode(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn tenant(
    (id, name, microsoft, created): (String, String, String, i64),
) -> Result<Tenant, StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        what: "tenant",
        detail: detail.to_owned(),
    };
    Ok(Tenant {
        id: TenantId::new(id).map_err(|_| corrupt("invalid id"))?,
        name,
        microsoft_tenant_id: MicrosoftTenantId::new(microsoft)
            .map_err(|_| corrupt("invalid Microsoft tenant id"))?,
        created_at: from_millis("tenant", created)?,
    })
}

#[async_trait]
impl TenantRepo for SqliteStore {
    async fn insert_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
        let t = t.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO tenants (id, name, microsoft_tenant_id, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    t.id.as_str(),
                    t.name,
                    t.microsoft_tenant_id.as_str(),
                    to_millis(t.created_at)
                ],
            )
            .map_err(|e| match violation(&e) {
                Some((Violation::Unique, _)) => StoreError::AlreadyExists(
                    "a tenant with this id or Microsoft tenant id already exists",
                ),
                _ => StoreError::Sqlite(e),
            })?;
            Ok(())
        })
        .await
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM tenants WHERE id = ?1"),
                params![id],
                decode,
            )
            .optional()?
            .map(tenant)
            .transpose()
        })
        .await
    }

    async fn tenant_by_microsoft_id(
        &self,
        microsoft_tenant_id: &MicrosoftTenantId,
    ) -> Result<Option<Tenant>, StoreError> {
        let mid = microsoft_tenant_id.as_str().to_owned();
        self.read(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM tenants WHERE microsoft_tenant_id = ?1"),
                params![mid],
                decode,
            )
            .optional()?
            .map(tenant)
            .transpose()
        })
        .await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tenants ORDER BY name, id"))?;
            let rows = stmt.query_map([], decode)?;
            rows.map(|r| tenant(r?)).collect()
        })
        .await
    }
}
