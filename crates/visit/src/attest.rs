//! Tying a launch's visit to what the EHR attested, before anyone is given a join URL.
//!
//! Only `iss` and `launch` are the EHR's in a launch URL; the record's context values
//! (`sessionId`, `conferenceId`) are plain query parameters that a patient can edit, and the
//! meeting key is derived from them (so the meeting can be created while FHIR is read). What the
//! EHR does vouch for is the token response's launch context: `patient`, `encounter`, Epic's
//! `appointment`, `fhirContext`. So a visit reached by that key is used only once it agrees with
//! the attested context:
//! - a visit already in the store: its patient and appointment ids against the token's
//!   ([`Attested::stored_fit`]), no FHIR call;
//! - a visit read through FHIR: the context values must be identifiers of the attested
//!   Appointment or Encounter (Epic puts the CSN there) ([`Attested::check_resolved`]), and the
//!   stored row of that key must not belong to another appointment or patient
//!   ([`Attested::check_claimed`]).

use visitbridge_smart::LaunchContext;

use crate::{
    RecordContext, ResolvedVisit, VisitError, VisitKey,
    context::context_appointment,
    reference::{ReferenceKey, ReferenceKeys, ReferenceKind},
};

/// The ids the EHR attested in its token response (never the launch URL's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attested {
    /// The patient's FHIR id.
    pub patient: Option<String>,
    /// The Appointment's FHIR id (Epic's `appointment`, else `fhirContext`).
    pub appointment: Option<String>,
}

/// What a stored visit (the registry row) keeps of its patient and appointment: their keyed
/// hashes, which an attested id is hashed to compare with.
#[derive(Debug, Clone)]
pub struct StoredIds<'a> {
    /// The keys the row's were made with.
    pub keys: &'a ReferenceKeys,
    /// The visit's configuration (keys are bound to it).
    pub configuration: &'a str,
    /// The key of the visit's patient FHIR id.
    pub patient: Option<ReferenceKey>,
    /// The key of the visit's Appointment FHIR id.
    pub appointment: Option<ReferenceKey>,
}

impl StoredIds<'_> {
    fn patient_fit(&self, attested: Option<&str>) -> Fit {
        self.fit(ReferenceKind::Patient, attested, self.patient.as_ref())
    }

    fn appointment_fit(&self, attested: Option<&str>) -> Fit {
        self.fit(
            ReferenceKind::Appointment,
            attested,
            self.appointment.as_ref(),
        )
    }

    fn fit(
        &self,
        kind: ReferenceKind,
        attested: Option<&str>,
        stored: Option<&ReferenceKey>,
    ) -> Fit {
        match (attested.map(str::trim).filter(|a| !a.is_empty()), stored) {
            (Some(a), Some(s)) if self.keys.key(self.configuration, kind, a) == *s => Fit::Same,
            (Some(_), Some(_)) => Fit::Different,
            _ => Fit::Unknown,
        }
    }
}

/// How a stored visit compares with the attested context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Every id that must agree is known on both sides and equal.
    Same,
    /// An id is known on both sides and differs.
    Different,
    /// Something needed is missing on one side: read FHIR to decide.
    Unknown,
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn compare(attested: Option<&str>, stored: Option<&str>) -> Fit {
    match (attested, stored.map(str::trim).filter(|s| !s.is_empty())) {
        (Some(a), Some(s)) if a == s => Fit::Same,
        (Some(_), Some(_)) => Fit::Different,
        _ => Fit::Unknown,
    }
}

fn both(a: Fit, b: Fit) -> Fit {
    match (a, b) {
        (Fit::Different, _) | (_, Fit::Different) => Fit::Different,
        (Fit::Same, Fit::Same) => Fit::Same,
        _ => Fit::Unknown,
    }
}

impl Attested {
    /// The attested ids of a token response's launch context.
    pub fn from_context(context: &LaunchContext) -> Self {
        Self {
            patient: non_empty(context.patient.as_deref()),
            appointment: context_appointment(context).map(|(id, _)| id),
        }
    }

    /// Whether a stored visit is the patient's visit the EHR attested: its patient must be the
    /// token's `patient`, and when the token names an appointment, its appointment too.
    pub fn stored_fit(&self, stored: StoredIds<'_>) -> Fit {
        let patient = stored.patient_fit(self.patient.as_deref());
        match &self.appointment {
            Some(appointment) => both(patient, stored.appointment_fit(Some(appointment))),
            None => patient,
        }
    }

