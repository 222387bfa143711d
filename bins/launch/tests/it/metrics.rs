//! `/metrics`: where it is served, to whom, and what failed callbacks are counted as.

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
