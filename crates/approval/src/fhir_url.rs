//! The FHIR base URL: checked and normalised on entry, with a clear message for each known mistake.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::{Host, Url};

/// What [`FhirBaseUrl::parse`] accepts beyond the production rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UrlPolicy {
    /// Accept loopback hosts (`localhost`, `127.0.0.1`, `::1`), over `http` or `https`. Only for
    /// development and tests against local fakes: in production a loopback FHIR URL would let a
    /// portal user point VisitBridge at its own host.
    pub allow_loopback: bool,
}

impl UrlPolicy {
    /// Production rules: `https` only, no loopback.
    pub const STRICT: Self = Self {
        allow_loopback: false,
    };
    /// Development rules: as [`UrlPolicy::STRICT`], plus loopback hosts over `http` or `https`.
    pub const DEVELOPMENT: Self = Self {
        allow_loopback: true,
    };
}

/// A FHIR base URL (the SMART `iss`), checked and normalised.
///
/// Normalised means: scheme and host lower-case, default port dropped, no trailing slash, no query,
/// fragment or credentials. Two `FhirBaseUrl`s are equal exactly when their normalised text is, and
/// that exact equality is what the approval rules and launches rely on.
#[derive(Clone)]
pub struct FhirBaseUrl {
    text: String,
}

