//! Hostile bodies and queries through the portal's routes: the settings form, the JSON API's
//! bodies and the reports' queries, mutated by `visitbridge_testkit::fuzz` from valid seeds and
//! the corpus in `tests/it/fuzz-corpus/<target>/`. Whatever arrives, the answer is the portal's
//! own: a redirect or success, or its HTML error page / problem document with a 4xx — never a
//! 5xx or a panic — and what was stored before still loads.
//!
//! In the suite each target runs a few hundred cases; `VISITBRIDGE_FUZZ_SECONDS=600 cargo test
//! --release -p visitbridge-portal --test it -- fuzz --test-threads 1 --nocapture` gives each ten
//! minutes.

use std::{cell::RefCell, path::PathBuf};

use axum::{body::Body, http::Request};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use visitbridge_testkit::fuzz::fuzz;

use crate::harness::{API_KEY, Browser, Page, Portal, admin};

/// A distinctive text of the portal's page layout (its footer).
const FOOTER: &str = "virtual visits from your EHR into Microsoft Teams";

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fuzz-corpus")
        .join(target)
}

/// A portal with a signed-in admin and one draft configuration (its id), on `runtime`.
fn portal_with_draft(runtime: &Runtime) -> (Portal, Browser, String) {
    runtime.block_on(async {
        let portal = Portal::start().await;
        let mut browser = portal.signed_in(admin()).await;
        let id = portal.added_configuration(&mut browser).await;
        (portal, browser, id)
    })
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A form post of `body` to `path`.
fn form_post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.into())
        .expect("a request")
}

/// A JSON API call with the organisation's key.
fn api_request(method: &str, path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(body.into())
        .expect("a request")
}

/// Success or redirect, or the portal's HTML error page with a 4xx.
fn assert_page_answer(page: &Page, input: &[u8]) {
    let input = String::from_utf8_lossy(input);
    assert!(
        page.status < 500,
        "{} for {input:?}: {}",
        page.status,
        page.body
    );
    if page.status >= 400 {
        assert!(
            page.content_type
                .as_deref()
                .unwrap_or_default()
                .starts_with("text/html"),
            "{:?} for {input:?}",
            page.content_type
        );
        assert!(page.body.contains(FOOTER), "for {input:?}: {}", page.body);
    }
}

/// Success, or a problem document with a 4xx.
fn assert_api_answer(page: &Page, input: &[u8]) {
    let input = String::from_utf8_lossy(input);
    assert!(
        page.status < 500,
        "{} for {input:?}: {}",
        page.status,
        page.body
    );
    if page.status >= 400 {
        assert_eq!(
            page.content_type.as_deref(),
            Some("application/problem+json"),
            "for {input:?}: {}",
            page.body
        );
        let problem: Value = serde_json::from_str(&page.body).expect("a problem document");
        assert_eq!(problem["status"], page.status, "{problem}");
    }
}