    /// Whether a stored visit is the appointment the EHR attested to a clinician: when the token
    /// names an appointment and the row has one, they must be equal. A group visit's key
    /// (`conf:`) spans several appointments, so any of its rows fits.
    pub fn clinician_fit(&self, key: &VisitKey, stored: StoredIds<'_>) -> Fit {
        if key.is_conference() {
            return Fit::Same;
        }
        match stored.appointment_fit(self.appointment.as_deref()) {
            Fit::Different => Fit::Different,
            _ => Fit::Same,
        }
    }

    /// After the FHIR reads: the visit found is the attested one (its appointment is the
    /// token's, its patient the token's), and every context value of the launch URL
    /// (`sessionId`, `conferenceId`) is an identifier of its Appointment or Encounter.
    pub fn check_resolved(
        &self,
        record: &RecordContext,
        resolved: &ResolvedVisit,
    ) -> Result<(), VisitError> {
        self.check_resolved_ids(resolved)?;
        let unattested = [&record.session_id, &record.conference_id]
            .into_iter()
            .flatten()
            .any(|value| !resolved.identifiers.iter().any(|i| i == value.trim()));
        if unattested {
            return Err(VisitError::ContextMismatch);
        }
        Ok(())
    }

    /// The part of [`Self::check_resolved`] about ids only: the visit found has the token's
    /// appointment and patient (when the token names them).
    pub fn check_resolved_ids(&self, resolved: &ResolvedVisit) -> Result<(), VisitError> {
        if compare(
            self.appointment.as_deref(),
            Some(resolved.appointment.as_str()),
        ) == Fit::Different
        {
            return Err(VisitError::ContextMismatch);
        }
        let resolved_patient = resolved.patient.as_ref().map(|p| p.as_str());
        if compare(self.patient.as_deref(), resolved_patient) == Fit::Different {
            return Err(VisitError::ContextMismatch);
        }
        Ok(())
    }

