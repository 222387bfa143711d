//! Sessions on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::{SqliteStore, from_json, from_millis, to_json, to_millis};
use crate::{SessionRepo, StoreError, StoredSession};

const WHAT: &str = "session";

#[async_trait]
impl SessionRepo for SqliteStore {
    async fn put_session(
        &self,
        id: &str,
        data: &Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if id.is_empty() {
            return Err(StoreError::InvalidRecord("a session needs an id"));
        }
        let id = id.to_owned();
        let data = to_json(WHAT, data)?;
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO sessions (id, data, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data,
                                                expires_at = excluded.expires_at",
                params![id, data, to_millis(expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_session(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSession>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let row: Option<(String, i64)> = conn
                .query_row(
                    "SELECT data, expires_at FROM sessions WHERE id = ?1 AND expires_at > ?2",
                    params![id, to_millis(now)],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            row.map(|(data, expires_at)| {
                Ok(StoredSession {
                    data: from_json(WHAT, &data)?,
                    expires_at: from_millis(WHAT, expires_at)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |tx| Ok(tx.execute("DELETE FROM sessions WHERE id = ?1", params![id])? > 0))
            .await
    }

    async fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM sessions WHERE expires_at <= ?1",
                params![to_millis(now)],
            )?;
            Ok(n as u64)
        })
        .await
    }
}
