//! Client assertions verify with the public key and carry the claims SMART and Entra require.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use visitbridge_http::{ClientAssertionKey, random_token};

const RSA: &[u8] = include_bytes!("../../../testkit/fixtures/keys/client-rsa.pem");
const RSA_PUB: &[u8] = include_bytes!("../../../testkit/fixtures/keys/client-rsa.pub.pem");
const EC: &[u8] = include_bytes!("../../../testkit/fixtures/keys/client-ec384.pem");
const EC_PUB: &[u8] = include_bytes!("../../../testkit/fixtures/keys/client-ec384.pub.pem");

fn verify(token: &str, alg: Algorithm, key: DecodingKey) -> serde_json::Value {
    let mut v = Validation::new(alg);
    v.set_audience(&["https://ehr.example/token"]);
    v.set_issuer(&["my-client"]);
    decode::<serde_json::Value>(token, &key, &v).unwrap().claims
}

#[test]
fn rs384_assertion_has_smart_claims() {
    let key = ClientAssertionKey::from_pem(Algorithm::RS384, "k1", RSA).unwrap();
    let jwt = key
        .sign(
            "my-client",
            "https://ehr.example/token",
            Duration::from_secs(3600),
        )
        .unwrap();
    let header = decode_header(&jwt).unwrap();
    assert_eq!(header.kid.as_deref(), Some("k1"));
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let claims = verify(
        &jwt,
        Algorithm::RS384,
        DecodingKey::from_rsa_pem(RSA_PUB).unwrap(),
    );
    assert_eq!(claims["sub"], "my-client");
    let exp = claims["exp"].as_i64().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    assert!(exp - iat <= 300, "SMART caps exp at five minutes");
    let again = key
        .sign(
            "my-client",
            "https://ehr.example/token",
            Duration::from_secs(60),
        )
        .unwrap();
    let claims2 = verify(
        &again,
        Algorithm::RS384,
        DecodingKey::from_rsa_pem(RSA_PUB).unwrap(),
    );
    assert_ne!(claims["jti"], claims2["jti"], "jti must be unique");
}

#[test]
fn es384_assertion_verifies() {
    let key = ClientAssertionKey::from_pem(Algorithm::ES384, "ec", EC).unwrap();
    let jwt = key
        .sign(
            "my-client",
            "https://ehr.example/token",
            Duration::from_secs(60),
        )
        .unwrap();
    verify(
        &jwt,
        Algorithm::ES384,
        DecodingKey::from_ec_pem(EC_PUB).unwrap(),
    );
}

#[test]
fn public_jwk_verifies_signatures_and_hides_the_private_key() {
    let key = ClientAssertionKey::from_pem(Algorithm::RS384, "k1", RSA).unwrap();
    let jwk = key.public_jwk().unwrap();
    let json = serde_json::to_value(&jwk).unwrap();
    assert_eq!(json["kid"], "k1");
    assert_eq!(json["kty"], "RSA");
    assert!(json.get("d").is_none(), "private exponent leaked: {json}");
    let jwt = key
        .sign(
            "my-client",
            "https://ehr.example/token",
            Duration::from_secs(60),
        )
        .unwrap();
    verify(&jwt, Algorithm::RS384, DecodingKey::from_jwk(&jwk).unwrap());
    assert!(format!("{key:?}").contains("redacted"));
}

#[test]
fn x5t_is_the_certificate_sha1_thumbprint() {
    let key = ClientAssertionKey::from_pem(Algorithm::RS256, "cert", RSA)
        .unwrap()
        .with_x5t(b"not really a certificate");
    let jwt = key
        .sign(
            "my-client",
            "https://ehr.example/token",
            Duration::from_secs(60),
        )
        .unwrap();
    let header = decode_header(&jwt).unwrap();
    // SHA-1 of the bytes above, base64url without padding.
    assert_eq!(header.x5t.as_deref(), Some("g5DztFlkD2JoOESEorloCRcIr94"));
}

#[test]
fn random_tokens_are_long_and_distinct() {
    let a = random_token(16).unwrap();
    let b = random_token(16).unwrap();
    assert_eq!(a.len(), 22);
    assert_ne!(a, b);
}

#[test]
fn unsupported_algorithms_are_refused() {
    assert!(ClientAssertionKey::from_pem(Algorithm::HS256, "k", RSA).is_err());
}

#[test]
fn generated_es384_keys_sign_and_publish_their_public_half() {
    let key = ClientAssertionKey::generate_es384("fresh").unwrap();
    let jwk = key.public_jwk().unwrap();
    let json = serde_json::to_value(&jwk).unwrap();
    assert_eq!(json["kty"], "EC");
    assert_eq!(json["crv"], "P-384");
    assert!(json.get("d").is_none(), "private key leaked: {json}");
    let jwt = key
        .sign(
            "my-client",
            "https://ehr.example/token",
            Duration::from_secs(60),
        )
        .unwrap();
    verify(&jwt, Algorithm::ES384, DecodingKey::from_jwk(&jwk).unwrap());
    let other = ClientAssertionKey::generate_es384("fresh").unwrap();
    assert_ne!(
        serde_json::to_value(other.public_jwk().unwrap()).unwrap(),
        json,
        "each generated key is new"
    );
}
