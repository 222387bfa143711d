//! Our public keys as a JWKS document.

use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};
use visitbridge_smart::Jwks;

use crate::common::*;

#[test]
fn jwks_lists_public_keys_only_and_they_verify_our_assertions() {
    let rsa = rsa_key();
    let ec = ec_key();
    let doc = Jwks::from_keys(&[rsa.clone(), ec.clone()])
        .expect("jwks")
        .to_json();
    let keys = doc["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2);

    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["kid"], CLIENT_KID);
    assert_eq!(keys[0]["alg"], "RS384");
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0]["n"].is_string() && keys[0]["e"].is_string());
    assert_eq!(keys[1]["kty"], "EC");
    assert_eq!(keys[1]["crv"], "P-384");
    assert_eq!(keys[1]["alg"], "ES384");
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} published"
            );
        }
    }

    // What we publish verifies what we sign.
    for (key, published) in [(&rsa, &keys[0]), (&ec, &keys[1])] {
        let assertion = key
            .sign(
                CLIENT_ID,
                "https://ehr.example/token",
                std::time::Duration::from_secs(60),
            )
            .expect("sign");
        let jwk: Jwk = serde_json::from_value(published.clone()).expect("jwk");
        let mut validation = Validation::new(key.algorithm());
        validation.set_audience(&["https://ehr.example/token"]);
        jsonwebtoken::decode::<serde_json::Value>(
            &assertion,
            &DecodingKey::from_jwk(&jwk).expect("decoding key"),
            &validation,
        )
        .expect("verifies");
    }
}
