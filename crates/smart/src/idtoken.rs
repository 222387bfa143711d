//! id_token validation: signature against the issuer's JWKS, then `iss`, `aud`, `exp` and `nonce`.

use std::collections::BTreeMap;

use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use serde_json::{Map, Value};
use url::Url;
use visitbridge_http::JwksCache;

use crate::{SmartError, jwks::fetch_error};

/// The claims of an id_token that passed validation.
///
/// Only ever built by validation, so holding one means the signature, issuer, audience, expiry
/// and nonce were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct IdTokenClaims {
    /// The issuer (`iss`), as checked.
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
    /// The audiences (`aud`); ours is among them.
    pub audience: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub expires_at: i64,
    /// SMART's `fhirUser` (e.g. `Practitioner/abc` or an absolute URL to it).
    pub fhir_user: Option<String>,
    /// Every other claim (Entra's `oid`, `tid`, `preferred_username`, ...).
    pub other: BTreeMap<String, Value>,
}

impl IdTokenClaims {
    /// A string claim by name, from the named fields or [`Self::other`].
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        match name {
            "iss" => Some(&self.issuer),
            "sub" => Some(&self.subject),
            "fhirUser" => self.fhir_user.as_deref(),
            _ => self.other.get(name).and_then(Value::as_str),
        }
    }
}

/// What the token must say.
pub(crate) struct Expectations<'a> {
    /// The issuer; a `{tenantid}` placeholder (Entra's multi-tenant metadata) is replaced with
    /// the token's `tid` claim before comparing.
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) nonce: Option<&'a str>,
    pub(crate) jwks_uri: &'a Url,
}

fn reject(reason: impl Into<String>) -> SmartError {
    SmartError::IdToken(reason.into())
}

/// Validates `token`; never returns claims that were not checked.
pub(crate) async fn validate(
    jwks: &JwksCache,
    token: &str,
    expect: &Expectations<'_>,
) -> Result<IdTokenClaims, SmartError> {
    let header = decode_header(token).map_err(|_| reject("it is not a signed jwt"))?;
    // Symmetric algorithms and `none` are refused: the key would be the client secret or nothing.
    if !jwks.policy().accepts(header.alg) {
        return Err(reject(format!(
            "its algorithm {:?} is not accepted",
            header.alg
        )));
    }
    // Only keys under the token's kid, declared for its algorithm (if at all) and of its type.
    let usable: Vec<DecodingKey> = jwks
        .keys_for(expect.jwks_uri, &header)
        .await
        .map_err(fetch_error)?;
    if usable.is_empty() {
        return Err(reject("no key of the issuer matches its kid and algorithm"));
    }

    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[expect.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 60;
    let mut last = None;
    let mut claims = None;
    for key in &usable {
        match decode::<Map<String, Value>>(token, key, &validation) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(e) => {
                let signature_failed = matches!(e.kind(), ErrorKind::InvalidSignature);
                last = Some(e);
                if !signature_failed {
                    break;
                }
            }
        }
    }
    let Some(claims) = claims else {
        return Err(reject(match last.as_ref().map(|e| e.kind()) {
            Some(ErrorKind::InvalidSignature) => {
                "its signature does not verify with the issuer's keys".to_owned()
            }
            Some(ErrorKind::ExpiredSignature) => "it has expired".to_owned(),
            Some(ErrorKind::InvalidAudience) => "it was issued for another client (aud)".to_owned(),
            Some(ErrorKind::ImmatureSignature) => "it is not valid yet".to_owned(),
            Some(ErrorKind::MissingRequiredClaim(c)) => format!("it has no {c} claim"),
            Some(ErrorKind::InvalidClaimFormat(c)) => format!("its {c} claim is malformed"),
            _ => "it could not be decoded".to_owned(),
        }));
    };
    check_claims(claims, expect)
}

