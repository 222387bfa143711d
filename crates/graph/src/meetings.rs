//! One Teams meeting per visit: `createOrGet`, the meeting policy, and the patient's join URL.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    client::{Call, GraphClient, Retry},
    error::GraphError,
    events::parse_time,
    ids::{ExternalMeetingId, MeetingId, UserObjectId},
};

/// Who may skip the lobby (`lobbyBypassSettings.scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LobbyScope {
    /// Only the organiser; everyone else waits.
    Organizer,
    /// People of the organisation (staff and its guests); anonymous browser joiners — patients —
    /// wait. The default.
    Organization,
    /// The organisation and federated organisations.
    OrganizationAndFederated,
    /// Everyone, patients included: no lobby at all.
    Everyone,
    /// Only people invited to the meeting.
    Invited,
    /// The organisation without its guests.
    OrganizationExcludingGuests,
}

impl LobbyScope {
    /// Graph's spelling.
    pub fn as_graph(self) -> &'static str {
        match self {
            Self::Organizer => "organizer",
            Self::Organization => "organization",
            Self::OrganizationAndFederated => "organizationAndFederated",
            Self::Everyone => "everyone",
            Self::Invited => "invited",
            Self::OrganizationExcludingGuests => "organizationExcludingGuests",
        }
    }
}

/// Meeting chat (`allowMeetingChat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MeetingChatMode {
    /// Chat before, during and after.
    Enabled,
    /// No chat.
    Disabled,
    /// Chat only while the call is on: the default, since chat is not part of the medical record.
    Limited,
}

impl MeetingChatMode {
    /// Graph's spelling.
    pub fn as_graph(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Limited => "limited",
        }
    }
}

/// Who may present (`allowedPresenters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AllowedPresenters {
    /// Everyone, patients included.
    Everyone,
    /// People of the organisation.
    Organization,
    /// Participants given the presenter role.
    RoleIsPresenter,
    /// Only the organiser: the default.
    Organizer,
}

impl AllowedPresenters {
    /// Graph's spelling.
    pub fn as_graph(self) -> &'static str {
        match self {
            Self::Everyone => "everyone",
            Self::Organization => "organization",
            Self::RoleIsPresenter => "roleIsPresenter",
            Self::Organizer => "organizer",
        }
    }
}

/// The settings every visit's meeting gets, applied with one PATCH after creation.
///
/// The defaults are the safe ones: patients wait in the lobby until staff admit them, dial-in
/// callers do not bypass it, chat exists only during the call, only the organiser presents, and
/// joins and exits are not announced (an announcement speaks the joiner's name to everyone in the
/// meeting, which is a disclosure in group visits; staff see arrivals in VisitBridge instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct MeetingPolicy {
    /// Who skips the lobby.
    pub lobby_scope: LobbyScope,
    /// Whether phone dial-in callers skip the lobby.
    pub dial_in_bypass: bool,
    /// Meeting chat.
    pub chat: MeetingChatMode,
    /// Who may present.
    pub presenters: AllowedPresenters,
    /// Whether Teams announces people joining and leaving.
    pub announce_entry_exit: bool,
}

impl Default for MeetingPolicy {
    fn default() -> Self {
        Self {
            lobby_scope: LobbyScope::Organization,
            dial_in_bypass: false,
            chat: MeetingChatMode::Limited,
            presenters: AllowedPresenters::Organizer,
            announce_entry_exit: false,
        }
    }
}

impl MeetingPolicy {
    /// The PATCH body that applies this policy.
    pub fn patch_body(&self) -> Value {
        json!({
            "lobbyBypassSettings": {
                "scope": self.lobby_scope.as_graph(),
                "isDialInBypassEnabled": self.dial_in_bypass,
            },
            "allowMeetingChat": self.chat.as_graph(),
            "allowedPresenters": self.presenters.as_graph(),
            "isEntryExitAnnounced": self.announce_entry_exit,
        })
    }

