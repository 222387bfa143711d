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
