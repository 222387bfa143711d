//! The auditor's FHIR endpoint: AuditEvents kept by the launch service, searched by entity and
//! date with paging, read one by one, for the organisation's admins and API keys only, every
//! answer valid R4 by HL7's schema.

use axum::{body::Body, http::Request};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use visitbridge_approval::ConfigurationId;
use visitbridge_fhir::{AuditAgent, AuditEvent, ParticipantAction, ParticipantAudit, Reference};
use visitbridge_http::Secret;
use visitbridge_store::{
    EventId, EventOrigin, EventParticipant, ParticipantClass, StoredEvent, Visit, VisitEventKind,
    VisitId,
};
use visitbridge_testkit::fhir_schema::r4_schema_errors;
use visitbridge_visit::ReferenceKeys;

use crate::harness::{
    API_KEY, Browser, CONFIGURATIONS_ONLY_API_KEY, OTHER_API_KEY, Portal, REFERENCE_SECRET, admin,
    approver,
};

/// Adds a visit of `configuration` for `appointment` and `patient`, keyed the way the launch
/// service keys them, with one AuditEvent a minute from `start`, as the recorder stores them.
async fn add_visit(
    portal: &Portal,
    configuration: &str,
    id: &str,
    appointment: &str,
    patient: &str,
    start: DateTime<Utc>,
    events: usize,
) -> Vec<String> {
    let keys = ReferenceKeys::new(&Secret::new(REFERENCE_SECRET));
    let visit = Visit {
        id: VisitId::new(id).unwrap(),
        configuration_id: ConfigurationId::new(configuration).unwrap(),
        external_meeting_id: format!("vb-{id}"),
        graph_meeting_id: None,
        join_web_url: None,
        organizer_object_id: None,
        practitioner_fhir_id: None,
        appointment_fhir_id: Some(appointment.into()),
        encounter_fhir_id: None,
        patient_fhir_id: Some(patient.into()),
        conference_id: None,
        created_at: start,
        ended_at: None,
        patient_key: Some(keys.patient(configuration, patient).as_str().to_owned()),
        appointment_key: Some(
            keys.appointment(configuration, appointment)
                .as_str()
                .to_owned(),
        ),
        department: None,
    };
    portal.store.upsert_visit(&visit).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..events {
        let event_id = format!("{id}-0000-5000-8000-{n:012}");
        let at = start + Duration::minutes(i64::try_from(n).unwrap());
        let action = if n % 2 == 0 {
            ParticipantAction::Connected
        } else {
            ParticipantAction::Disconnected
        };
        let audit_event = AuditEvent::participant_event(&ParticipantAudit {
            event_id: event_id.clone(),
            action,
            occurred_at: at,
            recorded_at: at,
            participant: AuditAgent::Identifier {
                system: "urn:visitbridge:meeting-participant".into(),
                value: "8:acs:guest-1".into(),
            },
            connector: Reference {
                reference: Some("Device/visitbridge".into()),
                ..Reference::default()
            },
            appointment: Some(appointment.parse().unwrap()),
            encounter: None,
            patient: Some(patient.parse().unwrap()),
        });
        let kind = match action {
            ParticipantAction::Connected => VisitEventKind::ParticipantJoined,
            ParticipantAction::Disconnected => VisitEventKind::ParticipantLeft,
        };
        let event = StoredEvent {
            event_id: EventId::new(&event_id).unwrap(),
            visit_id: visit.id.clone(),
            kind,
            participant: Some(EventParticipant {
                class: ParticipantClass::AcsGuest,
                id: "8:acs:guest-1".into(),
            }),
            occurred_at: at,
            recorded_at: at,
            origin: EventOrigin::Notification,
            audit_event: serde_json::to_value(&audit_event).unwrap(),
        };
        portal.store.record_event(&event, &[]).await.unwrap();
        ids.push(event_id);
    }
    ids
}

struct Answer {
    status: u16,
    content_type: Option<String>,
    www_authenticate: Option<String>,
    body: Value,
}

