//! SMART App Launch, client side: EHR and standalone launches for one client registration.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;
use visitbridge_http::{JwksCache, OAuthHttpClient, RetryPolicy, Secret};

use crate::{
    ApprovedIssuer, AuthorizationRequest, Callback, ClientAuth, EhrUser, IssuerPolicy,
    LaunchContext, LaunchKind, PendingLaunch, PendingLaunchStore, SmartDiscovery, SmartError,
    UserAccessToken,
    authorize::{Pkce, new_nonce, new_state},
    error::endpoint_label,
    idtoken::{self, Expectations},
    issuer::approve,
    jwks::issuer_keys,
    token::{Grant, TokenEndpoint},
};

/// How long a launch may wait for its callback by default (ten minutes).
pub const DEFAULT_LAUNCH_LIFETIME: Duration = Duration::from_secs(600);

/// One client registration at the EHR(s): who we are and what we ask for.
#[derive(Debug, Clone)]
pub struct SmartClientConfig {
    /// Our client id.
    pub client_id: String,
    /// Our redirect URI, exactly as registered.
    pub redirect_uri: Url,
    /// How we authenticate at the token endpoint.
    pub auth: ClientAuth,
    /// Scopes for EHR launches (must contain `launch`; `openid fhirUser` to learn the user).
    pub ehr_scope: String,
    /// Scopes for standalone launches (e.g. `launch/patient openid fhirUser patient/...`).
    pub standalone_scope: String,
    /// Headers sent on discovery and token requests (e.g. Epic's `Epic-Client-ID`).
    pub extra_headers: HeaderMap,
}

impl SmartClientConfig {
    /// A registration with the minimal scopes (`launch openid fhirUser` for EHR launches,
    /// `launch/patient openid fhirUser` standalone); add resource scopes with
    /// [`Self::with_scopes`].
    pub fn new(client_id: impl Into<String>, redirect_uri: Url, auth: ClientAuth) -> Self {
        Self {
            client_id: client_id.into(),
            redirect_uri,
            auth,
            ehr_scope: "launch openid fhirUser".to_owned(),
            standalone_scope: "launch/patient openid fhirUser".to_owned(),
            extra_headers: HeaderMap::new(),
        }
    }

    /// Sets the scope strings (space-separated) for EHR and standalone launches.
    pub fn with_scopes(mut self, ehr: impl Into<String>, standalone: impl Into<String>) -> Self {
        self.ehr_scope = ehr.into();
        self.standalone_scope = standalone.into();
        self
    }

    /// Sends `Epic-Client-ID: <client id>` on discovery and token requests, as Epic asks.
    pub fn with_epic_client_id_header(mut self) -> Result<Self, SmartError> {
        let value = HeaderValue::from_str(&self.client_id)
            .map_err(|_| SmartError::Config("the client id is not a valid header value".into()))?;
        self.extra_headers
            .insert(HeaderName::from_static("epic-client-id"), value);
        Ok(self)
    }
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_whitespace().any(|s| s == wanted)
}

/// The outcome of a successful callback.
#[derive(Debug, Clone)]
pub struct CompletedLaunch {
    /// The access token for the FHIR server (see [`Self::token_source`]).
    pub access_token: Secret,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// The scopes granted (may be fewer than asked).
    pub scope: Vec<String>,
    /// A refresh token, if the server issued one.
    pub refresh_token: Option<Secret>,
    /// The launch context (patient, encounter, Epic's appointment, ...).
    pub context: LaunchContext,
    /// The EHR user from the validated id_token; `Some` whenever `openid` was in the scope (the
    /// launch fails if the id_token is missing or invalid), `None` otherwise.
    pub ehr_user: Option<EhrUser>,
    /// The approved issuer; [`ApprovedIssuer::iss`] is the FHIR base to call.
    pub issuer: ApprovedIssuer,
    /// The pending launch the callback completed (kind, record context, start time).
    pub pending: PendingLaunch,
}

impl CompletedLaunch {
    /// The access token as a `TokenSource` for the FHIR client; it fails once expired.
    pub fn token_source(&self) -> UserAccessToken {
        UserAccessToken::new(self.access_token.clone(), self.expires_at)
    }
}

/// A SMART client for one registration: starts launches and completes them.
///
/// Every launch goes through the [`IssuerPolicy`] first: an `iss` that is not approved fails
/// with [`SmartError::IssuerNotApproved`] before any request is made, and everything after uses
/// the approved URL rather than the launch's text.
pub struct SmartClient {
    config: SmartClientConfig,
    http: reqwest::Client,
    oauth_http: OAuthHttpClient,
    discovery: SmartDiscovery,
    jwks: Arc<JwksCache>,
    issuers: Arc<dyn IssuerPolicy>,
    pending: Arc<dyn PendingLaunchStore>,
    launch_lifetime: Duration,
    retry: RetryPolicy,
    jwks_refetch: Option<Duration>,
}

impl std::fmt::Debug for SmartClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartClient")
            .field("client_id", &self.config.client_id)
            .field("redirect_uri", &self.config.redirect_uri.as_str())
            .field("auth", &self.config.auth.method_name())
            .finish_non_exhaustive()
    }
}

