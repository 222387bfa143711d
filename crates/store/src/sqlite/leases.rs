//! Named leases on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{SqliteStore, to_millis};
use crate::records::{check_lease, millis_of};
use crate::{LeaseRepo, StoreError};

#[async_trait]
impl LeaseRepo for SqliteStore {
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        check_lease(name, holder)?;
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let now = to_millis(now);
        let until = now.saturating_add(millis_of(ttl));
        self.write(move |tx| {
            let n = tx.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                                                  expires_at = excluded.expires_at
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4",
                params![name, holder, until, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )?;
            Ok(n > 0)
        })
        .await
    }
}
