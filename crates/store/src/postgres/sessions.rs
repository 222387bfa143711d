//! Browser sessions on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{PostgresStore, serializable};
use crate::records::{from_json, from_millis, to_json, to_millis};
use crate::{SessionRepo, StoreError, StoredSession};

const WHAT: &str = "session";

#[async_trait]
impl SessionRepo for PostgresStore {
    async fn put_session(
        &self,
        id: &str,
        data: &Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if id.is_empty() {
            return Err(StoreError::InvalidRecord("a session needs an id"));
        }
        let data = to_json(WHAT, data)?;
        serializable!(self, |tx| {
            tx.execute(
                "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2::text::jsonb, $3)
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data,
                                                expires_at = excluded.expires_at",
                &[&id, &data, &to_millis(expires_at)],
            )
            .await?;
            Ok(())
        })
    }

    async fn get_session(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSession>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT data::text, expires_at FROM sessions WHERE id = $1 AND expires_at > $2",
                &[&id, &to_millis(now)],
            )
            .await?;
        row.map(|row| {
            Ok(StoredSession {
                data: from_json(WHAT, &row.try_get::<_, String>(0)?)?,
                expires_at: from_millis(WHAT, row.try_get(1)?)?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute("DELETE FROM sessions WHERE id = $1", &[&id])
            .await?
            > 0)
    }

    async fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM sessions WHERE expires_at <= $1",
                &[&to_millis(now)],
            )
            .await?)
    }
}
