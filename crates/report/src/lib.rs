//! The visits report, shared by the portal's pages, its CSV export and its JSON API: the recent
//! visits of the configurations someone may see, each with what its stored events say (start,
//! duration, lobby wait, attendees, status, from `visitbridge_audit::VisitTimeline`), one visit's
//! timeline and write-back, and the report's charts ([`charts`]). Each is a bounded number of
//! store reads whatever the number of visits (a report: configurations, visits, their events).
//! Only what the store holds is shown: no names, no visit keys.

#![deny(missing_docs)]

pub mod charts;
pub mod nav;

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, SecondsFormat, Utc};
use serde::Serialize;
use visitbridge_approval::{Configuration, ConfigurationId, TenantId};
use visitbridge_audit::{
    ConnectedInterval, LobbyWait, ParticipantRole, VisitStatus, VisitTimeline,
    outcomes::refresh_outcomes, participant_labels, stats::VisitPoint,
};
pub use visitbridge_store::ReportSort;
use visitbridge_store::{
    EventOrigin, EventParticipant, OutboxItem, OutboxState, ReportQuery, Visit, VisitEventKind,
    VisitId, VisitOutcome,
};

use visitbridge_store::{Store, StoreError};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A filter, sort or page parameter is not one the report offers (the message says which).
    #[error("{0}")]
    InvalidFilter(String),
    /// No such visit (or another organisation's: the same answer).
    #[error("no such visit")]
    VisitNotFound,
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// The CSV could not be written.
    #[error("the CSV could not be written")]
    Csv(#[source] csv::Error),
    /// The visits' outcomes could not be brought up to date.
    #[error("the visits' outcomes could not be brought up to date")]
    Outcomes(#[source] visitbridge_audit::AuditError),
}

fn invalid(message: impl Into<String>) -> ReportError {
    ReportError::InvalidFilter(message.into())
}

/// Visits on one page of the portal's report.
pub const PAGE_SIZE: u32 = 50;
/// The most visits one page (of the JSON API) may ask for.
pub const MAX_PAGE_SIZE: u32 = 500;
/// The most visits one CSV export holds (newest first, or in the chosen order); the page says
/// how many matched.
pub const MAX_CSV_ROWS: u32 = 100_000;
/// The most visits the charts read (newest first).
pub const MAX_CHART_POINTS: u32 = 200_000;
/// The longest date range, in days.
pub const MAX_RANGE_DAYS: i64 = 366;
/// The most departments the filter offers.
pub const MAX_DEPARTMENTS: u32 = 500;
/// Batches of stale outcomes a report derives before it reads (1,000 visits each): what events
/// arrived since the launch service's housekeeping last ran. A bigger backlog (after the upgrade
/// that added outcomes) is the housekeeping's to drain; the page says so meanwhile.
const OUTCOME_BATCHES: usize = 2;

/// Which launches a report covers: the reference product's last 7, 30 or 90 days, or a range of
/// dates (UTC, both included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Period {
    /// The last so many days before now.
    LastDays(u16),
    /// From the start of `from` to the end of `to` (UTC days).
    Dates {
        /// The first day.
        from: NaiveDate,
        /// The last day.
        to: NaiveDate,
    },
}

impl Period {
    /// The "last days" offered.
    pub const CHOICES: [u16; 3] = [7, 30, 90];

    /// The instants covered at `now`: launched at or after the first, before the second. The
    /// last days end a day after `now`, so that a replica whose clock is ahead is not missed.
    pub fn bounds(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        match self {
            Self::LastDays(days) => (
                now - Duration::days(i64::from(days)),
                now + Duration::days(1),
            ),
            Self::Dates { from, to } => (
                from.and_time(NaiveTime::MIN).and_utc(),
                (to + Duration::days(1)).and_time(NaiveTime::MIN).and_utc(),
            ),
        }
    }

    /// The days a chart of the period shows, at `now`.
    pub fn days_shown(self, now: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
        match self {
            Self::LastDays(days) => (
                (now - Duration::days(i64::from(days))).date_naive(),
                now.date_naive(),
            ),
            Self::Dates { from, to } => (from, to),
        }
    }

