//! Bad input of any kind (a malformed form, a bad address, a wrong method, an oversized body)
//! gets the service's own error page with the right status, never axum's plain-text rejections.

use axum::{
    body::Body,
    http::{Method, Request},
};
use tower::ServiceExt as _;
use visitbridge_launch::{LaunchConfig, LaunchService, app};

/// A distinctive text of the service's page layout (its footer).
const FOOTER: &str = "virtual visits from your EHR into Microsoft Teams";

async fn service() -> (tempfile::TempDir, LaunchService) {
    let dir = tempfile::tempdir().unwrap();
    let config = LaunchConfig {
        dev_mode: true,
        database: dir.path().join("visitbridge.sqlite").into(),
        ..LaunchConfig::default()
    };
    let base = config.public_base(config.listen);
    let service = LaunchService::build(config, base).await.unwrap();
    (dir, service)
}

struct Answer {
    status: u16,
    content_type: String,
    allow: Option<String>,
    body: String,
}

async fn send(service: &LaunchService, request: Request<Body>) -> Answer {
    let response = app(service.state()).oneshot(request).await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    let allow = header("allow");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        content_type,
        allow,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

/// The answer is the service's HTML error page with `status`, saying `text`.
fn assert_error_page(answer: &Answer, status: u16, text: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(
        answer.content_type.starts_with("text/html"),
        "{}",
        answer.content_type
    );
    assert!(answer.body.contains(FOOTER), "{}", answer.body);
    assert!(answer.body.contains(text), "{}", answer.body);
}

#[tokio::test]
async fn a_malformed_patient_link_form_gets_the_error_page() {
    let (_dir, service) = service().await;
    // Not a form at all.
    let answer = send(
        &service,
        post(
            "/visits/v-1/patient-link",
            "application/json",
            r#"{"csrf":"x"}"#,
        ),
    )
    .await;
    assert_error_page(&answer, 400, "This form could not be read");
    // A form that does not fit (the token twice).
    let answer = send(
        &service,
        post(
            "/visits/v-1/patient-link",
            "application/x-www-form-urlencoded",
            "csrf=a&csrf=b",
        ),
    )
    .await;
    assert_error_page(&answer, 400, "This form could not be read");
    assert!(!answer.body.contains("duplicate field"), "{}", answer.body);
}

#[tokio::test]
async fn a_bad_path_id_gets_the_error_page() {
    let (_dir, service) = service().await;
    // `%FF` is not UTF-8: axum's `Path` refuses it.
    for path in [
        "/visits/%FF",
        "/visits/%FF/events",
        "/join/%FF",
        "/static/%FF",
    ] {
        let answer = send(&service, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_error_page(&answer, 400, "This address is not valid");
    }
    let answer = send(
        &service,
        post(
            "/visits/%FF/patient-link",
            "application/x-www-form-urlencoded",
            "csrf=x",
        ),
    )
    .await;
    assert_error_page(&answer, 400, "This address is not valid");
}

#[tokio::test]
async fn a_wrong_method_gets_the_error_page_and_the_allowed_methods() {
    let (_dir, service) = service().await;
    let answer = send(
        &service,
        Request::get("/visits/v-1/patient-link")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error_page(&answer, 405, "This address does not accept GET requests");
    assert_eq!(answer.allow.as_deref(), Some("POST"));

    let answer = send(
        &service,
        Request::builder()
            .method(Method::DELETE)
            .uri("/launch/provider")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error_page(&answer, 405, "does not accept DELETE requests");
    assert!(
        answer.allow.as_deref().unwrap_or_default().contains("GET"),
        "{:?}",
        answer.allow
    );

    // An unknown address is still "not found".
    let answer = send(
        &service,
        Request::post("/nowhere").body(Body::empty()).unwrap(),
    )
    .await;
    assert_error_page(&answer, 404, "This page does not exist");
}

#[tokio::test]
async fn an_oversized_body_gets_the_error_page() {
    let (_dir, service) = service().await;
    // Over axum's default limit of 2 MiB for forms.
    let big = format!("csrf={}", "a".repeat(3 << 20));
    let answer = send(
        &service,
        post(
            "/visits/v-1/patient-link",
            "application/x-www-form-urlencoded",
            big,
        ),
    )
    .await;
    assert_error_page(&answer, 413, "This request is too large");
}
