//! Participant events and the write-back outbox on SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, Violation, from_millis, to_json, to_millis, violation};
use crate::records::{
    EVENT, EVENT_COLUMN_COUNT, EVENT_COLUMNS, EVENT_SUMMARY_COLUMNS, ITEM, ITEM_COLUMN_COUNT,
    ITEM_COLUMNS, RawEvent, RawItem, RawVisit, VISIT_COLUMNS, check_event, millis_of, short_error,
};
use crate::{
    StoreError,
    visits::{
        AuditEventFilter, AuditRepo, ClaimedDelivery, EventId, EventSummary, NewDelivery,
        OutboxDepth, OutboxId, OutboxItem, OutboxRepo, RecordOutcome, StoredEvent, VisitEventKind,
        VisitId,
    },
};

#[async_trait]
impl AuditRepo for SqliteStore {
    async fn record_event(
        &self,
        event: &StoredEvent,
        deliveries: &[NewDelivery],
    ) -> Result<RecordOutcome, StoreError> {
        check_event(event)?;
        let audit_event = to_json(EVENT, &event.audit_event)?;
        let event = event.clone();
        let deliveries = deliveries.to_vec();
        self.write(move |tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO visit_events
                         (event_id, visit_id, kind, participant_class, participant_id,
                          occurred_at, recorded_at, origin, audit_event)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (event_id) DO NOTHING",
                    params![
                        event.event_id.as_str(),
                        event.visit_id.as_str(),
                        event.kind.as_str(),
                        event.participant.as_ref().map(|p| p.class.as_str()),
                        event.participant.as_ref().map(|p| p.id.as_str()),
                        to_millis(event.occurred_at),
                        to_millis(event.recorded_at),
                        event.origin.as_str(),
                        audit_event,
                    ],
                )
                .map_err(|e| match violation(&e) {
                    Some((Violation::ForeignKey, _)) => StoreError::NotFound { what: "visit" },
                    _ => StoreError::Sqlite(e),
                })?;
            if inserted == 0 {
                return Ok(RecordOutcome::Duplicate);
            }
            let now = to_millis(event.recorded_at);
            // Call events have no participant: they are ordered among themselves.
            let participant_key = event
                .participant
                .as_ref()
                .map(|p| format!("{}:{}", p.class.as_str(), p.id))
                .unwrap_or_default();
            for delivery in &deliveries {
                tx.execute(
                    "INSERT INTO outbox
                         (event_id, visit_id, participant_key, occurred_at, sink, idempotency_key,
                          state, attempts, next_attempt_at, created_at, latest_only)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?7, ?8)",
                    params![
                        event.event_id.as_str(),
                        event.visit_id.as_str(),
                        participant_key,
                        to_millis(event.occurred_at),
                        delivery.sink.as_str(),
                        delivery.idempotency_key,
                        now,
                        delivery.latest_only,
                    ],
                )
                .map_err(|e| match violation(&e) {
                    Some((Violation::Unique, _)) => {
                        StoreError::InvalidRecord("the same sink is listed twice for one event")
                    }
                    _ => StoreError::Sqlite(e),
                })?;
            }
            // The visit's outcome is now older than its events (see `ReportRepo`).
            if event.kind == VisitEventKind::CallEnded {
                tx.execute(
                    "UPDATE visits SET ended_at = MAX(COALESCE(ended_at, ?2), ?2),
                         events_version = events_version + 1
                     WHERE id = ?1",
                    params![event.visit_id.as_str(), to_millis(event.occurred_at)],
                )?;
            } else {
                tx.execute(
                    "UPDATE visits SET events_version = events_version + 1 WHERE id = ?1",
                    params![event.visit_id.as_str()],
                )?;
            }
            Ok(RecordOutcome::Recorded)
        })
        .await
    }

    async fn events_for_visit(&self, visit: &VisitId) -> Result<Vec<StoredEvent>, StoreError> {
        let visit = visit.as_str().to_owned();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM visit_events e WHERE e.visit_id = ?1
                 ORDER BY e.occurred_at, e.recorded_at, e.event_id"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![visit], |row| RawEvent::from_row(row, 0))?;
            rows.map(|raw| raw?.into_event()).collect()
        })
        .await
    }

    async fn event_summaries_for_visits(
        &self,
        visits: &[VisitId],
    ) -> Result<HashMap<VisitId, Vec<EventSummary>>, StoreError> {
        if visits.is_empty() {
            return Ok(HashMap::new());
        }
        // One bound JSON array rather than one placeholder per visit: no limit on how many.
        let ids = to_json(
            "visit ids",
            &visits.iter().map(VisitId::as_str).collect::<Vec<_>>(),
        )?;
        self.read(move |conn| {
            let sql = format!(
                "SELECT {EVENT_SUMMARY_COLUMNS} FROM visit_events e
                 WHERE e.visit_id IN (SELECT value FROM json_each(?1))
                 ORDER BY e.visit_id, e.occurred_at, e.recorded_at, e.event_id"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![ids], |row| RawEvent::summary_from_row(row, 0))?;
            let mut by_visit: HashMap<VisitId, Vec<EventSummary>> = HashMap::new();
            for raw in rows {
                let event = raw?.into_summary()?;
                by_visit
                    .entry(event.visit_id.clone())
                    .or_default()
                    .push(event);
            }
            Ok(by_visit)
        })
        .await
    }

    async fn get_event(&self, id: &EventId) -> Result<Option<StoredEvent>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {EVENT_COLUMNS} FROM visit_events e WHERE e.event_id = ?1");
            let raw = conn
                .prepare_cached(&sql)?
                .query_row(params![id], |row| RawEvent::from_row(row, 0))
                .optional()?;
            raw.map(RawEvent::into_event).transpose()
        })
        .await
    }

    async fn search_audit_events(
        &self,
        filter: &AuditEventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if filter.configurations.is_empty() {
            return Ok(Vec::new());
        }
        let json_list =
            |what: &'static str, items: &[String]| -> Result<Option<String>, StoreError> {
                if items.is_empty() {
                    Ok(None)
                } else {
                    to_json(what, &items).map(Some)
                }
            };
        let configurations = to_json(
            "configuration ids",
            &filter
                .configurations
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>(),
        )?;
        let patients = json_list("patient keys", &filter.patient_keys)?;
        let appointments = json_list("appointment keys", &filter.appointment_keys)?;
        let (from, before, after_at, after_id) = filter.bounds();
        // Only the conditions asked for, so that SQLite's planner can start from the key
        // indexes (`?2 IS NULL OR …` would make it scan by time). The numbering stays: an unused
        // parameter is bound and ignored.
        let by_patient = if patients.is_some() {
            "AND v.patient_key IN (SELECT value FROM json_each(?2))"
        } else {
            ""
        };
        let by_appointment = if appointments.is_some() {
            "AND v.appointment_key IN (SELECT value FROM json_each(?3))"
        } else {
            ""
        };
        self.read(move |conn| {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM visit_events e JOIN visits v ON v.id = e.visit_id
                 WHERE e.audit_event <> 'null'
                     AND v.configuration_id IN (SELECT value FROM json_each(?1))
                     {by_patient}
                     {by_appointment}
                     AND e.recorded_at >= ?4 AND e.recorded_at < ?5
                     AND e.recorded_at >= ?6
                     AND (e.recorded_at > ?6 OR (e.recorded_at = ?6 AND e.event_id > ?7))
                 ORDER BY e.recorded_at, e.event_id LIMIT ?8"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    configurations,
                    patients,
                    appointments,
                    from,
                    before,
                    after_at,
                    after_id,
                    i64::from(limit)
                ],
                |row| RawEvent::from_row(row, 0),
            )?;
            rows.map(|raw| raw?.into_event()).collect()
        })
        .await
    }
}