    /// How a heading names it.
    pub fn describe(self) -> String {
        match self {
            Self::LastDays(days) => format!("the last {days} days"),
            Self::Dates { from, to } if from == to => format!("{from}"),
            Self::Dates { from, to } => format!("{from} to {to}"),
        }
    }
}

/// What a report shows: which visits, in which order, which page. Parsed from the query string
/// the page's form, its column headers and its page links write ([`Self::from_query`],
/// [`Self::to_query`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFilter {
    /// Which launches.
    pub period: Period,
    /// Only this configuration's visits (else every one the reader may see).
    pub configuration: Option<ConfigurationId>,
    /// Only this department's.
    pub department: Option<String>,
    /// When not empty: only visits with one of these statuses.
    pub statuses: Vec<VisitStatus>,
    /// The order.
    pub sort: ReportSort,
    /// Largest (or newest) first.
    pub descending: bool,
    /// The page, from 1.
    pub page: u32,
    /// Visits per page.
    pub per_page: u32,
}

impl Default for ReportFilter {
    fn default() -> Self {
        Self {
            period: Period::LastDays(30),
            configuration: None,
            department: None,
            statuses: Vec::new(),
            sort: ReportSort::Launched,
            descending: true,
            page: 1,
            per_page: PAGE_SIZE,
        }
    }
}

fn date_parameter(name: &str, text: &str) -> Result<NaiveDate, ReportError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|d| (2000..=2100).contains(&d.year()))
        .ok_or_else(|| {
            invalid(format!(
                "{name} must be a date (YYYY-MM-DD) between 2000 and 2100"
            ))
        })
}

impl ReportFilter {
    /// The filter of a query string: `days` (7, 30 or 90; 30 when absent) or `from` and `to`
    /// (dates, UTC, both included, at most 366 days; `days` wins when both are given), `configuration`, `department`, `status`
    /// (repeatable), `sort` and `order` (`asc`, `desc`), `page` (from 1) and `per_page` (1 to
    /// [`MAX_PAGE_SIZE`], default [`PAGE_SIZE`]). Empty values count as absent (an unfilled
    /// form field); unknown parameters are ignored.
    pub fn from_query(query: Option<&str>) -> Result<Self, ReportError> {
        let mut filter = Self::default();
        let (mut days, mut from, mut to, mut order) = (None, None, None, None);
        let pairs: Vec<(String, String)> = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        for (key, value) in pairs {
            let value = value.trim().to_owned();
            if value.is_empty() {
                continue;
            }
            match key.as_str() {
                "days" => days = Some(value),
                "from" => from = Some(date_parameter("from", &value)?),
                "to" => to = Some(date_parameter("to", &value)?),
                "configuration" => {
                    filter.configuration = Some(
                        ConfigurationId::new(value)
                            .map_err(|_| invalid("configuration is not a configuration id"))?,
                    );
                }
                "department" => {
                    if value.len() > 200 || value.chars().any(char::is_control) {
                        return Err(invalid("department is not a department name"));
                    }
                    filter.department = Some(value);
                }
                "status" => {
                    let status = VisitStatus::parse(&value).ok_or_else(|| {
                        invalid(format!(
                            "status must be one of {}",
                            VisitStatus::ALL.map(VisitStatus::as_str).join(", ")
                        ))
                    })?;
                    if !filter.statuses.contains(&status) {
                        filter.statuses.push(status);
                    }
                }
                "sort" => {
                    filter.sort = ReportSort::parse(&value).ok_or_else(|| {
                        invalid(format!(
                            "sort must be one of {}",
                            ReportSort::ALL.map(ReportSort::as_str).join(", ")
                        ))
                    })?;
                }
                "order" => order = Some(value),
                "page" => {
                    filter.page = value
                        .parse::<u32>()
                        .ok()
                        .filter(|p| (1..=1_000_000).contains(p))
                        .ok_or_else(|| invalid("page must be a number from 1"))?;
                }
                "per_page" => {
                    filter.per_page = value
                        .parse::<u32>()
                        .ok()
                        .filter(|p| (1..=MAX_PAGE_SIZE).contains(p))
                        .ok_or_else(|| {
                            invalid(format!(
                                "per_page must be a number from 1 to {MAX_PAGE_SIZE}"
                            ))
                        })?;
                }
                _ => {}
            }
        }
        filter.period = match (days, from, to) {
            // The form keeps the dates filled in when a number of days is chosen again.
            (Some(days), _, _) => Period::LastDays(
                days.parse::<u16>()
                    .ok()
                    .filter(|d| Period::CHOICES.contains(d))
                    .ok_or_else(|| invalid("days must be 7, 30 or 90"))?,
            ),
            (None, Some(from), Some(to)) => {
                if to < from {
                    return Err(invalid("the date range ends before it starts"));
                }
                if (to - from).num_days() >= MAX_RANGE_DAYS {
                    return Err(invalid(format!(
                        "a date range is at most {MAX_RANGE_DAYS} days"
                    )));
                }
                Period::Dates { from, to }
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(invalid("a date range needs both from and to"));
            }
            (None, None, None) => Period::LastDays(30),
        };
        filter.descending = match order.as_deref() {
            None => !matches!(filter.sort, ReportSort::Department | ReportSort::Status),
            Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(invalid("order must be asc or desc")),
        };
        Ok(filter)
    }

