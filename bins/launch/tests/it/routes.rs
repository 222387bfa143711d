//! The routes answer as an EHR and an operator expect.

use std::sync::Arc;

use axum::{body::Body, http::Request};
use tower::ServiceExt as _;
use visitbridge_http::ClientAssertionKey;
use visitbridge_launch::{AppState, app};

fn state() -> AppState {
    AppState {
        signing_keys: Arc::new(vec![ClientAssertionKey::generate_es384("k1").unwrap()]),
    }
}

async fn get(path: &str) -> (u16, String) {
    let response = app(state())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn health_probes_answer() {
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
}

#[tokio::test]
async fn jwks_publishes_public_keys_only() {
    let (status, body) = get("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], "k1");
    assert_eq!(key["kty"], "EC");
    assert!(
        key.get("d").is_none(),
        "private key material published: {body}"
    );
}

#[tokio::test]
async fn unknown_paths_are_404() {
    assert_eq!(get("/nope").await.0, 404);
}
