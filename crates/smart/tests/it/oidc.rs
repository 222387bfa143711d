//! Generic OpenID Connect sign-in, against the Entra ID fake.

use url::Url;
use visitbridge_http::{ClientAssertionKey, Secret};
use visitbridge_smart::{
    Callback, ClientAuth, OidcClientConfig, OidcProvider, PendingSignIn, SmartError,
};
use visitbridge_testkit::{
    entra::{self, FakeEntra},
    fixtures::keys,
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::common::http;

const PORTAL_CALLBACK: &str = "https://portal.example.org/auth/callback";

async fn provider(auth: ClientAuth) -> (MockServer, FakeEntra, OidcProvider) {
    let server = MockServer::start().await;
    let fake = FakeEntra::mount(&server).await;
    let issuer = Url::parse(&fake.issuer()).expect("issuer");
    let mut config = OidcClientConfig::new(
        entra::CLIENT_ID,
        Url::parse(PORTAL_CALLBACK).expect("url"),
        auth,
    );
    config.scope = "openid profile email".into();
    let provider = OidcProvider::discover(http(), &issuer, config)
        .await
        .expect("discover");
    (server, fake, provider)
}

async fn follow(url: &Url) -> Url {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser");
    let response = browser.get(url.clone()).send().await.expect("authorize");
    assert!(response.status().is_redirection(), "{}", response.status());
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    Url::parse(&location).expect("callback")
}

#[tokio::test]
async fn entra_sign_in_with_pkce_state_and_nonce_yields_validated_claims() {
    let (_server, fake, provider) =
        provider(ClientAuth::SecretPost(Secret::new(entra::CLIENT_SECRET))).await;
    assert_eq!(provider.metadata().issuer, fake.issuer());

    let (request, pending) = provider
        .begin_sign_in(&[("prompt", "select_account")])
        .expect("begin");
    let url = request.url();
    let q: std::collections::BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], entra::CLIENT_ID);
    assert_eq!(q["scope"], "openid profile email");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["prompt"], "select_account");
    assert!(q["nonce"].len() >= 22 && q["state"].len() >= 22);

    // The pending sign-in survives a trip through a session store, without showing secrets.
    let stored = serde_json::to_string(&pending).expect("json");
    let pending: PendingSignIn = serde_json::from_str(&stored).expect("parse");
    assert!(!format!("{pending:?}").contains(&q["state"]));

    let callback = follow(&url).await;
    let callback = Callback::from_query(callback.query().expect("query")).expect("callback");
    let signed_in = provider
        .complete_sign_in(pending, &callback)
        .await
        .expect("sign in");
    let user = entra::EntraUser::default();
    assert_eq!(signed_in.claims.str_claim("oid"), Some(user.oid.as_str()));
    assert_eq!(signed_in.claims.str_claim("tid"), Some(entra::TENANT_ID));
    assert_eq!(
        signed_in.claims.str_claim("preferred_username"),
        Some(user.upn.as_str())
    );
    assert_eq!(signed_in.claims.issuer, fake.issuer());
    assert!(!signed_in.access_token.expose().is_empty());
}

#[tokio::test]
async fn entra_sign_in_with_a_certificate_credential() {
    let der = pem_der(keys::CLIENT_CERT);
    let key = ClientAssertionKey::from_pem(
        jsonwebtoken::Algorithm::RS256,
        "cert-1",
        keys::CLIENT_RSA.as_bytes(),
    )
    .expect("key")
    .with_x5t(&der);
    let (_server, _fake, provider) = provider(ClientAuth::PrivateKeyJwt(key)).await;
    let (request, pending) = provider.begin_sign_in(&[]).expect("begin");
    let callback = follow(&request.url()).await;
    let callback = Callback::from_query(callback.query().expect("query")).expect("callback");
    let signed_in = provider
        .complete_sign_in(pending, &callback)
        .await
        .expect("sign in");
    assert_eq!(signed_in.claims.str_claim("tid"), Some(entra::TENANT_ID));
}

#[tokio::test]
async fn entra_callback_with_another_state_is_refused() {
    let (_server, _fake, provider) =
        provider(ClientAuth::SecretPost(Secret::new(entra::CLIENT_SECRET))).await;
    let (request, pending) = provider.begin_sign_in(&[]).expect("begin");
    let callback = follow(&request.url()).await;
    let mut callback = Callback::from_query(callback.query().expect("query")).expect("callback");
    callback.state = "forged".into();
    let err = provider
        .complete_sign_in(pending, &callback)
        .await
        .expect_err("refused");
    assert!(matches!(err, SmartError::StateUnknownOrUsed), "{err}");
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let server = MockServer::start().await;
    let fake = FakeEntra::mount(&server).await;
    // A document at one issuer's address that claims to be the fake tenant's.
    let real = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        fake.issuer()
    ))
    .await
    .expect("fetch")
    .json::<serde_json::Value>()
    .await
    .expect("json");
    Mock::given(method("GET"))
        .and(path("/impostor/v2.0/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(real))
        .mount(&server)
        .await;
    let config = OidcClientConfig::new(
        entra::CLIENT_ID,
        Url::parse(PORTAL_CALLBACK).expect("url"),
        ClientAuth::SecretPost(Secret::new(entra::CLIENT_SECRET)),
    );
    let impostor = Url::parse(&format!("{}/impostor/v2.0", server.uri())).expect("url");
    let err = OidcProvider::discover(http(), &impostor, config.clone())
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, SmartError::Discovery { reason, .. } if reason.contains("another issuer")),
        "{err}"
    );
    let missing = Url::parse(&format!("{}/nobody/v2.0", server.uri())).expect("url");
    let err = OidcProvider::discover(http(), &missing, config.clone())
        .await
        .expect_err("404");
    assert!(matches!(err, SmartError::Discovery { .. }), "{err}");
    let issuer = Url::parse(&fake.issuer()).expect("url");
    OidcProvider::discover(http(), &issuer, config)
        .await
        .expect("the real issuer works");
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("pem")
}
