//! With encryption configured: validation tokens are required and checked against the identity
//! platform's keys, and plain resource data is refused; without it, nothing changes.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;
use tower::ServiceExt as _;
use visitbridge_graph::{
    ClientStateSecret, GraphError, Notification, NotificationEncryption, ValidationTokenConfig,
    ValidationTokenVerifier, parse_notifications,
};
use visitbridge_http::{HttpConfig, Secret, build_client};
use visitbridge_testkit::{
    entra,
    fixtures::keys,
    graph::{
        GRAPH_CHANGE_TRACKING_APP_ID, ValidationJwks, ValidationToken, encrypted_notification,
        encrypted_notification_with_tokens, plain_notification, validation_token,
    },
};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

use crate::{
    notifications::decryption_keys,
    webhook::{CLIENT_STATE, Recorder, encrypted_router, post, roster},
};

/// The identity platform's JWKS on a fake login host.
pub(crate) struct Microsoft {
    pub(crate) server: MockServer,
    pub(crate) jwks: ValidationJwks,
}

impl Microsoft {
    pub(crate) async fn start() -> Self {
        let server = MockServer::start().await;
        let jwks = ValidationJwks::mount(&server).await;
        Self { server, jwks }
    }

    pub(crate) fn config(&self) -> ValidationTokenConfig {
        ValidationTokenConfig::new(entra::TENANT_ID, entra::CLIENT_ID)
            .with_jwks_url(self.jwks.jwks_url())
    }

    pub(crate) fn verifier(&self, config: ValidationTokenConfig) -> ValidationTokenVerifier {
        ValidationTokenVerifier::new(build_client(&HttpConfig::default()).unwrap(), config)
    }

    pub(crate) fn encryption(&self) -> NotificationEncryption {
        NotificationEncryption::new(decryption_keys(), self.verifier(self.config()))
    }
}

fn encrypted_with(tokens: Vec<String>) -> Value {
    encrypted_notification_with_tokens("sub-1", CLIENT_STATE, "https://t/x", &roster(), tokens)
}

async fn status_of(router: axum::Router, body: &Value) -> StatusCode {
    router
        .oneshot(post("/notifications", body))
        .await
        .unwrap()
        .status()
}

fn delivered_events(sink: &Recorder) -> usize {
    sink.batches
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .map(|n| match n {
            Notification::Events { events, .. } => events.len(),
            Notification::Lifecycle { .. } => 0,
            Notification::Unreadable(u) => panic!("unreadable: {u:?}"),
        })
        .sum()
}

#[tokio::test]
async fn an_encrypted_batch_with_a_genuine_token_is_delivered_and_keys_are_cached() {
    let microsoft = Microsoft::start().await;
    let sink = Arc::new(Recorder::default());
    let router = encrypted_router(&microsoft, sink.clone());
    // Graph sends a token per app and tenant sharing the URL: another app's comes first here.
    let other_app = ValidationToken {
        aud: "11111111-2222-3333-4444-555555555555".into(),
        ..ValidationToken::default()
    }
    .sign();
    let first = encrypted_with(vec![other_app, validation_token()]);
    assert_eq!(
        status_of(router.clone(), &first).await,
        StatusCode::ACCEPTED
    );
    let second = encrypted_notification("sub-1", CLIENT_STATE, "https://t/x", &roster());
    assert_eq!(status_of(router, &second).await, StatusCode::ACCEPTED);
    assert_eq!(delivered_events(&sink), 2);
    assert_eq!(
        microsoft.jwks.fetches(),
        1,
        "keys are fetched once, then cached"
    );
}

#[tokio::test]
async fn forged_or_foreign_validation_tokens_are_refused_and_nothing_is_delivered() {
    let microsoft = Microsoft::start().await;
    let sink = Arc::new(Recorder::default());
    let router = encrypted_router(&microsoft, sink.clone());
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("no token", vec![]),
        (
            "another app's audience",
            vec![
                ValidationToken {
                    aud: "11111111-2222-3333-4444-555555555555".into(),
                    ..ValidationToken::default()
                }
                .sign(),
            ],
        ),
        (
            "not issued to graph change tracking (azp)",
            vec![
                ValidationToken {
                    azp: Some(entra::CLIENT_ID.into()),
                    ..ValidationToken::default()
                }
                .sign(),
            ],
        ),
        (
            "not issued to graph change tracking (v1 appid)",
            vec![
                ValidationToken {
                    azp: None,
                    appid: Some(entra::CLIENT_ID.into()),
                    ..ValidationToken::default()
                }
                .sign(),
            ],
        ),
        (
            "expired",
            vec![
                ValidationToken {
                    expires_in: -3600,
                    ..ValidationToken::default()
                }
                .sign(),
            ],
        ),
        (
            "another tenant's issuer",
            vec![
                ValidationToken {
                    iss: "https://sts.windows.net/99999999-0000-0000-0000-000000000000/".into(),
                    ..ValidationToken::default()
                }
                .sign(),
            ],
        ),
        (
            "signed by an unknown key",
            vec![
                ValidationToken {
                    signing_key_pem: keys::ATTACKER_RSA,
                    kid: "attacker-key".into(),
                    ..ValidationToken::default()
                }
                .sign(),
            ],
        ),
        (
            "signed by another key under the genuine kid",
            vec![
                ValidationToken {
                    signing_key_pem: keys::ATTACKER_RSA,
                    ..ValidationToken::default()
                }
                .sign(),
            ],
        ),
        ("not a jwt", vec!["not-a-jwt".into()]),
    ];
    for (case, tokens) in cases {
        assert_eq!(
            status_of(router.clone(), &encrypted_with(tokens)).await,
            StatusCode::FORBIDDEN,
            "{case}"
        );
    }
    assert!(sink.batches.lock().unwrap().is_empty());
    // A genuine batch still goes through afterwards.
    assert_eq!(
        status_of(router, &encrypted_with(vec![validation_token()])).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(delivered_events(&sink), 1);
}

