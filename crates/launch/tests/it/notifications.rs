//! Graph's notifications kept before they are acknowledged: events of known visits stored with
//! their outbox rows, call ends and missed notifications scheduling reconciliation, sinks set
//! first or nothing stored.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use visitbridge_approval::ConfigurationId;
use visitbridge_audit::{AuditRecorder, ConfiguredSinks};
use visitbridge_graph::{
    EventKind, EventSource, LifecycleEvent, MeetingRef, Notification, Participant,
    ParticipantEvent, ParticipantKind, SubscriptionId,
};
use visitbridge_launch_core::{
    Clock, KeptNotifications, NotificationError, NotificationPorts, WritebackSinks,
    keep_notifications,
};
use visitbridge_store::{
    AuditRepo, GraphSubscriptionId, OutboxItem, OutboxRepo, StoredEvent, Visit, VisitRepo,
};
use visitbridge_visit::RosterChange;

use crate::{
    clinician::clinician_opens_visit,
    fakes::{CLINICIAN_OID, FixedClock, World, status_sink},
};

const DELAY: Duration = Duration::from_secs(300);

/// Sets the status sink for any configuration, or fails like an unreadable store.
#[derive(Default)]
struct Sinks {
    configured: Arc<ConfiguredSinks>,
    failing: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("the configuration cannot be read")]
struct Unreadable;

#[async_trait]
impl WritebackSinks for Sinks {
    async fn ensure(
        &self,
        configuration: &ConfigurationId,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(Box::new(Unreadable));
        }
        self.configured
            .set(configuration.clone(), vec![status_sink()])?;
        Ok(())
    }
}

struct Keeper {
    world: World,
    visit: Visit,
    sinks: Sinks,
    recorder: AuditRecorder,
}

impl Keeper {
    async fn new() -> Self {
        let world = World::new().await;
        world.link("doc-1", CLINICIAN_OID).await;
        let visit = clinician_opens_visit(&world).await.visit;
        let sinks = Sinks::default();
        let recorder = AuditRecorder::new(world.store.clone(), sinks.configured.clone());
        Self {
            world,
            visit,
            sinks,
            recorder,
        }
    }

    async fn keep(
        &self,
        notifications: &[Notification],
    ) -> Result<KeptNotifications, NotificationError> {
        let ports = NotificationPorts {
            store: self.world.store.as_ref(),
            recorder: &self.recorder,
            sinks: &self.sinks,
            clock: &FixedClock,
            reconciliation_delay: DELAY,
        };
        keep_notifications(&ports, notifications).await
    }

    /// Stores `subscription` as the visit's.
    async fn subscribe(&self, subscription: &str) {
        self.world
            .store
            .set_subscription(
                &self.visit.id,
                &GraphSubscriptionId::new(subscription).unwrap(),
                FixedClock.now() + chrono::Duration::hours(1),
                None,
            )
            .await
            .unwrap();
    }

    fn join_url(&self) -> MeetingRef {
        MeetingRef::JoinWebUrl(self.visit.join_web_url.clone().unwrap())
    }

    async fn stored(&self) -> Vec<StoredEvent> {
        self.world
            .store
            .events_for_visit(&self.visit.id)
            .await
            .unwrap()
    }

    async fn outbox(&self) -> Vec<OutboxItem> {
        self.world
            .store
            .outbox_for_visit(&self.visit.id)
            .await
            .unwrap()
    }

    async fn reconciliation_due(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.world
            .store
            .reconciliation_of(&self.visit.id)
            .await
            .unwrap()
            .map(|r| r.due_at)
    }
}

fn event(
    kind: EventKind,
    meeting: &MeetingRef,
    guest: Option<&str>,
    minute: u32,
) -> ParticipantEvent {
    ParticipantEvent {
        kind,
        at: FixedClock.now() + chrono::Duration::minutes(i64::from(minute)),
        meeting: meeting.clone(),
        participant: guest.map(|id| Participant {
            participant_id: Some(format!("leg-{id}")),
            kind: ParticipantKind::AcsGuest {
                opaque_id: format!("8:acs:{id}"),
            },
        }),
        source: EventSource::Notification,
    }
}

fn batch(subscription: &str, events: Vec<ParticipantEvent>) -> Notification {
    Notification::Events {
        subscription_id: SubscriptionId::new(subscription.to_owned()),
        tenant_id: None,
        events,
    }
}

