//! The visit registry on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use visitbridge_approval::ConfigurationId;

use super::{PostgresStore, Violation, serializable, violated_constraint};
use crate::records::{
    RawVisit, VISIT as WHAT, VISIT_COLUMNS, check_visit, fills_in, from_millis, join_url_key,
    retention, to_millis,
};
use crate::{
    MicrosoftObjectId, StoreError,
    visits::{
        GraphSubscriptionId, PurgedReferences, Reconciliation, ReconciliationClaim, RetentionRepo,
        Visit, VisitId, VisitRepo, VisitSubscription,
    },
};

fn map_upsert_error(e: tokio_postgres::Error) -> StoreError {
    match violated_constraint(&e) {
        Some((Violation::ForeignKey, _)) => StoreError::NotFound {
            what: "configuration",
        },
        Some((Violation::Unique, _)) => {
            StoreError::AlreadyExists("a visit with this id already exists for another meeting")
        }
        None => StoreError::Postgres(e),
    }
}

fn visit_of(row: &tokio_postgres::Row, at: usize) -> Result<Visit, StoreError> {
    RawVisit::from_row(row, at)?.into_visit()
}

impl PostgresStore {
    async fn one_visit(
        &self,
        condition: &'static str,
        value: &(dyn ToSql + Sync),
    ) -> Result<Option<Visit>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {VISIT_COLUMNS} FROM visits v WHERE {condition}
             ORDER BY v.created_at DESC, v.id LIMIT 1"
        );
        let statement = client.prepare_cached(&sql).await?;
        client
            .query_opt(&statement, &[value])
            .await?
            .map(|row| visit_of(&row, 0))
            .transpose()
    }
}

#[async_trait]
impl VisitRepo for PostgresStore {
    async fn upsert_visit(&self, visit: &Visit) -> Result<Visit, StoreError> {
        check_visit(visit)?;
        let v = visit;
        let returning = VISIT_COLUMNS.replace("v.", "");
        let sql = format!(
            "INSERT INTO visits AS v
                 (id, configuration_id, external_meeting_id, graph_meeting_id, join_web_url,
                  join_url_key, organizer_object_id, practitioner_fhir_id, appointment_fhir_id,
                  encounter_fhir_id, patient_fhir_id, conference_id, created_at, ended_at,
                  patient_key, appointment_key, department)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17)
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
        let key = v.join_web_url.as_deref().map(join_url_key);
        let organizer = v
            .organizer_object_id
            .as_ref()
            .map(MicrosoftObjectId::as_str);
        let ended_at = v.ended_at.map(to_millis);
        let existing_sql = format!(
            "SELECT {VISIT_COLUMNS} FROM visits v
             WHERE v.configuration_id = $1 AND v.external_meeting_id = $2"
        );
        serializable!(self, |tx| {
            // A visit that has everything this one would fill in is only read: a launch of a
            // known visit writes nothing, so concurrent launches of it do not conflict (every
            // one of them updating the row made them fail each other's serializable
            // transactions, 64 at once faster than the retries could part them).
            if let Some(row) = tx
                .query_opt(
                    &existing_sql,
                    &[&v.configuration_id.as_str(), &v.external_meeting_id],
                )
                .await?
            {
                let existing = visit_of(&row, 0)?;
                if !fills_in(&existing, v) {
                    return Ok(existing);
                }
            }
            let row = tx
                .query_one(
                    &sql,
                    &[
                        &v.id.as_str(),
                        &v.configuration_id.as_str(),
                        &v.external_meeting_id,
                        &v.graph_meeting_id,
                        &v.join_web_url,
                        &key,
                        &organizer,
                        &v.practitioner_fhir_id,
                        &v.appointment_fhir_id,
                        &v.encounter_fhir_id,
                        &v.patient_fhir_id,
                        &v.conference_id,
                        &to_millis(v.created_at),
                        &ended_at,
                        &v.patient_key,
                        &v.appointment_key,
                        &v.department,
                    ],
                )
                .await
                .map_err(map_upsert_error)?;
            visit_of(&row, 0)
        })
    }

