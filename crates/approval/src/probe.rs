//! Judging the results of a FHIR base URL's network checks, and the test/production mix-up rule.
//!
//! The checks themselves (fetching the SMART configuration and the CapabilityStatement, the EHR
//! sign-in) are made by the crates that do HTTP; they describe what they saw in a [`ProbeOutcome`]
//! and this module turns it into one clear [`FhirUrlProblem`].

use std::fmt;

use crate::{Environment, FhirBaseUrl, FhirUrlProblem, OAuthGap};

/// What the caller saw when it probed a FHIR base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// `GET {base}/.well-known/smart-configuration`.
    pub smart_configuration: SmartConfigurationProbe,
    /// `GET {base}/metadata`.
    pub metadata: MetadataProbe,
}

/// The result of fetching `{base}/.well-known/smart-configuration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmartConfigurationProbe {
    /// No HTTP answer: DNS, connection, TLS or timeout failure.
    Unreachable,
    /// An HTTP answer with a non-success status.
    HttpStatus(u16),
    /// A success status whose body is not a SMART configuration JSON object.
    NotSmartJson,
    /// A SMART configuration document.
    Found {
        /// It has an `authorization_endpoint`.
        authorization_endpoint: bool,
        /// It has a `token_endpoint`.
        token_endpoint: bool,
        /// Its `code_challenge_methods_supported` includes `S256`.
        pkce_s256: bool,
    },
}

/// The result of fetching `{base}/metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataProbe {
    /// No HTTP answer: DNS, connection, TLS or timeout failure.
    Unreachable,
    /// An HTTP answer with a non-success status.
    HttpStatus(u16),
    /// A success status whose body is not a CapabilityStatement with a `fhirVersion`.
    NotCapabilityStatement,
    /// The CapabilityStatement's `fhirVersion`, e.g. `4.0.1`.
    FhirVersion(String),
}

/// Names a FHIR version number the way people say it.
fn release_name(version: &str) -> String {
    let name = match version.split('.').take(2).collect::<Vec<_>>()[..] {
        ["1", "0"] => "DSTU2",
        ["3", "0"] => "STU3",
        ["4", "0"] => "R4",
        ["4", "3"] => "R4B",
        ["5", "0"] => "R5",
        _ => return version.to_owned(),
    };
    format!("{name} ({version})")
}

fn is_r4(version: &str) -> bool {
    version == "4.0" || version.starts_with("4.0.")
}

/// Turns what the caller saw into the one problem to show, or `Ok` when the URL is a SMART on FHIR
/// R4 endpoint with OAuth set up.
///
/// The most specific explanation wins: a server that says it speaks another FHIR version gets "not
/// an R4 endpoint" even if its SMART configuration is also missing, and a FHIR R4 server without a
/// SMART configuration gets "OAuth set-up incomplete" rather than "not a valid FHIR URL".
pub fn classify_probe(url: &FhirBaseUrl, outcome: &ProbeOutcome) -> Result<(), FhirUrlProblem> {
    let url_text = || url.as_str().to_owned();
    let r4_confirmed = match &outcome.metadata {
        MetadataProbe::FhirVersion(v) if is_r4(v) => true,
        MetadataProbe::FhirVersion(v) => {
            return Err(FhirUrlProblem::NotR4 {
                found: release_name(v),
                suggestion: None,
            });
        }
        _ => false,
    };
    match outcome.smart_configuration {
        SmartConfigurationProbe::Unreachable => {
            return Err(FhirUrlProblem::ServerUnreachable { url: url_text() });
        }
        SmartConfigurationProbe::HttpStatus(status @ (401 | 403)) => {
            return Err(FhirUrlProblem::OAuthSetupIncomplete(
                OAuthGap::SmartConfigurationRefused(status),
            ));
        }
        SmartConfigurationProbe::HttpStatus(_) | SmartConfigurationProbe::NotSmartJson
            if r4_confirmed =>
        {
            return Err(FhirUrlProblem::OAuthNotEnabled { url: url_text() });
        }
        SmartConfigurationProbe::HttpStatus(status) => {
            return Err(FhirUrlProblem::NotSmartEndpoint {
                url: url_text(),
                status: Some(status),
            });
        }
        SmartConfigurationProbe::NotSmartJson => {
            return Err(FhirUrlProblem::NotSmartEndpoint {
                url: url_text(),
                status: None,
            });
        }
        SmartConfigurationProbe::Found {
            authorization_endpoint,
            token_endpoint,
            pkce_s256,
        } => {
            let gap = if !authorization_endpoint {
                Some(OAuthGap::MissingAuthorizationEndpoint)
            } else if !token_endpoint {
                Some(OAuthGap::MissingTokenEndpoint)
            } else if !pkce_s256 {
                Some(OAuthGap::NoPkceS256)
            } else {
                None
            };
            if let Some(gap) = gap {
                return Err(FhirUrlProblem::OAuthSetupIncomplete(gap));
            }
        }
    }
    if r4_confirmed {
        Ok(())
    } else {
        Err(FhirUrlProblem::FhirVersionUnknown { url: url_text() })
    }
}

