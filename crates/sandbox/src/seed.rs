//! The sandbox's synthetic world: one department, two clinicians (who are also Microsoft users),
//! three patients and today's video visits.
//!
//! Names are obviously fake ("Test, Alex") and exist only inside the simulated EHR and the
//! simulated Microsoft directory; they are the data VisitBridge must never store. Ids are fixed,
//! except those of the day's visits (Appointment, Encounter, CSN), which carry the date so that a
//! visit of one day is never mistaken for another day's.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Timelike, Utc};

/// The department (an Epic department is a FHIR Location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedDepartment {
    /// The Location's FHIR id (also the launch's `location` and `loginDepartment`).
    pub location_id: String,
    /// The department id the EHR substitutes for `%PERFDEPID%` (`departmentId=`).
    pub department_id: String,
    /// Its name.
    pub name: String,
}

/// A clinician: an EHR user (Practitioner) and a Microsoft 365 user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedClinician {
    /// The Practitioner's FHIR id (the id_token's `sub`).
    pub practitioner_id: String,
    /// The PractitionerRole's FHIR id.
    pub practitioner_role_id: String,
    /// Given name.
    pub given: String,
    /// Family name.
    pub family: String,
    /// Credential suffix (`MD`, `NP`).
    pub suffix: String,
    /// The EHR login (the id_token's `preferred_username`).
    pub ehr_login: String,
    /// The NPI (synthetic).
    pub npi: String,
    /// The Entra object id of the same person.
    pub ms_object_id: String,
    /// The Microsoft 365 UPN.
    pub upn: String,
}

impl SeedClinician {
    /// "Dana Demo, MD": how Epic displays a practitioner on references.
    pub fn display(&self) -> String {
        format!("{} {}, {}", self.given, self.family, self.suffix)
    }
}

/// A patient (and MyChart user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedPatient {
    /// The Patient's FHIR id.
    pub patient_id: String,
    /// Given name.
    pub given: String,
    /// Family name.
    pub family: String,
    /// Birth date (synthetic).
    pub birth_date: String,
    /// `male` / `female` / `other`.
    pub gender: String,
    /// The MRN (synthetic).
    pub mrn: String,
    /// The patient's DSTU2 id (Epic's `__epic.dstu2.patient`).
    pub dstu2_id: String,
}

impl SeedPatient {
    /// "Test, Alex": how Epic displays a patient on references.
    pub fn display(&self) -> String {
        format!("{}, {}", self.family, self.given)
    }
}

/// A staff member who is only a Microsoft user (portal admin, approver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedStaff {
    /// Entra object id.
    pub ms_object_id: String,
    /// UPN.
    pub upn: String,
    /// Display name.
    pub display_name: String,
}

/// One of today's video visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedVisit {
    /// The Appointment's FHIR id.
    pub appointment_id: String,
    /// The Encounter's FHIR id.
    pub encounter_id: String,
    /// The contact serial number (the Encounter identifier; `sessionId=%CSN%`).
    pub csn: String,
    /// The patient.
    pub patient_id: String,
    /// The clinician.
    pub practitioner_id: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// The visit's description (a reason, as schedules show it).
    pub description: String,
}

/// Everything the simulated EHR and directory know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The day (UTC) the visits are on.
    pub day: NaiveDate,
    /// The department.
    pub department: SeedDepartment,
    /// The clinicians.
    pub clinicians: Vec<SeedClinician>,
    /// The patients.
    pub patients: Vec<SeedPatient>,
    /// Microsoft-only staff (portal admin, approver).
    pub staff: Vec<SeedStaff>,
    /// Today's visits, in start order.
    pub visits: Vec<SeedVisit>,
}

/// The organisation's Microsoft 365 domain in the sandbox.
pub const SANDBOX_DOMAIN: &str = "visitbridge-sandbox.example";

impl Seed {
    /// The world as of `now`: visits on `now`'s day (UTC), the first one starting around now,
    /// the others later the same day.
    pub fn generate(now: DateTime<Utc>) -> Self {
        let day = now.date_naive();
        let clinicians = clinicians();
        let patients = patients();
        // A quarter hour before now, rounded down, kept within the day so all visits fit in it.
        let minute = (now.minute() / 15) * 15;
        let rounded = now
            .date_naive()
            .and_time(NaiveTime::from_hms_opt(now.hour(), minute, 0).unwrap_or_default())
            .and_utc();
        let day_start = day.and_time(NaiveTime::MIN).and_utc();
        let latest = day_start + Duration::hours(21);
        let base = (rounded - Duration::minutes(15)).clamp(day_start, latest);
        let plan = [
            (0, 0, 0, "Follow-up video visit"),
            (30, 1, 0, "Medication review (video)"),
            (90, 2, 1, "New patient video visit"),
            (150, 0, 1, "Results discussion (video)"),
        ];
        let stamp = day.format("%Y%m%d").to_string();
        let short = day.format("%y%m%d").to_string();
        let visits = plan
            .iter()
            .enumerate()
            .map(|(n, (offset, patient, clinician, description))| {
                let start = base + Duration::minutes(*offset);
                SeedVisit {
                    appointment_id: format!("eVbAppt-{stamp}-{}", n + 1),
                    encounter_id: format!("eVbEnc-{stamp}-{}", n + 1),
                    csn: format!("1{short}00{}", n + 1),
                    patient_id: patients[*patient].patient_id.clone(),
                    practitioner_id: clinicians[*clinician].practitioner_id.clone(),
                    start,
                    end: start + Duration::minutes(30),
                    description: (*description).to_owned(),
                }
            })
            .collect();
        Self {
            day,
            department: SeedDepartment {
                location_id: "eVbLoc-FamilyMedicine".to_owned(),
                department_id: "1700101".to_owned(),
                name: "VB SANDBOX FAMILY MEDICINE".to_owned(),
            },
            clinicians,
            patients,
            staff: staff(),
            visits,
        }
    }

