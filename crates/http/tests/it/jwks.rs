//! The JWKS cache: keys cached by `kid`, unknown kids refetch within a rate limit, keys expire,
//! and a failed fetch is a typed error that keeps its cause.

use std::{error::Error as _, time::Duration};

use jsonwebtoken::{Algorithm, Header};
use url::Url;
use visitbridge_http::{
    ClientAssertionKey, JwksCache, JwksError, JwksPolicy, RetryPolicy, build_client,
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

const RSA: &[u8] = include_bytes!("../../../testkit/fixtures/keys/client-rsa.pem");

fn key_set() -> serde_json::Value {
    let key = ClientAssertionKey::from_pem(Algorithm::RS384, "k1", RSA).unwrap();
    serde_json::json!({
        "keys": [
            key.public_jwk().unwrap(),
            // A kind of key we do not know hides nothing.
            {"kty": "oct", "kid": "k-secret", "k": "c2VjcmV0"},
        ]
    })
}

async fn serving(response: ResponseTemplate) -> (MockServer, Url) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(response)
        .mount(&server)
        .await;
    let url = Url::parse(&format!("{}/keys?x=1", server.uri())).unwrap();
    (server, url)
}

fn cache(policy: JwksPolicy) -> JwksCache {
    let client = build_client(&visitbridge_http::HttpConfig::default()).unwrap();
    JwksCache::new(client, policy)
}

fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header
}

