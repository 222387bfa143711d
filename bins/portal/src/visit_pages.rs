//! The visits pages: the visits of the configurations the signed-in person may see (the last 7,
//! 30 or 90 days or a range of dates, filtered by configuration, department and status, sorted
//! and paged), their CSV export, and one visit's timeline and write-back.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use visitbridge_approval::Configuration;
use visitbridge_audit::{ParticipantRole, VisitStatus};
use visitbridge_report::{
    self as report, DeliveryState, EventView, Include, MAX_CSV_ROWS, ParticipantView, Period,
    Report, ReportFilter, VisitDetail, VisitSummary,
    charts::{self, Chart},
    duration_text,
    nav::{self, ColumnSort, FilterForm, Pager},
    status_code, status_label,
};
use visitbridge_store::{EventOrigin, OutboxId, OutboxState, VisitEventKind, VisitId};

use crate::{
    AppState,
    error::PortalError,
    extract::PagePath,
    pages::check_visible,
    service,
    session::{CsrfForm, User},
    views::{Layout, render},
};

/// Whose visits a person sees: those of the configurations they may see (admins: all of their
/// organisation's; approvers: those naming them).
fn sees(user: &User, c: &Configuration) -> bool {
    check_visible(user, c).is_ok()
}

fn check_visit_visible(user: &User, c: &Configuration) -> Result<(), PortalError> {
    if sees(user, c) {
        Ok(())
    } else {
        // Names nobody: a refused person must not learn who may see it.
        Err(PortalError::Forbidden(
            "only your organisation's VisitBridge admins and the named approver of this visit's configuration can see it"
                .to_owned(),
        ))
    }
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn minute(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

fn second(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A time cell: the text shown and the machine-readable value for `<time datetime>`.
pub(crate) struct TimeCell {
    pub(crate) text: String,
    pub(crate) iso: String,
}

impl TimeCell {
    fn minute(at: DateTime<Utc>) -> Self {
        Self {
            text: minute(at),
            iso: iso(at),
        }
    }

    fn second(at: DateTime<Utc>) -> Self {
        Self {
            text: second(at),
            iso: iso(at),
        }
    }
}

/// One line of the visits table, as shown.
pub(crate) struct VisitRow {
    pub(crate) id: String,
    /// The id's first characters: enough to tell visits apart in the table.
    pub(crate) short_id: String,
    pub(crate) launched: TimeCell,
    pub(crate) start: Option<TimeCell>,
    /// What the start cell says when there is no start yet.
    pub(crate) no_start: &'static str,
    pub(crate) end: Option<TimeCell>,
    pub(crate) duration: String,
    pub(crate) organizer: Option<String>,
    pub(crate) organizer_short: String,
    pub(crate) configuration_id: String,
    pub(crate) fhir_base_url: String,
    pub(crate) environment: String,
    pub(crate) department: String,
    pub(crate) attendees: u32,
    pub(crate) lobby_wait: String,
    pub(crate) status: &'static str,
    pub(crate) status_class: &'static str,
}

fn shorten(id: &str) -> String {
    match id.char_indices().nth(8) {
        Some((at, _)) => format!("{}…", &id[..at]),
        None => id.to_owned(),
    }
}

impl VisitRow {
    /// The list shows times to the minute; a visit's own page to the second.
    fn of(v: &VisitSummary, precise: bool) -> Self {
        let time = if precise {
            TimeCell::second
        } else {
            TimeCell::minute
        };
        let (no_start, no_duration) = match v.status {
            VisitStatus::NotStarted | VisitStatus::Waiting => ("not yet", "not started"),
            VisitStatus::InProgress => ("not yet", "ongoing"),
            VisitStatus::Completed | VisitStatus::NoShow => ("never", "none"),
        };
        Self {
            id: v.id.clone(),
            short_id: shorten(&v.id),
            launched: time(v.launched_at),
            start: v.start.map(time),
            no_start,
            end: v.end.map(time),
            duration: v
                .duration_seconds
                .map_or_else(|| no_duration.to_owned(), duration_text),
            organizer: v.organizer_object_id.clone(),
            organizer_short: v
                .organizer_object_id
                .as_deref()
                .map_or_else(|| "unknown".to_owned(), shorten),
            configuration_id: v.configuration.id.clone(),
            fhir_base_url: v.configuration.fhir_base_url.clone(),
            environment: v.configuration.environment.clone(),
            department: v.department.clone().unwrap_or_else(|| "unknown".to_owned()),
            attendees: v.attendees,
            lobby_wait: v
                .lobby_wait_seconds
                .map_or_else(|| "none".to_owned(), duration_text),
            status: status_label(v.status),
            status_class: status_code(v.status),
        }
    }
}

/// The visits report.
#[derive(Template, WebTemplate)]
#[template(path = "visits.html")]
pub(crate) struct VisitsPage {
    pub(crate) layout: Layout,
    /// What the report covers, as a heading says it.
    pub(crate) period: String,
    pub(crate) form: FilterForm,
    pub(crate) sorts: Vec<ColumnSort>,
    pub(crate) pager: Pager,
    pub(crate) total: u64,
    pub(crate) page: u32,
    pub(crate) pages: u32,
    /// The CSV export of the same filter and order.
    pub(crate) csv_query: String,
    pub(crate) csv_max: u64,
    pub(crate) rows: Vec<VisitRow>,
    /// Why the table is empty.
    pub(crate) empty: String,
    /// Visits per day, lobby waits per day, no-shows per week.
    pub(crate) charts: Vec<Chart>,
    /// Some visits' figures are still being derived from their events.
    pub(crate) outcomes_pending: bool,
}

impl VisitsPage {
    fn of(user: &User, report: &Report) -> Self {
        let period = report.filter.period.describe();
        let empty = if report.configurations.is_empty() && !user.is_admin {
            "No configuration names you as its approver, so there are no visits for you to see. Ask your organisation's VisitBridge admin if you expected some.".to_owned()
        } else if report.total > 0 {
            format!(
                "There is no page {} of these {} visits.",
                report.filter.page, report.total
            )
        } else if report.filter.narrows() {
            format!("No visits launched in {period} match this filter.")
        } else {
            format!("No visits were launched in {period}.")
        };
        Self {
            layout: user.layout(),
            form: nav::filter_form(report),
            sorts: nav::column_sorts(report),
            pager: nav::pager(report),
            total: report.total,
            page: report.filter.page,
            pages: report.pages.max(1),
            csv_query: report.filter.on_page(1).to_query(),
            csv_max: u64::from(MAX_CSV_ROWS),
            period,
            rows: report
                .visits
                .iter()
                .map(|v| VisitRow::of(v, false))
                .collect(),
            empty,
            charts: charts::of(report),
            outcomes_pending: report.outcomes_pending,
        }
    }
}

/// `GET /visits?days=30&status=no-show&sort=lobby-wait&page=2…` (see `ReportFilter`).
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    RawQuery(query): RawQuery,
) -> Result<Response, PortalError> {
    let filter = ReportFilter::from_query(query.as_deref())?;
    let include = Include {
        charts: true,
        departments: true,
    };
    let report = report::recent(
        state.store(),
        &user.data.tenant,
        |c| sees(&user, c),
        &filter,
        Utc::now(),
        include,
    )
    .await?;
    Ok(render(StatusCode::OK, VisitsPage::of(&user, &report)))
}

/// `GET /visits.csv?…`: every visit the same filter matches, in the same order and columns.
pub(crate) async fn csv(
    State(state): State<AppState>,
    user: User,
    RawQuery(query): RawQuery,
) -> Result<Response, PortalError> {
    let filter = ReportFilter::from_query(query.as_deref())?;
    let (report, text) = report::csv_export(
        state.store(),
        &user.data.tenant,
        |c| sees(&user, c),
        &filter,
        Utc::now(),
    )
    .await?;
    let name = match report.filter.period {
        Period::LastDays(days) => format!("last-{days}-days"),
        Period::Dates { from, to } => format!("{from}-to-{to}"),
    };
    let disposition = format!("attachment; filename=\"visitbridge-visits-{name}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::HeaderName::from_static("x-total-count"),
                report.total.to_string(),
            ),
        ],
        text,
    )
        .into_response())
}

