//! Delivery: retries with backoff, dead letters and re-drive, idempotent repeats, order, the loop.

use std::time::Duration;

use visitbridge_audit::{AuditEventMode, SinkConfig, SinkResolver};
use visitbridge_graph::EventKind;
use visitbridge_store::{AuditRepo, OutboxRepo, OutboxState, VisitRepo};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path_regex},
};

use crate::*;

/// A worker's `run` loop in the background, until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(worker: &Arc<DeliveryWorker>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Arc::clone(worker);
        let task = tokio::spawn(async move {
            worker
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }
}

/// Waits until Epic accepted at least `n` statuses, for 10 s at most (the caller asserts).
async fn until_epic_accepted(env: &Env, n: usize) {
    for _ in 0..500 {
        if env.epic.accepted().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_sink_down_then_up_gets_each_event_exactly_once() {
    let env = Env::new(Sinks::All).await;
    // Epic answers 503 twice; the FHIR server 500 twice on AuditEvent writes.
    env.epic.fail_next(2, 503);
    Mock::given(method("PUT"))
        .and(path_regex("/AuditEvent/"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&env.fhir_server)
        .await;
    let event = person(EventKind::ParticipantJoined, 5, guest("patient"));
    let recorded = env.recorder().record(&env.visit, &event).await.unwrap();

    let worker = env.worker();
    let first = worker.run_once(Utc::now()).await.unwrap();
    assert_eq!(
        (first.delivered, first.retried),
        (1, 2),
        "the note went through"
    );
    // Not due again before its backoff: claiming "now" again finds nothing.
    let items = env
        .store
        .outbox_for_event(&recorded.event_id)
        .await
        .unwrap();
    let epic = items
        .iter()
        .find(|i| i.sink.as_str() == "epic-connection-status")
        .unwrap();
    assert_eq!(epic.state, OutboxState::Pending);
    assert_eq!(
        epic.last_error.as_deref(),
        Some("epic connection status answered 503 Service Unavailable")
    );
    assert!(epic.next_attempt_at > epic.created_at);

    let rest = drain(&worker).await;
    assert_eq!((rest.delivered, rest.retried, rest.dead), (2, 2, 0));
    // The EHR saw one success per sink, after the failures.
    assert_eq!(env.epic.calls().len(), 3);
    assert_eq!(env.epic.accepted().len(), 1);
    assert_eq!(env.fhir.audit_events().len(), 1);
    assert_eq!(env.fhir.communications().len(), 1);
    for item in env
        .store
        .outbox_for_event(&recorded.event_id)
        .await
        .unwrap()
    {
        assert_eq!(item.state, OutboxState::Delivered);
        assert_eq!(item.last_error, None);
    }
}

#[tokio::test]
async fn persistent_failure_becomes_a_visible_dead_letter_that_can_be_redriven() {
    let env = Env::new(Sinks::Epic).await;
    env.epic.always_fail(500);
    let event = person(EventKind::ParticipantJoined, 5, guest("patient"));
    env.recorder().record(&env.visit, &event).await.unwrap();

    let worker = env.worker();
    let report = drain(&worker).await;
    // max_attempts = 3: two retries, then dead.
    assert_eq!((report.claimed, report.retried, report.dead), (3, 2, 1));
    assert_eq!(env.epic.calls().len(), 3);
    let dead = env.store.list_dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("epic connection status answered 500 Internal Server Error")
    );
    assert_eq!(env.store.outbox_depth().await.unwrap().dead, 1);

    // Epic is fixed; an operator re-drives the dead letter.
    env.epic.recover();
    assert!(env.store.redrive(dead[0].id, Utc::now()).await.unwrap());
    let report = drain(&worker).await;
    assert_eq!(report.delivered, 1);
    assert_eq!(env.epic.accepted().len(), 1);
    assert!(env.store.list_dead(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refusal_is_dead_at_once_and_redrivable_after_the_fix() {
    let env = Env::new(Sinks::Epic).await;
    // Our client id is not the one Epic knows: 403, which no retry fixes.
    let mut wrong = epic_config(env.epic.interconnect_base());
    wrong.client_id = "not-our-client".into();
    env.set_sinks(&[SinkConfig::EpicConnectionStatus(Box::new(wrong))]);
    env.recorder()
        .record(
            &env.visit,
            &person(EventKind::ParticipantJoined, 5, guest("p")),
        )
        .await
        .unwrap();
    let worker = env.worker();
    let report = drain(&worker).await;
    assert_eq!((report.claimed, report.dead), (1, 1));
    assert_eq!(env.epic.calls().len(), 1, "not retried");
    let dead = env.store.list_dead(10).await.unwrap();
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("epic connection status answered 403 Forbidden")
    );

    env.set_sinks(&[epic_sink(env.epic.interconnect_base())]);
    env.store.redrive(dead[0].id, Utc::now()).await.unwrap();
    assert_eq!(drain(&worker).await.delivered, 1);
    assert_eq!(env.epic.accepted().len(), 1);
}

#[tokio::test]
async fn a_visit_without_its_conference_id_waits_as_a_dead_letter_until_the_launch_fills_it_in() {
    let env = Env::new(Sinks::Epic).await;
    let mut visit = env.visit.clone();
    visit.id = VisitId::new("visit-2").unwrap();
    visit.external_meeting_id = "vb-other".into();
    visit.graph_meeting_id = None;
    visit.join_web_url = None;
    visit.conference_id = None;
    let visit = env.store.upsert_visit(&visit).await.unwrap();
    env.recorder()
        .record(&visit, &person(EventKind::ParticipantJoined, 5, guest("p")))
        .await
        .unwrap();
    let worker = env.worker();
    assert_eq!(drain(&worker).await.dead, 1);
    assert!(env.epic.calls().is_empty());
    let dead = env.store.list_dead(10).await.unwrap();
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("conference id")
    );

    // The launch learns the CSN and stores it; the dead letter is re-driven.
    let mut filled = visit.clone();
    filled.conference_id = Some(CONFERENCE_ID.into());
    env.store.upsert_visit(&filled).await.unwrap();
    env.store.redrive(dead[0].id, Utc::now()).await.unwrap();
    assert_eq!(drain(&worker).await.delivered, 1);
    assert_eq!(
        env.epic.accepted()[0].conference_id.as_deref(),
        Some(CONFERENCE_ID)
    );
}

#[tokio::test]
async fn one_participants_statuses_reach_epic_in_order_even_after_a_failure() {
    let env = Env::new(Sinks::Epic).await;
    env.epic.fail_next(1, 503);
    let recorder = env.recorder();
    recorder
        .record_events(&[
            person(EventKind::ParticipantJoined, 5, guest("p")),
            person(EventKind::ParticipantLeft, 50, guest("p")),
        ])
        .await
        .unwrap();
    let worker = env.worker();
    // The join fails; the leave must not overtake it.
    let first = worker.run_once(Utc::now()).await.unwrap();
    assert_eq!((first.claimed, first.retried), (1, 1));
    drain(&worker).await;
    let statuses: Vec<String> = env
        .epic
        .accepted()
        .into_iter()
        .map(|c| c.connection_status.unwrap())
        .collect();
    assert_eq!(statuses, ["TEST-CONNECTED", "TEST-DISCONNECTED"]);
}

#[tokio::test]
async fn fhir_repeats_are_harmless_in_both_idempotent_modes() {
    for mode in [
        AuditEventMode::ClientAssignedId,
        AuditEventMode::ConditionalCreate,
    ] {
        let env = Env::new(Sinks::All).await;
        let sink = SinkConfig::FhirAuditEvent { mode }
            .build(&env.context)
            .unwrap();
        env.sinks
            .set(env.visit.configuration_id.clone(), vec![sink.clone()])
            .unwrap();
        let recorded = env
            .recorder()
            .record(
                &env.visit,
                &person(EventKind::ParticipantJoined, 5, guest("p")),
            )
            .await
            .unwrap();
        let event = env
            .store
            .get_event(&recorded.event_id)
            .await
            .unwrap()
            .unwrap();
        let item = env
            .store
            .outbox_for_event(&event.event_id)
            .await
            .unwrap()
            .remove(0);
        // The answer to the first write was lost: the outbox delivers again.
        sink.deliver(&item, &event, &env.visit).await.unwrap();
        sink.deliver(&item, &event, &env.visit).await.unwrap();
        assert_eq!(env.fhir.audit_events().len(), 1, "{mode:?}");
        if mode == AuditEventMode::ConditionalCreate {
            let requests = env.fhir_server.received_requests().await.unwrap();
            let criteria = requests[0].headers["if-none-exist"].to_str().unwrap();
            assert_eq!(
                criteria,
                format!("_tag={}", url_encode(&item.idempotency_key))
            );
            assert!(item.idempotency_key.ends_with(event.event_id.as_str()));
        }
    }
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn a_sink_this_process_has_not_set_stays_pending_and_is_delivered_once_set() {
    let env = Env::new(Sinks::Epic).await;
    env.recorder()
        .record(
            &env.visit,
            &person(EventKind::ParticipantJoined, 5, guest("p")),
        )
        .await
        .unwrap();
    // Another process (or a restart) that has not set this configuration's sinks yet.
    let unset = Arc::new(ConfiguredSinks::new());
    let worker = DeliveryWorker::new(env.store.clone(), unset.clone(), fast_policy());
    let report = worker.run_once(Utc::now()).await.unwrap();
    assert_eq!((report.claimed, report.retried, report.dead), (1, 1, 0));
    let depth = env.store.outbox_depth().await.unwrap();
    assert_eq!((depth.pending, depth.dead), (1, 0), "pending, not dead");
    let item = env.store.outbox_for_visit(&env.visit.id).await.unwrap();
    assert_eq!(item[0].state, OutboxState::Pending);
    assert!(
        item[0].next_attempt_at > item[0].created_at,
        "after a backoff"
    );
    assert!(
        item[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("not configured")
    );
    assert!(env.epic.calls().is_empty());
    // The sinks are set: the row goes out, once.
    unset
        .set(
            env.visit.configuration_id.clone(),
            env.sinks.sinks_for(&env.visit.configuration_id),
        )
        .unwrap();
    let rest = drain(&worker).await;
    assert_eq!((rest.delivered, rest.dead), (1, 0));
    assert_eq!(env.epic.accepted().len(), 1);
}

#[tokio::test]
async fn an_old_join_arriving_after_the_leave_was_sent_is_superseded_at_epic_but_audited() {
    let env = Env::new(Sinks::All).await;
    let worker = env.worker();
    let leave = person(EventKind::ParticipantLeft, 60, guest("p"));
    env.recorder().record(&env.visit, &leave).await.unwrap();
    assert_eq!(drain(&worker).await.delivered, 3);
    // The join (a minute earlier) arrives late, e.g. from the attendance report.
    let join = person(EventKind::ParticipantJoined, 0, guest("p"));
    let recorded = env.recorder().record(&env.visit, &join).await.unwrap();
    assert_eq!(recorded.deliveries, 3);
    let report = drain(&worker).await;
    assert_eq!((report.delivered, report.dead), (2, 0));
    // Epic still says disconnected: it never got the old "connected".
    let statuses: Vec<String> = env
        .epic
        .accepted()
        .iter()
        .map(|c| c.connection_status.clone().unwrap())
        .collect();
    assert_eq!(statuses, ["TEST-DISCONNECTED"]);
    // The audit trail has both.
    assert_eq!(env.fhir.audit_events().len(), 2);
    let rows = env
        .store
        .outbox_for_event(&recorded.event_id)
        .await
        .unwrap();
    let state = |sink: &str| {
        rows.iter()
            .find(|i| i.sink.as_str() == sink)
            .map(|i| i.state)
    };
    assert_eq!(
        state("epic-connection-status"),
        Some(OutboxState::Superseded)
    );
    assert_eq!(state("fhir-audit-event"), Some(OutboxState::Delivered));
    assert_eq!(env.store.outbox_depth().await.unwrap().dead, 0);
}

#[tokio::test]
async fn the_running_worker_delivers_as_soon_as_an_event_is_recorded() {
    let env = Env::new(Sinks::Epic).await;
    let mut policy = fast_policy();
    // Only the wake-up can make this test pass quickly.
    policy.poll_interval = Duration::from_secs(3600);
    let worker = Arc::new(DeliveryWorker::new(
        env.store.clone(),
        env.sinks.clone(),
        policy,
    ));
    let recorder = env.recorder().wake_on_record(worker.waker());
    let running = Running::start(&worker);
    // Let the first (empty) round pass so the worker sleeps.
    tokio::time::sleep(Duration::from_millis(50)).await;
    recorder
        .record(
            &env.visit,
            &person(EventKind::ParticipantJoined, 5, guest("p")),
        )
        .await
        .unwrap();
    until_epic_accepted(&env, 1).await;
    assert_eq!(env.epic.accepted().len(), 1);
    running.stop().await;
}

/// A participant's backlog (30 statuses kept in order: each waits for the one before) drains at
/// the sink's pace: a round that delivered goes on at once instead of waiting `poll_interval`
/// (an hour here) for every row.
#[tokio::test]
async fn a_participants_backlog_drains_without_a_poll_interval_per_row() {
    let env = Env::new(Sinks::Epic).await;
    let events: Vec<_> = (0..30)
        .map(|n| {
            let kind = if n % 2 == 0 {
                EventKind::ParticipantJoined
            } else {
                EventKind::ParticipantLeft
            };
            person(kind, 5 + n, guest("p"))
        })
        .collect();
    env.recorder().record_events(&events).await.unwrap();
    let mut policy = fast_policy();
    policy.poll_interval = Duration::from_secs(3600);
    let worker = Arc::new(DeliveryWorker::new(
        env.store.clone(),
        env.sinks.clone(),
        policy,
    ));
    let running = Running::start(&worker);
    until_epic_accepted(&env, 30).await;
    let statuses: Vec<String> = env
        .epic
        .accepted()
        .into_iter()
        .map(|c| c.connection_status.unwrap())
        .collect();
    assert_eq!(statuses.len(), 30, "delivered within 10 s, not one an hour");
    assert!(statuses.iter().enumerate().all(|(n, status)| {
        *status
            == if n % 2 == 0 {
                "TEST-CONNECTED"
            } else {
                "TEST-DISCONNECTED"
            }
    }));
    running.stop().await;
}

/// Another replica recorded the event (its process set the configuration's sinks; this one has
/// not yet): the worker asks its loader for them and delivers on the first attempt, instead of
/// failing and backing off until some later tick sets them.
#[tokio::test]
async fn a_worker_sets_up_a_configuration_it_has_not_seen_before_delivering() {
    struct Loader {
        into: Arc<ConfiguredSinks>,
        from: Vec<Arc<dyn visitbridge_audit::Sink>>,
        calls: std::sync::atomic::AtomicUsize,
    }
    #[async_trait::async_trait]
    impl visitbridge_audit::SinkLoader for Loader {
        async fn load(&self, configuration: &visitbridge_approval::ConfigurationId) {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.into
                .set(configuration.clone(), self.from.clone())
                .unwrap();
        }
    }

    let env = Env::new(Sinks::Epic).await;
    env.recorder()
        .record(
            &env.visit,
            &person(EventKind::ParticipantJoined, 5, guest("p")),
        )
        .await
        .unwrap();
    // This process's sinks: none set yet.
    let here = Arc::new(ConfiguredSinks::new());
    let loader = Arc::new(Loader {
        into: here.clone(),
        from: env.sinks.sinks_for(&env.visit.configuration_id),
        calls: Default::default(),
    });
    let worker =
        DeliveryWorker::new(env.store.clone(), here, fast_policy()).with_loader(loader.clone());
    let report = worker.run_once(Utc::now()).await.unwrap();
    assert_eq!((report.delivered, report.retried), (1, 0));
    assert_eq!(env.epic.accepted().len(), 1);
    assert_eq!(loader.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}
