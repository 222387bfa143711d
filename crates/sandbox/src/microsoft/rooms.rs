//! Meeting rooms: each sandbox meeting's `joinWebUrl` is a page where simulated participants join
//! (the lobby setting decides who waits), are admitted and leave. Every action becomes Graph call
//! events (`CallStarted`, `CallRosterUpdate` with `activeParticipants@joined`/`@exited` and
//! `isInLobby`, `CallEnded`) delivered to the meeting's subscriptions; a finished call becomes an
//! attendance report.

use askama::Template;
use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Delivery, MsState, MsUser, PRODUCT, SandboxMicrosoft};
use crate::{
    SandboxError,
    html::{self, message, see_other},
    util::{self, form_map, graph_time},
};

/// The Azure Communication Services resource patients' browser joins come through.
const ACS_RESOURCE_ID: &str = "6a2f4c1e-0b7d-4e59-a3c8-91d0f2b4e6a7";

/// Who joins a meeting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRole {
    /// A patient joining in the browser (an anonymous Azure Communication Services user): waits
    /// in the lobby unless the lobby bypass scope is `everyone`.
    Patient,
    /// The meeting's organiser (an Entra user of the tenant): never waits.
    Clinician,
}

/// Someone in the lobby or in the meeting.
#[derive(Debug, Clone)]
pub(crate) struct RoomParticipant {
    /// The call leg id (Graph's participant id).
    pub(crate) id: String,
    pub(crate) role: RoomRole,
    /// The roster `identity` (an identitySet with Graph's capitalisation).
    identity: Value,
    /// The attendance report `identity`.
    report_identity: Value,
    report_key: String,
    email: Option<String>,
    pub(crate) display_name: String,
    pub(crate) in_lobby: bool,
    pub(crate) joined_at: DateTime<Utc>,
    admitted_at: Option<DateTime<Utc>>,
}

impl RoomParticipant {
    fn roster_entry(&self) -> Value {
        json!({ "id": self.id, "identity": self.identity, "isInLobby": self.in_lobby })
    }
}

