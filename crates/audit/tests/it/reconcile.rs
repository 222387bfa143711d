//! Reconciliation from attendance reports adds what notifications missed, once.

use std::time::Duration;

use visitbridge_audit::VisitStatus;
use visitbridge_graph::{EventKind, EventSource, MeetingId, MeetingRef, ParticipantEvent};
use visitbridge_store::AuditRepo;

use crate::*;

fn reported(kind: EventKind, seconds: i64, who: Option<ParticipantKind>) -> ParticipantEvent {
    ParticipantEvent {
        kind,
        at: at(seconds),
        meeting: MeetingRef::MeetingId(MeetingId::new(
            "MSo1N2Y5ZGFjYy03MWJmLTQ3NDMtYjQxMy01M2EdFGkdRWHJlQ",
        )),
        participant: who.map(|kind| Participant {
            participant_id: None,
            kind,
        }),
        source: EventSource::AttendanceReport,
    }
}

#[tokio::test]
async fn attendance_events_already_seen_live_are_skipped_and_the_rest_recorded_once() {
    let env = Env::new(Sinks::Epic).await;
    let recorder = env.recorder();
    // Live: the clinician and the patient joined; the leaves were missed (notification outage).
    recorder
        .record_events(&[
            person(EventKind::ParticipantJoined, 0, staff(ORGANIZER)),
            person(EventKind::ParticipantJoined, 60, guest("8:acs:patient")),
        ])
        .await
        .unwrap();
    // The report times things a little differently and names the guest by its record id.
    let anonymous = || {
        Some(ParticipantKind::Anonymous {
            opaque_id: "report-record-2".into(),
        })
    };
    let report = [
        reported(EventKind::CallStarted, 0, None),
        reported(EventKind::ParticipantJoined, 20, Some(staff(ORGANIZER))),
        reported(EventKind::ParticipantJoined, 65, anonymous()),
        reported(EventKind::ParticipantLeft, 600, anonymous()),
        reported(EventKind::ParticipantLeft, 610, Some(staff(ORGANIZER))),
        reported(EventKind::CallEnded, 615, None),
    ];
    let tolerance = Duration::from_secs(120);
    let summary = recorder
        .reconcile(&env.visit, &report, tolerance)
        .await
        .unwrap();
    assert_eq!((summary.already_seen, summary.recorded), (2, 4));
    assert_eq!(
        env.store
            .events_for_visit(&env.visit.id)
            .await
            .unwrap()
            .len(),
        6
    );
    // Running it again adds nothing.
    let again = recorder
        .reconcile(&env.visit, &report, tolerance)
        .await
        .unwrap();
    assert_eq!((again.already_seen, again.recorded), (6, 0));

    let timeline = recorder.timeline(&env.visit.id).await.unwrap();
    assert_eq!(timeline.status, VisitStatus::Completed);
    assert_eq!(timeline.start, Some(at(60)));
    assert_eq!(timeline.call_ended_at, Some(at(615)));
}

