//! Request ids and request logs: tower-http's `SetRequestIdLayer`/`PropagateRequestIdLayer`
//! (`x-request-id`, a UUID unless the caller sent a sane one) and `TraceLayer`, one span and one
//! log line per request.
//!
//! Logs name the route template (`/join/{token}`), never the raw path or query: launch and
//! callback URLs carry one-time codes, states and launch tokens, patient links are bearer
//! credentials, and the OAuth callbacks carry authorization codes.

use std::time::Duration;

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue, Response},
    middleware,
};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};
use tracing::Span;

/// The request id header, `x-request-id`.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` so that every request has an id and a log line:
///
/// - a caller's `x-request-id` is kept if it is sane (1 to 64 letters, digits, `-` or `_`),
///   else dropped, and a request without one gets a fresh UUID (`SetRequestIdLayer`; the id is
///   then in the request's extensions, see [`request_id`]);
/// - the request runs in a `request` span with `request_id`, `method` and `route` (the matched
///   route template, `unmatched` for the fallback), and its end is logged at `info` with
///   `status` and `elapsed_ms` (`TraceLayer`);
/// - the answer carries the id in `x-request-id` (`PropagateRequestIdLayer`).
///
/// Apply it last, so that it reaches every route and layer of the router.
pub fn with_request_ids<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
        .layer(middleware::map_request(drop_unusable_request_id))
}

/// The request id [`with_request_ids`] gave `request`, if any.
pub fn request_id<B>(request: &Request<B>) -> Option<&str> {
    request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
}

fn request_span<B>(request: &Request<B>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        request_id = request_id(request).unwrap_or_default(),
        method = %request.method(),
        route = %route,
    )
}

fn log_response<B>(response: &Response<B>, elapsed: Duration, _span: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "request"
    );
}

/// A caller's request id is taken over only if it is short and plain (it goes into logs).
async fn drop_unusable_request_id(mut request: Request) -> Request {
    if request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .is_some_and(|value| !usable_request_id(value))
    {
        request.headers_mut().remove(&REQUEST_ID_HEADER);
    }
    request
}

fn usable_request_id(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(|text| {
        !text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::StatusCode, routing::get};
    use tower::ServiceExt as _;

    use super::*;

    async fn echo(request: Request) -> String {
        request_id(&request).unwrap_or("none").to_owned()
    }

    async fn answer(sent: Option<&'static str>) -> (String, String) {
        let router = with_request_ids(Router::new().route("/", get(echo)));
        let mut request = Request::get("/");
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let header = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (header, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn every_request_gets_an_id_it_can_read_and_the_answer_carries() {
        let (header, seen) = answer(None).await;
        assert_eq!(header, seen);
        assert!(uuid::Uuid::parse_str(&header).is_ok(), "{header}");
        let (header, seen) = answer(Some("abc-123_x")).await;
        assert_eq!((header.as_str(), seen.as_str()), ("abc-123_x", "abc-123_x"));
        let (header, seen) = answer(Some("a b")).await;
        assert_eq!(header, seen);
        assert!(uuid::Uuid::parse_str(&header).is_ok(), "{header}");
    }

    #[test]
    fn only_sane_request_ids_are_taken_over() {
        assert!(usable_request_id(&HeaderValue::from_static("abc-123_x")));
        assert!(!usable_request_id(&HeaderValue::from_static("a b")));
        assert!(!usable_request_id(&HeaderValue::from_static("")));
        let long = "a".repeat(65);
        assert!(!usable_request_id(&HeaderValue::from_str(&long).unwrap()));
    }
}