/// One attendee's time in a call.
#[derive(Debug, Clone)]
struct AttendanceRecord {
    key: String,
    role: &'static str,
    identity: Value,
    email: Option<String>,
    intervals: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

#[derive(Debug, Clone)]
struct CallSession {
    started_at: DateTime<Utc>,
    records: Vec<AttendanceRecord>,
}

/// A meeting: Graph's `onlineMeeting`, its room, and its attendance reports.
#[derive(Debug, Clone)]
pub(crate) struct Meeting {
    pub(crate) id: String,
    pub(crate) organizer: MsUser,
    pub(crate) external_id: String,
    pub(crate) value: Value,
    pub(crate) participants: Vec<RoomParticipant>,
    session: Option<CallSession>,
    pub(crate) reports: Vec<Value>,
}

impl Meeting {
    /// A new meeting with Teams' defaults (chat enabled, everyone presents, entry announced,
    /// organisation bypasses the lobby), its join URL the sandbox room page.
    pub(crate) fn new(
        base: &str,
        tenant: &str,
        organizer: &MsUser,
        external_id: &str,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        subject: Value,
    ) -> Result<Self, SandboxError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let thread = b64.encode(format!("sandbox-meeting-{}", util::random_token(12)?));
        let id = b64.encode(format!(
            "1*{}*0**19:meeting_{thread}@thread.v2",
            organizer.object_id
        ));
        let now = Utc::now();
        let oid = &organizer.object_id;
        let value = json!({
            "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{oid}')/onlineMeetings/$entity"),
            "id": id,
            "creationDateTime": graph_time(now),
            "startDateTime": graph_time(start),
            "endDateTime": graph_time(end),
            "joinWebUrl": format!("{base}/rooms/{id}"),
            "subject": subject,
            "isBroadcast": false,
            "autoAdmittedUsers": "EveryoneInCompany",
            "isEntryExitAnnounced": true,
            "allowedPresenters": "everyone",
            "allowMeetingChat": "enabled",
            "videoTeleconferenceId": format!("{:010}", now.timestamp_subsec_nanos()),
            "externalId": external_id,
            "participants": {
                "organizer": {
                    "upn": organizer.upn,
                    "role": "presenter",
                    "identity": {"user": {"id": oid, "displayName": null, "tenantId": tenant}}
                },
                "attendees": []
            },
            "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": false},
            "joinMeetingIdSettings": {"isPasscodeRequired": true, "joinMeetingId": format!("{:012}", now.timestamp_millis() % 1_000_000_000_000), "passcode": "sbx123"},
            "audioConferencing": null,
            "chatInfo": {"threadId": format!("19:meeting_{thread}@thread.v2"), "messageId": "0", "replyChainMessageId": null}
        });
        Ok(Self {
            id,
            organizer: organizer.clone(),
            external_id: external_id.to_owned(),
            value,
            participants: Vec::new(),
            session: None,
            reports: Vec::new(),
        })
    }

    pub(crate) fn join_web_url(&self) -> &str {
        self.value["joinWebUrl"].as_str().unwrap_or_default()
    }

    fn lobby_scope(&self) -> &str {
        self.value["lobbyBypassSettings"]["scope"]
            .as_str()
            .unwrap_or("organization")
    }

    fn payload(&self, event: &str, at: DateTime<Utc>) -> Value {
        let filter = format!(
            "communications/onlineMeetings?$filter=joinWebUrl+eq+'{}'",
            self.join_web_url()
        );
        json!({
            "@odata.type": "#Microsoft.Graph.onlineMeeting",
            "@odata.id": filter,
            "id": filter,
            "eventType": format!("Microsoft.Communication.{event}"),
            "eventDateTime": graph_time(at),
            "state": if event == "CallEnded" { "inactive" } else { "active" },
        })
    }

    fn roster(&self, at: DateTime<Utc>, joined: Vec<Value>, exited: Vec<Value>) -> Value {
        let mut payload = self.payload("CallRosterUpdate", at);
        payload["activeParticipants@joined"] = Value::Array(joined);
        payload["activeParticipants@exited"] = Value::Array(exited);
        payload
    }

    /// Adds a participant; returns its id and the call events.
    fn join(&mut self, role: RoomRole, tenant: &str) -> Result<(String, Vec<Value>), SandboxError> {
        let now = Utc::now();
        let leg = util::uuid();
        let mut events = Vec::new();
        if self.participants.is_empty() {
            self.session = Some(CallSession {
                started_at: now,
                records: Vec::new(),
            });
            events.push(self.payload("CallStarted", now));
        }
        let organizer = &self.organizer;
        let participant = match role {
            RoomRole::Clinician => RoomParticipant {
                id: leg.clone(),
                role,
                identity: json!({"User": {"Id": organizer.object_id, "DisplayName": organizer.display_name, "TenantId": tenant}}),
                report_identity: json!({
                    "@odata.type": "#microsoft.graph.communicationsUserIdentity",
                    "id": organizer.object_id, "displayName": organizer.display_name, "tenantId": tenant
                }),
                report_key: organizer.object_id.clone(),
                email: Some(organizer.upn.clone()),
                display_name: organizer.display_name.clone(),
                in_lobby: false,
                joined_at: now,
                admitted_at: Some(now),
            },
            RoomRole::Patient => {
                let acs = format!("8:acs:{ACS_RESOURCE_ID}_{}", util::uuid());
                // With `everyone` nobody waits; with any other scope an anonymous joiner does.
                let waits = self.lobby_scope() != "everyone";
                RoomParticipant {
                    id: leg.clone(),
                    role,
                    identity: json!({"AzureCommunicationServicesUser": {
                        "AzureCommunicationServicesResourceId": ACS_RESOURCE_ID,
                        "Id": acs, "DisplayName": "Guest"
                    }}),
                    report_identity: json!({
                        "@odata.type": "#microsoft.graph.azureCommunicationServicesUserIdentity",
                        "id": acs, "displayName": "Guest", "azureCommunicationServicesResourceId": ACS_RESOURCE_ID
                    }),
                    report_key: acs.clone(),
                    email: None,
                    display_name: "Guest".to_owned(),
                    in_lobby: waits,
                    joined_at: now,
                    admitted_at: (!waits).then_some(now),
                }
            }
        };
        events.push(self.roster(now, vec![participant.roster_entry()], Vec::new()));
        self.participants.push(participant);
        Ok((leg, events))
    }

    /// Lets a lobby participant in; nothing happens for one already in.
    fn admit(&mut self, participant_id: &str) -> Result<Vec<Value>, SandboxError> {
        let now = Utc::now();
        let p = self
            .participants
            .iter_mut()
            .find(|p| p.id == participant_id)
            .ok_or_else(|| SandboxError::UnknownParticipant(participant_id.to_owned()))?;
        if !p.in_lobby {
            return Ok(Vec::new());
        }
        p.in_lobby = false;
        p.admitted_at = Some(now);
        let entry = p.roster_entry();
        Ok(vec![self.roster(now, vec![entry], Vec::new())])
    }

    /// Removes a participant; the last one out ends the call.
    fn leave(&mut self, participant_id: &str) -> Result<Vec<Value>, SandboxError> {
        let now = Utc::now();
        let at = self
            .participants
            .iter()
            .position(|p| p.id == participant_id)
            .ok_or_else(|| SandboxError::UnknownParticipant(participant_id.to_owned()))?;
        let p = self.participants.remove(at);
        if let (Some(admitted), Some(session)) = (p.admitted_at, self.session.as_mut()) {
            let role = if p.role == RoomRole::Clinician {
                "Organizer"
            } else {
                "Attendee"
            };
            match session.records.iter_mut().find(|r| r.key == p.report_key) {
                Some(record) => record.intervals.push((admitted, now)),
                None => session.records.push(AttendanceRecord {
                    key: p.report_key.clone(),
                    role,
                    identity: p.report_identity.clone(),
                    email: p.email.clone(),
                    intervals: vec![(admitted, now)],
                }),
            }
        }
        let mut events = vec![self.roster(now, Vec::new(), vec![p.roster_entry()])];
        if self.participants.is_empty() {
            events.push(self.payload("CallEnded", now));
            if let Some(session) = self.session.take() {
                self.reports.push(report(&session, now));
            }
        }
        Ok(events)
    }
}

