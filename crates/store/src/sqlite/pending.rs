//! Single-use pending items on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::{SqliteStore, Violation, from_json, to_json, to_millis, violation};
use crate::{PendingRepo, StoreError};

const WHAT: &str = "pending item";

#[async_trait]
impl PendingRepo for SqliteStore {
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
        let (key, kind) = (key.to_owned(), kind.to_owned());
        let payload = to_json(WHAT, payload)?;
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO pending (key, kind, payload, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![key, kind, payload, to_millis(expires_at)],
            )
            .map_err(|e| match violation(&e) {
                Some((Violation::Unique, _)) => {
                    StoreError::AlreadyExists("a pending item with this key already exists")
                }
                _ => StoreError::Sqlite(e),
            })?;
            Ok(())
        })
        .await
    }

    async fn take_pending(
        &self,
        key: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Value>, StoreError> {
        let (key, kind) = (key.to_owned(), kind.to_owned());
        self.write(move |tx| {
            // One statement finds and removes, so of concurrent takes only one gets the row.
            let taken: Option<(String, i64)> = tx
                .query_row(
                    "DELETE FROM pending WHERE key = ?1 AND kind = ?2
                     RETURNING payload, expires_at",
                    params![key, kind],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            match taken {
                Some((payload, expires_at)) if expires_at > to_millis(now) => {
                    Ok(Some(from_json(WHAT, &payload)?))
                }
                _ => Ok(None),
            }
        })
        .await
    }

    async fn has_pending(
        &self,
        key: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (key, kind) = (key.to_owned(), kind.to_owned());
        self.read(move |conn| {
            let found: Option<i64> = conn
                .query_row(
                    "SELECT 1 FROM pending WHERE key = ?1 AND kind = ?2 AND expires_at > ?3",
                    params![key, kind, to_millis(now)],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(found.is_some())
        })
        .await
    }

    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM pending WHERE expires_at <= ?1",
                params![to_millis(now)],
            )?;
            Ok(n as u64)
        })
        .await
    }
}
