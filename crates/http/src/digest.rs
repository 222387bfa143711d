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

/// The SHA-256 (lowercase hex) of `value` under `domain`: `SHA-256(domain || value)`, so that a
/// digest made for one purpose never equals one made for another.
pub fn domain_digest(domain: &[u8], value: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(domain);
    ctx.update(value.as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
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