/// One stretch of the timeline table.
pub(crate) struct TimelineRow {
    pub(crate) participant: String,
    pub(crate) what: &'static str,
    pub(crate) from: TimeCell,
    pub(crate) until: Option<TimeCell>,
    pub(crate) length: String,
    pub(crate) note: &'static str,
}

fn timeline_rows(p: &ParticipantView, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, TimelineRow)> {
    let length = |from: DateTime<Utc>, to: Option<DateTime<Utc>>| {
        duration_text((to.unwrap_or(now) - from).num_seconds())
    };
    let lobby = p.lobby.iter().map(|w| {
        (
            w.from,
            TimelineRow {
                participant: p.label.clone(),
                what: "In the lobby",
                from: TimeCell::second(w.from),
                until: w.until.map(TimeCell::second),
                length: length(w.from, w.until),
                note: match (w.until, w.admitted) {
                    (None, _) => "still waiting",
                    (Some(_), true) => "admitted",
                    (Some(_), false) => "left without being admitted",
                },
            },
        )
    });
    let connected = p.connected.iter().map(|i| {
        (
            i.from,
            TimelineRow {
                participant: p.label.clone(),
                what: "Connected",
                from: TimeCell::second(i.from),
                until: i.to.map(TimeCell::second),
                length: length(i.from, i.to),
                note: if i.to.is_none() {
                    "still connected"
                } else {
                    "left"
                },
            },
        )
    });
    lobby.chain(connected).collect()
}

