//! Backend services: client credentials with private_key_jwt, the token cache, user tokens.

use std::{collections::HashSet, sync::Arc};

use chrono::Utc;
use url::Url;
use visitbridge_fhir::TokenSource;
use visitbridge_http::Secret;
use visitbridge_smart::{BackendServicesClient, SmartError, UserAccessToken};

use crate::common::*;

const SCOPE: &str = "system/Communication.c system/DocumentReference.cu";

fn backend(ehr: &Ehr) -> BackendServicesClient {
    BackendServicesClient::new(
        http(),
        Url::parse(&ehr.fake.token_url()).expect("url"),
        CLIENT_ID,
        rsa_key(),
        SCOPE,
    )
    .with_retry_policy(fast_retries())
}

#[tokio::test]
async fn sequential_calls_share_one_token() {
    let ehr = Ehr::start(expect_rsa_jwt()).await;
    let client = backend(&ehr);
    let first = client.access_token().await.expect("token");
    for _ in 0..5 {
        assert_eq!(
            client.access_token().await.expect("token").expose(),
            first.expose()
        );
    }
    let requests = ehr.fake.token_requests();
    assert_eq!(requests.len(), 1);
    let form = &requests[0].form;
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], SCOPE);
    let (header, claims) = jwt_parts(&form["client_assertion"]);
    assert_eq!(header["alg"], "RS384");
    assert_eq!(header["kid"], CLIENT_KID);
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["aud"], ehr.fake.token_url());
    assert!(claims["exp"].as_i64().expect("exp") <= Utc::now().timestamp() + 300);
}

#[tokio::test]
async fn concurrent_calls_wait_for_one_refresh() {
    let ehr = Ehr::start(expect_rsa_jwt()).await;
    let client = Arc::new(backend(&ehr));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let client = client.clone();
        tasks.spawn(async move { client.access_token().await.map(|t| t.expose().to_owned()) });
    }
    let mut tokens = HashSet::new();
    while let Some(result) = tasks.join_next().await {
        tokens.insert(result.expect("task").expect("token"));
    }
    assert_eq!(tokens.len(), 1, "everyone got the same token");
    assert_eq!(
        ehr.fake.token_requests().len(),
        1,
        "one token request for 20 callers"
    );
}

#[tokio::test]
async fn a_token_near_expiry_is_replaced_with_a_fresh_assertion() {
    let ehr = Ehr::start(expect_rsa_jwt()).await;
    ehr.fake.set_backend_expires_in(0);
    let client = backend(&ehr);
    let a = client.token().await.expect("token");
    let b = client.token().await.expect("token");
    assert_ne!(a.expose(), b.expose());
    let requests = ehr.fake.token_requests();
    assert_eq!(requests.len(), 2);
    let jti = |i: usize| jwt_parts(&requests[i].form["client_assertion"]).1["jti"].clone();
    assert_ne!(jti(0), jti(1), "each assertion has its own jti");

    ehr.fake.set_backend_expires_in(3600);
    client.invalidate().await;
    let c = client.token().await.expect("token");
    assert_eq!(client.token().await.expect("token").expose(), c.expose());
    assert_eq!(ehr.fake.token_requests().len(), 3);
}

#[tokio::test]
async fn backend_token_errors_and_throttling() {
    let ehr = Ehr::start(expect_rsa_jwt()).await;
    let client = backend(&ehr);
    ehr.fake.throttle_token_once(1);
    let started = std::time::Instant::now();
    client.token().await.expect("token after the wait");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));

    client.invalidate().await;
    ehr.fake
        .set_token_error(Some((400, "invalid_scope", "scope not allowed")));
    let err = client.token().await.expect_err("refused");
    assert!(
        matches!(&err, SmartError::TokenEndpoint { error, .. } if error == "invalid_scope"),
        "{err}"
    );
    let as_source = client.access_token().await.expect_err("refused");
    assert!(
        as_source.to_string().contains("invalid_scope"),
        "{as_source}"
    );
    let cause = std::error::Error::source(&as_source)
        .and_then(|cause| cause.downcast_ref::<SmartError>())
        .expect("the token endpoint's refusal is kept as the cause");
    assert!(
        matches!(cause, SmartError::TokenEndpoint { error, .. } if error == "invalid_scope"),
        "{cause}"
    );
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_the_server() {
    let ehr = Ehr::start(expect_rsa_jwt()).await;
    let wrong = visitbridge_http::ClientAssertionKey::from_pem(
        jsonwebtoken::Algorithm::RS384,
        CLIENT_KID,
        visitbridge_testkit::fixtures::keys::ATTACKER_RSA.as_bytes(),
    )
    .expect("key");
    let client = BackendServicesClient::new(
        http(),
        Url::parse(&ehr.fake.token_url()).expect("url"),
        CLIENT_ID,
        wrong,
        SCOPE,
    );
    let err = client.token().await.expect_err("refused");
    assert!(
        matches!(&err, SmartError::TokenEndpoint { error, .. } if error == "invalid_client"),
        "{err}"
    );
}

#[tokio::test]
async fn user_access_token_fails_once_expired() {
    let live = UserAccessToken::new(Secret::new("t1"), Utc::now() + chrono::Duration::minutes(5));
    assert_eq!(live.access_token().await.expect("live").expose(), "t1");
    let dead = UserAccessToken::new(Secret::new("t2"), Utc::now() - chrono::Duration::seconds(1));
    let err = dead.access_token().await.expect_err("expired");
    assert!(err.to_string().contains("expired"), "{err}");
    assert!(!err.to_string().contains("t2"));
    assert!(matches!(
        std::error::Error::source(&err).and_then(|cause| cause.downcast_ref::<SmartError>()),
        Some(SmartError::TokenExpired)
    ));
}
