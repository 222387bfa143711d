//! Participant events and the write-back outbox on PostgreSQL.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::IsolationLevel;
use visitbridge_approval::ConfigurationId;

use super::{PostgresStore, Violation, serializable, transaction, violated_constraint};
use crate::records::{
    EVENT, EVENT_COLUMN_COUNT, EVENT_COLUMNS, EVENT_SUMMARY_COLUMNS, ITEM, ITEM_COLUMN_COUNT,
    ITEM_COLUMNS, RawEvent, RawItem, RawVisit, VISIT_COLUMNS, check_event, from_millis, millis_of,
    short_error, to_json, to_millis,
};
use crate::{
    StoreError,
    visits::{
        AuditEventFilter, AuditRepo, ClaimedDelivery, EventId, EventSummary, NewDelivery,
        OutboxDepth, OutboxId, OutboxItem, OutboxRepo, RecordOutcome, StoredEvent, VisitEventKind,
        VisitId,
    },
};

/// The event columns with the JSON document read as text.
fn event_columns() -> String {
    EVENT_COLUMNS.replace("e.audit_event", "e.audit_event::text")
}

fn event_of(row: &tokio_postgres::Row, at: usize) -> Result<StoredEvent, StoreError> {
    RawEvent::from_row(row, at)?.into_event()
}

fn item_of(row: &tokio_postgres::Row, at: usize) -> Result<OutboxItem, StoreError> {
    RawItem::from_row(row, at)?.into_item()
}

