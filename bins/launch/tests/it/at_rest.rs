//! What the database keeps of a browser: no session id a copy of the file could replay, and no
//! pending launch for a launch that was merely started.

use crate::{harness::Env, provider::provider_launch};

/// The bytes of the service's SQLite database with its write-ahead log.
fn database_bytes(env: &Env) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["visitbridge.sqlite", "visitbridge.sqlite-wal"] {
        if let Ok(file) = std::fs::read(env.dir.path().join(name)) {
            bytes.extend(file);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn the_session_cookie_is_not_in_the_database_and_still_opens_the_visit() {
    let env = Env::start().await;
    let browser = env.browser();
    let page = provider_launch(&env, &browser).await;
    let cookies = browser.cookie_header();
    let session = cookies
        .split("; ")
        .find_map(|pair| pair.strip_prefix("vb-session="))
        .expect("a session cookie")
        .to_owned();
    assert!(session.len() >= 32, "{session}");

    let bytes = database_bytes(&env);
    assert!(bytes.len() > 4096, "read the database");
    assert!(
        !contains(&bytes, &session),
        "the session id is stored as it is in the cookie"
    );
    // The session still works: the page and its live panel answer for this browser only.
    assert_eq!(browser.get(&page.url).await.status(), 200);
    assert_eq!(env.browser().get(&page.url).await.status(), 401);
}

/// How many pending items the database holds (purging them all to count them).
async fn pending_rows(env: &Env) -> u64 {
    env.store
        .purge_expired_pending(chrono::Utc::now() + chrono::Duration::days(1))
        .await
        .unwrap()
}

#[tokio::test]
async fn unauthenticated_launch_starts_write_nothing_to_the_database() {
    let env = Env::start().await;
    let url = env.launch_url("provider", &Env::visit_context());
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut sealed = 0;
    for _ in 0..30 {
        let batch = (0..10).map(|_| async {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.starts_with("vb-launch-"))
        });
        sealed += futures_util::future::join_all(batch)
            .await
            .into_iter()
            .filter(|s| *s)
            .count();
    }
    eprintln!("300 launch starts took {:?}", started.elapsed());
    assert_eq!(
        pending_rows(&env).await,
        0,
        "300 launch starts wrote pending rows"
    );
    assert_eq!(sealed, 300, "each launch is kept in its browser's cookie");
}

#[tokio::test]
async fn the_launch_cookie_is_http_only_per_launch_and_consumed_by_its_callback() {
    let env = Env::start().await;
    let browser = env.browser();
    let response = browser
        .get(&env.launch_url("provider", &Env::visit_context()))
        .await;
    let set: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .filter(|v| v.starts_with("vb-launch-"))
        .collect();
    assert_eq!(set.len(), 1, "{set:?}");
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(
            set[0].split("; ").any(|a| a == attribute),
            "{attribute} in {}",
            set[0]
        );
    }
    assert!(
        set[0].split("; ").any(|a| a.starts_with("Max-Age=")),
        "{}",
        set[0]
    );
    let (_, sealed) = &browser.cookies_named("vb-launch-")[0];
    // Opaque: neither the PKCE verifier's JSON field nor the issuer shows.
    assert!(!sealed.contains("code_verifier") && !sealed.contains("127.0.0.1"));

    // Two launches in two tabs: two cookies, and both complete.
    let first = crate::security::callback_url(&env, &browser).await;
    let second = crate::security::callback_url(&env, &browser).await;
    assert_eq!(browser.cookies_named("vb-launch-").len(), 3);
    for callback in [&first, &second] {
        let page = browser.navigate(callback).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.url.contains("/visits/"), "{}", page.url);
    }
    // Each callback removed its own cookie; the launch never completed keeps its cookie.
    assert_eq!(browser.cookies_named("vb-launch-").len(), 1);
    // Only the callbacks wrote to the database: one used-state marker each.
    let markers = pending_rows(&env).await;
    assert_eq!(markers, 2, "one marker per completed callback");
}

#[tokio::test]
async fn a_replayed_callback_with_its_cookie_is_refused() {
    let env = Env::start().await;
    let browser = env.browser();
    let callback = crate::security::callback_url(&env, &browser).await;
    let cookies = browser.cookie_header();
    let first = browser.navigate(&callback).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let tokens = env.smart.token_requests().len();
    // The same callback with the cookies as they were before it: the state is used.
    let replay = reqwest::Client::new()
        .get(&callback)
        .header("cookie", cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    let body = replay.text().await.unwrap();
    assert!(body.contains("already been used or has expired"), "{body}");
    assert_eq!(
        env.smart.token_requests().len(),
        tokens,
        "no second exchange"
    );
}

#[tokio::test]
async fn a_tampered_launch_cookie_is_refused_with_the_start_again_page() {
    let env = Env::start().await;
    let browser = env.browser();
    let callback = crate::security::callback_url(&env, &browser).await;
    let (name, sealed) = browser.cookies_named("vb-launch-").remove(0);
    let mut altered = sealed.into_bytes();
    let at = altered.len() / 2;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    browser.set_cookie(&name, &String::from_utf8(altered).unwrap());
    let page = browser.navigate(&callback).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("Start the visit again"), "{}", page.body);
    assert!(
        page.body.contains("already been used or has expired"),
        "{}",
        page.body
    );
    assert!(env.smart.token_requests().is_empty(), "no code exchange");
    assert!(browser.cookies_named("vb-launch-").is_empty(), "cleared");
}
