//! One meeting per visit: createOrGet, the policy PATCH, the patient's join URL, access policy.

use chrono::{TimeZone, Utc};
use serde_json::json;
use visitbridge_graph::{
    GraphError, LobbyScope, MeetingPolicy, PatientJoinKind, UserObjectId, VisitMeetingRequest,
};

use crate::{ORGANIZER, visit, world, world_with};

#[tokio::test]
async fn the_first_launch_creates_and_the_next_finds_the_same_meeting() {
    let w = world().await;
    let first = w
        .client
        .provision_meeting(&visit("csn-1001"))
        .await
        .expect("first");
    assert!(first.created);
    assert!(first.policy_applied);
    let second = w
        .client
        .provision_meeting(&visit("csn-1001"))
        .await
        .expect("second");
    assert!(!second.created);
    assert!(!second.policy_applied, "the policy is already in place");
    assert_eq!(first.meeting_id, second.meeting_id);
    assert_eq!(first.join_web_url, second.join_web_url);
    assert_eq!(w.graph.meeting_count(), 1);
    assert_eq!(w.graph.patch_bodies().len(), 1);

    let other = w
        .client
        .provision_meeting(&visit("csn-1002"))
        .await
        .expect("other visit");
    assert!(other.created);
    assert_ne!(other.meeting_id, first.meeting_id);
}

#[tokio::test]
async fn the_policy_patch_has_the_safe_defaults() {
    let w = world().await;
    let meeting = w
        .client
        .provision_meeting(&visit("csn-1"))
        .await
        .expect("meeting");
    assert_eq!(
        w.graph.patch_bodies(),
        vec![json!({
            "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": false},
            "allowMeetingChat": "limited",
            "allowedPresenters": "organizer",
            "isEntryExitAnnounced": false,
        })]
    );
    let stored = w
        .graph
        .meeting(meeting.meeting_id.as_str())
        .expect("stored");
    assert_eq!(stored["allowMeetingChat"], "limited");
    assert_eq!(stored["lobbyBypassSettings"]["scope"], "organization");
}

#[tokio::test]
async fn an_existing_meeting_whose_settings_drifted_gets_the_policy_again() {
    let w = world().await;
    // Created by an earlier, interrupted launch: createOrGet done, PATCH never sent.
    let outcome = w
        .client
        .create_or_get(&visit("csn-7"))
        .await
        .expect("created");
    assert!(outcome.created);
    let provisioned = w
        .client
        .provision_meeting(&visit("csn-7"))
        .await
        .expect("provisioned");
    assert!(!provisioned.created);
    assert!(provisioned.policy_applied);
    assert_eq!(w.graph.patch_bodies().len(), 1);
}

#[tokio::test]
async fn newer_lobby_scopes_are_read_back_and_not_patched_twice() {
    let w = world_with(|c| {
        c.policy = MeetingPolicy {
            lobby_scope: LobbyScope::OrganizationExcludingGuests,
            ..MeetingPolicy::default()
        }
    })
    .await;
    w.client
        .provision_meeting(&visit("csn-9"))
        .await
        .expect("first");
    let second = w
        .client
        .provision_meeting(&visit("csn-9"))
        .await
        .expect("second");
    assert!(
        !second.policy_applied,
        "Graph reported the scope because we asked for unknown enum members"
    );
    assert_eq!(
        w.graph.patch_bodies()[0]["lobbyBypassSettings"]["scope"],
        "organizationExcludingGuests"
    );
}

#[tokio::test]
async fn the_request_carries_no_visit_key_a_safe_subject_and_the_appointment_times() {
    let w = world().await;
    let start = Utc.with_ymd_and_hms(2030, 1, 15, 15, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2030, 1, 15, 15, 30, 0).unwrap();
    let request = VisitMeetingRequest {
        start: Some(start),
        end: Some(end),
        ..visit("882233445566")
    };
    let outcome = w.client.create_or_get(&request).await.expect("meeting");
    assert_eq!(outcome.meeting.start, Some(start));
    assert_eq!(outcome.meeting.end, Some(end));
    let requests = w.server.received_requests().await.expect("recorded");
    let create = requests
        .iter()
        .find(|r| r.url.path().ends_with("/createOrGet"))
        .expect("createOrGet sent");
    let body: serde_json::Value = create.body_json().expect("json");
    assert_eq!(
        body,
        json!({
            "externalId": request.external_id.as_str(),
            "subject": "Virtual visit",
            "startDateTime": "2030-01-15T15:00:00Z",
            "endDateTime": "2030-01-15T15:30:00Z",
        })
    );
    for r in &requests {
        let text = format!("{} {}", r.url, String::from_utf8_lossy(&r.body));
        assert!(
            !text.contains("882233445566"),
            "visit key sent upstream: {text}"
        );
    }
}

fn slot(h: u32, m: u32, minutes: i64) -> VisitMeetingRequest {
    let start = Utc.with_ymd_and_hms(2030, 1, 15, h, m, 0).unwrap();
    VisitMeetingRequest {
        start: Some(start),
        end: Some(start + chrono::Duration::minutes(minutes)),
        ..visit("csn-moved")
    }
}