async fn fetches(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn keys_are_cached_and_unknown_kids_refetch_at_most_once_per_interval() {
    let (server, url) = serving(ResponseTemplate::new(200).set_body_json(key_set())).await;
    let cache = cache(JwksPolicy {
        min_refetch_interval: Duration::from_millis(300),
        ..JwksPolicy::default()
    });
    let rs384 = header(Algorithm::RS384, Some("k1"));
    assert_eq!(cache.keys_for(&url, &rs384).await.unwrap().len(), 1);
    assert_eq!(cache.keys_for(&url, &rs384).await.unwrap().len(), 1);
    assert_eq!(fetches(&server).await, 1, "cached");

    for n in 0..5 {
        let forged = header(Algorithm::RS384, Some(&format!("forged-{n}")));
        assert!(cache.keys_for(&url, &forged).await.unwrap().is_empty());
    }
    assert_eq!(
        fetches(&server).await,
        1,
        "forged kids within the interval fetch nothing"
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    let rotated = header(Algorithm::RS384, Some("rotated"));
    assert!(cache.keys_for(&url, &rotated).await.unwrap().is_empty());
    assert_eq!(fetches(&server).await, 2, "after the interval, one refetch");
    assert!(cache.keys_for(&url, &rotated).await.unwrap().is_empty());
    assert_eq!(fetches(&server).await, 2);
}

#[tokio::test]
async fn keys_are_fetched_again_once_they_are_older_than_their_age() {
    let (server, url) = serving(ResponseTemplate::new(200).set_body_json(key_set())).await;
    let cache = cache(JwksPolicy {
        max_age: Duration::from_millis(200),
        ..JwksPolicy::default()
    });
    let rs384 = header(Algorithm::RS384, Some("k1"));
    assert_eq!(cache.keys_for(&url, &rs384).await.unwrap().len(), 1);
    assert_eq!(fetches(&server).await, 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(cache.keys_for(&url, &rs384).await.unwrap().len(), 1);
    assert_eq!(fetches(&server).await, 2, "expired keys are refreshed");
}

#[tokio::test]
async fn keys_are_handed_out_only_for_accepted_algorithms_kids_and_their_own_algorithm() {
    let (server, url) = serving(ResponseTemplate::new(200).set_body_json(key_set())).await;
    let cache = cache(JwksPolicy {
        algorithms: vec![Algorithm::RS256, Algorithm::RS384, Algorithm::HS256],
        require_kid: true,
        ..JwksPolicy::default()
    });
    assert!(
        cache
            .keys_for(&url, &header(Algorithm::ES384, Some("k1")))
            .await
            .unwrap()
            .is_empty(),
        "not an accepted algorithm"
    );
    assert!(
        cache
            .keys_for(&url, &header(Algorithm::RS384, None))
            .await
            .unwrap()
            .is_empty(),
        "no kid"
    );
    assert_eq!(fetches(&server).await, 0, "nothing to fetch for");
    assert!(
        cache
            .keys_for(&url, &header(Algorithm::RS256, Some("k1")))
            .await
            .unwrap()
            .is_empty(),
        "the key is declared for RS384"
    );
    assert!(
        cache
            .keys_for(&url, &header(Algorithm::HS256, Some("k-secret")))
            .await
            .unwrap()
            .is_empty(),
        "a symmetric key is never a verification key"
    );

    let any_kid = self::cache(JwksPolicy::default());
    assert_eq!(
        any_kid
            .keys_for(&url, &header(Algorithm::RS384, None))
            .await
            .unwrap()
            .len(),
        1,
        "without a kid, every key of the algorithm"
    );
}

#[tokio::test]
async fn a_failed_fetch_is_a_typed_error_that_keeps_its_cause() {
    let rs384 = header(Algorithm::RS384, Some("k1"));
    let policy = JwksPolicy {
        retry: RetryPolicy::none(),
        ..JwksPolicy::default()
    };

    let (_server, url) = serving(ResponseTemplate::new(503)).await;
    let error = cache(policy.clone())
        .keys_for(&url, &rs384)
        .await
        .unwrap_err();
    assert!(
        matches!(error, JwksError::Status { status: 503, .. }),
        "{error:?}"
    );
    assert!(
        !error.to_string().contains("x=1"),
        "no query string: {error}"
    );

    let (_server, url) = serving(ResponseTemplate::new(200).set_body_string("{\"keys\": 3}")).await;
    let error = cache(policy.clone())
        .keys_for(&url, &rs384)
        .await
        .unwrap_err();
    assert!(matches!(error, JwksError::Malformed { .. }), "{error:?}");
    let cause = error.source().expect("the json error is kept");
    assert!(cause.to_string().contains("keys"), "{cause}");

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        Url::parse(&format!("http://127.0.0.1:{port}/keys")).unwrap()
    };
    let error = cache(policy.clone())
        .keys_for(&closed, &rs384)
        .await
        .unwrap_err();
    assert!(matches!(error, JwksError::Send { .. }), "{error:?}");
    assert!(error.source().is_some(), "the transport error is kept");

    let (_server, url) = serving(
        ResponseTemplate::new(200)
            .set_body_json(key_set())
            .set_delay(Duration::from_millis(500)),
    )
    .await;
    let bounded = cache(JwksPolicy {
        fetch_timeout: Some(Duration::from_millis(100)),
        ..policy
    });
    let error = bounded.keys_for(&url, &rs384).await.unwrap_err();
    assert!(matches!(error, JwksError::Timeout { .. }), "{error:?}");
}

#[tokio::test]
async fn stale_keys_are_kept_while_the_endpoint_fails_only_when_the_policy_says_so() {
    for keep_stale_keys in [true, false] {
        let server = MockServer::start().await;
        Mock::given(path("/keys"))
            .respond_with(ResponseTemplate::new(200).set_body_json(key_set()))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(path("/keys"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let url = Url::parse(&format!("{}/keys", server.uri())).unwrap();
        let cache = cache(JwksPolicy {
            max_age: Duration::from_millis(100),
            min_refetch_interval: Duration::from_millis(100),
            retry: RetryPolicy::none(),
            keep_stale_keys,
            ..JwksPolicy::default()
        });
        let rs384 = header(Algorithm::RS384, Some("k1"));
        assert_eq!(cache.keys_for(&url, &rs384).await.unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let refreshed = cache.keys_for(&url, &rs384).await;
        assert_eq!(fetches(&server).await, 2);
        if keep_stale_keys {
            assert_eq!(refreshed.unwrap().len(), 1, "stale keys beat none");
            // The failed attempt counts: no new try within the interval.
            assert_eq!(cache.keys_for(&url, &rs384).await.unwrap().len(), 1);
            assert_eq!(fetches(&server).await, 2);
        } else {
            assert!(matches!(
                refreshed,
                Err(JwksError::Status { status: 503, .. })
            ));
            // The next use tries again.
            assert!(cache.keys_for(&url, &rs384).await.is_err());
            assert_eq!(fetches(&server).await, 3);
        }
    }
}
