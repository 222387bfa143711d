//! Signed, expiring patient links: a visit's join page reachable without a portal launch.

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use visitbridge_http::Secret;

/// Domain separation: a link's MAC can never be confused with another use of the secret.
const LINK_DOMAIN: &[u8] = b"visitbridge/patient-link/v1\0";

/// What a patient link grants: joining one visit's meeting until it expires.
///
/// It carries the configuration id and the visit's *hashed* key (the meeting's `externalId`, as
/// the visit registry keys visits), never the CSN, so a link forwarded or logged by a proxy
/// reveals no EHR identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientLink {
    /// The configuration the visit belongs to.
    #[serde(rename = "c")]
    pub configuration_id: String,
    /// The visit's hashed key (`externalId`).
    #[serde(rename = "v")]
    pub external_meeting_id: String,
    /// When the link stops working (Unix seconds in the token).
    #[serde(rename = "e", with = "unix_seconds")]
    pub expires_at: DateTime<Utc>,
}

mod unix_seconds {
    use chrono::{DateTime, TimeZone, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(t.timestamp())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let secs = i64::deserialize(d)?;
        Utc.timestamp_opt(secs, 0)
            .single()
            .ok_or_else(|| serde::de::Error::custom("expiry out of range"))
    }
}

/// Why a patient link is refused. The messages are meant for the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a link we made, or altered.
    #[error("this visit link is not valid: ask your clinic for a new link")]
    Invalid,
    /// Past its expiry.
    #[error("this visit link has expired: ask your clinic for a new link")]
    Expired,
}

fn mac(secret: &Secret, payload: &str) -> aws_lc_rs::hmac::Tag {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.expose().as_bytes());
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(LINK_DOMAIN);
    ctx.update(payload.as_bytes());
    ctx.sign()
}

impl PatientLink {
    /// The link's token: `base64url(json).base64url(hmac-sha256)`, URL-safe.
    pub fn sign(&self, secret: &Secret) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Serialising three plain fields cannot fail; an empty payload would never verify.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let payload = b64.encode(json);
        let tag = mac(secret, &payload);
        format!("{payload}.{}", b64.encode(tag.as_ref()))
    }

    /// Checks a token's MAC (in constant time) and then its expiry against `now`.
    pub fn verify(token: &str, secret: &Secret, now: DateTime<Utc>) -> Result<Self, LinkError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if token.len() > 2048 {
            return Err(LinkError::Invalid);
        }
        let (payload, tag) = token.split_once('.').ok_or(LinkError::Invalid)?;
        let tag = b64.decode(tag).map_err(|_| LinkError::Invalid)?;
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.expose().as_bytes());
        let mut message = LINK_DOMAIN.to_vec();
        message.extend_from_slice(payload.as_bytes());
        aws_lc_rs::hmac::verify(&key, &message, &tag).map_err(|_| LinkError::Invalid)?;
        let json = b64.decode(payload).map_err(|_| LinkError::Invalid)?;
        let link: Self = serde_json::from_slice(&json).map_err(|_| LinkError::Invalid)?;
        if link.expires_at <= now {
            return Err(LinkError::Expired);
        }
        Ok(link)
    }
}

/// A timestamp for tests and callers that count in seconds.
pub fn at_unix(seconds: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(seconds, 0).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> PatientLink {
        PatientLink {
            configuration_id: "cfg-1".into(),
            external_meeting_id: "vb-0123456789abcdef".into(),
            expires_at: at_unix(2_000_000_000).unwrap(),
        }
    }

    #[test]
    fn a_link_verifies_until_it_expires() {
        let secret = Secret::new("deployment-secret");
        let token = link().sign(&secret);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        let before = at_unix(1_999_999_999).unwrap();
        assert_eq!(PatientLink::verify(&token, &secret, before), Ok(link()));
        let after = at_unix(2_000_000_000).unwrap();
        assert_eq!(
            PatientLink::verify(&token, &secret, after),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn altered_or_foreign_links_are_refused() {
        let secret = Secret::new("deployment-secret");
        let now = at_unix(1_000_000_000).unwrap();
        let token = link().sign(&secret);
        let other = Secret::new("another-deployment");
        assert_eq!(
            PatientLink::verify(&token, &other, now),
            Err(LinkError::Invalid)
        );
        // A payload extended by a year, with the old MAC.
        let mut longer = link();
        longer.expires_at = at_unix(2_031_536_000).unwrap();
        let forged_payload = longer.sign(&other);
        let (payload, _) = forged_payload.split_once('.').unwrap();
        let (_, tag) = token.split_once('.').unwrap();
        assert_eq!(
            PatientLink::verify(&format!("{payload}.{tag}"), &secret, now),
            Err(LinkError::Invalid)
        );
        for junk in ["", ".", "abc", "abc.def", &"a".repeat(5000)] {
            assert_eq!(
                PatientLink::verify(junk, &secret, now),
                Err(LinkError::Invalid)
            );
        }
    }
}
