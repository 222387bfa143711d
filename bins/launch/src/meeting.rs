//! One meeting per visit: the visit registry row (first organiser wins), `createOrGet`, the
//! meeting policy before any join URL leaves us, and the patient's join URL.
//!
//! Idempotency has two locks: Graph keys a meeting on organiser + `externalId` (HMAC of the
//! configuration id and visit key under the deployment secret), and the store keys visits on
//! configuration + `externalId`. A launch first *claims* the visit row with its organiser
//! candidate; the row keeps the first organiser, so concurrent launches of one visit — even by
//! different clinicians, even on different replicas — call `createOrGet` with the same organiser
//! and get the same meeting.

use chrono::{DateTime, Utc};
use visitbridge_approval::ConfigurationId;
use visitbridge_graph::{
    ExternalMeetingId, MeetingChanges, MeetingInfo, MeetingOutcome, MeetingTimes, UserObjectId,
    VisitMeetingRequest,
};
use visitbridge_smart::LaunchContext;
use visitbridge_store::{MicrosoftObjectId, Visit, VisitId, VisitRepo};
use visitbridge_visit::{RecordContext, ResolvedVisit, VisitKey};

use crate::{error::LaunchError, microsoft::Microsoft, state::AppState};

/// What the launch knows of a visit: ids to keep in its registry row, and the appointment's
/// planned times, which only go to Graph (the meeting's slot in the customer's tenant) and are
/// never stored — not on the visit's row, not in a pending sign-in.
#[derive(Debug, Clone, Default)]
pub(crate) struct VisitFacts {
    pub(crate) conference_id: Option<String>,
    pub(crate) practitioner: Option<String>,
    pub(crate) appointment: Option<String>,
    pub(crate) encounter: Option<String>,
    pub(crate) patient: Option<String>,
    /// The Appointment's start, when this launch read it.
    pub(crate) start: Option<DateTime<Utc>>,
    /// The Appointment's end (or start + `minutesDuration`), when this launch read it.
    pub(crate) end: Option<DateTime<Utc>>,
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl VisitFacts {
    /// What the launch itself says (before any FHIR read).
    pub(crate) fn from_launch(
        record: &RecordContext,
        context: &LaunchContext,
        practitioner: Option<&str>,
    ) -> Self {
        Self {
            conference_id: record
                .conference_id
                .clone()
                .or_else(|| record.session_id.clone()),
            practitioner: non_empty(practitioner),
            appointment: visitbridge_visit::context_appointment(context).map(|(id, _)| id),
            encounter: non_empty(context.encounter.as_deref()),
            patient: non_empty(context.patient.as_deref()),
            start: None,
            end: None,
        }
    }

    /// The meeting's planned times, when this launch read the Appointment.
    pub(crate) fn times(&self) -> Option<MeetingTimes> {
        MeetingTimes::planned(self.start, self.end)
    }

    /// Adds what FHIR told (the launch's own values win).
    pub(crate) fn add(&mut self, resolved: &ResolvedVisit) {
        // The Appointment as read now: a moved appointment's new times.
        if resolved.start.is_some() {
            self.start = resolved.start;
            self.end = resolved.end;
        }
        self.appointment
            .get_or_insert_with(|| resolved.appointment.as_str().to_owned());
        if self.encounter.is_none() {
            self.encounter = resolved.encounter.as_ref().map(|e| e.as_str().to_owned());
        }
        if self.patient.is_none() {
            self.patient = resolved.patient.as_ref().map(|p| p.as_str().to_owned());
        }
        if self.practitioner.is_none() {
            self.practitioner = resolved
                .practitioners
                .first()
                .map(|p| p.as_str().to_owned());
        }
    }
}

/// The meeting's `externalId` for a visit key of a configuration.
pub(crate) fn external_id(
    state: &AppState,
    configuration: &ConfigurationId,
    key: &VisitKey,
) -> ExternalMeetingId {
    ExternalMeetingId::derive_keyed(
        &state.inner.deployment_secret,
        configuration.as_str(),
        key.as_str(),
    )
}

fn object_id(oid: &str) -> Result<MicrosoftObjectId, LaunchError> {
    MicrosoftObjectId::new(oid).map_err(LaunchError::internal)
}

/// Inserts the visit's row or fills the existing one's empty fields; the organiser already
/// stored wins over `organizer`.
pub(crate) async fn claim(
    state: &AppState,
    configuration: &ConfigurationId,
    external: &ExternalMeetingId,
    facts: &VisitFacts,
    organizer: Option<&str>,
) -> Result<Visit, LaunchError> {
    let visit = Visit {
        id: VisitId::new(uuid::Uuid::new_v4().to_string())?,
        configuration_id: configuration.clone(),
        external_meeting_id: external.as_str().to_owned(),
        graph_meeting_id: None,
        join_web_url: None,
        organizer_object_id: organizer.map(object_id).transpose()?,
        practitioner_fhir_id: facts.practitioner.clone(),
        appointment_fhir_id: facts.appointment.clone(),
        encounter_fhir_id: facts.encounter.clone(),
        patient_fhir_id: facts.patient.clone(),
        conference_id: facts.conference_id.clone(),
        created_at: Utc::now(),
        ended_at: None,
    };
    Ok(state.inner.store.upsert_visit(&visit).await?)
}

fn request(visit: &Visit) -> Result<VisitMeetingRequest, LaunchError> {
    let organizer = visit.organizer_object_id.as_ref().ok_or_else(|| {
        LaunchError::internal("a meeting was asked for a visit without organiser")
    })?;
    Ok(VisitMeetingRequest {
        organizer: UserObjectId::new(organizer.as_str()),
        external_id: ExternalMeetingId::from_stored(visit.external_meeting_id.clone()),
        start: None,
        end: None,
    })
}

/// `createOrGet` under the visit's organiser, with the appointment's times when `facts` has them
/// (without, Graph plans the meeting from now for an hour, and [`settle`] sets the times once
/// they are read).
pub(crate) async fn create_or_get(
    state: &AppState,
    ms: &Microsoft,
    visit: &Visit,
    facts: &VisitFacts,
) -> Result<MeetingOutcome, LaunchError> {
    let mut request = request(visit)?;
    if let Some(times) = facts.times() {
        request.start = Some(times.start);
        request.end = Some(times.end);
    }
    Ok(state
        .inner
        .metrics
        .time("graph_create_or_get", ms.graph.create_or_get(&request))
        .await?)
}

/// Applies the meeting policy when the meeting is new or drifted (before anyone gets a join
/// URL, so that no patient can bypass the lobby) and, in the same PATCH, the appointment's times
/// when `facts` has them and the meeting's differ (a moved appointment, or a meeting created
/// before the Appointment was read); then stores the meeting on the visit with the facts learnt
/// since the claim. Subscribes to the meeting's events in the background.
pub(crate) async fn settle(
    state: &AppState,
    ms: &Microsoft,
    visit: Visit,
    outcome: MeetingOutcome,
    facts: &VisitFacts,
) -> Result<(Visit, MeetingInfo), LaunchError> {
    let changes = MeetingChanges::needed(&outcome, ms.policy(), facts.times());
    let mut meeting = outcome.meeting;
    if !changes.is_empty() {
        let request = request(&visit)?;
        meeting = state
            .inner
            .metrics
            .time(
                "graph_policy",
                ms.graph
                    .update_meeting(&request.organizer, &meeting.id, &changes),
            )
            .await?;
    }
    let filled = Visit {
        graph_meeting_id: Some(meeting.id.as_str().to_owned()),
        join_web_url: Some(meeting.join_web_url.clone()),
        practitioner_fhir_id: visit
            .practitioner_fhir_id
            .clone()
            .or(facts.practitioner.clone()),
        appointment_fhir_id: visit
            .appointment_fhir_id
            .clone()
            .or(facts.appointment.clone()),
        encounter_fhir_id: visit.encounter_fhir_id.clone().or(facts.encounter.clone()),
        patient_fhir_id: visit.patient_fhir_id.clone().or(facts.patient.clone()),
        conference_id: visit.conference_id.clone().or(facts.conference_id.clone()),
        ..visit
    };
    let stored = state.inner.store.upsert_visit(&filled).await?;
    ms.subscriptions.ensure(&stored);
    Ok((stored, meeting))
}

/// Keeps the patient's join URL on the visit's row (a failure only costs a Graph call later).
async fn keep_patient_url(state: &AppState, visit: &VisitId, url: &str) {
    if let Err(e) = state.inner.store.set_patient_join_url(visit, url).await {
        tracing::warn!(error = %e, visit_id = %visit, "cannot keep the patient's join url");
    }
}

/// The patient's join URL of a visit whose meeting exists: from the visit's row, else from
/// Graph (then kept there, so later patients and a restarted service need no Graph call).
/// Without a `settled` meeting, `createOrGet` returns the existing one and its policy is checked
/// (and applied if it drifted) before the URL is given.
pub(crate) async fn patient_url(
    state: &AppState,
    ms: &Microsoft,
    visit: &Visit,
    settled: Option<MeetingInfo>,
) -> Result<String, LaunchError> {
    if let Some(url) = state.inner.store.patient_join_url(&visit.id).await? {
        return Ok(url);
    }
    let (visit, meeting) = match settled {
        Some(meeting) => (visit.clone(), meeting),
        None => {
            let facts = VisitFacts::default();
            let outcome = create_or_get(state, ms, visit, &facts).await?;
            settle(state, ms, visit.clone(), outcome, &facts).await?
        }
    };
    let request = request(&visit)?;
    let url = state
        .inner
        .metrics
        .time(
            "graph_join_url",
            ms.graph.patient_join_url(&request.organizer, &meeting),
        )
        .await;
    if !ms.is_safe_join_url(&url.url) {
        return Err(LaunchError::internal(
            "graph gave a patient join url that is not https",
        ));
    }
    keep_patient_url(state, &visit.id, &url.url).await;
    Ok(url.url)
}

/// After the clinician's page is answered: fetches the patient's join URL of the settled
/// `meeting` and keeps it on the visit's row, so that the patient's launch needs no Graph call.
pub(crate) fn prefetch_patient_url(state: &AppState, visit: &Visit, meeting: MeetingInfo) {
    let state = state.clone();
    let visit = visit.clone();
    tokio::spawn(async move {
        let (Ok(ms), Ok(request)) = (state.microsoft(), request(&visit)) else {
            return;
        };
        let url = state
            .inner
            .metrics
            .time(
                "graph_join_url",
                ms.graph.patient_join_url(&request.organizer, &meeting),
            )
            .await;
        if ms.is_safe_join_url(&url.url) {
            keep_patient_url(&state, &visit.id, &url.url).await;
        }
    });
}
