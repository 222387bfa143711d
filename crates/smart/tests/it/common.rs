//! Shared set-up: a mock server with the SMART fake, and a client registered with it.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use base64::Engine as _;
use url::Url;
use visitbridge_http::{ClientAssertionKey, HttpConfig, RetryPolicy, Secret, build_client};
use visitbridge_smart::{
    ApprovedIssuer, ClientAuth, CompletedLaunch, InMemoryPendingLaunches, PendingLaunchStore,
    SmartClient, SmartClientConfig, StaticIssuers,
};
use visitbridge_testkit::{
    fixtures::keys,
    smart::{ExpectedClientAuth, SmartFake},
};
use wiremock::MockServer;

pub(crate) const CLIENT_ID: &str = "d45049c3-3441-40ef-ab4d-b9cd86a17225";
pub(crate) const CLIENT_SECRET: &str = "a-client-secret-that-must-not-leak";
pub(crate) const REDIRECT_URI: &str = "https://visits.example.org/launch/callback";
pub(crate) const EHR_SCOPE: &str =
    "launch openid fhirUser user/Appointment.read user/Encounter.read";
pub(crate) const STANDALONE_SCOPE: &str = "launch/patient openid fhirUser patient/Appointment.read";
pub(crate) const CLIENT_KID: &str = "visitbridge-2026-01";

pub(crate) struct Ehr {
    pub(crate) server: MockServer,
    pub(crate) fake: SmartFake,
}

impl Ehr {
    pub(crate) async fn start(auth: ExpectedClientAuth) -> Self {
        let server = MockServer::start().await;
        let fake = SmartFake::mount(&server, auth).await;
        Self { server, fake }
    }

    pub(crate) async fn with_secret_basic() -> Self {
        Self::start(ExpectedClientAuth::SecretBasic {
            client_id: CLIENT_ID.into(),
            secret: CLIENT_SECRET.into(),
        })
        .await
    }

    pub(crate) fn approved(&self) -> ApprovedIssuer {
        ApprovedIssuer::new(Url::parse(&self.fake.fhir_base()).expect("url"), "cfg-epic")
    }

    pub(crate) fn client(&self, auth: ClientAuth) -> SmartClient {
        self.client_with(auth, http(), Arc::new(InMemoryPendingLaunches::new()))
    }

    pub(crate) fn client_with(
        &self,
        auth: ClientAuth,
        http: reqwest::Client,
        store: Arc<dyn PendingLaunchStore>,
    ) -> SmartClient {
        let config =
            SmartClientConfig::new(CLIENT_ID, Url::parse(REDIRECT_URI).expect("url"), auth)
                .with_scopes(EHR_SCOPE, STANDALONE_SCOPE)
                .with_epic_client_id_header()
                .expect("header");
        SmartClient::new(
            config,
            http,
            Arc::new(StaticIssuers::new([self.approved()])),
            store,
        )
        .with_retry_policy(fast_retries())
    }

    /// Begins an EHR launch, plays the browser and completes the callback.
    pub(crate) async fn launch(
        &self,
        client: &SmartClient,
    ) -> Result<CompletedLaunch, visitbridge_smart::SmartError> {
        let request = client
            .begin_ehr_launch(&self.fake.fhir_base(), "launch-token-123", session())
            .await?;
        let callback = self.fake.browser_get(request.url().as_str()).await;
        client
            .complete_callback(callback.query().unwrap_or(""))
            .await
    }
}

pub(crate) fn secret_basic() -> ClientAuth {
    ClientAuth::SecretBasic(Secret::new(CLIENT_SECRET))
}

pub(crate) fn rsa_key() -> ClientAssertionKey {
    ClientAssertionKey::from_pem(
        jsonwebtoken::Algorithm::RS384,
        CLIENT_KID,
        keys::CLIENT_RSA.as_bytes(),
    )
    .expect("client rsa key")
}

pub(crate) fn ec_key() -> ClientAssertionKey {
    ClientAssertionKey::from_pem(
        jsonwebtoken::Algorithm::ES384,
        "visitbridge-ec-1",
        keys::CLIENT_EC384.as_bytes(),
    )
    .expect("client ec key")
}

pub(crate) fn expect_rsa_jwt() -> ExpectedClientAuth {
    ExpectedClientAuth::PrivateKeyJwt {
        client_id: CLIENT_ID.into(),
        public_key_pem: keys::CLIENT_RSA_PUB.into(),
        algorithm: jsonwebtoken::Algorithm::RS384,
        kid: CLIENT_KID.into(),
    }
}

pub(crate) fn http() -> reqwest::Client {
    build_client(&HttpConfig::default()).expect("http client")
}

pub(crate) fn http_with_timeout(timeout: Duration) -> reqwest::Client {
    build_client(&HttpConfig {
        total_timeout: timeout,
        ..HttpConfig::default()
    })
    .expect("http client")
}

pub(crate) fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_total: Duration::from_secs(5),
    }
}

pub(crate) fn session() -> BTreeMap<String, String> {
    BTreeMap::from([("sessionId".to_owned(), "csn-1234567".to_owned())])
}

pub(crate) fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

pub(crate) fn query_map(url: &Url) -> BTreeMap<String, String> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The claims of a JWT, read without verification (for checking what we sent).
pub(crate) fn jwt_parts(jwt: &str) -> (serde_json::Value, serde_json::Value) {
    let mut parts = jwt.split('.');
    let mut decode = || -> serde_json::Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts.next().expect("jwt part"))
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("json")
    };
    let header = decode();
    let claims = decode();
    (header, claims)
}