/// An attendance report as Graph returns it with `$expand=attendanceRecords`.
fn report(session: &CallSession, ended: DateTime<Utc>) -> Value {
    let records: Vec<Value> = session
        .records
        .iter()
        .map(|r| {
            let intervals: Vec<Value> = r
                .intervals
                .iter()
                .map(|(join, leave)| {
                    json!({
                        "joinDateTime": graph_time(*join),
                        "leaveDateTime": graph_time(*leave),
                        "durationInSeconds": (*leave - *join).num_seconds(),
                    })
                })
                .collect();
            let total: i64 = r
                .intervals
                .iter()
                .map(|(j, l)| (*l - *j).num_seconds())
                .sum();
            json!({
                "id": r.key,
                "emailAddress": r.email,
                "totalAttendanceInSeconds": total,
                "role": r.role,
                "registrationId": null,
                "identity": r.identity,
                "attendanceIntervals": intervals,
            })
        })
        .collect();
    json!({
        "id": util::uuid(),
        "totalParticipantCount": records.len(),
        "meetingStartDateTime": graph_time(session.started_at),
        "meetingEndDateTime": graph_time(ended),
        "externalEventInformation": [],
        "attendanceRecords": records,
    })
}

/// The deliveries of `payloads` to every live subscription of the meeting, in payload order.
fn deliveries(st: &MsState, tenant: &str, meeting_id: &str, payloads: &[Value]) -> Vec<Delivery> {
    let now = Utc::now();
    payloads
        .iter()
        .flat_map(|payload| {
            st.subscriptions
                .iter()
                .filter(move |s| s.meeting_id == meeting_id && s.expires_at > now)
                .map(move |s| Delivery {
                    url: s.notification_url.clone(),
                    body: json!({"value": [{
                        "subscriptionId": s.id,
                        "subscriptionExpirationDateTime": graph_time(s.expires_at),
                        "changeType": "updated",
                        "clientState": s.client_state.as_ref().map(|c| c.expose()),
                        "tenantId": tenant,
                        "resource": s.resource.trim_start_matches('/'),
                        "resourceData": payload,
                    }]}),
                    subscription_id: s.id.clone(),
                    meeting_id: meeting_id.to_owned(),
                    event_type: payload["eventType"].as_str().unwrap_or_default().to_owned(),
                })
        })
        .collect()
}

impl SandboxMicrosoft {
    /// Runs `action` on the meeting's room and queues the notifications it produced.
    fn room_action<T>(
        &self,
        meeting_id: &str,
        action: impl FnOnce(&mut Meeting, &str) -> Result<(T, Vec<Value>), SandboxError>,
    ) -> Result<T, SandboxError> {
        let tenant = self.tenant_id().to_owned();
        let (out, queued) = {
            let mut st = self.lock();
            let meeting = st
                .meetings
                .iter_mut()
                .find(|m| m.id == meeting_id)
                .ok_or_else(|| SandboxError::UnknownMeeting(meeting_id.to_owned()))?;
            let (out, payloads) = action(meeting, &tenant)?;
            (out, deliveries(&st, &tenant, meeting_id, &payloads))
        };
        self.enqueue(queued);
        Ok(out)
    }

