//! Sealed values: small payloads a browser carries for us (a pending launch in a cookie) that it
//! can neither read nor alter, and that lapse.
//!
//! AES-256-GCM (aws-lc-rs, the one crypto provider) under a key derived with HKDF-SHA256 from a
//! deployment secret and a **purpose** label, so a value sealed for one purpose never opens for
//! another. Each seal draws a fresh random 96-bit nonce. The expiry is inside the authenticated
//! plaintext, and a caller's `context` (e.g. the OAuth `state` the value belongs to) is bound as
//! associated data: a value moved to another context does not open.
//!
//! Text form: base64url (no padding) of `version (1) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`.

use std::fmt;

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    hkdf,
};
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::Secret;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
/// HKDF salt: fixed, so the same secret and purpose give the same key on every replica.
const SALT: &[u8] = b"visitbridge/sealed/v1";
/// The least secret length a key is derived from.
const MIN_SECRET_LEN: usize = 32;

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The secret is shorter than 32 bytes.
    #[error("the secret to derive a sealing key from must be at least 32 bytes")]
    ShortSecret,
    /// Not a sealed value of this format (bad encoding, too short, unknown version).
    #[error("the sealed value is malformed")]
    Malformed,
    /// The value was altered, or sealed with another key, purpose or context.
    #[error("the sealed value does not open with this key and context")]
    Rejected,
    /// The value opened, but its lifetime is over.
    #[error("the sealed value expired")]
    Expired,
    /// The crypto library failed (no randomness, key setup).
    #[error("sealing failed")]
    Crypto,
}

/// Seals and opens values for one purpose. `Debug` shows no key material.
pub struct Sealer {
    key: LessSafeKey,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// The sealer of `purpose` (e.g. `"launch-cookie/v1"`) under `secret` (at least 32 bytes).
    pub fn derive(secret: &Secret, purpose: &str) -> Result<Self, SealError> {
        if secret.expose().len() < MIN_SECRET_LEN {
            return Err(SealError::ShortSecret);
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret.expose().as_bytes());
        let info = [purpose.as_bytes()];
        let mut bytes = [0u8; 32];
        prk.expand(&info, &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut bytes))
            .map_err(|_| SealError::Crypto)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::Crypto)?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// Seals `payload` for `context` until `expires_at`.
    pub fn seal(
        &self,
        context: &[u8],
        payload: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Crypto)?;
        let mut in_out = Vec::with_capacity(8 + payload.len() + TAG_LEN);
        in_out.extend_from_slice(&expires_at.timestamp().to_be_bytes());
        in_out.extend_from_slice(payload);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut in_out,
            )
            .map_err(|_| SealError::Crypto)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&in_out);
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`Self::seal`] made for `context`, if it has not expired at `now`.
    pub fn open(
        &self,
        context: &[u8],
        sealed: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, SealError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SealError::Malformed)?;
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Err(SealError::Malformed);
        };
        if rest.len() < NONCE_LEN + 8 + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
        let mut in_out = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut in_out)
            .map_err(|_| SealError::Rejected)?;
        let (expiry, payload) = plain.split_at(8);
        let expiry = i64::from_be_bytes(expiry.try_into().map_err(|_| SealError::Malformed)?);
        if now.timestamp() >= expiry {
            return Err(SealError::Expired);
        }
        Ok(payload.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-deployment-secret-0123456789abcdef";

    fn sealer(secret: &str, purpose: &str) -> Sealer {
        Sealer::derive(&Secret::new(secret), purpose).unwrap()
    }

    fn later() -> DateTime<Utc> {
        Utc::now() + chrono::Duration::minutes(10)
    }

    #[test]
    fn a_sealed_value_opens_for_its_context_and_hides_its_payload() {
        let s = sealer(SECRET, "launch-cookie/v1");
        let sealed = s.seal(b"state-1", b"the-verifier", later()).unwrap();
        assert!(!sealed.contains("the-verifier"));
        assert_eq!(
            s.open(b"state-1", &sealed, Utc::now()).unwrap(),
            b"the-verifier"
        );
        // Fresh nonce per seal: the same payload seals differently.
        assert_ne!(
            sealed,
            s.seal(b"state-1", b"the-verifier", later()).unwrap()
        );
    }

    #[test]
    fn tampering_is_refused() {
        let s = sealer(SECRET, "launch-cookie/v1");
        let sealed = s.seal(b"state-1", b"payload", later()).unwrap();
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&sealed)
            .unwrap();
        for at in [1, 14, bytes.len() - 1] {
            bytes[at] ^= 1;
            let altered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
            assert!(matches!(
                s.open(b"state-1", &altered, Utc::now()),
                Err(SealError::Rejected)
            ));
            bytes[at] ^= 1;
        }
        assert!(matches!(
            s.open(b"state-1", &sealed[..sealed.len() - 4], Utc::now()),
            Err(SealError::Rejected | SealError::Malformed)
        ));
        for junk in ["", "not base64 !", "AQ", "Ag"] {
            assert!(matches!(
                s.open(b"state-1", junk, Utc::now()),
                Err(SealError::Malformed)
            ));
        }
    }

    #[test]
    fn another_key_purpose_or_context_is_refused() {
        let s = sealer(SECRET, "launch-cookie/v1");
        let sealed = s.seal(b"state-1", b"payload", later()).unwrap();
        let other_key = sealer(
            "another-deployment-secret-0123456789abcdef",
            "launch-cookie/v1",
        );
        let other_purpose = sealer(SECRET, "something-else/v1");
        for other in [&other_key, &other_purpose] {
            assert!(matches!(
                other.open(b"state-1", &sealed, Utc::now()),
                Err(SealError::Rejected)
            ));
        }
        assert!(matches!(
            s.open(b"state-2", &sealed, Utc::now()),
            Err(SealError::Rejected)
        ));
    }

    #[test]
    fn an_expired_value_is_refused() {
        let s = sealer(SECRET, "launch-cookie/v1");
        let expires = Utc::now() + chrono::Duration::seconds(60);
        let sealed = s.seal(b"c", b"payload", expires).unwrap();
        assert!(
            s.open(b"c", &sealed, expires - chrono::Duration::seconds(1))
                .is_ok()
        );
        assert!(matches!(
            s.open(b"c", &sealed, expires),
            Err(SealError::Expired)
        ));
    }

    #[test]
    fn a_short_secret_is_refused_and_debug_hides_the_key() {
        assert!(matches!(
            Sealer::derive(&Secret::new("short"), "p"),
            Err(SealError::ShortSecret)
        ));
        assert_eq!(format!("{:?}", sealer(SECRET, "p")), "Sealer([redacted])");
    }
}
