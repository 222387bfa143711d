//! The retention of patient references: past it, a visit keeps only the keyed hashes of its
//! patient and appointment ids, which still tell its patient from another's.

use std::{sync::Arc, time::Duration};

use visitbridge_launch_core::{Clock, LaunchCoreError, PatientOutcome, Retention};
use visitbridge_store::{AuditStore, Visit, VisitId, VisitRepo};
use visitbridge_visit::VisitError;

use crate::{clinician::clinician_opens_visit, fakes::*, patient::patient_launches};

#[tokio::test]
async fn past_retention_a_visit_keeps_only_keys_which_still_tell_its_patient_from_another() {
    let world = World::new().await;
    world.link("doc-1", CLINICIAN_OID).await;
    clinician_opens_visit(&world).await;
    let keys = world.reference_keys.clone();
    let [visit] = world.visits().await.try_into().unwrap();
    let cfg = world.configuration.as_str();
    assert_eq!(visit.patient_fhir_id.as_deref(), Some("pat-1"));
    assert_eq!(
        visit.patient_key.as_deref(),
        Some(keys.patient(cfg, "pat-1").as_str()),
        "a launch keeps the keyed hash with the clear id"
    );
    assert_eq!(
        visit.appointment_key.as_deref(),
        Some(keys.appointment(cfg, "appt-1").as_str())
    );
    // A row from before the hashes existed: clear ids only.
    world
        .store
        .upsert_visit(&Visit {
            id: VisitId::new("old-row").unwrap(),
            external_meeting_id: "vb-old-row".into(),
            graph_meeting_id: None,
            join_web_url: None,
            patient_fhir_id: Some("pat-9".into()),
            appointment_fhir_id: Some("appt-9".into()),
            patient_key: None,
            appointment_key: None,
            department: None,
            ..visit.clone()
        })
        .await
        .unwrap();

    let clock = Arc::new(MovingClock::at(FixedClock.now()));
    let retention = Retention::new(
        Arc::clone(&world.store) as Arc<dyn AuditStore>,
        world.reference_keys.clone(),
        Duration::from_secs(24 * 3600),
        Duration::from_secs(3600),
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let early = retention.run().await.unwrap();
    assert_eq!(early.keyed, 1, "the old row is keyed at once");
    assert_eq!(early.purged.visits, 0, "within retention nothing is purged");
    // No call end was heard: kept while the meeting is watched, then for the retention.
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    assert_eq!(retention.run().await.unwrap().purged.visits, 0);
    clock.advance(Duration::from_secs(3600));
    let late = retention.run().await.unwrap();
    assert_eq!((late.keyed, late.purged.visits), (0, 2));

    let visits = world.visits().await;
    for v in &visits {
        assert_eq!(
            (
                &v.patient_fhir_id,
                &v.appointment_fhir_id,
                &v.encounter_fhir_id
            ),
            (&None, &None, &None),
            "{}",
            v.id
        );
    }
    let old = visits.iter().find(|v| v.id.as_str() == "old-row").unwrap();
    assert_eq!(
        old.patient_key.as_deref(),
        Some(keys.patient(cfg, "pat-9").as_str())
    );

    // The visit's own patient still reaches the meeting without a FHIR read; another patient's
    // token is still refused.
    let reads = world.ehr.reads();
    let outcome = patient_launches(&world, &context("pat-1", Some("appt-1")))
        .await
        .unwrap();
    assert!(matches!(outcome, PatientOutcome::Meeting(_)), "{outcome:?}");
    assert_eq!(world.ehr.reads(), reads, "the keys are the attested ids");
    let refused = patient_launches(&world, &context("pat-2", Some("appt-1"))).await;
    assert!(
        matches!(
            refused,
            Err(LaunchCoreError::Visit(VisitError::ContextMismatch))
        ),
        "{refused:?}"
    );
}