impl FhirBaseUrl {
    /// Checks `input` as a FHIR R4 base URL, under `policy`.
    ///
    /// The checks are syntactic; whether the server answers and speaks R4 is decided by the caller's
    /// probes, classified by [`crate::classify_probe`].
    pub fn parse(input: &str, policy: UrlPolicy) -> Result<Self, FhirUrlProblem> {
        let input = input.trim();
        if input.is_empty() {
            return Err(FhirUrlProblem::Empty);
        }
        let url = match Url::parse(input) {
            Ok(url) => url,
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                return Err(FhirUrlProblem::MissingScheme);
            }
            Err(e) => {
                return Err(FhirUrlProblem::Unparsable {
                    reason: e.to_string(),
                });
            }
        };
        let loopback = match url.host() {
            None => return Err(FhirUrlProblem::MissingScheme),
            Some(host) => {
                if is_forbidden(&host) {
                    return Err(FhirUrlProblem::ForbiddenAddress {
                        host: host.to_string(),
                    });
                }
                is_loopback(&host)
            }
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback && policy.allow_loopback => {}
            _ => return Err(FhirUrlProblem::NotHttps),
        }
        if loopback && !policy.allow_loopback {
            return Err(FhirUrlProblem::LoopbackNotAllowed);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FhirUrlProblem::HasCredentials);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(FhirUrlProblem::HasQueryOrFragment);
        }
        let base = Self::normalised(&url);
        check_path(&base)?;
        Ok(base)
    }

    /// Rebuilds a value that was checked on entry and stored since: only the syntax is checked
    /// again, so that tightening the entry rules later cannot make stored configurations unreadable.
    fn from_stored(text: &str) -> Result<Self, FhirUrlProblem> {
        let url = Url::parse(text).map_err(|e| FhirUrlProblem::Unparsable {
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(FhirUrlProblem::NotHttps);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(FhirUrlProblem::HasQueryOrFragment);
        }
        Ok(Self::normalised(&url))
    }

    fn normalised(url: &Url) -> Self {
        let mut text = url.as_str().to_owned();
        while text.ends_with('/') {
            text.pop();
        }
        Self { text }
    }

    /// The normalised URL text, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Where the SMART configuration lives: `{base}/.well-known/smart-configuration`.
    pub fn smart_configuration_url(&self) -> String {
        format!("{}/.well-known/smart-configuration", self.text)
    }

    /// Where the CapabilityStatement lives: `{base}/metadata`.
    pub fn metadata_url(&self) -> String {
        format!("{}/metadata", self.text)
    }

    /// The host name (or IP literal), lower-case.
    pub fn host(&self) -> &str {
        // The text was produced by `Url`, so it is `scheme://host[:port]/path`.
        let rest = self.text.split_once("://").map_or("", |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or(rest);
        if authority.starts_with('[') {
            return authority.find(']').map_or(authority, |i| &authority[..=i]);
        }
        authority.split(':').next().unwrap_or(authority)
    }

    /// The path, without a trailing slash (empty for a URL at the root).
    pub fn path(&self) -> &str {
        let rest = self.text.split_once("://").map_or("", |(_, rest)| rest);
        rest.find('/').map_or("", |i| &rest[i..])
    }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => *d == "localhost" || d.ends_with(".localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Addresses no EHR can have; link-local includes the cloud metadata service (169.254.169.254), the
/// classic server-side request forgery target.
fn is_forbidden(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(_) => false,
        Host::Ipv4(ip) => ip.is_unspecified() || ip.is_link_local() || *ip == Ipv4Addr::BROADCAST,
        Host::Ipv6(ip) => {
            ip.is_unspecified()
                || (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// The known wrong-suffix mistakes, recognised from the last path segment.
fn check_path(base: &FhirBaseUrl) -> Result<(), FhirUrlProblem> {
    let text = base.as_str();
    let path = base.path();
    let (prefix, last) = path.rsplit_once('/').unwrap_or(("", path));
    let prefix_url = &text[..text.len() - path.len() + prefix.len()];
    if let Some(i) = path.find("/.well-known/") {
        return Err(FhirUrlProblem::DiscoveryUrl {
            suggestion: text[..text.len() - path.len() + i].to_owned(),
        });
    }
    if last == "metadata" {
        return Err(FhirUrlProblem::DiscoveryUrl {
            suggestion: prefix_url.to_owned(),
        });
    }
    if path.split('/').any(|s| s.eq_ignore_ascii_case("oauth2")) {
        return Err(FhirUrlProblem::OAuthServerUrl);
    }
    // Case-sensitive on purpose: Epic's base is `.../api/FHIR/R4`, and an upper-case `FHIR` last
    // segment is Epic's path with `/R4` forgotten, while other servers' bases may end in `/fhir`.
    if last == "FHIR" {
        return Err(FhirUrlProblem::MissingR4Suffix {
            suggestion: format!("{text}/R4"),
        });
    }
    for (segment, name) in [("dstu2", "DSTU2"), ("stu3", "STU3"), ("r5", "R5")] {
        if last.eq_ignore_ascii_case(segment) {
            let r4 = if last.chars().any(|c| c.is_ascii_uppercase()) {
                "R4"
            } else {
                "r4"
            };
            return Err(FhirUrlProblem::NotR4 {
                found: name.to_owned(),
                suggestion: Some(format!("{prefix_url}/{r4}")),
            });
        }
    }
    Ok(())
}

impl PartialEq for FhirBaseUrl {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for FhirBaseUrl {}

impl Hash for FhirBaseUrl {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl fmt::Debug for FhirBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FhirBaseUrl({})", self.text)
    }
}

impl fmt::Display for FhirBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for FhirBaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// Deserialising is for values read back from trusted storage: it re-checks the syntax only (see
/// [`FhirBaseUrl::parse`] for entry).
impl<'de> Deserialize<'de> for FhirBaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_stored(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a FHIR base URL cannot be used, worded for the admin or approver who entered it.
///
/// The syntactic problems come from [`FhirBaseUrl::parse`]; the others from
/// [`crate::classify_probe`] and [`crate::classify_oauth_error`], which judge the results of network
/// checks made elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FhirUrlProblem {
    /// Nothing was entered.
    #[error(
        "not a valid FHIR URL: enter the FHIR base URL, e.g. https://ehr.example.org/api/FHIR/R4"
    )]
    Empty,
    /// No `https://` in front.
    #[error("not a valid FHIR URL: it must start with https://")]
    MissingScheme,
    /// Not a URL at all.
    #[error("not a valid FHIR URL: {reason}")]
    Unparsable {
        /// The parser's complaint.
        reason: String,
    },
    /// `http` (or another scheme) where `https` is required.
    #[error("not a valid FHIR URL: it must use https://")]
    NotHttps,
    /// A loopback host outside development mode.
    #[error(
        "not a valid FHIR URL: loopback addresses such as localhost are accepted only in development mode"
    )]
    LoopbackNotAllowed,
    /// An address no EHR can have (unspecified, link-local, broadcast).
    #[error("not a valid FHIR URL: {host} is not an address an EHR can have")]
    ForbiddenAddress {
        /// The refused host.
        host: String,
    },
    /// `user:password@` in the URL.
    #[error("not a valid FHIR URL: remove the user name and password from the address")]
    HasCredentials,
    /// A `?query` or `#fragment`.
    #[error(
        "not a valid FHIR URL: a FHIR base URL has no query or fragment; remove everything from the ? or # on"
    )]
    HasQueryOrFragment,
    /// The address of a discovery document (`/.well-known/smart-configuration`, `/metadata`).
    #[error(
        "not a valid FHIR URL: this is the address of a discovery document, not the FHIR base URL; use {suggestion}"
    )]
    DiscoveryUrl {
        /// The base URL that document belongs to.
        suggestion: String,
    },
    /// The EHR's OAuth server address (`.../oauth2`) instead of its FHIR base URL.
    #[error(
        "not a valid FHIR URL: this is the EHR's OAuth server address, not its FHIR base URL (which usually ends in /api/FHIR/R4)"
    )]
    OAuthServerUrl,
    /// Epic's `.../api/FHIR` without the version suffix.
    #[error("not a valid FHIR URL: the FHIR R4 base URL ends in /R4; did you mean {suggestion}?")]
    MissingR4Suffix {
        /// The same URL with `/R4` added.
        suggestion: String,
    },
    /// An endpoint of another FHIR version (from the path, or from the server's `fhirVersion`).
    #[error("this is not an R4 endpoint (it serves FHIR {found}); VisitBridge needs the FHIR R4 base URL{}", suggestion.as_ref().map(|s| format!(", probably {s}")).unwrap_or_default())]
    NotR4 {
        /// The version found, e.g. `DSTU2` or `R4B (4.3.0)`.
        found: String,
        /// The likely R4 base, when it can be guessed from the path.
        suggestion: Option<String>,
    },
    /// Nothing answered at the address.
    #[error(
        "not a valid FHIR URL: nothing answered at {url}; check the address and that the server can be reached from VisitBridge"
    )]
    ServerUnreachable {
        /// The FHIR base URL probed.
        url: String,
    },
    /// The server answered, but neither as a SMART nor as a FHIR R4 server.
    #[error(
        "not a valid FHIR URL: {url} is not a SMART on FHIR endpoint (no SMART configuration{}); check that this is the FHIR base URL", status.map(|s| format!(", HTTP {s}")).unwrap_or_default()
    )]
    NotSmartEndpoint {
        /// The FHIR base URL probed.
        url: String,
        /// The HTTP status of the SMART configuration request, if it failed with one.
        status: Option<u16>,
    },
    /// A FHIR R4 server without SMART on FHIR (OAuth) enabled.
    #[error(
        "OAuth set-up incomplete: {url} is a FHIR R4 server but publishes no SMART configuration; SMART on FHIR (OAuth 2.0) must be enabled for it"
    )]
    OAuthNotEnabled {
        /// The FHIR base URL probed.
        url: String,
    },
    /// SMART is there, but the EHR side of the set-up is not finished.
    #[error("OAuth set-up incomplete: {0}")]
    OAuthSetupIncomplete(OAuthGap),
    /// The approver cancelled the EHR sign-in, or the EHR refused it.
    #[error(
        "the EHR sign-in was cancelled or refused; sign in to the EHR again to validate the URL"
    )]
    EhrSignInRefused,
    /// The server's CapabilityStatement could not be read, so R4 could not be confirmed.
    #[error(
        "could not confirm that {url} is a FHIR R4 server: its CapabilityStatement ({url}/metadata) could not be read"
    )]
    FhirVersionUnknown {
        /// The FHIR base URL probed.
        url: String,
    },
}

