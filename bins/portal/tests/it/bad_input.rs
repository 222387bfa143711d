//! Bad input of any kind (a malformed form, address or query, a wrong method, an oversized body,
//! a cross-site post) gets the portal's own error page, or a problem document under `/api/v1`,
//! with the right status — never axum's or tower-http's plain-text rejections.

use axum::{
    body::Body,
    http::{Method, Request},
};
use serde_json::Value;

use crate::harness::{API_KEY, Browser, Page, Portal, admin};

/// A distinctive text of the portal's page layout (its footer).
const FOOTER: &str = "virtual visits from your EHR into Microsoft Teams";

/// Over the portal's 64 KiB limit on bodies.
const OVERSIZED: usize = 100 * 1024;

/// The answer is the portal's HTML error page with `status`, saying `text`.
fn assert_error_page(page: &Page, status: u16, text: &str) {
    assert_eq!(page.status, status, "{}", page.body);
    assert!(
        page.content_type
            .as_deref()
            .unwrap_or_default()
            .starts_with("text/html"),
        "{:?}",
        page.content_type
    );
    assert!(page.body.contains(FOOTER), "{}", page.body);
    assert!(page.body.contains(text), "{}", page.body);
    // The layers' headers are on error pages too.
    assert!(page.headers.contains_key("content-security-policy"));
}

/// The answer is a problem document with `status` and the problem type `slug`.
fn assert_problem(page: &Page, status: u16, slug: &str, title: &str) -> Value {
    assert_eq!(page.status, status, "{}", page.body);
    assert_eq!(
        page.content_type.as_deref(),
        Some("application/problem+json"),
        "{}",
        page.body
    );
    let problem: Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(problem["status"], status, "{problem}");
    assert_eq!(problem["title"], title, "{problem}");
    let kind = problem["type"].as_str().unwrap();
    assert!(kind.ends_with(&format!("#problem-{slug}")), "{kind}");
    problem
}

fn form(method: Method, path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.into())
        .unwrap()
}

async fn api(
    client: &mut Browser,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Page {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {API_KEY}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    client.request(request.body(body.into()).unwrap()).await
}

#[tokio::test]
async fn a_malformed_form_gets_the_error_page() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.added_configuration(&mut admin).await;
    let csrf = admin.get("/configurations").await.csrf();

    // The right token, but a form that does not fit (the reason twice).
    let page = admin
        .request(form(
            Method::POST,
            &format!("/configurations/{id}/reject"),
            format!("csrf={csrf}&reason=a&reason=b"),
        ))
        .await;
    assert_error_page(&page, 400, "the form could not be read");
    assert!(!page.body.contains("duplicate field"), "{}", page.body);

    // The right token, but not sent as a form.
    let page = admin
        .request(
            Request::post(format!("/configurations/{id}/reject"))
                .header("content-type", "text/plain")
                .body(Body::from(format!("csrf={csrf}&reason=no")))
                .unwrap(),
        )
        .await;
    assert_error_page(&page, 400, "the form could not be read");

    let detail = admin.get(&format!("/configurations/{id}")).await;
    assert!(
        !detail.body.contains("Rejected"),
        "nothing was rejected: {}",
        detail.body
    );
}

#[tokio::test]
async fn a_bad_path_id_or_query_gets_the_error_page() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.added_configuration(&mut admin).await;

    // `%FF` is not UTF-8: axum's `Path` refuses it.
    for path in [
        "/configurations/%FF",
        "/configurations/%FF/history",
        "/visits/%FF",
    ] {
        let page = admin.get(path).await;
        assert_error_page(&page, 400, "this address is not valid");
    }
    let page = admin.post("/configurations/%FF/submit", &[]).await;
    assert_error_page(&page, 400, "this address is not valid");

    // A query that does not fit the page's (the notice twice).
    let page = admin
        .get(&format!("/configurations/{id}?notice=a&notice=b"))
        .await;
    assert_error_page(&page, 400, "the query of this address is not valid");
}

#[tokio::test]
async fn a_wrong_method_gets_the_error_page_and_the_allowed_methods() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.added_configuration(&mut admin).await;

    let page = admin.get(&format!("/configurations/{id}/submit")).await;
    assert_error_page(&page, 405, "this address does not accept GET requests");
    assert_eq!(page.headers["allow"], "POST");

    let page = admin
        .request(form(Method::DELETE, "/configurations", ""))
        .await;
    assert_error_page(&page, 405, "does not accept DELETE requests");
    let allow = page.headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

    // An unknown address is still "not found".
    let page = admin.get("/nowhere").await;
    assert_error_page(&page, 404, "there is nothing at this address");
}

#[tokio::test]
async fn an_oversized_body_gets_the_error_page() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let csrf = admin.get("/configurations").await.csrf();
    let big = format!("csrf={csrf}&fhir_base_url={}", "a".repeat(OVERSIZED));

    // Announced by its length: the body limit layer refuses it before any handler.
    let page = admin
        .request(
            Request::post("/configurations")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("content-length", big.len())
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await;
    assert_error_page(&page, 413, "the request is too large");

    // Streamed without a length: the form's reading stops at the limit.
    let page = admin
        .request(form(Method::POST, "/configurations", big))
        .await;
    assert_error_page(&page, 413, "the request is too large");

    let list = admin.get("/configurations").await;
    assert!(list.body.contains("no configurations yet"), "{}", list.body);
}

