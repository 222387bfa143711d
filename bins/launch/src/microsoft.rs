//! Microsoft 365 for the launch service: app tokens and Graph (meetings, subscriptions), and the
//! clinician's one-time Entra sign-in that links their EHR user to their Microsoft account.

use std::{sync::Arc, time::Duration};

use url::Url;
use visitbridge_graph::{
    GraphClient, GraphError, MAX_SUBSCRIPTION_LIFETIME, MeetingId, MeetingPolicy, ParticipantEvent,
    Subscription, SubscriptionConfig, SubscriptionId, UserObjectId,
};
use visitbridge_launch_core::{AttendanceReports, MeetingSubscriptions, Subscriptions};
use visitbridge_smart::{ClientAuth, OidcClientConfig, OidcProvider};

use crate::error::LaunchError;

/// Entra ID and Graph, as configured.
pub(crate) struct Microsoft {
    /// The organisation's tenant (clinicians must sign in there).
    pub(crate) tenant_id: String,
    pub(crate) graph: GraphClient,
    /// Where Graph's own URLs may point besides https (a loopback sandbox).
    pub(crate) graph_base: Url,
    pub(crate) subscriptions: Arc<Subscriptions>,
    http: visitbridge_http::HttpClient,
    issuer: Url,
    oidc_config: OidcClientConfig,
    oidc: tokio::sync::OnceCell<Arc<OidcProvider>>,
}

impl Microsoft {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        http: visitbridge_http::HttpClient,
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

/// Graph's `/subscriptions` with the deployment's subscription settings: the launch library's
/// [`MeetingSubscriptions`] port.
pub(crate) struct GraphSubscriptions {
    pub(crate) graph: GraphClient,
    pub(crate) config: SubscriptionConfig,
}

#[async_trait::async_trait]
impl MeetingSubscriptions for GraphSubscriptions {
    async fn subscribe(&self, join_web_url: &str) -> Result<Subscription, GraphError> {
        self.graph
            .subscribe_to_meeting(&self.config, join_web_url)
            .await
    }

    async fn renew(&self, id: &SubscriptionId) -> Result<Subscription, GraphError> {
        self.graph.renew_subscription(&self.config, id).await
    }

    async fn delete(&self, id: &SubscriptionId) -> Result<(), GraphError> {
        self.graph.delete_subscription(id).await
    }

    async fn reauthorize(&self, id: &SubscriptionId) -> Result<(), GraphError> {
        self.graph.reauthorize_subscription(id).await
    }

    fn lifetime(&self) -> Duration {
        self.config.lifetime.min(MAX_SUBSCRIPTION_LIFETIME)
    }
}

/// Graph's attendance reports: the launch library's [`AttendanceReports`] port.
pub(crate) struct GraphAttendance(pub(crate) GraphClient);

#[async_trait::async_trait]
impl AttendanceReports for GraphAttendance {
    async fn attendance_events(
        &self,
        organizer: &UserObjectId,
        meeting: &MeetingId,
    ) -> Result<Vec<ParticipantEvent>, GraphError> {
        self.0.attendance_events(organizer, meeting).await
    }
}
