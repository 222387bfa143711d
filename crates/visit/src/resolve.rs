//! Finding the visit (the FHIR Appointment) a launch is for, in a fixed order of evidence.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use visitbridge_fhir::{
    Appointment, AppointmentId, AppointmentStatus, DatePrefix, Encounter, EncounterId, FhirClient,
    FhirError, PatientId, PractitionerId, SearchQuery,
};
use visitbridge_smart::LaunchContext;

use crate::{RecordContext, VisitKey, context::context_appointment, visit_key};

/// How the visit was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// Epic's `appointment` in the token response.
    EpicAppointment,
    /// A SMART 2 `fhirContext` Appointment reference.
    FhirContext,
    /// The launch's Encounter, through `Encounter.appointment`.
    Encounter,
    /// The patient's appointment closest to now (with the launching practitioner when known).
    TodaysAppointment,
}

/// The visit a launch is for: ids only (no names, no demographics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedVisit {
    /// The meeting's visit key.
    pub key: VisitKey,
    /// The FHIR Appointment.
    pub appointment: AppointmentId,
    /// The FHIR Encounter, when known.
    pub encounter: Option<EncounterId>,
    /// The patient, when known (a reference only).
    pub patient: Option<PatientId>,
    /// The practitioners of the Appointment, in document order (the performer first, as Epic
    /// lists it).
    pub practitioners: Vec<PractitionerId>,
    /// The department: the Appointment's Location's name, when it has one (not patient data).
    #[serde(default)]
    pub department: Option<String>,
    /// The planned start.
    pub start: Option<DateTime<Utc>>,
    /// The planned end.
    pub end: Option<DateTime<Utc>>,
    /// The values of the Appointment's and (when read) the Encounter's business identifiers
    /// (Epic: the CSN), which tie the launch URL's unsigned context to the attested visit.
    #[serde(default)]
    pub identifiers: Vec<String>,
    /// How it was found.
    pub found_by: FoundBy,
}

/// Why the visit could not be found.
#[derive(Debug, thiserror::Error)]
pub enum VisitError {
    /// Nothing in the launch leads to an appointment.
    #[error(
        "this launch does not say which visit it is for (no appointment, encounter or patient in \
         the launch context, and no appointment today): launch from the visit itself, or check that \
         the integration record passes the visit's context"
    )]
    NotFound,
    /// The launch named an id that is not a valid FHIR id.
    #[error("the launch context names an invalid {0} id")]
    InvalidId(&'static str),
    /// The EHR's FHIR server failed or refused.
    #[error("the EHR's FHIR server could not be read: {0}")]
    Fhir(#[from] FhirError),
    /// The launch URL's visit (its `sessionId`/`conferenceId`, which the EHR does not sign) is
    /// not the visit the EHR attested in its token response, or a stored visit of that key
    /// belongs to another patient or appointment.
    #[error(
        "this launch's visit details don't match what the EHR says; start the visit again from \
         the EHR"
    )]
    ContextMismatch,
}

/// The FHIR reads visit resolution needs; implemented for [`FhirClient`], and by fakes in tests.
#[async_trait::async_trait]
pub trait VisitDirectory: Send + Sync {
    /// `GET Appointment/{id}`.
    async fn appointment(&self, id: &AppointmentId) -> Result<Appointment, FhirError>;
    /// `GET Encounter/{id}`.
    async fn encounter(&self, id: &EncounterId) -> Result<Encounter, FhirError>;
    /// `GET Encounter?appointment={id}`.
    async fn encounters_of(&self, appointment: &AppointmentId)
    -> Result<Vec<Encounter>, FhirError>;
    /// `GET Appointment?patient={id}&date=ge{from}&date=le{to}` (and `practitioner` when given).
    async fn appointments_between(
        &self,
        patient: &PatientId,
        practitioner: Option<&PractitionerId>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Appointment>, FhirError>;
}

#[async_trait::async_trait]
impl VisitDirectory for FhirClient {
    async fn appointment(&self, id: &AppointmentId) -> Result<Appointment, FhirError> {
        self.read(id).await
    }

