//! The portal's configuration: a TOML file, overridden by command-line flags and environment
//! variables, checked once at start-up.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;
use serde::Deserialize;
use url::Url;
use visitbridge_approval::{ApprovalPolicy, LaunchServiceUrls, UrlPolicy, Username};
pub use visitbridge_http::HttpTimeouts;
use visitbridge_http::{Secret, is_loopback_url};
use visitbridge_store::{DatabaseLocation, MicrosoftTenantId, PostgresOptions};
pub use visitbridge_web::{ServerLimits, config::ConfigError};

/// The `User-Agent` of the portal's outbound calls.
pub(crate) const USER_AGENT: &str = concat!("VisitBridge-Portal/", env!("CARGO_PKG_VERSION"));

/// Everything the portal needs to run. Read from TOML ([`PortalConfig::from_toml`]), then
/// [`PortalConfig::validate`]d; [`Cli::load`] does both and applies flag/environment overrides.
///
/// ```toml
/// listen = "127.0.0.1:8090"
/// public_base_url = "https://portal.visits.example.org"
/// database = "/var/lib/visitbridge/portal.sqlite"
/// launch_base_url = "https://visits.example.org"
///
/// [entra]
/// authority = "https://login.microsoftonline.com/organizations"
/// client_id = "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"
/// # client_secret from VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET
///
/// [ehr_sign_in]
/// client_id = "visitbridge-portal"
/// # client_auth = "public" (the default: PKCE only, no credential), or "private_key_jwt" with
/// # private_key_file and key_id; never a client secret (see EhrClientAuthMethod)
///
/// [[admins]]
/// microsoft_tenant_id = "0b7c1e0f-3a57-4c4e-9d0a-5f4f6c2b9e11"
/// usernames = ["it.admin@contoso.org"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// Address to listen on (port 0 picks a free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The portal's public address, as browsers reach it; the sign-in redirect URIs are under it
    /// (`/signin/callback`, `/approvals/ehr-callback`).
    pub public_base_url: Url,
    /// Mark session cookies `Secure` (and name them `__Host-…`). Only a portal on a loopback
    /// address (local development over plain http) may turn this off.
    #[serde(default = "default_true")]
    pub cookie_secure: bool,
    /// The database, shared with the launch service: a SQLite file (a path, or
    /// `sqlite:///path`), or PostgreSQL (`postgres://user@host/db?sslmode=require`) for several
    /// replicas on one database.
    /// Required: a portal that silently made a file of its own while the launch service is on
    /// PostgreSQL would approve configurations no launch ever sees.
    pub database: DatabaseLocation,
    /// The most PostgreSQL connections this process keeps (ignored for SQLite).
    #[serde(default = "default_database_max_connections")]
    pub database_max_connections: usize,
    /// The launch service's public base URL, from which integration records are made.
    pub launch_base_url: String,
    /// Development mode: FHIR base URLs on loopback addresses (local fakes) are accepted.
    #[serde(default)]
    pub dev_mode: bool,
    /// Sign-in with Microsoft.
    pub entra: EntraConfig,
    /// The client registration used for the approver's EHR sign-in.
    pub ehr_sign_in: EhrSignInConfig,
    /// Who is an admin, per Microsoft (Entra) tenant.
    #[serde(default)]
    pub admins: Vec<TenantAdmins>,
    /// Keys of the JSON API, each acting as an admin of one tenant (also for the auditor's FHIR
    /// endpoint, `/fhir`).
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// The launch service's `reference_secret` (the same value; never its deployment secret):
    /// the store keeps a visit's patient and appointment ids only as keyed hashes under it, so
    /// the auditor's FHIR search by `entity` or `patient` needs it. Without it those searches are
    /// refused; searches by date still work. Better from `VISITBRIDGE_PORTAL_REFERENCE_SECRET`
    /// than in the file.
    #[serde(default)]
    pub reference_secret: Secret,
    /// Timeouts of outbound calls (Entra, the EHR's SMART and FHIR endpoints).
    #[serde(default)]
    pub http: HttpTimeouts,
    /// Limits of inbound connections: header read timeout, connections per client IP.
    #[serde(default)]
    pub server: ServerLimits,
    /// Who may approve.
    #[serde(default)]
    pub approval: ApprovalConfig,
}

