//! Shared set-up: a sandbox with registered clients on loopback ports, an HTTP client that does
//! not follow redirects, and a tiny reader of the sandbox's HTML forms.

use std::collections::BTreeMap;

use jsonwebtoken::jwk::JwkSet;
use url::Url;
use visitbridge_http::{ClientAssertionKey, HttpConfig, Secret, build_client};
use visitbridge_sandbox::{
    AppCredential, AppRegistration, ClientRegistration, EhrClients, MsApps, RunningSandbox,
    Sandbox, SandboxConfig,
};

pub(crate) const CLIENT_ID: &str = "visitbridge-launch-test";
pub(crate) const CLIENT_SECRET: &str = "ehr-client-secret-for-tests";
pub(crate) const REDIRECT_URI: &str = "http://127.0.0.1:9/launch/callback";
pub(crate) const LAUNCH_SERVICE: &str = "http://127.0.0.1:9/";
pub(crate) const BACKEND_KID: &str = "backend-test-1";
pub(crate) const MS_CLIENT_ID: &str = "0f3c5d1e-7a2b-4c9d-8e6f-1a2b3c4d5e6f";
pub(crate) const MS_SECRET: &str = "ms-client-secret-for-tests";
pub(crate) const MS_REDIRECT_URI: &str = "http://127.0.0.1:9/auth/callback";

pub(crate) struct Env {
    pub(crate) sandbox: RunningSandbox,
    /// The backend-services key registered for [`CLIENT_ID`] (its JWKS is in the registration).
    pub(crate) backend_key: ClientAssertionKey,
}

pub(crate) async fn start() -> Env {
    let backend_key = ClientAssertionKey::generate_es384(BACKEND_KID).expect("backend key");
    let jwks = JwkSet {
        keys: vec![backend_key.public_jwk().expect("jwk")],
    };
    // Epic fetches a backend client's keys from the JWKS URL it registered: so does the sandbox.
    let ehr_client = ClientRegistration::new(CLIENT_ID, vec![url(REDIRECT_URI)])
        .with_secret(Secret::new(CLIENT_SECRET))
        .with_jwks_url(serve_jwks(jwks).await);
    let config = SandboxConfig {
        ehr_clients: EhrClients::Registered(vec![ehr_client]),
        ms_apps: MsApps::Registered(vec![AppRegistration {
            client_id: MS_CLIENT_ID.to_owned(),
            redirect_uris: vec![url(MS_REDIRECT_URI)],
            credentials: vec![AppCredential::Secret(Secret::new(MS_SECRET))],
        }]),
        ..SandboxConfig::new(url(LAUNCH_SERVICE))
    };
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    Env {
        sandbox,
        backend_key,
    }
}

/// Publishes `jwks` on a loopback port, as the launch service publishes its keys.
async fn serve_jwks(jwks: JwkSet) -> Url {
    let document = serde_json::to_value(jwks).expect("jwks json");
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || async move { axum::Json(document) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url(&format!("http://{address}/.well-known/jwks.json"))
}

pub(crate) fn url(text: &str) -> Url {
    Url::parse(text).expect("url")
}

/// Our shared client: timeouts, and redirects never followed (the tests look at each one).
pub(crate) fn http() -> reqwest::Client {
    build_client(&HttpConfig::default()).expect("http client")
}

pub(crate) fn query_map(url: &Url) -> BTreeMap<String, String> {
    url.query_pairs().into_owned().collect()
}

pub(crate) fn location(response: &reqwest::Response) -> Url {
    let text = response
        .headers()
        .get("location")
        .expect("a location header")
        .to_str()
        .expect("ascii");
    Url::parse(text)
        .or_else(|_| response.url().join(text))
        .expect("location url")
}

/// A form on a page: where it posts, its hidden and other inputs, its button's text.
#[derive(Debug, Clone)]
pub(crate) struct Form {
    pub(crate) action: String,
    pub(crate) fields: BTreeMap<String, String>,
    pub(crate) button: String,
}

fn unescape(text: &str) -> String {
    text.replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

/// Every `<form>` of `html`, in order.
pub(crate) fn forms(html: &str) -> Vec<Form> {
    html.split("<form")
        .skip(1)
        .filter_map(|chunk| {
            let body = &chunk[..chunk.find("</form>")?];
            let action = attribute(&body[..body.find('>')?], "action")?;
            let fields = body
                .split("<input")
                .skip(1)
                .filter_map(|input| {
                    let tag = &input[..input.find('>')?];
                    Some((
                        attribute(tag, "name")?,
                        attribute(tag, "value").unwrap_or_default(),
                    ))
                })
                .collect();
            let button = body
                .split("<button")
                .nth(1)
                .and_then(|b| {
                    let text = &b[b.find('>')? + 1..];
                    Some(unescape(text[..text.find("</button>")?].trim()))
                })
                .unwrap_or_default();
            Some(Form {
                action,
                fields,
                button,
            })
        })
        .collect()
}

/// Submits `form` as the browser would (relative action resolved against `page`).
pub(crate) async fn submit(http: &reqwest::Client, page: &Url, form: &Form) -> reqwest::Response {
    http.post(page.join(&form.action).expect("form action"))
        .form(&form.fields)
        .send()
        .await
        .expect("form post")
}

pub(crate) async fn get_html(http: &reqwest::Client, url: &Url) -> String {
    let response = http.get(url.clone()).send().await.expect("page");
    assert_eq!(response.status(), 200, "GET {url}");
    response.text().await.expect("html")
}
