//! Prometheus metrics and who may read them (request ids and request logs are
//! `visitbridge_web::with_request_ids`).

use std::{
    future::Future,
    sync::atomic::AtomicU64,
    time::{Duration, Instant},
};

use axum::{
    http::{HeaderMap, header},
    response::Response,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, prometheus_text},
    metrics::{MetricType, counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use visitbridge_http::Secret;
use visitbridge_store::OutboxDepth;

use crate::error::Outcome;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The labels of `visitbridge_launches_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaunchLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// The labels of `visitbridge_upstream_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: &'static str,
}

/// The labels of `visitbridge_notifications_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    result: &'static str,
}

/// A metric whose `# HELP` and `# TYPE` lines are written even before its first sample (the
/// registry leaves out empty families), so that a scraper sees every metric from the start.
#[derive(Debug)]
struct Described<M>(M);

impl<M: EncodeMetric> EncodeMetric for Described<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

type UpstreamHistograms = Family<UpstreamLabels, Histogram, fn() -> Histogram>;

fn upstream_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The service's counters and histograms (`prometheus-client`, in a registry of this service's
/// own: several services in one process, as in tests, count apart), rendered as Prometheus text.
pub(crate) struct Metrics {
    registry: Registry,
    launches: Family<LaunchLabels, Counter>,
    upstream: UpstreamHistograms,
    notifications: Family<NotificationLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let launches = Family::<LaunchLabels, Counter>::default();
        let upstream = UpstreamHistograms::new_with_constructor(upstream_histogram);
        let notifications = Family::<NotificationLabels, Counter>::default();
        let mut registry = Registry::default();
        // The registry adds the `_total` of counters and the full stop of help texts.
        registry.register(
            "visitbridge_launches",
            "Launch steps by kind and outcome",
            Described(launches.clone()),
        );
        registry.register(
            "visitbridge_upstream_seconds",
            "Latency of calls to the EHR, Entra ID and Graph",
            Described(upstream.clone()),
        );
        registry.register(
            "visitbridge_notifications",
            "Graph notification events by result (unreadable: items of a batch dropped as unreadable)",
            Described(notifications.clone()),
        );
        Self {
            registry,
            launches,
            upstream,
            notifications,
        }
    }
}

impl Metrics {
    /// Counts a launch step (`provider`, `patient`, `device_test`, `callback`, …) by outcome.
    pub(crate) fn launch(&self, kind: &'static str, outcome: &'static str) {
        self.launches
            .get_or_create(&LaunchLabels { kind, outcome })
            .inc();
    }

    /// Counts notifications by what became of them.
    pub(crate) fn notifications(&self, what: &'static str, n: usize) {
        self.notifications
            .get_or_create(&NotificationLabels { result: what })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Records one upstream call's latency.
    pub(crate) fn observe(&self, upstream: &'static str, elapsed: Duration) {
        self.upstream
            .get_or_create(&UpstreamLabels { upstream })
            .observe(elapsed.as_secs_f64());
    }

    /// Runs `call`, recording its latency under `upstream`.
    pub(crate) async fn time<T>(&self, upstream: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.observe(upstream, started.elapsed());
        out
    }

    /// The Prometheus text exposition (format 0.0.4): the counters and histograms, then the
    /// write-back outbox's gauges when its depth could be read.
    pub(crate) fn render(&self, outbox: Option<OutboxDepth>) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "the metrics could not be encoded");
        }
        if let Some(depth) = outbox {
            let registry = outbox_registry(&depth);
            if let Err(e) = prometheus_text::encode(&mut out, &registry) {
                tracing::error!(error = %e, "the outbox gauges could not be encoded");
            }
        }
        out
    }
}

/// The outbox's gauges, read at each scrape.
fn outbox_registry(depth: &OutboxDepth) -> Registry {
    let mut registry = Registry::default();
    let gauge = |value: u64| {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        gauge
    };
    registry.register(
        "visitbridge_outbox_pending",
        "Write-back deliveries waiting",
        gauge(depth.pending),
    );
    registry.register(
        "visitbridge_outbox_dead",
        "Write-back deliveries given up (dead letters)",
        gauge(depth.dead),
    );
    let age = depth
        .oldest_pending_at
        .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    let oldest = Gauge::<f64, AtomicU64>::default();
    oldest.set(age);
    registry.register(
        "visitbridge_outbox_oldest_pending_seconds",
        "Age of the oldest waiting delivery",
        oldest,
    );
    registry
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
    fn every_metric_is_described_before_its_first_sample() {
        let text = Metrics::default().render(None);
        for name in [
            "visitbridge_launches_total counter",
            "visitbridge_upstream_seconds histogram",
            "visitbridge_notifications_total counter",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name}\n")),
                "{name} in {text}"
            );
        }
        assert!(!text.contains("visitbridge_outbox"), "{text}");
        assert!(!text.contains(".."), "{text}");
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
