//! A meeting's later calls and a replica's first event of a configuration: a call end keeps the
//! subscription and each call is reconciled after its end; an event of a configuration this
//! process never set up still gets its outbox rows and is written back.

use chrono::{Duration, Utc};
use visitbridge_approval::{ConfigurationId, Environment};
use visitbridge_store::{OutboxState, Visit, VisitEventKind, VisitId};
use visitbridge_testkit::{
    entra::EntraUser,
    graph::{attendance_report, call_event, plain_notification},
};

use crate::harness::{CLIENT_STATE, Env, Options, approve, clinician_joined, through_subscription};

/// GETs of the meeting's attendance reports.
async fn report_reads(env: &Env, meeting: &str) -> usize {
    env.graph_requests(
        "GET",
        &format!("/onlineMeetings/{meeting}/attendanceReports"),
    )
    .await
}

#[tokio::test]
async fn a_second_call_in_the_meeting_is_still_heard_and_reconciled_after_its_end() {
    let env = Env::start_with(Options {
        reconcile_delay_seconds: 3600,
        ..Options::default()
    })
    .await;
    let (visit, stored) = env.subscribed_visit().await;
    let id = stored.subscription_id.as_str().to_owned();
    let meeting = visit.graph_meeting_id.clone().unwrap();

    // The first call: started, and ended before anyone was admitted.
    for payload in [
        call_event("CallStarted", "2026-03-05T18:00:00Z"),
        call_event("CallEnded", "2026-03-05T18:02:00Z"),
    ] {
        assert_eq!(
            env.post_notification(&through_subscription(&id, payload))
                .await,
            202
        );
    }
    let first = env
        .store
        .reconciliation_of(&visit.id)
        .await
        .unwrap()
        .expect("scheduled at the first end");

    // The second call of the same meeting, through the same subscription.
    for payload in [
        call_event("CallStarted", "2026-03-05T18:05:00Z"),
        clinician_joined("2026-03-05T18:05:03Z"),
        call_event("CallEnded", "2026-03-05T18:35:00Z"),
    ] {
        assert_eq!(
            env.post_notification(&through_subscription(&id, payload))
                .await,
            202
        );
    }
    let kinds: Vec<VisitEventKind> = env
        .store
        .events_for_visit(&visit.id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            VisitEventKind::CallStarted,
            VisitEventKind::CallEnded,
            VisitEventKind::CallStarted,
            VisitEventKind::ParticipantJoined,
            VisitEventKind::CallEnded,
        ],
        "the second call's events are mapped to the visit"
    );
    // Rescheduled by the last end.
    let last = env
        .store
        .reconciliation_of(&visit.id)
        .await
        .unwrap()
        .expect("scheduled at the last end");
    assert!(last.due_at >= first.due_at, "{first:?} then {last:?}");
    assert!(last.due_at > Utc::now() + Duration::minutes(59));
    assert_eq!(last.attempts, 0);

    env.wait_nothing_pending("written back").await;
    // The subscription was never removed: not at Graph, not in the store.
    assert!(env.graph.deleted().is_empty(), "{:?}", env.graph.deleted());
    assert!(env.graph.subscription(&id).is_some());
    assert_eq!(
        env.store
            .subscription_of(&visit.id)
            .await
            .unwrap()
            .map(|s| s.subscription_id),
        Some(stored.subscription_id.clone())
    );

    // The delay after the last end passes: the report (of both calls) is read and reconciled.
    env.graph.add_attendance_report(
        &meeting,
        attendance_report(
            "report-2",
            &EntraUser::default().oid,
            "2026-03-05T18:05:00Z",
            "2026-03-05T18:35:00Z",
        ),
    );
    assert_eq!(
        report_reads(&env, &meeting).await,
        0,
        "not before the delay"
    );
    env.reconcile_now(&visit.id).await;
    env.wait_reconciled("reconciled after the last end", &visit.id)
        .await;
    assert!(report_reads(&env, &meeting).await > 0);
}

#[tokio::test]
async fn an_event_of_a_configuration_this_process_never_set_up_is_written_back() {
    let mut env = Env::start().await;
    env.restart().await;
    // Approved (in the portal) after this process started, and launched on another replica:
    // this process has never set its sinks.
    let second = ConfigurationId::new("cfg-second").unwrap();
    approve(
        &*env.store,
        second.as_str(),
        &env.smart.fhir_base(),
        Environment::Production,
    )
    .await;
    let join_url = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_c2Vjb25k%40thread.v2/0";
    let visit = env
        .store
        .upsert_visit(&Visit {
            id: VisitId::new("visit-second").unwrap(),
            configuration_id: second.clone(),
            external_meeting_id: "vb-second".into(),
            graph_meeting_id: Some("MSoyc2Vjb25k".into()),
            join_web_url: Some(join_url.into()),
            organizer_object_id: None,
            practitioner_fhir_id: None,
            appointment_fhir_id: None,
            encounter_fhir_id: None,
            patient_fhir_id: None,
            conference_id: Some("10000001234".into()),
            created_at: Utc::now(),
            ended_at: None,
            patient_key: None,
            appointment_key: None,
            department: None,
        })
        .await
        .unwrap();

    let body = plain_notification(
        "sub-second",
        CLIENT_STATE,
        join_url,
        clinician_joined("2026-03-05T18:00:01Z"),
    );
    assert_eq!(env.post_notification(&body).await, 202);
    let events = env.store.events_for_visit(&visit.id).await.unwrap();
    assert_eq!(events.len(), 1);
    let rows = env
        .store
        .outbox_for_event(&events[0].event_id)
        .await
        .unwrap();
    let mut sinks: Vec<&str> = rows.iter().map(|r| r.sink.as_str()).collect();
    sinks.sort();
    assert_eq!(
        sinks,
        ["epic-connection-status", "fhir-audit-event"],
        "enqueued for the configuration's sinks"
    );
    env.eventually("delivered", async || {
        env.store
            .outbox_for_event(&events[0].event_id)
            .await
            .unwrap()
            .iter()
            .all(|r| r.state == OutboxState::Delivered)
    })
    .await;
    assert_eq!(env.epic.accepted().len(), 1);
    assert_eq!(env.fhir.audit_events().len(), 1);
}