/// Turns the `error` code of a failed EHR sign-in (authorization or token endpoint) into the
/// problem to show. The EHR's `error_description` is deliberately not used: it is free text from
/// another system.
pub fn classify_oauth_error(error: &str) -> FhirUrlProblem {
    let gap = match error {
        "access_denied" => return FhirUrlProblem::EhrSignInRefused,
        "invalid_client" => OAuthGap::ClientUnknown,
        "unauthorized_client" => OAuthGap::ClientNotAuthorized,
        "invalid_scope" => OAuthGap::ScopesRefused,
        other => {
            // Only echo a well-formed error code, never arbitrary text.
            let code = if !other.is_empty()
                && other.len() <= 64
                && other.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                other.to_owned()
            } else {
                "(unrecognised)".to_owned()
            };
            OAuthGap::Other(code)
        }
    };
    FhirUrlProblem::OAuthSetupIncomplete(gap)
}

/// A hint that a configuration's environment does not match its URL (test and production mixed
/// up). A warning, not a refusal: the rule is a heuristic over naming habits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentWarning {
    /// The environment the configuration is marked as.
    pub configured: Environment,
    /// What in the URL suggests the other environment, e.g. `fhir.epic.com` or `tst`.
    pub marker: String,
}

impl fmt::Display for EnvironmentWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (looks, marked) = match self.configured {
            Environment::Production => ("a test", "production"),
            Environment::Test => ("a production", "test"),
        };
        write!(
            f,
            "this URL looks like {looks} environment ({}) but the configuration is marked {marked}; \
             check that test and production are not mixed up",
            self.marker
        )
    }
}

/// Public sandboxes: never production.
const SANDBOX_HOSTS: &[&str] = &["fhir.epic.com", "launch.smarthealthit.org"];
const TEST_WORDS: &[&str] = &[
    "tst", "poc", "dev", "sandbox", "sbx", "nonprod", "uat", "stage", "staging", "qa",
];
const PRODUCTION_WORDS: &[&str] = &["prd", "prod", "production"];

