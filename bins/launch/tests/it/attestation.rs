//! The launch URL's `sessionId` is not signed by the EHR: a patient who edits it to another
//! visit's CSN is refused and given no meeting; the visit is the one the token response attests.

use serde_json::{Value, json};
use visitbridge_testkit::{
    fhir::{PATIENT_ID, fhir_json},
    fixtures,
};
use wiremock::{
    Mock,
    matchers::{method, path},
};

use crate::{
    harness::{Env, Page, is_teams},
    patient::patient_context,
    provider::provider_launch,
};

/// Another patient of the same clinician, with their own appointment and CSN.
pub(crate) const OTHER_PATIENT: &str = "eOtherPatient0000000000003";
pub(crate) const OTHER_APPOINTMENT: &str = "eOtherAppointment000000003";
pub(crate) const OTHER_CSN: &str = "10000001299";

/// Serves the other patient's Appointment (the fixture's shape, their ids and CSN).
pub(crate) async fn mount_other_appointment(env: &Env) {
    let mut appointment: Value = serde_json::from_str(fixtures::EPIC_APPOINTMENT).unwrap();
    appointment["id"] = json!(OTHER_APPOINTMENT);
    appointment["identifier"][0]["value"] = json!(OTHER_CSN);
    appointment["participant"][0]["actor"] =
        json!({"reference": format!("Patient/{OTHER_PATIENT}")});
    Mock::given(method("GET"))
        .and(path(
            env.fhir.path(&format!("Appointment/{OTHER_APPOINTMENT}")),
        ))
        .respond_with(fhir_json(200, appointment.to_string()))
        .with_priority(1)
        .mount(&env.ehr)
        .await;
}

/// From now on the EHR's token responses attest the other patient's visit (their MyChart launch).
pub(crate) fn as_other_patient(env: &Env) {
    env.smart.set_launch_context(json!({
        "patient": OTHER_PATIENT,
        "appointment": OTHER_APPOINTMENT,
        "need_patient_banner": false,
    }));
}

/// Nothing of a meeting reached the browser: not sent to Teams, no join URL on the page.
fn assert_no_meeting(page: &Page) {
    assert!(page.teams.is_none(), "sent to a meeting: {page:?}");
    assert!(!page.trail.iter().any(|u| is_teams(u)), "{:?}", page.trail);
    for needle in ["teams.microsoft.com", "meetup-join", "/onlineMeetings"] {
        assert!(!page.body.contains(needle), "{needle} in {}", page.body);
    }
}

fn assert_mismatch_page(page: &Page) {
    assert!(
        (400..500).contains(&page.status),
        "{} {}",
        page.status,
        page.body
    );
    assert!(
        page.body.contains("match what the EHR says"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("start the visit again from the EHR"),
        "{}",
        page.body
    );
    assert_no_meeting(page);
}

/// Runs a launch up to the EHR's redirect back, then returns our callback's answer unfollowed.
async fn callback_answer(env: &Env, launch_url: &str) -> reqwest::Response {
    let browser = env.browser();
    let body = browser.get(launch_url).await.text().await.unwrap();
    let fields: Vec<(String, String)> = body
        .split("<input ")
        .skip(1)
        .map(|tag| {
            let attr = |name: &str| {
                let s = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                tag[s..s + tag[s..].find('"').unwrap()]
                    .replace("&#x2F;", "/")
                    .replace("&amp;", "&")
            };
            (attr("name"), attr("value"))
        })
        .collect();
    assert!(!fields.is_empty(), "the authorize form: {body}");
    let callback = env
        .smart
        .browser_post(&env.smart.authorize_url(), &fields)
        .await
        .to_string();
    browser.get(&callback).await
}

async fn join_url_requests(env: &Env) -> usize {
    env.ms
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().ends_with("/getVirtualAppointmentJoinWebUrl"))
        .count()
}

