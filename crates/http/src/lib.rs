//! Shared HTTP and OAuth plumbing for every VisitBridge crate that talks to an upstream.
//!
//! VisitBridge speaks to several upstreams (the EHR's SMART and FHIR endpoints, Entra ID, Microsoft
//! Graph) and they all need the same few things done the same careful way, so they live here once:
//!
//! - [`build_client`] makes the one `reqwest` client configuration: rustls on aws-lc-rs, a connect
//!   timeout and a total timeout on every call, and **no redirect following** (a redirect on a token
//!   or FHIR call would be an SSRF and credential-leak risk).
//! - [`RetryPolicy`] and [`send_idempotent`] retry idempotent calls on 429, 5xx and timeouts with
//!   jittered exponential backoff, honouring `Retry-After`, bounded in attempts *and* total time.
//!   Writes are never passed through it blindly.
//! - [`OAuthHttpClient`] lets the `oauth2` crate use that same client (its own default would pull a
//!   second reqwest version).
//! - [`ClientAssertionKey`] signs `private_key_jwt` client assertions (SMART backend services,
//!   Entra certificate credentials) and renders the public key as a JWK.
//! - [`Secret`] holds tokens and client secrets; its `Debug` prints `[redacted]`; [`storage_key`]
//!   is the one form in which the services keep bearer tokens (session ids) at rest.
//! - [`Sealer`] seals small values a browser carries for us (AES-256-GCM, key derived from the
//!   deployment secret per purpose, with an expiry), e.g. a pending launch in a cookie.
//! - [`JwksCache`] holds the issuers' signing keys that id_tokens and Microsoft's validation
//!   tokens are verified against, one cache for both: what they differ in (key age, how often an
//!   unknown `kid` may refetch, accepted algorithms, retries, a fetch bound, stale keys while the
//!   endpoint is down) is a [`JwksPolicy`], and a failed fetch is a typed [`JwksError`].
//! - [`HttpTimeouts`] is the `[http]` section both services read from their configuration files,
//!   and [`is_loopback_url`] the test behind their "plain http only on loopback" rules.
//!
//! ```no_run
//! use visitbridge_http::{HttpConfig, RetryPolicy, build_client, send_idempotent};
//!
//! # async fn read() -> Result<(), Box<dyn std::error::Error>> {
//! let client = build_client(&HttpConfig::default())?;
//! let policy = RetryPolicy::default();
//! // A read: retried on 429/5xx/timeouts, within the policy's bounds.
//! let response = send_idempotent(&policy, || {
//!     client.get("https://ehr.example/api/FHIR/R4/metadata")
//! })
//! .await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod assertion;
mod client;
mod digest;
mod jwks;
mod loopback;
mod oauth;
mod retry;
mod sealed;
mod secret;

pub use assertion::{AssertionError, ClientAssertionKey, KeyAlgorithm, random_token};
pub use client::{HttpConfig, HttpError, HttpTimeouts, build_client};
pub use digest::{constant_time_eq, domain_digest, storage_key};
pub use jwks::{ASYMMETRIC_ALGORITHMS, JwksCache, JwksError, JwksPolicy};
pub use loopback::is_loopback_url;
pub use oauth::OAuthHttpClient;
pub use retry::{RetryPolicy, SendError, is_retryable_status, retry_after, send_idempotent};
pub use sealed::{SealError, Sealer};
pub use secret::Secret;

/// The outbound HTTP client type (`reqwest`'s), as [`build_client`] makes it: binaries and
/// other crates name it through here, so that one crate owns the choice of HTTP stack.
pub use reqwest::Client as HttpClient;
