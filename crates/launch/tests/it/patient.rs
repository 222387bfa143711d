//! The patient's ways in: to the meeting only once its policy is set; a wait when no clinician
//! is linked; another patient's token never reaches the visit.

use chrono::Duration;
use visitbridge_launch_core::Clock;
use visitbridge_launch_core::{
    LaunchCoreError, PatientLaunch, PatientOutcome, device_test, patient_launch, patient_link,
    patient_waiting,
};
use visitbridge_smart::LaunchContext;
use visitbridge_store::VisitRepo;
use visitbridge_visit::{LinkError, PatientLink, VisitError};

use crate::{clinician::clinician_opens_visit, fakes::*};

pub(crate) async fn patient_launches(
    world: &World,
    context: &LaunchContext,
) -> Result<PatientOutcome, LaunchCoreError> {
    patient_launch(
        world.ports(),
        PatientLaunch {
            configuration: &world.configuration,
            issuer: &world.issuer,
            record: &record(Some(CSN)),
            context,
            directory: &world.ehr,
        },
    )
    .await
}

#[tokio::test]
async fn after_the_clinician_the_patient_goes_to_the_meeting_without_a_fhir_read() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    clinician_opens_visit(&world).await;
    let reads = world.ehr.reads();
    let outcome = patient_launches(&world, &context("pat-1", Some("appt-1")))
        .await
        .unwrap();
    let PatientOutcome::Meeting(url) = outcome else {
        panic!("expected the meeting, got {outcome:?}");
    };
    assert!(url.starts_with("https://visit.teams.microsoft.com/"));
    assert_eq!(
        world.ehr.reads(),
        reads,
        "the stored visit is the attested one"
    );
    assert!(world.graph.unsafe_join_urls().is_empty());
    // Kept on the row: the next patient needs no Graph call.
    let calls = world.graph.calls().len();
    let again = patient_launches(&world, &context("pat-1", Some("appt-1")))
        .await
        .unwrap();
    assert_eq!(again, PatientOutcome::Meeting(url));
    assert_eq!(world.graph.calls().len(), calls);
}

#[tokio::test]
async fn before_any_linked_clinician_the_patient_waits_and_then_gets_the_meeting() {
    let world = World::new().await;
    let outcome = patient_launches(&world, &context("pat-1", Some("appt-1")))
        .await
        .unwrap();
    let PatientOutcome::Wait {
        visit,
        practitioners,
        issuer,
    } = outcome
    else {
        panic!("expected a wait, got {outcome:?}");
    };
    assert_eq!(practitioners, vec!["doc-1".to_owned()]);
    assert_eq!(
        world.graph.meeting_count(),
        0,
        "no meeting without an organiser"
    );

    let still = patient_waiting(world.ports(), &visit, &practitioners, issuer.as_ref())
        .await
        .unwrap();
    assert_eq!(still, None);

    world.link("doc-1", CLINICIAN_OID).await;
    let url = patient_waiting(world.ports(), &visit, &practitioners, issuer.as_ref())
        .await
        .unwrap()
        .expect("the meeting, under the linked practitioner");
    assert!(url.starts_with("https://"));
    assert_eq!(
        world.graph.calls()[0],
        GraphCall::CreateOrGet {
            organizer: CLINICIAN_OID.to_owned(),
            created: true
        }
    );
    assert!(
        world.graph.unsafe_join_urls().is_empty(),
        "the policy was set before the join URL"
    );
}

#[tokio::test]
async fn another_patients_token_does_not_reach_the_visit() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    clinician_opens_visit(&world).await;
    let refused = patient_launches(&world, &context("pat-2", Some("appt-1"))).await;
    assert!(
        matches!(
            refused,
            Err(LaunchCoreError::Visit(VisitError::ContextMismatch))
        ),
        "{refused:?}"
    );
    assert!(
        !world
            .graph
            .calls()
            .iter()
            .any(|c| matches!(c, GraphCall::PatientJoinUrl { .. }))
    );
}

