//! Session cookies, sign-in binding, sign-out, and the headers every page carries.

use visitbridge_testkit::entra;

use crate::harness::{Portal, admin, approver};

#[tokio::test]
async fn every_cookie_is_http_only_same_site_lax_and_secure() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut admin).await;
    let mut approver = portal.signed_in(approver()).await;
    portal.ehr_sign_in(&mut approver, &id).await;
    approver.post("/signout", &[]).await;

    let all: Vec<String> = admin
        .set_cookies
        .iter()
        .chain(approver.set_cookies.iter())
        .cloned()
        .collect();
    assert!(all.len() >= 4, "{all:?}");
    assert!(
        all.iter().any(|c| c.starts_with("__Host-vb_portal=")),
        "{all:?}"
    );
    for cookie in &all {
        assert!(cookie.starts_with("__Host-"), "{cookie}");
        for attribute in ["; HttpOnly", "; SameSite=Lax", "; Secure", "; Path=/"] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
        assert!(!cookie.contains("Domain="), "{cookie}");
    }
}

#[tokio::test]
async fn sign_out_ends_the_session_for_good() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let stolen = admin.cookies.clone();
    let page = admin.post("/signout", &[]).await;
    assert_eq!(page.status, 303);
    assert!(admin.cookies.is_empty(), "{:?}", admin.cookies);
    assert_eq!(admin.get("/configurations").await.status, 401);

    // The old cookie value is worthless now.
    let mut thief = portal.browser();
    thief.cookies = stolen;
    assert_eq!(thief.get("/configurations").await.status, 401);
}

#[tokio::test]
async fn a_sign_in_callback_only_works_in_the_browser_that_started_it() {
    let portal = Portal::start().await;
    // The attacker starts a sign-in and gets the callback URL with their code...
    let mut attacker = portal.browser();
    portal.entra.set_user(admin());
    let start = attacker.get("/signin").await;
    let authorize = start.location.unwrap();
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(authorize.contains("nonce="), "{authorize}");
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&authorize)
        .send()
        .await
        .unwrap();
    let callback = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();

    // ...and makes the victim's browser open it: no session for the victim.
    let mut victim = portal.browser();
    let page = victim.get_url(&callback).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("started in another browser"),
        "{}",
        page.body
    );
    assert!(victim.cookies.keys().all(|k| k != "__Host-vb_portal"));
    // The callback was single use: the attacker cannot use it afterwards either.
    let page = attacker.get_url(&callback).await;
    assert_eq!(page.status, 400);
}

#[tokio::test]
async fn a_cancelled_microsoft_sign_in_says_so() {
    let portal = Portal::start().await;
    let mut browser = portal.browser();
    let start = browser.get("/signin").await;
    let authorize = url::Url::parse(start.location.as_deref().unwrap()).unwrap();
    assert!(authorize.as_str().contains(entra::TENANT_ID));
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let page = browser
        .get(&format!(
            "/signin/callback?error=access_denied&error_description=AADSTS65004%3A+User+declined&state={state}"
        ))
        .await;
    assert_eq!(page.status, 400);
    assert!(
        page.body
            .contains("Microsoft sign-in did not complete (access_denied)"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("AADSTS65004"),
        "free text from Entra is not echoed"
    );
}

#[tokio::test]
async fn non_admins_get_no_admin_pages_and_an_organisation_is_created_by_its_admin() {
    let portal = Portal::start().await;
    let mut approver = portal.signed_in(approver()).await;
    let list = approver.get("/configurations").await;
    assert!(
        list.body
            .contains("No configuration names you as its approver"),
        "{}",
        list.body
    );
    assert_eq!(approver.get("/configurations/new").await.status, 403);
    let form = portal.form();
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = approver.post("/configurations", &fields).await;
    assert_eq!(page.status, 403);
    assert!(
        crate::harness::unescape(&page.body)
            .contains("only your organisation's VisitBridge admins can add configurations")
    );
}

#[tokio::test]
async fn pages_carry_protective_headers_and_probes_answer() {
    let portal = Portal::start().await;
    let mut browser = portal.browser();
    let home = browser.get("/").await;
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(home.headers["referrer-policy"], "no-referrer");
    assert_eq!(home.headers["x-content-type-options"], "nosniff");
    assert_eq!(home.headers["cache-control"], "no-store");
    assert!(
        home.content_type
            .as_deref()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(!home.body.contains("<script>"), "no inline script");

    let js = browser.get("/static/portal.js").await;
    assert_eq!(js.status, 200);
    assert!(js.body.contains("navigator.clipboard"));
    assert_eq!(browser.get("/healthz").await.body, "ok");
    assert_eq!(browser.get("/readyz").await.body, "ready");
    assert_eq!(browser.get("/no/such/page").await.status, 404);
}