/// The test/production mix-up rule.
///
/// The host and path are split into lower-case words at every character that is not a letter or
/// digit. A word looks like *test* when it is one of `tst poc dev sandbox sbx nonprod uat stage
/// staging qa`, starts with `test`, or ends in `tst` or `poc` (Epic's habit: `APIProxyTST`,
/// `interconnect-aocurpoc`); the public sandboxes `fhir.epic.com` and `launch.smarthealthit.org`
/// are test too. A word looks like *production* when it is `prd`, `prod`, `production` or ends in
/// `prd`. A production configuration with a test word, or a test configuration with a production
/// word and no test word, gets a warning.
pub fn environment_warning(
    url: &FhirBaseUrl,
    configured: Environment,
) -> Option<EnvironmentWarning> {
    let host = url.host();
    let words: Vec<String> = host
        .split(|c: char| !c.is_ascii_alphanumeric())
        .chain(url.path().split(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let test_marker = SANDBOX_HOSTS
        .iter()
        .find(|h| **h == host)
        .map(|h| (*h).to_owned())
        .or_else(|| {
            words
                .iter()
                .find(|w| {
                    TEST_WORDS.contains(&w.as_str())
                        || w.starts_with("test")
                        || w.ends_with("tst")
                        || w.ends_with("poc")
                })
                .cloned()
        });
    let warning = |marker: String| EnvironmentWarning { configured, marker };
    match configured {
        Environment::Production => test_marker.map(warning),
        Environment::Test if test_marker.is_none() => words
            .iter()
            .find(|w| PRODUCTION_WORDS.contains(&w.as_str()) || w.ends_with("prd"))
            .cloned()
            .map(warning),
        Environment::Test => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UrlPolicy;

    fn url(s: &str) -> FhirBaseUrl {
        FhirBaseUrl::parse(s, UrlPolicy::STRICT).unwrap()
    }

    fn good_smart() -> SmartConfigurationProbe {
        SmartConfigurationProbe::Found {
            authorization_endpoint: true,
            token_endpoint: true,
            pkce_s256: true,
        }
    }

    fn check(smart: SmartConfigurationProbe, metadata: MetadataProbe, expected: Result<(), &str>) {
        let base = url("https://ehr.example.org/api/FHIR/R4");
        let outcome = ProbeOutcome {
            smart_configuration: smart,
            metadata,
        };
        let got = classify_probe(&base, &outcome).map_err(|p| p.to_string());
        assert_eq!(got, expected.map_err(str::to_owned), "{outcome:?}");
    }

    #[test]
    fn classifies_probe_results() {
        use MetadataProbe as M;
        use SmartConfigurationProbe as S;
        let r4 = || M::FhirVersion("4.0.1".into());
        check(good_smart(), r4(), Ok(()));
        check(
            good_smart(),
            M::FhirVersion("1.0.2".into()),
            Err(
                "this is not an R4 endpoint (it serves FHIR DSTU2 (1.0.2)); VisitBridge needs the FHIR R4 base URL",
            ),
        );
        check(
            S::HttpStatus(404),
            M::FhirVersion("3.0.1".into()),
            Err(
                "this is not an R4 endpoint (it serves FHIR STU3 (3.0.1)); VisitBridge needs the FHIR R4 base URL",
            ),
        );
        check(
            S::Unreachable,
            M::Unreachable,
            Err(
                "not a valid FHIR URL: nothing answered at https://ehr.example.org/api/FHIR/R4; check the address and that the server can be reached from VisitBridge",
            ),
        );
        check(
            S::HttpStatus(404),
            M::HttpStatus(404),
            Err(
                "not a valid FHIR URL: https://ehr.example.org/api/FHIR/R4 is not a SMART on FHIR endpoint (no SMART configuration, HTTP 404); check that this is the FHIR base URL",
            ),
        );
        check(
            S::NotSmartJson,
            M::NotCapabilityStatement,
            Err(
                "not a valid FHIR URL: https://ehr.example.org/api/FHIR/R4 is not a SMART on FHIR endpoint (no SMART configuration); check that this is the FHIR base URL",
            ),
        );
        check(
            S::HttpStatus(404),
            r4(),
            Err(
                "OAuth set-up incomplete: https://ehr.example.org/api/FHIR/R4 is a FHIR R4 server but publishes no SMART configuration; SMART on FHIR (OAuth 2.0) must be enabled for it",
            ),
        );
        check(
            S::HttpStatus(403),
            r4(),
            Err(
                "OAuth set-up incomplete: the EHR refused to show its SMART configuration (HTTP 403); the VisitBridge app may not be activated for this environment yet",
            ),
        );
        check(
            S::Found {
                authorization_endpoint: false,
                token_endpoint: true,
                pkce_s256: true,
            },
            r4(),
            Err("OAuth set-up incomplete: the SMART configuration has no authorization endpoint"),
        );
        check(
            S::Found {
                authorization_endpoint: true,
                token_endpoint: false,
                pkce_s256: true,
            },
            r4(),
            Err("OAuth set-up incomplete: the SMART configuration has no token endpoint"),
        );
        check(
            S::Found {
                authorization_endpoint: true,
                token_endpoint: true,
                pkce_s256: false,
            },
            r4(),
            Err(
                "OAuth set-up incomplete: the EHR does not support PKCE with S256, which SMART App Launch 2 requires",
            ),
        );
        check(
            good_smart(),
            M::HttpStatus(500),
            Err(
                "could not confirm that https://ehr.example.org/api/FHIR/R4 is a FHIR R4 server: its CapabilityStatement (https://ehr.example.org/api/FHIR/R4/metadata) could not be read",
            ),
        );
        check(
            good_smart(),
            M::FhirVersion("4.3.0".into()),
            Err(
                "this is not an R4 endpoint (it serves FHIR R4B (4.3.0)); VisitBridge needs the FHIR R4 base URL",
            ),
        );
    }

    #[test]
    fn classifies_oauth_errors() {
        let cases = [
            (
                "invalid_client",
                "OAuth set-up incomplete: the EHR does not recognise the VisitBridge client (invalid_client); check the client id and that the EHR has our keys or secret",
            ),
            (
                "access_denied",
                "the EHR sign-in was cancelled or refused; sign in to the EHR again to validate the URL",
            ),
            (
                "temporarily_unavailable",
                "OAuth set-up incomplete: the EHR's OAuth server returned the error temporarily_unavailable",
            ),
            (
                "<script>",
                "OAuth set-up incomplete: the EHR's OAuth server returned the error (unrecognised)",
            ),
        ];
        for (code, message) in cases {
            assert_eq!(classify_oauth_error(code).to_string(), message, "{code}");
        }
        assert_eq!(
            classify_oauth_error("invalid_scope"),
            FhirUrlProblem::OAuthSetupIncomplete(OAuthGap::ScopesRefused)
        );
    }

    #[test]
    fn test_and_production_mix_up() {
        use Environment::{Production, Test};
        let cases = [
            (
                "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4",
                Production,
                Some("fhir.epic.com"),
            ),
            (
                "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4",
                Test,
                None,
            ),
            (
                "https://epicproxy.et0000.epichosted.com/APIProxyTST/api/FHIR/R4",
                Production,
                Some("apiproxytst"),
            ),
            (
                "https://ehr.example.org/interconnect-aocurpoc-oauth/api/FHIR/R4",
                Production,
                Some("aocurpoc"),
            ),
            (
                "https://ehr-tst.example.org/api/FHIR/R4",
                Production,
                Some("tst"),
            ),
            (
                "https://epicproxy.et0000.epichosted.com/APIProxyPRD/api/FHIR/R4",
                Production,
                None,
            ),
            (
                "https://epicproxy.et0000.epichosted.com/APIProxyPRD/api/FHIR/R4",
                Test,
                Some("apiproxyprd"),
            ),
            ("https://ehr.example.org/api/FHIR/R4", Test, None),
            ("https://ehr.example.org/api/FHIR/R4", Production, None),
            ("https://latest.example.org/api/FHIR/R4", Production, None),
        ];
        for (input, env, marker) in cases {
            let got = environment_warning(&url(input), env);
            assert_eq!(
                got.as_ref().map(|w| w.marker.as_str()),
                marker,
                "{input} {env:?}"
            );
        }
        let w = environment_warning(&url("https://ehr-tst.example.org/r4"), Production).unwrap();
        assert_eq!(
            w.to_string(),
            "this URL looks like a test environment (tst) but the configuration is marked production; check that test and production are not mixed up"
        );
    }
}
