//! What reports read: each visit's *outcome* (status, start, end, lobby wait, attendees), kept
//! on the visit's row so that a report filters, sorts and pages in the database instead of
//! replaying every visit's events, and the report's queries.
//!
//! An outcome is derived from the visit's events by `visitbridge_audit` (the store does not
//! interpret events) and stored with the *events version* it was derived from: every recorded
//! event bumps the visit's version in the event's transaction, so an outcome older than its
//! events is known ([`ReportRepo::stale_outcomes`]) and derived again before a report reads it.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use visitbridge_approval::ConfigurationId;

use crate::{StoreError, Visit, VisitId};

/// Where a visit stands, as reports show it (derived from its events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VisitStatus {
    /// Nothing happened yet.
    NotStarted,
    /// Someone is connected or in the lobby, but staff and patient have not been in together yet.
    Waiting,
    /// Staff and patient have been in together and someone is still connected (or waiting).
    InProgress,
    /// Staff and patient were in together; everyone has left.
    Completed,
    /// Everyone left (or the call ended) without staff and patient ever being in together.
    NoShow,
}

impl VisitStatus {
    /// Every status, in the order a report lists them.
    pub const ALL: [Self; 5] = [
        Self::Completed,
        Self::NoShow,
        Self::InProgress,
        Self::Waiting,
        Self::NotStarted,
    ];

    /// The machine name (JSON, CSV, query strings, the database).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "not-started",
            Self::Waiting => "waiting",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::NoShow => "no-show",
        }
    }

    /// The status of a machine name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What a visit's events add up to, as a report filters and sorts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitOutcome {
    /// Where the visit stands.
    pub status: VisitStatus,
    /// When a staff member and a patient or guest were first both connected.
    pub start: Option<DateTime<Utc>>,
    /// When the last person left, once nobody is connected or waiting.
    pub end: Option<DateTime<Utc>>,
    /// The first patient's wait (millisecond precision).
    pub lobby_wait: Option<Duration>,
    /// People who connected at least once (bots not counted).
    pub attendees: u32,
}

impl VisitOutcome {
    /// The outcome of a visit without events.
    pub const NOTHING_YET: Self = Self {
        status: VisitStatus::NotStarted,
        start: None,
        end: None,
        lobby_wait: None,
        attendees: 0,
    };
}

/// A visit whose stored outcome is older than its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleOutcome {
    /// The visit.
    pub visit: VisitId,
    /// Its events version now: the outcome derived from the events read after this is stored
    /// with it.
    pub events_version: i64,
}

/// What a report's rows are ordered by (then by launch, newest first, then by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportSort {
    /// When the visit was first launched.
    Launched,
    /// When staff and patient were first in together (visits that never started last).
    Start,
    /// From start to the last person leaving (unknown last).
    Duration,
    /// The first patient's wait (unknown last).
    LobbyWait,
    /// People who connected.
    Attendees,
    /// The status's machine name.
    Status,
    /// The department (unknown last).
    Department,
}

impl ReportSort {
    /// Every sort, as the report's columns come.
    pub const ALL: [Self; 7] = [
        Self::Launched,
        Self::Start,
        Self::Duration,
        Self::Department,
        Self::Attendees,
        Self::LobbyWait,
        Self::Status,
    ];

    /// The name in a query string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Launched => "launched",
            Self::Start => "start",
            Self::Duration => "duration",
            Self::LobbyWait => "lobby-wait",
            Self::Attendees => "attendees",
            Self::Status => "status",
            Self::Department => "department",
        }
    }

    /// The sort of a query string's name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The SQL expression sorted on (both backends), over `visits v`.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Self::Launched => "v.created_at",
            Self::Start => "v.visit_start_at",
            Self::Duration => "(v.visit_end_at - v.visit_start_at)",
            Self::LobbyWait => "v.lobby_wait_ms",
            Self::Attendees => "v.attendees",
            Self::Status => "v.status",
            Self::Department => "v.department",
        }
    }
}

/// Which visits a report covers, and in which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// Visits of these configurations (none: nothing matches).
    pub configurations: Vec<ConfigurationId>,
    /// Launched at or after this.
    pub launched_from: DateTime<Utc>,
    /// Launched before this.
    pub launched_before: DateTime<Utc>,
    /// Only visits of this department.
    pub department: Option<String>,
    /// When not empty: only visits with one of these statuses.
    pub statuses: Vec<VisitStatus>,
    /// The order.
    pub sort: ReportSort,
    /// Largest first.
    pub descending: bool,
}

/// One page of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPage {
    /// The visits of the page, in the query's order, with their outcomes.
    pub rows: Vec<(Visit, VisitOutcome)>,
    /// How many visits the query matches in all.
    pub total: u64,
}

