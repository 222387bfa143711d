//! The reports' reads on SQLite.

use async_trait::async_trait;
use rusqlite::{params, params_from_iter, types::Value};
use visitbridge_approval::ConfigurationId;

use super::SqliteStore;
use crate::{
    StoreError, VisitId,
    records::{RawVisit, VISIT_COLUMN_COUNT},
    report::{
        RawOutcome, ReportPage, ReportParam, ReportPoint, ReportQuery, ReportRepo, StaleOutcome,
        VisitOutcome, departments_sql, outcome_params, point, report_page_sql, report_where,
    },
};

fn placeholder(n: usize) -> String {
    format!("?{n}")
}

fn values(params: Vec<ReportParam>) -> Vec<Value> {
    params
        .into_iter()
        .map(|p| match p {
            ReportParam::Text(t) => Value::Text(t),
            ReportParam::Int(i) => Value::Integer(i),
        })
        .collect()
}

#[async_trait]
impl ReportRepo for SqliteStore {
    async fn stale_outcomes(
        &self,
        configurations: Option<&[ConfigurationId]>,
        limit: u32,
    ) -> Result<Vec<StaleOutcome>, StoreError> {
        let configurations: Option<Vec<String>> =
            configurations.map(|cs| cs.iter().map(|c| c.as_str().to_owned()).collect());
        self.read(move |conn| {
            // The `visits_outcome_stale` index holds exactly the stale rows.
            let (sql, mut bound) = match &configurations {
                Some(ids) if ids.is_empty() => return Ok(Vec::new()),
                Some(ids) => {
                    let list = (1..=ids.len())
                        .map(placeholder)
                        .collect::<Vec<_>>()
                        .join(", ");
                    (
                        format!(
                            "SELECT id, events_version FROM visits
                             WHERE events_version > outcome_version AND configuration_id IN ({list})
                             LIMIT ?{}",
                            ids.len() + 1
                        ),
                        ids.iter().cloned().map(Value::Text).collect::<Vec<_>>(),
                    )
                }
                None => (
                    "SELECT id, events_version FROM visits
                     WHERE events_version > outcome_version LIMIT ?1"
                        .to_owned(),
                    Vec::new(),
                ),
            };
            bound.push(Value::Integer(i64::from(limit)));
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(bound), |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?;
            rows.map(|r| {
                let (id, events_version) = r?;
                Ok(StaleOutcome {
                    visit: VisitId::new(id)?,
                    events_version,
                })
            })
            .collect()
        })
        .await
    }

    async fn store_outcomes(
        &self,
        outcomes: &[(StaleOutcome, VisitOutcome)],
    ) -> Result<u64, StoreError> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let mut outcomes = outcomes.to_vec();
        outcomes.sort_by(|a, b| a.0.visit.as_str().cmp(b.0.visit.as_str()));
        self.write(move |tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE visits SET status = ?2, visit_start_at = ?3, visit_end_at = ?4,
                     lobby_wait_ms = ?5, attendees = ?6, outcome_version = ?7
                 WHERE id = ?1 AND outcome_version < ?7",
            )?;
            let mut stored = 0;
            for (stale, outcome) in &outcomes {
                let (status, start, end, wait, attendees) = outcome_params(outcome);
                stored += stmt.execute(params![
                    stale.visit.as_str(),
                    status,
                    start,
                    end,
                    wait,
                    attendees,
                    stale.events_version
                ])? as u64;
            }
            Ok(stored)
        })
        .await
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
        let (rows_sql, count_sql, params) = report_page_sql(query, placeholder, "rowid", "");
        let bound = values(params);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // One snapshot for the count and the page.
            let tx = conn.unchecked_transaction()?;
            let total: i64 = tx
                .prepare_cached(&count_sql)?
                .query_row(params_from_iter(bound.iter()), |row| row.get(0))?;
            let mut page_params = bound.clone();
            page_params.push(Value::Integer(i64::from(limit)));
            page_params.push(Value::Integer(offset));
            let rows = {
                let mut stmt = tx.prepare_cached(&rows_sql)?;
                let raw = stmt.query_map(params_from_iter(page_params), |row| {
                    Ok((
                        RawVisit::from_row(row, 0)?,
                        RawOutcome::from_row(row, VISIT_COLUMN_COUNT)?,
                    ))
                })?;
                raw.map(|r| {
                    let (visit, outcome) = r?;
                    Ok((visit.into_visit()?, outcome.into_outcome()?))
                })
                .collect::<Result<Vec<_>, StoreError>>()?
            };
            tx.commit()?;
            Ok(ReportPage {
                rows,
                total: u64::try_from(total).unwrap_or(0),
            })
        })
        .await
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
             ORDER BY v.created_at DESC LIMIT ?{}",
            params.len() + 1
        );
        let mut bound = values(params);
        bound.push(Value::Integer(i64::from(limit)));
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(bound), |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })?;
            rows.map(|r| {
                let (launched, status, wait) = r?;
                point(launched, &status, wait)
            })
            .collect()
        })
        .await
    }

    async fn report_departments(
        &self,
        configurations: &[ConfigurationId],
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = configurations
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.read(move |conn| {
            let sql = departments_sql("?1", "?2");
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut names = Vec::new();
            for id in &ids {
                let rows = stmt.query_map(
                    params![id, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |row| row.get::<_, String>(0),
                )?;
                for name in rows {
                    names.push(name?);
                }
            }
            names.sort();
            names.dedup();
            names.truncate(limit);
            Ok(names)
        })
        .await
    }
}
