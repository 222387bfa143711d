//! Participant events and the write-back outbox: atomic record, leases, order, dead letters.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use visitbridge_store::*;

use crate::fixtures::*;
use crate::visits::{store_with_configuration, visit};

const LEASE: Duration = Duration::from_secs(60);

fn event(id: &str, visit: &str, kind: VisitEventKind, minute: i64) -> StoredEvent {
    StoredEvent {
        event_id: EventId::new(id).unwrap(),
        visit_id: VisitId::new(visit).unwrap(),
        kind,
        participant: (!matches!(
            kind,
            VisitEventKind::CallStarted | VisitEventKind::CallEnded
        ))
        .then(|| EventParticipant {
            class: ParticipantClass::AcsGuest,
            id: "8:acs:guest-1".into(),
        }),
        occurred_at: at(minute),
        recorded_at: at(minute),
        origin: EventOrigin::Notification,
        audit_event: json!({ "resourceType": "AuditEvent", "meta": { "tag": [ { "code": id } ] } }),
    }
}

fn to(sinks: &[&str]) -> Vec<NewDelivery> {
    sinks
        .iter()
        .map(|s| NewDelivery {
            sink: SinkName::new(*s).unwrap(),
            idempotency_key: format!("key-{s}"),
            // "epic" stands for a connection-status sink: only the latest status counts.
            latest_only: *s == "epic",
        })
        .collect()
}

/// Records `event` with a delivery to each of `sinks`.
async fn record(store: &AnyStore, event: &StoredEvent, sinks: &[&str]) {
    store.record_event(event, &to(sinks)).await.unwrap();
}

async fn with_visit(db: &TestDb) -> AnyStore {
    let (store, cfg) = store_with_configuration(db).await;
    store
        .upsert_visit(&visit("v-1", &cfg, "vb-1"))
        .await
        .unwrap();
    store
        .upsert_visit(&visit("v-2", &cfg, "vb-2"))
        .await
        .unwrap();
    store
}