#[tokio::test]
async fn a_patient_who_edits_the_csn_is_refused_and_gets_no_meeting() {
    let env = Env::start().await;
    // The clinician starts the fixture patient's visit (CSN 10000001234 in the launch URL).
    let clinician = provider_launch(&env, &env.browser()).await;
    let victim = env.visit(&clinician.visit_id()).await;
    assert_eq!(victim.patient_fhir_id.as_deref(), Some(PATIENT_ID));
    mount_other_appointment(&env).await;

    // The other patient launches from MyChart with the victim's CSN in place of their own.
    as_other_patient(&env);
    let edited: Vec<(&str, &str)> = patient_context("10000001234");
    let page = env
        .browser()
        .navigate(&env.launch_url("patient", &edited))
        .await;
    assert_mismatch_page(&page);

    // The callback's own answer, not followed: no redirect anywhere, no meeting URL.
    let answer = callback_answer(&env, &env.launch_url("patient", &edited)).await;
    assert!(answer.status().is_client_error(), "{}", answer.status());
    let location = answer
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    assert!(
        location
            .as_deref()
            .is_none_or(|l| !is_teams(l) && !l.contains("microsoft")),
        "{location:?}"
    );
    let body = answer.text().await.unwrap();
    assert!(!body.contains("teams.microsoft.com"), "{body}");
    assert!(body.contains("match what the EHR says"), "{body}");

    // Nothing about the victim's meeting was given out or changed.
    assert_eq!(env.graph.meeting_count(), 1);
    let after = env.visit(&clinician.visit_id()).await;
    assert_eq!(after.patient_fhir_id.as_deref(), Some(PATIENT_ID));
    assert_eq!(after.appointment_fhir_id, victim.appointment_fhir_id);

    // Their honest launch (their own CSN) works: their own visit's meeting, not the victim's.
    let honest = env
        .browser()
        .navigate(&env.launch_url("patient", &patient_context(OTHER_CSN)))
        .await;
    let teams = honest
        .teams
        .unwrap_or_else(|| panic!("{} {}", honest.status, honest.body));
    assert!(
        teams.starts_with("https://visit.teams.microsoft.com/"),
        "{teams}"
    );
    assert_eq!(env.graph.meeting_count(), 2, "a meeting of their own");
}

#[tokio::test]
async fn the_honest_patient_goes_straight_to_the_clinicians_meeting() {
    let env = Env::start().await;
    provider_launch(&env, &env.browser()).await;
    let page = env
        .browser()
        .navigate(&env.launch_url("patient", &Env::visit_context()))
        .await;
    let teams = page.teams.unwrap_or_else(|| panic!("{}", page.body));
    assert!(teams.starts_with("https://visit.teams.microsoft.com/"));
    assert_eq!(env.graph.meeting_count(), 1);
    // The stored visit matched the attested ids: no FHIR read was needed.
    let fhir_reads = env
        .ehr
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().contains("/api/FHIR/R4/Appointment"))
        .count();
    assert_eq!(fhir_reads, 1, "only the clinician's launch read FHIR");
}

#[tokio::test]
async fn an_edited_csn_in_a_device_test_does_not_open_another_visits_lobby() {
    let env = Env::start().await;
    provider_launch(&env, &env.browser()).await;
    // The visit's own patient gets its lobby.
    let page = env
        .browser()
        .navigate(&env.launch_url("device-test", &Env::visit_context()))
        .await;
    assert!(
        page.body
            .contains("href=\"https://visit.teams.microsoft.com/webrtc-svc/api/route?"),
        "{}",
        page.body
    );

    // Another patient with that CSN in their URL: instructions only.
    as_other_patient(&env);
    let before = join_url_requests(&env).await;
    let page = env
        .browser()
        .navigate(&env.launch_url("device-test", &Env::visit_context()))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Test your camera and microphone"));
    assert_no_meeting(&page);
    assert_eq!(join_url_requests(&env).await, before);
}

#[tokio::test]
async fn a_clinician_launch_for_another_appointment_under_a_known_key_is_refused() {
    let env = Env::start().await;
    let first = provider_launch(&env, &env.browser()).await;
    let before = env.visit(&first.visit_id()).await;
    mount_other_appointment(&env).await;
    // The EHR attests another appointment, but the URL names the first visit's CSN.
    as_other_patient(&env);
    let page = env
        .browser()
        .navigate(&env.launch_url("provider", &Env::visit_context()))
        .await;
    assert_mismatch_page(&page);
    // The first visit is untouched; whatever the refused launch set up belongs to the attested
    // appointment, and keeps no unattested CSN.
    let after = env.visit(&first.visit_id()).await;
    assert_eq!(after.appointment_fhir_id, before.appointment_fhir_id);
    assert_eq!(after.patient_fhir_id, before.patient_fhir_id);
    assert_eq!(after.graph_meeting_id, before.graph_meeting_id);
    let rows = env
        .store
        .visits_since(
            &before.configuration_id,
            chrono::Utc::now() - chrono::Duration::days(1),
            10,
        )
        .await
        .unwrap();
    for row in rows.iter().filter(|r| r.id != before.id) {
        assert_eq!(row.appointment_fhir_id.as_deref(), Some(OTHER_APPOINTMENT));
        assert_eq!(row.conference_id, None, "an unattested CSN was kept");
    }
    assert!(env.graph.meeting_count() <= 2);
}