/// `[approval]`: who may approve. Whatever the setting, the approver must be the configuration's
/// named approver and sign in to the EHR as a staff user.
///
/// ```toml
/// [approval]
/// require_distinct_approver_production = true   # the default
/// require_distinct_approver_test = false         # the default
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalConfig {
    /// Refuse approval of a production configuration by the admin who last changed (created,
    /// edited or submitted) it, so two people stand behind every production change.
    pub require_distinct_approver_production: bool,
    /// The same for test configurations.
    pub require_distinct_approver_test: bool,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        let policy = ApprovalPolicy::DEFAULT;
        Self {
            require_distinct_approver_production: policy.require_distinct_approver_production,
            require_distinct_approver_test: policy.require_distinct_approver_test,
        }
    }
}

impl ApprovalConfig {
    /// The approval crate's policy with these settings.
    pub fn policy(&self) -> ApprovalPolicy {
        ApprovalPolicy {
            require_distinct_approver_production: self.require_distinct_approver_production,
            require_distinct_approver_test: self.require_distinct_approver_test,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8090))
}

fn default_true() -> bool {
    true
}

/// Sign-in with Microsoft (OpenID Connect against Entra ID).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraConfig {
    /// The login base URL and tenant, e.g. `https://login.microsoftonline.com/organizations`
    /// (any work account) or `https://login.microsoftonline.com/{tenant id}` (one organisation).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// The portal's app registration (client id).
    pub client_id: String,
    /// Its client secret; better set through `VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET`.
    #[serde(default)]
    pub client_secret: Secret,
}

fn default_authority() -> String {
    "https://login.microsoftonline.com/organizations".to_owned()
}

impl EntraConfig {
    /// The OpenID issuer under the authority: `{authority}/v2.0`.
    pub fn issuer(&self) -> Result<Url, ConfigError> {
        let base = self.authority.trim().trim_end_matches('/');
        let issuer = Url::parse(&format!("{base}/v2.0"))
            .map_err(|e| ConfigError::invalid(format!("entra.authority: {e}")))?;
        if issuer.scheme() != "https" && !is_loopback_url(&issuer) {
            return Err(ConfigError::invalid("entra.authority must be an https URL"));
        }
        Ok(issuer)
    }
}

/// How the portal authenticates at the EHR's token endpoint for the approver's sign-in.
///
/// The sign-in runs against a FHIR base URL that is not yet approved: an admin typed it, and its
/// SMART discovery names the token endpoint. A client secret sent there goes to whichever server
/// the admin chose, so the `client_secret_*` methods are parsed only to be refused by
/// [`PortalConfig::validate`] with an explanation. A public client loses nothing here (the
/// sign-in only proves the URL is a working EHR endpoint); a `private_key_jwt` assertion names
/// the token URL it is sent to and expires within minutes, so it cannot be replayed elsewhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EhrClientAuthMethod {
    /// A public client (`none`): only the client id, protected by PKCE.
    #[default]
    Public,
    /// `private_key_jwt` with the key in `private_key_file`.
    PrivateKeyJwt,
    /// `client_secret_basic`: refused (the secret would go to an unapproved token endpoint).
    ClientSecretBasic,
    /// `client_secret_post`: refused (the secret would go to an unapproved token endpoint).
    ClientSecretPost,
}

/// Why the approver's EHR sign-in never uses a client secret (shared by the refusals).
const NO_SECRET_WHY: &str = "the approver's EHR sign-in runs against a FHIR base URL before it \
     is approved, and that URL's SMART discovery names the token endpoint, so a client secret \
     would be sent to whatever server an admin entered; register the portal's EHR sign-in app \
     as a public client and use client_auth = \"public\" (the default, PKCE only), or use \
     client_auth = \"private_key_jwt\" (each assertion names its token URL and expires in \
     minutes)";

