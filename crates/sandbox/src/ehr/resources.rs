//! The seed as Epic-shaped FHIR R4 resources (identifier OIDs, extensions, display names on
//! references, as in the fixtures Epic's sandbox returns).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{Seed, seed::SeedVisit, util::fhir_instant};

const OID_CSN: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.3.698084.8";
const OID_VISIT_TYPE: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.10.698084.30";
const OID_ENCOUNTER_CLASS: &str = "urn:oid:1.2.840.114350.1.72.1.7.7.10.696784.13260";
const OID_ENCOUNTER_TYPE: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.10.698084.10110";
const OID_EPI: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0";
const OID_MRN: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14";
const OID_DEPARTMENT: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.2.686980";
const OID_SPECIALTY: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.10.836982.1050";
const ORGANIZATION: (&str, &str) = ("Organization/eVbOrg-Sandbox", "VisitBridge Sandbox Health");

/// The seeded resources by type, in a stable order.
pub(crate) struct Resources {
    by_type: BTreeMap<&'static str, Vec<Value>>,
}

impl Resources {
    pub(crate) fn build(seed: &Seed) -> Self {
        let mut by_type: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
        by_type.insert("Patient", seed.patients.iter().map(patient).collect());
        by_type.insert(
            "Practitioner",
            seed.clinicians.iter().map(practitioner).collect(),
        );
        by_type.insert(
            "PractitionerRole",
            seed.clinicians
                .iter()
                .map(|c| practitioner_role(seed, c))
                .collect(),
        );
        by_type.insert("Location", vec![location(seed)]);
        by_type.insert(
            "Appointment",
            seed.visits.iter().map(|v| appointment(seed, v)).collect(),
        );
        by_type.insert(
            "Encounter",
            seed.visits.iter().map(|v| encounter(seed, v)).collect(),
        );
        Self { by_type }
    }

    /// The resources of a type (`None` for a type the sandbox does not seed).
    pub(crate) fn of_type(&self, resource_type: &str) -> Option<&[Value]> {
        self.by_type.get(resource_type).map(Vec::as_slice)
    }
}

fn reference(kind: &str, id: &str, display: &str) -> Value {
    json!({ "reference": format!("{kind}/{id}"), "display": display })
}

fn patient(p: &crate::seed::SeedPatient) -> Value {
    json!({
        "resourceType": "Patient",
        "id": p.patient_id,
        "extension": [
            { "url": "http://open.epic.com/FHIR/StructureDefinition/extension/legal-sex",
              "valueCodeableConcept": { "coding": [ { "system": "urn:oid:1.2.840.114350.1.13.0.1.7.10.698084.130.657370.19999000", "code": p.gender, "display": p.gender } ] } }
        ],
        "identifier": [
            { "use": "usual", "type": { "text": "EPI" }, "system": OID_EPI, "value": format!("E{}", p.mrn) },
            { "use": "usual", "type": { "text": "MRN" }, "system": OID_MRN, "value": p.mrn }
        ],
        "active": true,
        "name": [ { "use": "official", "text": format!("{} {}", p.given, p.family), "family": p.family, "given": [p.given] } ],
        "gender": p.gender,
        "birthDate": p.birth_date,
        "managingOrganization": { "reference": ORGANIZATION.0, "display": ORGANIZATION.1 }
    })
}

fn practitioner(c: &crate::seed::SeedClinician) -> Value {
    json!({
        "resourceType": "Practitioner",
        "id": c.practitioner_id,
        "identifier": [
            { "use": "usual", "type": { "text": "INTERNAL" }, "value": format!("  {}", c.ehr_login) },
            { "use": "usual", "system": "http://hl7.org/fhir/sid/us-npi", "type": { "text": "NPI" }, "value": c.npi }
        ],
        "active": true,
        "name": [ { "use": "usual", "text": c.display(), "family": c.family, "given": [c.given], "suffix": [c.suffix] } ],
        "extension": [ { "url": "http://open.epic.com/FHIR/StructureDefinition/extension/clinical-specialty", "valueString": "Family Medicine" } ]
    })
}