#[tokio::test]
async fn a_new_meeting_gets_the_appointment_times_and_a_moved_one_is_patched() {
    let w = world().await;
    let first = w
        .client
        .provision_meeting(&slot(5, 0, 30))
        .await
        .expect("first");
    assert!(first.created);
    let sent = w.graph.create_or_get_bodies();
    assert_eq!(sent[0]["startDateTime"], "2030-01-15T05:00:00Z");
    assert_eq!(sent[0]["endDateTime"], "2030-01-15T05:30:00Z");
    // Created at the appointment's times: the one PATCH is the policy's alone.
    assert_eq!(w.graph.patch_bodies().len(), 1);
    assert!(w.graph.patch_bodies()[0].get("startDateTime").is_none());

    // Same times again: nothing to change.
    let again = w
        .client
        .provision_meeting(&slot(5, 0, 30))
        .await
        .expect("again");
    assert!(!again.created);
    assert_eq!(w.graph.patch_bodies().len(), 1);

    // The EHR moved the appointment to 06:15–06:35: one PATCH with the new times only.
    let moved = w
        .client
        .provision_meeting(&slot(6, 15, 20))
        .await
        .expect("moved");
    assert_eq!(moved.meeting_id, first.meeting_id);
    assert!(!moved.policy_applied);
    assert_eq!(
        w.graph.patch_bodies()[1],
        json!({"startDateTime": "2030-01-15T06:15:00Z", "endDateTime": "2030-01-15T06:35:00Z"})
    );
    let stored = w.graph.meeting(first.meeting_id.as_str()).expect("stored");
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(stored[k].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    assert_eq!(
        at("startDateTime"),
        Utc.with_ymd_and_hms(2030, 1, 15, 6, 15, 0).unwrap()
    );
    assert_eq!(
        at("endDateTime"),
        Utc.with_ymd_and_hms(2030, 1, 15, 6, 35, 0).unwrap()
    );

    // A launch that does not know the times leaves them alone.
    w.client
        .provision_meeting(&visit("csn-moved"))
        .await
        .expect("no times");
    assert_eq!(w.graph.patch_bodies().len(), 2);
}

#[test]
fn changes_compare_times_to_the_second_and_only_when_known() {
    use visitbridge_graph::{MeetingChanges, MeetingTimes};
    let start = Utc.with_ymd_and_hms(2030, 1, 15, 5, 0, 0).unwrap();
    let times = MeetingTimes::planned(Some(start), None).expect("start only");
    assert_eq!(times.end, start + chrono::Duration::hours(1));
    assert_eq!(MeetingTimes::planned(None, Some(start)), None);
    assert_eq!(MeetingTimes::planned(Some(start), Some(start)), None);
    let body = MeetingChanges {
        policy: Some(MeetingPolicy::default()),
        times: Some(times),
    }
    .patch_body();
    assert_eq!(body["startDateTime"], "2030-01-15T05:00:00Z");
    assert_eq!(body["endDateTime"], "2030-01-15T06:00:00Z");
    assert_eq!(body["allowMeetingChat"], "limited");
}

#[tokio::test]
async fn an_end_before_the_start_is_refused_before_calling_graph() {
    let w = world().await;
    let start = Utc.with_ymd_and_hms(2030, 1, 15, 15, 0, 0).unwrap();
    let request = VisitMeetingRequest {
        start: Some(start),
        end: Some(start - chrono::Duration::minutes(5)),
        ..visit("csn-1")
    };
    let error = w.client.create_or_get(&request).await.expect_err("refused");
    assert!(matches!(error, GraphError::Invalid(_)), "{error:?}");
    assert_eq!(w.graph.create_or_get_calls(), 0);
}

#[tokio::test]
async fn patients_get_the_virtual_appointment_url_when_permitted() {
    let w = world().await;
    let meeting = w
        .client
        .provision_meeting(&visit("csn-1"))
        .await
        .expect("meeting");
    assert_eq!(
        meeting.patient_join_url.kind,
        PatientJoinKind::VirtualAppointment
    );
    assert!(
        meeting
            .patient_join_url
            .url
            .starts_with("https://visit.teams.microsoft.com/webrtc-svc/api/route?tid="),
        "{}",
        meeting.patient_join_url.url
    );
}

#[tokio::test]
async fn without_the_permission_patients_get_the_join_web_url() {
    let w = world().await;
    w.graph.deny_virtual_appointment();
    for key in ["csn-1", "csn-2"] {
        let meeting = w
            .client
            .provision_meeting(&visit(key))
            .await
            .expect("meeting");
        assert_eq!(meeting.patient_join_url.kind, PatientJoinKind::JoinWebUrl);
        assert_eq!(meeting.patient_join_url.url, meeting.join_web_url);
    }
}

#[tokio::test]
async fn a_missing_access_policy_tells_the_operator_what_to_run() {
    let w = world().await;
    w.graph.deny_access_policy(ORGANIZER);
    let error = w
        .client
        .provision_meeting(&visit("csn-1"))
        .await
        .expect_err("refused");
    let GraphError::AccessPolicyMissing {
        app_id,
        organizer,
        request_id,
    } = &error
    else {
        panic!("expected AccessPolicyMissing, got {error:?}");
    };
    assert_eq!(app_id, visitbridge_testkit::entra::CLIENT_ID);
    assert_eq!(organizer, &UserObjectId::new(ORGANIZER));
    assert!(request_id.is_some(), "request-id kept");
    let text = error.to_string();
    assert!(text.contains(&format!(
        "New-CsApplicationAccessPolicy -Identity VisitBridge-Policy -AppIds \"{app_id}\""
    )));
    assert!(text.contains(&format!(
        "Grant-CsApplicationAccessPolicy -PolicyName VisitBridge-Policy -Identity \"{ORGANIZER}\""
    )));
    assert!(text.contains("30 minutes"));
    assert_eq!(error.status(), Some(403));
    assert!(!error.is_transient());
}
