//! The reports' reads on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::{IsolationLevel, types::ToSql};
use visitbridge_approval::ConfigurationId;

use super::PostgresStore;
use crate::{
    StoreError, VisitId,
    records::{RawVisit, VISIT_COLUMN_COUNT},
    report::{
        RawOutcome, ReportPage, ReportParam, ReportPoint, ReportQuery, ReportRepo, StaleOutcome,
        VisitOutcome, departments_sql, outcome_params, point, report_page_sql, report_where,
    },
};

fn placeholder(n: usize) -> String {
    format!("${n}")
}

type Bound = Vec<Box<dyn ToSql + Sync + Send>>;

/// A batch of outcomes as `unnest` reads it: one array per column.
#[derive(Default)]
struct OutcomeColumns {
    ids: Vec<String>,
    statuses: Vec<String>,
    starts: Vec<Option<i64>>,
    ends: Vec<Option<i64>>,
    waits: Vec<Option<i64>>,
    attendees: Vec<i64>,
    versions: Vec<i64>,
}

fn bound(params: Vec<ReportParam>) -> Bound {
    params
        .into_iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                ReportParam::Text(t) => Box::new(t),
                ReportParam::Int(i) => Box::new(i),
            }
        })
        .collect()
}

fn refs(bound: &Bound) -> Vec<&(dyn ToSql + Sync)> {
    bound
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

#[async_trait]
impl ReportRepo for PostgresStore {
    async fn stale_outcomes(
        &self,
        configurations: Option<&[ConfigurationId]>,
        limit: u32,
    ) -> Result<Vec<StaleOutcome>, StoreError> {
        let ids: Option<Vec<&str>> =
            configurations.map(|cs| cs.iter().map(ConfigurationId::as_str).collect());
        if ids.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        // No index holds the stale rows (it would make every event's bump a non-HOT update, see
        // the V9 migration): the visits of the configurations are read through
        // `visits_by_configuration`, the stale ones kept.
        let rows = client
            .query(
                "SELECT id, events_version FROM visits
                 WHERE events_version > outcome_version
                     AND ($1::text[] IS NULL OR configuration_id = ANY($1))
                 LIMIT $2",
                &[&ids, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StaleOutcome {
                    visit: VisitId::new(row.try_get::<_, String>(0)?)?,
                    events_version: row.try_get(1)?,
                })
            })
            .collect()
    }

    async fn store_outcomes(
        &self,
        outcomes: &[(StaleOutcome, VisitOutcome)],
    ) -> Result<u64, StoreError> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        // One statement for the batch, one round trip (a deadlock between two refreshers is
        // retried by `transaction!`). Read committed: each row's condition is checked on its latest version, so a
        // slower writer of an older outcome changes nothing.
        let mut sorted: Vec<&(StaleOutcome, VisitOutcome)> = outcomes.iter().collect();
        sorted.sort_by(|a, b| a.0.visit.as_str().cmp(b.0.visit.as_str()));
        let mut columns = OutcomeColumns::default();
        for (stale, outcome) in sorted {
            let (status, start, end, wait, attendees) = outcome_params(outcome);
            columns.ids.push(stale.visit.as_str().to_owned());
            columns.statuses.push(status.to_owned());
            columns.starts.push(start);
            columns.ends.push(end);
            columns.waits.push(wait);
            columns.attendees.push(attendees);
            columns.versions.push(stale.events_version);
        }
        super::transaction!(self, IsolationLevel::ReadCommitted, |tx| {
            Ok(tx
                .execute(
                    "UPDATE visits v SET status = u.status, visit_start_at = u.start_at,
                         visit_end_at = u.end_at, lobby_wait_ms = u.wait_ms,
                         attendees = u.attendees, outcome_version = u.version
                     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                 $5::bigint[], $6::bigint[], $7::bigint[])
                         AS u(id, status, start_at, end_at, wait_ms, attendees, version)
                     WHERE v.id = u.id AND v.outcome_version < u.version",
                    &[
                        &columns.ids,
                        &columns.statuses,
                        &columns.starts,
                        &columns.ends,
                        &columns.waits,
                        &columns.attendees,
                        &columns.versions,
                    ],
                )
                .await?)
        })
    }

    async fn report_visits(
        &self,
        query: &ReportQuery,
        offset: u64,
        limit: u32,
    ) -> Result<ReportPage, StoreError> {
        if query.configurations.is_empty() {
            return Ok(ReportPage {
                rows: Vec::new(),
                total: 0,
            });
        }
        let (rows_sql, count_sql, params) =
            report_page_sql(query, placeholder, "id", " COLLATE \"C\"");
        let mut page_params = bound(params.clone());
        page_params.push(Box::new(i64::from(limit)));
        page_params.push(Box::new(i64::try_from(offset).unwrap_or(i64::MAX)));
        let count_params = bound(params);
        // One snapshot for the count and the page.
        super::transaction!(self, IsolationLevel::RepeatableRead, |tx| {
            let total: i64 = tx
                .query_one(&count_sql, &refs(&count_params))
                .await?
                .try_get(0)?;
            let rows = tx
                .query(&rows_sql, &refs(&page_params))
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        RawVisit::from_row(row, 0)?.into_visit()?,
                        RawOutcome::from_row(row, VISIT_COLUMN_COUNT)?.into_outcome()?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(ReportPage {
                rows,
                total: u64::try_from(total).unwrap_or(0),
            })
        })
    }

    async fn report_points(
        &self,
        query: &ReportQuery,
        limit: u32,
    ) -> Result<Vec<ReportPoint>, StoreError> {
        if query.configurations.is_empty() {
            return Ok(Vec::new());
        }
        let (condition, params) = report_where(query, placeholder);
        let sql = format!(
            "SELECT v.created_at, v.status, v.lobby_wait_ms FROM visits v WHERE {condition}
             ORDER BY v.created_at DESC LIMIT ${}",
            params.len() + 1
        );
        let mut params = bound(params);
        params.push(Box::new(i64::from(limit)));
        let client = self.client().await?;
        client
            .query(&sql, &refs(&params))
            .await?
            .iter()
            .map(|row| {
                point(
                    row.try_get(0)?,
                    &row.try_get::<_, String>(1)?,
                    row.try_get(2)?,
                )
            })
            .collect()
    }

    async fn report_departments(
        &self,
        configurations: &[ConfigurationId],
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare(&departments_sql("$1", "$2")).await?;
        let mut names = Vec::new();
        for c in configurations {
            for row in client
                .query(&stmt, &[&c.as_str(), &i64::from(limit)])
                .await?
            {
                names.push(row.try_get::<_, String>(0)?);
            }
        }
        names.sort();
        names.dedup();
        names.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(names)
    }
}
