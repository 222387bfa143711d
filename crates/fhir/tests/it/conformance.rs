//! Conformance with the spec-generated fhir-sdk R4B models, lossless round trips, tolerance.

use fhir_sdk::r4b::resources::Resource as SdkResource;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use visitbridge_fhir::{
    Appointment, AppointmentStatus, AuditAgent, Bundle, CapabilityStatement, Communication,
    Encounter, EncounterId, Location, OperationOutcome, ParticipantAction, Patient, PatientId,
    Practitioner, PractitionerRole, Resource,
};
use visitbridge_testkit::{fhir, fixtures};

use crate::participant_event;

/// Every Epic R4 document the fakes serve (the `epic-r4-*.json` fixtures first).
fn epic_documents() -> Vec<(&'static str, String)> {
    vec![
        ("Appointment", fixtures::EPIC_APPOINTMENT.to_owned()),
        ("Encounter", fixtures::EPIC_ENCOUNTER.to_owned()),
        ("Patient", fixtures::EPIC_PATIENT.to_owned()),
        ("Practitioner", fixtures::EPIC_PRACTITIONER.to_owned()),
        ("PractitionerRole", fhir::EPIC_PRACTITIONER_ROLE.to_owned()),
        ("Location", fhir::EPIC_LOCATION.to_owned()),
        (
            "CapabilityStatement",
            fhir::capability_statement("https://ehr/authorize", "https://ehr/token"),
        ),
        (
            "OperationOutcome",
            fhir::operation_outcome("not-found", Some(4102), "Invalid ID."),
        ),
    ]
}

fn sdk_parses(json: &str) {
    if let Err(e) = serde_json::from_str::<SdkResource>(json) {
        panic!("fhir-sdk r4b rejects {json}: {e}");
    }
}

/// Parses `text` with our model and checks the serialised form is the same JSON.
fn round_trip<R: Resource>(text: &str) {
    let original: Value = serde_json::from_str(text).unwrap();
    let ours: R = serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: {e}", R::TYPE));
    let again = serde_json::to_value(&ours).unwrap();
    assert_eq!(
        again,
        original,
        "{} lost or changed data on a round trip",
        R::TYPE
    );
}

#[test]
fn every_epic_document_parses_with_fhir_sdk_and_round_trips_through_ours() {
    for (kind, text) in epic_documents() {
        sdk_parses(&text);
        match kind {
            "Appointment" => round_trip::<Appointment>(&text),
            "Encounter" => round_trip::<Encounter>(&text),
            "Patient" => round_trip::<Patient>(&text),
            "Practitioner" => round_trip::<Practitioner>(&text),
            "PractitionerRole" => round_trip::<PractitionerRole>(&text),
            "Location" => round_trip::<Location>(&text),
            "CapabilityStatement" => round_trip::<CapabilityStatement>(&text),
            "OperationOutcome" => round_trip::<OperationOutcome>(&text),
            other => panic!("no model for {other}"),
        }
    }
    let bundle = fhir::searchset(
        "https://ehr/R4",
        "https://ehr/R4/Appointment?patient=x",
        &[fixtures::EPIC_APPOINTMENT],
        Some("https://ehr/R4/Appointment?patient=x&page=2"),
    );
    sdk_parses(&bundle);
    let ours = Bundle::<Appointment>::from_slice(bundle.as_bytes()).unwrap();
    assert_eq!(ours.resources().count(), 1);
}

fn emitted<T: Serialize + DeserializeOwned>(resource: &T) -> String {
    let json = serde_json::to_string(resource).unwrap();
    sdk_parses(&json);
    json
}

