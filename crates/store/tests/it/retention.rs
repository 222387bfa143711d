//! The retention purge: AuditEvents and clear patient ids go once nothing needs them, the keyed
//! hashes and event summaries stay, and nothing of them lingers in a SQLite file.

use std::time::Duration;

use serde_json::json;
use visitbridge_store::*;

use crate::fixtures::*;
use crate::visits::{store_with_configuration, visit};

const PATIENT: &str = "pat-secret-7f3a";
const APPOINTMENT: &str = "appt-secret-91c2";
const ENCOUNTER: &str = "enc-secret-55d0";
const CSN: &str = "csn-secret-4471";

fn vid(id: &str) -> VisitId {
    VisitId::new(id).unwrap()
}

/// A visit with the EHR's ids in clear, keyed or not.
fn with_ids(id: &str, cfg: &visitbridge_approval::ConfigurationId, keyed: bool) -> Visit {
    Visit {
        appointment_fhir_id: Some(format!("{APPOINTMENT}-{id}")),
        encounter_fhir_id: Some(format!("{ENCOUNTER}-{id}")),
        patient_fhir_id: Some(format!("{PATIENT}-{id}")),
        conference_id: Some(format!("{CSN}-{id}")),
        patient_key: keyed.then(|| format!("rk1-patient-{id}")),
        appointment_key: keyed.then(|| format!("rk1-appointment-{id}")),
        department: None,
        ..visit(id, cfg, &format!("vb-{id}"))
    }
}

/// Records an event of `visit` at `minute` whose AuditEvent names its patient, for sink `fhir`.
async fn record(store: &AnyStore, visit: &str, n: u32, kind: VisitEventKind, minute: i64) {
    let event = StoredEvent {
        event_id: EventId::new(format!("{visit}-e{n}")).unwrap(),
        visit_id: vid(visit),
        kind,
        participant: None,
        occurred_at: at(minute),
        recorded_at: at(minute),
        origin: EventOrigin::Notification,
        audit_event: json!({
            "resourceType": "AuditEvent",
            "entity": [{ "what": { "reference": format!("Patient/{PATIENT}-{visit}") } }],
        }),
    };
    let delivery = NewDelivery {
        sink: SinkName::new("fhir").unwrap(),
        idempotency_key: format!("{visit}-e{n}"),
        latest_only: false,
    };
    store.record_event(&event, &[delivery]).await.unwrap();
}

/// Delivers every due row at `minute`, except those of `keep_pending`, which fail (and stay).
async fn deliver(store: &AnyStore, minute: i64, keep_pending: &str) {
    loop {
        let claimed = store
            .claim_due(at(minute), Duration::from_secs(60), 100)
            .await
            .unwrap();
        if claimed.is_empty() {
            return;
        }
        deliver_claimed(store, minute, keep_pending, claimed).await;
    }
}

async fn deliver_claimed(
    store: &AnyStore,
    minute: i64,
    keep_pending: &str,
    claimed: Vec<ClaimedDelivery>,
) {
    for c in claimed {
        if c.visit.id.as_str() == keep_pending {
            store
                .mark_failed(c.item.id, c.item.attempts, at(minute + 1000), "503")
                .await
                .unwrap();
        } else {
            store
                .mark_delivered(c.item.id, c.item.attempts, at(minute))
                .await
                .unwrap();
        }
    }
}

async fn bodies(store: &AnyStore, visit: &str) -> Vec<serde_json::Value> {
    store
        .events_for_visit(&vid(visit))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.audit_event)
        .collect()
}

