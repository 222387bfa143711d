//! The security headers every answer of a service carries, as one tower layer.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header};
use tower::{Layer, Service};

/// A layer that adds the security headers to every response that does not set them itself:
///
/// - `X-Content-Type-Options: nosniff`;
/// - `Referrer-Policy: no-referrer` (launch URLs and OAuth callbacks carry one-time values);
/// - `Cache-Control: no-store` (pages hold session-bound links and forms);
/// - `Content-Security-Policy`: the service's default policy;
/// - with [`deny_framing`](Self::deny_framing), `X-Frame-Options: DENY`.
///
/// A header the handler already set is kept: a page with a policy of its own (see
/// [`set_csp`]), a static file's `Cache-Control`. No `Strict-Transport-Security`: neither
/// service sets it (TLS ends at the reverse proxy, which owns HSTS).
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    headers: Arc<[(HeaderName, HeaderValue)]>,
}

impl SecurityHeaders {
    /// The common headers with `csp` as the default `Content-Security-Policy`.
    pub fn new(csp: &'static str) -> Self {
        Self {
            headers: Arc::new([
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(csp),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ]),
        }
    }

    /// Adds `X-Frame-Options: DENY` (for a service no page of which is ever framed; pair it with
    /// `frame-ancestors 'none'` in the policy).
    pub fn deny_framing(self) -> Self {
        let mut headers = self.headers.to_vec();
        headers.push((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")));
        Self {
            headers: headers.into(),
        }
    }
}

/// Gives one response its own `Content-Security-Policy`, in place of the default of
/// [`SecurityHeaders`] (which keeps a policy already set). A `csp` that is not a valid header
/// value is ignored (the default then applies).
pub fn set_csp(headers: &mut HeaderMap, csp: &str) {
    if let Ok(value) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

impl<S> Layer<S> for SecurityHeaders {
    type Service = SecurityHeadersService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeadersService {
            inner,
            headers: self.headers.clone(),
        }
    }
}

/// The service of [`SecurityHeaders`].
#[derive(Debug, Clone)]
pub struct SecurityHeadersService<S> {
    inner: S,
    headers: Arc<[(HeaderName, HeaderValue)]>,
}

impl<S, B, ResBody> Service<Request<B>> for SecurityHeadersService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let headers = self.headers.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            let set = response.headers_mut();
            for (name, value) in headers.iter() {
                if !set.contains_key(name) {
                    set.insert(name.clone(), value.clone());
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::get};
    use tower::ServiceExt as _;

    use super::*;

    async fn answer(router: Router, path: &str) -> HeaderMap {
        let request = Request::get(path).body(Body::empty()).unwrap();
        router.oneshot(request).await.unwrap().headers().clone()
    }

    #[tokio::test]
    async fn every_answer_gets_the_headers_it_does_not_set_itself() {
        let router = Router::new()
            .route("/", get(|| async { "page" }))
            .route(
                "/own",
                get(|| async {
                    let mut headers = HeaderMap::new();
                    set_csp(&mut headers, "default-src 'self'");
                    headers.insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("max-age=60"),
                    );
                    (headers, "own")
                }),
            )
            .layer(SecurityHeaders::new("default-src 'none'").deny_framing());
        let page = answer(router.clone(), "/").await;
        assert_eq!(page["content-security-policy"], "default-src 'none'");
        assert_eq!(page["x-content-type-options"], "nosniff");
        assert_eq!(page["referrer-policy"], "no-referrer");
        assert_eq!(page["cache-control"], "no-store");
        assert_eq!(page["x-frame-options"], "DENY");
        let missing = answer(router.clone(), "/nope").await;
        assert_eq!(missing["x-content-type-options"], "nosniff");
        let own = answer(router, "/own").await;
        assert_eq!(own["content-security-policy"], "default-src 'self'");
        assert_eq!(own["cache-control"], "max-age=60");
        assert_eq!(own.get_all("content-security-policy").iter().count(), 1);
    }

    #[tokio::test]
    async fn framing_is_denied_only_when_asked() {
        let router = Router::new()
            .route("/", get(|| async { "page" }))
            .layer(SecurityHeaders::new("default-src 'none'"));
        assert!(!answer(router, "/").await.contains_key("x-frame-options"));
    }
}
