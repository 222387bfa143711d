//! Adapter so the `oauth2` crate sends its requests through our reqwest client.

use std::{future::Future, pin::Pin};

/// An `oauth2::AsyncHttpClient` over the shared reqwest client (see [`crate::build_client`]).
///
/// `oauth2` 5 ships an adapter for reqwest 0.12 only; this one keeps a single HTTP stack and
/// inherits our timeouts and the no-redirect policy.
#[derive(Debug, Clone)]
pub struct OAuthHttpClient(pub reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttpClient {
    type Error = oauth2::HttpClientError<reqwest::Error>;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let url = parts.uri.to_string();
            let mut builder = self.0.request(parts.method, url).body(body);
            for (name, value) in &parts.headers {
                builder = builder.header(name, value);
            }
            let response = builder
                .send()
                .await
                .map_err(|e| oauth2::HttpClientError::Reqwest(Box::new(e)))?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| oauth2::HttpClientError::Reqwest(Box::new(e)))?;
            let mut out = http::Response::builder().status(status);
            if let Some(h) = out.headers_mut() {
                *h = headers;
            }
            out.body(bytes.to_vec())
                .map_err(oauth2::HttpClientError::Http)
        })
    }
}