    /// The query string of this filter (what [`Self::from_query`] reads back), leaving out
    /// what is the default.
    pub fn to_query(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        match self.period {
            Period::LastDays(days) => {
                out.append_pair("days", &days.to_string());
            }
            Period::Dates { from, to } => {
                out.append_pair("from", &from.to_string());
                out.append_pair("to", &to.to_string());
            }
        }
        if let Some(c) = &self.configuration {
            out.append_pair("configuration", c.as_str());
        }
        if let Some(d) = &self.department {
            out.append_pair("department", d);
        }
        for s in &self.statuses {
            out.append_pair("status", s.as_str());
        }
        if self.sort != ReportSort::Launched || !self.descending {
            out.append_pair("sort", self.sort.as_str());
            out.append_pair("order", if self.descending { "desc" } else { "asc" });
        }
        if self.per_page != PAGE_SIZE {
            out.append_pair("per_page", &self.per_page.to_string());
        }
        if self.page != 1 {
            out.append_pair("page", &self.page.to_string());
        }
        out.finish()
    }

    /// The same filter on another page.
    pub fn on_page(&self, page: u32) -> Self {
        Self {
            page,
            ..self.clone()
        }
    }

    /// The same filter sorted by `sort` (the other way round if it already is), from page 1.
    pub fn sorted_by(&self, sort: ReportSort) -> Self {
        let descending = if self.sort == sort {
            !self.descending
        } else {
            !matches!(sort, ReportSort::Department | ReportSort::Status)
        };
        Self {
            sort,
            descending,
            page: 1,
            ..self.clone()
        }
    }

    /// Whether anything but the period narrows the report.
    pub fn narrows(&self) -> bool {
        self.configuration.is_some() || self.department.is_some() || !self.statuses.is_empty()
    }
}

/// The configuration a visit was launched through, as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigurationRef {
    /// Its id.
    pub id: String,
    /// The FHIR base URL that served launches.
    pub fhir_base_url: String,
    /// `test` or `production`.
    pub environment: String,
}