    /// Whether `meeting` (as Graph returned it) already has exactly this policy.
    pub fn is_applied_to(&self, meeting: &MeetingInfo) -> bool {
        let s = &meeting.settings;
        s.lobby_scope.as_deref() == Some(self.lobby_scope.as_graph())
            && s.dial_in_bypass == Some(self.dial_in_bypass)
            && s.chat.as_deref() == Some(self.chat.as_graph())
            && s.presenters.as_deref() == Some(self.presenters.as_graph())
            && s.announce_entry_exit == Some(self.announce_entry_exit)
    }
}

/// A visit's meeting to create or find.
#[derive(Debug, Clone)]
pub struct VisitMeetingRequest {
    /// The organiser (the clinician's, or a service account's, Entra object id).
    pub organizer: UserObjectId,
    /// The hashed id of the visit ([`ExternalMeetingId::derive`]).
    pub external_id: ExternalMeetingId,
    /// The appointment's start, when known (Graph: now).
    pub start: Option<DateTime<Utc>>,
    /// The appointment's end, when known (Graph: start + 1 hour).
    pub end: Option<DateTime<Utc>>,
}

/// When a visit's meeting is planned: the appointment's start and end, as the EHR holds them.
///
/// They go to the customer's own tenant (the meeting shows the visit's slot in Teams) and are
/// never stored by VisitBridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeetingTimes {
    /// The planned start.
    pub start: DateTime<Utc>,
    /// The planned end (after `start`).
    pub end: DateTime<Utc>,
}

impl MeetingTimes {
    /// The times of an appointment with a `start` and maybe an `end`; without an end, Graph's
    /// default length (one hour). `None` without a start or with an end not after the start.
    pub fn planned(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<Self> {
        let start = start?;
        let end = match end {
            Some(end) => end,
            None => start.checked_add_signed(chrono::TimeDelta::hours(1))?,
        };
        (end > start).then_some(Self { start, end })
    }

    /// Whether `meeting` (as Graph returned it) already has these times, to the second (Graph
    /// answers with fractions of a second; we send whole seconds).
    pub fn are_on(&self, meeting: &MeetingInfo) -> bool {
        let secs = |t: DateTime<Utc>| t.timestamp();
        meeting.start.map(secs) == Some(secs(self.start))
            && meeting.end.map(secs) == Some(secs(self.end))
    }
}

/// What one `PATCH /onlineMeetings/{id}` changes on a meeting: its policy, its times, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeetingChanges {
    /// The policy to apply.
    pub policy: Option<MeetingPolicy>,
    /// The times to set.
    pub times: Option<MeetingTimes>,
}

impl MeetingChanges {
    /// What the meeting `createOrGet` returned needs: the policy when it is new or drifted, and
    /// `times` when they are known and differ from the meeting's (the appointment was moved, or
    /// the meeting was created before they were known). Unknown times change nothing.
    pub fn needed(
        outcome: &MeetingOutcome,
        policy: &MeetingPolicy,
        times: Option<MeetingTimes>,
    ) -> Self {
        Self {
            policy: (outcome.created || !policy.is_applied_to(&outcome.meeting))
                .then(|| policy.clone()),
            times: times.filter(|t| !t.are_on(&outcome.meeting)),
        }
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.policy.is_none() && self.times.is_none()
    }

    /// The PATCH body.
    pub fn patch_body(&self) -> Value {
        let mut body = match &self.policy {
            Some(policy) => policy.patch_body(),
            None => json!({}),
        };
        if let Some(times) = self.times {
            body["startDateTime"] = Value::String(graph_time(times.start));
            body["endDateTime"] = Value::String(graph_time(times.end));
        }
        body
    }
}

/// The settings Graph reported for a meeting (raw spellings, so unknown values compare unequal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObservedSettings {
    lobby_scope: Option<String>,
    dial_in_bypass: Option<bool>,
    chat: Option<String>,
    presenters: Option<String>,
    announce_entry_exit: Option<bool>,
}

