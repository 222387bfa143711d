//! `/metrics`: where it is served, to whom, what failed callbacks are counted as, and the
//! documented upstream latency series a launch leaves.

use crate::{
    harness::{Env, METRICS_TOKEN},
    patient::{FIXTURE_CSN, patient_context},
    security::callback_url_of,
};

/// The callback of a launch the EHR refused (the user cancelled the sign-in).
fn refused(callback: &str) -> String {
    let url = url::Url::parse(callback).unwrap();
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mut refused = url.clone();
    refused
        .query_pairs_mut()
        .clear()
        .append_pair("error", "access_denied")
        .append_pair("state", &state);
    refused.to_string()
}

fn count(metrics: &str, kind: &str, outcome: &str) -> u64 {
    let prefix = format!("visitbridge_launches_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn failed_callbacks_are_counted_under_their_launch_kind() {
    let env = Env::start().await;
    let provider = env.browser();
    let callback = callback_url_of(&env, &provider, "provider", &Env::visit_context()).await;
    let provider_page = provider.navigate(&refused(&callback)).await;

    let patient = env.browser();
    let callback = callback_url_of(&env, &patient, "patient", &patient_context(FIXTURE_CSN)).await;
    let patient_page = patient.navigate(&refused(&callback)).await;

    // A state no launch of this browser knows stays a plain "callback".
    let unknown = env
        .browser()
        .navigate(&format!(
            "{}/launch/callback?code=x&state=unknown",
            env.base
        ))
        .await;

    let metrics = env.metrics().await;
    assert_eq!(
        count(&metrics, "provider_callback", "sign_in_refused"),
        1,
        "{metrics}"
    );
    assert_eq!(
        count(&metrics, "patient_callback", "sign_in_refused"),
        1,
        "{metrics}"
    );
    assert_eq!(
        count(&metrics, "callback", "sign_in_refused"),
        0,
        "{metrics}"
    );
    assert_eq!(
        count(&metrics, "callback", "browser_mismatch"),
        1,
        "{metrics}"
    );
    for page in [&provider_page, &patient_page] {
        assert_eq!(page.status, 403, "{}", page.body);
        assert!(
            page.body.contains("The sign-in was refused"),
            "{}",
            page.body
        );
    }
    assert_eq!(unknown.status, 403, "{}", unknown.body);
    assert!(unknown.body.contains("started in another browser"));
}

#[tokio::test]
async fn metrics_on_the_main_listener_need_the_bearer_token() {
    let env = Env::start().await;
    let url = format!("{}/metrics", env.base);
    let client = reqwest::Client::new();
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let body = anonymous.text().await.unwrap();
    assert!(!body.contains("visitbridge_"), "{body}");
    for wrong in ["wrong", &METRICS_TOKEN[..METRICS_TOKEN.len() - 1]] {
        let response = client.get(&url).bearer_auth(wrong).send().await.unwrap();
        assert_eq!(response.status(), 401, "{wrong}");
    }
    assert!(
        env.metrics()
            .await
            .contains("# TYPE visitbridge_launches_total counter")
    );
}

/// The `upstream` labels documented in docs/deployment.md (Operations).
const DOCUMENTED_UPSTREAMS: &[&str] = &[
    "ehr_token",
    "entra_sign_in",
    "fhir",
    "graph_create_or_get",
    "graph_policy",
    "graph_join_url",
    "graph_subscription",
];

/// The `upstream` labels of the latency histogram's series, from its `_count` lines.
fn timed_upstreams(metrics: &str) -> Vec<(String, u64)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("visitbridge_upstream_seconds_count{upstream=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .map(|(upstream, n)| (upstream.to_owned(), n.parse().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_launch_exposes_the_documented_upstream_latencies_for_every_upstream_it_called() {
    let env = Env::start().await;
    let docs = include_str!("../../../../docs/deployment.md");
    for name in [
        "visitbridge_launches_total",
        "visitbridge_upstream_seconds",
        "visitbridge_notifications_total",
        "visitbridge_outbox_pending",
    ] {
        assert!(docs.contains(&format!("`{name}`")), "{name} is documented");
    }
    for upstream in DOCUMENTED_UPSTREAMS {
        assert!(
            docs.contains(&format!("| `{upstream}` |")),
            "{upstream} is documented"
        );
    }

    // A clinician's first launch: EHR sign-in, Microsoft sign-in, FHIR, the meeting and its
    // policy, then the subscription to its participants (in the background).
    crate::provider::provider_launch(&env, &env.browser()).await;
    let called = [
        "ehr_token",
        "entra_sign_in",
        "fhir",
        "graph_create_or_get",
        "graph_policy",
        "graph_subscription",
    ];
    env.eventually("the subscription is timed", async || {
        timed_upstreams(&env.metrics().await)
            .iter()
            .any(|(u, _)| u == "graph_subscription")
    })
    .await;

    let metrics = env.metrics().await;
    assert!(
        metrics.contains("# TYPE visitbridge_upstream_seconds histogram\n"),
        "{metrics}"
    );
    let timed = timed_upstreams(&metrics);
    for upstream in called {
        let count = timed.iter().find(|(u, _)| u == upstream).map(|(_, n)| *n);
        assert!(count >= Some(1), "{upstream} timed: {metrics}");
        for series in [
            format!("visitbridge_upstream_seconds_sum{{upstream=\"{upstream}\"}} "),
            format!("visitbridge_upstream_seconds_bucket{{upstream=\"{upstream}\",le=\"+Inf\"}} "),
        ] {
            assert!(metrics.contains(&series), "{series} in {metrics}");
        }
    }
    for (upstream, _) in &timed {
        assert!(
            DOCUMENTED_UPSTREAMS.contains(&upstream.as_str()),
            "{upstream} is timed but not documented in docs/deployment.md"
        );
    }
}
