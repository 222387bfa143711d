//! SMART App Launch 2.x, client side, and the OpenID Connect pieces it is made of.
//!
//! VisitBridge is a confidential SMART app: the EHR launches it (or a user starts a standalone
//! launch), it sends the browser to the EHR's authorization server, exchanges the code for a
//! token with launch context, and learns who the EHR user is from a validated id_token. This
//! crate does that, plus backend-services tokens for write-back and the generic OpenID Connect
//! sign-in the portal uses with Microsoft Entra ID.
//!
//! # Design choices
//!
//! - **Allowlist first.** [`SmartClient::begin_ehr_launch`] asks an [`IssuerPolicy`] about the
//!   launch's `iss` before anything else; an unapproved issuer fails with
//!   [`SmartError::IssuerNotApproved`] and no request is made (no SSRF, no open redirect). After
//!   approval, only the *approved* URL ([`ApprovedIssuer::iss`]) is used. Issuers compare as
//!   [`NormalizedIssuer`]s: exact scheme, host, port and path, never a prefix.
//! - **Discovery** ([`SmartDiscovery`]) reads `{iss}/.well-known/smart-configuration`, falls back
//!   to the `oauth-uris` extension of `{iss}/metadata`, caches per issuer for an hour, and refuses
//!   a server without PKCE `S256`. A metadata-only server cannot advertise PKCE, so it is refused
//!   unless [`SmartDiscovery::with_metadata_fallback_assumes_s256`] says otherwise.
//! - **Pending launches** ([`PendingLaunch`], [`PendingLaunchStore`]) map a 256-bit random
//!   `state` to the PKCE verifier, nonce, issuer and record context. `take` is single use;
//!   expiry (ten minutes) is checked by [`SmartClient::complete`] from `created_at`, so any store
//!   is safe. The verifier is in the serialized form (a store keeps opaque JSON) but not in
//!   `Debug`.
//! - **One OAuth implementation.** PKCE, state, nonce, the authorization request (GET URL and
//!   POST form: Epic prefers POST), the token request (through the `oauth2` crate over the shared
//!   reqwest client, with `client_secret_basic`, `client_secret_post` or `private_key_jwt`), and
//!   id_token validation (`jsonwebtoken` against the issuer's JWKS, cached by `kid` and refetched
//!   once on rotation, in `visitbridge_http::JwksCache`, which the Graph webhook shares) serve both SMART launches and [`OidcProvider`] sign-ins.
//! - **Never trust an unvalidated id_token.** The EHR user ([`EhrUser`]) comes only from an
//!   id_token whose signature, `iss`, `aud`, `exp` and `nonce` were checked.
//! - **Retries.** Discovery and JWKS are idempotent GETs retried on 429/5xx/timeouts. A code
//!   exchange is retried only when the server said it did not process it (429, or 503 with
//!   `Retry-After`), since a code is single use; client-credentials requests also retry on 5xx.
//!   Every try gets a fresh client assertion.
//! - **Secrets stay secret.** Tokens, codes, verifiers and client secrets are
//!   [`visitbridge_http::Secret`]s; no error message contains one.
//!
//! # Example
//!
//! ```no_run
//! use std::{collections::BTreeMap, sync::Arc};
//! use url::Url;
//! use visitbridge_http::{HttpConfig, Secret, build_client};
//! use visitbridge_smart::{
//!     ApprovedIssuer, ClientAuth, InMemoryPendingLaunches, SmartClient, SmartClientConfig,
//!     StaticIssuers,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let fhir_base = Url::parse("https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4")?;
//! let issuers = StaticIssuers::new([ApprovedIssuer::new(fhir_base, "epic-sandbox")]);
//! let config = SmartClientConfig::new(
//!     std::env::var("EPIC_CLIENT_ID")?,
//!     Url::parse("https://visits.example.org/launch/callback")?,
//!     ClientAuth::SecretBasic(Secret::new(std::env::var("EPIC_CLIENT_SECRET")?)),
//! )
//! .with_scopes(
//!     "launch openid fhirUser user/Appointment.read user/Encounter.read",
//!     "launch/patient openid fhirUser patient/Appointment.read",
//! )
//! .with_epic_client_id_header()?;
//! let client = SmartClient::new(
//!     config,
//!     build_client(&HttpConfig::default())?,
//!     Arc::new(issuers),
//!     Arc::new(InMemoryPendingLaunches::new()),
//! );
//!
//! // GET /launch?iss=...&launch=...&sessionId=...
//! let request = client
//!     .begin_ehr_launch(
//!         "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4",
//!         "opaque-launch-token",
//!         BTreeMap::from([("sessionId".to_owned(), "csn".to_owned())]),
//!     )
//!     .await?;
//! // Redirect to request.url(), or render an auto-submitting form posting
//! // request.form_fields() to request.form_action() when request.prefers_post().
//!
//! // GET /launch/callback?code=...&state=...
//! let done = client.complete_callback("code=abc&state=xyz").await?;
//! let user = done.ehr_user.as_ref().map(|u| u.id());
//! let appointment = done.context.appointment.as_deref();
//! # let _ = (user, appointment);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod authorize;
mod backend;
mod context;
mod discovery;
mod error;
mod idtoken;
mod issuer;
mod jwks;
mod launch;
mod metadata;
mod oidc;
mod pending;
mod token;

pub use authorize::{AuthorizationRequest, Callback};
pub use backend::{BackendServicesClient, UserAccessToken};
pub use context::{EhrUser, FhirContextItem, LaunchContext};
pub use discovery::{DiscoverySource, SmartConfiguration, SmartConfigurationOffer, SmartDiscovery};
pub use error::SmartError;
pub use idtoken::IdTokenClaims;
pub use issuer::{ApprovedIssuer, IssuerPolicy, NormalizedIssuer, StaticIssuers};
pub use jwks::Jwks;
pub use launch::{CompletedLaunch, DEFAULT_LAUNCH_LIFETIME, SmartClient, SmartClientConfig};
pub use oidc::{OidcClientConfig, OidcMetadata, OidcProvider, PendingSignIn, SignedIn};
pub use pending::{
    InMemoryPendingLaunches, LaunchKind, PendingLaunch, PendingLaunchStore, StoreError,
};
pub use token::ClientAuth;