#[async_trait]
impl AuditRepo for PostgresStore {
    async fn record_event(
        &self,
        event: &StoredEvent,
        deliveries: &[NewDelivery],
    ) -> Result<RecordOutcome, StoreError> {
        check_event(event)?;
        let audit_event = to_json(EVENT, &event.audit_event)?;
        let class = event.participant.as_ref().map(|p| p.class.as_str());
        let participant_id = event.participant.as_ref().map(|p| p.id.as_str());
        // Call events have no participant: they are ordered among themselves.
        let participant_key = event
            .participant
            .as_ref()
            .map(|p| format!("{}:{}", p.class.as_str(), p.id))
            .unwrap_or_default();
        let (occurred_at, now) = (to_millis(event.occurred_at), to_millis(event.recorded_at));
        serializable!(self, |tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO visit_events
                         (event_id, visit_id, kind, participant_class, participant_id,
                          occurred_at, recorded_at, origin, audit_event)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb)
                     ON CONFLICT (event_id) DO NOTHING",
                    &[
                        &event.event_id.as_str(),
                        &event.visit_id.as_str(),
                        &event.kind.as_str(),
                        &class,
                        &participant_id,
                        &occurred_at,
                        &now,
                        &event.origin.as_str(),
                        &audit_event,
                    ],
                )
                .await
                .map_err(|e| match violated_constraint(&e) {
                    Some((Violation::ForeignKey, _)) => StoreError::NotFound { what: "visit" },
                    _ => StoreError::Postgres(e),
                })?;
            if inserted == 0 {
                return Ok(RecordOutcome::Duplicate);
            }
            for delivery in deliveries {
                tx.execute(
                    "INSERT INTO outbox
                         (event_id, visit_id, participant_key, occurred_at, sink, idempotency_key,
                          state, attempts, next_attempt_at, created_at, latest_only)
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $8)",
                    &[
                        &event.event_id.as_str(),
                        &event.visit_id.as_str(),
                        &participant_key,
                        &occurred_at,
                        &delivery.sink.as_str(),
                        &delivery.idempotency_key,
                        &now,
                        &delivery.latest_only,
                    ],
                )
                .await
                .map_err(|e| match violated_constraint(&e) {
                    Some((Violation::Unique, _)) => {
                        StoreError::InvalidRecord("the same sink is listed twice for one event")
                    }
                    _ => StoreError::Postgres(e),
                })?;
            }
            // The visit's outcome is now older than its events (see `ReportRepo`).
            if event.kind == VisitEventKind::CallEnded {
                tx.execute(
                    "UPDATE visits SET ended_at = GREATEST(COALESCE(ended_at, $2), $2),
                         events_version = events_version + 1
                     WHERE id = $1",
                    &[&event.visit_id.as_str(), &occurred_at],
                )
                .await?;
            } else {
                tx.execute(
                    "UPDATE visits SET events_version = events_version + 1 WHERE id = $1",
                    &[&event.visit_id.as_str()],
                )
                .await?;
            }
            // Heard by every process's change feed when this commits.
            let notice = format!("{} {}", event.visit_id.as_str(), self.changes.origin);
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&super::changes::CHANNEL, &notice],
            )
            .await?;
            Ok(RecordOutcome::Recorded)
        })
    }

    fn visit_changes(&self) -> Option<tokio::sync::broadcast::Receiver<crate::VisitChange>> {
        Some(self.changes.subscribe())
    }

    async fn events_for_visit(&self, visit: &VisitId) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM visit_events e WHERE e.visit_id = $1
             ORDER BY e.occurred_at, e.recorded_at, e.event_id",
            event_columns()
        );
        client
            .query(&sql, &[&visit.as_str()])
            .await?
            .iter()
            .map(|row| event_of(row, 0))
            .collect()
    }

    async fn event_summaries_for_visits(
        &self,
        visits: &[VisitId],
    ) -> Result<HashMap<VisitId, Vec<EventSummary>>, StoreError> {
        if visits.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = visits.iter().map(VisitId::as_str).collect();
        let client = self.client().await?;
        let sql = format!(
            "SELECT {EVENT_SUMMARY_COLUMNS} FROM visit_events e WHERE e.visit_id = ANY($1)
             ORDER BY e.visit_id, e.occurred_at, e.recorded_at, e.event_id"
        );
        let mut by_visit: HashMap<VisitId, Vec<EventSummary>> = HashMap::new();
        for row in client.query(&sql, &[&ids]).await? {
            let event = RawEvent::summary_from_row(&row, 0)?.into_summary()?;
            by_visit
                .entry(event.visit_id.clone())
                .or_default()
                .push(event);
        }
        Ok(by_visit)
    }

    async fn get_event(&self, id: &EventId) -> Result<Option<StoredEvent>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM visit_events e WHERE e.event_id = $1",
            event_columns()
        );
        client
            .query_opt(&sql, &[&id.as_str()])
            .await?
            .map(|row| event_of(&row, 0))
            .transpose()
    }

    async fn search_audit_events(
        &self,
        filter: &AuditEventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if filter.configurations.is_empty() {
            return Ok(Vec::new());
        }
        let configurations: Vec<&str> = filter
            .configurations
            .iter()
            .map(ConfigurationId::as_str)
            .collect();
        let list = |items: &[String]| -> Option<Vec<String>> {
            (!items.is_empty()).then(|| items.to_vec())
        };
        let patients = list(&filter.patient_keys);
        let appointments = list(&filter.appointment_keys);
        let (from, before, after_at, after_id) = filter.bounds();
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM visit_events e JOIN visits v ON v.id = e.visit_id
             WHERE e.audit_event <> 'null'::jsonb
                 AND v.configuration_id = ANY($1)
                 AND ($2::text[] IS NULL OR v.patient_key = ANY($2))
                 AND ($3::text[] IS NULL OR v.appointment_key = ANY($3))
                 AND e.recorded_at >= $4 AND e.recorded_at < $5
                 AND (e.recorded_at, e.event_id) > ($6, $7)
             ORDER BY e.recorded_at, e.event_id LIMIT $8",
            event_columns()
        );
        client
            .query(
                &sql,
                &[
                    &configurations,
                    &patients,
                    &appointments,
                    &from,
                    &before,
                    &after_at,
                    &after_id,
                    &i64::from(limit),
                ],
            )
            .await?
            .iter()
            .map(|row| event_of(row, 0))
            .collect()
    }
}

