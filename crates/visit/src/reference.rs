//! What a visit row keeps of the EHR's ids of its patient and appointment once they have served
//! their purpose: a keyed hash (HMAC-SHA256 under the deployment secret), enough to tell whether a
//! later launch's attested patient and appointment are the row's, not enough to learn them.
//!
//! The hash is bound to the configuration (one EHR's patient id names nobody at another's) and to
//! the kind of id, so the same text hashed as a patient and as an appointment gives two keys.

use std::fmt;

use serde::{Deserialize, Serialize};
use visitbridge_http::Secret;

/// The version prefix of a [`ReferenceKey`]: a key made another way would carry another one.
const PREFIX: &str = "rk1-";

/// What an EHR id names, for [`ReferenceKeys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    /// A FHIR Patient's logical id.
    Patient,
    /// A FHIR Appointment's logical id.
    Appointment,
}

impl ReferenceKind {
    fn label(self) -> &'static str {
        match self {
            Self::Patient => "Patient",
            Self::Appointment => "Appointment",
        }
    }
}

/// The keyed hash of one EHR id: `rk1-` and 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReferenceKey(String);

impl ReferenceKey {
    /// Wraps a key read back from storage (not checked: a stored key is compared, never parsed).
    pub fn from_stored(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReferenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Makes [`ReferenceKey`]s under the reference secret.
#[derive(Clone)]
pub struct ReferenceKeys {
    key: aws_lc_rs::hmac::Key,
}

impl fmt::Debug for ReferenceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReferenceKeys(..)")
    }
}

impl ReferenceKeys {
    /// Keys under `secret` (the reference secret: every replica, and the portal, share it; it is
    /// not the deployment secret, which signs patient links and must stay with the launch
    /// service).
    pub fn new(secret: &Secret) -> Self {
        Self {
            key: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                secret.expose().as_bytes(),
            ),
        }
    }

    /// Keys under a secret derived from the deployment secret (HMAC-SHA256 of a fixed label):
    /// what the launch service uses when no reference secret of its own is configured. The
    /// derived value tells nothing of the deployment secret, but only the launch service can
    /// make it.
    pub fn derived_from(deployment_secret: &Secret) -> Self {
        let key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            deployment_secret.expose().as_bytes(),
        );
        let derived = aws_lc_rs::hmac::sign(&key, b"visitbridge-reference-keys-v1");
        Self {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    /// The key of `id` (trimmed), an id of `kind` at the EHR of `configuration`.
    pub fn key(&self, configuration: &str, kind: ReferenceKind, id: &str) -> ReferenceKey {
        // Length-prefixed parts: no two different inputs make the same message.
        let mut message = Vec::with_capacity(64 + configuration.len() + id.len());
        for part in [
            "visitbridge-reference-v1",
            configuration,
            kind.label(),
            id.trim(),
        ] {
            message.extend_from_slice(&(part.len() as u64).to_be_bytes());
            message.extend_from_slice(part.as_bytes());
        }
        let tag = aws_lc_rs::hmac::sign(&self.key, &message);
        let mut out = String::with_capacity(PREFIX.len() + 64);
        out.push_str(PREFIX);
        for byte in tag.as_ref() {
            out.push_str(&format!("{byte:02x}"));
        }
        ReferenceKey(out)
    }

    /// The key of a patient id of `configuration`'s EHR.
    pub fn patient(&self, configuration: &str, id: &str) -> ReferenceKey {
        self.key(configuration, ReferenceKind::Patient, id)
    }

    /// The key of an appointment id of `configuration`'s EHR.
    pub fn appointment(&self, configuration: &str, id: &str) -> ReferenceKey {
        self.key(configuration, ReferenceKind::Appointment, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> ReferenceKeys {
        ReferenceKeys::new(&Secret::new(secret.to_owned()))
    }

    #[test]
    fn a_key_hides_the_id_and_depends_on_secret_configuration_and_kind() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let key = k.patient("cfg-1", "erXuFYUfucBZaryVksYEcMg3");
        assert!(key.as_str().starts_with("rk1-"), "{key}");
        assert_eq!(key.as_str().len(), 4 + 64);
        assert!(!key.as_str().contains("erXuFYUfucBZaryVksYEcMg3"));
        assert_eq!(key, k.patient("cfg-1", " erXuFYUfucBZaryVksYEcMg3 "));
        assert_ne!(key, k.appointment("cfg-1", "erXuFYUfucBZaryVksYEcMg3"));
        assert_ne!(key, k.patient("cfg-2", "erXuFYUfucBZaryVksYEcMg3"));
        assert_ne!(
            key,
            keys("another-secret-another-secret-xx").patient("cfg-1", "erXuFYUfucBZaryVksYEcMg3")
        );
        // Parts cannot slide into each other.
        assert_ne!(k.patient("cfg", "1x"), k.patient("cfg1", "x"));
        // Derived keys are not the deployment secret's own.
        let secret = Secret::new("0123456789abcdef0123456789abcdef".to_owned());
        assert_ne!(
            ReferenceKeys::derived_from(&secret).patient("cfg-1", "p"),
            k.patient("cfg-1", "p")
        );
    }
}