/// One write-back of an event, as shown.
pub(crate) struct DeliveryRow {
    pub(crate) sink: String,
    pub(crate) state: &'static str,
    pub(crate) state_class: &'static str,
    pub(crate) detail: String,
    /// For an admin, a dead letter's outbox row: the "send again" button sends its id.
    pub(crate) redrive: Option<i64>,
}

/// One recorded event, as shown.
pub(crate) struct EventRow {
    pub(crate) at: TimeCell,
    pub(crate) what: &'static str,
    pub(crate) participant: String,
    pub(crate) origin: &'static str,
    pub(crate) deliveries: Vec<DeliveryRow>,
}

fn event_label(kind: VisitEventKind) -> &'static str {
    match kind {
        VisitEventKind::CallStarted => "Call started",
        VisitEventKind::ParticipantInLobby => "Waiting in the lobby",
        VisitEventKind::ParticipantJoined => "Connected",
        VisitEventKind::ParticipantLeft => "Disconnected",
        VisitEventKind::CallEnded => "Call ended",
    }
}

impl EventRow {
    fn of(e: &EventView, admin: bool) -> Self {
        Self {
            at: TimeCell::second(e.occurred_at),
            what: event_label(e.kind),
            participant: e
                .participant
                .clone()
                .unwrap_or_else(|| "the call".to_owned()),
            origin: match e.origin {
                EventOrigin::Notification => "live",
                EventOrigin::AttendanceReport => "attendance report",
            },
            deliveries: e
                .deliveries
                .iter()
                .map(|d| {
                    let attempts = format!(
                        "{} attempt{}",
                        d.attempts,
                        if d.attempts == 1 { "" } else { "s" }
                    );
                    let (state, state_class, detail) = match d.state {
                        DeliveryState::Delivered => (
                            "delivered",
                            "delivered",
                            d.delivered_at
                                .map(|t| format!("at {} UTC", second(t)))
                                .unwrap_or_default(),
                        ),
                        DeliveryState::DeadLetter => (
                            "dead letter",
                            "dead-letter",
                            match &d.last_error {
                                Some(e) => format!("gave up after {attempts}: {e}"),
                                None => format!("gave up after {attempts}"),
                            },
                        ),
                        DeliveryState::Superseded => (
                            "superseded",
                            "superseded",
                            "not sent: a newer status was already delivered".to_owned(),
                        ),
                        DeliveryState::Pending => (
                            "pending",
                            "pending",
                            match (&d.last_error, d.next_attempt_at) {
                                (Some(e), Some(next)) => {
                                    format!("{attempts} so far ({e}); next at {} UTC", second(next))
                                }
                                _ => "on its way".to_owned(),
                            },
                        ),
                    };
                    DeliveryRow {
                        sink: d.sink.clone(),
                        state,
                        state_class,
                        detail,
                        redrive: (admin && d.state == DeliveryState::DeadLetter).then_some(d.id),
                    }
                })
                .collect(),
        }
    }
}

/// One visit: its summary, timeline and events.
#[derive(Template, WebTemplate)]
#[template(path = "visit.html")]
pub(crate) struct VisitPage {
    pub(crate) layout: Layout,
    pub(crate) v: VisitRow,
    pub(crate) call_started: Option<TimeCell>,
    pub(crate) call_ended: Option<TimeCell>,
    /// (label, role) of every participant, in order of arrival.
    pub(crate) people: Vec<(String, &'static str)>,
    pub(crate) timeline: Vec<TimelineRow>,
    pub(crate) events: Vec<EventRow>,
    /// What the last action did (after a re-drive).
    pub(crate) notice: Option<&'static str>,
}

/// The notice a redirect back to the visit names (`?notice=…`).
fn notice_of(query: Option<&str>) -> Option<&'static str> {
    let notice = url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "notice")
        .map(|(_, v)| v.into_owned())?;
    match notice.as_str() {
        "redriven" => Some("The write-back is on its way again; its state shows below."),
        "not-redriven" => Some(
            "The write-back was not sent again: it was no longer given up on, or its AuditEvent \
             was removed after the retention period.",
        ),
        _ => None,
    }
}

