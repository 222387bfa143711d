//! A portal wired to wiremock fakes of Entra ID and an Epic-shaped EHR, a real SQLite file, and a
//! small browser (cookie jar, forms, redirects through the fakes) that drives it in-process.

use std::{collections::BTreeMap, sync::Arc};

use axum::{Router, body::Body, http::Request};
use serde_json::json;
use tempfile::TempDir;
use tower::ServiceExt as _;
use url::Url;
use visitbridge_portal::{AppState, PortalConfig, app};
use visitbridge_store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use visitbridge_testkit::{
    entra::{self, EntraUser, FakeEntra},
    fhir::{EPIC_BASE_PATH, FhirFake},
    fixtures::keys,
    smart::{ExpectedClientAuth, SmartFake},
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

/// The portal's public address (requests never leave the process).
pub(crate) const PUBLIC: &str = "https://portal.example.test";
/// The portal's client registration at the EHR, for approvers' sign-ins.
pub(crate) const EHR_CLIENT_ID: &str = "visitbridge-portal";
/// The reference secret the portal shares with the launch service (visit ids are keyed with it).
pub(crate) const REFERENCE_SECRET: &str = "portal-test-reference-secret-0123456789abcdef";
/// The JSON API key of the first organisation.
pub(crate) const API_KEY: &str = "api-key-of-contoso-0123456789abcdef0123";
/// A key of the first organisation for its configurations only (no `audit`).
pub(crate) const CONFIGURATIONS_ONLY_API_KEY: &str = "api-key-of-contoso-configs-0123456789abc";
/// A second organisation, with its own admin.
pub(crate) const OTHER_TID: &str = "9d3b2f4e-1111-4c4e-9d0a-000000000002";
pub(crate) const OTHER_API_KEY: &str = "api-key-of-fabrikam-0123456789abcdef012";

/// The admin of the first organisation.
pub(crate) fn admin() -> EntraUser {
    EntraUser {
        oid: "0f8e2a56-aaaa-4b3c-9d1e-000000000001".into(),
        upn: "admin@contoso.example".into(),
        name: "Contoso Admin".into(),
        tid: entra::TENANT_ID.into(),
    }
}

/// The EHR analyst named as approver.
pub(crate) fn approver() -> EntraUser {
    EntraUser {
        oid: "0f8e2a56-bbbb-4b3c-9d1e-000000000002".into(),
        upn: "analyst@contoso.example".into(),
        name: "Contoso Analyst".into(),
        tid: entra::TENANT_ID.into(),
    }
}

/// Someone else in the same organisation.
pub(crate) fn colleague() -> EntraUser {
    EntraUser {
        oid: "0f8e2a56-cccc-4b3c-9d1e-000000000003".into(),
        upn: "colleague@contoso.example".into(),
        name: "Contoso Colleague".into(),
        tid: entra::TENANT_ID.into(),
    }
}

/// The admin of the second organisation.
pub(crate) fn other_admin() -> EntraUser {
    EntraUser {
        oid: "0f8e2a56-dddd-4b3c-9d1e-000000000004".into(),
        upn: "admin@fabrikam.example".into(),
        name: "Fabrikam Admin".into(),
        tid: OTHER_TID.into(),
    }
}

/// The portal under test, with its fakes and database.
pub(crate) struct Portal {
    pub(crate) app: Router,
    /// The portal's store, for tests that record visits the way the launch service does.
    pub(crate) store: Arc<dyn Store>,
    /// With [`Portal::start_replicated`]: a second portal process's app on the same database
    /// (its own memory, caches and clients; only the database is shared).
    pub(crate) replica: Option<Router>,
    pub(crate) entra: FakeEntra,
    pub(crate) smart: SmartFake,
    pub(crate) fhir: FhirFake,
    pub(crate) ehr_server: MockServer,
    pub(crate) _entra_server: MockServer,
    pub(crate) _dir: TempDir,
}

/// How the portal authenticates at the fake EHR's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EhrAuth {
    /// A public client (the default): PKCE, no credential.
    Public,
    PrivateKeyJwt,
}