    /// After the registry row of `key` is claimed: a row that another appointment (or, for a
    /// patient, another patient) already holds is not this visit's. Group visits (`conf:`) hold
    /// several appointments and patients, so only [`Self::check_resolved`] applies to them.
    pub fn check_claimed(
        &self,
        key: &VisitKey,
        resolved: &ResolvedVisit,
        stored: StoredIds<'_>,
    ) -> Result<(), VisitError> {
        if key.is_conference() {
            return Ok(());
        }
        let appointment = stored.appointment_fit(Some(resolved.appointment.as_str()));
        let patient = stored.patient_fit(self.patient.as_deref());
        if appointment == Fit::Different || patient == Fit::Different {
            return Err(VisitError::ContextMismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use visitbridge_fhir::{AppointmentId, PatientId};

    use super::*;
    use crate::FoundBy;

    fn attested(context: serde_json::Value) -> Attested {
        Attested::from_context(&serde_json::from_value(context).unwrap())
    }

    static KEYS: std::sync::LazyLock<ReferenceKeys> = std::sync::LazyLock::new(|| {
        ReferenceKeys::new(&visitbridge_http::Secret::new(
            "0123456789abcdef0123456789abcdef".to_owned(),
        ))
    });

    /// A stored row's ids as the store keeps them: keyed.
    fn ids(patient: Option<&str>, appointment: Option<&str>) -> StoredIds<'static> {
        let key = |kind, id: Option<&str>| id.map(|id| KEYS.key("cfg", kind, id));
        StoredIds {
            keys: &KEYS,
            configuration: "cfg",
            patient: key(ReferenceKind::Patient, patient),
            appointment: key(ReferenceKind::Appointment, appointment),
        }
    }

    fn resolved(appointment: &str, patient: &str, identifiers: &[&str]) -> ResolvedVisit {
        ResolvedVisit {
            key: VisitKey::appointment(appointment),
            appointment: AppointmentId::new(appointment).unwrap(),
            encounter: None,
            patient: Some(PatientId::new(patient).unwrap()),
            practitioners: Vec::new(),
            department: None,
            start: None,
            end: None,
            identifiers: identifiers.iter().map(|s| (*s).to_owned()).collect(),
            found_by: FoundBy::EpicAppointment,
        }
    }

    fn refused(result: Result<(), VisitError>) {
        assert!(
            matches!(result, Err(VisitError::ContextMismatch)),
            "{result:?}"
        );
    }

    fn record(params: &[(&str, &str)]) -> RecordContext {
        RecordContext::from_params(params.iter().copied()).unwrap()
    }

    #[test]
    fn a_stored_visit_fits_only_the_attested_patient_and_appointment() {
        let epic = attested(json!({"patient": "pat-1", "appointment": "appt-1"}));
        assert_eq!(
            epic.stored_fit(ids(Some("pat-1"), Some("appt-1"))),
            Fit::Same
        );
        // Another patient's visit (the CSN in the URL was edited).
        assert_eq!(
            epic.stored_fit(ids(Some("pat-2"), Some("appt-2"))),
            Fit::Different
        );
        // Same patient, another of their appointments: not the attested visit either.
        assert_eq!(
            epic.stored_fit(ids(Some("pat-1"), Some("appt-2"))),
            Fit::Different
        );
        // A row without ids, or a token without a patient: decided through FHIR.
        assert_eq!(epic.stored_fit(ids(None, None)), Fit::Unknown);
        assert_eq!(
            attested(json!({"appointment": "appt-1"})).stored_fit(ids(Some("p"), Some("appt-1"))),
            Fit::Unknown
        );
        // A token with a patient only: the patient decides.
        let patient_only = attested(json!({"patient": "pat-1"}));
        assert_eq!(
            patient_only.stored_fit(ids(Some("pat-1"), Some("appt-9"))),
            Fit::Same
        );
        assert_eq!(
            patient_only.stored_fit(ids(Some("pat-2"), Some("appt-9"))),
            Fit::Different
        );
        // SMART 2's fhirContext is attested as well.
        let v2 = attested(json!({"patient": "pat-1",
            "fhirContext": [{"reference": "Appointment/appt-1"}]}));
        assert_eq!(v2.appointment.as_deref(), Some("appt-1"));
    }

    #[test]
    fn a_clinician_fits_a_row_of_the_attested_appointment_or_a_group_visit() {
        let epic = attested(json!({"patient": "pat-1", "appointment": "appt-1"}));
        let csn = VisitKey::csn("42");
        assert_eq!(
            epic.clinician_fit(&csn, ids(Some("pat-1"), Some("appt-1"))),
            Fit::Same
        );
        assert_eq!(
            epic.clinician_fit(&csn, ids(None, Some("appt-2"))),
            Fit::Different
        );
        assert_eq!(epic.clinician_fit(&csn, ids(None, None)), Fit::Same);
        assert_eq!(
            epic.clinician_fit(&VisitKey::conference("g"), ids(None, Some("appt-2"))),
            Fit::Same
        );
        assert_eq!(
            Attested::default().clinician_fit(&csn, ids(None, Some("appt-2"))),
            Fit::Same
        );
    }

    #[test]
    fn the_url_context_must_be_an_identifier_of_the_attested_visit() {
        let epic = attested(json!({"patient": "pat-1", "appointment": "appt-1"}));
        let visit = resolved("appt-1", "pat-1", &["10000001234"]);
        epic.check_resolved(&record(&[("sessionId", "10000001234")]), &visit)
            .unwrap();
        epic.check_resolved(&record(&[]), &visit).unwrap();
        // Another patient's (guessable) CSN in the URL.
        refused(epic.check_resolved(&record(&[("sessionId", "10000001235")]), &visit));
        // A conference id that is not this visit's.
        refused(epic.check_resolved(
            &record(&[("sessionId", "10000001234"), ("conferenceId", "g-9")]),
            &visit,
        ));
        // FHIR found another patient's appointment than the token names.
        refused(epic.check_resolved(&record(&[]), &resolved("appt-1", "pat-2", &[])));
        refused(epic.check_resolved(&record(&[]), &resolved("appt-2", "pat-1", &[])));
        let message = VisitError::ContextMismatch.to_string();
        assert!(
            message.contains("don't match what the EHR says"),
            "{message}"
        );
    }

    #[test]
    fn a_claimed_row_of_another_visit_is_refused_except_for_group_visits() {
        let epic = attested(json!({"patient": "pat-1", "appointment": "appt-1"}));
        let visit = resolved("appt-1", "pat-1", &["42"]);
        let csn = VisitKey::csn("42");
        epic.check_claimed(&csn, &visit, ids(Some("pat-1"), Some("appt-1")))
            .unwrap();
        epic.check_claimed(&csn, &visit, ids(None, None)).unwrap();
        refused(epic.check_claimed(&csn, &visit, ids(Some("pat-2"), Some("appt-1"))));
        refused(epic.check_claimed(&csn, &visit, ids(Some("pat-1"), Some("appt-7"))));
        epic.check_claimed(
            &VisitKey::conference("g"),
            &visit,
            ids(Some("pat-2"), Some("appt-7")),
        )
        .unwrap();
    }
}
