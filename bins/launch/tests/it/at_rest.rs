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