/// The key id of the portal's EHR client key (private_key_jwt).
pub(crate) const EHR_KEY_ID: &str = "portal-ehr-key-1";

impl Portal {
    pub(crate) async fn start() -> Self {
        Self::start_with(EhrAuth::Public).await
    }

    pub(crate) async fn start_with(ehr_auth: EhrAuth) -> Self {
        Self::start_configured(ehr_auth, "").await
    }

    /// A portal whose configuration file ends with `extra` (TOML tables, e.g. `[approval]`).
    pub(crate) async fn start_configured(ehr_auth: EhrAuth, extra: &str) -> Self {
        Self::start_full(ehr_auth, extra, false).await
    }

    /// Two portal replicas on one fresh PostgreSQL database ([`Self::app`] and [`Self::replica`]).
    pub(crate) async fn start_replicated() -> Self {
        Self::start_full(EhrAuth::Public, "", true).await
    }

    async fn start_full(ehr_auth: EhrAuth, extra: &str, replicated: bool) -> Self {
        let entra_server = MockServer::start().await;
        let fake_entra = FakeEntra::mount(&entra_server).await;
        // Multi-tenant metadata as `login.microsoftonline.com/organizations` publishes it: the
        // issuer is a template filled from each token's `tid`.
        let base = entra_server.uri();
        let tenant = entra::TENANT_ID;
        Mock::given(method("GET"))
            .and(path("/organizations/v2.0/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": format!("{base}/{{tenantid}}/v2.0"),
                "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
                "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
                "jwks_uri": format!("{base}/common/discovery/v2.0/keys"),
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
            })))
            .mount(&entra_server)
            .await;

        let ehr_server = MockServer::start().await;
        let expected = match ehr_auth {
            // The fake has no "public" mode: the tests check what the token request carried.
            EhrAuth::Public => ExpectedClientAuth::Any,
            EhrAuth::PrivateKeyJwt => ExpectedClientAuth::PrivateKeyJwt {
                client_id: EHR_CLIENT_ID.into(),
                public_key_pem: keys::CLIENT_RSA_PUB.into(),
                algorithm: jsonwebtoken::Algorithm::RS384,
                kid: EHR_KEY_ID.into(),
            },
        };
        let smart = SmartFake::mount(&ehr_server, expected).await;
        let fhir = FhirFake::mount_on(&ehr_server, EPIC_BASE_PATH).await;

        let dir = tempfile::tempdir().unwrap();
        let ehr_sign_in = match ehr_auth {
            EhrAuth::Public => String::new(),
            EhrAuth::PrivateKeyJwt => {
                let key_file = dir.path().join("portal-ehr-key.pem");
                std::fs::write(&key_file, keys::CLIENT_RSA).unwrap();
                format!(
                    "client_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"\nkey_id = \"{EHR_KEY_ID}\"",
                    key_file.display()
                )
            }
        };
        let config = PortalConfig::from_toml(&format!(
            r#"
            public_base_url = "{PUBLIC}"
            database = "{db}"
            launch_base_url = "https://visits.example.test"
            dev_mode = true
            reference_secret = "{REFERENCE_SECRET}"

            [entra]
            authority = "{base}/organizations"
            client_id = "{client_id}"
            client_secret = "{client_secret}"

            [ehr_sign_in]
            client_id = "{EHR_CLIENT_ID}"
            {ehr_sign_in}

            [[admins]]
            microsoft_tenant_id = "{tenant}"
            usernames = ["Admin@Contoso.example"]

            [[admins]]
            microsoft_tenant_id = "{OTHER_TID}"
            usernames = ["admin@fabrikam.example"]

            [[api_keys]]
            name = "ci"
            microsoft_tenant_id = "{tenant}"
            key = "{API_KEY}"
            audit = true

            [[api_keys]]
            name = "contoso-configurations"
            microsoft_tenant_id = "{tenant}"
            key = "{CONFIGURATIONS_ONLY_API_KEY}"

            [[api_keys]]
            name = "fabrikam-ci"
            microsoft_tenant_id = "{OTHER_TID}"
            key = "{OTHER_API_KEY}"
            audit = true

            {extra}
            "#,
            db = dir.path().join("portal.sqlite").display(),
            client_id = entra::CLIENT_ID,
            client_secret = entra::CLIENT_SECRET,
        ))
        .unwrap();
        let (store, replica): (Arc<dyn Store>, _) = if replicated {
            let server = visitbridge_testpg::shared().unwrap_or_else(|e| panic!("{e}"));
            let url = server.create_database().await.unwrap();
            let open = || async {
                Arc::new(
                    PostgresStore::connect(&url, &PostgresOptions::default())
                        .await
                        .unwrap(),
                )
            };
            let replica = AppState::new(config.clone(), open().await).unwrap();
            (open().await, Some(app(replica)))
        } else {
            let store = SqliteStore::open(dir.path().join("portal.sqlite"))
                .await
                .unwrap();
            (Arc::new(store), None)
        };
        let state = AppState::new(config, store.clone()).unwrap();
        Self {
            app: app(state),
            store,
            replica,
            entra: fake_entra,
            smart,
            fhir,
            ehr_server,
            _entra_server: entra_server,
            _dir: dir,
        }
    }

    /// The fake EHR's FHIR base URL.
    pub(crate) fn fhir_base(&self) -> String {
        self.fhir.base_url().to_owned()
    }

    pub(crate) fn browser(&self) -> Browser {
        Browser {
            app: self.app.clone(),
            cookies: BTreeMap::new(),
            set_cookies: Vec::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// A browser signed in as `user`.
    pub(crate) async fn signed_in(&self, user: EntraUser) -> Browser {
        let mut browser = self.browser();
        let page = browser.sign_in(&self.entra, user).await;
        assert_eq!(page.status, 303, "sign-in: {}", page.body);
        assert_eq!(page.location.as_deref(), Some("/configurations"));
        browser
    }

    /// The settings form of a configuration for the fake EHR, named approver `approver()`.
    pub(crate) fn form(&self) -> Vec<(&'static str, String)> {
        vec![
            ("fhir_base_url", self.fhir_base()),
            ("environment", "test".into()),
            ("approver", approver().upn),
            ("client_id", "vb-launch-client".into()),
            ("patient_client_id", String::new()),
            ("client_auth", "private_key_jwt".into()),
            ("secret_ref", String::new()),
            ("scope_style", "v2".into()),
            ("send_epic_client_id_header", "on".into()),
        ]
    }

    /// The settings form with some fields replaced.
    pub(crate) fn form_with(
        &self,
        changes: &[(&'static str, &str)],
    ) -> Vec<(&'static str, String)> {
        let mut form = self.form();
        for (name, value) in changes {
            match form.iter_mut().find(|(k, _)| k == name) {
                Some(field) => field.1 = (*value).to_owned(),
                None => form.push((name, (*value).to_owned())),
            }
        }
        form
    }

    /// The admin adds a configuration with `form` and submits it; returns its id.
    pub(crate) async fn submitted_with(
        &self,
        admin: &mut Browser,
        form: &[(&'static str, String)],
    ) -> String {
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = admin.post("/configurations", &fields).await;
        assert_eq!(page.status, 303, "{}", page.body);
        let location = page.location.unwrap();
        let id = location
            .strip_prefix("/configurations/")
            .and_then(|rest| rest.split('?').next())
            .unwrap()
            .to_owned();
        let page = admin
            .post(&format!("/configurations/{id}/submit"), &[])
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
        id
    }

    /// The admin adds (and checks) a configuration, then submits it; returns its id.
    pub(crate) async fn submitted_configuration(&self, admin: &mut Browser) -> String {
        let id = self.added_configuration(admin).await;
        let page = admin
            .post(&format!("/configurations/{id}/submit"), &[])
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
        id
    }

    /// The admin adds a configuration (a draft); returns its id.
    pub(crate) async fn added_configuration(&self, admin: &mut Browser) -> String {
        let form = self.form();
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = admin.post("/configurations", &fields).await;
        assert_eq!(page.status, 303, "{}", page.body);
        let location = page.location.unwrap();
        location
            .strip_prefix("/configurations/")
            .and_then(|rest| rest.split('?').next())
            .unwrap()
            .to_owned()
    }

    /// The approver signs in to the EHR through the fake (which signs them in at once); returns
    /// the portal's answer to the callback.
    pub(crate) async fn ehr_sign_in(&self, approver: &mut Browser, id: &str) -> Page {
        let page = approver
            .post(&format!("/configurations/{id}/ehr-sign-in"), &[])
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
        let authorize = page.location.unwrap();
        assert!(
            authorize.starts_with(&self.smart.authorize_url()),
            "{authorize}"
        );
        let callback = self.smart.browser_get(&authorize).await;
        approver.get_url(&callback).await
    }
}

/// A response as the browser saw it.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: String,
}

impl Page {
    /// The CSRF token of the page's forms.
    pub(crate) fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a csrf token") + marker.len();
        let end = start + self.body[start..].find('"').unwrap();
        self.body[start..end].to_owned()
    }

    /// The text of the element with `id`, tags removed, for "the error is next to the field".
    pub(crate) fn element(&self, id: &str) -> Option<String> {
        let marker = format!("id=\"{id}\"");
        let at = self.body.find(&marker)?;
        let open = self.body[..at].rfind('<')?;
        let tag: String = self.body[open + 1..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let content_start = at + self.body[at..].find('>')? + 1;
        let close = content_start + self.body[content_start..].find(&format!("</{tag}>"))?;
        let mut text = String::new();
        let mut in_tag = false;
        for c in self.body[content_start..close].chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        Some(unescape(&text))
    }
}

/// Unescapes the few entities askama writes, to compare page text with plain strings.
pub(crate) fn unescape(html: &str) -> String {
    html.replace("&#38;", "&")
        .replace("&amp;", "&")
        .replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#37;", "%")
}

/// A browser: a cookie jar over the in-process app, plain HTTP to the fakes.
pub(crate) struct Browser {
    app: Router,
    pub(crate) cookies: BTreeMap<String, String>,
    /// Every `Set-Cookie` the portal sent this browser.
    pub(crate) set_cookies: Vec<String>,
    http: reqwest::Client,
}

impl Browser {
    /// From now on this browser's requests go to `app` (another replica behind the balancer).
    pub(crate) fn switch_to(&mut self, app: &Router) {
        self.app = app.clone();
    }

    pub(crate) async fn request(&mut self, request: Request<Body>) -> Page {
        let mut request = request;
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request
                .headers_mut()
                .insert("cookie", cookie.parse().unwrap());
        }
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for value in headers.get_all("set-cookie") {
            let text = value.to_str().unwrap().to_owned();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
            self.set_cookies.push(text);
        }
        let body = axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .unwrap();
        Page {
            status,
            location: headers
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned()),
            content_type: headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned()),
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        self.request(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// GET of an absolute URL on the portal (a redirect back from a fake).
    pub(crate) async fn get_url(&mut self, url: &Url) -> Page {
        assert!(url.as_str().starts_with(PUBLIC), "{url}");
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        self.get(&path).await
    }

    /// POSTs a form with the session's CSRF token (read from the configurations page).
    pub(crate) async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get("/configurations").await.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// POSTs exactly these fields.
    pub(crate) async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.request(
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// Signs in with Microsoft as `user`, following the redirects through the fake.
    pub(crate) async fn sign_in(&mut self, entra: &FakeEntra, user: EntraUser) -> Page {
        entra.set_user(user);
        let start = self.get("/signin").await;
        assert_eq!(start.status, 303, "{}", start.body);
        let authorize = start.location.unwrap();
        let response = self.http.get(&authorize).send().await.unwrap();
        assert_eq!(response.status(), 302, "{}", response.text().await.unwrap());
        let callback = Url::parse(
            response
                .headers()
                .get("location")
                .unwrap()
                .to_str()
                .unwrap(),
        )
        .unwrap();
        self.get_url(&callback).await
    }
}