    /// A participant joins the meeting's room (to the lobby, or straight in); returns the
    /// participant id. Notifications go out in the background.
    pub async fn join_room(
        &self,
        meeting_id: &str,
        role: RoomRole,
    ) -> Result<String, SandboxError> {
        self.room_action(meeting_id, |m, tenant| m.join(role, tenant))
    }

    /// Admits a participant waiting in the lobby.
    pub async fn admit(&self, meeting_id: &str, participant_id: &str) -> Result<(), SandboxError> {
        self.room_action(meeting_id, |m, _| Ok(((), m.admit(participant_id)?)))
    }

    /// A participant leaves (the lobby or the meeting); the last one out ends the call.
    pub async fn leave(&self, meeting_id: &str, participant_id: &str) -> Result<(), SandboxError> {
        self.room_action(meeting_id, |m, _| Ok(((), m.leave(participant_id)?)))
    }

    /// Sends a lifecycle notification (`reauthorizationRequired`, `subscriptionRemoved`,
    /// `missed`) for a subscription, to its lifecycle URL (else its notification URL).
    pub async fn send_lifecycle_notification(
        &self,
        subscription_id: &str,
        event: &str,
    ) -> Result<(), SandboxError> {
        let delivery = {
            let st = self.lock();
            let s = st
                .subscriptions
                .iter()
                .find(|s| s.id == subscription_id)
                .ok_or_else(|| {
                    SandboxError::Config(format!("no subscription {subscription_id}"))
                })?;
            Delivery {
                url: s
                    .lifecycle_url
                    .clone()
                    .unwrap_or_else(|| s.notification_url.clone()),
                body: json!({"value": [{
                    "subscriptionId": s.id,
                    "subscriptionExpirationDateTime": graph_time(s.expires_at),
                    "tenantId": self.tenant_id(),
                    "clientState": s.client_state.as_ref().map(|c| c.expose()),
                    "lifecycleEvent": event,
                }]}),
                subscription_id: s.id.clone(),
                meeting_id: s.meeting_id.clone(),
                event_type: event.to_owned(),
            }
        };
        self.enqueue(vec![delivery]);
        Ok(())
    }
}

struct MeetingRow {
    id: String,
    subject: String,
    organizer: String,
    time: String,
    lobby: usize,
    in_meeting: usize,
}

#[derive(Template)]
#[template(path = "ms_rooms.html")]
struct IndexPage<'a> {
    product: &'a str,
    title: &'a str,
    meetings: Vec<MeetingRow>,
}

/// The meeting's slot as Graph holds it (what createOrGet or a PATCH set), e.g.
/// `2026-03-05 05:00–05:30 UTC`.
fn time_range(value: &Value) -> String {
    let t = |k: &str| value[k].as_str().and_then(util::parse_time);
    match (t("startDateTime"), t("endDateTime")) {
        (Some(start), Some(end)) if start.date_naive() == end.date_naive() => format!(
            "{}–{} UTC",
            start.format("%Y-%m-%d %H:%M"),
            end.format("%H:%M")
        ),
        (Some(start), Some(end)) => format!(
            "{}–{} UTC",
            start.format("%Y-%m-%d %H:%M"),
            end.format("%Y-%m-%d %H:%M")
        ),
        _ => String::new(),
    }
}

pub(crate) async fn index(State(ms): State<SandboxMicrosoft>) -> Response {
    let meetings = ms
        .lock()
        .meetings
        .iter()
        .rev()
        .map(|m| MeetingRow {
            id: m.id.clone(),
            subject: m.value["subject"]
                .as_str()
                .unwrap_or("(no subject)")
                .to_owned(),
            organizer: m.organizer.display_name.clone(),
            time: time_range(&m.value),
            lobby: m.participants.iter().filter(|p| p.in_lobby).count(),
            in_meeting: m.participants.iter().filter(|p| !p.in_lobby).count(),
        })
        .collect();
    html::render(&IndexPage {
        product: PRODUCT,
        title: "Meeting rooms",
        meetings,
    })
}

struct ParticipantRow {
    id: String,
    label: String,
    since: String,
}

struct DeliveryRow {
    at: String,
    event_type: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "ms_room.html")]
struct RoomPage<'a> {
    product: &'a str,
    title: &'a str,
    meeting_id: &'a str,
    organizer: String,
    time: String,
    lobby_scope: String,
    as_patient: bool,
    view: &'a str,
    lobby: Vec<ParticipantRow>,
    in_meeting: Vec<ParticipantRow>,
    deliveries: Vec<DeliveryRow>,
    subscriptions: usize,
}

