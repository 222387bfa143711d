//! The visit registry on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use visitbridge_approval::ConfigurationId;

use super::{SqliteStore, Violation, from_millis, to_millis, violation};
use crate::records::{
    RawVisit, VISIT as WHAT, VISIT_COLUMNS, check_visit, fills_in, join_url_key, retention,
};
use crate::{
    MicrosoftObjectId, StoreError,
    visits::{
        GraphSubscriptionId, PurgedReferences, Reconciliation, ReconciliationClaim, RetentionRepo,
        Visit, VisitId, VisitRepo, VisitSubscription,
    },
};

fn map_upsert_error(e: rusqlite::Error) -> StoreError {
    match violation(&e) {
        Some((Violation::ForeignKey, _)) => StoreError::NotFound {
            what: "configuration",
        },
        Some((Violation::Unique, _)) => {
            StoreError::AlreadyExists("a visit with this id already exists for another meeting")
        }
        None => StoreError::Sqlite(e),
    }
}

impl SqliteStore {
    async fn one_visit(
        &self,
        condition: &'static str,
        value: String,
    ) -> Result<Option<Visit>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits v WHERE {condition}
                 ORDER BY v.created_at DESC, v.id LIMIT 1"
            );
            let raw = conn
                .prepare_cached(&sql)?
                .query_row(params![value], |row| RawVisit::from_row(row, 0))
                .optional()?;
            raw.map(RawVisit::into_visit).transpose()
        })
        .await
    }
}