fn ids(claimed: &[ClaimedDelivery]) -> Vec<(String, String)> {
    claimed
        .iter()
        .map(|c| (c.event.event_id.to_string(), c.item.sink.to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn claim(store: &AnyStore, now: DateTime<Utc>) -> Vec<ClaimedDelivery> {
    store.claim_due(now, LEASE, 100).await.unwrap()
}

async fn an_event_is_stored_once_with_its_outbox_rows(db: TestDb) {
    let store = with_visit(&db).await;
    let e = event("e-1", "v-1", VisitEventKind::ParticipantJoined, 1);
    assert_eq!(
        store
            .record_event(&e, &to(&["epic", "fhir"]))
            .await
            .unwrap(),
        RecordOutcome::Recorded
    );
    // Graph delivers the same notification again: nothing changes, no new deliveries.
    let again = StoredEvent {
        recorded_at: at(2),
        ..e.clone()
    };
    assert_eq!(
        store
            .record_event(&again, &to(&["epic", "fhir", "other"]))
            .await
            .unwrap(),
        RecordOutcome::Duplicate
    );
    assert_eq!(store.get_event(&e.event_id).await.unwrap(), Some(e.clone()));
    assert_eq!(
        store.events_for_visit(&e.visit_id).await.unwrap(),
        vec![e.clone()]
    );
    let items = store.outbox_for_event(&e.event_id).await.unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|i| i.state == OutboxState::Pending && i.attempts == 0)
    );
    assert_eq!(items[0].idempotency_key, "key-epic");
    assert_eq!(
        store.outbox_depth().await.unwrap(),
        OutboxDepth {
            pending: 2,
            dead: 0,
            oldest_pending_at: Some(at(1))
        }
    );
}

async fn an_event_of_an_unknown_visit_is_refused_and_leaves_nothing(db: TestDb) {
    let store = with_visit(&db).await;
    let e = event("e-1", "v-unknown", VisitEventKind::ParticipantJoined, 1);
    assert!(matches!(
        store.record_event(&e, &to(&["epic"])).await,
        Err(StoreError::NotFound { what: "visit" })
    ));
    // A sink listed twice fails the whole transaction: the event is not kept either.
    let e = event("e-2", "v-1", VisitEventKind::ParticipantJoined, 1);
    assert!(
        store
            .record_event(&e, &to(&["epic", "epic"]))
            .await
            .is_err()
    );
    assert_eq!(store.get_event(&e.event_id).await.unwrap(), None);
    assert_eq!(store.outbox_depth().await.unwrap().pending, 0);
}

async fn a_call_ended_event_ends_the_visit(db: TestDb) {
    let store = with_visit(&db).await;
    let e = event("e-end", "v-1", VisitEventKind::CallEnded, 30);
    store.record_event(&e, &[]).await.unwrap();
    let v = store.get_visit(&e.visit_id).await.unwrap().unwrap();
    assert_eq!(v.ended_at, Some(at(30)));
    // An earlier end reported late does not move it back.
    let earlier = event("e-end-0", "v-1", VisitEventKind::CallEnded, 20);
    record(&store, &earlier, &[]).await;
    let v = store.get_visit(&e.visit_id).await.unwrap().unwrap();
    assert_eq!(v.ended_at, Some(at(30)));
}

async fn claims_lease_rows_and_a_crashed_workers_rows_come_back_after_the_lease(db: TestDb) {
    let store = with_visit(&db).await;
    let e = event("e-1", "v-1", VisitEventKind::ParticipantJoined, 1);
    record(&store, &e, &["fhir"]).await;
    let now = at(2);
    let first = claim(&store, now).await;
    assert_eq!(ids(&first), pairs(&[("e-1", "fhir")]));
    assert_eq!(first[0].item.attempts, 1);
    assert_eq!(first[0].visit.id.as_str(), "v-1");
    assert_eq!(first[0].event.kind, VisitEventKind::ParticipantJoined);
    // Leased: nobody else gets it until the lease runs out.
    assert!(
        claim(&store, now + chrono::Duration::seconds(59))
            .await
            .is_empty()
    );
    // The worker "crashed": after the lease the row is due again, as attempt 2.
    let second = claim(&store, now + chrono::Duration::seconds(60)).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].item.attempts, 2);
    // The first worker wakes up late: its failure report no longer applies (fenced)...
    assert!(
        !store
            .mark_failed(first[0].item.id, 1, at(10), "late")
            .await
            .unwrap()
    );
    assert!(!store.mark_dead(first[0].item.id, 1, "late").await.unwrap());
    // ... nor its success: the row's successor must wait for the current holder.
    assert!(
        !store
            .mark_delivered(first[0].item.id, 1, at(3))
            .await
            .unwrap()
    );
    // ... while the current claim's does.
    assert!(
        store
            .mark_delivered(second[0].item.id, second[0].item.attempts, at(3))
            .await
            .unwrap()
    );
    let item = &store
        .outbox_for_event(&second[0].event.event_id)
        .await
        .unwrap()[0];
    assert_eq!(item.state, OutboxState::Delivered);
    assert_eq!(item.delivered_at, Some(at(3)));
    assert!(claim(&store, at(100)).await.is_empty());
}

async fn a_live_worker_renews_its_leases_and_a_stale_one_cannot(db: TestDb) {
    let store = with_visit(&db).await;
    record(
        &store,
        &event("e-1", "v-1", VisitEventKind::ParticipantJoined, 1),
        &["fhir"],
    )
    .await;
    record(
        &store,
        &event("e-2", "v-2", VisitEventKind::ParticipantJoined, 1),
        &["fhir"],
    )
    .await;
    let now = at(2);
    let claimed = claim(&store, now).await;
    assert_eq!(claimed.len(), 2);
    let held: Vec<_> = claimed
        .iter()
        .map(|c| (c.item.id, c.item.attempts))
        .collect();
    // Renewed before the lease ran out: nobody else gets the rows after the first lease's end.
    let renewed = store
        .extend_leases(&held, now + chrono::Duration::seconds(120))
        .await
        .unwrap();
    assert_eq!(renewed, 2);
    assert!(
        claim(&store, now + chrono::Duration::seconds(90))
            .await
            .is_empty()
    );
    // One row finishes; the other's worker stops renewing (it died): it comes back after the
    // renewed lease, as attempt 2, and the dead worker's renewal no longer applies (fenced).
    assert!(
        store
            .mark_delivered(held[0].0, held[0].1, at(3))
            .await
            .unwrap()
    );
    let again = claim(&store, now + chrono::Duration::seconds(120)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].item.id, held[1].0);
    assert_eq!(again[0].item.attempts, 2);
    assert_eq!(
        store
            .extend_leases(&held, now + chrono::Duration::seconds(600))
            .await
            .unwrap(),
        0,
        "neither the delivered row nor the re-claimed one"
    );
    assert_eq!(store.extend_leases(&[], at(100)).await.unwrap(), 0);
}

