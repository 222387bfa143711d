//! Attendance reports: paging, expansion, intervals into events, limits.

use serde_json::json;
use visitbridge_graph::{
    EventKind, EventSource, GraphError, MeetingId, ParticipantKind, UserObjectId,
};
use visitbridge_testkit::{fixtures::PHI_PROBES, graph::attendance_report};
use wiremock::{Mock, ResponseTemplate, matchers::path_regex};

use crate::{ORGANIZER, visit, world, world_with};

#[tokio::test]
async fn reports_are_paged_expanded_and_turned_into_sorted_events() {
    let w = world().await;
    let meeting = w
        .client
        .provision_meeting(&visit("csn-1"))
        .await
        .expect("meeting");
    let id = meeting.meeting_id.as_str();
    w.graph.add_attendance_report(
        id,
        attendance_report(
            "r1",
            "oid-staff",
            "2026-03-05T18:00:00Z",
            "2026-03-05T18:20:00Z",
        ),
    );
    w.graph.add_attendance_report(
        id,
        attendance_report(
            "r2",
            "oid-staff",
            "2026-03-05T19:00:00Z",
            "2026-03-05T19:10:00Z",
        ),
    );
    w.graph.add_attendance_report(
        id,
        attendance_report(
            "r3",
            "oid-staff",
            "2026-03-05T20:00:00Z",
            "2026-03-05T20:10:00Z",
        ),
    );
    let organizer = UserObjectId::new(ORGANIZER);
    let ids = w
        .client
        .attendance_report_ids(&organizer, &meeting.meeting_id)
        .await
        .expect("listed");
    assert_eq!(ids, ["r1", "r2", "r3"], "three pages of one report each");
    let events = w
        .client
        .attendance_events(&organizer, &meeting.meeting_id)
        .await
        .expect("events");
    // Per report: call started/ended, and a join and a leave for each of two people.
    assert_eq!(events.len(), 3 * 6);
    assert!(
        events.windows(2).all(|p| p[0].at <= p[1].at),
        "sorted by time"
    );
    assert!(
        events
            .iter()
            .all(|e| e.source == EventSource::AttendanceReport)
    );
    assert_eq!(events[0].kind, EventKind::CallStarted);
    let kinds: Vec<_> = events
        .iter()
        .filter_map(|e| e.participant.as_ref().map(|p| p.kind.clone()))
        .collect();
    assert!(kinds.contains(&ParticipantKind::OrganizationUser {
        object_id: UserObjectId::new("oid-staff"),
        tenant_id: Some(visitbridge_testkit::entra::TENANT_ID.into()),
    }));
    assert!(kinds.contains(&ParticipantKind::Anonymous {
        opaque_id: "r1-guest".into()
    }));
    let shown = format!("{events:?}");
    for probe in PHI_PROBES {
        assert!(!shown.contains(probe), "{probe}: {shown}");
    }
    assert!(!shown.contains("contoso.example"), "no email addresses");
}

#[tokio::test]
async fn paging_stops_at_the_configured_limit() {
    let w = world_with(|c| c.max_pages = 2).await;
    let meeting = w
        .client
        .provision_meeting(&visit("csn-1"))
        .await
        .expect("meeting");
    for r in ["r1", "r2", "r3"] {
        w.graph.add_attendance_report(
            meeting.meeting_id.as_str(),
            attendance_report(r, "oid", "2026-03-05T18:00:00Z", "2026-03-05T18:20:00Z"),
        );
    }
    let ids = w
        .client
        .attendance_report_ids(&UserObjectId::new(ORGANIZER), &meeting.meeting_id)
        .await
        .expect("listed");
    assert_eq!(ids, ["r1", "r2"]);
}

#[tokio::test]
async fn a_next_link_to_another_host_is_not_followed() {
    let w = world().await;
    Mock::given(path_regex("/attendanceReports$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [{"id": "r1", "attendanceRecords": []}],
            "@odata.nextLink": "https://collector.example/steal?$skiptoken=1"
        })))
        .with_priority(1)
        .mount(&w.server)
        .await;
    let error = w
        .client
        .attendance_report_ids(&UserObjectId::new(ORGANIZER), &MeetingId::new("m-1"))
        .await
        .expect_err("refused");
    assert!(matches!(error, GraphError::Parse { .. }), "{error:?}");
}