impl ConfigurationRef {
    /// The URL and environment that served launches (the approved version), else the current.
    fn of(c: &Configuration) -> Self {
        let settings = c.approved().map_or(c.settings(), |a| &a.settings);
        Self {
            id: c.id().to_string(),
            fhir_base_url: settings.fhir_base_url.to_string(),
            environment: settings.environment.to_string(),
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct VisitSummary {
    /// Our id of the visit (the EHR's visit key is kept only hashed, so it cannot be shown).
    pub id: String,
    /// When the first launch created the visit.
    pub launched_at: DateTime<Utc>,
    /// When a staff member and a patient or guest were first both connected.
    pub start: Option<DateTime<Utc>>,
    /// When the last person left.
    pub end: Option<DateTime<Utc>>,
    /// From `start` to `end`.
    pub duration_seconds: Option<i64>,
    /// The meeting organiser's Entra object id (the launching clinician).
    pub organizer_object_id: Option<String>,
    /// The configuration the visit was launched through.
    pub configuration: ConfigurationRef,
    /// The department it was launched from, as the EHR names it.
    pub department: Option<String>,
    /// People who connected at least once (bots not counted).
    pub attendees: u32,
    /// The first patient's wait: lobby arrival to admission, or in the call until staff came.
    pub lobby_wait_seconds: Option<i64>,
    /// Where the visit stands.
    pub status: VisitStatus,
}

impl VisitSummary {
    fn of(visit: &Visit, configuration: ConfigurationRef, outcome: &VisitOutcome) -> Self {
        Self {
            id: visit.id.to_string(),
            launched_at: visit.created_at,
            start: outcome.start,
            end: outcome.end,
            duration_seconds: outcome
                .start
                .zip(outcome.end)
                .map(|(start, end)| (end - start).num_seconds()),
            organizer_object_id: visit.organizer_object_id.as_ref().map(|o| o.to_string()),
            configuration,
            department: visit.department.clone(),
            attendees: outcome.attendees,
            lobby_wait_seconds: outcome.lobby_wait.map(|d| d.num_seconds()),
            status: outcome.status,
        }
    }
}

/// The visits of the configurations someone may see that a filter picks, one page of them.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was asked for.
    pub filter: ReportFilter,
    /// Visits launched at or after this time…
    pub since: DateTime<Utc>,
    /// …and before this one are covered.
    pub before: DateTime<Utc>,
    /// The days the charts show.
    pub days_shown: (NaiveDate, NaiveDate),
    /// How many visits the filter matches.
    pub total: u64,
    /// How many pages they fill.
    pub pages: u32,
    /// The configurations the reader may see (whatever the filter).
    pub configurations: Vec<ConfigurationRef>,
    /// The departments their visits were launched from.
    pub departments: Vec<String>,
    /// The page's visits, in the filter's order.
    pub visits: Vec<VisitSummary>,
    /// What the charts need of every visit the filter matches (up to [`MAX_CHART_POINTS`]),
    /// when asked for.
    pub points: Option<Vec<VisitPoint>>,
    /// Some visits' figures are older than their events still (a backlog the launch service's
    /// housekeeping is deriving): they show as they were.
    pub outcomes_pending: bool,
}

/// What a report reads besides its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Include {
    /// The charts' points.
    pub charts: bool,
    /// The departments (for a filter's choices).
    pub departments: bool,
}

/// The visits of `tenant`'s configurations that `visible` accepts and `filter` picks, at `now`:
/// the page the filter names and how many there are in all. First derives the outcomes of
/// visits whose events changed since (see `visitbridge_audit::outcomes`); then a bounded number
/// of reads whatever the number of visits: configurations, the page with its count, and the
/// charts' points and the departments when `include` asks.
pub async fn recent(
    store: &dyn Store,
    tenant: &TenantId,
    visible: impl Fn(&Configuration) -> bool,
    filter: &ReportFilter,
    now: DateTime<Utc>,
    include: Include,
) -> Result<Report, ReportError> {
    let configurations: Vec<Configuration> = store
        .list_configurations(tenant)
        .await?
        .into_iter()
        .filter(|c| visible(c))
        .collect();
    let visible_ids: Vec<ConfigurationId> = configurations.iter().map(|c| c.id().clone()).collect();
    let ids: Vec<ConfigurationId> = match &filter.configuration {
        Some(wanted) if visible_ids.contains(wanted) => vec![wanted.clone()],
        Some(_) => return Err(invalid("no such configuration")),
        None => visible_ids.clone(),
    };
    let refreshed = refresh_outcomes(store, Some(&ids), OUTCOME_BATCHES)
        .await
        .map_err(ReportError::Outcomes)?;
    let (since, before) = filter.period.bounds(now);
    let query = ReportQuery {
        configurations: ids,
        launched_from: since,
        launched_before: before,
        department: filter.department.clone(),
        statuses: filter.statuses.clone(),
        sort: filter.sort,
        descending: filter.descending,
    };
    let offset = u64::from(filter.page.saturating_sub(1)) * u64::from(filter.per_page);
    let page = store.report_visits(&query, offset, filter.per_page).await?;
    let by_id: HashMap<&ConfigurationId, &Configuration> =
        configurations.iter().map(|c| (c.id(), c)).collect();
    let visits = page
        .rows
        .iter()
        .filter_map(|(visit, outcome)| {
            let c = by_id.get(&visit.configuration_id)?;
            Some(VisitSummary::of(visit, ConfigurationRef::of(c), outcome))
        })
        .collect();
    let points = if include.charts {
        let points = store.report_points(&query, MAX_CHART_POINTS).await?;
        Some(
            points
                .into_iter()
                .map(|p| VisitPoint {
                    launched_at: p.launched_at,
                    status: p.status,
                    lobby_wait: p.lobby_wait,
                })
                .collect(),
        )
    } else {
        None
    };
    let departments = if include.departments {
        store
            .report_departments(&visible_ids, MAX_DEPARTMENTS)
            .await?
    } else {
        Vec::new()
    };
    let pages =
        u32::try_from(page.total.div_ceil(u64::from(filter.per_page.max(1)))).unwrap_or(u32::MAX);
    Ok(Report {
        filter: filter.clone(),
        since,
        before,
        days_shown: filter.period.days_shown(now),
        total: page.total,
        pages,
        configurations: configurations.iter().map(ConfigurationRef::of).collect(),
        departments,
        visits,
        points,
        outcomes_pending: !refreshed.complete,
    })
}

/// The report `filter` picks as one CSV export: every visit it matches (up to
/// [`MAX_CSV_ROWS`]), in its order, whatever its page.
pub async fn csv_export(
    store: &dyn Store,
    tenant: &TenantId,
    visible: impl Fn(&Configuration) -> bool,
    filter: &ReportFilter,
    now: DateTime<Utc>,
) -> Result<(Report, String), ReportError> {
    let all = ReportFilter {
        page: 1,
        per_page: MAX_CSV_ROWS,
        ..filter.clone()
    };
    let report = recent(store, tenant, visible, &all, now, Include::default()).await?;
    let text = csv(&report).map_err(ReportError::Csv)?;
    Ok((report, text))
}

/// A visit's participant, named by role and order of arrival, never by who they are.
#[derive(Debug, Clone, Serialize)]
pub struct ParticipantView {
    /// "Clinician" (the organiser), "Staff member 2", "Patient / guest 1", "App 1".
    pub label: String,
    /// What the participant is to the visit.
    pub role: ParticipantRole,
    /// Connected from … to (open while still connected).
    pub connected: Vec<ConnectedInterval>,
    /// Waits in the lobby, where Graph reported the lobby.
    pub lobby: Vec<LobbyWait>,
}

/// Where the write-back of one event to one sink stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// The sink has it.
    Delivered,
    /// Not yet: on its way, or waiting for its next attempt.
    Pending,
    /// Given up on (too many attempts, or a permanent refusal); an operator can re-drive it.
    DeadLetter,
    /// Not sent, and never will be: the sink keeps only the latest status and a newer one was
    /// already delivered (sending this one would undo it). Final, not a failure.
    Superseded,
}