#[derive(Deserialize)]
pub(crate) struct View {
    role: Option<String>,
}

fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        PRODUCT,
        "No such meeting",
        "This meeting does not exist in the sandbox (it lives in memory: a restarted sandbox has no meetings).",
    )
}

pub(crate) async fn page(
    State(ms): State<SandboxMicrosoft>,
    Path(meeting_id): Path<String>,
    Query(view): Query<View>,
) -> Response {
    let as_patient = view.role.as_deref() == Some("patient");
    let row = |p: &RoomParticipant| ParticipantRow {
        id: p.id.clone(),
        label: match p.role {
            RoomRole::Clinician => format!("{} (organizer, staff)", p.display_name),
            RoomRole::Patient => format!("{} (patient, browser guest)", p.display_name),
        },
        since: p.joined_at.format("%H:%M:%S").to_string(),
    };
    let (organizer, time, lobby_scope, lobby, in_meeting, subscriptions) = {
        let st = ms.lock();
        let Some(m) = st.meetings.iter().find(|m| m.id == meeting_id) else {
            return not_found();
        };
        (
            m.organizer.display_name.clone(),
            time_range(&m.value),
            m.lobby_scope().to_owned(),
            m.participants
                .iter()
                .filter(|p| p.in_lobby)
                .map(row)
                .collect(),
            m.participants
                .iter()
                .filter(|p| !p.in_lobby)
                .map(row)
                .collect(),
            st.subscriptions
                .iter()
                .filter(|s| s.meeting_id == meeting_id)
                .count(),
        )
    };
    let deliveries = ms
        .deliveries()
        .into_iter()
        .filter(|d| d.meeting_id == meeting_id)
        .rev()
        .take(12)
        .map(|d| DeliveryRow {
            at: d.at.format("%H:%M:%S").to_string(),
            event_type: d
                .event_type
                .trim_start_matches("Microsoft.Communication.")
                .to_owned(),
            outcome: match (d.delivered, d.status) {
                (true, Some(s)) => format!("delivered ({s})"),
                (false, Some(s)) => format!("refused ({s}) after {} tries", d.attempts),
                (_, None) => format!("unreachable after {} tries", d.attempts),
            },
        })
        .collect();
    html::render(&RoomPage {
        product: PRODUCT,
        title: "Meeting room",
        meeting_id: &meeting_id,
        organizer,
        time,
        lobby_scope,
        as_patient,
        view: if as_patient { "patient" } else { "" },
        lobby,
        in_meeting,
        deliveries,
        subscriptions,
    })
}

fn back_to_room(meeting_id: &str, form: &std::collections::BTreeMap<String, String>) -> Response {
    match form.get("view").map(String::as_str) {
        Some("patient") => see_other(&format!("/rooms/{meeting_id}?role=patient")),
        _ => see_other(&format!("/rooms/{meeting_id}")),
    }
}

fn action_error(e: &SandboxError) -> Response {
    match e {
        SandboxError::UnknownMeeting(_) => not_found(),
        other => message(
            StatusCode::BAD_REQUEST,
            PRODUCT,
            "That did not work",
            &other.to_string(),
        ),
    }
}

pub(crate) async fn join_form(
    State(ms): State<SandboxMicrosoft>,
    Path(meeting_id): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let role = match form.get("role").map(String::as_str) {
        Some("patient") => RoomRole::Patient,
        Some("clinician") => RoomRole::Clinician,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                PRODUCT,
                "That did not work",
                "Join as the patient or as the clinician.",
            );
        }
    };
    match ms.join_room(&meeting_id, role).await {
        Ok(_) => back_to_room(&meeting_id, &form),
        Err(e) => action_error(&e),
    }
}

pub(crate) async fn admit_form(
    State(ms): State<SandboxMicrosoft>,
    Path(meeting_id): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let participant = form.get("participant").map(String::as_str).unwrap_or("");
    match ms.admit(&meeting_id, participant).await {
        Ok(()) => back_to_room(&meeting_id, &form),
        Err(e) => action_error(&e),
    }
}

pub(crate) async fn leave_form(
    State(ms): State<SandboxMicrosoft>,
    Path(meeting_id): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let participant = form.get("participant").map(String::as_str).unwrap_or("");
    match ms.leave(&meeting_id, participant).await {
        Ok(()) => back_to_room(&meeting_id, &form),
        Err(e) => action_error(&e),
    }
}