async fn failed_rows_wait_for_their_next_attempt(db: TestDb) {
    let store = with_visit(&db).await;
    let e = event("e-1", "v-1", VisitEventKind::ParticipantJoined, 1);
    record(&store, &e, &["epic"]).await;
    let c = claim(&store, at(1)).await.remove(0);
    assert!(
        store
            .mark_failed(
                c.item.id,
                c.item.attempts,
                at(5),
                "epic answered 503\nretry"
            )
            .await
            .unwrap()
    );
    assert!(claim(&store, at(4)).await.is_empty());
    let again = claim(&store, at(5)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].item.attempts, 2);
    assert_eq!(
        again[0].item.last_error.as_deref(),
        Some("epic answered 503 retry")
    );
}

async fn rows_of_one_visit_and_sink_go_out_in_event_order(db: TestDb) {
    let store = with_visit(&db).await;
    // Recorded out of order: the leave (minute 5) before the join (minute 1).
    let left = event("leave", "v-1", VisitEventKind::ParticipantLeft, 5);
    record(&store, &left, &["epic", "fhir"]).await;
    let joined = event("join", "v-1", VisitEventKind::ParticipantJoined, 1);
    record(&store, &joined, &["epic", "fhir"]).await;
    let other = event("other", "v-2", VisitEventKind::ParticipantJoined, 3);
    record(&store, &other, &["epic"]).await;
    let first = claim(&store, at(10)).await;
    let mut got = ids(&first);
    got.sort();
    assert_eq!(
        got,
        pairs(&[("join", "epic"), ("join", "fhir"), ("other", "epic")])
    );
    // The leave is held back while the join is in flight, and while it waits for a retry.
    assert!(claim(&store, at(10)).await.is_empty());
    let join_epic = first
        .iter()
        .find(|c| ids(std::slice::from_ref(*c)) == pairs(&[("join", "epic")]))
        .unwrap();
    store
        .mark_failed(join_epic.item.id, 1, at(20), "down")
        .await
        .unwrap();
    for c in &first {
        if c.item.id != join_epic.item.id {
            store
                .mark_delivered(c.item.id, c.item.attempts, at(10))
                .await
                .unwrap();
        }
    }
    let leave_fhir = claim(&store, at(11)).await;
    assert_eq!(ids(&leave_fhir), pairs(&[("leave", "fhir")]));
    store
        .mark_delivered(leave_fhir[0].item.id, leave_fhir[0].item.attempts, at(11))
        .await
        .unwrap();
    // Another participant of the same visit is not held back.
    let other_guest = StoredEvent {
        participant: Some(EventParticipant {
            class: ParticipantClass::OrganizationUser,
            id: "staff-1".into(),
        }),
        ..event("staff", "v-1", VisitEventKind::ParticipantJoined, 7)
    };
    record(&store, &other_guest, &["epic"]).await;
    let staff = claim(&store, at(12)).await;
    assert_eq!(ids(&staff), pairs(&[("staff", "epic")]));
    store
        .mark_delivered(staff[0].item.id, staff[0].item.attempts, at(12))
        .await
        .unwrap();
    // A dead join does not block the leave forever.
    let retry = claim(&store, at(20)).await.remove(0);
    assert_eq!(
        ids(std::slice::from_ref(&retry)),
        pairs(&[("join", "epic")])
    );
    store.mark_dead(retry.item.id, 2, "gave up").await.unwrap();
    assert_eq!(
        ids(&claim(&store, at(21)).await),
        pairs(&[("leave", "epic")])
    );
}

