//! The visits report: visits recorded through the store the way the launch service and the
//! write-back worker record them, listed with their computed columns, one visit's timeline and
//! write-back, the CSV export and the JSON API, each only for the organisation's own visits.

use std::time::Duration as StdDuration;

use axum::{body::Body, http::Request};
use chrono::{DateTime, Datelike, Duration, SubsecRound, Utc};
use serde_json::{Value, json};
use visitbridge_approval::ConfigurationId;
use visitbridge_store::{
    EventId, EventOrigin, EventParticipant, MicrosoftObjectId, NewDelivery, ParticipantClass,
    SinkName, StoredEvent, Visit, VisitEventKind, VisitId,
};

use crate::harness::{
    API_KEY, Browser, OTHER_API_KEY, Page, Portal, admin, approver, colleague, other_admin,
    unescape,
};

/// The launching clinician (the meeting organiser).
const ORGANIZER: &str = "7a1c9e42-5b3d-4f60-8e21-00000000c11a";
/// A patient's opaque meeting id: it tells participants apart and must never be shown.
const GUEST: &str = "8:acs:guest-opaque-id-0001";
/// The hashed visit key sent to Graph: not shown either.
const VISIT_KEY: &str = "vb1-hashed-visit-key-of-a-completed-visit";
const SINKS: [&str; 2] = ["fhir-audit-event", "epic-connection-status"];

/// What a test set up: the times the columns are computed from.
struct Visits {
    /// Completed, launched two days ago.
    completed: &'static str,
    completed_launched: DateTime<Utc>,
    /// When the patient was admitted and the clinician was there: the visit's start.
    completed_start: DateTime<Utc>,
    /// Still going, launched an hour ago.
    in_progress: &'static str,
    in_progress_launched: DateTime<Utc>,
    /// The patient came, nobody else: ten days ago.
    no_show: &'static str,
    /// Forty days ago.
    old: &'static str,
    /// Another organisation's, yesterday.
    foreign: &'static str,
    /// Contoso's configuration.
    configuration: String,
}

fn staff(id: &str) -> Option<EventParticipant> {
    Some(EventParticipant {
        class: ParticipantClass::OrganizationUser,
        id: id.to_owned(),
    })
}

fn guest(id: &str) -> Option<EventParticipant> {
    Some(EventParticipant {
        class: ParticipantClass::AcsGuest,
        id: id.to_owned(),
    })
}

async fn add_visit(
    portal: &Portal,
    id: &str,
    configuration: &str,
    launched: DateTime<Utc>,
    events: &[(VisitEventKind, Option<EventParticipant>, DateTime<Utc>)],
) {
    let visit = Visit {
        id: VisitId::new(id).unwrap(),
        configuration_id: ConfigurationId::new(configuration).unwrap(),
        external_meeting_id: format!("{VISIT_KEY}-{id}"),
        graph_meeting_id: Some(format!("graph-meeting-{id}")),
        join_web_url: Some(format!("https://teams.example.test/l/meetup-join/{id}")),
        organizer_object_id: Some(MicrosoftObjectId::new(ORGANIZER).unwrap()),
        practitioner_fhir_id: Some("practitioner-1".into()),
        appointment_fhir_id: Some(format!("appointment-{id}")),
        encounter_fhir_id: None,
        patient_fhir_id: Some("patient-1".into()),
        conference_id: None,
        created_at: launched,
        ended_at: None,
        patient_key: None,
        appointment_key: None,
        department: None,
    };
    portal.store.upsert_visit(&visit).await.unwrap();
    let deliveries: Vec<NewDelivery> = SINKS
        .iter()
        .map(|sink| NewDelivery {
            sink: SinkName::new(*sink).unwrap(),
            idempotency_key: format!("{sink}-key"),
            latest_only: false,
        })
        .collect();
    for (n, (kind, participant, at)) in events.iter().enumerate() {
        let event = StoredEvent {
            event_id: EventId::new(format!("{id}-event-{n}")).unwrap(),
            visit_id: visit.id.clone(),
            kind: *kind,
            participant: participant.clone(),
            occurred_at: *at,
            recorded_at: *at,
            origin: EventOrigin::Notification,
            audit_event: json!({ "resourceType": "AuditEvent" }),
        };
        portal
            .store
            .record_event(&event, &deliveries)
            .await
            .unwrap();
    }
}

/// The write-back worker's work, done by hand: everything is delivered, except the patient's
/// leave, which Epic refused for good, and the clinician's leave to Epic, still on its way.
async fn deliver(portal: &Portal, now: DateTime<Utc>) {
    for _ in 0..20 {
        let claimed = portal
            .store
            .claim_due(now, StdDuration::from_secs(600), 100)
            .await
            .unwrap();
        if claimed.is_empty() {
            return;
        }
        for c in claimed {
            let leave = c.event.kind == VisitEventKind::ParticipantLeft;
            let epic = c.item.sink.as_str() == "epic-connection-status";
            let by_guest = c
                .event
                .participant
                .as_ref()
                .is_some_and(|p| p.class == ParticipantClass::AcsGuest);
            match (leave && epic, by_guest) {
                (true, true) => {
                    portal
                        .store
                        .mark_dead(c.item.id, c.item.attempts, "epic answered 400")
                        .await
                        .unwrap();
                }
                (true, false) => {} // leased: still pending
                (false, _) => {
                    portal
                        .store
                        .mark_delivered(c.item.id, c.item.attempts, now)
                        .await
                        .unwrap();
                }
            }
        }
    }
    panic!("the outbox never emptied");
}

