//! The issuer allowlist: a launch from an unapproved `iss` fails before any request is made.

use std::fmt;

use url::Url;

/// An issuer (FHIR base URL) in canonical form: scheme, host, port and path, without a trailing
/// slash, a query, a fragment or credentials.
///
/// Two URLs are the same issuer exactly when their normalised forms are equal: there is no prefix
/// matching, so `https://ehr.example/fhir-evil` and `https://ehr.example/fhir/other` are not
/// `https://ehr.example/fhir`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormalizedIssuer(String);

impl NormalizedIssuer {
    /// Normalises `url`, or `None` when it can never be an issuer (not http(s), no host, or
    /// carrying credentials, a query or a fragment).
    pub fn new(url: &Url) -> Option<Self> {
        if !matches!(url.scheme(), "https" | "http") {
            return None;
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return None;
        }
        let host = url.host_str()?;
        let mut out = format!("{}://{host}", url.scheme());
        if let Some(port) = url.port() {
            out.push_str(&format!(":{port}"));
        }
        out.push_str(url.path().trim_end_matches('/'));
        Some(Self(out))
    }

    /// Parses and normalises a string (for example the `iss` of a launch).
    pub fn parse(iss: &str) -> Option<Self> {
        Url::parse(iss.trim()).ok().as_ref().and_then(Self::new)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NormalizedIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An issuer the allowlist approved, as configured (not as the launch spelled it).
///
/// Discovery, the `aud` parameter and every later request use [`ApprovedIssuer::iss`], the
/// approved value, so nothing taken from the launch request is ever dereferenced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApprovedIssuer {
    /// The FHIR base URL (the SMART `iss`) exactly as approved.
    pub iss: Url,
    /// An opaque id for the approving party's own use (e.g. the approved configuration's key).
    pub configuration_id: String,
}

impl ApprovedIssuer {
    /// An approved issuer with a configuration id.
    pub fn new(iss: Url, configuration_id: impl Into<String>) -> Self {
        Self {
            iss,
            configuration_id: configuration_id.into(),
        }
    }

    /// The issuer's canonical form (`None` if the configured URL can never be an issuer).
    pub fn normalized(&self) -> Option<NormalizedIssuer> {
        NormalizedIssuer::new(&self.iss)
    }
}

/// Decides which issuers may launch us. The launch service backs it with the approved
/// configurations in its store.
#[async_trait::async_trait]
pub trait IssuerPolicy: Send + Sync {
    /// The approved issuer `iss` normalises to, or `None` to refuse the launch.
    ///
    /// Implementations compare [`NormalizedIssuer`]s for equality (never prefixes).
    async fn is_approved(&self, iss: &NormalizedIssuer) -> Option<ApprovedIssuer>;
}

/// A fixed allowlist (configuration files, tests).
#[derive(Debug, Clone, Default)]
pub struct StaticIssuers {
    approved: Vec<(NormalizedIssuer, ApprovedIssuer)>,
}

impl StaticIssuers {
    /// An allowlist of `issuers`; entries that can never be issuers are dropped.
    pub fn new(issuers: impl IntoIterator<Item = ApprovedIssuer>) -> Self {
        let approved = issuers
            .into_iter()
            .filter_map(|a| a.normalized().map(|n| (n, a)))
            .collect();
        Self { approved }
    }
}

#[async_trait::async_trait]
impl IssuerPolicy for StaticIssuers {
    async fn is_approved(&self, iss: &NormalizedIssuer) -> Option<ApprovedIssuer> {
        self.approved
            .iter()
            .find(|(n, _)| n == iss)
            .map(|(_, a)| a.clone())
    }
}

/// Asks `policy` about a raw `iss` string from a launch request.
pub(crate) async fn approve(
    policy: &dyn IssuerPolicy,
    iss: &str,
) -> Result<ApprovedIssuer, crate::SmartError> {
    let refused = || crate::SmartError::IssuerNotApproved {
        iss: iss.chars().take(200).collect(),
    };
    let normalized = NormalizedIssuer::parse(iss).ok_or_else(refused)?;
    policy.is_approved(&normalized).await.ok_or_else(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Option<String> {
        NormalizedIssuer::parse(s).map(|n| n.0)
    }

    #[test]
    fn normalisation_keeps_scheme_host_port_path() {
        let base = Some("https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4".to_owned());
        assert_eq!(
            n("https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4"),
            base
        );
        assert_eq!(
            n("https://FHIR.Epic.com/interconnect-fhir-oauth/api/FHIR/R4/"),
            base
        );
        assert_eq!(
            n("https://fhir.epic.com:443/interconnect-fhir-oauth/api/FHIR/R4"),
            base
        );
        assert_eq!(
            n("http://127.0.0.1:8080/fhir/"),
            Some("http://127.0.0.1:8080/fhir".to_owned())
        );
        assert_eq!(
            n("https://ehr.example"),
            Some("https://ehr.example".to_owned())
        );
    }

    #[test]
    fn normalisation_refuses_what_no_issuer_has() {
        assert_eq!(n("https://user:pw@ehr.example/fhir"), None);
        assert_eq!(n("https://ehr.example/fhir?x=1"), None);
        assert_eq!(n("https://ehr.example/fhir#x"), None);
        assert_eq!(n("javascript:alert(1)"), None);
        assert_eq!(n("file:///etc/passwd"), None);
        assert_eq!(n("not a url"), None);
    }

    #[tokio::test]
    async fn static_issuers_match_exactly_not_by_prefix() {
        let approved = ApprovedIssuer::new(
            Url::parse("https://ehr.example/fhir/R4").expect("url"),
            "cfg-1",
        );
        let policy = StaticIssuers::new([approved.clone()]);
        for ok in [
            "https://ehr.example/fhir/R4",
            "https://EHR.example/fhir/R4/",
        ] {
            assert_eq!(
                approve(&policy, ok).await.ok(),
                Some(approved.clone()),
                "{ok}"
            );
        }
        for bad in [
            "https://ehr.example/fhir/R4-evil",
            "https://ehr.example/fhir/R4/extra",
            "https://ehr.example/fhir",
            "https://ehr.example.evil.test/fhir/R4",
            "http://ehr.example/fhir/R4",
            "https://ehr.example:8443/fhir/R4",
            "https://ehr.example@evil.test/fhir/R4",
        ] {
            assert!(approve(&policy, bad).await.is_err(), "{bad}");
        }
    }
}