#[async_trait]
impl OutboxRepo for PostgresStore {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let now = to_millis(now);
        let lease_until = now.saturating_add(millis_of(lease));
        let claimed_sql = format!(
            "SELECT {ITEM_COLUMNS}, {}, {VISIT_COLUMNS}
             FROM outbox o
             JOIN visit_events e ON e.event_id = o.event_id
             JOIN visits v ON v.id = o.visit_id
             WHERE o.id = ANY($1)
             ORDER BY o.next_attempt_at, o.id",
            event_columns()
        );
        // READ COMMITTED with row locks rather than SERIALIZABLE: workers on several replicas
        // claim disjoint rows (SKIP LOCKED) instead of failing on each other's claims.
        transaction!(self, IsolationLevel::ReadCommitted, |tx| {
            // Latest-only rows older than what the sink already has are settled first (see the
            // SQLite backend). A leased row is left to finish.
            tx.execute(
                "UPDATE outbox SET state = 'superseded', lease_until = NULL,
                                   last_error = 'superseded: a newer event was already delivered'
                 WHERE state = 'pending' AND latest_only
                   AND (lease_until IS NULL OR lease_until <= $1)
                   AND EXISTS (
                       SELECT 1 FROM outbox d
                       WHERE d.visit_id = outbox.visit_id AND d.sink = outbox.sink
                         AND d.participant_key = outbox.participant_key
                         AND d.state = 'delivered' AND d.occurred_at > outbox.occurred_at)",
                &[&now],
            )
            .await?;
            // The first pending row of each visit, sink and participant, not leased, due, and not
            // being claimed by another worker right now. A row whose predecessor is leased by a
            // worker elsewhere is not a candidate: order is kept across replicas.
            let rows = tx
                .query(
                    "SELECT o.id FROM outbox o
                     WHERE o.state = 'pending' AND o.next_attempt_at <= $1
                       AND (o.lease_until IS NULL OR o.lease_until <= $1)
                       AND NOT EXISTS (
                           SELECT 1 FROM outbox p
                           WHERE p.visit_id = o.visit_id AND p.sink = o.sink
                             AND p.participant_key = o.participant_key
                             AND p.state = 'pending'
                             AND (p.occurred_at < o.occurred_at
                                  OR (p.occurred_at = o.occurred_at AND p.id < o.id)))
                     ORDER BY o.next_attempt_at, o.id
                     LIMIT $2
                     FOR UPDATE OF o SKIP LOCKED",
                    &[&now, &i64::from(limit)],
                )
                .await?;
            let ids = rows
                .iter()
                .map(|row| row.try_get::<_, i64>(0))
                .collect::<Result<Vec<_>, _>>()?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            // A row is claimed only if it is still what the candidate query saw: another worker
            // may have claimed and settled it between that query's snapshot and its lock.
            let claimed = tx
                .query(
                    "UPDATE outbox SET lease_until = $2, attempts = attempts + 1
                     WHERE id = ANY($1) AND state = 'pending'
                       AND (lease_until IS NULL OR lease_until <= $3)
                     RETURNING id",
                    &[&ids, &lease_until, &now],
                )
                .await?
                .iter()
                .map(|row| row.try_get::<_, i64>(0))
                .collect::<Result<Vec<_>, _>>()?;
            let rows = tx.query(&claimed_sql, &[&claimed]).await?;
            rows.iter()
                .map(|row| {
                    Ok(ClaimedDelivery {
                        item: item_of(row, 0)?,
                        event: event_of(row, ITEM_COLUMN_COUNT)?,
                        visit: RawVisit::from_row(row, ITEM_COLUMN_COUNT + EVENT_COLUMN_COUNT)?
                            .into_visit()?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
    }

    async fn mark_delivered(
        &self,
        id: OutboxId,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE outbox SET state = 'delivered', delivered_at = $2, lease_until = NULL,
                                   last_error = NULL
                 WHERE id = $1 AND attempts = $3 AND state = 'pending'",
                &[&id.0, &to_millis(now), &i64::from(attempt)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn mark_failed(
        &self,
        id: OutboxId,
        attempt: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let error = short_error(error);
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE outbox SET next_attempt_at = $3, lease_until = NULL, last_error = $4
                 WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                &[
                    &id.0,
                    &i64::from(attempt),
                    &to_millis(next_attempt_at),
                    &error,
                ],
            )
            .await?;
        Ok(n > 0)
    }

    async fn extend_leases(
        &self,
        claims: &[(OutboxId, u32)],
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if claims.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = claims.iter().map(|(id, _)| id.0).collect();
        let attempts: Vec<i64> = claims.iter().map(|(_, a)| i64::from(*a)).collect();
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE outbox SET lease_until = GREATEST(outbox.lease_until, $3)
                 FROM unnest($1::bigint[], $2::bigint[]) AS c(id, attempts)
                 WHERE outbox.id = c.id AND outbox.attempts = c.attempts
                   AND outbox.state = 'pending' AND outbox.lease_until IS NOT NULL",
                &[&ids, &attempts, &to_millis(until)],
            )
            .await?)
    }

    async fn mark_dead(&self, id: OutboxId, attempt: u32, error: &str) -> Result<bool, StoreError> {
        let error = short_error(error);
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE outbox SET state = 'dead', lease_until = NULL, last_error = $3
                 WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                &[&id.0, &i64::from(attempt), &error],
            )
            .await?;
        Ok(n > 0)
    }

    async fn list_dead(&self, limit: u32) -> Result<Vec<OutboxItem>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM outbox o WHERE o.state = 'dead'
             ORDER BY o.created_at, o.id LIMIT $1"
        );
        client
            .query(&sql, &[&i64::from(limit)])
            .await?
            .iter()
            .map(|row| item_of(row, 0))
            .collect()
    }

    async fn redrive(&self, id: OutboxId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $2,
                                   lease_until = NULL
                 WHERE id = $1 AND state = 'dead'
                     AND EXISTS (SELECT 1 FROM visit_events e
                                 WHERE e.event_id = outbox.event_id
                                     AND e.audit_event <> 'null'::jsonb)",
                &[&id.0, &to_millis(now)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn outbox_for_event(&self, event: &EventId) -> Result<Vec<OutboxItem>, StoreError> {
        let client = self.client().await?;
        let sql =
            format!("SELECT {ITEM_COLUMNS} FROM outbox o WHERE o.event_id = $1 ORDER BY o.id");
        client
            .query(&sql, &[&event.as_str()])
            .await?
            .iter()
            .map(|row| item_of(row, 0))
            .collect()
    }

    async fn outbox_for_visit(&self, visit: &VisitId) -> Result<Vec<OutboxItem>, StoreError> {
        let client = self.client().await?;
        let sql =
            format!("SELECT {ITEM_COLUMNS} FROM outbox o WHERE o.visit_id = $1 ORDER BY o.id");
        client
            .query(&sql, &[&visit.as_str()])
            .await?
            .iter()
            .map(|row| item_of(row, 0))
            .collect()
    }

    async fn outbox_depth(&self) -> Result<OutboxDepth, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT
                     COUNT(*) FILTER (WHERE state = 'pending'),
                     COUNT(*) FILTER (WHERE state = 'dead'),
                     MIN(created_at) FILTER (WHERE state = 'pending')
                 FROM outbox",
                &[],
            )
            .await?;
        let (pending, dead, oldest): (i64, i64, Option<i64>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        Ok(OutboxDepth {
            pending: u64::try_from(pending).unwrap_or_default(),
            dead: u64::try_from(dead).unwrap_or_default(),
            oldest_pending_at: oldest.map(|t| from_millis(ITEM, t)).transpose()?,
        })
    }

    async fn purge_delivered(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM outbox WHERE state = 'delivered' AND delivered_at < $1",
                &[&to_millis(before)],
            )
            .await?)
    }
}