impl From<OutboxState> for DeliveryState {
    fn from(state: OutboxState) -> Self {
        match state {
            OutboxState::Delivered => Self::Delivered,
            OutboxState::Pending => Self::Pending,
            OutboxState::Dead => Self::DeadLetter,
            OutboxState::Superseded => Self::Superseded,
        }
    }
}

/// The write-back of one event to one sink.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    /// The outbox row (what a re-drive names).
    pub id: i64,
    /// The sink.
    pub sink: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Deliveries started so far.
    pub attempts: u32,
    /// When the sink took it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When a pending row is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last failure's short reason (no tokens, no PHI: the store keeps nothing else).
    pub last_error: Option<String>,
}

impl DeliveryView {
    fn of(item: &OutboxItem) -> Self {
        Self {
            id: item.id.0,
            sink: item.sink.to_string(),
            state: item.state.into(),
            attempts: item.attempts,
            delivered_at: item.delivered_at,
            next_attempt_at: (item.state == OutboxState::Pending).then_some(item.next_attempt_at),
            last_error: item.last_error.clone(),
        }
    }
}

/// One recorded event with its write-back.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// Its id.
    pub id: String,
    /// What happened.
    pub kind: VisitEventKind,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When we stored it.
    pub recorded_at: DateTime<Utc>,
    /// Live or from the attendance report.
    pub origin: EventOrigin,
    /// The participant's label (none for the call's start and end).
    pub participant: Option<String>,
    /// One per sink the event was enqueued for.
    pub deliveries: Vec<DeliveryView>,
}

