//! `FhirBaseUrl`: a checked FHIR service base URL, the root of every request we build.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::error::FhirError;

/// A FHIR service base URL (the `iss` of a SMART launch), e.g.
/// `https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4`.
///
/// Checked on creation: `http` or `https`, a host, no credentials, no query or fragment; trailing
/// slashes are removed, so `as_str()` never ends with `/` and ids append cleanly. Requiring `https`
/// is a deployment policy left to the caller (tests run against plain-HTTP fakes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FhirBaseUrl {
    url: Url,
    text: String,
}

impl FhirBaseUrl {
    /// Parses and checks a base URL.
    pub fn parse(input: &str) -> Result<Self, FhirError> {
        let bad = |why: &str| FhirError::InvalidUrl(format!("fhir base url {why}"));
        let mut url = Url::parse(input.trim()).map_err(|_| bad("is not a url"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment"));
        }
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
        let text = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self { url, text })
    }

    /// The base URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The base URL as a [`Url`].
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Whether `other` is on the same origin (scheme, host, port) as this base: the only place a
    /// bearer token for this server may be sent.
    pub fn same_origin(&self, other: &Url) -> bool {
        self.url.origin() == other.origin()
    }

    /// `{base}/{segment}/{segment}…`, each segment percent-encoded.
    pub(crate) fn join(&self, segments: &[&str]) -> Url {
        let mut url = self.url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

impl fmt::Debug for FhirBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FhirBaseUrl({:?})", self.text)
    }
}

impl fmt::Display for FhirBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for FhirBaseUrl {
    type Err = FhirError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for FhirBaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for FhirBaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses_unsafe_bases() {
        let ok = [
            (
                "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4/",
                "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4",
            ),
            (
                "https://EHR.example:8443/fhir",
                "https://ehr.example:8443/fhir",
            ),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ];
        for (input, expected) in ok {
            assert_eq!(FhirBaseUrl::parse(input).unwrap().as_str(), expected);
        }
        let base = FhirBaseUrl::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            base.join(&["Patient", "a.b"]).as_str(),
            "http://127.0.0.1:9000/Patient/a.b"
        );
        for bad in [
            "fhir.epic.com/R4",
            "ftp://ehr.example/fhir",
            "https://user:pw@ehr.example/fhir",
            "https://ehr.example/fhir?x=1",
            "https://ehr.example/fhir#top",
        ] {
            assert!(FhirBaseUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
