//! An auditor's search of the AuditEvents we keep: by configuration, patient or appointment key
//! and recorded time, in a stable order that pages by cursor, never a purged one.

use serde_json::json;
use visitbridge_store::*;

use crate::fixtures::*;
use crate::visits::{store_with_configuration, visit};

fn keyed(id: &str, cfg: &visitbridge_approval::ConfigurationId) -> Visit {
    Visit {
        patient_key: Some(format!("pk-{id}")),
        appointment_key: Some(format!("ak-{id}")),
        department: None,
        ..visit(id, cfg, &format!("vb-{id}"))
    }
}

async fn record(store: &AnyStore, visit: &str, event: &str, kind: VisitEventKind, minute: i64) {
    let stored = StoredEvent {
        event_id: EventId::new(event).unwrap(),
        visit_id: VisitId::new(visit).unwrap(),
        kind,
        participant: None,
        occurred_at: at(minute),
        recorded_at: at(minute),
        origin: EventOrigin::Notification,
        audit_event: json!({ "resourceType": "AuditEvent", "meta": { "tag": [{ "code": event }] } }),
    };
    store.record_event(&stored, &[]).await.unwrap();
}

fn ids(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

async fn the_search_filters_orders_pages_and_skips_purged_audit_events(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    for v in ["a", "b", "old"] {
        store.upsert_visit(&keyed(v, &cfg)).await.unwrap();
    }
    use VisitEventKind::*;
    // Two events at minute 3: the id decides.
    for (visit, event, kind, minute) in [
        ("a", "a-1", CallStarted, 1),
        ("b", "b-1", CallStarted, 2),
        ("a", "a-2", ParticipantJoined, 3),
        ("b", "b-2", ParticipantJoined, 3),
        ("a", "a-3", CallEnded, 5),
        ("old", "old-1", CallEnded, 0),
    ] {
        record(&store, visit, event, kind, minute).await;
    }
    // Past retention: its AuditEvent is gone, and so is it from every search.
    store.purge_references(at(1), at(1), 100).await.unwrap();

    let all = AuditEventFilter {
        configurations: vec![cfg.clone()],
        ..AuditEventFilter::default()
    };
    let found = store.search_audit_events(&all, 100).await.unwrap();
    assert_eq!(ids(&found), ["a-1", "b-1", "a-2", "b-2", "a-3"]);
    assert_eq!(found[0].audit_event["resourceType"], "AuditEvent");

    // Paging: each page starts after the last one's last event.
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .search_audit_events(
                &AuditEventFilter {
                    after: after.clone(),
                    ..all.clone()
                },
                2,
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.recorded_at, last.event_id.clone()));
        pages.push(ids(&page).join(","));
    }
    assert_eq!(pages, ["a-1,b-1", "a-2,b-2", "a-3"]);

    let by_appointment = AuditEventFilter {
        appointment_keys: vec!["ak-a".into()],
        ..all.clone()
    };
    assert_eq!(
        ids(&store
            .search_audit_events(&by_appointment, 100)
            .await
            .unwrap()),
        ["a-1", "a-2", "a-3"]
    );
    let by_patient = AuditEventFilter {
        patient_keys: vec!["pk-b".into(), "pk-nobody".into()],
        ..all.clone()
    };
    assert_eq!(
        ids(&store.search_audit_events(&by_patient, 100).await.unwrap()),
        ["b-1", "b-2"]
    );
    let window = AuditEventFilter {
        recorded_from: Some(at(2)),
        recorded_before: Some(at(5)),
        ..all.clone()
    };
    assert_eq!(
        ids(&store.search_audit_events(&window, 100).await.unwrap()),
        ["b-1", "a-2", "b-2"]
    );
    // Another organisation's configuration sees none of them; no configuration, nothing.
    let tenant = with_tenant(&store, "other").await;
    let other = create(
        &store,
        &tenant,
        "cfg-other",
        "https://other.example/fhir",
        visitbridge_approval::Environment::Test,
    )
    .await;
    let theirs = AuditEventFilter {
        configurations: vec![other.id().clone()],
        ..AuditEventFilter::default()
    };
    assert!(
        store
            .search_audit_events(&theirs, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .search_audit_events(&AuditEventFilter::default(), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

crate::on_both_backends!(the_search_filters_orders_pages_and_skips_purged_audit_events);