/// One visit in full.
#[derive(Debug, Clone)]
pub struct VisitDetail {
    /// The visit's line of the report.
    pub visit: VisitSummary,
    /// When Graph said the call started.
    pub call_started_at: Option<DateTime<Utc>>,
    /// When Graph said the call ended.
    pub call_ended_at: Option<DateTime<Utc>>,
    /// In order of arrival.
    pub participants: Vec<ParticipantView>,
    /// In time order.
    pub events: Vec<EventView>,
}

/// One visit of `tenant`, if `visible` allows its configuration; another organisation's visit
/// is "not found", exactly like one that does not exist.
pub async fn detail<E: From<ReportError>>(
    store: &dyn Store,
    tenant: &TenantId,
    id: &str,
    visible: impl Fn(&Configuration) -> Result<(), E>,
) -> Result<VisitDetail, E> {
    let id = VisitId::new(id).map_err(|_| ReportError::VisitNotFound)?;
    let visit = store
        .get_visit(&id)
        .await
        .map_err(ReportError::from)?
        .ok_or(ReportError::VisitNotFound)?;
    let configuration = store
        .get_configuration(tenant, &visit.configuration_id)
        .await
        .map_err(ReportError::from)?
        .ok_or(ReportError::VisitNotFound)?;
    visible(&configuration)?;
    let events = store
        .events_for_visit(&id)
        .await
        .map_err(ReportError::from)?;
    let outbox = store
        .outbox_for_visit(&id)
        .await
        .map_err(ReportError::from)?;
    let timeline = VisitTimeline::from_events(&events);

    let organizer = visit.organizer_object_id.as_ref().map(|o| o.as_str());
    let labels = participant_labels(&events, organizer);
    let label_of = |p: &EventParticipant| {
        labels
            .iter()
            .find(|(known, _)| *known == p)
            .map(|(_, label)| label.clone())
    };
    let participants = labels
        .iter()
        .filter_map(|(p, label)| {
            let t = timeline
                .participants
                .iter()
                .find(|t| &t.participant == *p)?;
            Some(ParticipantView {
                label: label.clone(),
                role: t.role,
                connected: t.intervals.clone(),
                lobby: t.lobby.clone(),
            })
        })
        .collect();
    let mut deliveries: HashMap<&str, Vec<DeliveryView>> = HashMap::new();
    for item in &outbox {
        deliveries
            .entry(item.event_id.as_str())
            .or_default()
            .push(DeliveryView::of(item));
    }
    let events = events
        .iter()
        .map(|e| EventView {
            id: e.event_id.to_string(),
            kind: e.kind,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            origin: e.origin,
            participant: e.participant.as_ref().and_then(label_of),
            deliveries: deliveries.remove(e.event_id.as_str()).unwrap_or_default(),
        })
        .collect();
    Ok(VisitDetail {
        visit: VisitSummary::of(
            &visit,
            ConfigurationRef::of(&configuration),
            &timeline.outcome(),
        ),
        call_started_at: timeline.call_started_at,
        call_ended_at: timeline.call_ended_at,
        participants,
        events,
    })
}

