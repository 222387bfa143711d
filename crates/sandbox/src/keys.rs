//! The RS256 key each simulated identity provider signs its id_tokens with, and its JWKS.
//!
//! A fresh RSA key is generated at start-up unless a PEM is configured: nothing to ship, nothing
//! to leak, and a restarted sandbox gets a new `kid` (clients refetch the JWKS on an unknown
//! `kid`, as they must with real providers).

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};

use crate::{SandboxError, util};

/// A private RSA key with its key id.
pub(crate) struct SigningKey {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The configured PKCS#8 PEM, or a freshly generated 2048-bit key; `kid_prefix` names the
    /// provider in the key id.
    pub(crate) fn new(kid_prefix: &str, pem: Option<&str>) -> Result<Self, SandboxError> {
        let generated;
        let pem = match pem {
            Some(pem) => pem,
            None => {
                generated = generate_pem()?;
                &generated
            }
        };
        let kid = format!("{kid_prefix}-{}", util::random_token(6)?);
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| SandboxError::Key(e.to_string()))?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)
            .map_err(|e| SandboxError::Key(e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let jwk = serde_json::to_value(jwk).map_err(|e| SandboxError::Key(e.to_string()))?;
        Ok(Self { kid, key, jwk })
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid`.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
    }

    /// The JWKS document with the public key.
    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }
}

fn generate_pem() -> Result<String, SandboxError> {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| SandboxError::Key("rsa key generation failed".into()))?;
    let der: Pkcs8V1Der<'static> = pair
        .as_der()
        .map_err(|_| SandboxError::Key("rsa key encoding failed".into()))?;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};

    #[test]
    fn a_generated_key_signs_what_its_jwks_verifies() {
        let key = SigningKey::new("test", None).expect("key");
        let token = key
            .sign(&json!({"sub": "s", "exp": chrono::Utc::now().timestamp() + 60}))
            .expect("sign");
        let set: JwkSet = serde_json::from_value(key.jwks()).expect("jwks");
        let jwk = set.find(&key.kid).expect("kid listed");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_jwk(jwk).expect("decoding key"),
            &validation,
        )
        .expect("verifies");
        assert_eq!(data.claims["sub"], "s");
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
