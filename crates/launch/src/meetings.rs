//! One meeting per visit: the visit registry row (first organiser wins), `createOrGet`, the
//! meeting policy before any join URL leaves us, and the patient's join URL.
//!
//! Idempotency has two locks: Graph keys a meeting on organiser + `externalId` (HMAC of the
//! configuration id and visit key under the deployment secret), and the store keys visits on
//! configuration + `externalId`. A launch first *claims* the visit row with its organiser
//! candidate; the row keeps the first organiser, so concurrent launches of one visit — even by
//! different clinicians, even on different replicas — call `createOrGet` with the same organiser
//! and get the same meeting.

use futures_util::future::join;
use visitbridge_approval::ConfigurationId;
use visitbridge_graph::{
    ExternalMeetingId, MeetingChanges, MeetingInfo, MeetingOutcome, UserObjectId,
    VisitMeetingRequest,
};
use visitbridge_http::Secret;
use visitbridge_store::{MicrosoftObjectId, Visit, VisitId};
use visitbridge_visit::{
    Attested, Fit, LaunchFacts, ReferenceKey, ReferenceKeys, ReferenceKind, ResolvedVisit,
    StoredIds, VisitError, VisitKey, resolve_visit,
};

use crate::{
    LaunchCoreError, OpenedVisit, VisitFacts,
    ports::{Ports, VisitRead, timed},
};

/// The meeting's `externalId` for a visit key of a configuration.
pub(crate) fn external_id(
    secret: &Secret,
    configuration: &ConfigurationId,
    key: &VisitKey,
) -> ExternalMeetingId {
    ExternalMeetingId::derive_keyed(secret, configuration.as_str(), key.as_str())
}

/// The ids of a stored visit, to compare with the attested context: its keyed hashes, or, on a
/// row from before they existed that still has the clear ids, their keys.
pub(crate) fn stored_ids<'a>(keys: &'a ReferenceKeys, visit: &'a Visit) -> StoredIds<'a> {
    let configuration = visit.configuration_id.as_str();
    let key = |stored: &Option<String>, clear: &Option<String>, kind| {
        stored
            .as_deref()
            .map(ReferenceKey::from_stored)
            .or_else(|| clear.as_deref().map(|id| keys.key(configuration, kind, id)))
    };
    StoredIds {
        keys,
        configuration,
        patient: key(
            &visit.patient_key,
            &visit.patient_fhir_id,
            ReferenceKind::Patient,
        ),
        appointment: key(
            &visit.appointment_key,
            &visit.appointment_fhir_id,
            ReferenceKind::Appointment,
        ),
    }
}

/// `visit` with the keyed hashes of its clear patient and appointment ids filled in where it has
/// none, and without a clear id that is not the one its stored key was made of (a row whose ids
/// were purged keeps its keys; the ids a later launch brings must be the same ones, or the
/// AuditEvents would name one patient while attestation holds to another).
pub(crate) fn with_keys(keys: &ReferenceKeys, mut visit: Visit) -> Visit {
    let configuration = visit.configuration_id.as_str().to_owned();
    let configuration = configuration.as_str();
    if let (Some(key), Some(id)) = (&visit.patient_key, &visit.patient_fhir_id)
        && keys.patient(configuration, id).as_str() != key
    {
        visit.patient_fhir_id = None;
    }
    if let (Some(key), Some(id)) = (&visit.appointment_key, &visit.appointment_fhir_id)
        && keys.appointment(configuration, id).as_str() != key
    {
        visit.appointment_fhir_id = None;
    }
    if visit.patient_key.is_none() {
        visit.patient_key = visit
            .patient_fhir_id
            .as_deref()
            .map(|id| keys.patient(configuration, id).as_str().to_owned());
    }
    if visit.appointment_key.is_none() {
        visit.appointment_key = visit
            .appointment_fhir_id
            .as_deref()
            .map(|id| keys.appointment(configuration, id).as_str().to_owned());
    }
    visit
}