impl SmartClient {
    /// A client over `http` (build it with `visitbridge_http::build_client`), approving issuers
    /// with `issuers` and keeping pending launches in `pending`.
    pub fn new(
        config: SmartClientConfig,
        http: reqwest::Client,
        issuers: Arc<dyn IssuerPolicy>,
        pending: Arc<dyn PendingLaunchStore>,
    ) -> Self {
        let retry = RetryPolicy::default();
        Self {
            discovery: SmartDiscovery::new(http.clone(), config.extra_headers.clone()),
            jwks: Arc::new(issuer_keys(http.clone(), retry.clone(), None)),
            oauth_http: OAuthHttpClient(http.clone()),
            http,
            config,
            issuers,
            pending,
            launch_lifetime: DEFAULT_LAUNCH_LIFETIME,
            retry,
            jwks_refetch: None,
        }
    }

    fn rebuild_jwks(&mut self) {
        self.jwks = Arc::new(issuer_keys(
            self.http.clone(),
            self.retry.clone(),
            self.jwks_refetch,
        ));
    }

    /// Uses `discovery` (to share its cache, or to set its TTL or metadata fallback).
    pub fn with_discovery(mut self, discovery: SmartDiscovery) -> Self {
        self.discovery = discovery;
        self
    }

    /// Retries for token and JWKS requests (discovery has its own, see [`SmartDiscovery`]).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self.rebuild_jwks();
        self
    }

    /// How long a launch may wait for its callback (default ten minutes).
    pub fn with_launch_lifetime(mut self, lifetime: Duration) -> Self {
        self.launch_lifetime = lifetime;
        self
    }

    /// The least time between two refetches of an issuer's JWKS for an unknown `kid` (default
    /// one minute).
    pub fn with_jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.jwks_refetch = Some(interval);
        self.rebuild_jwks();
        self
    }

    /// The registration.
    pub fn config(&self) -> &SmartClientConfig {
        &self.config
    }

    /// The discovery cache.
    pub fn discovery(&self) -> &SmartDiscovery {
        &self.discovery
    }

    /// Starts an EHR launch from the launch URL's `iss` and `launch`; `record_context` keeps the
    /// launch URL's other parameters (e.g. Epic's `sessionId`) for the callback.
    pub async fn begin_ehr_launch(
        &self,
        iss: &str,
        launch: &str,
        record_context: BTreeMap<String, String>,
    ) -> Result<AuthorizationRequest, SmartError> {
        self.begin(iss, LaunchKind::Ehr, Some(launch), record_context)
            .await
    }

    /// Starts a standalone launch at `iss` (portal approver, links outside the EHR).
    pub async fn begin_standalone_launch(
        &self,
        iss: &str,
        record_context: BTreeMap<String, String>,
    ) -> Result<AuthorizationRequest, SmartError> {
        self.begin(iss, LaunchKind::Standalone, None, record_context)
            .await
    }

    /// Starts an EHR launch like [`Self::begin_ehr_launch`] but keeps nothing: the caller keeps
    /// the returned [`PendingLaunch`] (e.g. sealed in a cookie of the browser that launched) and
    /// hands it to [`Self::complete_pending`] when the callback with the request's `state`
    /// comes. Keeping it single-use and bound to that `state` is then the caller's job.
    pub async fn prepare_ehr_launch(
        &self,
        iss: &str,
        launch: &str,
        record_context: BTreeMap<String, String>,
    ) -> Result<(AuthorizationRequest, PendingLaunch), SmartError> {
        self.prepare(iss, LaunchKind::Ehr, Some(launch), record_context)
            .await
    }

    async fn begin(
        &self,
        iss: &str,
        kind: LaunchKind,
        launch: Option<&str>,
        record_context: BTreeMap<String, String>,
    ) -> Result<AuthorizationRequest, SmartError> {
        let (request, pending) = self.prepare(iss, kind, launch, record_context).await?;
        self.pending
            .put(request.state().expose(), pending)
            .await
            .map_err(SmartError::Store)?;
        Ok(request)
    }

    async fn prepare(
        &self,
        iss: &str,
        kind: LaunchKind,
        launch: Option<&str>,
        record_context: BTreeMap<String, String>,
    ) -> Result<(AuthorizationRequest, PendingLaunch), SmartError> {
        let approved = approve(self.issuers.as_ref(), iss).await?;
        let config = self.discovery.get(&approved).await?;
        let discovery_error = |reason: &str| SmartError::Discovery {
            issuer: endpoint_label(&approved.iss),
            reason: reason.to_owned(),
        };
        let endpoint = config
            .authorization_endpoint
            .clone()
            .ok_or_else(|| discovery_error("it has no authorization_endpoint"))?;
        let scope = match kind {
            LaunchKind::Ehr => &self.config.ehr_scope,
            LaunchKind::Standalone => &self.config.standalone_scope,
        };
        let openid = has_scope(scope, "openid");
        if openid && (config.issuer.is_none() || config.jwks_uri.is_none()) {
            return Err(discovery_error(
                "it publishes no issuer and jwks_uri, so its id_token could not be validated",
            ));
        }
        let pkce = Pkce::new()?;
        let state = new_state()?;
        let nonce = if openid { Some(new_nonce()?) } else { None };

        let mut params: Vec<(String, String)> = vec![
            ("response_type".into(), "code".into()),
            ("client_id".into(), self.config.client_id.clone()),
            ("redirect_uri".into(), self.config.redirect_uri.to_string()),
        ];
        if let Some(launch) = launch {
            params.push(("launch".into(), launch.to_owned()));
        }
        params.extend([
            ("scope".into(), scope.clone()),
            ("state".into(), state.expose().to_owned()),
            ("aud".into(), approved.iss.to_string()),
            ("code_challenge".into(), pkce.challenge.clone()),
            ("code_challenge_method".into(), "S256".into()),
        ]);
        if let Some(nonce) = &nonce {
            params.push(("nonce".into(), nonce.clone()));
        }

        let pending = PendingLaunch::new(
            approved.iss.clone(),
            approved.configuration_id.clone(),
            self.config.client_id.clone(),
            kind,
            record_context,
            pkce.verifier,
            nonce,
        );
        Ok((
            AuthorizationRequest::new(
                endpoint,
                params,
                state,
                config.has_capability("authorize-post"),
            ),
            pending,
        ))
    }

    /// Completes a launch from the callback's query string (see [`Callback::from_query`]).
    ///
    /// An OAuth error in the callback also discards the pending launch it names. A query that
    /// repeats a parameter names no launch unambiguously, so it discards none: a forged callback
    /// does not burn a genuine launch.
    pub async fn complete_callback(&self, query: &str) -> Result<CompletedLaunch, SmartError> {
        match Callback::from_query(query) {
            Ok(callback) => self.complete(&callback.code, &callback.state).await,
            Err(e @ SmartError::MalformedCallback { .. }) => Err(e),
            Err(e) => {
                let state = url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.into_owned());
                if let Some(state) = state {
                    let _ = self.pending.take(&state).await;
                }
                Err(e)
            }
        }
    }

    /// Completes a launch: takes the pending launch for `state` (once), exchanges `code` with
    /// its PKCE verifier, and validates the id_token.
    pub async fn complete(
        &self,
        code: &Secret,
        state: &str,
    ) -> Result<CompletedLaunch, SmartError> {
        let pending = self
            .pending
            .take(state)
            .await
            .map_err(SmartError::Store)?
            .ok_or(SmartError::StateUnknownOrUsed)?;
        self.complete_pending(pending, code).await
    }

    /// Completes a launch the caller kept (see [`Self::prepare_ehr_launch`]): the caller has
    /// already matched it to the callback's `state` and made sure it is used once. Checks that it
    /// is this client's and not expired, exchanges `code` with its PKCE verifier, and validates
    /// the id_token.
    pub async fn complete_pending(
        &self,
        pending: PendingLaunch,
        code: &Secret,
    ) -> Result<CompletedLaunch, SmartError> {
        if pending.client_id != self.config.client_id {
            return Err(SmartError::StateUnknownOrUsed);
        }
        if pending.is_expired(self.launch_lifetime) {
            return Err(SmartError::LaunchExpired);
        }
        // The approval may have been withdrawn while the user was at the EHR's login page.
        let approved = approve(self.issuers.as_ref(), pending.issuer.as_str()).await?;
        let config = self.discovery.get(&approved).await?;
        let token = TokenEndpoint {
            http: &self.oauth_http,
            url: &config.token_endpoint,
            client_id: &self.config.client_id,
            auth: &self.config.auth,
            headers: &self.config.extra_headers,
            retry: &self.retry,
        }
        .request(Grant::AuthorizationCode {
            code,
            redirect_uri: &self.config.redirect_uri,
            verifier: pending.code_verifier(),
        })
        .await?;

        let ehr_user = match pending.nonce() {
            Some(nonce) => {
                let id_token = token.id_token.as_ref().ok_or_else(|| {
                    SmartError::IdToken(
                        "the token response has none although openid was asked".into(),
                    )
                })?;
                let (Some(issuer), Some(jwks_uri)) = (&config.issuer, &config.jwks_uri) else {
                    return Err(SmartError::IdToken(
                        "the server publishes no issuer and jwks_uri to check it with".into(),
                    ));
                };
                let claims = idtoken::validate(
                    &self.jwks,
                    id_token.expose(),
                    &Expectations {
                        issuer,
                        audience: &self.config.client_id,
                        nonce: Some(nonce),
                        jwks_uri,
                    },
                )
                .await?;
                Some(EhrUser {
                    issuer: claims.issuer,
                    subject: claims.subject,
                    fhir_user: claims.fhir_user,
                })
            }
            // Without a nonce of ours nothing in an id_token could be trusted: ignore it.
            None => None,
        };
        Ok(CompletedLaunch {
            access_token: token.access_token,
            expires_at: token.expires_at,
            scope: token.scope,
            refresh_token: token.refresh_token,
            context: LaunchContext::from_fields(token.extra),
            ehr_user,
            issuer: approved,
            pending,
        })
    }
}