#[tokio::test]
async fn a_cross_site_post_gets_the_error_page() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let csrf = admin.get("/configurations").await.csrf();
    let page = admin
        .request(
            Request::post("/signout")
                .header("sec-fetch-site", "cross-site")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("csrf={csrf}")))
                .unwrap(),
        )
        .await;
    assert_error_page(&page, 403, "sent from another site");
    assert_eq!(
        admin.get("/configurations").await.status,
        200,
        "still signed in"
    );
}

#[tokio::test]
async fn api_bad_json_gets_a_problem_document() {
    let portal = Portal::start().await;
    let mut client = portal.browser();
    let json = [("content-type", "application/json")];

    let page = api(
        &mut client,
        Method::POST,
        "/api/v1/configurations",
        &json,
        "{not json",
    )
    .await;
    let problem = assert_problem(&page, 400, "bad-request", "Bad request");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("the body is not JSON"),
        "{problem}"
    );

    // JSON of the wrong shape names the field at fault.
    let page = api(
        &mut client,
        Method::POST,
        "/api/v1/configurations",
        &json,
        r#"{"fhir_base_url":42}"#,
    )
    .await;
    let problem = assert_problem(&page, 400, "bad-request", "Bad request");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("the body is not JSON of the expected shape")
            && detail.contains("fhir_base_url"),
        "{problem}"
    );

    // Not sent as JSON.
    let page = api(
        &mut client,
        Method::POST,
        "/api/v1/configurations",
        &[],
        "{}",
    )
    .await;
    let problem = assert_problem(&page, 400, "bad-request", "Bad request");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Content-Type: application/json"),
        "{problem}"
    );

    // A bad id in the address.
    let page = api(
        &mut client,
        Method::GET,
        "/api/v1/configurations/%FF",
        &[],
        "",
    )
    .await;
    assert_problem(&page, 400, "bad-request", "Bad request");

    // Over the size limit, announced or not.
    let big = format!(r#"{{"client_id":"{}"}}"#, "a".repeat(OVERSIZED));
    let length = big.len().to_string();
    let page = api(
        &mut client,
        Method::POST,
        "/api/v1/configurations",
        &[
            ("content-type", "application/json"),
            ("content-length", &length),
        ],
        big.clone(),
    )
    .await;
    assert_problem(&page, 413, "too-large", "Too large");
    let page = api(
        &mut client,
        Method::POST,
        "/api/v1/configurations",
        &json,
        big,
    )
    .await;
    assert_problem(&page, 413, "too-large", "Too large");

    let page = api(&mut client, Method::GET, "/api/v1/configurations", &[], "").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(r#""configurations":[]"#),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn api_wrong_method_and_unknown_path_get_problem_documents() {
    let portal = Portal::start().await;
    let mut client = portal.browser();

    let page = api(
        &mut client,
        Method::DELETE,
        "/api/v1/configurations",
        &[],
        "",
    )
    .await;
    let problem = assert_problem(&page, 405, "method-not-allowed", "Method not allowed");
    assert_eq!(
        problem["detail"],
        "this address does not accept DELETE requests"
    );
    let allow = page.headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

    let page = api(
        &mut client,
        Method::GET,
        "/api/v1/configurations/x/submit",
        &[],
        "",
    )
    .await;
    assert_problem(&page, 405, "method-not-allowed", "Method not allowed");
    assert_eq!(page.headers["allow"], "POST");

    for path in ["/api/v1/nowhere", "/api/v1/configurations/x/nowhere"] {
        let page = api(&mut client, Method::GET, path, &[], "").await;
        assert_problem(&page, 404, "not-found", "Not found");
    }
}

#[tokio::test]
async fn api_cross_site_post_gets_a_problem_document() {
    let portal = Portal::start().await;
    let mut client = portal.browser();
    let body = serde_json::json!({
        "fhir_base_url": portal.fhir_base(),
        "environment": "test",
        "approver": "analyst@contoso.example",
        "client_id": "vb-launch-client",
    })
    .to_string();
    let page = api(
        &mut client,
        Method::POST,
        "/api/v1/configurations",
        &[
            ("content-type", "application/json"),
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://attacker.example"),
        ],
        body.clone(),
    )
    .await;
    let problem = assert_problem(&page, 403, "csrf", "Refused from another site");
    assert!(
        problem["detail"].as_str().unwrap().contains("another site"),
        "{problem}"
    );

    // Nothing was created; the same request from a client (no browser headers) is accepted.
    let page = api(&mut client, Method::GET, "/api/v1/configurations", &[], "").await;
    assert!(
        page.body.contains(r#""configurations":[]"#),
        "{}",
        page.body
    );
    let page = api(
        &mut client,
        Method::POST,
        "/api/v1/configurations",
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(page.status, 201, "{}", page.body);
}