/// The sequence tried by hand: patient 1 in the meeting; the service is down while patient 1
/// leaves (Graph gives up delivering); patient 2 joins and leaves (delivered); the call ends and
/// the report — which names guests by its own record ids — is read. Patient 1's leave must not
/// be matched against patient 2's stored leave: the EHR must hear patient 1 disconnected.
#[tokio::test]
async fn a_missed_leave_is_matched_to_its_own_guest_not_to_another_guests_leave() {
    let env = Env::new(Sinks::Epic).await;
    let recorder = env.recorder();
    recorder
        .record_events(&[
            person(EventKind::ParticipantJoined, 10, staff(ORGANIZER)),
            person(EventKind::ParticipantJoined, 60, guest("8:acs:patient-1")),
            // (patient 1 leaves at 250: missed)
            person(EventKind::ParticipantJoined, 200, guest("8:acs:patient-2")),
            person(EventKind::ParticipantLeft, 300, guest("8:acs:patient-2")),
            person(EventKind::ParticipantLeft, 900, staff(ORGANIZER)),
        ])
        .await
        .unwrap();
    let record = |id: &str| {
        Some(ParticipantKind::Anonymous {
            opaque_id: id.into(),
        })
    };
    let report = [
        reported(EventKind::CallStarted, 0, None),
        reported(EventKind::ParticipantJoined, 12, Some(staff(ORGANIZER))),
        reported(EventKind::ParticipantJoined, 62, record("report-record-1")),
        reported(EventKind::ParticipantJoined, 205, record("report-record-2")),
        reported(EventKind::ParticipantLeft, 250, record("report-record-1")),
        reported(EventKind::ParticipantLeft, 301, record("report-record-2")),
        reported(EventKind::ParticipantLeft, 902, Some(staff(ORGANIZER))),
        reported(EventKind::CallEnded, 905, None),
    ];
    let summary = recorder
        .reconcile(&env.visit, &report, Duration::from_secs(120))
        .await
        .unwrap();
    // New: the call's start and end, and patient 1's leave; the rest was seen live.
    assert_eq!(
        (summary.already_seen, summary.recorded),
        (5, 3),
        "{summary:?}"
    );
    let stored = env.store.events_for_visit(&env.visit.id).await.unwrap();
    let leave = stored
        .iter()
        .find(|e| {
            e.kind == visitbridge_store::VisitEventKind::ParticipantLeft && e.occurred_at == at(250)
        })
        .expect("patient 1's leave recorded");
    assert_eq!(
        leave.participant.as_ref().map(|p| p.id.as_str()),
        Some("8:acs:patient-1"),
        "recorded about the guest the EHR heard connected"
    );

    // What the EHR ends up showing: everyone disconnected, patient 1 included.
    drain(&env.worker()).await;
    let calls = env.epic.accepted();
    for who in ["8:acs:patient-1", "8:acs:patient-2"] {
        let last = calls
            .iter()
            .rfind(|c| c.external_id.as_deref() == Some(who))
            .and_then(|c| c.connection_status.clone());
        assert_eq!(
            last.as_deref(),
            Some("TEST-DISCONNECTED"),
            "{who}: {calls:?}"
        );
    }
}

/// A reported guest that no stored guest's identity matches, and whose every near stored guest
/// is already someone else, is someone the notifications never saw: its events are new, not
/// folded into another guest's by role.
#[tokio::test]
async fn a_guest_only_the_report_saw_is_recorded_as_its_own_participant() {
    let env = Env::new(Sinks::Epic).await;
    let recorder = env.recorder();
    recorder
        .record_events(&[
            person(EventKind::ParticipantJoined, 60, guest("8:acs:patient-1")),
            person(EventKind::ParticipantLeft, 600, guest("8:acs:patient-1")),
        ])
        .await
        .unwrap();
    let other = || {
        Some(ParticipantKind::Anonymous {
            opaque_id: "report-record-9".into(),
        })
    };
    // A phone dial-in (a relative) over the same minutes, missed live; the report lists it just
    // before the patient.
    let report = [
        reported(EventKind::ParticipantJoined, 55, other()),
        reported(
            EventKind::ParticipantJoined,
            61,
            Some(guest("8:acs:patient-1")),
        ),
        reported(EventKind::ParticipantLeft, 590, other()),
        reported(
            EventKind::ParticipantLeft,
            601,
            Some(guest("8:acs:patient-1")),
        ),
    ];
    let summary = recorder
        .reconcile(&env.visit, &report, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!((summary.already_seen, summary.recorded), (2, 2));
    let stored = env.store.events_for_visit(&env.visit.id).await.unwrap();
    let ids: std::collections::BTreeSet<&str> = stored
        .iter()
        .filter_map(|e| e.participant.as_ref().map(|p| p.id.as_str()))
        .collect();
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        ["8:acs:patient-1", "report-record-9"]
    );
}
