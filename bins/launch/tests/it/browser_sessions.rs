//! One browser, several visits: every launch adds its visit to the browser's session, so the
//! pages of earlier visits keep their live panel and patient-link form; other browsers get none.

use crate::{
    attestation::{OTHER_CSN, as_other_patient, mount_other_appointment},
    harness::{Browser, Env},
    patient::csrf_of,
    provider::provider_launch,
};

/// The visit page's live panel (server-sent events), as this browser asks for it; the stream is
/// dropped unread.
async fn events_status(browser: &Browser, page_url: &str) -> (u16, String) {
    let response = browser.get(&format!("{page_url}/events")).await;
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), content_type)
}

#[tokio::test]
async fn two_visits_launched_in_one_browser_both_keep_their_live_panel() {
    let env = Env::start().await;
    let browser = env.browser();
    let first = provider_launch(&env, &browser).await;
    let first_csrf = csrf_of(&first.body);
    let before_second = browser.cookie_header();

    // The same clinician then starts another patient's visit in the same browser.
    mount_other_appointment(&env).await;
    as_other_patient(&env);
    let context = [
        ("sessionId", OTHER_CSN),
        ("departmentId", "10501101"),
        ("conferenceId", ""),
        ("environment", "test"),
    ];
    let second = browser
        .navigate(&env.launch_url("provider", &context))
        .await;
    assert_eq!(second.status, 200, "{} {}", second.url, second.body);
    assert_ne!(first.visit_id(), second.visit_id(), "two visits");
    assert_eq!(env.graph.meeting_count(), 2);

    // Both pages' live panels answer for this browser's cookie.
    for page in [&first, &second] {
        let (status, content_type) = events_status(&browser, &page.url).await;
        assert_eq!(status, 200, "{}", page.url);
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let reloaded = browser.get(&page.url).await;
        assert_eq!(reloaded.status(), 200, "{}", page.url);
    }

    // The first page's "Create a patient link" still works with the token it was rendered with.
    let made = browser
        .post_form(
            &format!("{}/patient-link", first.url),
            &[("csrf".into(), first_csrf.clone())],
        )
        .await;
    assert_eq!(made.status(), 200);
    assert!(
        made.text()
            .await
            .unwrap()
            .contains(&format!("{}/join/", env.base))
    );
    // Each visit's form has its own token: the first one's makes no link for the second visit.
    let crossed = browser
        .post_form(
            &format!("{}/patient-link", second.url),
            &[("csrf".into(), first_csrf)],
        )
        .await;
    assert_eq!(crossed.status(), 403);

    // A third browser, without the cookie, gets neither visit.
    let stranger = env.browser();
    for page in [&first, &second] {
        let (status, _) = events_status(&stranger, &page.url).await;
        assert_eq!(status, 401, "{}", page.url);
        assert_eq!(stranger.get(&page.url).await.status(), 401);
    }

    // The session id from before the second launch was replaced, not extended: a copy of it
    // (planted or leaked earlier) grants nothing.
    let stale = reqwest::Client::new()
        .get(format!("{}/events", first.url))
        .header("cookie", before_second)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401);
}
