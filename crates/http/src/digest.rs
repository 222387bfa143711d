//! The form in which bearer tokens are kept at rest.

/// The key a bearer token (a session cookie's value, a `state`) is stored under: the lower-case
/// hex SHA-256 of `token`. The token itself stays with its holder, so a copy of the database
/// hands out no live session; the token's entropy (ours are random) makes a salt unnecessary.
///
/// ```
/// let key = visitbridge_http::storage_key("session-value");
/// assert_eq!(key.len(), 64);
/// assert_ne!(key, "session-value");
/// ```
pub fn storage_key(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_key_is_sha256_hex() {
        // SHA-256("abc"), from FIPS 180-2.
        assert_eq!(
            storage_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
