//! Launches from a generic SMART on FHIR EHR, through the records the portal makes for one: the
//! launch URL carries `iss`, `launch` and the environment only (no Epic `sessionId`), and the
//! visit comes from the token response's standard context.

use serde_json::json;
use visitbridge_testkit::fhir::{APPOINTMENT_ID, ENCOUNTER_ID, PATIENT_ID};

use crate::harness::Env;

/// The only context parameter of a generic record.
const GENERIC_RECORD: &[(&str, &str)] = &[("environment", "test")];

#[tokio::test]
async fn a_generic_launch_finds_the_visit_from_fhir_context_and_the_patient_joins_it() {
    let env = Env::start().await;
    // Standard SMART context only: no Epic `appointment` field, the Appointment in `fhirContext`.
    env.smart.set_launch_context(json!({
        "patient": PATIENT_ID,
        "encounter": ENCOUNTER_ID,
        "fhirContext": [{ "reference": format!("Appointment/{APPOINTMENT_ID}") }],
        "need_patient_banner": false,
    }));

    let clinician = env
        .browser()
        .navigate(&env.launch_url("provider", GENERIC_RECORD))
        .await;
    assert_eq!(
        clinician.status, 200,
        "{} {}",
        clinician.url, clinician.body
    );
    assert!(
        clinician.body.contains("Join the meeting"),
        "{}",
        clinician.body
    );
    let visit = env.visit(&clinician.visit_id()).await;
    assert_eq!(visit.appointment_fhir_id.as_deref(), Some(APPOINTMENT_ID));
    assert_eq!(env.graph.meeting_count(), 1);

    // The patient's generic launch lands in the same meeting.
    let patient = env
        .browser()
        .navigate(&env.launch_url("patient", GENERIC_RECORD))
        .await;
    let teams = patient.teams.expect("sent to Teams");
    assert!(
        teams.starts_with("https://visit.teams.microsoft.com/webrtc-svc/api/route?"),
        "{teams}"
    );
    assert_eq!(env.graph.meeting_count(), 1, "one meeting for the visit");
}

#[tokio::test]
async fn a_generic_launch_with_only_an_encounter_finds_the_appointment_through_it() {
    let env = Env::start().await;
    env.smart.set_launch_context(json!({
        "patient": PATIENT_ID,
        "encounter": ENCOUNTER_ID,
    }));
    let page = env
        .browser()
        .navigate(&env.launch_url("provider", GENERIC_RECORD))
        .await;
    assert_eq!(page.status, 200, "{} {}", page.url, page.body);
    let visit = env.visit(&page.visit_id()).await;
    assert_eq!(visit.appointment_fhir_id.as_deref(), Some(APPOINTMENT_ID));
    assert_eq!(visit.encounter_fhir_id.as_deref(), Some(ENCOUNTER_ID));
}