/// The refusal of a `client_secret_*` method for the EHR sign-in.
pub(crate) fn secret_auth_refused(method: &str) -> ConfigError {
    ConfigError::invalid(format!(
        "ehr_sign_in.client_auth = \"{method}\" is not allowed: {NO_SECRET_WHY}"
    ))
}

/// The SMART client registration of the portal at the EHR, for the approver's standalone launch
/// (scopes `openid fhirUser`: it only proves that the URL is a working EHR endpoint).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EhrSignInConfig {
    /// The client id registered at the EHR, with redirect URI `{public_base_url}/approvals/ehr-callback`.
    pub client_id: String,
    /// Client authentication at the token endpoint: `public` (default) or `private_key_jwt`.
    #[serde(default)]
    pub client_auth: EhrClientAuthMethod,
    /// Not allowed: read only so that a file (or `VISITBRIDGE_PORTAL_EHR_CLIENT_SECRET`) still
    /// carrying one is refused with the reason, instead of being silently ignored.
    #[serde(default)]
    pub client_secret: Secret,
    /// For `private_key_jwt`: a PKCS#8 PEM file with an RSA (RS384) or P-384 (ES384) key.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// For `private_key_jwt`: the key id published in our JWKS.
    #[serde(default)]
    pub key_id: Option<String>,
}

/// The admins of one organisation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantAdmins {
    /// The organisation's Entra tenant id (the `tid` of its users' sign-ins).
    pub microsoft_tenant_id: MicrosoftTenantId,
    /// Microsoft usernames (UPNs) with the admin role in that organisation.
    pub usernames: Vec<Username>,
}

/// A key of the JSON API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for the key, recorded as the actor (`api-key:{name}`) in configuration history.
    pub name: String,
    /// The Entra tenant id of the organisation the key administers.
    pub microsoft_tenant_id: MicrosoftTenantId,
    /// The key itself (at least 32 characters), sent as `Authorization: Bearer <key>`.
    pub key: Secret,
    /// The key may also read the AuditEvents of the auditor's FHIR endpoint (`/fhir`), which
    /// name patients by id. Off unless given.
    #[serde(default)]
    pub audit: bool,
}