#[tokio::test]
async fn a_visits_events_are_stored_with_outbox_rows_and_a_call_end_schedules_reconciliation() {
    let keeper = Keeper::new().await;
    let meeting = keeper.join_url();
    let kept = keeper
        .keep(&[batch(
            "sub-1",
            vec![
                event(EventKind::ParticipantJoined, &meeting, Some("guest-a"), 1),
                event(EventKind::ParticipantLeft, &meeting, Some("guest-a"), 9),
                event(EventKind::CallEnded, &meeting, None, 10),
            ],
        )])
        .await
        .unwrap();

    assert_eq!(
        (kept.recorded, kept.duplicates, kept.unknown_meeting),
        (3, 0, 0)
    );
    assert_eq!(kept.changes.len(), 3);
    assert!(
        kept.changes
            .iter()
            .all(|(visit, _)| *visit == keeper.visit.id)
    );
    assert_eq!(kept.changes[2].1, RosterChange::CallEnded);
    assert_eq!(kept.reconciling, vec![keeper.visit.id.clone()]);
    assert_eq!(keeper.stored().await.len(), 3);
    let outbox = keeper.outbox().await;
    assert_eq!(outbox.len(), 3, "one status row per event");
    assert!(outbox.iter().all(|row| row.sink.as_str() == "epic-status"));
    assert_eq!(
        keeper.reconciliation_due().await,
        Some(FixedClock.now() + chrono::Duration::minutes(5)),
        "reconciled the configured delay after now"
    );

    // Graph delivers the same batch again: nothing new.
    let again = keeper
        .keep(&[batch(
            "sub-1",
            vec![event(
                EventKind::ParticipantJoined,
                &meeting,
                Some("guest-a"),
                1,
            )],
        )])
        .await
        .unwrap();
    assert_eq!((again.recorded, again.duplicates), (0, 1));
    assert_eq!(keeper.outbox().await.len(), 3);
}

#[tokio::test]
async fn an_unknown_meeting_is_dropped_and_a_known_subscription_finds_its_visit() {
    let keeper = Keeper::new().await;
    let stranger = MeetingRef::JoinWebUrl("https://teams.example.test/l/meetup-join/other".into());
    let kept = keeper
        .keep(&[batch(
            "sub-unknown",
            vec![event(EventKind::ParticipantJoined, &stranger, Some("x"), 1)],
        )])
        .await
        .unwrap();
    assert_eq!((kept.recorded, kept.unknown_meeting), (0, 1));
    assert!(kept.changes.is_empty());
    assert!(keeper.stored().await.is_empty());

    // Graph named the meeting by a resource path only, through the visit's own subscription.
    keeper.subscribe("sub-of-visit").await;
    let by_resource = MeetingRef::Resource("communications/onlineMeetings/abc".into());
    let kept = keeper
        .keep(&[batch(
            "sub-of-visit",
            vec![event(
                EventKind::ParticipantJoined,
                &by_resource,
                Some("y"),
                2,
            )],
        )])
        .await
        .unwrap();
    assert_eq!((kept.recorded, kept.unknown_meeting), (1, 0));
    assert_eq!(kept.changes[0].0, keeper.visit.id);
}

#[tokio::test]
async fn sinks_that_cannot_be_set_store_nothing_so_graph_delivers_again() {
    let keeper = Keeper::new().await;
    keeper.sinks.failing.store(true, Ordering::SeqCst);
    let meeting = keeper.join_url();
    let batch_of_two = [batch(
        "sub-1",
        vec![
            event(EventKind::ParticipantJoined, &meeting, Some("guest-a"), 1),
            event(EventKind::CallEnded, &meeting, None, 5),
        ],
    )];
    let refused = keeper.keep(&batch_of_two).await.unwrap_err();
    assert!(matches!(refused, NotificationError::Sinks(_)), "{refused}");
    assert!(
        keeper.stored().await.is_empty(),
        "no event without its outbox rows"
    );
    assert_eq!(keeper.reconciliation_due().await, None);

    keeper.sinks.failing.store(false, Ordering::SeqCst);
    let kept = keeper.keep(&batch_of_two).await.unwrap();
    assert_eq!(kept.recorded, 2);
    assert_eq!(keeper.outbox().await.len(), 2);
    assert!(keeper.reconciliation_due().await.is_some());
}

#[tokio::test]
async fn missed_notifications_reconcile_the_subscriptions_visit_and_lifecycle_goes_on() {
    let keeper = Keeper::new().await;
    keeper.subscribe("sub-of-visit").await;
    let lifecycle = |subscription: &str, event| Notification::Lifecycle {
        subscription_id: SubscriptionId::new(subscription.to_owned()),
        event,
        subscription_expires_at: None,
    };
    let kept = keeper
        .keep(&[
            lifecycle("sub-of-visit", LifecycleEvent::Missed),
            lifecycle("sub-other", LifecycleEvent::ReauthorizationRequired),
        ])
        .await
        .unwrap();
    assert_eq!(kept.reconciling, vec![keeper.visit.id.clone()]);
    assert!(keeper.reconciliation_due().await.is_some());
    assert_eq!(
        kept.lifecycle,
        vec![
            (SubscriptionId::new("sub-of-visit"), LifecycleEvent::Missed),
            (
                SubscriptionId::new("sub-other"),
                LifecycleEvent::ReauthorizationRequired
            ),
        ]
    );
    assert_eq!(kept.recorded, 0);
}
