//! Newtypes for the identifiers Graph hands out, and the hashed `externalId` of a visit's meeting.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an identifier as Graph or Entra ID gave it.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

string_id!(
    /// An Entra ID user's object id (`oid`): the meeting organiser, or a staff participant.
    UserObjectId
);
string_id!(
    /// Graph's id of an `onlineMeeting` (opaque, base64-like).
    MeetingId
);
string_id!(
    /// Graph's id of a change-notification subscription.
    SubscriptionId
);

/// The `externalId` that makes `createOrGet` return the same meeting for the same visit.
///
/// Graph identifies a meeting by tenant + organiser + `externalId`, and stores the `externalId` where
/// every app with meeting read permission in the tenant can see it. So it must be stable for a visit
/// but must not carry the visit key (Epic's CSN, which leads straight to a patient's encounter) in
/// the clear: it is a hash, `vb-` followed by 32 lower-case hex digits (128 bits of SHA-256 or
/// HMAC-SHA256). Graph documents no maximum length; 35 ASCII characters stay well inside anything
/// it accepts, and hex keeps the value safe even if Graph compared ids case-insensitively.
///
/// The input is domain-separated and unambiguous (`NUL` between the parts, which neither part may
/// usefully contain), and both parts are trimmed, so `" 123"` and `"123"` are the same visit.
///
/// Changing the derivation would make every existing visit get a second meeting: it is versioned
/// by the domain string, never edited in place.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExternalMeetingId(String);

const EXTERNAL_ID_DOMAIN: &[u8] = b"visitbridge/onlineMeeting.externalId/v1";

impl ExternalMeetingId {
    /// Derives the id from the configuration id and the visit key with SHA-256.
    ///
    /// Visit keys (CSNs) are short numbers, so someone who knows the configuration id can test
    /// guesses against this hash; prefer [`Self::derive_keyed`] when the deployment has a stable
    /// secret. Both are deterministic, which is what makes `createOrGet` idempotent across retries,
    /// restarts and replicas.
    pub fn derive(configuration_id: &str, visit_key: &str) -> Self {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&canonical_input(configuration_id, visit_key));
        Self::from_digest(ctx.finish().as_ref())
    }

    /// Derives the id with HMAC-SHA256 under a deployment secret, so that the id cannot be brute
    /// forced back to a visit key without that secret.
    ///
    /// The secret must never change for the life of the visits it served: a new secret gives every
    /// visit a new meeting.
    pub fn derive_keyed(
        secret: &visitbridge_http::Secret,
        configuration_id: &str,
        visit_key: &str,
    ) -> Self {
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.expose().as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, &canonical_input(configuration_id, visit_key));
        Self::from_digest(tag.as_ref())
    }

    /// Wraps an id read back from storage or from Graph (not checked: Graph's ids are opaque).
    pub fn from_stored(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The id as sent to Graph.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn from_digest(digest: &[u8]) -> Self {
        let mut out = String::with_capacity(35);
        out.push_str("vb-");
        for byte in digest.iter().take(16) {
            out.push_str(&format!("{byte:02x}"));
        }
        Self(out)
    }
}

fn canonical_input(configuration_id: &str, visit_key: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(EXTERNAL_ID_DOMAIN.len() + 64);
    input.extend_from_slice(EXTERNAL_ID_DOMAIN);
    input.push(0);
    input.extend_from_slice(configuration_id.trim().as_bytes());
    input.push(0);
    input.extend_from_slice(visit_key.trim().as_bytes());
    input
}

impl fmt::Display for ExternalMeetingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ExternalMeetingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExternalMeetingId({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_id_is_stable_short_and_hides_the_visit_key() {
        let a = ExternalMeetingId::derive("cfg-1", "1234567890");
        assert_eq!(a, ExternalMeetingId::derive(" cfg-1", "1234567890 "));
        assert_ne!(a, ExternalMeetingId::derive("cfg-2", "1234567890"));
        assert_ne!(a, ExternalMeetingId::derive("cfg-1", "1234567891"));
        // The separator makes ("ab", "c") and ("a", "bc") different visits.
        assert_ne!(
            ExternalMeetingId::derive("ab", "c"),
            ExternalMeetingId::derive("a", "bc")
        );
        assert_eq!(a.as_str().len(), 35);
        assert!(a.as_str().starts_with("vb-"));
        assert!(!a.as_str().contains("1234567890"));
        assert!(
            a.as_str()[3..]
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
    }

    #[test]
    fn keyed_id_depends_on_the_secret() {
        let s1 = visitbridge_http::Secret::new("one");
        let s2 = visitbridge_http::Secret::new("two");
        let a = ExternalMeetingId::derive_keyed(&s1, "cfg", "42");
        assert_eq!(a, ExternalMeetingId::derive_keyed(&s1, "cfg", "42"));
        assert_ne!(a, ExternalMeetingId::derive_keyed(&s2, "cfg", "42"));
        assert_ne!(a, ExternalMeetingId::derive("cfg", "42"));
    }
}