/// Contoso's configuration (named approver `approver()`), Fabrikam's, and their visits.
async fn set_up(portal: &Portal) -> Visits {
    let mut contoso = portal.signed_in(admin()).await;
    let ours = portal.added_configuration(&mut contoso).await;
    let mut fabrikam = portal.signed_in(other_admin()).await;
    // A FHIR base URL and environment belong to one organisation: Fabrikam's is production.
    let theirs = {
        let form = portal.form_with(&[("environment", "production")]);
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = fabrikam.post("/configurations", &fields).await;
        assert_eq!(page.status, 303, "{}", page.body);
        let location = page.location.unwrap();
        location
            .strip_prefix("/configurations/")
            .and_then(|rest| rest.split('?').next())
            .unwrap()
            .to_owned()
    };

    let now = Utc::now().trunc_subsecs(0);
    use VisitEventKind::*;

    let launched = now - Duration::days(2);
    let t = |minutes: i64| launched + Duration::minutes(minutes);
    add_visit(
        portal,
        "visit-completed",
        &ours,
        launched,
        &[
            (CallStarted, None, t(0)),
            (ParticipantJoined, staff(ORGANIZER), t(0)),
            (ParticipantInLobby, guest(GUEST), t(1)),
            (ParticipantJoined, guest(GUEST), t(4)),
            (ParticipantLeft, guest(GUEST), t(20)),
            (ParticipantLeft, staff(ORGANIZER), t(21)),
        ],
    )
    .await;

    let launched_now = now - Duration::hours(1);
    let t = |minutes: i64| launched_now + Duration::minutes(minutes);
    add_visit(
        portal,
        "visit-in-progress",
        &ours,
        launched_now,
        &[
            (ParticipantJoined, guest("8:acs:guest-2"), t(0)),
            (ParticipantJoined, staff(ORGANIZER), t(2)),
        ],
    )
    .await;

    let launched = now - Duration::days(10);
    let t = |minutes: i64| launched + Duration::minutes(minutes);
    add_visit(
        portal,
        "visit-no-show",
        &ours,
        launched,
        &[
            (ParticipantJoined, guest("8:acs:guest-3"), t(0)),
            (ParticipantLeft, guest("8:acs:guest-3"), t(15)),
        ],
    )
    .await;

    let launched = now - Duration::days(40);
    add_visit(portal, "visit-old", &ours, launched, &[]).await;

    let launched = now - Duration::days(1);
    let t = |minutes: i64| launched + Duration::minutes(minutes);
    add_visit(
        portal,
        "visit-of-fabrikam",
        &theirs,
        launched,
        &[(ParticipantJoined, guest("8:acs:guest-4"), t(0))],
    )
    .await;

    deliver(portal, now).await;
    Visits {
        completed: "visit-completed",
        completed_launched: now - Duration::days(2),
        completed_start: now - Duration::days(2) + Duration::minutes(4),
        in_progress: "visit-in-progress",
        in_progress_launched: launched_now,
        no_show: "visit-no-show",
        old: "visit-old",
        foreign: "visit-of-fabrikam",
        configuration: ours,
    }
}