impl PortalConfig {
    /// Parses a TOML document (not yet validated).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        visitbridge_web::config::from_toml(text)
    }

    /// Checks the values that cannot be checked by their types alone.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.reference_secret.is_empty() && self.reference_secret.expose().len() < 32 {
            return Err(ConfigError::invalid(
                "the reference secret must be at least 32 characters (the launch service's)",
            ));
        }
        let base = &self.public_base_url;
        if base.host().is_none()
            || base.query().is_some()
            || base.fragment().is_some()
            || !base.username().is_empty()
        {
            return Err(ConfigError::invalid(
                "public_base_url must be an http(s) address without query, fragment or credentials",
            ));
        }
        match base.scheme() {
            "https" => {}
            "http" if is_loopback_url(base) => {}
            _ => {
                return Err(ConfigError::invalid(
                    "public_base_url must use https (plain http only on a loopback address)",
                ));
            }
        }
        if !self.cookie_secure && !is_loopback_url(base) {
            return Err(ConfigError::invalid(
                "cookie_secure = false is only allowed for development on a loopback public_base_url",
            ));
        }
        LaunchServiceUrls::new(&self.launch_base_url)
            .map_err(|e| ConfigError::invalid(format!("launch_base_url: {e}")))?;
        self.entra.issuer()?;
        if self.entra.client_id.trim().is_empty() {
            return Err(ConfigError::invalid("entra.client_id is required"));
        }
        if self.entra.client_secret.is_empty() {
            return Err(ConfigError::invalid(
                "the Entra client secret is missing: set VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET",
            ));
        }
        if self.ehr_sign_in.client_id.trim().is_empty() {
            return Err(ConfigError::invalid("ehr_sign_in.client_id is required"));
        }
        let ehr = &self.ehr_sign_in;
        match ehr.client_auth {
            EhrClientAuthMethod::ClientSecretBasic => {
                return Err(secret_auth_refused("client_secret_basic"));
            }
            EhrClientAuthMethod::ClientSecretPost => {
                return Err(secret_auth_refused("client_secret_post"));
            }
            EhrClientAuthMethod::PrivateKeyJwt
                if ehr.private_key_file.is_none() || ehr.key_id.is_none() =>
            {
                return Err(ConfigError::invalid(
                    "ehr_sign_in.client_auth = \"private_key_jwt\" needs private_key_file and key_id",
                ));
            }
            EhrClientAuthMethod::PrivateKeyJwt => {}
            EhrClientAuthMethod::Public
                if ehr.private_key_file.is_some() || ehr.key_id.is_some() =>
            {
                return Err(ConfigError::invalid(
                    "ehr_sign_in.private_key_file and key_id are used only with client_auth = \"private_key_jwt\": set it, or remove them for a public client",
                ));
            }
            EhrClientAuthMethod::Public => {}
        }
        if !ehr.client_secret.is_empty() {
            return Err(ConfigError::invalid(format!(
                "ehr_sign_in.client_secret (or VISITBRIDGE_PORTAL_EHR_CLIENT_SECRET) is set, but the EHR sign-in never uses a client secret: remove it; {NO_SECRET_WHY}"
            )));
        }
        for key in &self.api_keys {
            if key.name.trim().is_empty() || key.name.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    "api_keys: every key needs a name without spaces",
                ));
            }
            if key.key.expose().len() < 32 {
                return Err(ConfigError::invalid(format!(
                    "api_keys: the key named {} is shorter than 32 characters",
                    key.name
                )));
            }
        }
        Ok(())
    }

    /// FHIR base URL rules: loopback only in development mode.
    pub fn url_policy(&self) -> UrlPolicy {
        if self.dev_mode {
            UrlPolicy::DEVELOPMENT
        } else {
            UrlPolicy::STRICT
        }
    }

    /// A URL under the public base, e.g. `/signin/callback`.
    pub fn public_url(&self, path: &str) -> Result<Url, ConfigError> {
        let base = self.public_base_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path}"))
            .map_err(|e| ConfigError::invalid(format!("public_base_url: {e}")))
    }

    /// Whether `username` is an admin of the organisation signing in with `tenant`.
    pub fn is_admin(&self, tenant: &MicrosoftTenantId, username: &Username) -> bool {
        self.admins
            .iter()
            .filter(|a| a.microsoft_tenant_id == *tenant)
            .any(|a| a.usernames.iter().any(|u| u == username))
    }
}

/// The command line (each flag also read from its environment variable), over the TOML file.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "visitbridge-portal",
    version,
    about = "The VisitBridge configuration portal: admins register FHIR base URLs, approvers sign in to the EHR and approve them",
    after_help = "Secrets belong in the environment (VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET), not in the file or on the command line. The EHR sign-in uses no client secret: a public client or private_key_jwt."
)]
pub struct Cli {
    /// The TOML configuration file.
    #[arg(long, short = 'c', env = "VISITBRIDGE_PORTAL_CONFIG")]
    pub config: PathBuf,
    /// Address to listen on, over the file's `listen` (port 0 picks a free port).
    #[arg(long, env = "VISITBRIDGE_PORTAL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The portal's public base URL, over the file's `public_base_url`.
    #[arg(long, env = "VISITBRIDGE_PORTAL_PUBLIC_BASE_URL")]
    pub public_base_url: Option<Url>,
    /// The database (a SQLite path or a postgres:// URL), over the file's `database`.
    #[arg(long, env = "VISITBRIDGE_PORTAL_DATABASE", hide_env_values = true)]
    pub database: Option<DatabaseLocation>,
    /// The Entra client secret, over the file's `entra.client_secret`.
    #[arg(
        long,
        env = "VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub entra_client_secret: Option<String>,
    /// The launch service's reference secret, over the file's `reference_secret`.
    #[arg(
        long,
        env = "VISITBRIDGE_PORTAL_REFERENCE_SECRET",
        hide_env_values = true
    )]
    pub reference_secret: Option<String>,
    /// Not allowed (the EHR sign-in uses no client secret): read only so that a deployment still
    /// setting it is refused with the reason at start-up.
    #[arg(
        long,
        env = "VISITBRIDGE_PORTAL_EHR_CLIENT_SECRET",
        hide_env_values = true,
        hide = true
    )]
    pub ehr_client_secret: Option<String>,
    /// Development mode: accept loopback FHIR base URLs (local fakes).
    #[arg(long, env = "VISITBRIDGE_PORTAL_DEV_MODE")]
    pub dev_mode: bool,
    /// What to do; without one, serve.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A command other than serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Brings the database schema up to date and exits (for operators who migrate before rolling
    /// out; the portal also migrates at start-up, under a lock, so replicas migrate once).
    Migrate,
}

