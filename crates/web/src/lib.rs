//! The HTTP edge both VisitBridge services (launch and portal) use: how connections are accepted
//! and served, the problem JSON an API answers errors with, how the configuration file is read,
//! the log set-up, the security headers, request ids with one log line per request, and cookies.
//!
//! `axum::serve` has no header read timeout and no connection limit: a client that opens
//! connections and sends a request line a byte at a time (or never finishes its headers) holds a
//! socket and a task forever, and a few thousand of them exhaust the service's file descriptors.
//! [`serve`] is `axum::serve`'s loop with those two limits ([`ServerLimits`]):
//!
//! - **Header read timeout.** hyper's HTTP/1 `header_read_timeout`: a connection whose request
//!   head is not complete within the timeout (default 10 s) is closed. It applies to every request
//!   of a keep-alive connection, so an idle kept-alive connection is closed too.
//! - **Connections per client IP.** At most `max_connections_per_ip` open connections (default
//!   64) from one peer address; a connection over the cap is closed at once, before a byte is
//!   read, and the refusal is logged once per burst (not per connection). Behind a reverse proxy
//!   every client has the proxy's address, so set the cap to what the proxy may open.
//! - **Graceful shutdown** as with `axum::serve`: when `shutdown` completes, no new connection is
//!   accepted, idle connections are closed, and in-flight requests finish.
//!
//! HTTP/1.1 and HTTP/2 (prior knowledge) are both served, with upgrades, as `axum::serve` does.
//!
//! [`problem`] renders an RFC 9457 problem document (`application/problem+json`) for the
//! errors an API (or a webhook) answers outside its handlers, e.g. a body over the size limit.
//!
//! [`config`] reads a service's TOML configuration file into its own type, with one error
//! ([`config::ConfigError`]) that keeps the line and column of a TOML mistake; each service then
//! applies its flags and environment variables and validates.
//!
//! [`init_tracing`] installs the log output both binaries start with: text lines filtered by
//! `RUST_LOG` (default `info`).
//!
//! [`SecurityHeaders`] is the layer that puts the common security headers (`nosniff`,
//! `no-referrer`, `no-store`, the service's default content security policy, optionally
//! `X-Frame-Options: DENY`) on every answer that does not set them itself; [`set_csp`] gives one
//! page a policy of its own.
//!
//! [`with_request_ids`] gives every request an `x-request-id` (tower-http's
//! `SetRequestIdLayer`/`PropagateRequestIdLayer`, a UUID unless the caller sent a sane one) and
//! one log line in a span with that id and the route template (`TraceLayer`); a handler or a
//! middleware reads the id with [`request_id`].
//!
//! [`cookies`] reads a request's cookies and writes `Set-Cookie` values (`Path=/`, `HttpOnly`).
#![deny(missing_docs)]

pub mod config;
pub mod cookies;
mod headers;
mod logs;
mod problem;
mod request_id;
mod serve;

pub use headers::{SecurityHeaders, SecurityHeadersService, set_csp};
pub use logs::{LogOutput, init_tracing};
pub use problem::problem;
pub use request_id::{REQUEST_ID_HEADER, request_id, with_request_ids};
pub use serve::{SHUTDOWN_GRACE, ServerLimits, serve, shutdown_signal};
