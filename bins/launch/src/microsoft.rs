//! Microsoft 365 for the launch service: app tokens and Graph (meetings, subscriptions), and the
//! clinician's one-time Entra sign-in that links their EHR user to their Microsoft account.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use url::Url;
use visitbridge_graph::{
    GraphClient, LifecycleEvent, MeetingPolicy, Subscription, SubscriptionConfig, SubscriptionId,
};
use visitbridge_smart::{ClientAuth, OidcClientConfig, OidcProvider};
use visitbridge_store::{Visit, VisitId};

use crate::{error::LaunchError, observe::Metrics};

/// Entra ID and Graph, as configured.
pub(crate) struct Microsoft {
    /// The organisation's tenant (clinicians must sign in there).
    pub(crate) tenant_id: String,
    pub(crate) graph: GraphClient,
    /// Where Graph's own URLs may point besides https (a loopback sandbox).
    pub(crate) graph_base: Url,
    pub(crate) subscriptions: Arc<Subscriptions>,
    http: reqwest::Client,
    issuer: Url,
    oidc_config: OidcClientConfig,
    oidc: tokio::sync::OnceCell<Arc<OidcProvider>>,
}

impl Microsoft {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        http: reqwest::Client,
        tenant_id: String,
        graph: GraphClient,
        graph_base: Url,
        issuer: Url,
        client_id: String,
        client_secret: visitbridge_http::Secret,
        redirect_uri: Url,
        subscriptions: Arc<Subscriptions>,
    ) -> Self {
        Self {
            tenant_id,
            graph,
            graph_base,
            subscriptions,
            http,
            issuer,
            oidc_config: OidcClientConfig::new(
                client_id,
                redirect_uri,
                ClientAuth::SecretPost(client_secret),
            ),
            oidc: tokio::sync::OnceCell::new(),
        }
    }

    /// The meeting policy.
    pub(crate) fn policy(&self) -> &MeetingPolicy {
        &self.graph.config().policy
    }

    /// The Entra sign-in provider (its OpenID configuration is read once, then kept).
    pub(crate) async fn oidc(&self) -> Result<Arc<OidcProvider>, LaunchError> {
        self.oidc
            .get_or_try_init(|| async {
                OidcProvider::discover(self.http.clone(), &self.issuer, self.oidc_config.clone())
                    .await
                    .map(Arc::new)
            })
            .await
            .cloned()
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot read Entra's openid configuration");
                LaunchError::Misconfigured(
                    "Microsoft 365 sign-in is not reachable right now. Try again in a minute; if \
                     it keeps failing, tell your administrator."
                        .to_owned(),
                )
            })
    }

    /// Whether `url` (from Graph) may be a redirect target: https, or on Graph's own configured
    /// origin (a loopback sandbox in development).
    pub(crate) fn is_safe_join_url(&self, url: &str) -> bool {
        match Url::parse(url) {
            Ok(u) => {
                (u.scheme() == "https" && u.host().is_some())
                    || u.origin() == self.graph_base.origin()
            }
            Err(_) => false,
        }
    }
}

#[derive(Default)]
struct Registry {
    by_visit: HashMap<VisitId, Subscription>,
    visit_of: HashMap<SubscriptionId, VisitId>,
    join_url_of: HashMap<VisitId, String>,
    in_flight: HashSet<VisitId>,
}

/// The change-notification subscriptions of visits' meetings: created when a meeting is
/// provisioned, renewed before they lapse, removed after the call ended. Graph calls run in the
/// background, never on a launch's path.
pub(crate) struct Subscriptions {
    graph: GraphClient,
    config: SubscriptionConfig,
    metrics: Arc<Metrics>,
    registry: Mutex<Registry>,
}

