//! Prometheus metrics and who may read them (request ids and request logs are
//! `visitbridge_web::with_request_ids`).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    future::Future,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    http::{HeaderMap, header},
    response::Response,
};
use visitbridge_http::Secret;
use visitbridge_store::OutboxDepth;

use crate::error::Outcome;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counters {
    launches: BTreeMap<(&'static str, &'static str), u64>,
    upstream: BTreeMap<&'static str, Histogram>,
    notifications: BTreeMap<&'static str, u64>,
}

/// The service's counters and histograms, rendered as Prometheus text.
#[derive(Default)]
pub(crate) struct Metrics {
    inner: Mutex<Counters>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts a launch step (`provider`, `patient`, `device_test`, `callback`, …) by outcome.
    pub(crate) fn launch(&self, kind: &'static str, outcome: &'static str) {
        self.with(|c| *c.launches.entry((kind, outcome)).or_default() += 1);
    }

    /// Counts notifications by what became of them.
    pub(crate) fn notifications(&self, what: &'static str, n: usize) {
        self.with(|c| *c.notifications.entry(what).or_default() += n as u64);
    }

    /// Records one upstream call's latency.
    pub(crate) fn observe(&self, upstream: &'static str, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        self.with(|c| {
            let h = c.upstream.entry(upstream).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        });
    }

    /// Runs `call`, recording its latency under `upstream`.
    pub(crate) async fn time<T>(&self, upstream: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.observe(upstream, started.elapsed());
        out
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn render(&self, outbox: Option<OutboxDepth>) -> String {
        let (launches, upstream, notifications) = self.with(|c| {
            (
                c.launches.clone(),
                c.upstream.clone(),
                c.notifications.clone(),
            )
        });
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP visitbridge_launches_total Launch steps by kind and outcome.\n# TYPE visitbridge_launches_total counter"
        );
        for ((kind, outcome), n) in &launches {
            let _ = writeln!(
                out,
                "visitbridge_launches_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP visitbridge_upstream_seconds Latency of calls to the EHR, Entra ID and Graph.\n# TYPE visitbridge_upstream_seconds histogram"
        );
        for (name, h) in &upstream {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "visitbridge_upstream_seconds_bucket{{upstream=\"{name}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "visitbridge_upstream_seconds_bucket{{upstream=\"{name}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "visitbridge_upstream_seconds_sum{{upstream=\"{name}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "visitbridge_upstream_seconds_count{{upstream=\"{name}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP visitbridge_notifications_total Graph notification events by result (unreadable: items of a batch dropped as unreadable).\n# TYPE visitbridge_notifications_total counter"
        );
        for (what, n) in &notifications {
            let _ = writeln!(
                out,
                "visitbridge_notifications_total{{result=\"{what}\"}} {n}"
            );
        }
        if let Some(depth) = outbox {
            let _ = writeln!(
                out,
                "# HELP visitbridge_outbox_pending Write-back deliveries waiting.\n# TYPE visitbridge_outbox_pending gauge\nvisitbridge_outbox_pending {}",
                depth.pending
            );
            let _ = writeln!(
                out,
                "# HELP visitbridge_outbox_dead Write-back deliveries given up (dead letters).\n# TYPE visitbridge_outbox_dead gauge\nvisitbridge_outbox_dead {}",
                depth.dead
            );
            let age = depth
                .oldest_pending_at
                .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            let _ = writeln!(
                out,
                "# HELP visitbridge_outbox_oldest_pending_seconds Age of the oldest waiting delivery.\n# TYPE visitbridge_outbox_oldest_pending_seconds gauge\nvisitbridge_outbox_oldest_pending_seconds {age}"
            );
        }
        out
    }
}

/// Whether a request may read `/metrics` on the main listener.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MetricsAccess {
    /// No token is configured: the route does not exist there (only on `metrics_listen`).
    Hidden,
    /// A token is configured and the request does not carry it.
    Denied,
    /// The request carries the configured token.
    Allowed,
}

/// Decides [`MetricsAccess`] from the configured `token` and the request's `Authorization`.
pub(crate) fn metrics_access(token: Option<&Secret>, headers: &HeaderMap) -> MetricsAccess {
    let Some(token) = token else {
        return MetricsAccess::Hidden;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, value) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
        });
    match presented {
        Some(value) if token.constant_time_eq(value) => MetricsAccess::Allowed,
        _ => MetricsAccess::Denied,
    }
}

/// Counts each launch-route response by kind and outcome (the error's name, or `ok`).
pub(crate) fn launch_outcome(response: &Response) -> &'static str {
    response
        .extensions()
        .get::<Outcome>()
        .map(|o| o.0)
        .unwrap_or(if response.status().is_server_error() {
            "internal"
        } else {
            "ok"
        })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn text_exposition_has_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.launch("provider", "ok");
        m.launch("provider", "ok");
        m.launch("provider", "issuer_not_approved");
        m.observe("graph_create_or_get", Duration::from_millis(30));
        let text = m.render(Some(OutboxDepth {
            pending: 3,
            dead: 1,
            oldest_pending_at: None,
        }));
        assert!(text.contains("visitbridge_launches_total{kind=\"provider\",outcome=\"ok\"} 2"));
        assert!(text.contains(
            "visitbridge_upstream_seconds_bucket{upstream=\"graph_create_or_get\",le=\"0.05\"} 1"
        ));
        assert!(text.contains(
            "visitbridge_upstream_seconds_bucket{upstream=\"graph_create_or_get\",le=\"0.025\"} 0"
        ));
        assert!(text.contains("visitbridge_outbox_pending 3"));
        assert!(text.contains("visitbridge_outbox_dead 1"));
    }

    #[test]
    fn metrics_need_the_configured_bearer_token() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            headers
        };
        let token = Secret::new("0123456789abcdef0123456789abcdef");
        assert_eq!(
            metrics_access(None, &with("Bearer anything")),
            MetricsAccess::Hidden
        );
        assert_eq!(
            metrics_access(Some(&token), &HeaderMap::new()),
            MetricsAccess::Denied
        );
        for wrong in [
            "Bearer 0123456789abcdef0123456789abcdeX",
            "Bearer 0123456789abcdef",
            "Basic 0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(
                metrics_access(Some(&token), &with(wrong)),
                MetricsAccess::Denied,
                "{wrong}"
            );
        }
        assert_eq!(
            metrics_access(
                Some(&token),
                &with("Bearer 0123456789abcdef0123456789abcdef")
            ),
            MetricsAccess::Allowed
        );
    }
}