fn check_claims(
    mut claims: Map<String, Value>,
    expect: &Expectations<'_>,
) -> Result<IdTokenClaims, SmartError> {
    let take_str = |claims: &mut Map<String, Value>, name: &str| match claims.remove(name) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let issuer = take_str(&mut claims, "iss").ok_or_else(|| reject("it has no iss claim"))?;
    let expected_issuer = if expect.issuer.contains("{tenantid}") {
        let tid = claims
            .get("tid")
            .and_then(Value::as_str)
            .ok_or_else(|| reject("it has no tid claim for a multi-tenant issuer"))?;
        expect.issuer.replace("{tenantid}", tid)
    } else {
        expect.issuer.to_owned()
    };
    if issuer.trim_end_matches('/') != expected_issuer.trim_end_matches('/') {
        return Err(reject("it was issued by another issuer (iss)"));
    }
    let subject = take_str(&mut claims, "sub").ok_or_else(|| reject("it has no sub claim"))?;
    let audience: Vec<String> = match claims.remove("aud") {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    // OpenID Connect core 3.1.3.7: with several audiences, `azp` must name us.
    if audience.len() > 1 && claims.get("azp").and_then(Value::as_str) != Some(expect.audience) {
        return Err(reject(
            "it has several audiences and azp is not this client",
        ));
    }
    if let Some(expected) = expect.nonce {
        let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        let same = aws_lc_rs::constant_time::verify_slices_are_equal(
            nonce.as_bytes(),
            expected.as_bytes(),
        )
        .is_ok();
        if !same {
            return Err(reject("its nonce does not match the one we sent"));
        }
    }
    let expires_at = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let fhir_user = take_str(&mut claims, "fhirUser");
    Ok(IdTokenClaims {
        issuer,
        subject,
        audience,
        expires_at,
        fhir_user,
        other: claims.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(
        claims: Value,
        issuer: &str,
        nonce: Option<&str>,
    ) -> Result<IdTokenClaims, SmartError> {
        let jwks_uri = Url::parse("https://login.example/keys").expect("url");
        let Value::Object(map) = claims else {
            panic!("claims must be an object")
        };
        check_claims(
            map,
            &Expectations {
                issuer,
                audience: "client-1",
                nonce,
                jwks_uri: &jwks_uri,
            },
        )
    }

    #[test]
    fn entra_multi_tenant_issuer_is_filled_from_tid() {
        let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let claims = json!({
            "iss": "https://login.microsoftonline.com/tenant-a/v2.0",
            "sub": "s", "aud": "client-1", "exp": 1, "tid": "tenant-a", "oid": "o-1"
        });
        let ok = check(claims.clone(), template, None).expect("valid");
        assert_eq!(ok.str_claim("oid"), Some("o-1"));
        assert_eq!(ok.str_claim("tid"), Some("tenant-a"));

        let mut other_tenant = claims.clone();
        other_tenant["tid"] = json!("tenant-b");
        assert!(
            check(other_tenant, template, None).is_err(),
            "iss must match the token's own tid"
        );
        let mut no_tid = claims;
        no_tid.as_object_mut().expect("object").remove("tid");
        assert!(check(no_tid, template, None).is_err());
    }

    #[test]
    fn several_audiences_need_azp_and_nonce_must_match() {
        let base = json!({"iss": "https://ehr/oauth2", "sub": "s", "exp": 1, "nonce": "n-1"});
        let mut multi = base.clone();
        multi["aud"] = json!(["client-1", "other"]);
        assert!(check(multi.clone(), "https://ehr/oauth2", Some("n-1")).is_err());
        multi["azp"] = json!("client-1");
        assert!(check(multi.clone(), "https://ehr/oauth2", Some("n-1")).is_ok());
        assert!(check(multi.clone(), "https://ehr/oauth2", Some("n-2")).is_err());
        let mut no_nonce = multi;
        no_nonce.as_object_mut().expect("object").remove("nonce");
        assert!(check(no_nonce, "https://ehr/oauth2", Some("n-1")).is_err());
    }
}
