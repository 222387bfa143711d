//! `private_key_jwt` client assertions, their public JWK, and random tokens.

use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde::Serialize;

/// Errors signing an assertion or loading its key.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    /// The PEM could not be read as a private key of the expected kind.
    #[error("invalid signing key: {0}")]
    Key(#[source] jsonwebtoken::errors::Error),
    /// Only RS256, RS384 and ES384 assertions are supported.
    #[error("unsupported assertion algorithm {0:?}: use RS384, ES384 or RS256")]
    Algorithm(Algorithm),
    /// Signing failed.
    #[error("could not sign the client assertion: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// The system random source failed.
    #[error("the system random source failed")]
    Random,
}

/// A private key that signs client assertions (RFC 7523), with its key id.
///
/// SMART backend services want RS384 or ES384 and a `kid` that matches our published JWKS; Entra ID
/// wants RS256 with the certificate's SHA-1 thumbprint in `x5t` (set it with [`Self::with_x5t`]).
#[derive(Clone)]
pub struct ClientAssertionKey {
    algorithm: Algorithm,
    kid: String,
    x5t: Option<String>,
    key: EncodingKey,
}

impl std::fmt::Debug for ClientAssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAssertionKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// The algorithms a backend (SMART Backend Services) or sign-in key may use: RS384 or ES384,
/// the two SMART App Launch 2.x requires servers to support.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-384 (an RSA key).
    #[default]
    RS384,
    /// ECDSA P-384 with SHA-384.
    ES384,
}

impl KeyAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            Self::RS384 => Algorithm::RS384,
            Self::ES384 => Algorithm::ES384,
        }
    }
}

impl ClientAssertionKey {
    /// Loads a PKCS#8 (or PKCS#1 / SEC1) PEM private key for `algorithm` with key id `kid`.
    pub fn from_pem_with(
        algorithm: KeyAlgorithm,
        kid: impl Into<String>,
        pem: &[u8],
    ) -> Result<Self, AssertionError> {
        Self::from_pem(algorithm.jwt(), kid, pem)
    }

    /// Loads a PKCS#8 (or PKCS#1 / SEC1) PEM private key for `algorithm` with key id `kid`.
    pub fn from_pem(
        algorithm: Algorithm,
        kid: impl Into<String>,
        pem: &[u8],
    ) -> Result<Self, AssertionError> {
        let key = match algorithm {
            Algorithm::RS256 | Algorithm::RS384 => EncodingKey::from_rsa_pem(pem),
            Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            other => return Err(AssertionError::Algorithm(other)),
        }
        .map_err(AssertionError::Key)?;
        Ok(Self {
            algorithm,
            kid: kid.into(),
            x5t: None,
            key,
        })
    }

    /// Generates a fresh P-384 key for ES384 assertions: for the sandbox and first runs, where no
    /// key has been provisioned yet. Production keys come from [`Self::from_pem`].
    pub fn generate_es384(kid: impl Into<String>) -> Result<Self, AssertionError> {
        let document = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .map_err(|_| AssertionError::Random)?;
        let body = base64::engine::general_purpose::STANDARD.encode(document.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Self::from_pem(Algorithm::ES384, kid, pem.as_bytes())
    }

    /// Adds the certificate's SHA-1 thumbprint (base64url) as `x5t`, as Entra ID expects.
    pub fn with_x5t(mut self, certificate_der: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            certificate_der,
        );
        self.x5t = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()));
        self
    }

    /// The key id published in the JWKS and sent in each assertion's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Signs an assertion for `client_id` (as `iss` and `sub`) towards `audience` (the token URL),
    /// valid for `lifetime` (SMART allows at most five minutes), with a fresh random `jti`.
    pub fn sign(
        &self,
        client_id: &str,
        audience: &str,
        lifetime: Duration,
    ) -> Result<String, AssertionError> {
        let now = chrono::Utc::now().timestamp();
        let lifetime = lifetime.min(Duration::from_secs(300));
        let claims = AssertionClaims {
            iss: client_id,
            sub: client_id,
            aud: audience,
            jti: random_token(16)?,
            iat: now,
            nbf: now,
            exp: now + i64::try_from(lifetime.as_secs()).unwrap_or(300),
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.kid.clone());
        header.x5t.clone_from(&self.x5t);
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(AssertionError::Sign)
    }

    /// The public half as a JWK (with `kid`, `alg` and `use: sig`), for our JWKS document.
    pub fn public_jwk(&self) -> Result<Jwk, AssertionError> {
        let mut jwk =
            Jwk::from_encoding_key(&self.key, self.algorithm).map_err(AssertionError::Key)?;
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(jwk)
    }
}

/// A URL-safe random string carrying `bytes` bytes of entropy (16 bytes = 128 bits).
pub fn random_token(bytes: usize) -> Result<String, AssertionError> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| AssertionError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}
