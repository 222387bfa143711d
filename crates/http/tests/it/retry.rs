//! Retries of idempotent calls: Retry-After honoured, bounds respected, timeouts reported.

use std::time::{Duration, Instant};

use visitbridge_http::{HttpConfig, RetryPolicy, SendError, build_client, send_idempotent};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

fn quick_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_total: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn waits_for_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .with_priority(2)
        .mount(&server)
        .await;
    let client = build_client(&HttpConfig::default()).unwrap();
    let started = Instant::now();
    let response = send_idempotent(&quick_policy(3), || client.get(server.uri()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_returns_the_last_answer() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&server)
        .await;
    let client = build_client(&HttpConfig::default()).unwrap();
    let response = send_idempotent(&quick_policy(3), || client.get(server.uri()))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_is_not_waited_for() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .expect(1)
        .mount(&server)
        .await;
    let client = build_client(&HttpConfig::default()).unwrap();
    let started = Instant::now();
    let response = send_idempotent(&quick_policy(5), || client.get(server.uri()))
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    let client = build_client(&HttpConfig::default()).unwrap();
    let response = send_idempotent(&quick_policy(5), || client.get(server.uri()))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .expect(2)
        .mount(&server)
        .await;
    let client = build_client(&HttpConfig {
        total_timeout: Duration::from_millis(150),
        ..HttpConfig::default()
    })
    .unwrap();
    let err = send_idempotent(&quick_policy(2), || client.get(server.uri()))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Timeout { attempts: 2 }), "{err:?}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("Location", "http://169.254.169.254/latest"),
        )
        .mount(&server)
        .await;
    let client = build_client(&HttpConfig::default()).unwrap();
    let response = client.get(server.uri()).send().await.unwrap();
    assert_eq!(response.status(), 302);
}