async fn get(browser: &mut Browser, path: &str, bearer: Option<&str>) -> Answer {
    get_with(browser, path, bearer, &[]).await
}

async fn get_with(
    browser: &mut Browser,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = Request::get(path);
    if let Some(key) = bearer {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let page = browser.request(request.body(Body::empty()).unwrap()).await;
    let body: Value = serde_json::from_str(&page.body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", page.body));
    assert_eq!(
        r4_schema_errors(&body),
        Vec::<String>::new(),
        "{path}: not valid R4: {body}"
    );
    Answer {
        status: page.status,
        content_type: page.content_type.clone(),
        www_authenticate: page
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    }
}

fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().unwrap().to_owned())
}

/// The path and query of one of the endpoint's absolute links.
fn local(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    assert_eq!(url.origin().ascii_serialization(), crate::harness::PUBLIC);
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

#[tokio::test]
async fn an_auditor_searches_pages_and_reads_their_organisations_audit_events_only() {
    let portal = Portal::start().await;
    let mut contoso = portal.signed_in(admin()).await;
    let ours = portal.added_configuration(&mut contoso).await;
    // Three days ago at 08:00 UTC: every visit's events fall on its own day.
    let start = (Utc::now().date_naive() - Duration::days(3))
        .and_hms_opt(8, 0, 0)
        .unwrap()
        .and_utc();
    let a = add_visit(&portal, &ours, "0a0a0a0a", "appt-A", "pat-1", start, 5).await;
    let b = add_visit(
        &portal,
        &ours,
        "0b0b0b0b",
        "appt-B",
        "pat-2",
        start + Duration::days(1),
        2,
    )
    .await;
    let mut client = portal.browser();

    // The CapabilityStatement says what the endpoint does, to anyone.
    let metadata = get(&mut client, "/fhir/metadata", None).await;
    assert_eq!(metadata.status, 200);
    assert_eq!(
        metadata.content_type.as_deref(),
        Some("application/fhir+json")
    );
    assert_eq!(
        metadata.body["rest"][0]["resource"][0]["type"],
        "AuditEvent"
    );

    // Without credentials: an OperationOutcome and the bearer challenge.
    let refused = get(&mut client, "/fhir/AuditEvent", None).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["issue"][0]["code"], "login");
    assert!(
        refused
            .www_authenticate
            .is_some_and(|h| h.starts_with("Bearer"))
    );
    let wrong_key = get(
        &mut client,
        "/fhir/AuditEvent",
        Some("not-a-key-of-anyone-at-all"),
    )
    .await;
    assert_eq!(wrong_key.status, 401);
    // A key for the configurations only does not read AuditEvents.
    let not_audit = get(
        &mut client,
        "/fhir/AuditEvent",
        Some(CONFIGURATIONS_ONLY_API_KEY),
    )
    .await;
    assert_eq!(not_audit.status, 403);

    // By appointment, two a page: the next links lead through all five, in recorded order.
    let mut path = "/fhir/AuditEvent?entity=Appointment/appt-A&_count=2".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = get(&mut client, &path, Some(API_KEY)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.body["type"], "searchset");
        for entry in page.body["entry"].as_array().unwrap() {
            let references: Vec<&str> = entry["resource"]["entity"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["what"]["reference"].as_str())
                .collect();
            assert!(references.contains(&"Appointment/appt-A"), "{entry}");
            let id = entry["resource"]["id"].as_str().unwrap();
            assert_eq!(
                entry["fullUrl"],
                format!("{}/fhir/AuditEvent/{id}", crate::harness::PUBLIC)
            );
        }
        seen.extend(entry_ids(&page.body));
        pages += 1;
        match link(&page.body, "next") {
            Some(next) => path = local(&next),
            None => break,
        }
    }
    assert_eq!(seen, a);
    assert_eq!(pages, 3);

    // By patient, and by a date range: recorded from the second day on, before the fourth.
    let by_patient = get(
        &mut client,
        "/fhir/AuditEvent?patient=Patient/pat-2",
        Some(API_KEY),
    )
    .await;
    assert_eq!(entry_ids(&by_patient.body), b);
    let day = |d: i64| (start + Duration::days(d)).format("%Y-%m-%d").to_string();
    let window = get(
        &mut client,
        &format!("/fhir/AuditEvent?date=ge{}&date=lt{}", day(1), day(3)),
        Some(API_KEY),
    )
    .await;
    assert_eq!(entry_ids(&window.body), b);
    let everything = get(&mut client, "/fhir/AuditEvent", Some(API_KEY)).await;
    assert_eq!(entry_ids(&everything.body).len(), 7);
    // The self link is the search as understood.
    assert!(link(&window.body, "self").unwrap().contains("date=ge"));

    // An admin's portal session reads them too; the named approver (no admin) does not.
    let signed_in = get(&mut contoso, "/fhir/AuditEvent?patient=pat-1", None).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert_eq!(entry_ids(&signed_in.body), a);
    let trailing = get(&mut contoso, "/fhir/AuditEvent/", None).await;
    assert_eq!(trailing.status, 404, "{}", trailing.body);
    let read = get(&mut contoso, &format!("/fhir/AuditEvent/{}", a[0]), None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["id"], a[0].as_str());
    assert_eq!(read.body["resourceType"], "AuditEvent");
    let mut analyst = portal.signed_in(approver()).await;
    let forbidden = get(&mut analyst, "/fhir/AuditEvent", None).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.body["issue"][0]["code"], "forbidden");

    // Another organisation's key finds nothing and reads nothing of ours.
    let theirs = get(
        &mut client,
        "/fhir/AuditEvent?entity=Appointment/appt-A",
        Some(OTHER_API_KEY),
    )
    .await;
    assert_eq!(theirs.status, 200);
    assert!(entry_ids(&theirs.body).is_empty());
    let their_read = get(
        &mut client,
        &format!("/fhir/AuditEvent/{}", a[0]),
        Some(OTHER_API_KEY),
    )
    .await;
    assert_eq!(their_read.status, 404);

    // What the endpoint cannot do is said, not guessed.
    let strict = get_with(
        &mut client,
        "/fhir/AuditEvent?_sort=-date",
        Some(API_KEY),
        &[("prefer", "handling=strict")],
    )
    .await;
    assert_eq!(strict.status, 400);
    assert_eq!(strict.body["issue"][0]["code"], "not-supported");
    let lenient = get(&mut client, "/fhir/AuditEvent?_sort=-date", Some(API_KEY)).await;
    assert_eq!(lenient.status, 200);
    assert!(!link(&lenient.body, "self").unwrap().contains("_sort"));
    let bad_date = get(
        &mut client,
        "/fhir/AuditEvent?date=yesterday",
        Some(API_KEY),
    )
    .await;
    assert_eq!(bad_date.status, 400);
    assert_eq!(bad_date.body["issue"][0]["code"], "invalid");
    let xml = get_with(
        &mut client,
        "/fhir/AuditEvent",
        Some(API_KEY),
        &[("accept", "application/fhir+xml")],
    )
    .await;
    assert_eq!(xml.status, 406);
    let browser_like = get_with(
        &mut client,
        "/fhir/AuditEvent",
        Some(API_KEY),
        &[("accept", "application/fhir+json;q=0.9, */*;q=0.1")],
    )
    .await;
    assert_eq!(browser_like.status, 200);
    let modifier = get(
        &mut client,
        "/fhir/AuditEvent?patient:exact=pat-1",
        Some(API_KEY),
    )
    .await;
    assert_eq!(modifier.status, 400, "a modifier is never ignored");
    let written = {
        let request = Request::post("/fhir/AuditEvent")
            .header("authorization", format!("Bearer {API_KEY}"))
            .header("content-type", "application/fhir+json")
            .body(Body::from("{\"resourceType\":\"AuditEvent\"}"))
            .unwrap();
        client.request(request).await
    };
    assert_eq!(written.status, 405, "{}", written.body);
    assert_eq!(
        written.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET")
    );
    assert!(
        written.body.contains("OperationOutcome"),
        "a write is refused as FHIR: {}",
        written.body
    );
}
