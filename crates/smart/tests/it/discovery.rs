//! Discovery: the well-known document, the metadata fallback, the cache and its TTL.

use std::time::Duration;

use url::Url;
use visitbridge_smart::{
    ApprovedIssuer, DiscoverySource, SmartConfigurationOffer, SmartDiscovery, SmartError,
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::common::*;

fn discovery() -> SmartDiscovery {
    SmartDiscovery::new(http(), Default::default()).with_retry_policy(fast_retries())
}

#[tokio::test]
async fn well_known_configuration_is_read_with_mock_server_endpoints() {
    let ehr = Ehr::with_secret_basic().await;
    let config = discovery().get(&ehr.approved()).await.expect("config");
    assert_eq!(config.source, DiscoverySource::WellKnown);
    assert_eq!(config.token_endpoint.as_str(), ehr.fake.token_url());
    assert_eq!(
        config.authorization_endpoint.as_ref().map(Url::as_str),
        Some(ehr.fake.authorize_url().as_str())
    );
    assert_eq!(config.issuer.as_deref(), Some(ehr.fake.issuer().as_str()));
    assert_eq!(
        config.jwks_uri.as_ref().map(Url::as_str),
        Some(ehr.fake.jwks_uri().as_str())
    );
    assert!(config.supports_s256());
    assert!(config.has_capability("launch-ehr") && config.has_capability("authorize-post"));
    assert!(
        config
            .token_endpoint_auth_methods_supported
            .iter()
            .any(|m| m == "private_key_jwt")
    );
    assert!(config.other.contains_key("response_types_supported"));
}

#[tokio::test]
async fn cache_serves_within_ttl_and_refetches_after_it() {
    let ehr = Ehr::with_secret_basic().await;
    let cached = discovery();
    for _ in 0..3 {
        cached.get(&ehr.approved()).await.expect("config");
    }
    assert_eq!(
        ehr.fake.discovery_requests(),
        1,
        "one fetch within the default hour"
    );

    let expiring = discovery().with_ttl(Duration::ZERO);
    expiring.get(&ehr.approved()).await.expect("config");
    expiring.get(&ehr.approved()).await.expect("config");
    assert_eq!(
        ehr.fake.discovery_requests(),
        3,
        "a spent ttl fetches again"
    );

    cached.clear();
    cached.get(&ehr.approved()).await.expect("config");
    assert_eq!(ehr.fake.discovery_requests(), 4);
}

#[tokio::test]
async fn background_refresh_refetches_cached_issuers() {
    let ehr = Ehr::with_secret_basic().await;
    let d = discovery();
    d.get(&ehr.approved()).await.expect("config");
    let task = d.spawn_refresh(Duration::from_millis(20));
    let mut waited = Duration::ZERO;
    while ehr.fake.discovery_requests() < 2 && waited < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    task.abort();
    assert!(
        ehr.fake.discovery_requests() >= 2,
        "the refresher fetched again"
    );
}

#[tokio::test]
async fn metadata_fallback_is_refused_without_s256_unless_assumed() {
    let ehr = Ehr::with_secret_basic().await;
    ehr.fake.mount_metadata_fallback(&ehr.server).await;

    let err = discovery().get(&ehr.approved()).await.expect_err("no s256");
    assert!(matches!(err, SmartError::S256NotSupported { .. }), "{err}");

    let config = discovery()
        .with_metadata_fallback_assumes_s256(true)
        .get(&ehr.approved())
        .await
        .expect("config from metadata");
    assert_eq!(config.source, DiscoverySource::Metadata);
    assert_eq!(config.token_endpoint.as_str(), ehr.fake.token_url());
    assert_eq!(
        config.authorization_endpoint.as_ref().map(Url::as_str),
        Some(ehr.fake.authorize_url().as_str())
    );
    assert_eq!(ehr.fake.metadata_requests(), 2);
}

#[tokio::test]
async fn metadata_fallback_launch_without_openid_completes() {
    let ehr = Ehr::with_secret_basic().await;
    ehr.fake.mount_metadata_fallback(&ehr.server).await;
    let config = visitbridge_smart::SmartClientConfig::new(
        CLIENT_ID,
        Url::parse(REDIRECT_URI).expect("url"),
        secret_basic(),
    )
    .with_scopes(
        "launch user/Appointment.read",
        "launch/patient patient/Appointment.read",
    );
    let client = visitbridge_smart::SmartClient::new(
        config,
        http(),
        std::sync::Arc::new(visitbridge_smart::StaticIssuers::new([ehr.approved()])),
        std::sync::Arc::new(visitbridge_smart::InMemoryPendingLaunches::new()),
    )
    .with_discovery(discovery().with_metadata_fallback_assumes_s256(true));
    let request = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begin");
    assert!(
        !request.prefers_post(),
        "metadata cannot say authorize-post"
    );
    assert!(request.param("nonce").is_none(), "no openid, no nonce");
    let callback = ehr.fake.browser_get(request.url().as_str()).await;
    let done = client
        .complete_callback(callback.query().expect("query"))
        .await
        .expect("complete");
    assert_eq!(
        done.ehr_user, None,
        "no openid scope: no user, and the id_token is ignored"
    );
    assert!(done.context.appointment.is_some());
}

async fn issuer_answering(server: &MockServer, body: ResponseTemplate) -> ApprovedIssuer {
    Mock::given(method("GET"))
        .and(path("/other/fhir/.well-known/smart-configuration"))
        .respond_with(body)
        .mount(server)
        .await;
    ApprovedIssuer::new(
        Url::parse(&format!("{}/other/fhir", server.uri())).expect("url"),
        "x",
    )
}

#[tokio::test]
async fn malformed_or_unsafe_configurations_are_refused() {
    let server = MockServer::start().await;
    let issuer = issuer_answering(
        &server,
        ResponseTemplate::new(200)
            .set_body_raw(b"{\"token_endpoint\": ".to_vec(), "application/json"),
    )
    .await;
    let err = discovery().get(&issuer).await.expect_err("malformed");
    assert!(
        matches!(&err, SmartError::Discovery { reason, .. } if reason.contains("json")),
        "{err}"
    );

    let server = MockServer::start().await;
    let issuer = issuer_answering(
        &server,
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "token_endpoint": "http://ehr.example.org/oauth2/token",
            "code_challenge_methods_supported": ["S256"]
        })),
    )
    .await;
    let err = discovery().get(&issuer).await.expect_err("plain http");
    assert!(
        matches!(&err, SmartError::Discovery { reason, .. } if reason.contains("https")),
        "{err}"
    );

    let server = MockServer::start().await;
    let issuer = issuer_answering(&server, ResponseTemplate::new(500)).await;
    let err = discovery().get(&issuer).await.expect_err("server error");
    assert!(
        matches!(err, SmartError::UpstreamStatus { status: 500, .. }),
        "{err}"
    );
    assert_eq!(
        server.received_requests().await.expect("recording").len(),
        3,
        "5xx is retried"
    );
}

#[test]
fn a_configuration_offer_is_read_leniently() {
    let offer = |body: &str| SmartConfigurationOffer::from_json(body.as_bytes());
    assert_eq!(
        offer(
            r#"{"authorization_endpoint":"https://ehr.example/authorize",
                "token_endpoint":"https://ehr.example/token",
                "code_challenge_methods_supported":["plain","S256"]}"#
        ),
        Some(SmartConfigurationOffer {
            authorization_endpoint: true,
            token_endpoint: true,
            pkce_s256: true,
        })
    );
    // Missing, empty or mistyped fields are gaps, not a refusal of the whole document.
    assert_eq!(
        offer(
            r#"{"authorization_endpoint":"","token_endpoint":7,"code_challenge_methods_supported":"S256"}"#
        ),
        Some(SmartConfigurationOffer {
            authorization_endpoint: false,
            token_endpoint: false,
            pkce_s256: false,
        })
    );
    assert_eq!(offer("[]"), None);
    assert_eq!(offer("<html>"), None);
}
