//! Single-use pending items on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{PostgresStore, Violation, serializable, violated_constraint};
use crate::records::{from_json, to_json, to_millis};
use crate::{PendingRepo, StoreError};

const WHAT: &str = "pending item";

#[async_trait]
impl PendingRepo for PostgresStore {
    async fn put_pending(
        &self,
        key: &str,
        kind: &str,
        payload: &Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if key.is_empty() || kind.is_empty() {
            return Err(StoreError::InvalidRecord(
                "a pending item needs a key and a kind",
            ));
        }
        let payload = to_json(WHAT, payload)?;
        serializable!(self, |tx| {
            tx.execute(
                "INSERT INTO pending (key, kind, payload, expires_at)
                 VALUES ($1, $2, $3::text::jsonb, $4)",
                &[&key, &kind, &payload, &to_millis(expires_at)],
            )
            .await
            .map_err(|e| match violated_constraint(&e) {
                Some((Violation::Unique, _)) => {
                    StoreError::AlreadyExists("a pending item with this key already exists")
                }
                _ => StoreError::Postgres(e),
            })?;
            Ok(())
        })
    }

    async fn take_pending(
        &self,
        key: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Value>, StoreError> {
        // One statement: of concurrent takes, one deletes the row and the others find none.
        let client = self.client().await?;
        let taken = client
            .query_opt(
                "DELETE FROM pending WHERE key = $1 AND kind = $2
                 RETURNING payload::text, expires_at",
                &[&key, &kind],
            )
            .await?;
        match taken {
            Some(row) if row.try_get::<_, i64>(1)? > to_millis(now) => {
                Ok(Some(from_json(WHAT, &row.try_get::<_, String>(0)?)?))
            }
            _ => Ok(None),
        }
    }

    async fn has_pending(
        &self,
        key: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "SELECT 1 FROM pending WHERE key = $1 AND kind = $2 AND expires_at > $3",
                &[&key, &kind, &to_millis(now)],
            )
            .await?
            .is_some())
    }

    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM pending WHERE expires_at <= $1",
                &[&to_millis(now)],
            )
            .await?)
    }
}
