//! The patient's paths: after the clinician, before the clinician (meeting made under the
//! visit's practitioner, or a waiting page), signed links, and the device test.

use chrono::Utc;
use visitbridge_http::Secret;
use visitbridge_testkit::fhir::APPOINTMENT_ID;
use visitbridge_visit::PatientLink;

use crate::{
    harness::{CONFIGURATION_ID, Env},
    provider::provider_launch,
};

/// The fixture visit's CSN, as the fixture Appointment and Encounter carry it in `identifier`.
pub(crate) const FIXTURE_CSN: &str = "10000001234";

pub(crate) fn patient_context(csn: &str) -> Vec<(&str, &str)> {
    vec![("sessionId", csn), ("environment", "test")]
}

pub(crate) fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    body[at..at + body[at..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn a_patient_after_the_clinician_lands_in_the_same_meeting_in_the_browser() {
    let env = Env::start().await;
    let clinician = provider_launch(&env, &env.browser()).await;
    let visit = env.visit(&clinician.visit_id()).await;

    let page = env
        .browser()
        .navigate(&env.launch_url("patient", &Env::visit_context()))
        .await;
    let teams = page.teams.expect("sent to Teams");
    // The virtual-appointment browser join (no account, no app) of the same meeting.
    assert!(
        teams.starts_with("https://visit.teams.microsoft.com/webrtc-svc/api/route?"),
        "{teams}"
    );
    let thread = visit
        .join_web_url
        .as_deref()
        .unwrap()
        .split("meeting_")
        .nth(1)
        .unwrap()
        .split("%40")
        .next()
        .unwrap()
        .to_owned();
    assert!(teams.contains(&thread), "{teams}");
    assert_eq!(env.graph.meeting_count(), 1);
}

#[tokio::test]
async fn a_patient_before_the_clinician_gets_the_meeting_of_the_visits_practitioner() {
    let env = Env::start().await;
    // The practitioner linked their Microsoft account at an earlier visit.
    env.another_visit("eEarlierVisit0000000000001", "77000002")
        .await;
    let earlier = env
        .browser()
        .navigate(&env.launch_url("provider", &patient_context("77000002")))
        .await;
    assert_eq!(earlier.status, 200, "{}", earlier.body);
    assert_eq!(env.graph.meeting_count(), 1);
    env.attest_appointment(APPOINTMENT_ID);

    // Today's visit (launched by its CSN, which the attested Appointment carries): the patient
    // is first.
    let page = env
        .browser()
        .navigate(&env.launch_url("patient", &patient_context(FIXTURE_CSN)))
        .await;
    let teams = page.teams.unwrap_or_else(|| panic!("{}", page.body));
    assert!(
        teams.starts_with("https://visit.teams.microsoft.com/"),
        "{teams}"
    );
    assert_eq!(env.graph.meeting_count(), 2);
    // The lobby policy was applied before the patient got the URL.
    let patches = env.graph.patch_bodies();
    assert_eq!(patches.len(), 2);
    assert_eq!(patches[1]["lobbyBypassSettings"]["scope"], "organization");

    // The clinician launches the same visit: same meeting.
    let clinician = env
        .browser()
        .navigate(&env.launch_url("provider", &patient_context(FIXTURE_CSN)))
        .await;
    assert_eq!(clinician.status, 200, "{}", clinician.body);
    assert_eq!(env.graph.meeting_count(), 2);
}

#[tokio::test]
async fn a_patient_waits_until_the_clinician_can_host_the_meeting() {
    let env = Env::start().await;
    let patient = env.browser();
    let page = patient
        .navigate(&env.launch_url("patient", &patient_context(FIXTURE_CSN)))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.url.ends_with("/join/wait"), "{}", page.url);
    assert!(
        page.body
            .contains("Your clinician will start the visit shortly"),
        "{}",
        page.body
    );
    assert!(page.body.contains("http-equiv=\"refresh\" content=\"15\""));
    assert_eq!(env.graph.meeting_count(), 0);

    // Still nobody to host it: the page stays.
    let again = patient.navigate(&format!("{}/join/wait", env.base)).await;
    assert_eq!(again.status, 200);
    assert!(again.teams.is_none());

    // The clinician launches (and links their account); the next refresh goes to the meeting.
    let clinician = env
        .browser()
        .navigate(&env.launch_url("provider", &patient_context(FIXTURE_CSN)))
        .await;
    assert_eq!(clinician.status, 200, "{}", clinician.body);
    let refreshed = patient.navigate(&format!("{}/join/wait", env.base)).await;
    let teams = refreshed
        .teams
        .expect("sent to Teams after the clinician started");
    assert!(teams.starts_with("https://visit.teams.microsoft.com/"));
    assert_eq!(env.graph.meeting_count(), 1);
}

#[tokio::test]
async fn a_signed_patient_link_opens_the_meeting_until_it_expires() {
    let env = Env::start().await;
    let clinician = env.browser();
    let page = provider_launch(&env, &clinician).await;
    let csrf = csrf_of(&page.body);

    // A forged form (no CSRF token) makes no link.
    let forged = clinician
        .post_form(
            &format!("{}/patient-link", page.url),
            &[("csrf".into(), "guess".into())],
        )
        .await;
    assert_eq!(forged.status(), 403);

    let made = clinician
        .post_form(
            &format!("{}/patient-link", page.url),
            &[("csrf".into(), csrf)],
        )
        .await;
    assert_eq!(made.status(), 200);
    let body = made.text().await.unwrap();
    let start = body.find(&format!("{}/join/", env.base)).expect("a link");
    let link = body[start..start + body[start..].find('"').unwrap()].to_owned();
    assert!(!link.contains("10000001234"), "the CSN is not in the link");

    let opened = env.browser().navigate(&link).await;
    assert!(
        opened
            .teams
            .as_deref()
            .is_some_and(|t| t.starts_with("https://visit.teams.microsoft.com/")),
        "{opened:?}"
    );

    // Altered: refused.
    let tampered = format!("{}x", &link[..link.len() - 1]);
    let refused = env.browser().navigate(&tampered).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("not valid"), "{}", refused.body);

    // Expired: refused with its own message.
    let visit = env.visit(&page.visit_id()).await;
    let expired = PatientLink {
        configuration_id: CONFIGURATION_ID.into(),
        external_meeting_id: visit.external_meeting_id.clone(),
        expires_at: Utc::now() - chrono::Duration::minutes(1),
    }
    .sign(&Secret::new("test-deployment-secret-0123456789abcdef"));
    let refused = env
        .browser()
        .navigate(&format!("{}/join/{expired}", env.base))
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("expired"), "{}", refused.body);
}

#[tokio::test]
async fn the_device_test_opens_the_visits_lobby_or_explains_how_to_prepare() {
    let env = Env::start().await;
    // No meeting yet for the appointment: instructions.
    let page = env
        .browser()
        .navigate(&env.launch_url("device-test", &[("environment", "test")]))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Test your camera and microphone"));
    assert!(page.body.contains("Allow"), "{}", page.body);
    assert!(!page.body.contains("visit.teams.microsoft.com"));

    // A visit launched without a CSN is keyed by its appointment, which the device test knows.
    let clinician = env
        .browser()
        .navigate(&env.launch_url("provider", &[("environment", "test")]))
        .await;
    assert_eq!(clinician.status, 200, "{}", clinician.body);
    let page = env
        .browser()
        .navigate(&env.launch_url("device-test", &[("environment", "test")]))
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("href=\"https://visit.teams.microsoft.com/webrtc-svc/api/route?"),
        "{}",
        page.body
    );
}