/// How the report names a status.
pub fn status_label(status: VisitStatus) -> &'static str {
    match status {
        VisitStatus::Completed => "Completed",
        VisitStatus::NoShow => "No-show",
        VisitStatus::InProgress => "In progress",
        VisitStatus::Waiting => "Waiting",
        VisitStatus::NotStarted => "Not started",
    }
}

/// The machine name of a status (as in the JSON API and the CSV).
pub fn status_code(status: VisitStatus) -> &'static str {
    status.as_str()
}

/// How the report names a sort's column.
pub fn sort_label(sort: ReportSort) -> &'static str {
    match sort {
        ReportSort::Launched => "Launched (UTC)",
        ReportSort::Start => "Start (UTC)",
        ReportSort::Duration => "Duration",
        ReportSort::LobbyWait => "Lobby wait",
        ReportSort::Attendees => "Attendees",
        ReportSort::Status => "Status",
        ReportSort::Department => "Department",
    }
}

/// The CSV export's header, one column per report column (the configuration as its id, URL and
/// environment; the end as well as the duration).
pub const CSV_HEADER: [&str; 13] = [
    "visit_id",
    "launched_utc",
    "start_utc",
    "end_utc",
    "duration_seconds",
    "organizer_object_id",
    "configuration_id",
    "fhir_base_url",
    "environment",
    "department",
    "attendees",
    "lobby_wait_seconds",
    "status",
];

/// The report as CSV (RFC 4180: CRLF line ends, quoted where needed): times in RFC 3339 UTC,
/// durations in seconds, empty where unknown.
pub fn csv(report: &Report) -> Result<String, csv::Error> {
    let time = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    let mut out = csv_writer();
    write_record(&mut out, CSV_HEADER.iter().map(|h| (*h).to_owned()))?;
    for v in &report.visits {
        write_record(
            &mut out,
            [
                v.id.clone(),
                time(Some(v.launched_at)),
                time(v.start),
                time(v.end),
                number(v.duration_seconds),
                v.organizer_object_id.clone().unwrap_or_default(),
                v.configuration.id.clone(),
                v.configuration.fhir_base_url.clone(),
                v.configuration.environment.clone(),
                v.department.clone().unwrap_or_default(),
                v.attendees.to_string(),
                number(v.lobby_wait_seconds),
                status_code(v.status).to_owned(),
            ],
        )?;
    }
    csv_text(out)
}

/// A writer of RFC 4180 records (CRLF, fields quoted only when they need it).
fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new())
}