#[tokio::test]
async fn unknown_key_ids_refetch_the_keys_at_most_once_per_interval() {
    let microsoft = Microsoft::start().await;
    let sink = Arc::new(Recorder::default());
    let router = encrypted_router(&microsoft, sink.clone());
    for n in 0..5 {
        let forged = ValidationToken {
            signing_key_pem: keys::ATTACKER_RSA,
            kid: format!("attacker-key-{n}"),
            ..ValidationToken::default()
        }
        .sign();
        assert_eq!(
            status_of(router.clone(), &encrypted_with(vec![forged])).await,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(microsoft.jwks.fetches(), 1);
    assert_eq!(
        status_of(router, &encrypted_with(vec![validation_token()])).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(microsoft.jwks.fetches(), 1);
}

#[tokio::test]
async fn plain_resource_data_is_refused_when_encryption_is_configured() {
    let microsoft = Microsoft::start().await;
    let sink = Arc::new(Recorder::default());
    let plain = plain_notification("sub-1", CLIENT_STATE, "https://t/x", roster());
    assert_eq!(
        status_of(encrypted_router(&microsoft, sink.clone()), &plain).await,
        StatusCode::FORBIDDEN
    );
    // Even with a genuine validation token next to it: Graph would have encrypted it.
    let mut with_token = plain.clone();
    with_token["validationTokens"] = serde_json::json!([validation_token()]);
    assert_eq!(
        status_of(encrypted_router(&microsoft, sink.clone()), &with_token).await,
        StatusCode::FORBIDDEN
    );
    // One plain item spoils an otherwise genuine encrypted batch.
    let mut mixed = encrypted_with(vec![validation_token()]);
    let plain_item = plain["value"][0].clone();
    mixed["value"].as_array_mut().unwrap().push(plain_item);
    assert_eq!(
        status_of(encrypted_router(&microsoft, sink.clone()), &mixed).await,
        StatusCode::FORBIDDEN
    );
    assert!(sink.batches.lock().unwrap().is_empty());

    let client_state = ClientStateSecret::new(Secret::new(CLIENT_STATE));
    let error = parse_notifications(
        &serde_json::to_vec(&plain).unwrap(),
        &client_state,
        Some(&decryption_keys()),
    )
    .expect_err("refused");
    assert!(
        matches!(error, GraphError::UnverifiedNotification(_)),
        "{error:?}"
    );
    assert!(parse_notifications(&serde_json::to_vec(&plain).unwrap(), &client_state, None).is_ok());
}

#[tokio::test]
async fn plain_resource_data_is_still_accepted_without_encryption() {
    let sink = Arc::new(Recorder::default());
    let router = visitbridge_graph::webhook_router(
        visitbridge_graph::WebhookConfig::new(ClientStateSecret::new(Secret::new(CLIENT_STATE))),
        sink.clone(),
    );
    let plain = plain_notification("sub-1", CLIENT_STATE, "https://t/x", roster());
    assert_eq!(status_of(router, &plain).await, StatusCode::ACCEPTED);
    assert_eq!(delivered_events(&sink), 1);
}

#[tokio::test]
async fn unreachable_keys_make_graph_retry_instead_of_dropping_the_batch() {
    let microsoft = Microsoft::start().await;
    Mock::given(path("/broken/keys"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&microsoft.server)
        .await;
    let config = microsoft.config().with_jwks_url(
        format!("{}/broken/keys", microsoft.server.uri())
            .parse()
            .unwrap(),
    );
    let encryption = NotificationEncryption::new(decryption_keys(), microsoft.verifier(config));
    let sink = Arc::new(Recorder::default());
    let router = visitbridge_graph::webhook_router(
        visitbridge_graph::WebhookConfig {
            encryption: Some(encryption),
            ..visitbridge_graph::WebhookConfig::new(ClientStateSecret::new(Secret::new(
                CLIENT_STATE,
            )))
        },
        sink.clone(),
    );
    assert_eq!(
        status_of(router, &encrypted_with(vec![validation_token()])).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(sink.batches.lock().unwrap().is_empty());
}

#[tokio::test]
async fn v1_and_v2_issuers_of_our_tenant_are_accepted() {
    let microsoft = Microsoft::start().await;
    let config = microsoft
        .config()
        .with_login_base(&microsoft.jwks.login_base())
        .unwrap();
    assert_eq!(config.jwks_url, microsoft.jwks.jwks_url());
    let verifier = microsoft.verifier(config);
    for iss in [
        format!("https://sts.windows.net/{}/", entra::TENANT_ID),
        format!(
            "https://login.microsoftonline.com/{}/v2.0",
            entra::TENANT_ID
        ),
        format!(
            "{}/v2.0",
            microsoft.jwks.login_base().join(entra::TENANT_ID).unwrap()
        ),
    ] {
        let token = ValidationToken {
            iss: iss.clone(),
            appid: None,
            azp: Some(GRAPH_CHANGE_TRACKING_APP_ID.into()),
            ..ValidationToken::default()
        }
        .sign();
        verifier.verify_any(&[token]).await.expect(&iss);
    }
    let error = verifier.verify_any(&[]).await.expect_err("no token");
    assert!(
        matches!(error, GraphError::UnverifiedNotification(_)),
        "{error:?}"
    );
}