/// A meeting as Graph returned it (only the fields we use; participants' names are never read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingInfo {
    /// Graph's meeting id.
    pub id: MeetingId,
    /// The Teams join URL (staff; and patients when no virtual-appointment URL).
    pub join_web_url: String,
    /// The `externalId` it was created with.
    pub external_id: Option<ExternalMeetingId>,
    /// Start, as Graph holds it.
    pub start: Option<DateTime<Utc>>,
    /// End, as Graph holds it.
    pub end: Option<DateTime<Utc>>,
    pub(crate) settings: ObservedSettings,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeeting {
    id: String,
    join_web_url: Option<String>,
    external_id: Option<String>,
    start_date_time: Option<String>,
    end_date_time: Option<String>,
    lobby_bypass_settings: Option<RawLobby>,
    allowed_presenters: Option<String>,
    allow_meeting_chat: Option<String>,
    is_entry_exit_announced: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLobby {
    scope: Option<String>,
    is_dial_in_bypass_enabled: Option<bool>,
}

impl TryFrom<RawMeeting> for MeetingInfo {
    type Error = GraphError;

    fn try_from(raw: RawMeeting) -> Result<Self, GraphError> {
        let join_web_url =
            raw.join_web_url
                .filter(|u| !u.is_empty())
                .ok_or_else(|| GraphError::Parse {
                    what: "an onlineMeeting",
                    detail: "joinWebUrl is missing".into(),
                })?;
        let lobby = raw.lobby_bypass_settings;
        Ok(Self {
            id: MeetingId::new(raw.id),
            join_web_url,
            external_id: raw.external_id.map(ExternalMeetingId::from_stored),
            start: raw.start_date_time.as_deref().and_then(parse_time),
            end: raw.end_date_time.as_deref().and_then(parse_time),
            settings: ObservedSettings {
                lobby_scope: lobby.as_ref().and_then(|l| l.scope.clone()),
                dial_in_bypass: lobby.as_ref().and_then(|l| l.is_dial_in_bypass_enabled),
                chat: raw.allow_meeting_chat,
                presenters: raw.allowed_presenters,
                announce_entry_exit: raw.is_entry_exit_announced,
            },
        })
    }
}

impl MeetingInfo {
    /// Reads an `onlineMeeting` resource as Graph returns it (the fields we use). For adapters
    /// and fakes that hold Graph's JSON; [`GraphClient`] parses its answers with it.
    pub fn from_graph_json(meeting: &Value) -> Result<Self, GraphError> {
        let raw = RawMeeting::deserialize(meeting)
            .map_err(|e| GraphError::parse("an onlineMeeting", &e))?;
        raw.try_into()
    }
}

/// The result of `createOrGet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingOutcome {
    /// The meeting.
    pub meeting: MeetingInfo,
    /// `true` when Graph created it now (201), `false` when it already existed (200).
    pub created: bool,
}

/// Which URL the patient gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatientJoinKind {
    /// `getVirtualAppointmentJoinWebUrl`: browser join on desktop and phone, virtual lobby.
    VirtualAppointment,
    /// The meeting's `joinWebUrl` (the fallback).
    JoinWebUrl,
}

/// The URL a patient joins with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientJoinUrl {
    /// The URL.
    pub url: String,
    /// Which kind it is.
    pub kind: PatientJoinKind,
}

/// A visit's meeting, ready to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedMeeting {
    /// Graph's meeting id (for attendance reports and the policy PATCH).
    pub meeting_id: MeetingId,
    /// The staff join URL (and what subscriptions filter on).
    pub join_web_url: String,
    /// The patient's join URL.
    pub patient_join_url: PatientJoinUrl,
    /// Whether the meeting was created by this call.
    pub created: bool,
    /// Whether the policy PATCH was sent by this call.
    pub policy_applied: bool,
}

/// Logged once per process: a missing permission is a configuration fact, not news per visit.
static VIRTUAL_APPOINTMENT_FALLBACK_LOGGED: RaisedOnce = RaisedOnce::new();

/// A flag raised by its first [`Self::raise`]: that call answers `true`, every later one `false`.
pub(crate) struct RaisedOnce(AtomicBool);

impl RaisedOnce {
    /// A flag not raised yet.
    pub(crate) const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Raises the flag; whether this call was the one that raised it.
    pub(crate) fn raise(&self) -> bool {
        !self.0.swap(true, Ordering::Relaxed)
    }
}

/// Whether this is the first fallback of the process (then the caller logs it).
pub(crate) fn first_fallback() -> bool {
    VIRTUAL_APPOINTMENT_FALLBACK_LOGGED.raise()
}

#[derive(Deserialize)]
struct JoinUrlAnswer {
    value: String,
}