/// The little a chart needs of one visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportPoint {
    /// When the visit was first launched.
    pub launched_at: DateTime<Utc>,
    /// Where it stands.
    pub status: VisitStatus,
    /// The first patient's wait.
    pub lobby_wait: Option<Duration>,
}

/// The reports' reads and the outcomes they read.
#[async_trait]
pub trait ReportRepo: Send + Sync {
    /// Visits (of `configurations`, or of any when `None`) whose outcome was derived from fewer
    /// events than they have now, at most `limit`.
    async fn stale_outcomes(
        &self,
        configurations: Option<&[ConfigurationId]>,
        limit: u32,
    ) -> Result<Vec<StaleOutcome>, StoreError>;
    /// Stores each outcome, derived from the visit's events as of `events_version`, unless one
    /// derived from as many events or more is already stored (a slower writer never undoes a
    /// newer outcome). How many were stored.
    async fn store_outcomes(
        &self,
        outcomes: &[(StaleOutcome, VisitOutcome)],
    ) -> Result<u64, StoreError>;
    /// The visits `query` matches, `offset` of them skipped, at most `limit`, and how many it
    /// matches in all (one snapshot).
    async fn report_visits(
        &self,
        query: &ReportQuery,
        offset: u64,
        limit: u32,
    ) -> Result<ReportPage, StoreError>;
    /// What the charts need of each visit `query` matches, newest launch first, at most `limit`.
    async fn report_points(
        &self,
        query: &ReportQuery,
        limit: u32,
    ) -> Result<Vec<ReportPoint>, StoreError>;
    /// The departments the visits of `configurations` were launched from, in order, at most
    /// `limit`.
    async fn report_departments(
        &self,
        configurations: &[ConfigurationId],
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
}

/// A query's `WHERE` clause over `visits v` and its parameters, for both backends: `placeholder`
/// writes the n-th (1-based) parameter as the backend spells it.
pub(crate) fn report_where(
    query: &ReportQuery,
    placeholder: fn(usize) -> String,
) -> (String, Vec<ReportParam>) {
    let mut params = Vec::new();
    // Binds each item, giving their placeholders as a list.
    let mut bind = |items: Vec<ReportParam>| {
        items
            .into_iter()
            .map(|p| {
                params.push(p);
                placeholder(params.len())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = |t: &str| ReportParam::Text(t.to_owned());
    let time = |t: DateTime<Utc>| ReportParam::Int(crate::records::to_millis(t));
    let configurations = bind(
        query
            .configurations
            .iter()
            .map(|c| text(c.as_str()))
            .collect(),
    );
    let from = bind(vec![time(query.launched_from)]);
    let before = bind(vec![time(query.launched_before)]);
    let mut sql = format!(
        "v.configuration_id IN ({configurations}) AND v.created_at >= {from} AND v.created_at < {before}"
    );
    if let Some(department) = &query.department {
        sql.push_str(&format!(
            " AND v.department = {}",
            bind(vec![text(department)])
        ));
    }
    if !query.statuses.is_empty() {
        let statuses = bind(query.statuses.iter().map(|s| text(s.as_str())).collect());
        sql.push_str(&format!(" AND v.status IN ({statuses})"));
    }
    (sql, params)
}

/// The `ORDER BY` of a report query: the sort (unknown values last, whatever the direction),
/// then newest launch first, then `tiebreak` (the row's key). `collate` follows a text column
/// (PostgreSQL's `COLLATE "C"`, so that both backends order text by its bytes).
pub(crate) fn report_order(query: &ReportQuery, collate: &str, tiebreak: &str) -> String {
    let direction = if query.descending { "DESC" } else { "ASC" };
    match query.sort {
        ReportSort::Launched => format!("v.created_at {direction}, {tiebreak}"),
        sort => {
            let e = sort.sql();
            let text = if matches!(sort, ReportSort::Status | ReportSort::Department) {
                collate
            } else {
                ""
            };
            format!(
                "CASE WHEN {e} IS NULL THEN 1 ELSE 0 END, {e}{text} {direction}, \
                 v.created_at DESC, {tiebreak}"
            )
        }
    }
}

/// The statements of one report page over `visits v`, for both backends: the page's rows and
/// the count of all that match, and their parameters (the page's limit and offset last, which
/// the count does not use). The page's order is found in `visits_report` alone (every column it
/// filters and sorts on, and the row's `key`: SQLite's `rowid`, PostgreSQL's `id`); only the
/// page's rows are then read from the table.
pub(crate) fn report_page_sql(
    query: &ReportQuery,
    placeholder: fn(usize) -> String,
    key: &str,
    collate: &str,
) -> (String, String, Vec<ReportParam>) {
    let (condition, params) = report_where(query, placeholder);
    let order = report_order(query, collate, &format!("v.{key}"));
    let (limit, offset) = (placeholder(params.len() + 1), placeholder(params.len() + 2));
    let rows = format!(
        "SELECT {}, {OUTCOME_COLUMNS}
         FROM (SELECT v.{key} AS page_key FROM visits v WHERE {condition}
               ORDER BY {order} LIMIT {limit} OFFSET {offset}) p
         JOIN visits v ON v.{key} = p.page_key
         ORDER BY {order}",
        crate::records::VISIT_COLUMNS
    );
    let count = format!("SELECT COUNT(*) FROM visits v WHERE {condition}");
    (rows, count, params)
}

/// The departments of one configuration's visits, one index probe each (a skip scan of
/// `visits_by_department`): parameters the configuration and the limit.
pub(crate) fn departments_sql(p1: &str, p2: &str) -> String {
    format!(
        "WITH RECURSIVE d(name) AS (
             SELECT (SELECT MIN(department) FROM visits
                     WHERE configuration_id = {p1} AND department IS NOT NULL)
             UNION ALL
             SELECT (SELECT MIN(department) FROM visits
                     WHERE configuration_id = {p1} AND department IS NOT NULL
                         AND department > d.name)
             FROM d WHERE d.name IS NOT NULL)
         SELECT name FROM d WHERE name IS NOT NULL LIMIT {p2}"
    )
}

/// A parameter of [`report_where`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReportParam {
    /// Text.
    Text(String),
    /// An integer.
    Int(i64),
}

/// The outcome columns as read after the visit's, in this order.
pub(crate) const OUTCOME_COLUMNS: &str =
    "v.status, v.visit_start_at, v.visit_end_at, v.lobby_wait_ms, v.attendees";

/// An outcome as read, before its values are checked.
pub(crate) struct RawOutcome {
    pub(crate) status: String,
    pub(crate) start: Option<i64>,
    pub(crate) end: Option<i64>,
    pub(crate) lobby_wait_ms: Option<i64>,
    pub(crate) attendees: i64,
}

impl RawOutcome {
    /// Reads the [`OUTCOME_COLUMNS`] starting at column `at`.
    pub(crate) fn from_row<C: crate::records::Columns>(
        row: &C,
        at: usize,
    ) -> Result<Self, C::Error> {
        Ok(Self {
            status: row.text(at)?,
            start: row.opt_int(at + 1)?,
            end: row.opt_int(at + 2)?,
            lobby_wait_ms: row.opt_int(at + 3)?,
            attendees: row.int(at + 4)?,
        })
    }

    pub(crate) fn into_outcome(self) -> Result<VisitOutcome, StoreError> {
        const WHAT: &str = "visit outcome";
        let time = |t: Option<i64>| t.map(|t| crate::records::from_millis(WHAT, t)).transpose();
        Ok(VisitOutcome {
            status: VisitStatus::parse(&self.status).ok_or_else(|| StoreError::Corrupt {
                what: WHAT,
                detail: format!("unknown status {:?}", self.status),
            })?,
            start: time(self.start)?,
            end: time(self.end)?,
            lobby_wait: self.lobby_wait_ms.map(Duration::milliseconds),
            attendees: u32::try_from(self.attendees).map_err(|_| StoreError::Corrupt {
                what: WHAT,
                detail: "attendees out of range".to_owned(),
            })?,
        })
    }
}

/// An outcome as both backends bind it: status, start, end, lobby wait (ms), attendees.
pub(crate) fn outcome_params(
    o: &VisitOutcome,
) -> (&'static str, Option<i64>, Option<i64>, Option<i64>, i64) {
    (
        o.status.as_str(),
        o.start.map(crate::records::to_millis),
        o.end.map(crate::records::to_millis),
        o.lobby_wait.map(|d| d.num_milliseconds()),
        i64::from(o.attendees),
    )
}

/// A chart's point as read.
pub(crate) fn point(
    launched_ms: i64,
    status: &str,
    lobby_wait_ms: Option<i64>,
) -> Result<ReportPoint, StoreError> {
    Ok(ReportPoint {
        launched_at: crate::records::from_millis("visit", launched_ms)?,
        status: VisitStatus::parse(status).ok_or_else(|| StoreError::Corrupt {
            what: "visit outcome",
            detail: format!("unknown status {status:?}"),
        })?,
        lobby_wait: lobby_wait_ms.map(chrono::Duration::milliseconds),
    })
}

#[cfg(test)]
mod tests {
    use crate::records::{VISIT_COLUMN_COUNT, VISIT_COLUMNS};

    #[test]
    fn the_outcome_columns_start_after_the_visits() {
        assert_eq!(VISIT_COLUMNS.split(',').count(), VISIT_COLUMN_COUNT);
    }
}