impl PortalConfig {
    /// The PostgreSQL pool settings from this configuration (unused for SQLite).
    pub fn database_options(&self) -> PostgresOptions {
        PostgresOptions {
            max_connections: self.database_max_connections,
            ..PostgresOptions::default()
        }
    }
}

fn default_database_max_connections() -> usize {
    PostgresOptions::default().max_connections
}

impl Cli {
    /// Reads the file, applies the overrides and validates the result.
    pub fn load(&self) -> Result<PortalConfig, ConfigError> {
        let mut config: PortalConfig = visitbridge_web::config::read_toml(&self.config)?;
        self.apply(&mut config);
        config.validate()?;
        Ok(config)
    }

    /// Applies the flags and environment variables that were given.
    pub fn apply(&self, config: &mut PortalConfig) {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(url) = &self.public_base_url {
            config.public_base_url = url.clone();
        }
        if let Some(database) = &self.database {
            config.database = database.clone();
        }
        if let Some(secret) = &self.entra_client_secret {
            config.entra.client_secret = Secret::new(secret.clone());
        }
        if let Some(secret) = &self.ehr_client_secret {
            config.ehr_sign_in.client_secret = Secret::new(secret.clone());
        }
        if let Some(secret) = &self.reference_secret {
            config.reference_secret = Secret::new(secret.clone());
        }
        if self.dev_mode {
            config.dev_mode = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        public_base_url = "https://portal.example.org"
        database = "/tmp/portal.sqlite"
        launch_base_url = "https://visits.example.org"
        [entra]
        client_id = "app"
        client_secret = "s"
        [ehr_sign_in]
        client_id = "ehr-app"
    "#;

    fn parse(extra: &str) -> Result<PortalConfig, ConfigError> {
        let config = PortalConfig::from_toml(&format!("{extra}\n{MINIMAL}"))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn minimal_file_gets_safe_defaults() {
        let config = parse("").unwrap();
        assert!(config.cookie_secure);
        assert!(!config.dev_mode);
        assert_eq!(
            config.entra.issuer().unwrap().as_str(),
            "https://login.microsoftonline.com/organizations/v2.0"
        );
        assert_eq!(config.url_policy(), UrlPolicy::STRICT);
    }

    #[test]
    fn a_distinct_approver_is_required_for_production_only_by_default() {
        let policy = parse("").unwrap().approval.policy();
        assert!(policy.require_distinct_approver_production);
        assert!(!policy.require_distinct_approver_test);
        let config = PortalConfig::from_toml(&format!(
            "{MINIMAL}\n[approval]\nrequire_distinct_approver_production = false\nrequire_distinct_approver_test = true"
        ))
        .unwrap();
        assert_eq!(
            config.approval.policy(),
            ApprovalPolicy {
                require_distinct_approver_production: false,
                require_distinct_approver_test: true,
            }
        );
        let err = PortalConfig::from_toml(&format!(
            "{MINIMAL}\n[approval]\nrequire_distinct_approver = true"
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("require_distinct_approver"),
            "{err}"
        );
    }

    #[test]
    fn insecure_cookies_only_on_loopback() {
        let err = parse("cookie_secure = false").unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let text = MINIMAL.replace("https://portal.example.org", "http://127.0.0.1:8090");
        let config = PortalConfig::from_toml(&format!("cookie_secure = false\n{text}")).unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let text = MINIMAL.replace("https://portal.example.org", "http://portal.example.org");
        let err = PortalConfig::from_toml(&text)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }

    #[test]
    fn unknown_keys_and_short_api_keys_are_refused() {
        let err = parse("colour = \"blue\"").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let text = format!(
            "{MINIMAL}\n[[api_keys]]\nname = \"ci\"\nmicrosoft_tenant_id = \"t\"\nkey = \"short\""
        );
        let err = PortalConfig::from_toml(&text)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("32 characters"), "{err}");
    }

    #[test]
    fn missing_secret_names_the_variable() {
        let text = MINIMAL.replace("client_secret = \"s\"", "");
        let err = PortalConfig::from_toml(&text)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn the_ehr_sign_in_is_a_public_client_by_default() {
        let config = parse("").unwrap();
        assert_eq!(config.ehr_sign_in.client_auth, EhrClientAuthMethod::Public);
    }

    #[test]
    fn the_ehr_sign_in_refuses_client_secrets_and_says_why() {
        for method in ["client_secret_basic", "client_secret_post"] {
            let text = MINIMAL.replace(
                "client_id = \"ehr-app\"",
                &format!(
                    "client_id = \"ehr-app\"\nclient_auth = \"{method}\"\nclient_secret = \"t\""
                ),
            );
            let err = PortalConfig::from_toml(&text)
                .unwrap()
                .validate()
                .unwrap_err();
            let message = err.to_string();
            assert!(message.contains(method), "{message}");
            assert!(message.contains("before it is approved"), "{message}");
            assert!(message.contains("client_auth = \"public\""), "{message}");
            assert!(message.contains("private_key_jwt"), "{message}");
            assert!(
                !message.contains("\"t\""),
                "the secret is not echoed: {message}"
            );
        }
        // A secret left over with the default method (the file or the environment variable).
        let text = MINIMAL.replace(
            "client_id = \"ehr-app\"",
            "client_id = \"ehr-app\"\nclient_secret = \"left-over\"",
        );
        let mut config = PortalConfig::from_toml(&text).unwrap();
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string().contains("never uses a client secret"),
            "{err}"
        );
        assert!(!err.to_string().contains("left-over"), "{err}");
        config.ehr_sign_in.client_secret = Secret::default();
        config.validate().unwrap();
        Cli::parse_from([
            "visitbridge-portal",
            "-c",
            "x",
            "--ehr-client-secret",
            "env",
        ])
        .apply(&mut config);
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string()
                .contains("VISITBRIDGE_PORTAL_EHR_CLIENT_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn a_private_key_jwt_sign_in_needs_its_key_and_a_key_needs_that_method() {
        let text = MINIMAL.replace(
            "client_id = \"ehr-app\"",
            "client_id = \"ehr-app\"\nclient_auth = \"private_key_jwt\"",
        );
        let err = PortalConfig::from_toml(&text)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("private_key_file"), "{err}");
        let text = MINIMAL.replace(
            "client_id = \"ehr-app\"",
            "client_id = \"ehr-app\"\nprivate_key_file = \"/k.pem\"\nkey_id = \"k1\"",
        );
        let err = PortalConfig::from_toml(&text)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("only with"), "{err}");
        let text = text.replace("key_id", "client_auth = \"private_key_jwt\"\nkey_id");
        PortalConfig::from_toml(&text).unwrap().validate().unwrap();
    }

    #[test]
    fn admins_match_case_insensitively_within_their_tenant() {
        let text = format!(
            "{MINIMAL}\n[[admins]]\nmicrosoft_tenant_id = \"t1\"\nusernames = [\"Admin@Contoso.org\"]"
        );
        let config = PortalConfig::from_toml(&text).unwrap();
        let t1 = MicrosoftTenantId::new("t1").unwrap();
        let t2 = MicrosoftTenantId::new("t2").unwrap();
        let admin = Username::new("admin@contoso.org").unwrap();
        assert!(config.is_admin(&t1, &admin));
        assert!(!config.is_admin(&t2, &admin));
        assert!(!config.is_admin(&t1, &Username::new("other@contoso.org").unwrap()));
    }
}
