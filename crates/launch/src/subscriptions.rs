//! The change-notification subscriptions of visits' meetings, kept up: made in the background
//! when a meeting is provisioned, renewed before they lapse, made again when Graph removed one
//! or could not make it, removed once the visit is old. Graph is reached through the
//! [`MeetingSubscriptions`] port, the registry is the store's [`VisitRepo`].

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use visitbridge_graph::{GraphError, LifecycleEvent, Subscription, SubscriptionId};
use visitbridge_store::{GraphSubscriptionId, StoreError, Visit, VisitId, VisitRepo};

use crate::ports::{Clock, UpstreamTimer, timed};

/// Graph's subscriptions to one meeting's call events (`/subscriptions`), with the
/// deployment's notification URLs, client state and lifetime already chosen.
#[async_trait]
pub trait MeetingSubscriptions: Send + Sync {
    /// Subscribes to the call events of the meeting with `join_web_url`.
    async fn subscribe(&self, join_web_url: &str) -> Result<Subscription, GraphError>;
    /// Extends a subscription by its lifetime.
    async fn renew(&self, id: &SubscriptionId) -> Result<Subscription, GraphError>;
    /// Deletes a subscription (one Graph no longer knows counts as deleted).
    async fn delete(&self, id: &SubscriptionId) -> Result<(), GraphError>;
    /// Answers Graph's `reauthorizationRequired`.
    async fn reauthorize(&self, id: &SubscriptionId) -> Result<(), GraphError>;
    /// How long a subscription is made for.
    fn lifetime(&self) -> Duration;
}

/// The change-notification subscriptions of visits' meetings: created when a meeting is
/// provisioned, renewed before they lapse, removed once the visit is older than the upkeep's
/// `subscription_max_age_hours` — not when a call ends, since a meeting can hold several calls
/// (a patient who left the lobby and came back, a dropped call rejoined). Graph calls run in the
/// background, never on a launch's path.
///
/// The store is the registry: each visit's subscription and its expiry are on the visit's row,
/// so after a restart (or on another replica) notifications still map to their visit, and
/// subscriptions are still renewed and removed. Writes are compare-and-set, so two replicas
/// that subscribe one visit at once keep one subscription.
pub struct Subscriptions {
    graph: Arc<dyn MeetingSubscriptions>,
    timer: Arc<dyn UpstreamTimer>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn VisitRepo>,
    /// Visits being subscribed by this process (a launch storm makes one `POST`).
    in_flight: Arc<Mutex<HashSet<VisitId>>>,
    /// Visits whose subscription the upkeep could not make: when to try next, and the wait
    /// after that (doubling to an hour, so a lasting refusal costs a call an hour, not a tick).
    retry_at: Mutex<HashMap<VisitId, (Instant, Duration)>>,
}

/// A visit this process is subscribing; released when dropped (also when the task doing it is
/// cancelled, e.g. by a lost lease).
struct InFlight {
    set: Arc<Mutex<HashSet<VisitId>>>,
    visit: VisitId,
}

impl InFlight {
    /// The visit, unless this process is subscribing it already.
    fn claim(set: &Arc<Mutex<HashSet<VisitId>>>, visit: &VisitId) -> Option<Self> {
        set.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(visit.clone())
            .then(|| Self {
                set: Arc::clone(set),
                visit: visit.clone(),
            })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.visit);
    }
}

/// A Graph subscription id as the store keeps it (Graph's ids are GUIDs; one the store would
/// refuse is not kept, and then maps to no visit).
fn stored_id(id: &SubscriptionId) -> Option<GraphSubscriptionId> {
    GraphSubscriptionId::new(id.as_str()).ok()
}

