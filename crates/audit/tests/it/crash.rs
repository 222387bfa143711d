//! A crash between storing and delivering loses nothing; a crash after delivering repeats
//! harmlessly.

use std::sync::Arc;

use visitbridge_audit::{AuditEventMode, DeliveryWorker, SinkConfig, SinkResolver};
use visitbridge_graph::EventKind;
use visitbridge_store::{AuditRepo, OutboxRepo, OutboxState, SqliteStore};

use crate::*;

/// Everything in memory is gone; the file and the configuration (sinks) remain.
async fn restart(
    path: &std::path::Path,
    sinks: Arc<ConfiguredSinks>,
) -> (Arc<SqliteStore>, DeliveryWorker) {
    let store = Arc::new(SqliteStore::open(path).await.unwrap());
    let worker = DeliveryWorker::new(store.clone(), sinks, fast_policy());
    (store, worker)
}

#[tokio::test]
async fn a_crash_after_recording_loses_nothing() {
    let env = Env::new(Sinks::Epic).await;
    let recorded = env
        .recorder()
        .record(
            &env.visit,
            &person(EventKind::ParticipantJoined, 5, guest("p")),
        )
        .await
        .unwrap();
    // The process dies before any worker ran.
    let Env {
        dir,
        store,
        sinks,
        epic,
        ..
    } = env;
    drop(store);

    let (store, worker) = restart(&dir.path().join("vb.sqlite"), sinks).await;
    assert!(store.get_event(&recorded.event_id).await.unwrap().is_some());
    assert_eq!(drain(&worker).await.delivered, 1);
    assert_eq!(epic.accepted().len(), 1);
}

#[tokio::test]
async fn rows_a_dead_worker_had_claimed_come_back_after_the_lease() {
    let env = Env::new(Sinks::Epic).await;
    env.recorder()
        .record(
            &env.visit,
            &person(EventKind::ParticipantJoined, 5, guest("p")),
        )
        .await
        .unwrap();
    // A worker claims the row and dies before calling Epic.
    let now = Utc::now();
    let claimed = env
        .store
        .claim_due(now, fast_policy().lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let Env {
        dir,
        store,
        sinks,
        epic,
        ..
    } = env;
    drop(store);

    let (store, worker) = restart(&dir.path().join("vb.sqlite"), sinks).await;
    // Still leased to the dead worker...
    assert_eq!(worker.run_once(now).await.unwrap().claimed, 0);
    // ... until the lease runs out.
    let later = now + chrono::Duration::from_std(fast_policy().lease).unwrap();
    let report = worker.run_once(later).await.unwrap();
    assert_eq!(report.delivered, 1);
    assert_eq!(epic.accepted().len(), 1);
    let item = &store
        .outbox_for_event(&claimed[0].event.event_id)
        .await
        .unwrap()[0];
    assert_eq!((item.state, item.attempts), (OutboxState::Delivered, 2));
}

#[tokio::test]
async fn a_crash_after_delivering_but_before_marking_repeats_without_a_second_record() {
    let env = Env::new(Sinks::Epic).await;
    env.set_sinks(&[
        epic_sink(env.epic.interconnect_base()),
        SinkConfig::FhirAuditEvent {
            mode: AuditEventMode::ClientAssignedId,
        },
    ]);
    env.recorder()
        .record(
            &env.visit,
            &person(EventKind::ParticipantJoined, 5, guest("p")),
        )
        .await
        .unwrap();
    // The worker delivers both rows, then dies before marking them.
    let now = Utc::now();
    let claimed = env
        .store
        .claim_due(now, fast_policy().lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let sinks = env.sinks.sinks_for(&env.visit.configuration_id);
    for c in &claimed {
        let sink = sinks.iter().find(|s| s.name() == &c.item.sink).unwrap();
        sink.deliver(&c.item, &c.event, &c.visit).await.unwrap();
    }
    let Env {
        dir,
        store,
        sinks,
        epic,
        fhir,
        fhir_server,
        ..
    } = env;
    drop(store);

    let (_store, worker) = restart(&dir.path().join("vb.sqlite"), sinks).await;
    let later = now + chrono::Duration::from_std(fast_policy().lease).unwrap();
    assert_eq!(worker.run_once(later).await.unwrap().delivered, 2);
    // Delivered twice (at least once)...
    let puts = fhir_server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT")
        .count();
    assert_eq!(puts, 2);
    assert_eq!(epic.accepted().len(), 2);
    // ... recorded once: the same AuditEvent id, the same status for the same participant.
    assert_eq!(fhir.audit_events().len(), 1);
    let calls = epic.accepted();
    assert_eq!(calls[0], calls[1]);
}

/// A policy with a short lease, renewed while a slow sink works.
fn short_lease() -> visitbridge_audit::DeliveryPolicy {
    visitbridge_audit::DeliveryPolicy {
        lease: std::time::Duration::from_millis(1000),
        ..fast_policy()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_worker_keeps_its_rows_past_the_lease_and_a_dead_ones_go_to_another_at_once() {
    let env = Env::new(Sinks::Epic).await;
    env.epic.set_delay(std::time::Duration::from_millis(2500));
    env.recorder()
        .record(
            &env.visit,
            &person(EventKind::ParticipantJoined, 5, guest("p")),
        )
        .await
        .unwrap();
    let slow = Arc::new(DeliveryWorker::new(
        env.store.clone(),
        env.sinks.clone(),
        short_lease(),
    ));
    let other = DeliveryWorker::new(env.store.clone(), env.sinks.clone(), short_lease());

    // The slow worker holds the row for two and a half leases: renewed, it is never claimed
    // twice.
    let running = {
        let slow = Arc::clone(&slow);
        tokio::spawn(async move { slow.run_once(Utc::now()).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(other.run_once(Utc::now()).await.unwrap().claimed, 0);
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.delivered, 1);
    assert_eq!(env.epic.calls().len(), 1, "one call: the lease held");

    // Another event; its worker dies mid-call (its task is gone, its renewals stop): another
    // worker takes the row over within a lease, not minutes later.
    env.recorder()
        .record(
            &env.visit,
            &person(EventKind::ParticipantLeft, 9, guest("p")),
        )
        .await
        .unwrap();
    let dying = {
        let slow = Arc::clone(&slow);
        tokio::spawn(async move { slow.run_once(Utc::now()).await })
    };
    env.eventually_calls(2).await;
    dying.abort();
    let killed = std::time::Instant::now();
    env.epic.set_delay(std::time::Duration::ZERO);
    let taken_over = loop {
        let report = other.run_once(Utc::now()).await.unwrap();
        if report.delivered == 1 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < std::time::Duration::from_secs(10),
            "not taken over"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // A bound, not a timing: seconds at most, where the lease once made it two minutes.
    assert!(
        taken_over < std::time::Duration::from_secs(5),
        "taken over after {taken_over:?}, the lease is 1 s"
    );
    assert_eq!(
        env.epic.calls().len(),
        3,
        "the call in flight at the crash, repeated once"
    );
}