async fn an_old_event_arriving_after_a_newer_one_was_delivered_is_superseded_for_latest_only_sinks(
    db: TestDb,
) {
    let store = with_visit(&db).await;
    // The guest's leave (minute 5) is recorded and delivered everywhere.
    let left = event("leave", "v-1", VisitEventKind::ParticipantLeft, 5);
    record(&store, &left, &["epic", "fhir"]).await;
    for c in claim(&store, at(6)).await {
        assert!(
            store
                .mark_delivered(c.item.id, c.item.attempts, at(6))
                .await
                .unwrap()
        );
    }
    // Then the join (minute 1) arrives late (reconciliation, out-of-order delivery); and the
    // same guest's join at minute 8 (a rejoin), and another visit's older join.
    let joined = event("join", "v-1", VisitEventKind::ParticipantJoined, 1);
    record(&store, &joined, &["epic", "fhir"]).await;
    let rejoined = event("rejoin", "v-1", VisitEventKind::ParticipantJoined, 8);
    record(&store, &rejoined, &["epic"]).await;
    let other = event("other", "v-2", VisitEventKind::ParticipantJoined, 1);
    record(&store, &other, &["epic"]).await;
    let mut got = ids(&claim(&store, at(9)).await);
    got.sort();
    // The audit trail still gets the old join; the status sink does not (it would say
    // "connected" after "disconnected"); a newer event and other visits are not affected.
    assert_eq!(
        got,
        pairs(&[("join", "fhir"), ("other", "epic"), ("rejoin", "epic")])
    );
    let join = store
        .outbox_for_event(&EventId::new("join").unwrap())
        .await
        .unwrap();
    let epic = join.iter().find(|i| i.sink.as_str() == "epic").unwrap();
    assert_eq!(epic.state, OutboxState::Superseded);
    assert_eq!(epic.state.as_str(), "superseded");
    assert_eq!(epic.attempts, 0, "never sent");
    assert!(epic.last_error.as_deref().unwrap().contains("superseded"));
    // Final: neither pending nor dead, not claimed later, not re-drivable.
    let depth = store.outbox_depth().await.unwrap();
    assert_eq!(depth.dead, 0);
    assert_eq!(depth.pending, 3, "the three claimed rows");
    assert!(!store.redrive(epic.id, at(9)).await.unwrap());
    for c in claim(&store, at(9)).await {
        assert_ne!(c.item.id, epic.id);
    }
}

async fn dead_letters_are_listed_counted_and_redriven(db: TestDb) {
    let store = with_visit(&db).await;
    let e = event("e-1", "v-1", VisitEventKind::ParticipantJoined, 1);
    record(&store, &e, &["epic"]).await;
    let c = claim(&store, at(1)).await.remove(0);
    assert!(
        store
            .mark_dead(c.item.id, 1, "epic answered 400")
            .await
            .unwrap()
    );
    let dead = store.list_dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].state, OutboxState::Dead);
    assert_eq!(dead[0].last_error.as_deref(), Some("epic answered 400"));
    assert_eq!(
        store.outbox_depth().await.unwrap(),
        OutboxDepth {
            pending: 0,
            dead: 1,
            oldest_pending_at: None
        }
    );
    assert!(claim(&store, at(100)).await.is_empty());

    assert!(store.redrive(c.item.id, at(50)).await.unwrap());
    assert!(
        !store.redrive(c.item.id, at(50)).await.unwrap(),
        "only dead rows"
    );
    let again = claim(&store, at(50)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].item.attempts, 1, "attempts start over");
    store
        .mark_delivered(again[0].item.id, again[0].item.attempts, at(50))
        .await
        .unwrap();
    assert!(store.list_dead(10).await.unwrap().is_empty());

    assert_eq!(store.purge_delivered(at(50)).await.unwrap(), 0);
    assert_eq!(store.purge_delivered(at(51)).await.unwrap(), 1);
}