fn role_label(role: ParticipantRole) -> &'static str {
    match role {
        ParticipantRole::Staff => "staff (Microsoft account)",
        ParticipantRole::PatientOrGuest => "patient or guest (no account)",
        ParticipantRole::Application => "app or bot (not an attendee)",
    }
}

impl VisitPage {
    fn of(user: &User, d: &VisitDetail, now: DateTime<Utc>) -> Self {
        let mut timeline: Vec<(usize, DateTime<Utc>, TimelineRow)> = d
            .participants
            .iter()
            .enumerate()
            .flat_map(|(n, p)| {
                timeline_rows(p, now)
                    .into_iter()
                    .map(move |(at, row)| (n, at, row))
            })
            .collect();
        timeline.sort_by_key(|(n, at, _)| (*n, *at));
        Self {
            layout: user.layout(),
            v: VisitRow::of(&d.visit, true),
            call_started: d.call_started_at.map(TimeCell::second),
            call_ended: d.call_ended_at.map(TimeCell::second),
            people: d
                .participants
                .iter()
                .map(|p| (p.label.clone(), role_label(p.role)))
                .collect(),
            timeline: timeline.into_iter().map(|(_, _, row)| row).collect(),
            events: d
                .events
                .iter()
                .map(|e| EventRow::of(e, user.is_admin))
                .collect(),
            notice: None,
        }
    }
}

/// `GET /visits/{id}`.
pub(crate) async fn detail(
    State(state): State<AppState>,
    user: User,
    PagePath(id): PagePath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, PortalError> {
    let detail = report::detail(state.store(), &user.data.tenant, &id, |c| {
        check_visit_visible(&user, c)
    })
    .await?;
    let page = VisitPage {
        notice: notice_of(query.as_deref()),
        ..VisitPage::of(&user, &detail, Utc::now())
    };
    Ok(render(StatusCode::OK, page))
}

/// The re-drive form of a dead letter.
#[derive(Debug, Deserialize)]
pub(crate) struct RedriveForm {
    outbox_id: i64,
}

/// `POST /visits/{id}/redrive`: an admin sends a dead-lettered write-back of the visit again.
/// Recorded in the configuration's history first (who, which event, which sink), then re-driven.
pub(crate) async fn redrive(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    CsrfForm(user, form): CsrfForm<RedriveForm>,
) -> Result<Response, PortalError> {
    if !user.is_admin {
        return Err(PortalError::Forbidden(
            "only your organisation's VisitBridge admins can send a write-back again".to_owned(),
        ));
    }
    let store = state.store();
    let visit_id = VisitId::new(id.as_str()).map_err(|_| PortalError::VisitNotFound)?;
    let visit = store
        .get_visit(&visit_id)
        .await?
        .ok_or(PortalError::VisitNotFound)?;
    let configuration = service::load(&state, &user.data.tenant, visit.configuration_id.as_str())
        .await
        .map_err(|_| PortalError::VisitNotFound)?;
    let row = store
        .outbox_for_visit(&visit_id)
        .await?
        .into_iter()
        .find(|row| row.id == OutboxId(form.outbox_id))
        .ok_or_else(|| PortalError::BadRequest("no such write-back of this visit".to_owned()))?;
    if row.state != OutboxState::Dead {
        return Err(PortalError::BadRequest(
            "only a write-back that was given up on can be sent again".to_owned(),
        ));
    }
    let now = Utc::now();
    service::save(
        &state,
        configuration.record_redrive(&user.actor(), row.event_id.as_str(), row.sink.as_str(), now),
    )
    .await?;
    let outcome = if store.redrive(row.id, now).await? {
        tracing::info!(visit_id = %visit_id, sink = %row.sink, "write-back re-driven");
        "redriven"
    } else {
        // Re-driven meanwhile by someone else, or its AuditEvent purged after the retention.
        "not-redriven"
    };
    Ok(Redirect::to(&format!("/visits/{visit_id}?notice={outcome}")).into_response())
}
