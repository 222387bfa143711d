//! Throttling and server faults: Retry-After honoured, bounded retries, request ids, no tokens.

use std::time::{Duration, Instant};

use url::Url;
use visitbridge_graph::{GraphError, SubscriptionConfig};
use visitbridge_http::{RetryPolicy, Secret};

use crate::{visit, world, world_with};

#[tokio::test]
async fn a_429_is_waited_out_for_as_long_as_retry_after_says() {
    let w = world().await;
    w.graph.throttle_next(1, 1);
    let started = Instant::now();
    let meeting = w
        .client
        .create_or_get(&visit("csn-1"))
        .await
        .expect("meeting");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}",
        started.elapsed()
    );
    assert!(meeting.created);
    let tries = w
        .server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path().ends_with("/createOrGet"))
        .count();
    assert_eq!(tries, 2, "createOrGet was retried once");
    assert_eq!(w.graph.meeting_count(), 1, "and made one meeting");
}

#[tokio::test]
async fn throttling_beyond_the_budget_is_reported_with_retry_after_and_request_id() {
    let w = world_with(|c| {
        c.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_total: Duration::from_millis(500),
        }
    })
    .await;
    w.graph.throttle_next(10, 30);
    let started = Instant::now();
    let error = w
        .client
        .create_or_get(&visit("csn-1"))
        .await
        .expect_err("throttled");
    let GraphError::Throttled {
        retry_after,
        request_id,
    } = &error
    else {
        panic!("expected Throttled, got {error:?}");
    };
    assert_eq!(*retry_after, Some(Duration::from_secs(30)));
    assert!(request_id.is_some());
    assert!(error.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not sit out a 30 s wait"
    );
}

#[tokio::test]
async fn server_errors_on_idempotent_calls_are_retried() {
    let w = world().await;
    w.graph.fail_next(2, 503);
    let meeting = w
        .client
        .create_or_get(&visit("csn-1"))
        .await
        .expect("meeting");
    assert!(meeting.created);
    assert_eq!(
        w.graph.create_or_get_calls(),
        1,
        "the two 503s came before routing"
    );
    assert_eq!(
        w.server
            .received_requests()
            .await
            .expect("recorded")
            .iter()
            .filter(|r| r.url.path().ends_with("/createOrGet"))
            .count(),
        3
    );
}

#[tokio::test]
async fn a_subscription_is_not_recreated_after_a_server_error() {
    let w = world().await;
    w.graph.fail_next(1, 500);
    let config = SubscriptionConfig::new(
        Url::parse("https://launch.example/graph/notifications").unwrap(),
        Url::parse("https://launch.example/graph/lifecycle").unwrap(),
        Secret::new("client-state-secret"),
    );
    let error = w
        .client
        .subscribe_to_meeting(&config, "https://teams.microsoft.com/l/meetup-join/x")
        .await
        .expect_err("500");
    match &error {
        GraphError::Api {
            status, request_id, ..
        } => {
            assert_eq!(*status, 500);
            assert!(request_id.is_some());
        }
        other => panic!("expected Api, got {other:?}"),
    }
    let posts = w
        .server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path() == "/beta/subscriptions")
        .count();
    assert_eq!(
        posts, 1,
        "a POST that may have been processed is not repeated"
    );
}

#[tokio::test]
async fn errors_never_contain_the_token() {
    let w = world().await;
    w.graph.fail_next(10, 500);
    let error = w
        .client
        .provision_meeting(&visit("csn-1"))
        .await
        .expect_err("500s");
    assert_eq!(error.status(), Some(500));
    assert!(error.request_id().is_some());
    let shown = format!("{error} {error:?}");
    let tokens = w.entra.issued_tokens();
    assert!(!tokens.is_empty());
    for token in tokens {
        assert!(!shown.contains(&token), "{shown}");
    }
    assert!(!shown.to_lowercase().contains("bearer"), "{shown}");
}