#[tokio::test]
async fn a_join_url_that_is_not_https_is_never_handed_out() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    clinician_opens_visit(&world).await;
    world.graph.answer_patient_url("http://teams.example/plain");
    let refused = patient_launches(&world, &context("pat-1", Some("appt-1"))).await;
    assert!(
        matches!(refused, Err(LaunchCoreError::UnsafeJoinUrl)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_signed_link_leads_to_the_meeting_and_an_altered_one_is_refused() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    let opened = clinician_opens_visit(&world).await;
    let link = PatientLink {
        configuration_id: world.configuration.as_str().to_owned(),
        external_meeting_id: opened.visit.external_meeting_id.clone(),
        expires_at: FixedClock.now() + Duration::hours(2),
    };
    let token = link.sign(&world.secret);
    let outcome = patient_link(world.ports(), &token).await.unwrap();
    assert!(matches!(outcome, PatientOutcome::Meeting(url) if url.starts_with("https://")));

    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let refused = patient_link(world.ports(), &String::from_utf8(altered).unwrap()).await;
    assert!(matches!(
        refused,
        Err(LaunchCoreError::Link(LinkError::Invalid))
    ));

    let expired = PatientLink {
        expires_at: FixedClock.now() - Duration::minutes(1),
        ..link
    };
    let refused = patient_link(world.ports(), &expired.sign(&world.secret)).await;
    assert!(matches!(
        refused,
        Err(LaunchCoreError::Link(LinkError::Expired))
    ));
}

/// The device test's lobby for `patient`'s token of appointment 1.
async fn device_test_lobby(world: &World, patient: &str) -> Option<String> {
    device_test(
        world.ports(),
        &world.configuration,
        &record(Some(CSN)),
        &context(patient, Some("appt-1")),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_device_test_shows_the_lobby_of_the_patients_own_visit_only() {
    let world = World::new().await;
    assert_eq!(
        device_test_lobby(&world, "pat-1").await,
        None,
        "no meeting yet: instructions"
    );
    world.link("doc-1", CLINICIAN_OID).await;
    clinician_opens_visit(&world).await;
    let lobby = device_test_lobby(&world, "pat-1").await;
    assert!(lobby.is_some_and(|url| url.starts_with("https://")));
    assert_eq!(
        device_test_lobby(&world, "pat-2").await,
        None,
        "another patient's token sees no lobby"
    );
}

#[tokio::test]
async fn without_microsoft_a_link_is_checked_first_and_a_visit_without_organiser_waits() {
    let world = World::new().await;
    let without_microsoft = visitbridge_launch_core::Ports {
        meetings: None,
        ..world.ports()
    };
    let forged = patient_link(without_microsoft, "not-a-link").await;
    assert!(matches!(
        forged,
        Err(LaunchCoreError::Link(LinkError::Invalid))
    ));

    // A visit row without organiser (its patient launched before any clinician was linked).
    let PatientOutcome::Wait { visit, .. } =
        patient_launches(&world, &context("pat-1", Some("appt-1")))
            .await
            .unwrap()
    else {
        panic!("expected a wait");
    };
    let row = world.store.get_visit(&visit).await.unwrap().unwrap();
    let token = PatientLink {
        configuration_id: world.configuration.as_str().to_owned(),
        external_meeting_id: row.external_meeting_id,
        expires_at: FixedClock.now() + Duration::hours(1),
    }
    .sign(&world.secret);
    let outcome = patient_link(without_microsoft, &token).await.unwrap();
    assert!(
        matches!(outcome, PatientOutcome::Wait { .. }),
        "{outcome:?}"
    );

    world.link("doc-1", CLINICIAN_OID).await;
    let refused = patient_waiting(
        without_microsoft,
        &visit,
        &["doc-1".to_owned()],
        Some(&world.issuer),
    )
    .await;
    assert!(matches!(
        refused,
        Err(LaunchCoreError::MeetingsNotConfigured)
    ));
}
