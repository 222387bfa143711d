//! EHR user ↔ Microsoft user links on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use visitbridge_approval::{EhrUserId, FhirBaseUrl};

use super::{SqliteStore, from_millis, to_millis};
use crate::{MicrosoftObjectId, MicrosoftTenantId, StoreError, UserLink, UserLinkRepo};

#[async_trait]
impl UserLinkRepo for SqliteStore {
    async fn upsert_user_link(&self, link: &UserLink) -> Result<(), StoreError> {
        let link = link.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO user_links
                     (ehr_issuer, ehr_user_id, microsoft_tenant_id, microsoft_object_id, linked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (ehr_issuer, ehr_user_id) DO UPDATE SET
                     microsoft_tenant_id = excluded.microsoft_tenant_id,
                     microsoft_object_id = excluded.microsoft_object_id,
                     linked_at = excluded.linked_at",
                params![
                    link.ehr_issuer.as_str(),
                    link.ehr_user_id.as_str(),
                    link.microsoft_tenant_id.as_str(),
                    link.microsoft_object_id.as_str(),
                    to_millis(link.linked_at),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_user_link(
        &self,
        ehr_issuer: &FhirBaseUrl,
        ehr_user_id: &EhrUserId,
    ) -> Result<Option<UserLink>, StoreError> {
        let (issuer, user) = (ehr_issuer.clone(), ehr_user_id.clone());
        self.read(move |conn| {
            let row: Option<(String, String, i64)> = conn
                .query_row(
                    "SELECT microsoft_tenant_id, microsoft_object_id, linked_at FROM user_links
                     WHERE ehr_issuer = ?1 AND ehr_user_id = ?2",
                    params![issuer.as_str(), user.as_str()],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            row.map(|(tenant, object, linked_at)| {
                Ok(UserLink {
                    ehr_issuer: issuer,
                    ehr_user_id: user,
                    microsoft_tenant_id: MicrosoftTenantId::new(tenant)?,
                    microsoft_object_id: MicrosoftObjectId::new(object)?,
                    linked_at: from_millis("user link", linked_at)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn delete_user_link(
        &self,
        ehr_issuer: &FhirBaseUrl,
        ehr_user_id: &EhrUserId,
    ) -> Result<bool, StoreError> {
        let (issuer, user) = (
            ehr_issuer.as_str().to_owned(),
            ehr_user_id.as_str().to_owned(),
        );
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM user_links WHERE ehr_issuer = ?1 AND ehr_user_id = ?2",
                params![issuer, user],
            )?;
            Ok(n > 0)
        })
        .await
    }
}