/// The text of an HTML fragment: tags removed, entities unescaped, spaces collapsed.
fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    unescape(&text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text of each `<td>` and `<th>` cell of a table row.
fn cells(row: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = row;
    while let Some(start) = [rest.find("<td"), rest.find("<th")]
        .into_iter()
        .flatten()
        .min()
    {
        let close = format!("</{}>", &rest[start + 1..start + 3]);
        let content = start + rest[start..].find('>').unwrap() + 1;
        let end = content + rest[content..].find(&close).unwrap();
        out.push(text_of(&rest[content..end]));
        rest = &rest[end + close.len()..];
    }
    out
}

/// The rows of the page's visits table, or else its first table body: (the row's HTML, the text
/// of each cell).
fn table_rows(page: &Page) -> Vec<(String, Vec<String>)> {
    let body = &page.body[page.body.find("<table class=\"visits\"").unwrap_or(0)..];
    let Some(start) = body.find("<tbody>") else {
        return Vec::new();
    };
    let end = start + body[start..].find("</tbody>").unwrap();
    body[start..end]
        .split("<tr>")
        .skip(1)
        .map(|row| (row.to_owned(), cells(row)))
        .collect()
}

/// The visit ids the list links to, in order.
fn listed(page: &Page) -> Vec<String> {
    table_rows(page)
        .iter()
        .filter_map(|(html, _)| {
            let at = html.find("href=\"/visits/")? + "href=\"/visits/".len();
            Some(html[at..at + html[at..].find('"')?].to_owned())
        })
        .collect()
}

fn minute(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

#[tokio::test]
async fn the_list_shows_each_visits_computed_columns_for_the_chosen_period() {
    let portal = Portal::start().await;
    let v = set_up(&portal).await;
    let mut browser = portal.signed_in(admin()).await;

    // The navigation leads there.
    let configurations = browser.get("/configurations").await;
    assert!(
        configurations
            .body
            .contains("<a href=\"/visits\">Visits</a>")
    );

    let page = browser.get("/visits").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<caption"), "an accessible table");
    assert!(
        page.body.contains(
            "<th scope=\"col\" aria-sort=\"none\"><a href=\"/visits?days=30&#38;sort=lobby-wait&#38;order=desc\">Lobby wait"
        ),
        "a sortable column"
    );
    assert!(page.body.contains("<th scope=\"col\" aria-sort=\"descending\"><a href=\"/visits?days=30&#38;sort=launched&#38;order=asc\">Launched (UTC)"));
    // 30 days by default, newest launch first; older visits and Fabrikam's are not there.
    assert_eq!(listed(&page), [v.in_progress, v.completed, v.no_show]);
    assert!(
        page.body
            .contains("<option value=\"30\" selected>Last 30 days</option>")
    );
    assert!(
        page.body
            .contains("3 visits launched in the last 30 days match.")
    );

    let rows = table_rows(&page);
    let completed = &rows[1].1;
    assert_eq!(
        completed[1..],
        [
            minute(v.completed_launched),
            minute(v.completed_start),
            "17m 00s".to_owned(),
            "7a1c9e42…".to_owned(),
            format!("{} (test)", portal.fhir_base()),
            "unknown".to_owned(),
            "2".to_owned(),
            "3m 00s".to_owned(),
            "Completed".to_owned(),
        ],
        "start when both were in, duration to the last leave, lobby arrival to admission"
    );
    let in_progress = &rows[0].1;
    assert_eq!(in_progress[3], "ongoing");
    assert_eq!(in_progress[7], "2");
    assert_eq!(
        in_progress[8], "2m 00s",
        "the wait in the call until staff came"
    );
    assert_eq!(in_progress[9], "In progress");
    let no_show = &rows[2].1;
    assert_eq!(no_show[2], "never");
    assert_eq!(no_show[7], "1");
    assert_eq!(no_show[8], "none");
    assert_eq!(no_show[9], "No-show");

    // No identifier beyond what the report needs: not the visit key, not a guest's meeting id.
    for hidden in [VISIT_KEY, GUEST, "patient-1", "appointment-"] {
        assert!(!page.body.contains(hidden), "{hidden} is on the page");
    }

    let week = browser.get("/visits?days=7").await;
    assert_eq!(listed(&week), [v.in_progress, v.completed]);
    let quarter = browser.get("/visits?days=90").await;
    assert_eq!(
        listed(&quarter),
        [v.in_progress, v.completed, v.no_show, v.old]
    );
    let odd = browser.get("/visits?days=365").await;
    assert_eq!(odd.status, 400);
    assert!(
        odd.body.contains("days must be 7, 30 or 90"),
        "{}",
        odd.body
    );
}

#[tokio::test]
async fn a_visit_page_shows_its_timeline_and_the_write_back_of_each_event() {
    let portal = Portal::start().await;
    let v = set_up(&portal).await;
    let mut browser = portal.signed_in(admin()).await;

    let page = browser.get(&format!("/visits/{}", v.completed)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let text = unescape(&page.body);
    assert!(text.contains("Completed"));
    assert!(
        text.contains(ORGANIZER),
        "the organiser's object id in full"
    );

    // The timeline: participants by role, lobby then connection.
    let timeline = table_rows(&page);
    let stretches: Vec<(&str, &str, &str)> = timeline
        .iter()
        .take(3)
        .map(|(_, c)| (c[0].as_str(), c[1].as_str(), c[5].as_str()))
        .collect();
    assert_eq!(
        stretches,
        [
            ("Clinician", "Connected", "left"),
            ("Patient / guest 1", "In the lobby", "admitted"),
            ("Patient / guest 1", "Connected", "left"),
        ]
    );
    assert_eq!(timeline[1].1[4], "3m 00s");
    assert_eq!(timeline[2].1[4], "16m 00s");

    // The events, each with its delivery per sink.
    let events_at = page.body.find("events-caption").unwrap();
    let events = &page.body[events_at..];
    let rows: Vec<String> = events
        .split("<tr>")
        .skip(2)
        .map(|r| unescape(r).split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(rows.len(), 6, "{rows:#?}");
    assert!(rows[0].contains("Call started") && rows[0].contains("the call"));
    assert!(rows[2].contains("Waiting in the lobby") && rows[2].contains("Patient / guest 1"));
    let patient_left = &rows[4];
    assert!(patient_left.contains("Disconnected"), "{patient_left}");
    assert!(
        patient_left.contains(
            "fhir-audit-event</code>: <span class=\"delivery delivery-delivered\">delivered"
        ),
        "{patient_left}"
    );
    assert!(
        patient_left.contains("dead letter</span> (gave up after 1 attempt: epic answered 400)"),
        "{patient_left}"
    );
    let clinician_left = &rows[5];
    assert!(clinician_left.contains("Clinician"), "{clinician_left}");
    assert!(
        clinician_left.contains(
            "epic-connection-status</code>: <span class=\"delivery delivery-pending\">pending"
        ),
        "{clinician_left}"
    );
    for hidden in [GUEST, VISIT_KEY, "patient-1"] {
        assert!(!page.body.contains(hidden), "{hidden} is on the page");
    }

    assert_eq!(browser.get("/visits/no-such-visit").await.status, 404);
    assert_eq!(browser.get("/visits/not%20an%20id").await.status, 404);
}

#[tokio::test]
async fn the_approver_sees_their_configurations_visits_and_nobody_sees_another_organisations() {
    let portal = Portal::start().await;
    let v = set_up(&portal).await;

    // The named approver sees the same visits as the admin.
    let mut analyst = portal.signed_in(approver()).await;
    assert_eq!(
        listed(&analyst.get("/visits").await),
        [v.in_progress, v.completed, v.no_show]
    );
    assert_eq!(
        analyst
            .get(&format!("/visits/{}", v.completed))
            .await
            .status,
        200
    );

    // A colleague who is neither admin nor approver sees none, and may not open one.
    let mut colleague = portal.signed_in(colleague()).await;
    let page = colleague.get("/visits").await;
    assert_eq!(page.status, 200);
    assert!(listed(&page).is_empty());
    assert!(
        page.body
            .contains("No configuration names you as its approver")
    );
    let refused = colleague.get(&format!("/visits/{}", v.completed)).await;
    assert_eq!(refused.status, 403);
    // The refusal names nobody: not the approver a colleague could then go and ask.
    assert!(
        !refused.body.contains(&approver().upn) && !refused.body.contains(&admin().upn),
        "{}",
        refused.body
    );
    let csv = colleague.get("/visits.csv?days=90").await;
    assert_eq!(csv.body.lines().count(), 1, "the header only: {}", csv.body);

    // Fabrikam's admin sees Fabrikam's visit only; Contoso's are "not found".
    let mut fabrikam = portal.signed_in(other_admin()).await;
    let page = fabrikam.get("/visits?days=90").await;
    assert_eq!(listed(&page), [v.foreign]);
    for id in [v.completed, v.in_progress, v.no_show, v.old] {
        let page = fabrikam.get(&format!("/visits/{id}")).await;
        assert_eq!(page.status, 404, "{id}");
        assert!(
            unescape(&page.body)
                .contains("this visit does not exist, or belongs to another organisation")
        );
    }
    let csv = fabrikam.get("/visits.csv?days=90").await;
    assert!(csv.body.contains(v.foreign));
    for id in [v.completed, v.in_progress, v.no_show, v.old] {
        assert!(!csv.body.contains(id), "{id} in Fabrikam's CSV");
    }
    // And the other way round.
    let mut contoso = portal.signed_in(admin()).await;
    assert_eq!(
        contoso.get(&format!("/visits/{}", v.foreign)).await.status,
        404
    );
    assert!(
        !contoso
            .get("/visits.csv?days=90")
            .await
            .body
            .contains(v.foreign)
    );

    // Signed out: sign in first.
    assert_eq!(portal.browser().get("/visits").await.status, 401);
    assert_eq!(portal.browser().get("/visits.csv").await.status, 401);
}

#[tokio::test]
async fn the_csv_export_has_the_lists_columns_for_the_period() {
    let portal = Portal::start().await;
    let v = set_up(&portal).await;
    let mut browser = portal.signed_in(admin()).await;

    let page = browser.get("/visits").await;
    assert!(page.body.contains("href=\"/visits.csv?days=30\""));

    let csv = browser.get("/visits.csv?days=30").await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.content_type.as_deref(), Some("text/csv; charset=utf-8"));
    assert_eq!(
        csv.headers["content-disposition"],
        "attachment; filename=\"visitbridge-visits-last-30-days.csv\""
    );
    let lines: Vec<&str> = csv.body.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "visit_id,launched_utc,start_utc,end_utc,duration_seconds,organizer_object_id,configuration_id,fhir_base_url,environment,department,attendees,lobby_wait_seconds,status"
    );
    let configuration = &v.configuration;
    let iso = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert_eq!(
        lines.len(),
        5,
        "three visits and the final line end: {lines:?}"
    );
    assert_eq!(
        lines[2],
        format!(
            "{},{},{},{},1020,{ORGANIZER},{configuration},{},test,,2,180,completed",
            v.completed,
            iso(v.completed_launched),
            iso(v.completed_start),
            iso(v.completed_launched + Duration::minutes(21)),
            portal.fhir_base()
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "{},{},{},,,{ORGANIZER},{configuration},{},test,,2,120,in-progress",
            v.in_progress,
            iso(v.in_progress_launched),
            iso(v.in_progress_launched + Duration::minutes(2)),
            portal.fhir_base()
        ),
        "no duration while it goes on"
    );
    assert!(lines[3].starts_with(&format!("{},", v.no_show)));
    assert!(lines[3].ends_with(",test,,1,,no-show"), "{}", lines[3]);
    assert_eq!(lines[4], "");

    let week = browser.get("/visits.csv?days=7").await;
    assert_eq!(week.body.split("\r\n").count(), 4);
    assert_eq!(browser.get("/visits.csv?days=1").await.status, 400);
}

async fn api(browser: &mut Browser, path: &str, key: &str) -> (u16, Value) {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let page = browser.request(request).await;
    (page.status, serde_json::from_str(&page.body).unwrap())
}

#[tokio::test]
async fn the_json_api_lists_visits_and_shows_one_with_its_write_back() {
    let portal = Portal::start().await;
    let v = set_up(&portal).await;
    let mut client = portal.browser();

    let (status, list) = api(&mut client, "/api/v1/visits?days=30", API_KEY).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["days"], 30);
    assert_eq!(
        (list["total"].as_u64(), list["pages"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(list["next"], Value::Null);
    let ids: Vec<&str> = list["visits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [v.in_progress, v.completed, v.no_show]);
    let completed = &list["visits"][1];
    let iso = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert_eq!(
        completed,
        &json!({
            "id": v.completed,
            "launched_at": iso(v.completed_launched),
            "start": iso(v.completed_start),
            "end": iso(v.completed_launched + Duration::minutes(21)),
            "duration_seconds": 1020,
            "organizer_object_id": ORGANIZER,
            "configuration": {
                "id": completed["configuration"]["id"],
                "fhir_base_url": portal.fhir_base(),
                "environment": "test",
            },
            "department": null,
            "attendees": 2,
            "lobby_wait_seconds": 180,
            "status": "completed",
            "portal_url": format!("https://portal.example.test/visits/{}", v.completed),
        })
    );
    assert_eq!(list["visits"][0]["status"], "in-progress");
    assert_eq!(list["visits"][0]["duration_seconds"], Value::Null);
    assert_eq!(list["visits"][2]["status"], "no-show");

    let (status, ninety) = api(&mut client, "/api/v1/visits?days=90", API_KEY).await;
    assert_eq!(status, 200);
    assert_eq!(ninety["visits"].as_array().unwrap().len(), 4);
    let (status, problem) = api(&mut client, "/api/v1/visits?days=31", API_KEY).await;
    assert_eq!(status, 400);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#problem-bad-request")
    );

    let (status, detail) = api(
        &mut client,
        &format!("/api/v1/visits/{}", v.completed),
        API_KEY,
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["visit"]["status"], "completed");
    let labels: Vec<&str> = detail["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Clinician", "Patient / guest 1"]);
    assert_eq!(detail["participants"][1]["role"], "patient-or-guest");
    assert_eq!(detail["participants"][1]["lobby"][0]["admitted"], true);
    let patient_left = &detail["events"][4];
    assert_eq!(patient_left["kind"], "participant-left");
    assert_eq!(patient_left["participant"], "Patient / guest 1");
    let states: Vec<(&str, &str)> = patient_left["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["sink"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("fhir-audit-event", "delivered"),
            ("epic-connection-status", "dead-letter")
        ]
    );
    assert_eq!(
        patient_left["deliveries"][1]["last_error"],
        "epic answered 400"
    );
    assert_eq!(detail["events"][5]["deliveries"][1]["state"], "pending");
    let body = detail.to_string();
    for hidden in [GUEST, VISIT_KEY, "patient-1"] {
        assert!(!body.contains(hidden), "{hidden} in the API answer");
    }

    // Another organisation's key sees none of them.
    let (status, theirs) = api(&mut client, "/api/v1/visits?days=90", OTHER_API_KEY).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = theirs["visits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [v.foreign]);
    let (status, problem) = api(
        &mut client,
        &format!("/api/v1/visits/{}", v.completed),
        OTHER_API_KEY,
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#problem-not-found")
    );
}

#[tokio::test]
async fn an_admin_sends_a_dead_letter_again_from_the_visit_page_and_the_history_says_so() {
    let portal = Portal::start().await;
    let v = set_up(&portal).await;
    let visit = VisitId::new(v.completed).unwrap();
    let dead = |rows: &[visitbridge_store::OutboxItem]| {
        rows.iter()
            .find(|r| r.state == visitbridge_store::OutboxState::Dead)
            .cloned()
    };
    let row = dead(&portal.store.outbox_for_visit(&visit).await.unwrap()).expect("a dead letter");
    let path = format!("/visits/{}/redrive", v.completed);
    let outbox_id = row.id.0.to_string();

    // The approver sees the visit but no button, and cannot send it again.
    let mut analyst = portal.signed_in(approver()).await;
    let page = analyst.get(&format!("/visits/{}", v.completed)).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("Send again"));
    let refused = analyst.post(&path, &[("outbox_id", &outbox_id)]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    // Another organisation's admin: not found.
    let mut fabrikam = portal.signed_in(other_admin()).await;
    let foreign = fabrikam.post(&path, &[("outbox_id", &outbox_id)]).await;
    assert_eq!(foreign.status, 404, "{}", foreign.body);

    let mut contoso = portal.signed_in(admin()).await;
    let page = contoso.get(&format!("/visits/{}", v.completed)).await;
    let form = format!("name=\"outbox_id\" value=\"{outbox_id}\"");
    assert!(page.body.contains(&form), "no button for the dead letter");
    assert!(page.body.contains("Send again"));
    // Without the session's CSRF token: refused, nothing changes.
    let forged = contoso.post_raw(&path, &[("outbox_id", &outbox_id)]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(
        dead(&portal.store.outbox_for_visit(&visit).await.unwrap()),
        Some(row.clone())
    );

    let sent = contoso.post(&path, &[("outbox_id", &outbox_id)]).await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert_eq!(
        sent.location.as_deref(),
        Some(format!("/visits/{}?notice=redriven", v.completed).as_str())
    );
    let again = portal
        .store
        .outbox_for_visit(&visit)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == row.id)
        .unwrap();
    assert_eq!(again.state, visitbridge_store::OutboxState::Pending);
    assert_eq!(again.attempts, 0);
    let shown = contoso.get(sent.location.as_deref().unwrap()).await;
    assert!(shown.body.contains("on its way again"), "{}", shown.body);

    // Recorded in the configuration's history: who, which event, which sink.
    let configuration = portal
        .store
        .get_visit(&visit)
        .await
        .unwrap()
        .unwrap()
        .configuration_id;
    let history = contoso
        .get(&format!("/configurations/{configuration}/history"))
        .await;
    let text = unescape(&history.body);
    assert!(text.contains("Write-back sent again"), "{text}");
    assert!(text.contains(&format!("event {} to {}", row.event_id, row.sink)));
    assert!(text.contains("admin@contoso.example"));

    // Not a dead letter any more: a second send is refused.
    let twice = contoso.post(&path, &[("outbox_id", &outbox_id)]).await;
    assert_eq!(twice.status, 400, "{}", twice.body);
    let unknown = contoso.post(&path, &[("outbox_id", "999999")]).await;
    assert_eq!(unknown.status, 400);
}

/// The rows of the numbers table of chart `id`: (first column, the other columns).
fn chart_rows(page: &Page, id: &str) -> Vec<(String, Vec<String>)> {
    let start = page
        .body
        .find(&format!("id=\"{id}-data\""))
        .unwrap_or_else(|| panic!("no table of {id}"));
    let end = start + page.body[start..].find("</table>").unwrap();
    page.body[start..end]
        .split("<tr><th scope=\"row\">")
        .skip(1)
        .map(|row| {
            let label = row[..row.find("</th>").unwrap()].to_owned();
            let values = row
                .split("<td>")
                .skip(1)
                .map(|c| unescape(&c[..c.find("</td>").unwrap()]))
                .collect();
            (label, values)
        })
        .collect()
}

#[tokio::test]
async fn the_visits_page_draws_its_charts_with_the_numbers_beside_them() {
    let portal = Portal::start().await;
    let v = set_up(&portal).await;
    let mut browser = portal.signed_in(admin()).await;
    let page = browser.get("/visits?days=30").await;
    assert_eq!(page.status, 200, "{}", page.body);

    // Three SVG charts, each with its title and description for screen readers.
    assert_eq!(page.body.matches("<svg ").count(), 3);
    for id in ["chart-visits", "chart-waits", "chart-no-shows"] {
        assert!(
            page.body
                .contains(&format!("aria-labelledby=\"{id}-title {id}-desc\"")),
            "{id}"
        );
        assert!(page.body.contains(&format!("<title id=\"{id}-title\">")));
    }

    // Visits per day, by hand: the completed visit two days ago, the no-show ten days ago, the
    // one in progress today; the 40-day-old one and the other organisation's are not counted.
    let per_day = chart_rows(&page, "chart-visits");
    assert_eq!(per_day.len(), 31, "every day of the period, today included");
    let day = |at: DateTime<Utc>| at.date_naive().to_string();
    let count = |d: &str| {
        per_day
            .iter()
            .find(|(label, _)| label == d)
            .map(|(_, values)| values[0].clone())
    };
    assert_eq!(count(&day(v.completed_launched)).as_deref(), Some("1"));
    assert_eq!(count(&day(v.in_progress_launched)).as_deref(), Some("1"));
    let total: u32 = per_day
        .iter()
        .map(|(_, v)| v[0].parse::<u32>().unwrap())
        .sum();
    assert_eq!(total, 3);

    // The completed visit's patient waited three minutes in the lobby (1 → 4 min).
    let waits = chart_rows(&page, "chart-waits");
    let completed_day = waits
        .iter()
        .find(|(label, _)| *label == day(v.completed_launched))
        .unwrap();
    assert_eq!(completed_day.1, ["180 s", "180 s"]);

    // No-show rate per week: the no-show's week is all no-show, the completed visit's none.
    let weeks = chart_rows(&page, "chart-no-shows");
    let week_of = |at: DateTime<Utc>| {
        let d = at.date_naive();
        (d - Duration::days(i64::from(d.weekday().num_days_from_monday()))).to_string()
    };
    let no_show_launched = Utc::now() - Duration::days(10);
    let week = |w: String| {
        weeks
            .iter()
            .find(|(label, _)| *label == w)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(week(week_of(no_show_launched)), ["1", "1", "100 %"]);
    assert_eq!(week(week_of(v.completed_launched)), ["1", "0", "0 %"]);
}

/// A visit's launch and events, as a seeded set gives them.
type Seed = (
    &'static str,
    Option<&'static str>,
    &'static str,
    Vec<(VisitEventKind, Option<EventParticipant>, &'static str)>,
);

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// Four visits of June 2026 whose columns were worked out by hand (see each).
async fn seed_june(portal: &Portal, configuration: &str) {
    use VisitEventKind::*;
    let seeds: Vec<Seed> = vec![
        // Re-join: admitted after 3 minutes, leaves and comes back; lasts until the last leave.
        // Start 09:05, end 09:31 (26 min), wait 3 min, 2 people, completed.
        (
            "june-rejoin",
            Some("Cardiology"),
            "2026-06-01T09:00:00Z",
            vec![
                (ParticipantJoined, staff(ORGANIZER), "2026-06-01T09:00:00Z"),
                (
                    ParticipantInLobby,
                    guest("8:acs:p-1"),
                    "2026-06-01T09:02:00Z",
                ),
                (
                    ParticipantJoined,
                    guest("8:acs:p-1"),
                    "2026-06-01T09:05:00Z",
                ),
                (ParticipantLeft, guest("8:acs:p-1"), "2026-06-01T09:10:00Z"),
                (
                    ParticipantJoined,
                    guest("8:acs:p-1"),
                    "2026-06-01T09:12:00Z",
                ),
                (ParticipantLeft, guest("8:acs:p-1"), "2026-06-01T09:30:00Z"),
                (ParticipantLeft, staff(ORGANIZER), "2026-06-01T09:31:00Z"),
            ],
        ),
        // Two patients: the wait is the first one's (2 min); 3 people; 10:03 to 10:26 (23 min).
        (
            "june-two-patients",
            Some("Family medicine"),
            "2026-06-01T10:00:00Z",
            vec![
                (ParticipantJoined, staff(ORGANIZER), "2026-06-01T10:00:00Z"),
                (
                    ParticipantInLobby,
                    guest("8:acs:p-2"),
                    "2026-06-01T10:01:00Z",
                ),
                (
                    ParticipantJoined,
                    guest("8:acs:p-2"),
                    "2026-06-01T10:03:00Z",
                ),
                (
                    ParticipantInLobby,
                    guest("8:acs:p-3"),
                    "2026-06-01T10:04:00Z",
                ),
                (
                    ParticipantJoined,
                    guest("8:acs:p-3"),
                    "2026-06-01T10:10:00Z",
                ),
                (ParticipantLeft, guest("8:acs:p-2"), "2026-06-01T10:20:00Z"),
                (ParticipantLeft, guest("8:acs:p-3"), "2026-06-01T10:25:00Z"),
                (ParticipantLeft, staff(ORGANIZER), "2026-06-01T10:26:00Z"),
            ],
        ),
        // Overnight: launched on 1 June, started on the 2nd at 00:05 after a 7-minute wait,
        // 36 minutes. A report of 1 June has it (by its launch), one of 2 June does not.
        (
            "june-overnight",
            Some("Cardiology"),
            "2026-06-01T23:50:00Z",
            vec![
                (ParticipantJoined, staff(ORGANIZER), "2026-06-01T23:55:00Z"),
                (
                    ParticipantInLobby,
                    guest("8:acs:p-4"),
                    "2026-06-01T23:58:00Z",
                ),
                (
                    ParticipantJoined,
                    guest("8:acs:p-4"),
                    "2026-06-02T00:05:00Z",
                ),
                (ParticipantLeft, guest("8:acs:p-4"), "2026-06-02T00:40:00Z"),
                (ParticipantLeft, staff(ORGANIZER), "2026-06-02T00:41:00Z"),
            ],
        ),
        // Another time zone: 23:30 on 1 June in New York is 03:30 on 2 June UTC, the day the
        // report counts it on. Nobody from staff came: a no-show, no wait, 1 person.
        (
            "june-no-show",
            None,
            "2026-06-01T23:30:00-04:00",
            vec![
                (
                    ParticipantJoined,
                    guest("8:acs:p-5"),
                    "2026-06-01T23:31:00-04:00",
                ),
                (
                    ParticipantLeft,
                    guest("8:acs:p-5"),
                    "2026-06-01T23:46:00-04:00",
                ),
            ],
        ),
    ];
    for (id, department, launched, events) in seeds {
        let events: Vec<_> = events
            .into_iter()
            .map(|(kind, who, at)| (kind, who, utc(at)))
            .collect();
        add_visit(portal, id, configuration, utc(launched), &events).await;
        if let Some(department) = department {
            let visit = portal
                .store
                .get_visit(&VisitId::new(id).unwrap())
                .await
                .unwrap()
                .unwrap();
            let named = Visit {
                department: Some(department.to_owned()),
                ..visit
            };
            portal.store.upsert_visit(&named).await.unwrap();
        }
    }
}

#[tokio::test]
async fn the_report_filters_sorts_pages_and_exports_hand_computed_columns() {
    let portal = Portal::start().await;
    let v = set_up(&portal).await;
    seed_june(&portal, &v.configuration).await;
    let mut browser = portal.signed_in(admin()).await;
    let june = "from=2026-06-01&to=2026-06-02";

    let page = browser.get(&format!("/visits?{june}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        listed(&page),
        [
            "june-no-show",
            "june-overnight",
            "june-two-patients",
            "june-rejoin"
        ]
    );
    assert!(
        page.body
            .contains("4 visits launched in 2026-06-01 to 2026-06-02 match.")
    );
    // Start, duration, department, attendees, wait, status of each, by hand.
    let columns: Vec<Vec<String>> = table_rows(&page)
        .into_iter()
        .map(|(_, c)| [2, 3, 6, 7, 8, 9].iter().map(|&i| c[i].clone()).collect())
        .collect();
    assert_eq!(
        columns,
        [
            ["never", "none", "unknown", "1", "none", "No-show"],
            [
                "2026-06-02 00:05",
                "36m 00s",
                "Cardiology",
                "2",
                "7m 00s",
                "Completed"
            ],
            [
                "2026-06-01 10:03",
                "23m 00s",
                "Family medicine",
                "3",
                "2m 00s",
                "Completed"
            ],
            [
                "2026-06-01 09:05",
                "26m 00s",
                "Cardiology",
                "2",
                "3m 00s",
                "Completed"
            ],
        ]
    );
    // The charts count the filtered visits by launch day: 3 on 1 June, 1 on the 2nd; waits
    // 2, 3 and 7 minutes on the 1st: median 180 s, p90 (nearest rank) 420 s.
    assert!(
        page.body
            .contains("<th scope=\"row\">2026-06-01</th><td>3</td>"),
        "visits per day"
    );
    assert!(
        page.body
            .contains("<th scope=\"row\">2026-06-02</th><td>1</td>")
    );
    assert!(
        page.body
            .contains("<th scope=\"row\">2026-06-01</th><td>180 s</td><td>420 s</td>"),
        "median and p90 wait"
    );

    // Filters: a day by launch (the overnight visit belongs to 1 June), a status, a department,
    // a configuration; the form shows them chosen.
    let second = browser.get("/visits?from=2026-06-02&to=2026-06-02").await;
    assert_eq!(listed(&second), ["june-no-show"]);
    let no_shows = browser.get(&format!("/visits?{june}&status=no-show")).await;
    assert_eq!(listed(&no_shows), ["june-no-show"]);
    assert!(no_shows.body.contains("value=\"no-show\" checked"));
    let cardiology = browser
        .get(&format!("/visits?{june}&department=Cardiology"))
        .await;
    assert_eq!(listed(&cardiology), ["june-overnight", "june-rejoin"]);
    assert!(
        cardiology
            .body
            .contains("<option value=\"Cardiology\" selected>Cardiology</option>")
    );
    let both = browser
        .get(&format!(
            "/visits?{june}&configuration={}&status=completed&status=no-show",
            v.configuration
        ))
        .await;
    assert_eq!(listed(&both).len(), 4);
    let nothing = browser
        .get(&format!("/visits?{june}&department=Radiology"))
        .await;
    assert!(
        nothing
            .body
            .contains("No visits launched in 2026-06-01 to 2026-06-02 match this filter.")
    );
    assert_eq!(
        browser.get("/visits?configuration=not-ours").await.status,
        400
    );
    assert_eq!(
        browser
            .get("/visits?from=2026-06-03&to=2026-06-01")
            .await
            .status,
        400
    );

    // Sorting: longest wait first, unknown last; a header's link turns it round.
    let by_wait = browser
        .get(&format!("/visits?{june}&sort=lobby-wait&order=desc"))
        .await;
    assert_eq!(
        listed(&by_wait),
        [
            "june-overnight",
            "june-rejoin",
            "june-two-patients",
            "june-no-show"
        ]
    );
    assert!(by_wait.body.contains("aria-sort=\"descending\"><a href=\"/visits?from=2026-06-01&#38;to=2026-06-02&#38;sort=lobby-wait&#38;order=asc\">Lobby wait"));
    let by_department = browser
        .get(&format!("/visits?{june}&sort=department"))
        .await;
    assert_eq!(
        listed(&by_department),
        [
            "june-overnight",
            "june-rejoin",
            "june-two-patients",
            "june-no-show"
        ]
    );

    // Pages: two of two, with links both ways; the count is of all of them.
    let first = browser.get(&format!("/visits?{june}&per_page=2")).await;
    assert_eq!(listed(&first), ["june-no-show", "june-overnight"]);
    assert!(first.body.contains("page 1 of 2"));
    let next =
        "href=\"/visits?from=2026-06-01&#38;to=2026-06-02&#38;per_page=2&#38;page=2\" rel=\"next\"";
    assert!(first.body.contains(next), "a link to the next page");
    let second_page = browser
        .get(&format!("/visits?{june}&per_page=2&page=2"))
        .await;
    assert_eq!(listed(&second_page), ["june-two-patients", "june-rejoin"]);
    assert!(second_page.body.contains("rel=\"prev\""));
    assert!(
        listed(
            &browser
                .get(&format!("/visits?{june}&per_page=2&page=3"))
                .await
        )
        .is_empty()
    );

    // The CSV of the same filter and order: every row (not one page), parsed back.
    assert!(by_wait.body.contains(
        "href=\"/visits.csv?from=2026-06-01&#38;to=2026-06-02&#38;sort=lobby-wait&#38;order=desc\""
    ));
    let csv = browser
        .get(&format!(
            "/visits.csv?{june}&sort=lobby-wait&order=desc&per_page=2&page=2"
        ))
        .await;
    assert_eq!(csv.status, 200);
    assert_eq!(
        csv.headers["content-disposition"],
        "attachment; filename=\"visitbridge-visits-2026-06-01-to-2026-06-02.csv\""
    );
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let records: Vec<std::collections::HashMap<String, String>> = reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect();
    let column = |name: &str| -> Vec<&str> { records.iter().map(|r| r[name].as_str()).collect() };
    assert_eq!(
        column("visit_id"),
        [
            "june-overnight",
            "june-rejoin",
            "june-two-patients",
            "june-no-show"
        ]
    );
    assert_eq!(column("launched_utc")[0], "2026-06-01T23:50:00Z");
    assert_eq!(column("start_utc")[0], "2026-06-02T00:05:00Z");
    assert_eq!(column("end_utc")[0], "2026-06-02T00:41:00Z");
    assert_eq!(column("launched_utc")[3], "2026-06-02T03:30:00Z", "in UTC");
    assert_eq!(column("duration_seconds"), ["2160", "1560", "1380", ""]);
    assert_eq!(column("lobby_wait_seconds"), ["420", "180", "120", ""]);
    assert_eq!(column("attendees"), ["2", "2", "3", "1"]);
    assert_eq!(
        column("department"),
        ["Cardiology", "Cardiology", "Family medicine", ""]
    );
    assert_eq!(
        column("status"),
        ["completed", "completed", "completed", "no-show"]
    );
    assert!(
        column("configuration_id")
            .iter()
            .all(|c| *c == v.configuration)
    );

    // The JSON API pages the same way, with a link to the next page.
    let mut client = portal.browser();
    let (status, list) = api(
        &mut client,
        &format!("/api/v1/visits?{june}&per_page=3"),
        API_KEY,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        (list["total"].as_u64(), list["pages"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(
        list["next"],
        "https://portal.example.test/api/v1/visits?from=2026-06-01&to=2026-06-02&per_page=3&page=2"
    );
    assert_eq!(list["visits"][1]["department"], "Cardiology");
}