/// The visit a clinician's path opens: its key, who organises its meeting, and what the EHR
/// attested that the visit must agree with.
#[derive(Clone, Copy)]
pub(crate) struct VisitTarget<'a> {
    /// The approved configuration.
    pub(crate) configuration: &'a ConfigurationId,
    /// The visit's key (the attested Appointment, or a group visit's attested conference).
    pub(crate) key: &'a VisitKey,
    /// The organiser candidate (the clinician's Microsoft object id); a stored one wins.
    pub(crate) organizer: &'a str,
    /// What the EHR attested.
    pub(crate) attested: &'a Attested,
}

/// The clinician's visit under `key` must be the appointment the EHR attested.
fn clinician_fits(
    keys: &ReferenceKeys,
    attested: &Attested,
    key: &VisitKey,
    visit: &Visit,
) -> Result<(), VisitError> {
    match attested.clinician_fit(key, stored_ids(keys, visit)) {
        Fit::Different => Err(VisitError::ContextMismatch),
        Fit::Same | Fit::Unknown => Ok(()),
    }
}

fn request(visit: &Visit) -> Result<VisitMeetingRequest, LaunchCoreError> {
    let organizer = visit
        .organizer_object_id
        .as_ref()
        .ok_or(LaunchCoreError::NoOrganizer)?;
    Ok(VisitMeetingRequest {
        organizer: UserObjectId::new(organizer.as_str()),
        external_id: ExternalMeetingId::from_stored(visit.external_meeting_id.clone()),
        start: None,
        end: None,
    })
}