#[async_trait]
impl VisitRepo for SqliteStore {
    async fn upsert_visit(&self, visit: &Visit) -> Result<Visit, StoreError> {
        check_visit(visit)?;
        let v = visit.clone();
        self.write(move |tx| {
            // A visit that has everything this one would fill in is only read: a launch of a
            // known visit writes nothing.
            let existing_sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits v
                 WHERE v.configuration_id = ?1 AND v.external_meeting_id = ?2"
            );
            let existing = tx
                .prepare_cached(&existing_sql)?
                .query_row(
                    params![v.configuration_id.as_str(), v.external_meeting_id],
                    |row| RawVisit::from_row(row, 0),
                )
                .optional()?;
            if let Some(raw) = existing {
                let existing = raw.into_visit()?;
                if !fills_in(&existing, &v) {
                    return Ok(existing);
                }
            }
            // RETURNING cannot use the table alias.
            let returning = VISIT_COLUMNS.replace("v.", "");
            let sql = format!(
                "INSERT INTO visits AS v
                     (id, configuration_id, external_meeting_id, graph_meeting_id, join_web_url,
                      join_url_key, organizer_object_id, practitioner_fhir_id, appointment_fhir_id,
                      encounter_fhir_id, patient_fhir_id, conference_id, created_at, ended_at,
                      patient_key, appointment_key, department)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                         ?17)
                 ON CONFLICT (configuration_id, external_meeting_id) DO UPDATE SET
                     graph_meeting_id = COALESCE(v.graph_meeting_id, excluded.graph_meeting_id),
                     join_web_url = COALESCE(v.join_web_url, excluded.join_web_url),
                     join_url_key = COALESCE(v.join_url_key, excluded.join_url_key),
                     organizer_object_id =
                         COALESCE(v.organizer_object_id, excluded.organizer_object_id),
                     practitioner_fhir_id =
                         COALESCE(v.practitioner_fhir_id, excluded.practitioner_fhir_id),
                     appointment_fhir_id =
                         COALESCE(v.appointment_fhir_id, excluded.appointment_fhir_id),
                     encounter_fhir_id = COALESCE(v.encounter_fhir_id, excluded.encounter_fhir_id),
                     patient_fhir_id = COALESCE(v.patient_fhir_id, excluded.patient_fhir_id),
                     conference_id = COALESCE(v.conference_id, excluded.conference_id),
                     patient_key = COALESCE(v.patient_key, excluded.patient_key),
                     appointment_key = COALESCE(v.appointment_key, excluded.appointment_key),
                     department = COALESCE(v.department, excluded.department)
                 RETURNING {returning}"
            );
            let raw = tx
                .query_row(
                    &sql,
                    params![
                        v.id.as_str(),
                        v.configuration_id.as_str(),
                        v.external_meeting_id,
                        v.graph_meeting_id,
                        v.join_web_url,
                        v.join_web_url.as_deref().map(join_url_key),
                        v.organizer_object_id
                            .as_ref()
                            .map(MicrosoftObjectId::as_str),
                        v.practitioner_fhir_id,
                        v.appointment_fhir_id,
                        v.encounter_fhir_id,
                        v.patient_fhir_id,
                        v.conference_id,
                        to_millis(v.created_at),
                        v.ended_at.map(to_millis),
                        v.patient_key,
                        v.appointment_key,
                        v.department,
                    ],
                    |row| RawVisit::from_row(row, 0),
                )
                .map_err(map_upsert_error)?;
            raw.into_visit()
        })
        .await
    }

    async fn get_visit(&self, id: &VisitId) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.id = ?1", id.as_str().to_owned()).await
    }

    async fn visit_by_key(
        &self,
        configuration: &ConfigurationId,
        external_meeting_id: &str,
    ) -> Result<Option<Visit>, StoreError> {
        let (configuration, key) = (
            configuration.as_str().to_owned(),
            external_meeting_id.to_owned(),
        );
        self.read(move |conn| {
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits v
                 WHERE v.configuration_id = ?1 AND v.external_meeting_id = ?2"
            );
            let raw = conn
                .prepare_cached(&sql)?
                .query_row(params![configuration, key], |row| {
                    RawVisit::from_row(row, 0)
                })
                .optional()?;
            raw.map(RawVisit::into_visit).transpose()
        })
        .await
    }

    async fn visit_by_meeting(&self, graph_meeting_id: &str) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.graph_meeting_id = ?1", graph_meeting_id.to_owned())
            .await
    }

    async fn visit_by_join_url(&self, join_web_url: &str) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.join_url_key = ?1", join_url_key(join_web_url))
            .await
    }

    async fn visits_since(
        &self,
        configuration: &ConfigurationId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Visit>, StoreError> {
        let configuration = configuration.as_str().to_owned();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits v
                 WHERE v.configuration_id = ?1 AND v.created_at >= ?2
                 ORDER BY v.created_at DESC, v.id LIMIT ?3"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![configuration, to_millis(since), i64::from(limit)],
                |row| RawVisit::from_row(row, 0),
            )?;
            rows.map(|raw| raw?.into_visit()).collect()
        })
        .await
    }

    async fn visits_since_in(
        &self,
        configurations: &[ConfigurationId],
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Visit>, StoreError> {
        if configurations.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = configurations
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        // One indexed read per configuration (`visits_by_configuration` in order, stopping after
        // `limit`), merged here: one query over all of them (`IN (…)`) had SQLite sort every
        // visit of the period for each call, work that grew with the database.
        self.read(move |conn| {
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits v
                 WHERE v.configuration_id = ?1 AND v.created_at >= ?2
                 ORDER BY v.created_at DESC, v.id LIMIT ?3"
            );
            // One snapshot for all of them.
            let tx = conn.unchecked_transaction()?;
            let mut visits = Vec::new();
            {
                let mut stmt = tx.prepare_cached(&sql)?;
                for id in &ids {
                    let rows = stmt
                        .query_map(params![id, to_millis(since), i64::from(limit)], |row| {
                            RawVisit::from_row(row, 0)
                        })?;
                    for raw in rows {
                        visits.push(raw?.into_visit()?);
                    }
                }
            }
            tx.commit()?;
            visits.sort_by(|a: &Visit, b: &Visit| {
                b.created_at
                    .cmp(&a.created_at)
                    .then_with(|| a.id.as_str().cmp(b.id.as_str()))
            });
            visits.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            Ok(visits)
        })
        .await
    }

    async fn set_subscription(
        &self,
        visit: &VisitId,
        subscription: &GraphSubscriptionId,
        expires_at: DateTime<Utc>,
        replacing: Option<&GraphSubscriptionId>,
    ) -> Result<bool, StoreError> {
        let (visit, subscription) = (visit.as_str().to_owned(), subscription.as_str().to_owned());
        let replacing = replacing.map(|r| r.as_str().to_owned());
        self.write(move |tx| {
            let current: Option<Option<String>> = tx
                .query_row(
                    "SELECT subscription_id FROM visits WHERE id = ?1",
                    params![visit],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(current) = current else {
                return Err(StoreError::NotFound { what: WHAT });
            };
            if current != replacing {
                return Ok(false);
            }
            tx.execute(
                "UPDATE visits SET subscription_id = ?2, subscription_expires_at = ?3
                 WHERE id = ?1",
                params![visit, subscription, to_millis(expires_at)],
            )
            .map_err(|e| match violation(&e) {
                Some((Violation::Unique, _)) => {
                    StoreError::AlreadyExists("another visit has this subscription")
                }
                _ => StoreError::Sqlite(e),
            })?;
            Ok(true)
        })
        .await
    }

    async fn clear_subscription(
        &self,
        visit: &VisitId,
        only: Option<&GraphSubscriptionId>,
    ) -> Result<Option<VisitSubscription>, StoreError> {
        let visit = visit.clone();
        let only = only.cloned();
        self.write(move |tx| {
            let Some(current) = subscription_row(tx, &visit)? else {
                return Ok(None);
            };
            if only.is_some_and(|only| only != current.subscription_id) {
                return Ok(None);
            }
            tx.execute(
                "UPDATE visits SET subscription_id = NULL, subscription_expires_at = NULL
                 WHERE id = ?1",
                params![visit.as_str()],
            )?;
            Ok(Some(current))
        })
        .await
    }

    async fn subscription_of(
        &self,
        visit: &VisitId,
    ) -> Result<Option<VisitSubscription>, StoreError> {
        let visit = visit.clone();
        self.read(move |conn| subscription_row(conn, &visit)).await
    }

    async fn subscriptions_due(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<VisitSubscription>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, subscription_id, subscription_expires_at FROM visits
                 WHERE subscription_id IS NOT NULL AND subscription_expires_at <= ?1
                 ORDER BY subscription_expires_at, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![to_millis(before), i64::from(limit)], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
            rows.map(|row| {
                let (visit, subscription, expires): (String, String, i64) = row?;
                visit_subscription(visit, subscription, expires)
            })
            .collect()
        })
        .await
    }

    async fn unsubscribed_visits(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Visit>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits v
                 WHERE v.created_at >= ?1 AND v.join_web_url IS NOT NULL
                   AND v.subscription_id IS NULL AND v.ended_at IS NULL
                 ORDER BY v.created_at DESC, v.id LIMIT ?2"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![to_millis(since), i64::from(limit)], |row| {
                RawVisit::from_row(row, 0)
            })?;
            rows.map(|raw| raw?.into_visit()).collect()
        })
        .await
    }

    async fn visit_by_subscription(
        &self,
        subscription: &GraphSubscriptionId,
    ) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.subscription_id = ?1", subscription.as_str().to_owned())
            .await
    }

    async fn set_patient_join_url(&self, visit: &VisitId, url: &str) -> Result<(), StoreError> {
        if url.is_empty() || url.len() > 2048 {
            return Err(StoreError::InvalidRecord(
                "a join url must be 1 to 2048 characters",
            ));
        }
        let (visit, url) = (visit.as_str().to_owned(), url.to_owned());
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE visits SET patient_join_url = ?2 WHERE id = ?1",
                params![visit, url],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound { what: WHAT });
            }
            Ok(())
        })
        .await
    }

    async fn patient_join_url(&self, visit: &VisitId) -> Result<Option<String>, StoreError> {
        let visit = visit.as_str().to_owned();
        self.read(move |conn| {
            let url: Option<Option<String>> = conn
                .prepare_cached("SELECT patient_join_url FROM visits WHERE id = ?1")?
                .query_row(params![visit], |row| row.get(0))
                .optional()?;
            Ok(url.flatten())
        })
        .await
    }

    async fn schedule_reconciliation(
        &self,
        visit: &VisitId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let visit = visit.as_str().to_owned();
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE visits SET reconcile_after = ?2, reconcile_attempts = 0 WHERE id = ?1",
                params![visit, to_millis(at)],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound { what: WHAT });
            }
            Ok(())
        })
        .await
    }

    async fn reconciliation_of(
        &self,
        visit: &VisitId,
    ) -> Result<Option<Reconciliation>, StoreError> {
        let visit = visit.as_str().to_owned();
        self.read(move |conn| {
            let row: Option<(i64, i64)> = conn
                .prepare_cached(
                    "SELECT reconcile_after, reconcile_attempts FROM visits
                     WHERE id = ?1 AND reconcile_after IS NOT NULL",
                )?
                .query_row(params![visit], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            row.map(|(due, attempts)| {
                Ok(Reconciliation {
                    due_at: from_millis(WHAT, due)?,
                    attempts: attempts_of(attempts)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn claim_reconciliations(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ReconciliationClaim>, StoreError> {
        let lease =
            chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::hours(1));
        self.write(move |tx| {
            // RETURNING cannot use the table alias.
            let returning = VISIT_COLUMNS.replace("v.", "");
            let sql = format!(
                "UPDATE visits
                 SET reconcile_attempts = reconcile_attempts + 1, reconcile_after = ?2
                 WHERE id IN (
                     SELECT id FROM visits
                     WHERE reconcile_after IS NOT NULL AND reconcile_after <= ?1
                     ORDER BY reconcile_after, id LIMIT ?3)
                 RETURNING reconcile_attempts, {returning}"
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![to_millis(now), to_millis(now + lease), i64::from(limit)],
                |row| Ok((row.get::<_, i64>(0)?, RawVisit::from_row(row, 1)?)),
            )?;
            let mut claims = rows
                .map(|row| {
                    let (attempts, raw) = row?;
                    Ok(ReconciliationClaim {
                        visit: raw.into_visit()?,
                        attempt: attempts_of(attempts)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            // RETURNING gives rows in no particular order.
            claims.sort_by(|a, b| a.visit.id.cmp(&b.visit.id));
            Ok(claims)
        })
        .await
    }

    async fn finish_reconciliation(
        &self,
        visit: &VisitId,
        attempt: u32,
    ) -> Result<bool, StoreError> {
        let visit = visit.as_str().to_owned();
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE visits SET reconcile_after = NULL, reconcile_attempts = 0
                 WHERE id = ?1 AND reconcile_after IS NOT NULL AND reconcile_attempts = ?2",
                params![visit, i64::from(attempt)],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    async fn retry_reconciliation(
        &self,
        visit: &VisitId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let visit = visit.as_str().to_owned();
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE visits SET reconcile_after = ?3
                 WHERE id = ?1 AND reconcile_after IS NOT NULL AND reconcile_attempts = ?2",
                params![visit, i64::from(attempt), to_millis(at)],
            )?;
            Ok(changed > 0)
        })
        .await
    }
}

fn attempts_of(attempts: i64) -> Result<u32, StoreError> {
    u32::try_from(attempts).map_err(|_| StoreError::Corrupt {
        what: WHAT,
        detail: "reconciliation attempts out of range".to_owned(),
    })
}

fn visit_subscription(
    visit: String,
    subscription: String,
    expires_at: i64,
) -> Result<VisitSubscription, StoreError> {
    Ok(VisitSubscription {
        visit_id: VisitId::new(visit)?,
        subscription_id: GraphSubscriptionId::new(subscription)?,
        expires_at: from_millis(WHAT, expires_at)?,
    })
}

/// The visit's subscription, on a read connection or inside a write transaction.
fn subscription_row(
    conn: &rusqlite::Connection,
    visit: &VisitId,
) -> Result<Option<VisitSubscription>, StoreError> {
    let row: Option<(Option<String>, Option<i64>)> = conn
        .prepare_cached(
            "SELECT subscription_id, subscription_expires_at FROM visits WHERE id = ?1",
        )?
        .query_row(params![visit.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    match row {
        Some((Some(subscription), Some(expires_at))) => Ok(Some(visit_subscription(
            visit.as_str().to_owned(),
            subscription,
            expires_at,
        )?)),
        _ => Ok(None),
    }
}

#[async_trait]
impl RetentionRepo for SqliteStore {
    async fn visits_without_keys(&self, limit: u32) -> Result<Vec<Visit>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits v
                 WHERE {} AND {} ORDER BY v.created_at, v.id LIMIT ?1",
                retention::HAS_REFERENCES,
                retention::WITHOUT_KEYS
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows =
                stmt.query_map(params![i64::from(limit)], |row| RawVisit::from_row(row, 0))?;
            rows.map(|raw| raw?.into_visit()).collect()
        })
        .await
    }

    async fn purge_references(
        &self,
        ended_before: DateTime<Utc>,
        open_created_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<PurgedReferences, StoreError> {
        let purged = self
            .write(move |tx| {
                let args = params![
                    to_millis(ended_before),
                    to_millis(open_created_before),
                    i64::from(limit)
                ];
                let events =
                    tx.execute(&retention::purge_events("?1", "?2", "?3", "'null'"), args)?;
                let visits = tx.execute(&retention::purge_visits("?1", "?2", "?3"), args)?;
                Ok(PurgedReferences {
                    visits: visits as u64,
                    events: events as u64,
                })
            })
            .await?;
        if purged != PurgedReferences::default() {
            // The old row versions are in the write-ahead log until it is checkpointed.
            self.owe_checkpoint();
        }
        self.checkpoint_if_owed().await?;
        Ok(purged)
    }
}
