//! Just enough PEM to read the keys and certificates an operator hands us.

use base64::Engine as _;

/// The DER inside the first `-----BEGIN {label}-----` block of `pem`.
pub(crate) fn decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
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
        let pem = "junk\n-----BEGIN THING-----\nAQID\nBA==\n-----END THING-----\n";
        assert_eq!(decode(pem, "THING"), Some(vec![1, 2, 3, 4]));
        assert_eq!(decode(pem, "OTHER"), None);
        assert_eq!(sha1_hex(b"").len(), 40);
    }
}