fn graph_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl GraphClient {
    /// `POST /users/{organizer}/onlineMeetings/createOrGet`: the visit's meeting, new or existing.
    ///
    /// Safe to retry (and retried on 429/5xx): Graph keys the meeting on organiser + `externalId`.
    pub async fn create_or_get(
        &self,
        request: &VisitMeetingRequest,
    ) -> Result<MeetingOutcome, GraphError> {
        if let (Some(start), Some(end)) = (request.start, request.end)
            && end <= start
        {
            return Err(GraphError::Invalid(
                "the meeting must end after it starts".into(),
            ));
        }
        let mut body = json!({
            "externalId": request.external_id.as_str(),
            "subject": self.config().meeting_subject,
        });
        if let Some(start) = request.start {
            body["startDateTime"] = Value::String(graph_time(start));
        }
        if let Some(end) = request.end {
            body["endDateTime"] = Value::String(graph_time(end));
        }
        let url = self.url(&[
            "v1.0",
            "users",
            request.organizer.as_str(),
            "onlineMeetings",
            "createOrGet",
        ])?;
        let (status, raw): (_, RawMeeting) = self
            .send_json(
                Call {
                    method: Method::POST,
                    url,
                    body: Some(&body),
                    retry: Retry::Idempotent,
                    organizer: Some(&request.organizer),
                },
                "an onlineMeeting",
            )
            .await?;
        Ok(MeetingOutcome {
            meeting: raw.try_into()?,
            created: status == StatusCode::CREATED,
        })
    }

    /// `PATCH /users/{organizer}/onlineMeetings/{id}` with `policy`; returns the updated meeting.
    pub async fn apply_policy(
        &self,
        organizer: &UserObjectId,
        meeting_id: &MeetingId,
        policy: &MeetingPolicy,
    ) -> Result<MeetingInfo, GraphError> {
        let changes = MeetingChanges {
            policy: Some(policy.clone()),
            times: None,
        };
        self.update_meeting(organizer, meeting_id, &changes).await
    }

    /// `PATCH /users/{organizer}/onlineMeetings/{id}` with `changes` (policy and/or
    /// `startDateTime` + `endDateTime`); returns the updated meeting.
    pub async fn update_meeting(
        &self,
        organizer: &UserObjectId,
        meeting_id: &MeetingId,
        changes: &MeetingChanges,
    ) -> Result<MeetingInfo, GraphError> {
        if let Some(times) = changes.times
            && times.end <= times.start
        {
            return Err(GraphError::Invalid(
                "the meeting must end after it starts".into(),
            ));
        }
        let url = self.url(&[
            "v1.0",
            "users",
            organizer.as_str(),
            "onlineMeetings",
            meeting_id.as_str(),
        ])?;
        let body = changes.patch_body();
        let (_, raw): (_, RawMeeting) = self
            .send_json(
                Call {
                    method: Method::PATCH,
                    url,
                    body: Some(&body),
                    retry: Retry::Idempotent,
                    organizer: Some(organizer),
                },
                "an onlineMeeting",
            )
            .await?;
        raw.try_into()
    }

    /// The patient's join URL: `getVirtualAppointmentJoinWebUrl` when enabled and permitted, else
    /// the meeting's `joinWebUrl`. Never fails: the fallback always works.
    pub async fn patient_join_url(
        &self,
        organizer: &UserObjectId,
        meeting: &MeetingInfo,
    ) -> PatientJoinUrl {
        let fallback = || PatientJoinUrl {
            url: meeting.join_web_url.clone(),
            kind: PatientJoinKind::JoinWebUrl,
        };
        if !self.config().virtual_appointment_join_url {
            return fallback();
        }
        let answer = async {
            let url = self.url(&[
                "v1.0",
                "users",
                organizer.as_str(),
                "onlineMeetings",
                meeting.id.as_str(),
                "getVirtualAppointmentJoinWebUrl",
            ])?;
            let (_, answer): (_, JoinUrlAnswer) = self
                .send_json(
                    Call {
                        method: Method::GET,
                        url,
                        body: None,
                        retry: Retry::Idempotent,
                        organizer: None,
                    },
                    "a virtual appointment join url",
                )
                .await?;
            Ok::<_, GraphError>(answer.value)
        }
        .await;
        match answer {
            Ok(url) if url.starts_with("https://") || url.starts_with("http://") => {
                PatientJoinUrl {
                    url,
                    kind: PatientJoinKind::VirtualAppointment,
                }
            }
            Ok(_) => fallback(),
            Err(error) if matches!(error.status(), Some(400 | 401 | 403 | 404)) => {
                if first_fallback() {
                    tracing::warn!(
                        error = %error,
                        "patients get the Teams joinWebUrl instead of the virtual appointment \
                         browser join: grant the app VirtualAppointment.Read.All (application) to \
                         enable it; this is logged once"
                    );
                }
                fallback()
            }
            Err(error) => {
                tracing::warn!(error = %error, "virtual appointment join url unavailable, using joinWebUrl");
                fallback()
            }
        }
    }

    /// The whole visit set-up: `createOrGet` (with the request's times), then one PATCH when the
    /// meeting is new or its settings differ from the policy, or its times differ from the
    /// request's (a moved appointment), then the patient's join URL (two or three round trips).
    pub async fn provision_meeting(
        &self,
        request: &VisitMeetingRequest,
    ) -> Result<ProvisionedMeeting, GraphError> {
        let outcome = self.create_or_get(request).await?;
        let changes = MeetingChanges::needed(
            &outcome,
            &self.config().policy,
            MeetingTimes::planned(request.start, request.end),
        );
        let MeetingOutcome {
            mut meeting,
            created,
        } = outcome;
        let policy_applied = changes.policy.is_some();
        if !changes.is_empty() {
            meeting = self
                .update_meeting(&request.organizer, &meeting.id, &changes)
                .await?;
        }
        let patient_join_url = self.patient_join_url(&request.organizer, &meeting).await;
        Ok(ProvisionedMeeting {
            meeting_id: meeting.id,
            join_web_url: meeting.join_web_url,
            patient_join_url,
            created,
            policy_applied,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_the_safe_one() {
        let body = MeetingPolicy::default().patch_body();
        assert_eq!(
            body,
            json!({
                "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": false},
                "allowMeetingChat": "limited",
                "allowedPresenters": "organizer",
                "isEntryExitAnnounced": false,
            })
        );
    }

    #[test]
    fn policy_reads_from_configuration_with_defaults() {
        let p: MeetingPolicy =
            serde_json::from_value(json!({"lobby_scope": "organizationExcludingGuests"})).unwrap();
        assert_eq!(p.lobby_scope, LobbyScope::OrganizationExcludingGuests);
        assert_eq!(p.chat, MeetingChatMode::Limited);
    }

    #[test]
    fn fixture_meeting_is_read_and_policy_compared() {
        let raw: RawMeeting =
            serde_json::from_str(visitbridge_testkit::fixtures::GRAPH_CREATE_OR_GET).unwrap();
        let m = MeetingInfo::try_from(raw).unwrap();
        assert!(
            m.join_web_url
                .starts_with("https://teams.microsoft.com/l/meetup-join/")
        );
        assert_eq!(
            m.external_id.as_ref().map(|e| e.as_str()),
            Some("vb-7a3f9c2e4b1d")
        );
        assert!(m.start.is_some() && m.end.is_some());
        // The fixture has Teams' defaults (chat enabled, everyone presents): not our policy.
        assert!(!MeetingPolicy::default().is_applied_to(&m));
        let mut lax = MeetingPolicy {
            chat: MeetingChatMode::Enabled,
            presenters: AllowedPresenters::Everyone,
            announce_entry_exit: true,
            ..MeetingPolicy::default()
        };
        assert!(lax.is_applied_to(&m));
        lax.dial_in_bypass = true;
        assert!(!lax.is_applied_to(&m));
    }

    #[test]
    fn the_fallback_is_logged_once_per_process() {
        // A fresh flag: the first raise is the one, no later one is.
        let flag = RaisedOnce::new();
        assert!(flag.raise());
        assert!(!flag.raise());
        assert!(!flag.raise());
        // The process's flag: other tests in this process may have raised it already; after
        // this call it is raised for good.
        let _ = first_fallback();
        assert!(!first_fallback());
    }
}