#[test]
fn every_resource_we_emit_parses_with_fhir_sdk() {
    let agents = [
        AuditAgent::Practitioner("eM5CWtq15N0WJeuCet5bJlQ3".parse().unwrap()),
        AuditAgent::Patient(fhir::PATIENT_ID.parse().unwrap()),
        AuditAgent::Identifier {
            system: "https://login.microsoftonline.com/tenant-id".to_owned(),
            value: "2f1e0a4c-5b6d-4e7f-8a9b-0c1d2e3f4a5b".to_owned(),
        },
    ];
    for agent in agents {
        for action in [
            ParticipantAction::Connected,
            ParticipantAction::Disconnected,
        ] {
            let json = emitted(&participant_event("evt-1", action, agent.clone()));
            let value: Value = serde_json::from_str(&json).unwrap();
            // The shape writeback.md asks for.
            assert_eq!(value["type"]["code"], "110114");
            let subtype: Vec<&str> = value["subtype"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["code"].as_str().unwrap())
                .collect();
            let expected = match action {
                ParticipantAction::Connected => ["110122", "participant-connected"],
                ParticipantAction::Disconnected => ["110123", "participant-disconnected"],
            };
            assert_eq!(subtype, expected);
            assert_eq!(value["action"], "E");
            assert_eq!(value["outcome"], "0");
            assert_eq!(value["period"]["start"], "2026-03-05T18:01:30Z");
            assert_eq!(value["agent"][0]["requestor"], true);
            assert!(
                value["agent"][0]["who"].get("display").is_none(),
                "an agent is never a name"
            );
            assert_eq!(value["agent"][1]["type"]["coding"][0]["code"], "110153");
            assert_eq!(
                value["source"]["observer"]["reference"],
                "Device/visitbridge"
            );
            let entities: Vec<&str> = value["entity"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["what"]["reference"].as_str().unwrap())
                .collect();
            assert_eq!(
                entities,
                [
                    format!("Appointment/{}", fhir::APPOINTMENT_ID),
                    format!("Encounter/{}", fhir::ENCOUNTER_ID),
                    format!("Patient/{}", fhir::PATIENT_ID),
                ]
            );
            assert_eq!(value["entity"][2]["role"]["code"], "1");
            assert_eq!(value["meta"]["tag"][0]["code"], "evt-1");
        }
    }
    let note = Communication::visit_status_note(
        "evt-2",
        &EncounterId::new(fhir::ENCOUNTER_ID).unwrap(),
        Some(&PatientId::new(fhir::PATIENT_ID).unwrap()),
        "Video visit: patient joined",
        chrono::Utc::now(),
    );
    emitted(&note);
}

#[test]
fn odd_but_real_ehr_values_are_kept() {
    let mut value: Value = serde_json::from_str(fixtures::EPIC_APPOINTMENT).unwrap();
    value["status"] = "arrived-late".into();
    value["start"] = "2026-03-05T18:00".into();
    value["minutesDuration"] = "30".into();
    let appointment: Appointment = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(
        appointment.status,
        Some(AppointmentStatus::Other("arrived-late".to_owned()))
    );
    let start = appointment.start.as_ref().unwrap();
    assert_eq!(start.as_str(), "2026-03-05T18:00");
    assert_eq!(
        start.utc(),
        None,
        "no zone, no instant: a guess would move the visit"
    );
    assert_eq!(appointment.minutes_duration, Some(30));

    let again = serde_json::to_value(&appointment).unwrap();
    assert_eq!(again["status"], "arrived-late");
    assert_eq!(again["start"], "2026-03-05T18:00");
    assert_eq!(
        again["minutesDuration"], 30,
        "re-emitted as the number FHIR wants"
    );
}

#[test]
fn what_we_serve_is_valid_r4_by_hl7s_schema_and_fhir_sdk() {
    use visitbridge_fhir::server::{DateRange, RequestError, SearchMatch, searchset};
    use visitbridge_testkit::fhir_schema::r4_schema_errors;

    let mut matches = Vec::new();
    for (n, action) in [
        ParticipantAction::Connected,
        ParticipantAction::Disconnected,
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("0b1f6c1e-2f6a-5b1a-9d8e-00000000000{n}");
        let mut resource = serde_json::to_value(participant_event(
            &id,
            action,
            AuditAgent::Patient(fhir::PATIENT_ID.parse().unwrap()),
        ))
        .unwrap();
        resource["id"] = Value::String(id.clone());
        matches.push(SearchMatch {
            full_url: format!("https://portal.example/fhir/AuditEvent/{id}"),
            resource,
        });
    }
    let page = searchset(
        "https://portal.example/fhir/AuditEvent?date=ge2026-03-05&_count=2",
        Some("https://portal.example/fhir/AuditEvent?date=ge2026-03-05&_count=2&ct=abc"),
        matches,
        chrono::Utc::now(),
    );
    let empty = searchset(
        "https://portal.example/fhir/AuditEvent",
        None,
        Vec::new(),
        chrono::Utc::now(),
    );
    let refusals = [
        DateRange::parse("soon").unwrap_err(),
        RequestError::NotSupported("x".into()),
        RequestError::NotFound("x".into()),
        RequestError::Login("x".into()),
        RequestError::Forbidden("x".into()),
        RequestError::Exception,
    ];
    let mut documents = vec![page, empty];
    documents.extend(refusals.iter().map(RequestError::outcome));
    for document in documents {
        assert_eq!(
            r4_schema_errors(&document),
            Vec::<String>::new(),
            "{document}"
        );
        sdk_parses(&document.to_string());
    }
    // The check can fail: a page whose entry lost its resource type is not R4.
    let mut broken = searchset(
        "https://p/fhir/AuditEvent",
        None,
        Vec::new(),
        chrono::Utc::now(),
    );
    broken["type"] = Value::String("search-results".into());
    assert!(!r4_schema_errors(&broken).is_empty());
}