fn practitioner_role(seed: &Seed, c: &crate::seed::SeedClinician) -> Value {
    let d = &seed.department;
    json!({
        "resourceType": "PractitionerRole",
        "id": c.practitioner_role_id,
        "active": true,
        "practitioner": reference("Practitioner", &c.practitioner_id, &c.display()),
        "organization": { "reference": ORGANIZATION.0, "display": ORGANIZATION.1 },
        "location": [ reference("Location", &d.location_id, &d.name) ],
        "specialty": [ { "coding": [ { "system": OID_SPECIALTY, "code": "9", "display": "Family Medicine" } ], "text": "Family Medicine" } ]
    })
}

fn location(seed: &Seed) -> Value {
    let d = &seed.department;
    json!({
        "resourceType": "Location",
        "id": d.location_id,
        "identifier": [ { "use": "usual", "system": OID_DEPARTMENT, "value": d.department_id } ],
        "status": "active",
        "name": d.name,
        "mode": "instance",
        "type": [ { "coding": [ { "system": "urn:oid:1.2.840.114350.1.13.0.1.7.10.686980.30", "code": "1", "display": "Family Medicine" } ], "text": "Family Medicine" } ],
        "managingOrganization": { "reference": ORGANIZATION.0, "display": ORGANIZATION.1 }
    })
}

fn appointment(seed: &Seed, v: &SeedVisit) -> Value {
    let patient = seed.patient(&v.patient_id);
    let clinician = seed.clinician(&v.practitioner_id);
    let d = &seed.department;
    json!({
        "resourceType": "Appointment",
        "id": v.appointment_id,
        "identifier": [ { "use": "usual", "system": OID_CSN, "value": v.csn } ],
        "status": "booked",
        "serviceCategory": [ { "coding": [ { "system": "http://open.epic.com/FHIR/StructureDefinition/appointment-service-category", "code": "appointment", "display": "Appointment" } ] } ],
        "serviceType": [ { "coding": [ { "system": OID_VISIT_TYPE, "code": "1004", "display": "VIDEO VISIT" } ], "text": "Video Visit" } ],
        "appointmentType": { "coding": [ { "system": OID_VISIT_TYPE, "code": "1004", "display": "VIDEO VISIT" } ], "text": "Video Visit" },
        "description": v.description,
        "start": fhir_instant(v.start),
        "end": fhir_instant(v.end),
        "minutesDuration": (v.end - v.start).num_minutes(),
        "created": seed.day.to_string(),
        "extension": [
            { "url": "http://open.epic.com/FHIR/StructureDefinition/extension/telehealth-mode", "valueCodeableConcept": { "coding": [ { "code": "video", "display": "Video" } ] } }
        ],
        "participant": [
            { "actor": reference("Patient", &v.patient_id, &patient.map(|p| p.display()).unwrap_or_default()), "required": "required", "status": "accepted" },
            { "type": [ { "coding": [ { "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PPRF", "display": "primary performer" } ] } ],
              "actor": reference("Practitioner", &v.practitioner_id, &clinician.map(|c| c.display()).unwrap_or_default()), "required": "required", "status": "accepted" },
            { "actor": reference("Location", &d.location_id, &d.name), "required": "required", "status": "accepted" }
        ]
    })
}

fn encounter(seed: &Seed, v: &SeedVisit) -> Value {
    let patient = seed.patient(&v.patient_id);
    let clinician = seed.clinician(&v.practitioner_id);
    let d = &seed.department;
    let mut practitioner = reference(
        "Practitioner",
        &v.practitioner_id,
        &clinician.map(|c| c.display()).unwrap_or_default(),
    );
    practitioner["type"] = json!("Practitioner");
    json!({
        "resourceType": "Encounter",
        "id": v.encounter_id,
        "identifier": [ { "use": "usual", "system": OID_CSN, "value": v.csn } ],
        "status": "planned",
        "class": { "system": OID_ENCOUNTER_CLASS, "code": "13", "display": "Telemedicine" },
        "type": [ { "coding": [ { "system": OID_ENCOUNTER_TYPE, "code": "76", "display": "Telemedicine" } ], "text": "Telemedicine" } ],
        "subject": reference("Patient", &v.patient_id, &patient.map(|p| p.display()).unwrap_or_default()),
        "participant": [ { "individual": practitioner } ],
        "appointment": [ { "reference": format!("Appointment/{}", v.appointment_id) } ],
        "period": { "start": fhir_instant(v.start) },
        "location": [ { "location": reference("Location", &d.location_id, &d.name) } ],
        "serviceProvider": { "reference": ORGANIZATION.0, "display": ORGANIZATION.1 }
    })
}
