//! The keys and certificates an operator hands us, read with `rustls-pki-types`' PEM decoder.

use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, pem::PemObject as _};

/// The DER of the first `CERTIFICATE` block of `pem`.
pub(crate) fn certificate_der(pem: &str) -> Option<Vec<u8>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|der| der.as_ref().to_vec())
}

/// The first PKCS#8 `PRIVATE KEY` block of `pem` (its memory is wiped when dropped).
pub(crate) fn pkcs8_private_key_der(pem: &str) -> Option<PrivatePkcs8KeyDer<'static>> {
    PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).ok()
}

/// The SHA-1 thumbprint of a certificate, upper-case hex, as Windows and Graph print it.
pub(crate) fn sha1_hex(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_labelled_block_only() {
        let pem = "junk\n-----BEGIN CERTIFICATE-----\nAQID\nBA==\n-----END CERTIFICATE-----\n";
        assert_eq!(certificate_der(pem), Some(vec![1, 2, 3, 4]));
        assert!(pkcs8_private_key_der(pem).is_none());
        let key = "-----BEGIN PRIVATE KEY-----\nAQID\nBA==\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            pkcs8_private_key_der(key).map(|der| der.secret_pkcs8_der().to_vec()),
            Some(vec![1, 2, 3, 4])
        );
        assert_eq!(certificate_der(key), None);
        assert_eq!(sha1_hex(b"").len(), 40);
    }
}
