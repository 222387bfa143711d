//! The Graph subscriptions of visits' meetings against a Graph fake that counts its calls: one
//! subscription per visit however many launches ask at once, renewals before expiry, removal of
//! old visits' subscriptions, a subscription made again after Graph removed or forgot it, and a
//! refused one retried after a backoff — never once per upkeep tick.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use visitbridge_graph::{GraphError, LifecycleEvent, Subscription, SubscriptionId};
use visitbridge_launch_core::{Clock, MeetingSubscriptions, NoTimer, Subscriptions};
use visitbridge_store::{Visit, VisitRepo, VisitSubscription};

use crate::{
    clinician::clinician_opens_visit,
    fakes::{CLINICIAN_OID, FixedClock, MovingClock, World},
};

const LIFETIME: Duration = Duration::from_secs(3600);
const MARGIN: Duration = Duration::from_secs(600);
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Subscribe,
    Renew(String),
    Delete(String),
    Reauthorize(String),
}

#[derive(Default)]
struct Held {
    calls: Vec<Call>,
    made: u32,
    refusing: bool,
    /// Subscriptions Graph no longer knows (renewal answers 404).
    forgotten: Vec<String>,
}

/// Graph's `/subscriptions`: each subscription a new id, expiring a lifetime after the clock.
struct FakeSubscriptions {
    held: Mutex<Held>,
    clock: Arc<MovingClock>,
}

impl FakeSubscriptions {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn calls(&self) -> Vec<Call> {
        self.held().calls.clone()
    }

    fn subscribes(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| **c == Call::Subscribe)
            .count()
    }

    fn answer(&self, id: String) -> Subscription {
        Subscription {
            id: SubscriptionId::new(id),
            expires_at: self.clock.now() + chrono::Duration::from_std(LIFETIME).unwrap(),
            resource: "communications/onlineMeetings/getAllTranscripts".into(),
        }
    }
}

fn refused(status: u16) -> GraphError {
    GraphError::Api {
        status,
        code: "Forbidden".into(),
        message: "refused".into(),
        request_id: None,
    }
}

#[async_trait]
impl MeetingSubscriptions for FakeSubscriptions {
    async fn subscribe(&self, _join_web_url: &str) -> Result<Subscription, GraphError> {
        let id = {
            let mut held = self.held();
            held.calls.push(Call::Subscribe);
            if held.refusing {
                return Err(refused(403));
            }
            held.made += 1;
            format!("3f2504e0-4f89-11d3-9a0c-0305e82c{:04}", held.made)
        };
        // Long enough for concurrent callers to overlap.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(self.answer(id))
    }

    async fn renew(&self, id: &SubscriptionId) -> Result<Subscription, GraphError> {
        let forgotten = {
            let mut held = self.held();
            held.calls.push(Call::Renew(id.as_str().to_owned()));
            held.forgotten.iter().any(|f| f == id.as_str())
        };
        if forgotten {
            return Err(refused(404));
        }
        Ok(self.answer(id.as_str().to_owned()))
    }

    async fn delete(&self, id: &SubscriptionId) -> Result<(), GraphError> {
        self.held().calls.push(Call::Delete(id.as_str().to_owned()));
        Ok(())
    }

    async fn reauthorize(&self, id: &SubscriptionId) -> Result<(), GraphError> {
        self.held()
            .calls
            .push(Call::Reauthorize(id.as_str().to_owned()));
        Ok(())
    }

    fn lifetime(&self) -> Duration {
        LIFETIME
    }
}

struct Upkeep {
    world: World,
    visit: Visit,
    clock: Arc<MovingClock>,
    graph: Arc<FakeSubscriptions>,
    subscriptions: Arc<Subscriptions>,
}

impl Upkeep {
    async fn new() -> Self {
        let world = World::new().await;
        world.link("doc-1", CLINICIAN_OID).await;
        let visit = clinician_opens_visit(&world).await.visit;
        let clock = Arc::new(MovingClock::at(FixedClock.now()));
        let graph = Arc::new(FakeSubscriptions {
            held: Mutex::default(),
            clock: Arc::clone(&clock),
        });
        let subscriptions = Arc::new(Subscriptions::new(
            Arc::clone(&graph) as Arc<dyn MeetingSubscriptions>,
            world.store.clone(),
            Arc::new(NoTimer),
            Arc::clone(&clock) as Arc<dyn Clock>,
        ));
        Self {
            world,
            visit,
            clock,
            graph,
            subscriptions,
        }
    }

    async fn stored(&self) -> Option<VisitSubscription> {
        self.world
            .store
            .subscription_of(&self.visit.id)
            .await
            .unwrap()
    }