/// What is missing on the EHR side of the OAuth set-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthGap {
    /// The SMART configuration has no `authorization_endpoint`.
    #[error("the SMART configuration has no authorization endpoint")]
    MissingAuthorizationEndpoint,
    /// The SMART configuration has no `token_endpoint`.
    #[error("the SMART configuration has no token endpoint")]
    MissingTokenEndpoint,
    /// The SMART configuration does not offer PKCE with S256 (required by SMART App Launch 2).
    #[error("the EHR does not support PKCE with S256, which SMART App Launch 2 requires")]
    NoPkceS256,
    /// The SMART configuration is refused to our client (401/403): the app is not activated yet.
    #[error(
        "the EHR refused to show its SMART configuration (HTTP {0}); the VisitBridge app may not be activated for this environment yet"
    )]
    SmartConfigurationRefused(u16),
    /// `invalid_client`: the EHR does not know our client id, keys or secret.
    #[error(
        "the EHR does not recognise the VisitBridge client (invalid_client); check the client id and that the EHR has our keys or secret"
    )]
    ClientUnknown,
    /// `unauthorized_client`: the client may not use this kind of launch.
    #[error(
        "the VisitBridge client is not authorised for this kind of launch (unauthorized_client); ask the EHR analyst to finish the app's set-up"
    )]
    ClientNotAuthorized,
    /// `invalid_scope`: the app registration lacks scopes we ask for.
    #[error(
        "the EHR refused the requested scopes (invalid_scope); the app registration must include them (check v1 or v2 scope style)"
    )]
    ScopesRefused,
    /// Another OAuth error code.
    #[error("the EHR's OAuth server returned the error {0}")]
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        let got = FhirBaseUrl::parse(input, UrlPolicy::STRICT);
        match (got, expected) {
            (Ok(url), Ok(text)) => assert_eq!(url.as_str(), text, "{input}"),
            (Err(problem), Err(message)) => assert_eq!(problem.to_string(), message, "{input}"),
            (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn accepts_and_normalises() {
        check(
            "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4",
            Ok("https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4"),
        );
        check(
            "  HTTPS://EHR.Example.org:443/api/FHIR/R4/  ",
            Ok("https://ehr.example.org/api/FHIR/R4"),
        );
        check(
            "https://ehr.example.org:8443/fhir",
            Ok("https://ehr.example.org:8443/fhir"),
        );
        check("https://ehr.example.org/", Ok("https://ehr.example.org"));
        check(
            "https://launch.smarthealthit.org/v/r4/fhir",
            Ok("https://launch.smarthealthit.org/v/r4/fhir"),
        );
    }

    #[test]
    fn refuses_known_mistakes_with_clear_messages() {
        check(
            "",
            Err(
                "not a valid FHIR URL: enter the FHIR base URL, e.g. https://ehr.example.org/api/FHIR/R4",
            ),
        );
        check(
            "ehr.example.org/api/FHIR/R4",
            Err("not a valid FHIR URL: it must start with https://"),
        );
        check(
            "http://ehr.example.org/api/FHIR/R4",
            Err("not a valid FHIR URL: it must use https://"),
        );
        check(
            "ftp://ehr.example.org/api/FHIR/R4",
            Err("not a valid FHIR URL: it must use https://"),
        );
        check(
            "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR",
            Err(
                "not a valid FHIR URL: the FHIR R4 base URL ends in /R4; did you mean https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4?",
            ),
        );
        check(
            "https://ehr.example.org/FHIR/",
            Err(
                "not a valid FHIR URL: the FHIR R4 base URL ends in /R4; did you mean https://ehr.example.org/FHIR/R4?",
            ),
        );
        check(
            "https://ehr.example.org/api/FHIR/DSTU2",
            Err(
                "this is not an R4 endpoint (it serves FHIR DSTU2); VisitBridge needs the FHIR R4 base URL, probably https://ehr.example.org/api/FHIR/R4",
            ),
        );
        check(
            "https://ehr.example.org/fhir/stu3",
            Err(
                "this is not an R4 endpoint (it serves FHIR STU3); VisitBridge needs the FHIR R4 base URL, probably https://ehr.example.org/fhir/r4",
            ),
        );
        check(
            "https://ehr.example.org/api/FHIR/R4/.well-known/smart-configuration",
            Err(
                "not a valid FHIR URL: this is the address of a discovery document, not the FHIR base URL; use https://ehr.example.org/api/FHIR/R4",
            ),
        );
        check(
            "https://ehr.example.org/api/FHIR/R4/metadata",
            Err(
                "not a valid FHIR URL: this is the address of a discovery document, not the FHIR base URL; use https://ehr.example.org/api/FHIR/R4",
            ),
        );
        check(
            "https://fhir.epic.com/interconnect-fhir-oauth/oauth2",
            Err(
                "not a valid FHIR URL: this is the EHR's OAuth server address, not its FHIR base URL (which usually ends in /api/FHIR/R4)",
            ),
        );
        check(
            "https://ehr.example.org/api/FHIR/R4?x=1",
            Err(
                "not a valid FHIR URL: a FHIR base URL has no query or fragment; remove everything from the ? or # on",
            ),
        );
        check(
            "https://ehr.example.org/api/FHIR/R4#top",
            Err(
                "not a valid FHIR URL: a FHIR base URL has no query or fragment; remove everything from the ? or # on",
            ),
        );
        check(
            "https://u:p@ehr.example.org/api/FHIR/R4",
            Err("not a valid FHIR URL: remove the user name and password from the address"),
        );
        check(
            "https://169.254.169.254/latest",
            Err("not a valid FHIR URL: 169.254.169.254 is not an address an EHR can have"),
        );
        check(
            "https://[::]/fhir",
            Err("not a valid FHIR URL: [::] is not an address an EHR can have"),
        );
    }

    #[test]
    fn loopback_only_in_development() {
        for input in [
            "http://127.0.0.1:8080/fhir/R4",
            "https://localhost/fhir",
            "http://[::1]:9000/fhir",
        ] {
            assert_eq!(
                FhirBaseUrl::parse(input, UrlPolicy::STRICT).unwrap_err(),
                if input.starts_with("https") {
                    FhirUrlProblem::LoopbackNotAllowed
                } else {
                    FhirUrlProblem::NotHttps
                },
                "{input}"
            );
            assert!(
                FhirBaseUrl::parse(input, UrlPolicy::DEVELOPMENT).is_ok(),
                "{input}"
            );
        }
        // Development mode relaxes loopback only: remote hosts still need https.
        assert_eq!(
            FhirBaseUrl::parse("http://ehr.example.org/fhir", UrlPolicy::DEVELOPMENT).unwrap_err(),
            FhirUrlProblem::NotHttps
        );
    }

    #[test]
    fn parts_and_derived_urls() {
        let url =
            FhirBaseUrl::parse("http://127.0.0.1:8080/fhir/R4/", UrlPolicy::DEVELOPMENT).unwrap();
        assert_eq!(url.host(), "127.0.0.1");
        assert_eq!(url.path(), "/fhir/R4");
        assert_eq!(
            url.smart_configuration_url(),
            "http://127.0.0.1:8080/fhir/R4/.well-known/smart-configuration"
        );
        assert_eq!(url.metadata_url(), "http://127.0.0.1:8080/fhir/R4/metadata");
        let v6 = FhirBaseUrl::parse("http://[::1]:9000", UrlPolicy::DEVELOPMENT).unwrap();
        assert_eq!(v6.host(), "[::1]");
        assert_eq!(v6.path(), "");
    }

    #[test]
    fn serde_round_trip_keeps_loopback_values() {
        let url = FhirBaseUrl::parse("http://127.0.0.1:8080/fhir", UrlPolicy::DEVELOPMENT).unwrap();
        let json = serde_json::to_string(&url).unwrap();
        assert_eq!(json, "\"http://127.0.0.1:8080/fhir\"");
        let back: FhirBaseUrl = serde_json::from_str(&json).unwrap();
        assert_eq!(back, url);
        assert!(serde_json::from_str::<FhirBaseUrl>("\"https://x.org/a?b\"").is_err());
    }
}
