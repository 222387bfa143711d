//! Who a launch acts as, and which visit it reaches: a patient's token never acts as a clinician,
//! and one appointment has one visit and one meeting whatever the launch URL's CSN says.

use chrono::{Duration, Utc};
use visitbridge_approval::{ConfigurationId, EhrUserId, FhirBaseUrl, UrlPolicy};
use visitbridge_testkit::fhir::{APPOINTMENT_ID, PATIENT_ID};

use crate::{
    attestation::OTHER_CSN,
    harness::{CONFIGURATION_ID, Env, Page, is_teams},
    provider::provider_launch,
};

async fn visit_count(env: &Env) -> usize {
    env.store
        .visits_since(
            &ConfigurationId::new(CONFIGURATION_ID).unwrap(),
            Utc::now() - Duration::days(1),
            100,
        )
        .await
        .unwrap()
        .len()
}

fn assert_clinicians_only_page(page: &Page) {
    assert_eq!(page.status, 403, "{} {}", page.url, page.body);
    assert!(
        page.body.contains("This launch is for clinicians"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Patients join from the patient portal"),
        "{}",
        page.body
    );
    // Never sent on to a Microsoft sign-in or a meeting.
    assert!(
        !page
            .trail
            .iter()
            .any(|u| u.contains("/oauth2/v2.0/authorize")),
        "{:?}",
        page.trail
    );
    assert!(!page.trail.iter().any(|u| is_teams(u)), "{:?}", page.trail);
    assert!(!page.body.contains("teams.microsoft.com"), "{}", page.body);
    // The page names no id of the patient.
    assert!(!page.body.contains(PATIENT_ID), "{}", page.body);
}

#[tokio::test]
async fn a_patients_launch_at_the_clinician_address_is_refused_before_anything_is_kept() {
    let env = Env::start().await;
    let issuer = FhirBaseUrl::parse(&env.smart.fhir_base(), UrlPolicy::DEVELOPMENT).unwrap();
    for user in [
        format!("Patient/{PATIENT_ID}"),
        "RelatedPerson/eRelated0000000000001".to_owned(),
    ] {
        // The EHR signs in a patient (a MyChart launch replayed at /launch/provider).
        env.smart.set_fhir_user(Some(&user));
        let page = env
            .browser()
            .navigate(&env.launch_url("provider", &Env::visit_context()))
            .await;
        assert_clinicians_only_page(&page);

        // No link of that identity to any Microsoft account, no visit row, no meeting.
        let link = env
            .store
            .get_user_link(&issuer, &EhrUserId::new(user.clone()).unwrap())
            .await
            .unwrap();
        assert!(link.is_none(), "{user} was linked");
    }
    assert_eq!(visit_count(&env).await, 0);
    assert_eq!(env.graph.create_or_get_calls(), 0);
    assert_eq!(env.graph.meeting_count(), 0);

    // A clinician's launch works as before.
    env.smart.reset_fhir_user();
    let page = provider_launch(&env, &env.browser()).await;
    assert!(page.body.contains("Join the meeting"), "{}", page.body);
    assert_eq!(env.graph.meeting_count(), 1);
}

#[tokio::test]
async fn a_practitioner_role_is_staff() {
    let env = Env::start().await;
    env.smart
        .set_fhir_user(Some("PractitionerRole/eN4pZ2FdGDwZ0G3ZQbxsF8w3"));
    let page = provider_launch(&env, &env.browser()).await;
    assert!(page.body.contains("Join the meeting"), "{}", page.body);
}

#[tokio::test]
async fn one_appointment_is_one_visit_and_one_meeting_whatever_csn_the_url_carries() {
    let env = Env::start().await;
    // With its CSN (the record's `sessionId=%CSN%`).
    let with_csn = provider_launch(&env, &env.browser()).await;
    // Without one (a record without the context token, or another EHR).
    let without = env
        .browser()
        .navigate(&env.launch_url("provider", &[("environment", "test")]))
        .await;
    assert_eq!(without.status, 200, "{}", without.body);
    assert_eq!(without.visit_id(), with_csn.visit_id());
    assert_eq!(visit_count(&env).await, 1);
    assert_eq!(env.graph.meeting_count(), 1);

    // With another visit's CSN: refused, and nothing of it is kept.
    let foreign = env
        .browser()
        .navigate(&env.launch_url(
            "provider",
            &[("sessionId", OTHER_CSN), ("environment", "test")],
        ))
        .await;
    assert!(
        (400..500).contains(&foreign.status),
        "{} {}",
        foreign.status,
        foreign.body
    );
    assert!(
        foreign.body.contains("match what the EHR says"),
        "{}",
        foreign.body
    );
    assert_eq!(visit_count(&env).await, 1);
    assert_eq!(env.graph.meeting_count(), 1);
    let visit = env.visit(&with_csn.visit_id()).await;
    assert_eq!(visit.appointment_fhir_id.as_deref(), Some(APPOINTMENT_ID));
    // The write-back keeps the attested CSN, not the foreign one.
    assert_eq!(visit.conference_id.as_deref(), Some("10000001234"));
}

#[tokio::test]
async fn a_first_launch_without_csn_gets_the_csn_of_a_later_launch_on_the_same_visit() {
    let env = Env::start().await;
    let without = env
        .browser()
        .navigate(&env.launch_url("provider", &[("environment", "test")]))
        .await;
    assert_eq!(without.status, 200, "{}", without.body);
    // A foreign CSN on a fresh visit is refused too, and is not kept.
    let foreign = env
        .browser()
        .navigate(&env.launch_url(
            "provider",
            &[("sessionId", OTHER_CSN), ("environment", "test")],
        ))
        .await;
    assert!((400..500).contains(&foreign.status), "{}", foreign.body);
    assert_eq!(env.visit(&without.visit_id()).await.conference_id, None);
    let with_csn = provider_launch(&env, &env.browser()).await;
    assert_eq!(with_csn.visit_id(), without.visit_id());
    assert_eq!(env.graph.meeting_count(), 1);
    assert_eq!(
        env.visit(&with_csn.visit_id())
            .await
            .conference_id
            .as_deref(),
        Some("10000001234")
    );
}

#[tokio::test]
async fn an_edited_conference_id_makes_no_row_and_no_meeting_before_it_is_refused() {
    let env = Env::start().await;
    // Linked, so the launch would take the fast path if the key were trusted.
    provider_launch(&env, &env.browser()).await;
    let (visits, meetings, calls) = (
        visit_count(&env).await,
        env.graph.meeting_count(),
        env.graph.create_or_get_calls(),
    );
    // Another group visit's conference id, edited into the (unsigned) launch URL.
    let page = env
        .browser()
        .navigate(&env.launch_url(
            "provider",
            &[
                ("sessionId", "10000001234"),
                ("conferenceId", "g-another-group"),
                ("environment", "test"),
            ],
        ))
        .await;
    assert!((400..500).contains(&page.status), "{}", page.body);
    assert!(
        page.body.contains("match what the EHR says"),
        "{}",
        page.body
    );
    // Nothing was set up under it: the real group visit later gets its own organiser.
    assert_eq!(visit_count(&env).await, visits);
    assert_eq!(env.graph.meeting_count(), meetings);
    assert_eq!(env.graph.create_or_get_calls(), calls);
}
