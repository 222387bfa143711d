//! What must survive a restart: the visit's Graph subscription (stored at provisioning, mapped,
//! renewed and removed by a new run), the patient's join URL (served from the store without a
//! Graph call), and the reconciliation with the attendance report scheduled at the call's end
//! (which records what notifications missed, once).

use chrono::{Duration, Utc};
use serde_json::Value;
use visitbridge_store::{EventOrigin, ParticipantClass, Visit, VisitEventKind};
use visitbridge_testkit::{
    entra::EntraUser,
    graph::{attendance_report, call_event, plain_notification},
};

use crate::{
    harness::{CLIENT_STATE, Env, Options, clinician_joined, logs, through_subscription},
    provider::provider_launch,
};

/// A notification naming the visit's meeting by its join URL.
fn about(visit: &Visit, payload: Value) -> Value {
    plain_notification(
        "sub-other",
        CLIENT_STATE,
        visit.join_web_url.as_deref().unwrap(),
        payload,
    )
}

#[tokio::test]
async fn a_subscription_outlives_a_restart_maps_notifications_is_renewed_and_outlives_a_call_end() {
    let mut env = Env::start().await;
    let (visit, stored) = env.subscribed_visit().await;

    // Stored as Graph made it: the meeting's subscription, with Graph's expiry.
    let id = stored.subscription_id.as_str().to_owned();
    let at_graph = env.graph.subscription(&id).expect("live at graph");
    assert!(
        at_graph["resource"]
            .as_str()
            .unwrap()
            .contains(visit.join_web_url.as_deref().unwrap())
    );
    let graph_expiry: chrono::DateTime<Utc> = at_graph["expirationDateTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((stored.expires_at - graph_expiry).abs() < Duration::seconds(1));
    assert_eq!(env.graph.subscription_requests().len(), 1);

    // While the service is down, the subscription comes close to its end.
    env.stop();
    env.subscription_ends_soon(&visit.id, &stored).await;
    env.resume().await;

    // The new run renews it (the same subscription, not a new one) and keeps the new expiry.
    env.wait_subscription_renewed(&visit.id).await;
    assert_eq!(
        env.graph_requests("PATCH", &format!("/subscriptions/{id}"))
            .await,
        1
    );
    assert_eq!(env.graph.subscription_requests().len(), 1);

    // A notification that names the meeting only through its subscription reaches the visit.
    let joined = through_subscription(&id, clinician_joined("2026-03-05T18:00:01Z"));
    assert_eq!(env.post_notification(&joined).await, 202);
    let events = env.store.events_for_visit(&visit.id).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, VisitEventKind::ParticipantJoined);
    assert_eq!(
        events[0].participant.as_ref().map(|p| p.id.as_str()),
        Some(EntraUser::default().oid.as_str())
    );

    // The call ends: the subscription stays, still mapped (another call of the meeting may
    // follow; the upkeep's age rule removes it).
    let ended = through_subscription(&id, call_event("CallEnded", "2026-03-05T18:30:00Z"));
    assert_eq!(env.post_notification(&ended).await, 202);
    env.wait_nothing_pending("the call end written back").await;
    assert!(env.graph.deleted().is_empty());
    assert!(env.graph.subscription(&id).is_some());
    assert!(
        env.store
            .subscription_of(&visit.id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        env.store
            .visit_by_subscription(&stored.subscription_id)
            .await
            .unwrap()
            .map(|v| v.id),
        Some(visit.id.clone())
    );
}

#[tokio::test]
async fn the_patient_join_url_is_served_from_the_store_after_a_restart() {
    let mut env = Env::start().await;
    let page = provider_launch(&env, &env.browser()).await;
    let visit = env.visit(&page.visit_id()).await;
    // Fetched after the clinician's page was answered, and kept on the visit.
    env.eventually("the patient url kept", async || {
        env.store
            .patient_join_url(&visit.id)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let kept = env
        .store
        .patient_join_url(&visit.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        kept.starts_with("https://visit.teams.microsoft.com/webrtc-svc/api/route?"),
        "{kept}"
    );
    assert_eq!(
        env.graph_requests("GET", "getVirtualAppointmentJoinWebUrl")
            .await,
        1
    );

    env.restart().await;
    let meeting_calls = meeting_requests(&env).await;
    let patient = env
        .browser()
        .navigate(&env.launch_url("patient", &Env::visit_context()))
        .await;
    assert_eq!(patient.teams.as_deref(), Some(kept.as_str()), "{patient:?}");
    assert_eq!(
        meeting_requests(&env).await,
        meeting_calls,
        "no meeting call for the patient after the restart"
    );
    assert_eq!(env.graph.create_or_get_calls(), 1);
}

/// Graph requests about meetings (createOrGet, policy, join URLs, reports), any method.
async fn meeting_requests(env: &Env) -> usize {
    env.ms
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().contains("/onlineMeetings"))
        .count()
}

#[tokio::test]
async fn a_call_end_reconciles_missed_joins_and_leaves_from_the_attendance_report_once() {
    // Reports appear some time after the call: the schedule must survive a restart meanwhile.
    let mut env = Env::start_with(Options {
        reconcile_delay_seconds: 3600,
        ..Options::default()
    })
    .await;
    let (visit, _) = env.subscribed_visit().await;
    let oid = EntraUser::default().oid;
    env.graph.add_attendance_report(
        visit.graph_meeting_id.as_deref().unwrap(),
        attendance_report(
            "report-1",
            &oid,
            "2026-03-05T18:00:00Z",
            "2026-03-05T18:30:00Z",
        ),
    );

    // Live: the call starts and the clinician joins; the patient's join and every leave are
    // missed (a notification outage).
    let started = about(&visit, call_event("CallStarted", "2026-03-05T18:00:00Z"));
    assert_eq!(env.post_notification(&started).await, 202);
    let joined = about(&visit, clinician_joined("2026-03-05T18:00:01Z"));
    assert_eq!(env.post_notification(&joined).await, 202);
    let ended = about(&visit, call_event("CallEnded", "2026-03-05T18:30:00Z"));
    assert_eq!(env.post_notification(&ended).await, 202);
    assert_eq!(
        env.store.events_for_visit(&visit.id).await.unwrap().len(),
        3
    );
    // Scheduled (after the delay) before Graph got its answer.
    let scheduled = env.store.reconciliation_of(&visit.id).await.unwrap();
    assert!(
        scheduled.is_some_and(|r| r.due_at > Utc::now() + Duration::minutes(59)),
        "{scheduled:?}"
    );
    // (Live events delivered first: a delivery cut short by the restart would only come back
    // when its lease runs out.)
    env.wait_nothing_pending("live events written back").await;
    env.restart().await;
    assert_eq!(
        env.store.reconciliation_of(&visit.id).await.unwrap(),
        scheduled,
        "the schedule outlives the restart"
    );
    // The delay passes.
    env.reconcile_now(&visit.id).await;

    env.wait_reconciled("reconciled", &visit.id).await;
    let events = env.store.events_for_visit(&visit.id).await.unwrap();
    let mut reconciled: Vec<(VisitEventKind, ParticipantClass, String)> = events
        .iter()
        .filter(|e| e.origin == EventOrigin::AttendanceReport)
        .map(|e| {
            let p = e.participant.as_ref().expect("a participant event");
            (e.kind, p.class, p.id.clone())
        })
        .collect();
    reconciled.sort();
    assert_eq!(
        reconciled,
        [
            (
                VisitEventKind::ParticipantJoined,
                ParticipantClass::Anonymous,
                "report-1-guest".to_owned()
            ),
            (
                VisitEventKind::ParticipantLeft,
                ParticipantClass::OrganizationUser,
                oid.clone()
            ),
            (
                VisitEventKind::ParticipantLeft,
                ParticipantClass::Anonymous,
                "report-1-guest".to_owned()
            ),
        ],
        "the missed join and leaves, and nothing seen live again: {events:?}"
    );
    assert_eq!(events.len(), 6);
    // Written back like live events.
    env.eventually("written back", async || {
        env.store.outbox_depth().await.unwrap().pending == 0 && env.fhir.audit_events().len() == 6
    })
    .await;
    assert!(logs().contains("reconciled the visit with its attendance report"));

    // Graph delivers the call end again, and its delay passes: reconciled again, nothing new
    // recorded or sent.
    let reads = env.graph_requests("GET", "/attendanceReports").await;
    assert_eq!(env.post_notification(&ended).await, 202);
    assert!(
        env.store
            .reconciliation_of(&visit.id)
            .await
            .unwrap()
            .is_some()
    );
    env.reconcile_now(&visit.id).await;
    env.wait_reconciled_and("reconciled again", &visit.id, async || {
        env.graph_requests("GET", "/attendanceReports").await > reads
    })
    .await;
    assert_eq!(
        env.store.events_for_visit(&visit.id).await.unwrap().len(),
        6
    );
    env.wait_nothing_pending("nothing pending").await;
    assert_eq!(env.fhir.audit_events().len(), 6);
}

#[tokio::test]
async fn without_a_report_reconciliation_gives_up_after_its_attempts() {
    let env = Env::start_with(Options {
        reconcile_max_attempts: 3,
        ..Options::default()
    })
    .await;
    let (visit, _) = env.subscribed_visit().await;
    let ended = about(&visit, call_event("CallEnded", "2026-03-05T18:30:00Z"));
    assert_eq!(env.post_notification(&ended).await, 202);
    env.wait_reconciled("given up", &visit.id).await;
    let path = format!(
        "/onlineMeetings/{}/attendanceReports",
        visit.graph_meeting_id.as_deref().unwrap()
    );
    assert_eq!(
        env.graph_requests("GET", &path).await,
        3,
        "one read per attempt"
    );
    assert_eq!(
        env.store.events_for_visit(&visit.id).await.unwrap().len(),
        1,
        "only the call end"
    );
    assert!(logs().contains(&format!("visit_id={}", visit.id)));
    assert!(logs().contains("giving up reconciling the visit with its attendance report"));
}