    /// Waits for the background work to store a subscription other than `not`.
    async fn stored_eventually(&self, not: Option<&VisitSubscription>) -> VisitSubscription {
        for _ in 0..100 {
            if let Some(stored) = self.stored().await
                && Some(&stored) != not
            {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no new subscription was stored; graph saw {:?}",
            self.graph.calls()
        );
    }
}

#[tokio::test]
async fn many_launches_at_once_make_one_subscription_kept_on_the_visit() {
    let upkeep = Upkeep::new().await;
    for _ in 0..5 {
        upkeep.subscriptions.ensure(&upkeep.visit);
    }
    let stored = upkeep.stored_eventually(None).await;
    assert_eq!(upkeep.graph.subscribes(), 1, "{:?}", upkeep.graph.calls());
    assert_eq!(
        stored.expires_at,
        upkeep.clock.now() + chrono::Duration::from_std(LIFETIME).unwrap()
    );
    // A later launch finds the stored one: no second subscription.
    upkeep.subscriptions.ensure(&upkeep.visit);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(upkeep.graph.subscribes(), 1);
}

#[tokio::test]
async fn a_refused_subscription_is_made_by_the_upkeep_after_a_backoff_not_every_tick() {
    let upkeep = Upkeep::new().await;
    upkeep.graph.held().refusing = true;
    upkeep.subscriptions.keep_up(MARGIN, MAX_AGE).await;
    assert_eq!(upkeep.graph.subscribes(), 1);
    for _ in 0..5 {
        upkeep.subscriptions.keep_up(MARGIN, MAX_AGE).await;
    }
    assert_eq!(upkeep.graph.subscribes(), 1, "waits out its backoff");
    assert!(upkeep.stored().await.is_none());

    upkeep.graph.held().refusing = false;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    upkeep.subscriptions.keep_up(MARGIN, MAX_AGE).await;
    assert_eq!(upkeep.graph.subscribes(), 2);
    assert!(upkeep.stored().await.is_some());
}

#[tokio::test]
async fn the_upkeep_renews_before_expiry_and_removes_an_old_visits_subscription() {
    let upkeep = Upkeep::new().await;
    upkeep.subscriptions.ensure(&upkeep.visit);
    let first = upkeep.stored_eventually(None).await;

    // Not due yet: nothing renewed.
    upkeep.subscriptions.keep_up(MARGIN, MAX_AGE).await;
    assert!(
        !upkeep
            .graph
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Renew(_)))
    );

    // Within the margin of its expiry: renewed, the new expiry stored.
    upkeep.clock.advance(LIFETIME - MARGIN / 2);
    upkeep.subscriptions.keep_up(MARGIN, MAX_AGE).await;
    let renewed = upkeep.stored().await.unwrap();
    assert_eq!(renewed.subscription_id, first.subscription_id);
    assert!(renewed.expires_at > first.expires_at);
    assert!(
        upkeep
            .graph
            .calls()
            .contains(&Call::Renew(first.subscription_id.as_str().to_owned()))
    );

    // A day on, due again: the visit is too old, so it is removed instead, here and at Graph.
    upkeep.clock.advance(MAX_AGE);
    upkeep.subscriptions.keep_up(MARGIN, MAX_AGE).await;
    assert!(upkeep.stored().await.is_none());
    assert!(
        upkeep
            .graph
            .calls()
            .contains(&Call::Delete(first.subscription_id.as_str().to_owned()))
    );
    assert_eq!(
        upkeep.graph.subscribes(),
        1,
        "an old visit is not subscribed again"
    );
}

#[tokio::test]
async fn a_subscription_graph_forgot_or_removed_is_made_again() {
    let upkeep = Upkeep::new().await;
    upkeep.subscriptions.ensure(&upkeep.visit);
    let first = upkeep.stored_eventually(None).await;

    // Renewal answers 404: Graph no longer knows it.
    upkeep
        .graph
        .held()
        .forgotten
        .push(first.subscription_id.as_str().to_owned());
    upkeep.clock.advance(LIFETIME - MARGIN / 2);
    upkeep.subscriptions.keep_up(MARGIN, MAX_AGE).await;
    let second = upkeep.stored().await.unwrap();
    assert_ne!(second.subscription_id, first.subscription_id);
    assert_eq!(upkeep.graph.subscribes(), 2);

    // Graph says it removed the new one: made again, in the background.
    upkeep.subscriptions.lifecycle(
        &SubscriptionId::new(second.subscription_id.as_str()),
        &LifecycleEvent::SubscriptionRemoved,
    );
    let third = upkeep.stored_eventually(Some(&second)).await;
    assert_ne!(third.subscription_id, second.subscription_id);

    // Reauthorization is answered at Graph, the stored subscription kept.
    upkeep.subscriptions.lifecycle(
        &SubscriptionId::new(third.subscription_id.as_str()),
        &LifecycleEvent::ReauthorizationRequired,
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(upkeep.graph.calls().contains(&Call::Reauthorize(
        third.subscription_id.as_str().to_owned()
    )));
    assert_eq!(upkeep.stored().await, Some(third));
}