async fn visits_past_retention_lose_audit_events_and_clear_ids_but_keep_keys_and_summaries(
    db: TestDb,
) {
    let (store, cfg) = store_with_configuration(&db).await;
    // done: ended at 5, delivered. retrying: ended at 5, a row still pending. unkeyed: ended at
    // 5, delivered, but its ids have no keyed hash yet. recent: ended at 100. reconciling:
    // ended at 5, its attendance report still to read.
    for (id, keyed) in [
        ("done", true),
        ("retrying", true),
        ("unkeyed", false),
        ("recent", true),
        ("reconciling", true),
        ("open", true),
    ] {
        // open: launched at 30, its call started and never ended.
        let created = if id == "open" { 30 } else { 0 };
        let visit = Visit {
            created_at: at(created),
            ..with_ids(id, &cfg, keyed)
        };
        store.upsert_visit(&visit).await.unwrap();
        record(&store, id, 1, VisitEventKind::CallStarted, created + 1).await;
        if id != "open" {
            let end = if id == "recent" { 100 } else { 5 };
            record(&store, id, 2, VisitEventKind::CallEnded, end).await;
        }
    }
    store
        .schedule_reconciliation(&vid("reconciling"), at(200))
        .await
        .unwrap();
    deliver(&store, 101, "retrying").await;
    assert_eq!(
        ids_of(store.visits_without_keys(10).await.unwrap()),
        ["unkeyed"]
    );

    // While the meetings are watched (created after the cut-off of the watch), a call that
    // ended may still be rejoined: nothing goes.
    assert_eq!(
        store.purge_references(at(50), at(0), 100).await.unwrap(),
        PurgedReferences::default()
    );
    let purged = store.purge_references(at(50), at(10), 100).await.unwrap();
    assert_eq!(
        purged,
        PurgedReferences {
            visits: 1,
            events: 4
        },
        "done loses its ids and AuditEvents, unkeyed only its AuditEvents"
    );
    let done = store.get_visit(&vid("done")).await.unwrap().unwrap();
    assert_eq!(
        (
            &done.patient_fhir_id,
            &done.appointment_fhir_id,
            &done.encounter_fhir_id,
            &done.conference_id
        ),
        (&None, &None, &None, &None)
    );
    assert_eq!(done.patient_key.as_deref(), Some("rk1-patient-done"));
    assert_eq!(
        done.appointment_key.as_deref(),
        Some("rk1-appointment-done")
    );
    assert_eq!(bodies(&store, "done").await, [json!(null), json!(null)]);
    // The events themselves stay, for reports.
    let summaries = store
        .event_summaries_for_visits(&[vid("done")])
        .await
        .unwrap();
    assert_eq!(summaries[&vid("done")].len(), 2);

    let unkeyed = store.get_visit(&vid("unkeyed")).await.unwrap().unwrap();
    assert!(
        unkeyed.patient_fhir_id.is_some(),
        "clear ids without keys stay until keyed"
    );
    assert_eq!(bodies(&store, "unkeyed").await, [json!(null), json!(null)]);
    // A call whose end was never heard is kept while its meeting is watched.
    for kept in ["retrying", "recent", "reconciling", "open"] {
        let v = store.get_visit(&vid(kept)).await.unwrap().unwrap();
        assert!(v.patient_fhir_id.is_some(), "{kept} lost its ids");
        assert!(
            bodies(&store, kept).await.iter().all(|b| !b.is_null()),
            "{kept} lost its AuditEvents"
        );
    }

    // Keyed now (as the launch service does), it is purged at the next run; a run with nothing
    // to do changes nothing.
    store
        .upsert_visit(&Visit {
            patient_key: Some("rk1-patient-unkeyed".into()),
            appointment_key: Some("rk1-appointment-unkeyed".into()),
            department: None,
            ..unkeyed
        })
        .await
        .unwrap();
    assert!(store.visits_without_keys(10).await.unwrap().is_empty());
    assert_eq!(
        store.purge_references(at(50), at(10), 100).await.unwrap(),
        PurgedReferences {
            visits: 1,
            events: 0
        }
    );
    assert_eq!(
        store.purge_references(at(50), at(10), 100).await.unwrap(),
        PurgedReferences::default()
    );

    // Given up on (dead letters), the retrying visit is purged too, and a dead letter whose
    // AuditEvent was purged has nothing to re-drive.
    let mut dead = Vec::new();
    loop {
        let claimed = store
            .claim_due(at(2000), Duration::from_secs(60), 100)
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        for c in claimed {
            assert_eq!(c.visit.id.as_str(), "retrying");
            store
                .mark_dead(c.item.id, c.item.attempts, "410")
                .await
                .unwrap();
            dead.push(c.item.id);
        }
    }
    assert_eq!(dead.len(), 2);
    let purged = store.purge_references(at(50), at(10), 100).await.unwrap();
    assert_eq!(purged.visits, 1, "retrying, now dead, is purged");
    assert!(!store.redrive(dead[0], at(2001)).await.unwrap());
    assert_eq!(
        store.purge_references(at(50), at(31), 100).await.unwrap(),
        PurgedReferences {
            visits: 1,
            events: 1
        },
        "open, no longer watched"
    );

    if let Some(dir) = db.dir() {
        // What was purged is not in the file's free space or the write-ahead log either.
        let mut bytes = Vec::new();
        for name in ["vb.sqlite", "vb.sqlite-wal"] {
            if let Ok(file) = std::fs::read(dir.join(name)) {
                bytes.extend(file);
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("rk1-patient-done"), "read the database");
        for id in ["done", "unkeyed", "retrying"] {
            for secret in [PATIENT, APPOINTMENT, ENCOUNTER, CSN] {
                let clear = format!("{secret}-{id}");
                assert!(!text.contains(&clear), "{clear} is still in the file");
            }
        }
        assert!(text.contains(&format!("{PATIENT}-recent")));
    }
}

fn ids_of(visits: Vec<Visit>) -> Vec<String> {
    visits.into_iter().map(|v| v.id.to_string()).collect()
}

crate::on_both_backends!(
    visits_past_retention_lose_audit_events_and_clear_ids_but_keep_keys_and_summaries
);