/// What `writer` wrote, as text (our fields are all UTF-8).
fn csv_text(writer: csv::Writer<Vec<u8>>) -> Result<String, csv::Error> {
    let bytes = writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    String::from_utf8(bytes)
        .map_err(|e| csv::Error::from(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

fn write_record(
    out: &mut csv::Writer<Vec<u8>>,
    fields: impl IntoIterator<Item = String>,
) -> Result<(), csv::Error> {
    out.write_record(fields.into_iter().map(formula_safe))
}

/// A text that a spreadsheet would run as a formula (leading `=`, `+`, `-`, `@`, tab or carriage
/// return) prefixed with `'`, so that it is shown as text.
fn formula_safe(value: String) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value
    }
}

/// A duration as a person reads it: `45s`, `4m 05s`, `1h 02m`.
pub fn duration_text(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(query: &str) -> Result<ReportFilter, ReportError> {
        ReportFilter::from_query(Some(query))
    }

    #[test]
    fn periods_are_the_reports_three_or_a_range_of_dates() {
        assert_eq!(
            ReportFilter::from_query(None).unwrap().period,
            Period::LastDays(30)
        );
        assert_eq!(parsed("").unwrap().period, Period::LastDays(30));
        assert_eq!(parsed("days=7").unwrap().period, Period::LastDays(7));
        assert_eq!(parsed("x=1&days=90").unwrap().period, Period::LastDays(90));
        // An unfilled form field is absent.
        assert_eq!(
            parsed("days=&from=&to=").unwrap().period,
            Period::LastDays(30)
        );
        assert_eq!(
            parsed("days=7&from=2026-03-01&to=2026-03-02")
                .unwrap()
                .period,
            Period::LastDays(7)
        );
        let d = |t: &str| NaiveDate::parse_from_str(t, "%Y-%m-%d").unwrap();
        assert_eq!(
            parsed("from=2026-03-01&to=2026-03-31").unwrap().period,
            Period::Dates {
                from: d("2026-03-01"),
                to: d("2026-03-31")
            }
        );
        for bad in [
            "days=8",
            "days=-7",
            "days=seven",
            "days=3650",
            "from=2026-03-02&to=2026-03-01",
            "from=2026-03-01",
            "to=2026-03-01",
            "from=2026-02-30&to=2026-03-01",
            "from=1999-01-01&to=1999-01-02",
            "from=2025-01-01&to=2026-01-02",
            "status=lost",
            "sort=name",
            "order=up",
            "page=0",
            "page=x",
            "per_page=501",
            "department=a%0Ab",
        ] {
            assert!(
                matches!(parsed(bad), Err(ReportError::InvalidFilter(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_range_covers_whole_utc_days() {
        let d = |t: &str| NaiveDate::parse_from_str(t, "%Y-%m-%d").unwrap();
        let (from, before) = Period::Dates {
            from: d("2026-03-01"),
            to: d("2026-03-01"),
        }
        .bounds(Utc::now());
        assert_eq!(from.to_rfc3339(), "2026-03-01T00:00:00+00:00");
        assert_eq!(before.to_rfc3339(), "2026-03-02T00:00:00+00:00");
    }

    #[test]
    fn a_filter_reads_back_what_it_writes() {
        let filter = parsed(
            "from=2026-03-01&to=2026-03-31&configuration=c-1&department=EMC+FAMILY+MEDICINE\
             &status=completed&status=no-show&status=completed&sort=lobby-wait&order=asc&page=3\
             &per_page=20",
        )
        .unwrap();
        assert_eq!(
            filter.statuses,
            vec![VisitStatus::Completed, VisitStatus::NoShow]
        );
        assert_eq!(filter.sort, ReportSort::LobbyWait);
        assert!(!filter.descending);
        assert_eq!((filter.page, filter.per_page), (3, 20));
        assert_eq!(parsed(&filter.to_query()).unwrap(), filter);
        assert_eq!(ReportFilter::default().to_query(), "days=30");
        // Sorting again by the same column turns it round, from page 1; another column starts
        // at its natural direction.
        let again = filter.sorted_by(ReportSort::LobbyWait);
        assert!(again.descending);
        assert_eq!(again.page, 1);
        assert!(!filter.sorted_by(ReportSort::Department).descending);
        assert!(filter.sorted_by(ReportSort::Duration).descending);
        assert_eq!(parsed(&filter.on_page(7).to_query()).unwrap().page, 7);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(45), "45s");
        assert_eq!(duration_text(245), "4m 05s");
        assert_eq!(duration_text(3720), "1h 02m");
        assert_eq!(duration_text(-3), "0s");
    }

    /// One field as the report writes it (in a record of two, so that an empty field is not
    /// quoted as a record of its own).
    fn csv_field(value: &str) -> String {
        let mut out = csv_writer();
        write_record(&mut out, [value.to_owned(), String::new()]).unwrap();
        let line = csv_text(out).unwrap();
        line.strip_suffix(",\r\n").unwrap().to_owned()
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("@x,y"), "\"'@x,y\"");
    }
}
