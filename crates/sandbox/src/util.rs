//! Small helpers shared by both simulated services: random ids, time formats, form parsing.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::SandboxError;

/// A URL-safe random string of `bytes` bytes of entropy (codes, tokens, launch ids).
pub(crate) fn random_token(bytes: usize) -> Result<String, SandboxError> {
    visitbridge_http::random_token(bytes).map_err(|_| SandboxError::Random)
}

/// A random UUID (v4) as text.
pub(crate) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Graph's date-time format: seven fraction digits and `Z`.
pub(crate) fn graph_time(t: DateTime<Utc>) -> String {
    let nanos = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    format!("{}Z", &nanos[..nanos.len() - 2])
}

/// FHIR instant (seconds, `Z`).
pub(crate) fn fhir_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses an RFC 3339 date-time.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `application/x-www-form-urlencoded` text as a map (the last value of a repeated name wins).
pub(crate) fn form_map(text: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(text).into_owned().collect()
}

/// `base` without a trailing slash, for building `{base}/path` strings.
pub(crate) fn trimmed(base: &url::Url) -> String {
    base.as_str().trim_end_matches('/').to_owned()
}

/// The S256 PKCE challenge of `verifier`.
pub(crate) fn s256(verifier: &str) -> String {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Constant-time string comparison (client secrets).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_time_has_seven_fraction_digits() {
        let t = parse_time("2026-03-05T18:02:11.512Z").expect("time");
        assert_eq!(graph_time(t), "2026-03-05T18:02:11.5120000Z");
        assert_eq!(fhir_instant(t), "2026-03-05T18:02:11Z");
    }

    #[test]
    fn s256_matches_rfc7636() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
