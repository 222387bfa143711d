//! The service's plain routes answer as an EHR and an operator expect.

use axum::{body::Body, http::Request};
use tower::ServiceExt as _;
use visitbridge_launch::{LaunchConfig, LaunchService, app};

async fn service() -> (tempfile::TempDir, LaunchService) {
    let dir = tempfile::tempdir().unwrap();
    let config = LaunchConfig {
        dev_mode: true,
        database: dir.path().join("visitbridge.sqlite").into(),
        ..LaunchConfig::default()
    };
    let base = config.public_base(config.listen);
    let service = LaunchService::build(config, base).await.unwrap();
    (dir, service)
}

async fn get(service: &LaunchService, path: &str) -> (u16, String, axum::http::HeaderMap) {
    let response = app(service.state())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap(), headers)
}

#[tokio::test]
async fn health_probes_answer() {
    let (_dir, service) = service().await;
    assert_eq!(get(&service, "/healthz").await.0, 200);
    let (status, body, _) = get(&service, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready"));
}

#[tokio::test]
async fn jwks_publishes_public_keys_only() {
    let (_dir, service) = service().await;
    let (status, body, _) = get(&service, "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], "visitbridge-dev-1");
    assert_eq!(key["kty"], "EC");
    assert!(
        key.get("d").is_none(),
        "private key material published: {body}"
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text_on_their_own_listener_only() {
    let (_dir, service) = service().await;
    get(&service, "/launch/provider").await;
    // Without a bearer token the public listener has no /metrics at all.
    let (status, body, _) = get(&service, "/metrics").await;
    assert_eq!(status, 404);
    assert!(!body.contains("visitbridge_"), "{body}");
    // The metrics listener serves them, and nothing else.
    let metrics = |path: &'static str| {
        visitbridge_launch::metrics_app(service.state())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
    };
    assert_eq!(metrics("/healthz").await.unwrap().status(), 404);
    assert_eq!(metrics("/launch/provider").await.unwrap().status(), 404);
    let response = metrics("/metrics").await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(body.contains("# TYPE visitbridge_launches_total counter"));
    assert!(
        body.contains("visitbridge_launches_total{kind=\"provider\",outcome=\"bad_launch\"} 1")
    );
    assert!(body.contains("visitbridge_outbox_pending 0"));
}

#[tokio::test]
async fn pages_carry_a_request_id_and_safe_headers() {
    let (_dir, service) = service().await;
    let (status, body, headers) = get(&service, "/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("This page does not exist"));
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let (status, _, headers) = get(&service, "/static/visit.js").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
}

#[tokio::test]
async fn without_microsoft_365_a_launch_says_what_is_missing() {
    let (_dir, service) = service().await;
    let (status, body, _) = get(&service, "/join/wait").await;
    assert_eq!(status, 401);
    assert!(body.contains("Open this visit from the EHR"), "{body}");
}