async fn a_visits_outbox_rows_are_read_together_with_their_states(db: TestDb) {
    let store = with_visit(&db).await;
    let joined = event("e-1", "v-1", VisitEventKind::ParticipantJoined, 1);
    let left = event("e-2", "v-1", VisitEventKind::ParticipantLeft, 2);
    let other = event("e-3", "v-2", VisitEventKind::ParticipantJoined, 1);
    for e in [&joined, &left, &other] {
        record(&store, e, &["epic", "fhir"]).await;
    }
    // The join reaches both sinks; then the leave (held back until the join is out) fails for
    // good at one of them and is still on its way to the other.
    for now in [at(3), at(4)] {
        for c in claim(&store, now).await {
            match (c.event.event_id.as_str(), c.item.sink.as_str()) {
                ("e-1", _) => assert!(
                    store
                        .mark_delivered(c.item.id, c.item.attempts, at(3))
                        .await
                        .unwrap()
                ),
                ("e-2", "epic") => assert!(
                    store
                        .mark_dead(c.item.id, c.item.attempts, "epic answered 400")
                        .await
                        .unwrap()
                ),
                _ => {}
            }
        }
    }

    let rows = store
        .outbox_for_visit(&VisitId::new("v-1").unwrap())
        .await
        .unwrap();
    let seen: Vec<(&str, &str, OutboxState)> = rows
        .iter()
        .map(|r| (r.event_id.as_str(), r.sink.as_str(), r.state))
        .collect();
    assert_eq!(
        seen,
        [
            ("e-1", "epic", OutboxState::Delivered),
            ("e-1", "fhir", OutboxState::Delivered),
            ("e-2", "epic", OutboxState::Dead),
            ("e-2", "fhir", OutboxState::Pending),
        ],
        "only v-1's rows, in the order they were enqueued"
    );
    assert!(rows.iter().all(|r| r.visit_id.as_str() == "v-1"));
    assert_eq!(rows[2].last_error.as_deref(), Some("epic answered 400"));
    assert_eq!(rows[0].delivered_at, Some(at(3)));
    // The same rows as reading them event by event.
    let mut by_event = store.outbox_for_event(&joined.event_id).await.unwrap();
    by_event.extend(store.outbox_for_event(&left.event_id).await.unwrap());
    assert_eq!(rows, by_event);
    assert!(
        store
            .outbox_for_visit(&VisitId::new("v-unknown").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn events_and_outbox_survive_reopening_and_events_are_immutable(db: TestDb) {
    let store = with_visit(&db).await;
    let e = event("e-1", "v-1", VisitEventKind::ParticipantJoined, 1);
    record(&store, &e, &["fhir"]).await;
    // Claimed, then the process dies.
    assert_eq!(claim(&store, at(1)).await.len(), 1);
    drop(store);

    let reopened = db.open().await;
    assert_eq!(reopened.get_event(&e.event_id).await.unwrap(), Some(e));
    assert!(claim(&reopened, at(1)).await.is_empty(), "still leased");
    assert_eq!(
        claim(&reopened, at(2)).await.len(),
        1,
        "due after the lease"
    );

    let err = db
        .execute_raw("UPDATE visit_events SET kind = 'call-ended'")
        .await
        .unwrap_err();
    assert!(err.contains("immutable"), "{err}");
    // The retention purge's change is the only one allowed, and only on its own.
    let null = match db.backend {
        Backend::Sqlite => "'null'",
        Backend::Postgres => "'null'::jsonb",
    };
    let err = db
        .execute_raw(&format!(
            "UPDATE visit_events SET audit_event = {null}, occurred_at = 0"
        ))
        .await
        .unwrap_err();
    assert!(err.contains("immutable"), "{err}");
    let err = db
        .execute_raw("UPDATE visit_events SET audit_event = '{\"resourceType\": \"Basic\"}'")
        .await
        .unwrap_err();
    assert!(err.contains("immutable"), "{err}");
    assert_eq!(
        db.execute_raw(&format!("UPDATE visit_events SET audit_event = {null}"))
            .await,
        Ok(1)
    );
}

async fn the_events_of_many_visits_are_read_at_once_without_their_bodies(db: TestDb) {
    let store = with_visit(&db).await;
    let first = event("e-1", "v-1", VisitEventKind::ParticipantJoined, 2);
    let earlier = event("e-2", "v-1", VisitEventKind::CallStarted, 1);
    let other = event("e-3", "v-2", VisitEventKind::ParticipantJoined, 3);
    for e in [&first, &earlier, &other] {
        record(&store, e, &[]).await;
    }
    let v1 = VisitId::new("v-1").unwrap();
    let v2 = VisitId::new("v-2").unwrap();
    let unknown = VisitId::new("v-unknown").unwrap();
    let by_visit = store
        .event_summaries_for_visits(&[v1.clone(), v2.clone(), unknown.clone()])
        .await
        .unwrap();
    assert_eq!(by_visit.len(), 2);
    // Each visit's events as `events_for_visit` reads them (by time), without the AuditEvent.
    let summary = |e: &StoredEvent| EventSummary {
        event_id: e.event_id.clone(),
        visit_id: e.visit_id.clone(),
        kind: e.kind,
        participant: e.participant.clone(),
        occurred_at: e.occurred_at,
        origin: e.origin,
    };
    assert_eq!(by_visit[&v1], vec![summary(&earlier), summary(&first)]);
    let full: Vec<EventSummary> = store
        .events_for_visit(&v1)
        .await
        .unwrap()
        .iter()
        .map(summary)
        .collect();
    assert_eq!(by_visit[&v1], full);
    assert_eq!(by_visit[&v2], vec![summary(&other)]);
    assert!(!by_visit.contains_key(&unknown));
    let only_v2 = store
        .event_summaries_for_visits(std::slice::from_ref(&v2))
        .await
        .unwrap();
    assert_eq!(only_v2.keys().collect::<Vec<_>>(), vec![&v2]);
    assert!(
        store
            .event_summaries_for_visits(&[])
            .await
            .unwrap()
            .is_empty()
    );
}

crate::on_both_backends!(
    an_old_event_arriving_after_a_newer_one_was_delivered_is_superseded_for_latest_only_sinks,
    an_event_is_stored_once_with_its_outbox_rows,
    an_event_of_an_unknown_visit_is_refused_and_leaves_nothing,
    a_call_ended_event_ends_the_visit,
    claims_lease_rows_and_a_crashed_workers_rows_come_back_after_the_lease,
    a_live_worker_renews_its_leases_and_a_stale_one_cannot,
    failed_rows_wait_for_their_next_attempt,
    rows_of_one_visit_and_sink_go_out_in_event_order,
    dead_letters_are_listed_counted_and_redriven,
    a_visits_outbox_rows_are_read_together_with_their_states,
    events_and_outbox_survive_reopening_and_events_are_immutable,
    the_events_of_many_visits_are_read_at_once_without_their_bodies,
);

/// Where several processes share the database, each hears of the events the others record, once
/// they commit, and of nothing else (a repeat stores nothing and says nothing). The feed first
/// says "anything may have changed" once it listens (what was committed before was not heard).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_hear_of_each_others_new_events() {
    let db = TestDb::postgres().await;
    let recorder = with_visit(&db).await;
    let listener = db.open().await;
    let mut changes = listener
        .visit_changes()
        .expect("PostgreSQL has a change feed");
    let next = async |changes: &mut tokio::sync::broadcast::Receiver<VisitChange>| {
        tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .expect("heard in time")
            .unwrap()
    };
    assert_eq!(next(&mut changes).await, VisitChange::Unknown, "listening");

    let first = event("e-1", "v-1", VisitEventKind::ParticipantJoined, 1);
    record(&recorder, &first, &["fhir"]).await;
    assert_eq!(
        next(&mut changes).await,
        VisitChange::Visit(VisitId::new("v-1").unwrap())
    );

    // A repeat and a refused event say nothing; the next new one names its visit.
    record(&recorder, &first, &["fhir"]).await;
    assert!(
        recorder
            .record_event(
                &event("e-x", "no-such-visit", VisitEventKind::ParticipantJoined, 2),
                &to(&["fhir"])
            )
            .await
            .is_err()
    );
    record(
        &recorder,
        &event("e-2", "v-2", VisitEventKind::ParticipantLeft, 3),
        &["fhir"],
    )
    .await;
    assert_eq!(
        next(&mut changes).await,
        VisitChange::Visit(VisitId::new("v-2").unwrap())
    );
    assert!(changes.try_recv().is_err(), "nothing else was heard");

    // Its own recordings are not news to a store (its process has shown them already).
    record(
        &listener,
        &event("e-3", "v-1", VisitEventKind::ParticipantLeft, 4),
        &["fhir"],
    )
    .await;
    record(
        &recorder,
        &event("e-4", "v-2", VisitEventKind::ParticipantJoined, 5),
        &["fhir"],
    )
    .await;
    assert_eq!(
        next(&mut changes).await,
        VisitChange::Visit(VisitId::new("v-2").unwrap()),
        "the other store's, not its own"
    );
}

#[tokio::test]
async fn sqlite_has_no_change_feed_its_one_process_hears_itself() {
    let db = TestDb::sqlite().await;
    assert!(db.open().await.visit_changes().is_none());
}