    async fn encounter(&self, id: &EncounterId) -> Result<Encounter, FhirError> {
        self.read(id).await
    }

    async fn encounters_of(
        &self,
        appointment: &AppointmentId,
    ) -> Result<Vec<Encounter>, FhirError> {
        let page = self
            .search(&SearchQuery::<Encounter>::new().appointment(appointment))
            .await?;
        Ok(page.resources().cloned().collect())
    }

    async fn appointments_between(
        &self,
        patient: &PatientId,
        practitioner: Option<&PractitionerId>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Appointment>, FhirError> {
        let mut query = SearchQuery::<Appointment>::new()
            .patient(patient)
            .date(DatePrefix::Ge, from)
            .date(DatePrefix::Le, to);
        if let Some(practitioner) = practitioner {
            query = query.practitioner(practitioner);
        }
        let page = self.search_all(&query, 3).await?;
        Ok(page.resources().cloned().collect())
    }
}

/// What a launch tells about its visit.
#[derive(Debug, Clone, Copy)]
pub struct LaunchFacts<'a> {
    /// The record's context parameters.
    pub record: &'a RecordContext,
    /// The token response's launch context.
    pub context: &'a LaunchContext,
    /// The launching practitioner (from `fhirUser`), for the search of the patient's
    /// appointments.
    pub practitioner: Option<&'a PractitionerId>,
    /// Now (passed in for tests).
    pub now: DateTime<Utc>,
}

fn id<R>(text: &str, what: &'static str) -> Result<visitbridge_fhir::Id<R>, VisitError> {
    visitbridge_fhir::Id::new(text.trim()).map_err(|_| VisitError::InvalidId(what))
}

/// How far either side of now the patient's appointments are searched: wider than any time zone's
/// offset, so "today" where the patient is always falls inside, whatever UTC's date is.
const SEARCH_REACH_HOURS: i64 = 14;

fn identifier_values<'a>(
    identifiers: impl IntoIterator<Item = &'a visitbridge_fhir::Identifier>,
) -> impl Iterator<Item = String> {
    identifiers
        .into_iter()
        .filter_map(|i| i.value.as_deref())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn usable(appointment: &Appointment) -> bool {
    !matches!(
        appointment.status,
        Some(
            AppointmentStatus::Cancelled
                | AppointmentStatus::Noshow
                | AppointmentStatus::EnteredInError
        )
    )
}

/// Finds the launch's visit, in this order: Epic's `appointment` in the token response; SMART 2's
/// `fhirContext` Appointment; the launch Encounter's `appointment`; the patient's (usable)
/// appointment around now (searched from the day of now − 14 h to the day of now + 14 h, so the
/// patient's local day is covered in any time zone), with the launching practitioner when known:
/// the one whose identifier is the record's CSN, else the one starting closest to now; else
/// [`VisitError::NotFound`].
///
/// When the Appointment is named by the token response, its read and (if the context has no
/// encounter) the encounter search run concurrently: one round trip.
pub async fn resolve_visit(
    facts: LaunchFacts<'_>,
    directory: &dyn VisitDirectory,
) -> Result<ResolvedVisit, VisitError> {
    let context_encounter = match facts.context.encounter.as_deref() {
        Some(e) if !e.trim().is_empty() => Some(id::<Encounter>(e, "encounter")?),
        _ => None,
    };
    let mut identifiers = Vec::new();
    let (appointment, encounter, found_by) = if let Some((appointment_id, found_by)) =
        context_appointment(facts.context)
    {
        let appointment_id = id::<Appointment>(&appointment_id, "appointment")?;
        let (appointment, encounter) = match &context_encounter {
            Some(encounter) => (
                directory.appointment(&appointment_id).await?,
                Some(encounter.clone()),
            ),
            None => {
                let (appointment, encounters) = futures_util::future::join(
                    directory.appointment(&appointment_id),
                    directory.encounters_of(&appointment_id),
                )
                .await;
                // The encounter only enriches the audit trail: its search failing does not fail
                // the launch.
                let encounter = encounters.ok().and_then(|list| {
                    list.into_iter().find_map(|e| {
                        let id = e.id?;
                        identifiers.extend(identifier_values(&e.identifier));
                        Some(id)
                    })
                });
                (appointment?, encounter)
            }
        };
        (appointment, encounter, found_by)
    } else if let Some(encounter_id) = &context_encounter {
        let encounter = directory.encounter(encounter_id).await?;
        identifiers.extend(identifier_values(&encounter.identifier));
        let appointment_id = encounter
            .appointment_ids()
            .into_iter()
            .next()
            .ok_or(VisitError::NotFound)?;
        (
            directory.appointment(&appointment_id).await?,
            Some(encounter_id.clone()),
            FoundBy::Encounter,
        )
    } else if let Some(patient) = facts.context.patient.as_deref() {
        let patient = id::<visitbridge_fhir::Patient>(patient, "patient")?;
        let reach = Duration::hours(SEARCH_REACH_HOURS);
        let candidates = directory
            .appointments_between(
                &patient,
                facts.practitioner,
                (facts.now - reach).date_naive(),
                (facts.now + reach).date_naive(),
            )
            .await?;
        let csn = facts.record.session_id.as_deref();
        let appointment = candidates
            .into_iter()
            .filter(usable)
            .min_by_key(|a| {
                let named = csn
                    .is_some_and(|csn| identifier_values(&a.identifier).any(|v| v == csn.trim()));
                let distance = a
                    .start
                    .as_ref()
                    .and_then(|s| s.utc())
                    .map_or(i64::MAX, |s| (s - facts.now).num_seconds().abs());
                (!named, distance)
            })
            .ok_or(VisitError::NotFound)?;
        (appointment, None, FoundBy::TodaysAppointment)
    } else {
        return Err(VisitError::NotFound);
    };

    let appointment_id = appointment.id.clone().ok_or(VisitError::NotFound)?;
    identifiers.extend(identifier_values(&appointment.identifier));
    let key = visit_key(facts.record, facts.context)
        .unwrap_or_else(|| VisitKey::appointment(appointment_id.as_str()));
    let patient = appointment.patient_id().or_else(|| {
        facts
            .context
            .patient
            .as_deref()
            .and_then(|p| visitbridge_fhir::Id::new(p.trim()).ok())
    });
    let (start, end) = planned_times(&appointment);
    Ok(ResolvedVisit {
        key,
        encounter,
        patient,
        practitioners: appointment.practitioner_ids(),
        department: appointment.location_name().and_then(department_name),
        start,
        end,
        identifiers,
        appointment: appointment_id,
        found_by,
    })
}

/// A department name as reports keep it: control characters removed, trimmed, at most 200
/// bytes (cut on a character boundary).
pub fn department_name(text: &str) -> Option<String> {
    let cleaned: String = text.chars().filter(|c| !c.is_control()).collect();
    let mut name = cleaned.trim();
    if name.len() > 200 {
        let mut end = 200;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name = name[..end].trim_end();
    }
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod department_tests {
    use super::department_name;

    #[test]
    fn a_department_name_is_cleaned_and_cut_to_what_the_store_keeps() {
        assert_eq!(
            department_name("  EMC FAMILY MEDICINE "),
            Some("EMC FAMILY MEDICINE".into())
        );
        assert_eq!(
            department_name("\u{7}Cardiology"),
            Some("Cardiology".into())
        );
        assert_eq!(department_name(" \n "), None);
        let long = "é".repeat(150);
        let cut = department_name(&long).unwrap();
        assert!(
            cut.len() <= 200 && cut.chars().all(|c| c == 'é'),
            "{}",
            cut.len()
        );
    }
}

/// The Appointment's planned times: `start`, and `end` or else `start + minutesDuration`. An end
/// that is not after the start is dropped (the meeting then gets Graph's default length).
fn planned_times(appointment: &Appointment) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let start = appointment.start.as_ref().and_then(|s| s.utc());
    let end = appointment.end.as_ref().and_then(|e| e.utc()).or_else(|| {
        let minutes = appointment.minutes_duration.filter(|m| *m > 0)?;
        start?.checked_add_signed(Duration::minutes(i64::from(minutes)))
    });
    let end = end.filter(|e| start.is_none_or(|s| *e > s));
    (start, end)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;

    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        appointments: Vec<Appointment>,
        encounters: Vec<Encounter>,
    }

    fn appointment(id: &str, start: &str, status: &str) -> Appointment {
        serde_json::from_value(json!({
            "resourceType": "Appointment", "id": id, "status": status, "start": start,
            "participant": [
                {"actor": {"reference": "Patient/pat-1", "display": "Lopez, Camila"}},
                {"actor": {"reference": "Practitioner/doc-1"}},
                {"actor": {"reference": "Location/loc-1"}}
            ]
        }))
        .unwrap()
    }

    fn not_found() -> FhirError {
        FhirError::NotFound {
            resource_type: "Resource",
            id: "x".into(),
        }
    }

    #[async_trait::async_trait]
    impl VisitDirectory for Fake {
        async fn appointment(&self, id: &AppointmentId) -> Result<Appointment, FhirError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("read Appointment/{id}"));
            self.appointments
                .iter()
                .find(|a| a.id.as_ref() == Some(id))
                .cloned()
                .ok_or_else(not_found)
        }
        async fn encounter(&self, id: &EncounterId) -> Result<Encounter, FhirError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("read Encounter/{id}"));
            self.encounters
                .iter()
                .find(|e| e.id.as_ref() == Some(id))
                .cloned()
                .ok_or_else(not_found)
        }
        async fn encounters_of(
            &self,
            appointment: &AppointmentId,
        ) -> Result<Vec<Encounter>, FhirError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("search Encounter?appointment={appointment}"));
            Ok(self
                .encounters
                .iter()
                .filter(|e| e.appointment_ids().contains(appointment))
                .cloned()
                .collect())
        }
        async fn appointments_between(
            &self,
            patient: &PatientId,
            practitioner: Option<&PractitionerId>,
            from: NaiveDate,
            to: NaiveDate,
        ) -> Result<Vec<Appointment>, FhirError> {
            self.calls.lock().unwrap().push(format!(
                "search Appointment?patient={patient}&practitioner={}",
                practitioner.map(|p| p.as_str()).unwrap_or("-")
            ));
            // As a server does: appointments starting on a day from `from` to `to`.
            Ok(self
                .appointments
                .iter()
                .filter(|a| {
                    a.start
                        .as_ref()
                        .and_then(|s| s.utc())
                        .is_some_and(|s| (from..=to).contains(&s.date_naive()))
                })
                .cloned()
                .collect())
        }
    }

    fn fake() -> Fake {
        Fake {
            appointments: vec![
                appointment("a-early", "2026-03-05T09:00:00Z", "booked"),
                appointment("a-now", "2026-03-05T14:00:00Z", "booked"),
                appointment("a-cancelled", "2026-03-05T14:05:00Z", "cancelled"),
            ],
            encounters: vec![
                serde_json::from_value(json!({
                    "resourceType": "Encounter", "id": "enc-1",
                    "appointment": [{"reference": "Appointment/a-now"}]
                }))
                .unwrap(),
            ],
            ..Fake::default()
        }
    }

    /// Resolves with `record` and `context`; returns the result and the FHIR calls made.
    async fn check(
        record: &[(&str, &str)],
        context: serde_json::Value,
    ) -> (Result<ResolvedVisit, String>, Vec<String>) {
        let fake = fake();
        let record = RecordContext::from_params(record.iter().copied()).unwrap();
        let context: LaunchContext = serde_json::from_value(context).unwrap();
        let practitioner = PractitionerId::new("doc-1").unwrap();
        let now = DateTime::parse_from_rfc3339("2026-03-05T14:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let result = resolve_visit(
            LaunchFacts {
                record: &record,
                context: &context,
                practitioner: Some(&practitioner),
                now,
            },
            &fake,
        )
        .await
        .map_err(|e| e.to_string());
        let mut calls = fake.calls.into_inner().unwrap();
        calls.sort();
        (result, calls)
    }

    #[tokio::test]
    async fn epic_appointment_comes_first_and_reads_run_together() {
        let (visit, calls) = check(
            &[("sessionId", "777")],
            json!({"appointment": "a-now", "fhirContext": [{"reference": "Appointment/a-early"}]}),
        )
        .await;
        let visit = visit.unwrap();
        assert_eq!(visit.found_by, FoundBy::EpicAppointment);
        assert_eq!(visit.appointment.as_str(), "a-now");
        // The CSN names no key: the attested Appointment does.
        assert_eq!(visit.key.as_str(), "appt:a-now");
        assert_eq!(visit.encounter.as_ref().map(|e| e.as_str()), Some("enc-1"));
        assert_eq!(visit.patient.as_ref().map(|p| p.as_str()), Some("pat-1"));
        assert_eq!(
            visit
                .practitioners
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>(),
            vec!["doc-1"]
        );
        assert_eq!(
            calls,
            vec![
                "read Appointment/a-now",
                "search Encounter?appointment=a-now"
            ]
        );
    }

    #[tokio::test]
    async fn the_context_encounter_saves_the_encounter_search() {
        let (visit, calls) =
            check(&[], json!({"appointment": "a-now", "encounter": "enc-9"})).await;
        let visit = visit.unwrap();
        assert_eq!(visit.encounter.as_ref().map(|e| e.as_str()), Some("enc-9"));
        assert_eq!(visit.key.as_str(), "appt:a-now");
        assert_eq!(calls, vec!["read Appointment/a-now"]);
    }

    #[tokio::test]
    async fn fhir_context_then_encounter_then_todays_appointment() {
        let (visit, _) = check(
            &[],
            json!({"fhirContext": [{"reference": "Appointment/a-early"}]}),
        )
        .await;
        assert_eq!(visit.unwrap().found_by, FoundBy::FhirContext);

        let (visit, calls) = check(&[], json!({"encounter": "enc-1", "patient": "pat-1"})).await;
        let visit = visit.unwrap();
        assert_eq!(visit.found_by, FoundBy::Encounter);
        assert_eq!(visit.appointment.as_str(), "a-now");
        assert_eq!(
            calls,
            vec!["read Appointment/a-now", "read Encounter/enc-1"]
        );

        let (visit, calls) = check(&[], json!({"patient": "pat-1"})).await;
        let visit = visit.unwrap();
        assert_eq!(visit.found_by, FoundBy::TodaysAppointment);
        // The closest usable one: the cancelled appointment five minutes earlier is skipped.
        assert_eq!(visit.appointment.as_str(), "a-now");
        assert_eq!(visit.key.as_str(), "appt:a-now");
        assert_eq!(
            calls,
            vec!["search Appointment?patient=pat-1&practitioner=doc-1"]
        );
    }

    #[tokio::test]
    async fn a_late_evening_launch_west_of_utc_finds_that_evenings_appointment() {
        // 23:30 on March 5 in UTC-6 is 05:30 UTC on March 6. The patient's visit began at 17:30
        // local (23:30 UTC on March 5, the UTC day before), and they have another visit the next
        // morning: a search of UTC's "today" would find only tomorrow's.
        let fake = Fake {
            appointments: vec![
                appointment("a-this-evening", "2026-03-05T23:30:00Z", "booked"),
                appointment("a-tomorrow", "2026-03-06T17:00:00Z", "booked"),
                appointment("a-last-week", "2026-02-27T05:00:00Z", "booked"),
            ],
            ..Fake::default()
        };
        let record = RecordContext::default();
        let context: LaunchContext = serde_json::from_value(json!({"patient": "pat-1"})).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-03-05T23:30:00-06:00")
            .unwrap()
            .with_timezone(&Utc);
        let facts = LaunchFacts {
            record: &record,
            context: &context,
            practitioner: None,
            now,
        };
        let visit = resolve_visit(facts, &fake).await.unwrap();
        assert_eq!(visit.appointment.as_str(), "a-this-evening");
        assert_eq!(visit.found_by, FoundBy::TodaysAppointment);

        // The next morning at 10:45 local, the morning's visit is the closest.
        let now = DateTime::parse_from_rfc3339("2026-03-06T10:45:00-06:00")
            .unwrap()
            .with_timezone(&Utc);
        let visit = resolve_visit(LaunchFacts { now, ..facts }, &fake)
            .await
            .unwrap();
        assert_eq!(visit.appointment.as_str(), "a-tomorrow");
    }

    #[tokio::test]
    async fn the_records_csn_picks_among_the_patients_appointments() {
        let mut named = appointment("a-early", "2026-03-05T09:00:00Z", "booked");
        named.identifier = vec![visitbridge_fhir::Identifier::new("urn:oid:csn", "555")];
        let fake = Fake {
            appointments: vec![
                named,
                appointment("a-now", "2026-03-05T14:00:00Z", "booked"),
            ],
            ..Fake::default()
        };
        let record = RecordContext::from_params([("sessionId", "555")]).unwrap();
        let context: LaunchContext = serde_json::from_value(json!({"patient": "pat-1"})).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-03-05T14:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let visit = resolve_visit(
            LaunchFacts {
                record: &record,
                context: &context,
                practitioner: None,
                now,
            },
            &fake,
        )
        .await
        .unwrap();
        assert_eq!(visit.appointment.as_str(), "a-early");
        assert_eq!(visit.identifiers, vec!["555".to_owned()]);
    }

    #[tokio::test]
    async fn nothing_to_go_on_is_a_clear_error_without_fhir_calls() {
        let (visit, calls) = check(&[], json!({})).await;
        assert!(visit.unwrap_err().contains("does not say which visit"));
        assert!(calls.is_empty());
        let (visit, _) = check(&[], json!({"encounter": "unknown-enc"})).await;
        assert!(visit.unwrap_err().contains("FHIR server"));
        let (visit, _) = check(&[], json!({"appointment": "bad/../id"})).await;
        assert!(visit.unwrap_err().contains("invalid appointment id"));
    }

    #[test]
    fn planned_times_take_the_end_or_start_plus_duration() {
        let check = |extra: serde_json::Value, expected: (Option<&str>, Option<&str>)| {
            let mut value = json!({"resourceType": "Appointment", "id": "a", "status": "booked"});
            for (k, v) in extra.as_object().unwrap() {
                value[k] = v.clone();
            }
            let appointment: Appointment = serde_json::from_value(value).unwrap();
            let (start, end) = planned_times(&appointment);
            let text = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339());
            let want =
                |t: Option<&str>| t.map(|t| DateTime::parse_from_rfc3339(t).unwrap().to_rfc3339());
            assert_eq!(
                (text(start), text(end)),
                (want(expected.0), want(expected.1)),
                "{extra}"
            );
        };
        check(
            json!({"start": "2030-01-15T05:00:00Z", "end": "2030-01-15T05:30:00Z"}),
            (Some("2030-01-15T05:00:00Z"), Some("2030-01-15T05:30:00Z")),
        );
        check(
            json!({"start": "2030-01-15T05:00:00-05:00", "minutesDuration": 20}),
            (Some("2030-01-15T10:00:00Z"), Some("2030-01-15T10:20:00Z")),
        );
        // `end` wins over the duration.
        check(
            json!({"start": "2030-01-15T05:00:00Z", "end": "2030-01-15T05:45:00Z", "minutesDuration": 20}),
            (Some("2030-01-15T05:00:00Z"), Some("2030-01-15T05:45:00Z")),
        );
        check(json!({"minutesDuration": 20}), (None, None));
        check(
            json!({"start": "2030-01-15T05:00:00Z", "end": "2030-01-15T04:00:00Z"}),
            (Some("2030-01-15T05:00:00Z"), None),
        );
        check(json!({}), (None, None));
    }
}