    /// A clinician by Practitioner id.
    pub fn clinician(&self, practitioner_id: &str) -> Option<&SeedClinician> {
        self.clinicians
            .iter()
            .find(|c| c.practitioner_id == practitioner_id)
    }

    /// A patient by Patient id.
    pub fn patient(&self, patient_id: &str) -> Option<&SeedPatient> {
        self.patients.iter().find(|p| p.patient_id == patient_id)
    }

    /// A visit by Appointment id.
    pub fn visit(&self, appointment_id: &str) -> Option<&SeedVisit> {
        self.visits
            .iter()
            .find(|v| v.appointment_id == appointment_id)
    }

    /// A visit by CSN.
    pub fn visit_by_csn(&self, csn: &str) -> Option<&SeedVisit> {
        self.visits.iter().find(|v| v.csn == csn)
    }
}

fn clinicians() -> Vec<SeedClinician> {
    vec![
        SeedClinician {
            practitioner_id: "eVbPract-DanaDemo".to_owned(),
            practitioner_role_id: "eVbRole-DanaDemo".to_owned(),
            given: "Dana".to_owned(),
            family: "Demo".to_owned(),
            suffix: "MD".to_owned(),
            ehr_login: "DDEMO".to_owned(),
            npi: "1999000011".to_owned(),
            ms_object_id: "7a1d2c3e-0b5f-4a6e-9d10-5a2b7c8d9e01".to_owned(),
            upn: format!("dana.demo@{SANDBOX_DOMAIN}"),
        },
        SeedClinician {
            practitioner_id: "eVbPract-MorganExample".to_owned(),
            practitioner_role_id: "eVbRole-MorganExample".to_owned(),
            given: "Morgan".to_owned(),
            family: "Example".to_owned(),
            suffix: "NP".to_owned(),
            ehr_login: "MEXAMPLE".to_owned(),
            npi: "1999000029".to_owned(),
            ms_object_id: "3c9e8f71-6d2a-4b0c-8e5f-1a2b3c4d5e02".to_owned(),
            upn: format!("morgan.example@{SANDBOX_DOMAIN}"),
        },
    ]
}

fn patients() -> Vec<SeedPatient> {
    let patient =
        |id: &str, given: &str, family: &str, birth: &str, gender: &str, mrn: &str| SeedPatient {
            patient_id: id.to_owned(),
            given: given.to_owned(),
            family: family.to_owned(),
            birth_date: birth.to_owned(),
            gender: gender.to_owned(),
            mrn: mrn.to_owned(),
            dstu2_id: format!("T{id}.dstu2"),
        };
    vec![
        patient(
            "eQ7vKp2sXw9mT4bN1rLc3",
            "Alex",
            "Test",
            "1980-01-01",
            "other",
            "900001",
        ),
        patient(
            "eH3nRt8yUj5wZ0aK6dFm2",
            "Jordan",
            "Sample",
            "1975-06-15",
            "female",
            "900002",
        ),
        patient(
            "eB9cLs4gPq7vX2eW8hNt5",
            "Riley",
            "Fictional",
            "1992-11-30",
            "male",
            "900003",
        ),
    ]
}

fn staff() -> Vec<SeedStaff> {
    vec![
        SeedStaff {
            ms_object_id: "c2b1a0f9-8e7d-4c6b-a5f4-e3d2c1b0a903".to_owned(),
            upn: format!("casey.admin@{SANDBOX_DOMAIN}"),
            display_name: "Casey Admin".to_owned(),
        },
        SeedStaff {
            ms_object_id: "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f04".to_owned(),
            upn: format!("quinn.analyst@{SANDBOX_DOMAIN}"),
            display_name: "Quinn Analyst".to_owned(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        crate::util::parse_time(text).expect("time")
    }

    #[test]
    fn visits_are_today_from_around_now() {
        let seed = Seed::generate(at("2026-03-05T10:07:00Z"));
        assert_eq!(seed.visits.len(), 4);
        assert_eq!(seed.visits[0].start, at("2026-03-05T09:45:00Z"));
        assert_eq!(seed.visits[0].csn, "1260305001");
        assert_eq!(seed.visits[0].appointment_id, "eVbAppt-20260305-1");
        assert!(seed.visits.iter().all(|v| v.start.date_naive() == seed.day));
        assert!(
            seed.visits
                .iter()
                .all(|v| seed.patient(&v.patient_id).is_some()
                    && seed.clinician(&v.practitioner_id).is_some())
        );
    }

    #[test]
    fn late_in_the_day_the_visits_still_fit_in_it() {
        let seed = Seed::generate(at("2026-03-05T23:55:00Z"));
        assert!(
            seed.visits
                .iter()
                .all(|v| v.end.date_naive() == seed.day || v.end == at("2026-03-06T00:00:00Z"))
        );
        let early = Seed::generate(at("2026-03-05T00:05:00Z"));
        assert_eq!(early.visits[0].start, at("2026-03-05T00:00:00Z"));
    }
}