/// The configuration still loads, for its admin and over the API.
fn assert_still_loads(runtime: &Runtime, browser: RefCell<Browser>, id: &str) {
    let mut browser = browser.into_inner();
    runtime.block_on(async {
        let page = browser.get(&format!("/configurations/{id}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let page = browser.get("/configurations").await;
        assert_eq!(page.status, 200, "{}", page.body);
    });
}

#[test]
fn portal_configuration_form() {
    let runtime = runtime();
    let (portal, mut browser, id) = portal_with_draft(&runtime);
    let csrf = runtime.block_on(async { browser.get("/configurations").await.csrf() });
    let form = portal.form();
    let seed = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let edit = format!("/configurations/{id}/edit");
    // Valid forms are taken (an edit that changes the client id, a configuration for the other
    // environment): what the mutations change is what gets refused, not the session.
    let valid = |changes: &[(&'static str, &str)]| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                portal
                    .form_with(changes)
                    .iter()
                    .map(|(k, v)| (*k, v.as_str())),
            )
            .finish()
    };
    for (path, seed) in [
        (edit.as_str(), valid(&[("client_id", "vb-edited")])),
        ("/configurations", valid(&[("environment", "production")])),
    ] {
        let page =
            runtime.block_on(browser.request(form_post(path, format!("csrf={csrf}&{seed}"))));
        assert_eq!(page.status, 303, "{path}: {}", page.body);
    }
    let browser = RefCell::new(browser);
    fuzz(
        "portal_configuration_form",
        &corpus("portal_configuration_form"),
        &[
            seed.as_bytes(),
            b"revision=18446744073709551616&environment=prod",
        ],
        |bytes| {
            // The session's token first, so that the form itself is what is tried.
            let mut body = format!("csrf={csrf}&").into_bytes();
            body.extend_from_slice(bytes);
            for path in ["/configurations", edit.as_str()] {
                let page =
                    runtime.block_on(browser.borrow_mut().request(form_post(path, body.clone())));
                assert_page_answer(&page, bytes);
            }
        },
    );
    assert_still_loads(&runtime, browser, &id);
}

#[test]
fn portal_api_bodies() {
    let runtime = runtime();
    let (portal, mut browser, id) = portal_with_draft(&runtime);
    let settings: serde_json::Map<String, Value> = portal
        .form()
        .into_iter()
        .filter(|(k, _)| *k != "send_epic_client_id_header")
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let mut edit = Value::Object(settings.clone());
    edit["send_epic_client_id_header"] = json!(true);
    edit["revision"] = json!(1);
    let create = serde_json::to_vec(&settings).expect("json");
    let configuration = format!("/api/v1/configurations/{id}");
    // Valid bodies are taken (an edit of the client id without a revision, a configuration for
    // the other environment): what the mutations change is what gets refused, not the key.
    let mut edited = Value::Object(settings.clone());
    edited["client_id"] = json!("vb-edited");
    let mut production = Value::Object(settings.clone());
    production["environment"] = json!("production");
    let (edited, production) = (
        edited.to_string().into_bytes(),
        production.to_string().into_bytes(),
    );
    for (method, path, body, status) in [
        ("PUT", configuration.as_str(), &edited, 200),
        ("POST", "/api/v1/configurations", &production, 201),
    ] {
        let page = runtime.block_on(browser.request(api_request(method, path, body.clone())));
        assert_eq!(page.status, status, "{method} {path}: {}", page.body);
    }
    let edit = serde_json::to_vec(&edit).expect("json");
    let browser = RefCell::new(browser);
    fuzz(
        "portal_api_bodies",
        &corpus("portal_api_bodies"),
        &[&create, &edit],
        |bytes| {
            for (method, path) in [
                ("POST", "/api/v1/configurations"),
                ("PUT", configuration.as_str()),
            ] {
                let page = runtime.block_on(browser.borrow_mut().request(api_request(
                    method,
                    path,
                    bytes.to_vec(),
                )));
                assert_api_answer(&page, bytes);
            }
        },
    );
    assert_still_loads(&runtime, browser, &id);
}

#[test]
fn portal_report_queries() {
    let runtime = runtime();
    let (_portal, mut browser, id) = portal_with_draft(&runtime);
    for path in ["/visits?days=30", "/visits.csv?days=30"] {
        let page = runtime.block_on(browser.get(path));
        assert_eq!(page.status, 200, "{path}: {}", page.body);
    }
    let browser = RefCell::new(browser);
    fuzz(
        "portal_report_queries",
        &corpus("portal_report_queries"),
        &[b"days=30", b"days=7&days=90", b"days=-1"],
        |bytes| {
            // What a query may hold after `?` (a `#` would end it, a space is not allowed), and
            // no longer than a request line the portal's server takes.
            let bytes = &bytes[..bytes.len().min(8 * 1024)];
            let query: String = url::form_urlencoded::byte_serialize(bytes)
                .collect::<String>()
                .replace("%3D", "=")
                .replace("%26", "&");
            for path in ["/visits", "/visits.csv"] {
                let page = runtime.block_on(browser.borrow_mut().get(&format!("{path}?{query}")));
                assert_page_answer(&page, bytes);
            }
            let page = runtime.block_on(
                browser.borrow_mut().request(
                    Request::get(format!("/api/v1/visits?{query}"))
                        .header("authorization", format!("Bearer {API_KEY}"))
                        .body(Body::empty())
                        .expect("a request"),
                ),
            );
            assert_api_answer(&page, bytes);
        },
    );
    assert_still_loads(&runtime, browser, &id);
}