    async fn get_visit(&self, id: &VisitId) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.id = $1", &id.as_str()).await
    }

    async fn visit_by_key(
        &self,
        configuration: &ConfigurationId,
        external_meeting_id: &str,
    ) -> Result<Option<Visit>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {VISIT_COLUMNS} FROM visits v
             WHERE v.configuration_id = $1 AND v.external_meeting_id = $2"
        );
        client
            .query_opt(&sql, &[&configuration.as_str(), &external_meeting_id])
            .await?
            .map(|row| visit_of(&row, 0))
            .transpose()
    }

    async fn visit_by_meeting(&self, graph_meeting_id: &str) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.graph_meeting_id = $1", &graph_meeting_id)
            .await
    }

    async fn visit_by_join_url(&self, join_web_url: &str) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.join_url_key = $1", &join_url_key(join_web_url))
            .await
    }

    async fn visits_since(
        &self,
        configuration: &ConfigurationId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Visit>, StoreError> {
        self.visits_since_in(std::slice::from_ref(configuration), since, limit)
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
        let ids: Vec<&str> = configurations.iter().map(ConfigurationId::as_str).collect();
        let client = self.client().await?;
        let sql = format!(
            "SELECT {VISIT_COLUMNS} FROM visits v
             WHERE v.configuration_id = ANY($1) AND v.created_at >= $2
             ORDER BY v.created_at DESC, v.id LIMIT $3"
        );
        client
            .query(&sql, &[&ids, &to_millis(since), &i64::from(limit)])
            .await?
            .iter()
            .map(|row| visit_of(row, 0))
            .collect()
    }

    async fn set_subscription(
        &self,
        visit: &VisitId,
        subscription: &GraphSubscriptionId,
        expires_at: DateTime<Utc>,
        replacing: Option<&GraphSubscriptionId>,
    ) -> Result<bool, StoreError> {
        let replacing = replacing.map(GraphSubscriptionId::as_str);
        serializable!(self, |tx| {
            let Some(row) = tx
                .query_opt(
                    "SELECT subscription_id FROM visits WHERE id = $1",
                    &[&visit.as_str()],
                )
                .await?
            else {
                return Err(StoreError::NotFound { what: WHAT });
            };
            let current: Option<String> = row.try_get(0)?;
            if current.as_deref() != replacing {
                return Ok(false);
            }
            tx.execute(
                "UPDATE visits SET subscription_id = $2, subscription_expires_at = $3
                 WHERE id = $1",
                &[
                    &visit.as_str(),
                    &subscription.as_str(),
                    &to_millis(expires_at),
                ],
            )
            .await
            .map_err(|e| match violated_constraint(&e) {
                Some((Violation::Unique, _)) => {
                    StoreError::AlreadyExists("another visit has this subscription")
                }
                _ => StoreError::Postgres(e),
            })?;
            Ok(true)
        })
    }

    async fn clear_subscription(
        &self,
        visit: &VisitId,
        only: Option<&GraphSubscriptionId>,
    ) -> Result<Option<VisitSubscription>, StoreError> {
        serializable!(self, |tx| {
            let Some(current) = subscription_row(&tx, visit).await? else {
                return Ok(None);
            };
            if only.is_some_and(|only| *only != current.subscription_id) {
                return Ok(None);
            }
            tx.execute(
                "UPDATE visits SET subscription_id = NULL, subscription_expires_at = NULL
                 WHERE id = $1",
                &[&visit.as_str()],
            )
            .await?;
            Ok(Some(current))
        })
    }

    async fn subscription_of(
        &self,
        visit: &VisitId,
    ) -> Result<Option<VisitSubscription>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let found = subscription_row(&tx, visit).await?;
        tx.commit().await?;
        Ok(found)
    }

    async fn subscriptions_due(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<VisitSubscription>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, subscription_id, subscription_expires_at FROM visits
                 WHERE subscription_id IS NOT NULL AND subscription_expires_at <= $1
                 ORDER BY subscription_expires_at, id LIMIT $2",
                &[&to_millis(before), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| visit_subscription(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
            .collect()
    }

    async fn unsubscribed_visits(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Visit>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {VISIT_COLUMNS} FROM visits v
             WHERE v.created_at >= $1 AND v.join_web_url IS NOT NULL
               AND v.subscription_id IS NULL AND v.ended_at IS NULL
             ORDER BY v.created_at DESC, v.id LIMIT $2"
        );
        client
            .query(&sql, &[&to_millis(since), &i64::from(limit)])
            .await?
            .iter()
            .map(|row| visit_of(row, 0))
            .collect()
    }

    async fn visit_by_subscription(
        &self,
        subscription: &GraphSubscriptionId,
    ) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.subscription_id = $1", &subscription.as_str())
            .await
    }

    async fn set_patient_join_url(&self, visit: &VisitId, url: &str) -> Result<(), StoreError> {
        if url.is_empty() || url.len() > 2048 {
            return Err(StoreError::InvalidRecord(
                "a join url must be 1 to 2048 characters",
            ));
        }
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE visits SET patient_join_url = $2 WHERE id = $1",
                &[&visit.as_str(), &url],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound { what: WHAT });
        }
        Ok(())
    }

    async fn patient_join_url(&self, visit: &VisitId) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT patient_join_url FROM visits WHERE id = $1",
                &[&visit.as_str()],
            )
            .await?;
        Ok(row
            .map(|row| row.try_get::<_, Option<String>>(0))
            .transpose()?
            .flatten())
    }

    async fn schedule_reconciliation(
        &self,
        visit: &VisitId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE visits SET reconcile_after = $2, reconcile_attempts = 0 WHERE id = $1",
                &[&visit.as_str(), &to_millis(at)],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound { what: WHAT });
        }
        Ok(())
    }

    async fn reconciliation_of(
        &self,
        visit: &VisitId,
    ) -> Result<Option<Reconciliation>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT reconcile_after, reconcile_attempts FROM visits
                 WHERE id = $1 AND reconcile_after IS NOT NULL",
                &[&visit.as_str()],
            )
            .await?;
        row.map(|row| {
            Ok(Reconciliation {
                due_at: from_millis(WHAT, row.try_get(0)?)?,
                attempts: attempts_of(row.try_get(1)?)?,
            })
        })
        .transpose()
    }

    async fn claim_reconciliations(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ReconciliationClaim>, StoreError> {
        let lease =
            chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::hours(1));
        let returning = VISIT_COLUMNS.replace("v.", "");
        // Rows another replica is claiming right now are skipped, not waited for: each due
        // reconciliation is claimed by one replica.
        let sql = format!(
            "UPDATE visits
             SET reconcile_attempts = reconcile_attempts + 1, reconcile_after = $2
             WHERE id IN (
                 SELECT id FROM visits
                 WHERE reconcile_after IS NOT NULL AND reconcile_after <= $1
                 ORDER BY reconcile_after, id LIMIT $3
                 FOR UPDATE SKIP LOCKED)
               AND reconcile_after <= $1
             RETURNING reconcile_attempts, {returning}"
        );
        let client = self.client().await?;
        let rows = client
            .query(
                &sql,
                &[&to_millis(now), &to_millis(now + lease), &i64::from(limit)],
            )
            .await?;
        let mut claims = rows
            .iter()
            .map(|row| {
                Ok(ReconciliationClaim {
                    visit: visit_of(row, 1)?,
                    attempt: attempts_of(row.try_get(0)?)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claims.sort_by(|a, b| a.visit.id.cmp(&b.visit.id));
        Ok(claims)
    }

    async fn finish_reconciliation(
        &self,
        visit: &VisitId,
        attempt: u32,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE visits SET reconcile_after = NULL, reconcile_attempts = 0
                 WHERE id = $1 AND reconcile_after IS NOT NULL AND reconcile_attempts = $2",
                &[&visit.as_str(), &i64::from(attempt)],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn retry_reconciliation(
        &self,
        visit: &VisitId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE visits SET reconcile_after = $3
                 WHERE id = $1 AND reconcile_after IS NOT NULL AND reconcile_attempts = $2",
                &[&visit.as_str(), &i64::from(attempt), &to_millis(at)],
            )
            .await?;
        Ok(changed > 0)
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

async fn subscription_row(
    tx: &Transaction<'_>,
    visit: &VisitId,
) -> Result<Option<VisitSubscription>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT subscription_id, subscription_expires_at FROM visits WHERE id = $1",
            &[&visit.as_str()],
        )
        .await?;
    match row {
        Some(row) => match (row.try_get(0)?, row.try_get(1)?) {
            (Some(subscription), Some(expires_at)) => Ok(Some(visit_subscription(
                visit.as_str().to_owned(),
                subscription,
                expires_at,
            )?)),
            _ => Ok(None),
        },
        None => Ok(None),
    }
}

#[async_trait]
impl RetentionRepo for PostgresStore {
    async fn visits_without_keys(&self, limit: u32) -> Result<Vec<Visit>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {VISIT_COLUMNS} FROM visits v WHERE {} AND {} ORDER BY v.created_at, v.id LIMIT $1",
            retention::HAS_REFERENCES,
            retention::WITHOUT_KEYS
        );
        let statement = client.prepare_cached(&sql).await?;
        client
            .query(&statement, &[&i64::from(limit)])
            .await?
            .iter()
            .map(|row| visit_of(row, 0))
            .collect()
    }

    async fn purge_references(
        &self,
        ended_before: DateTime<Utc>,
        open_created_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<PurgedReferences, StoreError> {
        let (before, open_before, limit) = (
            to_millis(ended_before),
            to_millis(open_created_before),
            i64::from(limit),
        );
        let events_sql = retention::purge_events("$1", "$2", "$3", "'null'::jsonb");
        let visits_sql = retention::purge_visits("$1", "$2", "$3");
        // Serializable: a visit that gets a new event or outbox row meanwhile is not purged.
        serializable!(self, |tx| {
            let args: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&before, &open_before, &limit];
            let events = tx.execute(&events_sql, &args).await?;
            let visits = tx.execute(&visits_sql, &args).await?;
            Ok(PurgedReferences { visits, events })
        })
    }
}
