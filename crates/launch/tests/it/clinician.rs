//! A clinician's launch: staff only, one meeting per appointment, the policy before any join
//! URL, the CSN as evidence and never as key, the Microsoft sign-in first when not linked.

use chrono::{TimeZone, Utc};
use visitbridge_launch_core::{
    ClinicianLaunch, ClinicianOutcome, LaunchCoreError, OpenedVisit, after_microsoft_sign_in,
    clinician_launch,
};
use visitbridge_smart::{EhrUser, LaunchContext};
use visitbridge_visit::{NotStaff, RecordContext, StaffRule, VisitError, VisitKey};

use crate::fakes::*;

const SCOPES: &[&str] = &["launch", "openid", "fhirUser", "user/Appointment.read"];

pub(crate) async fn launch_as(
    world: &World,
    user: &EhrUser,
    record: &RecordContext,
    context: &LaunchContext,
) -> Result<ClinicianOutcome, LaunchCoreError> {
    let scopes: Vec<String> = SCOPES.iter().map(|s| (*s).to_owned()).collect();
    clinician_launch(
        world.ports(),
        ClinicianLaunch {
            configuration: &world.configuration,
            issuer: &world.issuer,
            staff: &StaffRule::default(),
            user: Some(user),
            scopes: &scopes,
            record,
            context,
            directory: &world.ehr,
        },
    )
    .await
}

/// A linked clinician (`Practitioner/doc-1`) launches appointment 1 from its record.
pub(crate) async fn clinician_opens_visit(world: &World) -> OpenedVisit {
    match launch_as(
        world,
        &user("Practitioner/doc-1"),
        &record(Some(CSN)),
        &context("pat-1", Some("appt-1")),
    )
    .await
    .unwrap()
    {
        ClinicianOutcome::Meeting(opened) => *opened,
        other => panic!("expected the meeting, got {other:?}"),
    }
}

#[tokio::test]
async fn a_linked_clinician_gets_one_meeting_whose_policy_is_set_before_any_join_url() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    let opened = clinician_opens_visit(&world).await;

    assert_eq!(opened.clinician, CLINICIAN_OID);
    assert_eq!(
        world.graph.calls(),
        vec![
            GraphCall::CreateOrGet {
                organizer: CLINICIAN_OID.to_owned(),
                created: true
            },
            GraphCall::Patch {
                meeting: opened.meeting.id.as_str().to_owned(),
                policy: true
            },
        ],
        "createOrGet, then the policy PATCH, and no join URL yet"
    );
    let visits = world.visits().await;
    assert_eq!(visits.len(), 1);
    let row = &visits[0];
    assert_eq!(row.appointment_fhir_id.as_deref(), Some("appt-1"));
    assert_eq!(row.patient_fhir_id.as_deref(), Some("pat-1"));
    assert_eq!(row.practitioner_fhir_id.as_deref(), Some("doc-1"));
    assert_eq!(row.conference_id.as_deref(), Some(CSN), "attested CSN kept");
    assert_eq!(
        row.join_web_url.as_deref(),
        Some(opened.meeting.join_web_url.as_str())
    );
    assert_eq!(world.graph.subscribed(), vec![row.id.as_str().to_owned()]);
    // The appointment's times went into the same PATCH as the policy.
    assert_eq!(
        opened.meeting.end,
        Some(Utc.with_ymd_and_hms(2026, 3, 5, 14, 30, 0).unwrap())
    );

    let url = world.ports().prefetch_patient_url(&opened).await.unwrap();
    assert!(url.starts_with("https://visit.teams.microsoft.com/"));
    assert!(world.graph.unsafe_join_urls().is_empty());
}

#[tokio::test]
async fn relaunching_with_or_without_the_csn_reaches_the_same_visit_without_another_patch() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    let first = clinician_opens_visit(&world).await;
    let again = launch_as(
        &world,
        &user("Practitioner/doc-1"),
        &record(None),
        &context("pat-1", Some("appt-1")),
    )
    .await
    .unwrap();
    let ClinicianOutcome::Meeting(again) = again else {
        panic!("expected the meeting");
    };
    assert_eq!(again.visit.id, first.visit.id);
    assert_eq!(again.meeting.id, first.meeting.id);
    assert_eq!(world.visits().await.len(), 1);
    assert_eq!(world.graph.meeting_count(), 1);
    let patches = world
        .graph
        .calls()
        .into_iter()
        .filter(|c| matches!(c, GraphCall::Patch { .. }))
        .count();
    assert_eq!(
        patches, 1,
        "an existing meeting with the policy needs no PATCH"
    );
}

