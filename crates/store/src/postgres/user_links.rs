//! EHR user ↔ Microsoft user links on PostgreSQL.

use async_trait::async_trait;
use visitbridge_approval::{EhrUserId, FhirBaseUrl};

use super::{PostgresStore, serializable};
use crate::records::{from_millis, to_millis};
use crate::{MicrosoftObjectId, MicrosoftTenantId, StoreError, UserLink, UserLinkRepo};

#[async_trait]
impl UserLinkRepo for PostgresStore {
    async fn upsert_user_link(&self, link: &UserLink) -> Result<(), StoreError> {
        serializable!(self, |tx| {
            tx.execute(
                "INSERT INTO user_links
                     (ehr_issuer, ehr_user_id, microsoft_tenant_id, microsoft_object_id, linked_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (ehr_issuer, ehr_user_id) DO UPDATE SET
                     microsoft_tenant_id = excluded.microsoft_tenant_id,
                     microsoft_object_id = excluded.microsoft_object_id,
                     linked_at = excluded.linked_at",
                &[
                    &link.ehr_issuer.as_str(),
                    &link.ehr_user_id.as_str(),
                    &link.microsoft_tenant_id.as_str(),
                    &link.microsoft_object_id.as_str(),
                    &to_millis(link.linked_at),
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn get_user_link(
        &self,
        ehr_issuer: &FhirBaseUrl,
        ehr_user_id: &EhrUserId,
    ) -> Result<Option<UserLink>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT microsoft_tenant_id, microsoft_object_id, linked_at FROM user_links
                 WHERE ehr_issuer = $1 AND ehr_user_id = $2",
                &[&ehr_issuer.as_str(), &ehr_user_id.as_str()],
            )
            .await?;
        row.map(|row| {
            Ok(UserLink {
                ehr_issuer: ehr_issuer.clone(),
                ehr_user_id: ehr_user_id.clone(),
                microsoft_tenant_id: MicrosoftTenantId::new(row.try_get::<_, String>(0)?)?,
                microsoft_object_id: MicrosoftObjectId::new(row.try_get::<_, String>(1)?)?,
                linked_at: from_millis("user link", row.try_get(2)?)?,
            })
        })
        .transpose()
    }

    async fn delete_user_link(
        &self,
        ehr_issuer: &FhirBaseUrl,
        ehr_user_id: &EhrUserId,
    ) -> Result<bool, StoreError> {
        serializable!(self, |tx| {
            let n = tx
                .execute(
                    "DELETE FROM user_links WHERE ehr_issuer = $1 AND ehr_user_id = $2",
                    &[&ehr_issuer.as_str(), &ehr_user_id.as_str()],
                )
                .await?;
            Ok(n > 0)
        })
    }
}