#[async_trait]
impl OutboxRepo for SqliteStore {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let now = to_millis(now);
        let lease_until = now.saturating_add(millis_of(lease));
        self.write(move |tx| {
            // Latest-only rows older than what the sink already has are settled first, in the same
            // IMMEDIATE transaction as the claims, so none of them can slip out in between. A
            // leased row is left to finish: its worker already sent it, or is sending it.
            tx.execute(
                "UPDATE outbox SET state = 'superseded', lease_until = NULL,
                                   last_error = 'superseded: a newer event was already delivered'
                 WHERE state = 'pending' AND latest_only = 1
                   AND (lease_until IS NULL OR lease_until <= ?1)
                   AND EXISTS (
                       SELECT 1 FROM outbox d
                       WHERE d.visit_id = outbox.visit_id AND d.sink = outbox.sink
                         AND d.participant_key = outbox.participant_key
                         AND d.state = 'delivered' AND d.occurred_at > outbox.occurred_at)",
                params![now],
            )?;
            // Candidates first, then the claims, in one IMMEDIATE transaction: no other writer
            // can claim the same rows in between.
            let ids: Vec<i64> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT o.id FROM outbox o
                     WHERE o.state = 'pending' AND o.next_attempt_at <= ?1
                       AND (o.lease_until IS NULL OR o.lease_until <= ?1)
                       AND NOT EXISTS (
                           SELECT 1 FROM outbox p
                           WHERE p.visit_id = o.visit_id AND p.sink = o.sink
                             AND p.participant_key = o.participant_key
                             AND p.state = 'pending'
                             AND (p.occurred_at < o.occurred_at
                                  OR (p.occurred_at = o.occurred_at AND p.id < o.id)))
                     ORDER BY o.next_attempt_at, o.id
                     LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![now, i64::from(limit)], |row| row.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let sql = format!(
                "SELECT {ITEM_COLUMNS}, {EVENT_COLUMNS}, {VISIT_COLUMNS}
                 FROM outbox o
                 JOIN visit_events e ON e.event_id = o.event_id
                 JOIN visits v ON v.id = o.visit_id
                 WHERE o.id = ?1"
            );
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                tx.execute(
                    "UPDATE outbox SET lease_until = ?2, attempts = attempts + 1 WHERE id = ?1",
                    params![id, lease_until],
                )?;
                let (item, event, visit) =
                    tx.prepare_cached(&sql)?.query_row(params![id], |row| {
                        Ok((
                            RawItem::from_row(row, 0)?,
                            RawEvent::from_row(row, ITEM_COLUMN_COUNT)?,
                            RawVisit::from_row(row, ITEM_COLUMN_COUNT + EVENT_COLUMN_COUNT)?,
                        ))
                    })?;
                claimed.push(ClaimedDelivery {
                    item: item.into_item()?,
                    event: event.into_event()?,
                    visit: visit.into_visit()?,
                });
            }
            Ok(claimed)
        })
        .await
    }

    async fn mark_delivered(
        &self,
        id: OutboxId,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?2, lease_until = NULL,
                                   last_error = NULL
                 WHERE id = ?1 AND attempts = ?3 AND state = 'pending'",
                params![id.0, to_millis(now), i64::from(attempt)],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn mark_failed(
        &self,
        id: OutboxId,
        attempt: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let error = short_error(error);
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE outbox SET next_attempt_at = ?3, lease_until = NULL, last_error = ?4
                 WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
                params![id.0, i64::from(attempt), to_millis(next_attempt_at), error],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn extend_leases(
        &self,
        claims: &[(OutboxId, u32)],
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if claims.is_empty() {
            return Ok(0);
        }
        let claims = claims.to_vec();
        self.write(move |tx| {
            let mut statement = tx.prepare_cached(
                "UPDATE outbox SET lease_until = MAX(lease_until, ?3)
                 WHERE id = ?1 AND attempts = ?2 AND state = 'pending'
                   AND lease_until IS NOT NULL",
            )?;
            let mut renewed = 0;
            for (id, attempt) in &claims {
                renewed +=
                    statement.execute(params![id.0, i64::from(*attempt), to_millis(until)])?;
            }
            Ok(renewed as u64)
        })
        .await
    }

    async fn mark_dead(&self, id: OutboxId, attempt: u32, error: &str) -> Result<bool, StoreError> {
        let error = short_error(error);
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE outbox SET state = 'dead', lease_until = NULL, last_error = ?3
                 WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
                params![id.0, i64::from(attempt), error],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_dead(&self, limit: u32) -> Result<Vec<OutboxItem>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {ITEM_COLUMNS} FROM outbox o WHERE o.state = 'dead'
                 ORDER BY o.created_at, o.id LIMIT ?1"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows =
                stmt.query_map(params![i64::from(limit)], |row| RawItem::from_row(row, 0))?;
            rows.map(|raw| raw?.into_item()).collect()
        })
        .await
    }

    async fn redrive(&self, id: OutboxId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?2,
                                   lease_until = NULL
                 WHERE id = ?1 AND state = 'dead'
                     AND EXISTS (SELECT 1 FROM visit_events e
                                 WHERE e.event_id = outbox.event_id AND e.audit_event <> 'null')",
                params![id.0, to_millis(now)],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn outbox_for_event(&self, event: &EventId) -> Result<Vec<OutboxItem>, StoreError> {
        let event = event.as_str().to_owned();
        self.read(move |conn| {
            let sql =
                format!("SELECT {ITEM_COLUMNS} FROM outbox o WHERE o.event_id = ?1 ORDER BY o.id");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![event], |row| RawItem::from_row(row, 0))?;
            rows.map(|raw| raw?.into_item()).collect()
        })
        .await
    }

    async fn outbox_for_visit(&self, visit: &VisitId) -> Result<Vec<OutboxItem>, StoreError> {
        let visit = visit.as_str().to_owned();
        self.read(move |conn| {
            // `outbox_order` starts with `visit_id`, so this is an index range scan.
            let sql =
                format!("SELECT {ITEM_COLUMNS} FROM outbox o WHERE o.visit_id = ?1 ORDER BY o.id");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![visit], |row| RawItem::from_row(row, 0))?;
            rows.map(|raw| raw?.into_item()).collect()
        })
        .await
    }

    async fn outbox_depth(&self) -> Result<OutboxDepth, StoreError> {
        self.read(|conn| {
            let (pending, dead, oldest): (i64, i64, Option<i64>) = conn.query_row(
                "SELECT
                     COALESCE(SUM(state = 'pending'), 0),
                     COALESCE(SUM(state = 'dead'), 0),
                     MIN(CASE WHEN state = 'pending' THEN created_at END)
                 FROM outbox",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )?;
            Ok(OutboxDepth {
                pending: u64::try_from(pending).unwrap_or_default(),
                dead: u64::try_from(dead).unwrap_or_default(),
                oldest_pending_at: oldest.map(|t| from_millis(ITEM, t)).transpose()?,
            })
        })
        .await
    }

    async fn purge_delivered(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM outbox WHERE state = 'delivered' AND delivered_at < ?1",
                params![to_millis(before)],
            )?;
            Ok(n as u64)
        })
        .await
    }
}