#[tokio::test]
async fn two_clinicians_launching_one_visit_at_once_share_the_first_organisers_meeting() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    world.link("doc-2", OTHER_OID).await;
    let record = record(Some(CSN));
    let context = context("pat-1", Some("appt-1"));
    let (doc1, doc2) = (user("Practitioner/doc-1"), user("Practitioner/doc-2"));
    let (a, b) = tokio::join!(
        launch_as(&world, &doc1, &record, &context),
        launch_as(&world, &doc2, &record, &context),
    );
    let (ClinicianOutcome::Meeting(a), ClinicianOutcome::Meeting(b)) = (a.unwrap(), b.unwrap())
    else {
        panic!("both get the meeting");
    };
    assert_eq!(a.visit.id, b.visit.id);
    assert_eq!(a.meeting.id, b.meeting.id);
    assert_eq!(world.graph.meeting_count(), 1);
    assert_eq!(world.visits().await.len(), 1);
    assert_eq!(a.visit.organizer_object_id, b.visit.organizer_object_id);
}

#[tokio::test]
async fn a_csn_of_another_visit_is_refused_and_no_join_url_exists() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    // The URL's sessionId is appointment 2's CSN; the token attests appointment 1.
    let refused = launch_as(
        &world,
        &user("Practitioner/doc-1"),
        &record(Some("10000009999")),
        &context("pat-1", Some("appt-1")),
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(LaunchCoreError::Visit(VisitError::ContextMismatch))
        ),
        "{refused:?}"
    );
    let visits = world.visits().await;
    assert_eq!(
        visits.len(),
        1,
        "the attested appointment's row was claimed"
    );
    for visit in visits {
        assert_eq!(visit.conference_id, None, "an unattested CSN is never kept");
        assert_eq!(visit.join_web_url, None, "no meeting was settled");
    }
    assert!(!world.graph.calls().iter().any(|c| matches!(
        c,
        GraphCall::Patch { .. } | GraphCall::PatientJoinUrl { .. }
    )));
}

#[tokio::test]
async fn a_patients_token_never_acts_as_staff() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    let refused = launch_as(
        &world,
        &user("Patient/pat-1"),
        &record(Some(CSN)),
        &context("pat-1", Some("appt-1")),
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(LaunchCoreError::NotStaff(NotStaff::NotStaffUser { .. }))
        ),
        "{refused:?}"
    );
    assert!(world.visits().await.is_empty());
    assert!(world.graph.calls().is_empty());
    assert_eq!(world.ehr.reads(), 0, "refused before any FHIR read");
}

#[tokio::test]
async fn an_unlinked_clinician_signs_in_to_microsoft_first_then_gets_the_meeting() {
    let world = World::new().await;
    let outcome = launch_as(
        &world,
        &user("Practitioner/doc-1"),
        &record(Some(CSN)),
        &context("pat-1", Some("appt-1")),
    )
    .await
    .unwrap();
    let ClinicianOutcome::MicrosoftSignIn(pending) = outcome else {
        panic!("expected the Microsoft sign-in first");
    };
    assert_eq!(pending.key, VisitKey::appointment("appt-1"));
    assert_eq!(pending.ehr_user_id.as_str(), "Practitioner/doc-1");
    assert_eq!(pending.facts.appointment.as_deref(), Some("appt-1"));
    assert!(
        world.visits().await.is_empty(),
        "nothing stored before the sign-in"
    );
    assert!(world.graph.calls().is_empty());

    world.link("doc-1", CLINICIAN_OID).await;
    // What survives the sign-in: ids only.
    let kept = visitbridge_launch_core::KeptFacts::from(&pending.facts);
    let opened = after_microsoft_sign_in(
        world.ports(),
        &world.configuration,
        &pending.key,
        kept.into(),
        CLINICIAN_OID,
    )
    .await
    .unwrap();
    assert_eq!(opened.clinician, CLINICIAN_OID);
    let visits = world.visits().await;
    assert_eq!(visits.len(), 1);
    assert_eq!(visits[0].appointment_fhir_id.as_deref(), Some("appt-1"));
    assert_eq!(world.graph.meeting_count(), 1);
}

#[tokio::test]
async fn a_group_visits_conference_is_attested_before_any_row_or_meeting() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    let unattested = RecordContext {
        conference_id: Some("CONF-NOT-OURS".to_owned()),
        ..RecordContext::default()
    };
    let refused = launch_as(
        &world,
        &user("Practitioner/doc-1"),
        &unattested,
        &context("pat-1", Some("appt-1")),
    )
    .await;
    assert!(matches!(
        refused,
        Err(LaunchCoreError::Visit(VisitError::ContextMismatch))
    ));
    assert!(
        world.visits().await.is_empty(),
        "no row under an unattested conference"
    );
    assert!(world.graph.calls().is_empty(), "no meeting under it either");
}
