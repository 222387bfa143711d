//! Entra ID app tokens: credentials, caching, one refresh under concurrency, errors.

use std::time::Duration;

use visitbridge_graph::{EntraAppTokens, GraphError, TokenCredential};
use visitbridge_http::{HttpConfig, Secret, build_client};
use visitbridge_testkit::{entra::FakeEntra, fixtures::keys};
use wiremock::MockServer;

use crate::{entra_config, fast_retry, secret_tokens, visit, world};

#[tokio::test]
async fn a_token_is_fetched_once_and_cached() {
    let server = MockServer::start().await;
    let entra = FakeEntra::mount(&server).await;
    let tokens = secret_tokens(&entra);
    let first = tokens.token().await.expect("token");
    let second = tokens.token().await.expect("token");
    assert_eq!(first, second);
    assert!(entra.is_valid_token(first.expose()));
    assert_eq!(entra.app_token_requests(), 1);
}

#[tokio::test]
async fn fifty_concurrent_callers_cause_one_token_request() {
    let server = MockServer::start().await;
    let entra = FakeEntra::mount(&server).await;
    // Slow enough that every caller arrives while the first request is in flight.
    entra.set_token_delay(Duration::from_millis(200));
    let tokens = secret_tokens(&entra);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let tokens = tokens.clone();
        set.spawn(async move { tokens.token().await.map(|t| t.expose().to_owned()) });
    }
    let mut seen = Vec::new();
    while let Some(result) = set.join_next().await {
        seen.push(result.expect("task").expect("token"));
    }
    assert_eq!(seen.len(), 50);
    assert!(
        seen.iter().all(|t| *t == seen[0]),
        "everyone got the one token"
    );
    assert_eq!(entra.app_token_requests(), 1);
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed() {
    let server = MockServer::start().await;
    let entra = FakeEntra::mount(&server).await;
    entra.set_token_lifetime(0);
    let tokens = secret_tokens(&entra);
    let first = tokens.token().await.expect("token");
    let second = tokens.token().await.expect("token");
    assert_ne!(first, second);
    assert_eq!(entra.app_token_requests(), 2);
}

#[tokio::test]
async fn the_certificate_credential_signs_an_assertion_entra_accepts() {
    let server = MockServer::start().await;
    let entra = FakeEntra::mount(&server).await;
    let credential =
        TokenCredential::certificate_from_pem(keys::CLIENT_RSA, keys::CLIENT_CERT).expect("cert");
    let tokens = EntraAppTokens::new(
        build_client(&HttpConfig::default()).expect("client"),
        entra_config(&entra),
        credential,
    )
    .expect("tokens");
    let token = tokens.token().await.expect("token");
    assert!(entra.is_valid_token(token.expose()));
    let request = &server.received_requests().await.expect("recorded")[0];
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect();
    assert!(form.iter().any(|(k, _)| k == "client_assertion"));
    assert!(!form.iter().any(|(k, _)| k == "client_secret"));
}

#[tokio::test]
async fn an_assertion_signed_with_another_key_is_refused() {
    let server = MockServer::start().await;
    let entra = FakeEntra::mount(&server).await;
    let credential =
        TokenCredential::certificate_from_pem(keys::ATTACKER_RSA, keys::CLIENT_CERT).expect("cert");
    let tokens = EntraAppTokens::new(
        build_client(&HttpConfig::default()).expect("client"),
        entra_config(&entra),
        credential,
    )
    .expect("tokens");
    match tokens.token().await {
        Err(GraphError::Entra { aadsts_code, .. }) => {
            assert_eq!(aadsts_code.as_deref(), Some("AADSTS700027"));
        }
        other => panic!("expected an entra error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_secret_keeps_the_aadsts_code_and_trace_id_but_not_the_secret() {
    let server = MockServer::start().await;
    let entra = FakeEntra::mount(&server).await;
    let tokens = EntraAppTokens::new(
        build_client(&HttpConfig::default()).expect("client"),
        entra_config(&entra),
        TokenCredential::ClientSecret(Secret::new("the-wrong-secret-value")),
    )
    .expect("tokens")
    .with_retry(fast_retry());
    let error = tokens.token().await.expect_err("refused");
    let GraphError::Entra {
        status,
        error: code,
        aadsts_code,
        trace_id,
        correlation_id,
        ..
    } = &error
    else {
        panic!("expected an entra error, got {error:?}");
    };
    assert_eq!(*status, 401);
    assert_eq!(code, "invalid_client");
    assert_eq!(aadsts_code.as_deref(), Some("AADSTS7000215"));
    assert!(trace_id.is_some() && correlation_id.is_some());
    let shown = format!("{error} {error:?} {tokens:?}");
    assert!(shown.contains("AADSTS7000215"));
    assert!(!shown.contains("the-wrong-secret-value"), "{shown}");
    assert!(!shown.contains("Timestamp"), "only the first line: {shown}");
    // A failed refresh is not repeated by the next caller at once.
    let again = tokens.token().await.expect_err("still refused");
    assert_eq!(again.to_string(), error.to_string());
    assert_eq!(entra.app_token_requests(), 1);
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once_after_graph_answers_401() {
    let w = world().await;
    w.client
        .create_or_get(&visit("csn-1"))
        .await
        .expect("first call");
    w.entra.revoke_tokens();
    w.client
        .create_or_get(&visit("csn-1"))
        .await
        .expect("second call after a fresh token");
    assert_eq!(w.entra.app_token_requests(), 2);
}

#[tokio::test]
async fn tokens_never_show_in_debug_output() {
    let w = world().await;
    w.client
        .create_or_get(&visit("csn-1"))
        .await
        .expect("meeting");
    let shown = format!("{:?} {:?}", w.tokens, w.client);
    let issued = w.entra.issued_tokens();
    assert!(
        !issued.is_empty(),
        "a token was issued, so there is one to look for"
    );
    for token in issued {
        assert!(!shown.contains(&token), "{shown}");
    }
    assert!(!shown.contains(visitbridge_testkit::entra::CLIENT_SECRET));
}
