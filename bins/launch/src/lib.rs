//! The launch service's HTTP surface: wiring of the library crates into routes, nothing more.
//!
//! Today it publishes our backend-services public keys and health probes; the EHR launch routes,
//! Graph webhooks and write-back worker are wired in here as their crates land (see
//! `docs/ARCHITECTURE.md`).

use std::sync::Arc;

use axum::{Json, Router, routing::get};
use visitbridge_http::ClientAssertionKey;

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    /// Our backend-services signing keys; their public halves are the JWKS we publish.
    pub signing_keys: Arc<Vec<ClientAssertionKey>>,
}

/// The service's router (separate from `main` so tests drive it without a socket).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
}

async fn jwks(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<serde_json::Value>, axum::http::StatusCode> {
    let mut keys = Vec::with_capacity(state.signing_keys.len());
    for key in state.signing_keys.iter() {
        let jwk = key.public_jwk().map_err(|e| {
            tracing::error!(error = %e, kid = key.kid(), "cannot render a public key");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        })?;
        keys.push(
            serde_json::to_value(jwk).map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)?,
        );
    }
    Ok(Json(serde_json::json!({ "keys": keys })))
}
