//! The visits report, shared by the portal's pages, its CSV export and its JSON API: the recent
//! visits of the configurations someone may see, each with what its stored events say (start,
//! duration, lobby wait, attendees, status, from `visitbridge_audit::VisitTimeline`), one visit's
//! timeline and write-back, and the report's charts ([`charts`]). Each is a bounded number of
//! store reads whatever the number of visits (a report: configurations, visits, their events).
//! Only what the store holds is shown: no names, no visit keys.

#![deny(missing_docs)]

pub mod charts;

use std::collections::HashMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;
use visitbridge_approval::{Configuration, ConfigurationId, TenantId};
use visitbridge_audit::{
    ConnectedInterval, LobbyWait, ParticipantRole, VisitStatus, VisitTimeline, participant_labels,
};
use visitbridge_store::{
    EventOrigin, EventParticipant, OutboxItem, OutboxState, Visit, VisitEventKind, VisitId,
};

use visitbridge_store::{Store, StoreError};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `days` is not one of the periods offered.
    #[error("days must be 7, 30 or 90")]
    InvalidPeriod,
    /// No such visit (or another organisation's: the same answer).
    #[error("no such visit")]
    VisitNotFound,
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
}

/// At most this many visits in one report (newest first); the report says when there were more.
pub const MAX_VISITS: usize = 500;

/// How far back a report looks: the reference product's 7, 30 or 90 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Period(u16);

impl Period {
    /// The periods offered.
    pub const CHOICES: [u16; 3] = [7, 30, 90];

    /// `days` from a query string: 7, 30 or 90; 30 when absent.
    pub fn from_query(query: Option<&str>) -> Result<Self, ReportError> {
        let days = query
            .map(|q| url::form_urlencoded::parse(q.as_bytes()))
            .and_then(|mut pairs| pairs.find(|(k, _)| k == "days"))
            .map(|(_, v)| v.into_owned());
        match days.as_deref() {
            None | Some("") => Ok(Self(30)),
            Some(text) => text
                .parse::<u16>()
                .ok()
                .filter(|d| Self::CHOICES.contains(d))
                .map(Self)
                .ok_or(ReportError::InvalidPeriod),
        }
    }

    /// The number of days.
    pub fn days(self) -> u16 {
        self.0
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
    /// People who connected at least once (bots not counted).
    pub attendees: usize,
    /// The first patient's wait: lobby arrival to admission, or in the call until staff came.
    pub lobby_wait_seconds: Option<i64>,
    /// Where the visit stands.
    pub status: VisitStatus,
}

impl VisitSummary {
    fn of(visit: &Visit, configuration: ConfigurationRef, timeline: &VisitTimeline) -> Self {
        Self {
            id: visit.id.to_string(),
            launched_at: visit.created_at,
            start: timeline.start,
            end: timeline.end,
            duration_seconds: timeline.duration().map(|d| d.num_seconds()),
            organizer_object_id: visit.organizer_object_id.as_ref().map(|o| o.to_string()),
            configuration,
            attendees: timeline.attendee_count(),
            lobby_wait_seconds: timeline.lobby_wait.map(|d| d.num_seconds()),
            status: timeline.status,
        }
    }
}

/// The recent visits of the configurations someone may see.
#[derive(Debug, Clone)]
pub struct Report {
    /// The period.
    pub days: Period,
    /// Visits launched at or after this time are listed.
    pub since: DateTime<Utc>,
    /// More visits than [`MAX_VISITS`] were launched in the period: only the newest are listed.
    pub truncated: bool,
    /// How many configurations the report covers.
    pub configurations: usize,
    /// Newest launch first.
    pub visits: Vec<VisitSummary>,
}

/// The visits launched in `period` before `now` through the configurations of `tenant` that
/// `visible` accepts, with their timelines.
pub async fn recent(
    store: &dyn Store,
    tenant: &TenantId,
    visible: impl Fn(&Configuration) -> bool,
    period: Period,
    now: DateTime<Utc>,
) -> Result<Report, ReportError> {
    let since = now - Duration::days(i64::from(period.days()));
    let configurations: Vec<Configuration> = store
        .list_configurations(tenant)
        .await?
        .into_iter()
        .filter(|c| visible(c))
        .collect();
    // Two reads whatever the number of configurations and visits: the visits, then their events.
    let limit = u32::try_from(MAX_VISITS + 1).unwrap_or(u32::MAX);
    let ids: Vec<ConfigurationId> = configurations.iter().map(|c| c.id().clone()).collect();
    let mut visits = store.visits_since_in(&ids, since, limit).await?;
    let truncated = visits.len() > MAX_VISITS;
    visits.truncate(MAX_VISITS);
    let by_id: HashMap<&ConfigurationId, &Configuration> =
        configurations.iter().map(|c| (c.id(), c)).collect();
    let visit_ids: Vec<VisitId> = visits.iter().map(|v| v.id.clone()).collect();
    let mut events = store.event_summaries_for_visits(&visit_ids).await?;
    let mut rows = Vec::with_capacity(visits.len());
    for visit in &visits {
        let Some(c) = by_id.get(&visit.configuration_id) else {
            continue;
        };
        let timeline = VisitTimeline::from_events(&events.remove(&visit.id).unwrap_or_default());
        rows.push(VisitSummary::of(visit, ConfigurationRef::of(c), &timeline));
    }
    Ok(Report {
        days: period,
        since,
        truncated,
        configurations: configurations.len(),
        visits: rows,
    })
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
        visit: VisitSummary::of(&visit, ConfigurationRef::of(&configuration), &timeline),
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
    match status {
        VisitStatus::Completed => "completed",
        VisitStatus::NoShow => "no-show",
        VisitStatus::InProgress => "in-progress",
        VisitStatus::Waiting => "waiting",
        VisitStatus::NotStarted => "not-started",
    }
}

/// The CSV export's header, one column per report column.
pub const CSV_HEADER: [&str; 10] = [
    "visit_id",
    "launched_utc",
    "start_utc",
    "duration_seconds",
    "organizer_object_id",
    "fhir_base_url",
    "environment",
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
                number(v.duration_seconds),
                v.organizer_object_id.clone().unwrap_or_default(),
                v.configuration.fhir_base_url.clone(),
                v.configuration.environment.clone(),
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

    #[test]
    fn periods_are_the_reports_three() {
        assert_eq!(Period::from_query(None).unwrap().days(), 30);
        assert_eq!(Period::from_query(Some("")).unwrap().days(), 30);
        assert_eq!(Period::from_query(Some("days=7")).unwrap().days(), 7);
        assert_eq!(Period::from_query(Some("x=1&days=90")).unwrap().days(), 90);
        for bad in ["days=8", "days=-7", "days=seven", "days=3650"] {
            assert!(
                matches!(
                    Period::from_query(Some(bad)),
                    Err(ReportError::InvalidPeriod)
                ),
                "{bad}"
            );
        }
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
