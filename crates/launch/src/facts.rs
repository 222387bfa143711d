//! What a launch knows of its visit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use visitbridge_graph::MeetingTimes;
use visitbridge_smart::LaunchContext;
use visitbridge_visit::{RecordContext, ResolvedVisit};

/// What the launch knows of a visit: ids to keep in its registry row, and the appointment's
/// planned times, which only go to Graph (the meeting's slot in the customer's tenant) and are
/// never stored — not on the visit's row, not in a pending sign-in ([`KeptFacts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisitFacts {
    /// The launch URL's conference id (or CSN): kept on the row only once attested.
    pub conference_id: Option<String>,
    /// The practitioner's FHIR id.
    pub practitioner: Option<String>,
    /// The Appointment's FHIR id.
    pub appointment: Option<String>,
    /// The Encounter's FHIR id.
    pub encounter: Option<String>,
    /// The Patient's FHIR id.
    pub patient: Option<String>,
    /// The Appointment's start, when this launch read it.
    pub start: Option<DateTime<Utc>>,
    /// The Appointment's end (or start + `minutesDuration`), when this launch read it.
    pub end: Option<DateTime<Utc>>,
    /// The department: the Appointment's Location's name when read, else the integration
    /// record's department id. Kept on the row only once attested, like the conference id.
    pub department: Option<String>,
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl VisitFacts {
    /// What the launch itself says (before any FHIR read).
    pub fn from_launch(
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
            department: record
                .department_id
                .as_deref()
                .and_then(visitbridge_visit::department_name),
        }
    }

    /// The meeting's planned times, when this launch read the Appointment.
    pub fn times(&self) -> Option<MeetingTimes> {
        MeetingTimes::planned(self.start, self.end)
    }

    /// Adds what FHIR told (the launch's own values win; the Appointment's times as read now).
    pub fn add(&mut self, resolved: &ResolvedVisit) {
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
        // The EHR's name of the department beats the launch URL's id.
        if resolved.department.is_some() {
            self.department.clone_from(&resolved.department);
        }
        if self.practitioner.is_none() {
            self.practitioner = resolved
                .practitioners
                .first()
                .map(|p| p.as_str().to_owned());
        }
    }
}

/// [`VisitFacts`] as a launch waiting for a sign-in keeps them: ids only, not the appointment's
/// times (the meeting then keeps Graph's default times until a later launch reads them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptFacts {
    conference_id: Option<String>,
    practitioner: Option<String>,
    appointment: Option<String>,
    encounter: Option<String>,
    patient: Option<String>,
    #[serde(default)]
    department: Option<String>,
}

impl From<&VisitFacts> for KeptFacts {
    fn from(f: &VisitFacts) -> Self {
        Self {
            conference_id: f.conference_id.clone(),
            practitioner: f.practitioner.clone(),
            appointment: f.appointment.clone(),
            encounter: f.encounter.clone(),
            patient: f.patient.clone(),
            department: f.department.clone(),
        }
    }
}

impl From<KeptFacts> for VisitFacts {
    fn from(f: KeptFacts) -> Self {
        Self {
            conference_id: f.conference_id,
            practitioner: f.practitioner,
            appointment: f.appointment,
            encounter: f.encounter,
            patient: f.patient,
            department: f.department,
            // Deliberately not kept across the sign-in.
            start: None,
            end: None,
        }
    }
}
