//! Named leases on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::records::{check_lease, millis_of, to_millis};
use crate::{LeaseRepo, StoreError};

#[async_trait]
impl LeaseRepo for PostgresStore {
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        check_lease(name, holder)?;
        let now = to_millis(now);
        let until = now.saturating_add(millis_of(ttl));
        // One statement: the row lock of the conflicting row orders concurrent takers, and the
        // condition is evaluated on the row as the winner left it.
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                                                  expires_at = excluded.expires_at
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
                &[&name, &holder, &until, &now],
            )
            .await?;
        Ok(n > 0)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?;
        Ok(n > 0)
    }
}