impl Subscriptions {
    /// Subscriptions made through `graph`, kept in `store`; Graph's latency reported to
    /// `timer`.
    pub fn new(
        graph: Arc<dyn MeetingSubscriptions>,
        store: Arc<dyn VisitRepo>,
        timer: Arc<dyn UpstreamTimer>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            graph,
            timer,
            clock,
            store,
            in_flight: Arc::default(),
            retry_at: Mutex::default(),
        }
    }

    /// How long subscriptions are made for.
    pub fn lifetime(&self) -> Duration {
        self.graph.lifetime()
    }

    /// Subscribes to the visit's meeting in the background, unless it already is (or is being).
    pub fn ensure(self: &Arc<Self>, visit: &Visit) {
        if visit.join_web_url.is_none() {
            return;
        }
        let Some(claim) = InFlight::claim(&self.in_flight, &visit.id) else {
            return;
        };
        let this = Arc::clone(self);
        let visit = visit.clone();
        tokio::spawn(async move {
            let _claim = claim;
            this.subscribed_or_subscribe(&visit).await;
        });
    }

    /// Whether the visit is subscribed: already (stored), or by subscribing it now.
    async fn subscribed_or_subscribe(&self, visit: &Visit) -> bool {
        match self.store.subscription_of(&visit.id).await {
            Ok(Some(_)) => true,
            Ok(None) => self.subscribe(visit, None).await,
            Err(e) => {
                tracing::warn!(error = %e, visit_id = %visit.id, "cannot read the visit's subscription");
                false
            }
        }
    }

    /// Creates a subscription for the visit's meeting and stores it in place of `replacing`;
    /// one that cannot be stored (another replica was first) is deleted again.
    /// Whether the visit is subscribed now (by this call, or by another meanwhile).
    async fn subscribe(&self, visit: &Visit, replacing: Option<&GraphSubscriptionId>) -> bool {
        let Some(join_url) = visit.join_web_url.as_deref() else {
            return false;
        };
        let result = timed(
            self.timer.as_ref(),
            "graph_subscription",
            self.graph.subscribe(join_url),
        )
        .await;
        let subscription = match result {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, visit_id = %visit.id, "cannot subscribe to the meeting's call events");
                return false;
            }
        };
        let stored = match stored_id(&subscription.id) {
            Some(id) => {
                self.store
                    .set_subscription(&visit.id, &id, subscription.expires_at, replacing)
                    .await
            }
            None => Err(StoreError::InvalidRecord(
                "graph gave an unusable subscription id",
            )),
        };
        match stored {
            Ok(true) => {
                tracing::info!(visit_id = %visit.id, "subscribed to the meeting's call events");
                true
            }
            Ok(false) => {
                tracing::info!(visit_id = %visit.id, "the visit was subscribed meanwhile: removing the extra subscription");
                self.delete(&subscription.id).await;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, visit_id = %visit.id, "cannot keep the visit's subscription: removing it");
                self.delete(&subscription.id).await;
                false
            }
        }
    }

    async fn delete(&self, id: &SubscriptionId) {
        if let Err(e) = self.graph.delete(id).await {
            tracing::warn!(error = %e, "cannot remove a subscription (it lapses at its expiry)");
        }
    }

    /// Answers a lifecycle notification in the background.
    pub fn lifecycle(self: &Arc<Self>, id: &SubscriptionId, event: &LifecycleEvent) {
        let this = Arc::clone(self);
        let id = id.clone();
        let event = event.clone();
        tokio::spawn(async move {
            match event {
                LifecycleEvent::ReauthorizationRequired => {
                    if let Err(e) = this.graph.reauthorize(&id).await {
                        tracing::warn!(error = %e, "cannot reauthorize a subscription");
                    }
                }
                LifecycleEvent::SubscriptionRemoved => this.removed_by_graph(&id).await,
                LifecycleEvent::Missed => {
                    tracing::warn!(
                        "graph missed notifications: the attendance report reconciles them after the call"
                    );
                }
                LifecycleEvent::Other(kind) => {
                    tracing::info!(kind = %kind, "ignoring an unknown lifecycle notification");
                }
            }
        });
    }

    /// Graph removed a subscription (or no longer knows it): forget it and subscribe again.
    async fn removed_by_graph(&self, id: &SubscriptionId) {
        let Some(stored) = stored_id(id) else {
            return;
        };
        let visit = match self.store.visit_by_subscription(&stored).await {
            Ok(Some(v)) => v,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up a removed subscription's visit");
                return;
            }
        };
        match self
            .store
            .clear_subscription(&visit.id, Some(&stored))
            .await
        {
            Ok(Some(_)) => {
                self.subscribe(&visit, None).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, visit_id = %visit.id, "cannot clear a removed subscription");
            }
        }
    }

    /// One upkeep tick: renews what is due ([`Self::renew_due`]), then subscribes the visits
    /// younger than `max_age` whose meeting has not ended and whose subscription could not be
    /// made with their meeting (Graph was down or refusing then): a failed subscription is tried
    /// again — after a wait that doubles from a second to an hour per visit — not only at the
    /// visit's next launch, so its call events are not lost.
    pub async fn keep_up(&self, margin: Duration, max_age: Duration) {
        self.renew_due(margin, max_age).await;
        let since =
            self.clock.now() - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        let visits = match self
            .store
            .unsubscribed_visits(since, UNSUBSCRIBED_READ_PER_TICK)
            .await
        {
            Ok(visits) => visits,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the visits to subscribe");
                return;
            }
        };
        let now = Instant::now();
        let due: Vec<Visit> = {
            let mut retry_at = self.retry_at.lock().unwrap_or_else(PoisonError::into_inner);
            // Forget the visits that are subscribed, ended or aged out meanwhile.
            retry_at.retain(|id, _| visits.iter().any(|v| &v.id == id));
            visits
                .into_iter()
                .filter(|v| retry_at.get(&v.id).is_none_or(|(at, _)| *at <= now))
                .take(RESUBSCRIBES_PER_TICK)
                .collect()
        };
        for visit in due {
            // Not while a launch of the visit is subscribing it, nor if one just did.
            let Some(_claim) = InFlight::claim(&self.in_flight, &visit.id) else {
                continue;
            };
            let subscribed = self.subscribed_or_subscribe(&visit).await;
            let mut retry_at = self.retry_at.lock().unwrap_or_else(PoisonError::into_inner);
            if subscribed {
                retry_at.remove(&visit.id);
            } else {
                let wait = retry_at
                    .get(&visit.id)
                    .map_or(Duration::from_secs(1), |(_, wait)| *wait * 2)
                    .min(Duration::from_secs(3600));
                retry_at.insert(visit.id.clone(), (Instant::now() + wait, wait));
            }
        }
    }

    /// Renews the stored subscriptions that end within `margin`, and removes those of visits
    /// created more than `max_age` ago.
    pub async fn renew_due(&self, margin: Duration, max_age: Duration) {
        let now = self.clock.now();
        let margin = margin.min(self.lifetime() / 2);
        let before = now + chrono::Duration::from_std(margin).unwrap_or_default();
        let due = match self
            .store
            .subscriptions_due(before, RENEWALS_PER_TICK)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the subscriptions to renew");
                return;
            }
        };
        let oldest = now - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        for stored in due {
            let id = SubscriptionId::new(stored.subscription_id.as_str());
            let visit = match self.store.get_visit(&stored.visit_id).await {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a subscribed visit");
                    continue;
                }
            };
            if visit.created_at < oldest {
                if let Ok(Some(_)) = self
                    .store
                    .clear_subscription(&visit.id, Some(&stored.subscription_id))
                    .await
                {
                    tracing::info!(visit_id = %visit.id, "removing the subscription of an old visit");
                    self.delete(&id).await;
                }
                continue;
            }
            match self.graph.renew(&id).await {
                Ok(renewed) => {
                    let kept = self
                        .store
                        .set_subscription(
                            &visit.id,
                            &stored.subscription_id,
                            renewed.expires_at,
                            Some(&stored.subscription_id),
                        )
                        .await;
                    match kept {
                        Ok(true) => tracing::debug!(visit_id = %visit.id, "renewed a subscription"),
                        // Removed meanwhile (aged out, or gone at Graph): whoever removed it
                        // deletes it.
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot keep a renewed subscription"),
                    }
                }
                Err(e) if e.status() == Some(404) => {
                    tracing::info!(visit_id = %visit.id, "graph no longer knows a subscription: subscribing again");
                    self.removed_by_graph(&id).await;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew a subscription"),
            }
        }
    }
}

/// Renewals per upkeep tick (the rest wait for the next one).
const RENEWALS_PER_TICK: u32 = 100;

/// Visits subscribed again per upkeep tick, newest first of those due (the rest wait for the
/// next one).
const RESUBSCRIBES_PER_TICK: usize = 20;

/// Visits without a subscription read per upkeep tick, of which those due are tried: a few
/// that Graph keeps refusing wait out their backoff without hiding the others.
const UNSUBSCRIBED_READ_PER_TICK: u32 = 200;
