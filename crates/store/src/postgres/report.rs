//! The reports' reads on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::{IsolationLevel, types::ToSql};
use visitbridge_approval::ConfigurationId;

use super::PostgresStore;
use crate::{
    StoreError, VisitId,
    records::{RawVisit, VISIT_COLUMNS},
    report::{
        OUTCOME_COLUMNS, RawOutcome, ReportPage, ReportParam, ReportPoint, ReportQuery, ReportRepo,
        StaleOutcome, VisitOutcome, outcome_params, point, report_order, report_where,
    },
};

fn placeholder(n: usize) -> String {
    format!("${n}")
}

type Bound = Vec<Box<dyn ToSql + Sync + Send>>;

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
        // The `visits_outcome_stale` index holds exactly the stale rows.
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
        // Read committed: each row's condition is checked on its latest version, so a slower
        // writer of an older outcome changes nothing.
        super::transaction!(self, IsolationLevel::ReadCommitted, |tx| {
            let stmt = tx
                .prepare(
                    "UPDATE visits SET status = $2, visit_start_at = $3, visit_end_at = $4,
                         lobby_wait_ms = $5, attendees = $6, outcome_version = $7
                     WHERE id = $1 AND outcome_version < $7",
                )
                .await?;
            let mut stored = 0;
            for (stale, outcome) in outcomes {
                let (status, start, end, wait, attendees) = outcome_params(outcome);
                stored += tx
                    .execute(
                        &stmt,
                        &[
                            &stale.visit.as_str(),
                            &status,
                            &start,
                            &end,
                            &wait,
                            &attendees,
                            &stale.events_version,
                        ],
                    )
                    .await?;
            }
            Ok(stored)
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
        let (condition, params) = report_where(query, placeholder);
        let order = report_order(query, " COLLATE \"C\"");
        let n = params.len();
        let rows_sql = format!(
            "SELECT {VISIT_COLUMNS}, {OUTCOME_COLUMNS} FROM visits v WHERE {condition}
             ORDER BY {order} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let count_sql = format!("SELECT COUNT(*) FROM visits v WHERE {condition}");
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
                        RawOutcome::from_row(row, 16)?.into_outcome()?,
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
        if configurations.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = configurations.iter().map(ConfigurationId::as_str).collect();
        let client = self.client().await?;
        client
            .query(
                "SELECT DISTINCT department COLLATE \"C\" AS d FROM visits
                 WHERE configuration_id = ANY($1) AND department IS NOT NULL
                 ORDER BY d LIMIT $2",
                &[&ids, &i64::from(limit)],
            )
            .await?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect()
    }
}