impl Ports<'_> {
    /// The meeting's `externalId` for `key` of `configuration`.
    pub(crate) fn external_id(
        &self,
        configuration: &ConfigurationId,
        key: &VisitKey,
    ) -> ExternalMeetingId {
        external_id(self.deployment_secret, configuration, key)
    }

    /// Reads the visit through FHIR (timed as `fhir`) and checks it is the one the EHR attested.
    pub(crate) async fn resolve(
        &self,
        read: VisitRead<'_>,
    ) -> Result<ResolvedVisit, LaunchCoreError> {
        let facts = LaunchFacts {
            record: read.record,
            context: read.context,
            practitioner: read.practitioner,
            now: self.clock.now(),
        };
        let resolved = timed(self.timer, "fhir", resolve_visit(facts, read.directory)).await?;
        Attested::from_context(read.context).check_resolved(read.record, &resolved)?;
        Ok(resolved)
    }

    /// Inserts the visit's row or fills the existing one's empty fields; the organiser already
    /// stored wins over `organizer`.
    pub(crate) async fn claim(
        &self,
        configuration: &ConfigurationId,
        external: &ExternalMeetingId,
        facts: &VisitFacts,
        organizer: Option<&str>,
    ) -> Result<Visit, LaunchCoreError> {
        let visit = Visit {
            id: VisitId::new(uuid::Uuid::new_v4().to_string())?,
            configuration_id: configuration.clone(),
            external_meeting_id: external.as_str().to_owned(),
            graph_meeting_id: None,
            join_web_url: None,
            organizer_object_id: organizer.map(MicrosoftObjectId::new).transpose()?,
            practitioner_fhir_id: facts.practitioner.clone(),
            appointment_fhir_id: facts.appointment.clone(),
            encounter_fhir_id: facts.encounter.clone(),
            patient_fhir_id: facts.patient.clone(),
            conference_id: facts.conference_id.clone(),
            created_at: self.clock.now(),
            ended_at: None,
            patient_key: None,
            appointment_key: None,
            // Filled in when the meeting is settled, after the visit was attested.
            department: None,
        };
        let visit = with_keys(self.reference_keys, visit);
        Ok(self.visits.upsert_visit(&visit).await?)
    }

    /// `createOrGet` under the visit's organiser, with the appointment's times when `facts` has
    /// them (without, Graph plans the meeting from now for an hour, and [`Self::settle`] sets
    /// the times once they are read).
    async fn create_or_get(
        &self,
        visit: &Visit,
        facts: &VisitFacts,
    ) -> Result<MeetingOutcome, LaunchCoreError> {
        let mut request = request(visit)?;
        if let Some(times) = facts.times() {
            request.start = Some(times.start);
            request.end = Some(times.end);
        }
        Ok(timed(
            self.timer,
            "graph_create_or_get",
            self.meetings()?.create_or_get(&request),
        )
        .await?)
    }

    /// Applies the meeting policy when the meeting is new or drifted (before anyone gets a join
    /// URL, so that no patient can bypass the lobby) and, in the same PATCH, the appointment's
    /// times when `facts` has them and the meeting's differ; then stores the meeting on the
    /// visit with the facts learnt since the claim, and tells [`Meetings::meeting_ready`].
    async fn settle(
        &self,
        visit: Visit,
        outcome: MeetingOutcome,
        facts: &VisitFacts,
    ) -> Result<(Visit, MeetingInfo), LaunchCoreError> {
        let changes = MeetingChanges::needed(&outcome, self.meetings()?.policy(), facts.times());
        let mut meeting = outcome.meeting;
        if !changes.is_empty() {
            let request = request(&visit)?;
            meeting = timed(
                self.timer,
                "graph_policy",
                self.meetings()?
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
            department: visit.department.clone().or(facts.department.clone()),
            ..visit
        };
        let filled = with_keys(self.reference_keys, filled);
        let stored = self.visits.upsert_visit(&filled).await?;
        self.meetings()?.meeting_ready(&stored);
        Ok((stored, meeting))
    }

    /// The one way to a visit's meeting: claim the row under `target` → check it is the attested
    /// visit → `createOrGet` → the policy (and times) PATCH before any join URL exists.
    ///
    /// With `read`, the visit is read through FHIR *while* `createOrGet` runs (the key is already
    /// the attested Appointment's, so the meeting need not wait), and checked before the meeting
    /// is settled; without, the caller has read and checked it already. A stored row of another
    /// appointment is refused before the claim could fill its empty fields. The launch URL's
    /// conference id is not signed, so it reaches the row only when the meeting is settled,
    /// after the visit was attested. `facts` gains what FHIR told.
    pub(crate) async fn open_visit(
        &self,
        target: VisitTarget<'_>,
        facts: &mut VisitFacts,
        read: Option<VisitRead<'_>>,
    ) -> Result<(Visit, MeetingInfo), LaunchCoreError> {
        let external = self.external_id(target.configuration, target.key);
        // A database read, no round trip.
        if let Some(existing) = self
            .visits
            .visit_by_key(target.configuration, external.as_str())
            .await?
        {
            clinician_fits(self.reference_keys, target.attested, target.key, &existing)?;
        }
        let conference = facts.conference_id.take();
        let visit = self
            .claim(
                target.configuration,
                &external,
                facts,
                Some(target.organizer),
            )
            .await?;
        clinician_fits(self.reference_keys, target.attested, target.key, &visit)?;
        let outcome = match read {
            Some(read) => {
                let (resolved, outcome) =
                    join(self.resolve(read), self.create_or_get(&visit, facts)).await;
                facts.add(&resolved?);
                outcome?
            }
            None => self.create_or_get(&visit, facts).await?,
        };
        facts.conference_id = conference;
        self.settle(visit, outcome, facts).await
    }

    /// The patient's join URL of `visit`, whose row has an organiser: the meeting is created
    /// and settled first when it does not exist yet.
    pub(crate) async fn patient_meeting(
        &self,
        visit: Visit,
        facts: &VisitFacts,
    ) -> Result<String, LaunchCoreError> {
        let (visit, meeting) = if visit.join_web_url.is_none() {
            let outcome = self.create_or_get(&visit, facts).await?;
            let (visit, info) = self.settle(visit, outcome, facts).await?;
            (visit, Some(info))
        } else {
            (visit, None)
        };
        self.patient_url(&visit, meeting).await
    }

    /// The patient's join URL of a visit whose meeting exists: from the visit's row, else from
    /// Graph (then kept there, so later patients and a restarted service need no Graph call).
    /// Without a `settled` meeting, `createOrGet` returns the existing one and its policy is
    /// checked (and applied if it drifted) before the URL is given.
    pub(crate) async fn patient_url(
        &self,
        visit: &Visit,
        settled: Option<MeetingInfo>,
    ) -> Result<String, LaunchCoreError> {
        if let Some(url) = self.visits.patient_join_url(&visit.id).await? {
            return Ok(url);
        }
        let (visit, meeting) = match settled {
            Some(meeting) => (visit.clone(), meeting),
            None => {
                let facts = VisitFacts::default();
                let outcome = self.create_or_get(visit, &facts).await?;
                self.settle(visit.clone(), outcome, &facts).await?
            }
        };
        self.fetch_patient_url(&visit, &meeting).await
    }

    /// After the clinician's page is answered: the patient's join URL of the `opened` visit's
    /// settled meeting, kept on the visit's row, so that the patient's launch needs no Graph
    /// call. Only an [`OpenedVisit`] (whose meeting has its policy) is accepted.
    pub async fn prefetch_patient_url(
        &self,
        opened: &OpenedVisit,
    ) -> Result<String, LaunchCoreError> {
        self.fetch_patient_url(&opened.visit, &opened.meeting).await
    }

    /// Asks Graph for the patient's join URL of the settled `meeting` and keeps it on the
    /// visit's row (a failure to keep it only costs a Graph call later).
    async fn fetch_patient_url(
        &self,
        visit: &Visit,
        meeting: &MeetingInfo,
    ) -> Result<String, LaunchCoreError> {
        let request = request(visit)?;
        let url = timed(
            self.timer,
            "graph_join_url",
            self.meetings()?
                .patient_join_url(&request.organizer, meeting),
        )
        .await;
        if !self.meetings()?.is_safe_join_url(&url.url) {
            return Err(LaunchCoreError::UnsafeJoinUrl);
        }
        if let Err(e) = self.visits.set_patient_join_url(&visit.id, &url.url).await {
            tracing::warn!(error = %e, visit_id = %visit.id, "cannot keep the patient's join url");
        }
        Ok(url.url)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn visit() -> Visit {
        Visit {
            id: VisitId::new("v-1").unwrap(),
            configuration_id: ConfigurationId::new("cfg-1").unwrap(),
            external_meeting_id: "vb-1".into(),
            graph_meeting_id: None,
            join_web_url: None,
            organizer_object_id: None,
            practitioner_fhir_id: None,
            appointment_fhir_id: None,
            encounter_fhir_id: None,
            patient_fhir_id: None,
            conference_id: None,
            created_at: Utc::now(),
            ended_at: None,
            patient_key: None,
            appointment_key: None,
            department: None,
        }
    }

    #[test]
    fn keys_are_filled_in_and_a_clear_id_that_is_not_the_keyed_one_is_dropped() {
        let keys = ReferenceKeys::new(&Secret::new("0123456789abcdef0123456789abcdef"));
        let fresh = with_keys(
            &keys,
            Visit {
                patient_fhir_id: Some("pat-1".into()),
                appointment_fhir_id: Some("appt-1".into()),
                ..visit()
            },
        );
        assert_eq!(
            fresh.patient_key.as_deref(),
            Some(keys.patient("cfg-1", "pat-1").as_str())
        );
        assert_eq!(
            fresh.appointment_key.as_deref(),
            Some(keys.appointment("cfg-1", "appt-1").as_str())
        );
        // Purged, then a launch brings ids again: the same ones are kept, other ones are not.
        let purged = Visit {
            patient_fhir_id: None,
            appointment_fhir_id: None,
            ..fresh
        };
        let same = with_keys(
            &keys,
            Visit {
                patient_fhir_id: Some("pat-1".into()),
                appointment_fhir_id: Some("appt-1".into()),
                ..purged.clone()
            },
        );
        assert_eq!(same.patient_fhir_id.as_deref(), Some("pat-1"));
        assert_eq!(same.appointment_fhir_id.as_deref(), Some("appt-1"));
        let other = with_keys(
            &keys,
            Visit {
                patient_fhir_id: Some("pat-2".into()),
                appointment_fhir_id: Some("appt-2".into()),
                ..purged.clone()
            },
        );
        assert_eq!(
            (other.patient_fhir_id, other.appointment_fhir_id),
            (None, None)
        );
        assert_eq!(other.patient_key, purged.patient_key, "the key stays");
    }
}