impl Subscriptions {
    pub(crate) fn new(
        graph: GraphClient,
        config: SubscriptionConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            graph,
            config,
            metrics,
            registry: Mutex::new(Registry::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The visit a subscription is for.
    pub(crate) fn visit_of(&self, id: &SubscriptionId) -> Option<VisitId> {
        self.lock().visit_of.get(id).cloned()
    }

    /// Subscribes to the visit's meeting in the background, unless it already is (or is being).
    pub(crate) fn ensure(self: &Arc<Self>, visit: &Visit) {
        let Some(join_url) = visit.join_web_url.clone() else {
            return;
        };
        {
            let mut registry = self.lock();
            if registry.by_visit.contains_key(&visit.id)
                || !registry.in_flight.insert(visit.id.clone())
            {
                return;
            }
            registry
                .join_url_of
                .insert(visit.id.clone(), join_url.clone());
        }
        let this = Arc::clone(self);
        let visit_id = visit.id.clone();
        tokio::spawn(async move {
            let result = this
                .metrics
                .time(
                    "graph_subscription",
                    this.graph.subscribe_to_meeting(&this.config, &join_url),
                )
                .await;
            let mut registry = this.lock();
            registry.in_flight.remove(&visit_id);
            match result {
                Ok(subscription) => {
                    tracing::info!(visit_id = %visit_id, "subscribed to the meeting's call events");
                    registry
                        .visit_of
                        .insert(subscription.id.clone(), visit_id.clone());
                    registry.by_visit.insert(visit_id, subscription);
                }
                Err(e) => {
                    tracing::warn!(error = %e, visit_id = %visit_id, "cannot subscribe to the meeting's call events");
                }
            }
        });
    }

    /// The call ended: removes the visit's subscription in the background.
    pub(crate) fn call_ended(self: &Arc<Self>, visit: &VisitId) {
        let removed = {
            let mut registry = self.lock();
            let removed = registry.by_visit.remove(visit);
            if let Some(s) = &removed {
                registry.visit_of.remove(&s.id);
            }
            removed
        };
        let Some(subscription) = removed else {
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            match this.graph.delete_subscription(&subscription.id).await {
                Ok(()) => tracing::info!("removed the subscription of an ended call"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot remove the subscription of an ended call")
                }
            }
        });
    }

    /// Answers a lifecycle notification in the background.
    pub(crate) fn lifecycle(self: &Arc<Self>, id: &SubscriptionId, event: &LifecycleEvent) {
        let this = Arc::clone(self);
        let id = id.clone();
        let event = event.clone();
        tokio::spawn(async move {
            match event {
                LifecycleEvent::ReauthorizationRequired => {
                    if let Err(e) = this.graph.reauthorize_subscription(&id).await {
                        tracing::warn!(error = %e, "cannot reauthorize a subscription");
                    }
                }
                LifecycleEvent::SubscriptionRemoved => {
                    let again = {
                        let mut registry = this.lock();
                        let visit = registry.visit_of.remove(&id);
                        visit.and_then(|v| {
                            registry.by_visit.remove(&v);
                            registry.join_url_of.get(&v).cloned().map(|u| (v, u))
                        })
                    };
                    if let Some((visit, join_url)) = again {
                        match this
                            .graph
                            .subscribe_to_meeting(&this.config, &join_url)
                            .await
                        {
                            Ok(s) => {
                                let mut registry = this.lock();
                                registry.visit_of.insert(s.id.clone(), visit.clone());
                                registry.by_visit.insert(visit, s);
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot subscribe again"),
                        }
                    }
                }
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

    /// Renews the subscriptions that end within `margin`.
    pub(crate) async fn renew_due(&self, margin: Duration) {
        let now = chrono::Utc::now();
        let due: Vec<(VisitId, SubscriptionId)> = self
            .lock()
            .by_visit
            .iter()
            .filter(|(_, s)| s.renewal_due(now, margin))
            .map(|(v, s)| (v.clone(), s.id.clone()))
            .collect();
        for (visit, id) in due {
            match self.graph.renew_subscription(&self.config, &id).await {
                Ok(renewed) => {
                    self.lock().by_visit.insert(visit, renewed);
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew a subscription"),
            }
        }
    }
}
