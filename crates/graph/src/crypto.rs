//! Decryption of Graph's encrypted notification content (rich notifications with resource data).
//!
//! Graph encrypts each notification's resource data for the certificate given in the subscription:
//! a fresh 256-bit symmetric key encrypts the data with AES-CBC (PKCS#7 padding, IV = the first 16
//! bytes of the key), signs the ciphertext with HMAC-SHA256 under the same key, and wraps the key
//! with RSA-OAEP (SHA-1, MGF1-SHA-1) for the certificate's public key. We unwrap the key, **verify
//! the HMAC in constant time before touching the ciphertext** (so a forged or altered payload never
//! reaches the CBC decryption, which is where padding oracles live), then decrypt.
//!
//! All of it is aws-lc-rs, already in the build for TLS; the `rsa` crate's private-key operations
//! carry an open timing advisory (RUSTSEC-2023-0071).

use std::fmt;

use aws_lc_rs::{
    cipher::{AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey},
    hmac,
    iv::FixedLength,
    rsa::{OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, PrivateDecryptingKey},
};
use base64::Engine as _;
use serde::Deserialize;

use crate::{error::GraphError, pem};

/// The certificate whose public key Graph encrypts notification content with, as sent in a
/// subscription (`encryptionCertificate` + `encryptionCertificateId`).
#[derive(Clone)]
pub struct EncryptionCertificate {
    id: String,
    der: Vec<u8>,
}

impl fmt::Debug for EncryptionCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionCertificate")
            .field("id", &self.id)
            .field("thumbprint", &pem::sha1_hex(&self.der))
            .finish()
    }
}

impl EncryptionCertificate {
    /// Reads a PEM certificate; `id` is our name for it, echoed back by Graph in each notification
    /// so we know which key to use while certificates rotate.
    pub fn from_pem(id: impl Into<String>, certificate_pem: &str) -> Result<Self, GraphError> {
        let der = pem::certificate_der(certificate_pem).ok_or_else(|| {
            GraphError::Invalid("encryption certificate is not a PEM certificate".into())
        })?;
        Ok(Self { id: id.into(), der })
    }

    /// Our id for the certificate.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The certificate as base64 DER, the form Graph wants in `encryptionCertificate`.
    pub fn base64_der(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.der)
    }

    /// The SHA-1 thumbprint (upper-case hex), as Graph sends it in `encryptionCertificateThumbprint`.
    pub fn thumbprint(&self) -> String {
        pem::sha1_hex(&self.der)
    }
}

/// Private keys for decrypting notification content, by certificate id (several while rotating).
#[derive(Default)]
pub struct DecryptionKeys {
    keys: Vec<DecryptionKey>,
}

struct DecryptionKey {
    certificate_id: String,
    thumbprint: Option<String>,
    key: OaepPrivateDecryptingKey,
}

impl fmt::Debug for DecryptionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptionKeys")
            .field(
                "certificate_ids",
                &self
                    .keys
                    .iter()
                    .map(|k| k.certificate_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl DecryptionKeys {
    /// No keys yet: add them with [`Self::with_key_pem`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the PKCS#8 PEM private key of the certificate with id `certificate_id`. When
    /// `certificate` is given, its thumbprint is checked against the one Graph sends.
    pub fn with_key_pem(
        mut self,
        certificate_id: impl Into<String>,
        private_key_pem: &str,
        certificate: Option<&EncryptionCertificate>,
    ) -> Result<Self, GraphError> {
        let der = pem::pkcs8_private_key_der(private_key_pem).ok_or_else(|| {
            GraphError::Invalid("decryption key is not a PKCS#8 PEM private key".into())
        })?;
        let key = PrivateDecryptingKey::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|_| GraphError::Invalid("decryption key is not an RSA key".into()))?;
        let key = OaepPrivateDecryptingKey::new(key)
            .map_err(|_| GraphError::Invalid("decryption key is not usable for RSA-OAEP".into()))?;
        self.keys.push(DecryptionKey {
            certificate_id: certificate_id.into(),
            thumbprint: certificate.map(EncryptionCertificate::thumbprint),
            key,
        });
        Ok(self)
    }

    /// Whether no key was added.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn find(&self, content: &EncryptedContent) -> Result<&DecryptionKey, GraphError> {
        let key = match content.encryption_certificate_id.as_deref() {
            Some(id) => self.keys.iter().find(|k| k.certificate_id == id),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
        .ok_or(GraphError::Decrypt(
            "no key for the encryption certificate id",
        ))?;
        if let (Some(ours), Some(theirs)) = (
            &key.thumbprint,
            content.encryption_certificate_thumbprint.as_deref(),
        ) && !ours.eq_ignore_ascii_case(theirs.trim())
        {
            return Err(GraphError::Decrypt("certificate thumbprint does not match"));
        }
        Ok(key)
    }
}

/// A notification's `encryptedContent`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EncryptedContent {
    data: String,
    data_key: String,
    data_signature: String,
    encryption_certificate_id: Option<String>,
    encryption_certificate_thumbprint: Option<String>,
}

/// Unwraps the key, checks the signature, then decrypts: returns the resource data JSON bytes.
pub(crate) fn decrypt(
    keys: &DecryptionKeys,
    content: &EncryptedContent,
) -> Result<Vec<u8>, GraphError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = keys.find(content)?;
    let wrapped = b64
        .decode(content.data_key.trim())
        .map_err(|_| GraphError::Decrypt("dataKey is not base64"))?;
    let mut unwrapped = vec![0u8; key.key.min_output_size()];
    let symmetric = key
        .key
        .decrypt(&OAEP_SHA1_MGF1SHA1, &wrapped, &mut unwrapped, None)
        .map_err(|_| GraphError::Decrypt("could not unwrap dataKey"))?;
    if symmetric.len() != 32 {
        return Err(GraphError::Decrypt("dataKey is not a 256-bit key"));
    }
    let mut data = b64
        .decode(content.data.trim())
        .map_err(|_| GraphError::Decrypt("data is not base64"))?;
    let signature = b64
        .decode(content.data_signature.trim())
        .map_err(|_| GraphError::Decrypt("dataSignature is not base64"))?;
    let mac_key = hmac::Key::new(hmac::HMAC_SHA256, symmetric);
    hmac::verify(&mac_key, &data, &signature)
        .map_err(|_| GraphError::Decrypt("dataSignature does not match"))?;
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&symmetric[..16]);
    let cipher_key = UnboundCipherKey::new(&AES_256, symmetric)
        .map_err(|_| GraphError::Decrypt("bad AES key"))?;
    let cipher = PaddedBlockDecryptingKey::cbc_pkcs7(cipher_key)
        .map_err(|_| GraphError::Decrypt("bad AES key"))?;
    let plain = cipher
        .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| GraphError::Decrypt("bad padding"))?;
    Ok(plain.to_vec())
}
