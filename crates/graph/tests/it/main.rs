//! Integration tests of visitbridge-graph against the Entra ID and Graph fakes of the testkit.

mod attendance;
mod faults;
mod meetings;
mod notifications;
mod subscriptions;
mod tokens;
mod validation;
mod webhook;

use std::{sync::Arc, time::Duration};

use visitbridge_graph::{
    EntraAppTokens, EntraConfig, ExternalMeetingId, GraphClient, GraphConfig, TokenCredential,
    UserObjectId, VisitMeetingRequest,
};
use visitbridge_http::{HttpConfig, RetryPolicy, Secret, build_client};
use visitbridge_testkit::{
    entra::{self, FakeEntra},
    graph::FakeGraph,
};
use wiremock::MockServer;

/// The organiser of test meetings.
pub(crate) const ORGANIZER: &str = "3f2a9c1e-7b4d-4e8a-9c0f-1d2e3f4a5b6c";

/// One fake Microsoft cloud (Entra ID + Graph on one server) and a client pointed at it.
pub(crate) struct World {
    pub(crate) server: MockServer,
    pub(crate) entra: FakeEntra,
    pub(crate) graph: FakeGraph,
    pub(crate) tokens: Arc<EntraAppTokens>,
    pub(crate) client: GraphClient,
}

/// Retries quick enough for tests, with the same shape as production.
pub(crate) fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_total: Duration::from_secs(10),
    }
}

pub(crate) fn entra_config(entra: &FakeEntra) -> EntraConfig {
    EntraConfig::new(entra::TENANT_ID, entra::CLIENT_ID).with_login_base(entra.login_base())
}

pub(crate) fn secret_tokens(entra: &FakeEntra) -> Arc<EntraAppTokens> {
    let http = build_client(&HttpConfig::default()).expect("client");
    Arc::new(
        EntraAppTokens::new(
            http,
            entra_config(entra),
            TokenCredential::ClientSecret(Secret::new(entra::CLIENT_SECRET)),
        )
        .expect("tokens")
        .with_retry(fast_retry()),
    )
}

pub(crate) async fn world() -> World {
    world_with(|_| {}).await
}

pub(crate) async fn world_with(configure: impl FnOnce(&mut GraphConfig)) -> World {
    let server = MockServer::start().await;
    let entra = FakeEntra::mount(&server).await;
    let graph = FakeGraph::mount_with_entra(&server, &entra).await;
    let tokens = secret_tokens(&entra);
    let mut config = GraphConfig {
        graph_base: graph.graph_base(),
        retry: fast_retry(),
        ..GraphConfig::default()
    };
    configure(&mut config);
    let client = GraphClient::new(
        build_client(&HttpConfig::default()).expect("client"),
        config,
        tokens.clone(),
    );
    World {
        server,
        entra,
        graph,
        tokens,
        client,
    }
}

pub(crate) fn visit(visit_key: &str) -> VisitMeetingRequest {
    VisitMeetingRequest {
        organizer: UserObjectId::new(ORGANIZER),
        external_id: ExternalMeetingId::derive("cfg-test", visit_key),
        start: None,
        end: None,
    }
}
