//! PKCE, state and nonce, and the authorization request in its GET and POST forms.

use std::fmt;

use base64::Engine as _;
use url::Url;
use visitbridge_http::{Secret, random_token};

use crate::SmartError;

/// A PKCE pair (RFC 7636, `S256` only: `plain` is never used).
pub(crate) struct Pkce {
    pub(crate) verifier: Secret,
    pub(crate) challenge: String,
}

impl Pkce {
    /// A fresh verifier of 256 random bits (43 characters) and its S256 challenge.
    pub(crate) fn new() -> Result<Self, SmartError> {
        let verifier = Secret::new(random_token(32)?);
        let challenge = s256_challenge(verifier.expose());
        Ok(Self {
            verifier,
            challenge,
        })
    }
}

/// `BASE64URL(SHA256(verifier))` without padding.
pub(crate) fn s256_challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// A fresh `state` (256 random bits, 43 URL-safe characters).
pub(crate) fn new_state() -> Result<Secret, SmartError> {
    Ok(Secret::new(random_token(32)?))
}

/// A fresh OpenID Connect `nonce` (128 random bits).
pub(crate) fn new_nonce() -> Result<String, SmartError> {
    Ok(random_token(16)?)
}

/// Where to send the user's browser: the authorization endpoint and its parameters, as a URL for
/// a redirect (GET) or as the fields of an auto-submitting form (POST).
///
/// Epic recommends POST for EHR launches (the query string of a GET can grow too long); the server
/// says it accepts POST with the `authorize-post` capability ([`Self::prefers_post`]).
#[derive(Clone)]
pub struct AuthorizationRequest {
    endpoint: Url,
    params: Vec<(String, String)>,
    state: Secret,
    prefers_post: bool,
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The parameters hold the state (and the EHR's one-time `launch`): show only the names.
        let names: Vec<&str> = self.params.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("AuthorizationRequest")
            .field("endpoint", &crate::error::endpoint_label(&self.endpoint))
            .field("params", &names)
            .field("prefers_post", &self.prefers_post)
            .finish()
    }
}

impl AuthorizationRequest {
    pub(crate) fn new(
        endpoint: Url,
        params: Vec<(String, String)>,
        state: Secret,
        prefers_post: bool,
    ) -> Self {
        Self {
            endpoint,
            params,
            state,
            prefers_post,
        }
    }

    /// The GET form: the authorization endpoint with every parameter in the query string.
    pub fn url(&self) -> Url {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().extend_pairs(self.params.iter());
        url
    }

    /// The POST form's target (the authorization endpoint).
    pub fn form_action(&self) -> &Url {
        &self.endpoint
    }

    /// The POST form's fields (`application/x-www-form-urlencoded`), in a stable order.
    pub fn form_fields(&self) -> &[(String, String)] {
        &self.params
    }

    /// One parameter's value (e.g. `"scope"`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `state` sent: bind it to the browser session (e.g. a cookie) and compare on callback.
    pub fn state(&self) -> &Secret {
        &self.state
    }

    /// Whether the server accepts POST to its authorization endpoint (`authorize-post`).
    pub fn prefers_post(&self) -> bool {
        self.prefers_post
    }
}

/// The query of the redirect back to us: a code and the state, or an OAuth error.
#[derive(Debug, Clone)]
pub struct Callback {
    /// The authorization code (single use; never logged).
    pub code: Secret,
    /// The `state` echoed by the server.
    pub state: String,
}

impl Callback {
    /// Parses the callback's query string (without the leading `?`).
    ///
    /// A query that repeats `code`, `state`, `error` or `error_description` becomes
    /// [`SmartError::MalformedCallback`], whatever else it holds: every reader of the query then
    /// sees the same single value. Otherwise an `error` parameter becomes
    /// [`SmartError::AuthorizationDenied`]; a missing `code` or `state` becomes
    /// [`SmartError::StateUnknownOrUsed`].
    pub fn from_query(query: &str) -> Result<Self, SmartError> {
        let mut code = None;
        let mut state = None;
        let mut error = None;
        let mut description = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let (parameter, slot) = match k.as_ref() {
                "code" => ("code", &mut code),
                "state" => ("state", &mut state),
                "error" => ("error", &mut error),
                "error_description" => ("error_description", &mut description),
                _ => continue,
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(SmartError::MalformedCallback { parameter });
            }
        }
        if let Some(error) = error {
            return Err(SmartError::AuthorizationDenied {
                error: error.chars().take(100).collect(),
                description: description.map(|d| d.chars().take(300).collect()),
            });
        }
        match (code, state) {
            (Some(code), Some(state)) if !code.is_empty() && !state.is_empty() => Ok(Self {
                code: Secret::new(code),
                state,
            }),
            _ => Err(SmartError::StateUnknownOrUsed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn fresh_values_are_long_and_distinct() {
        let a = Pkce::new().expect("pkce");
        let b = Pkce::new().expect("pkce");
        assert_eq!(a.verifier.expose().len(), 43);
        assert_ne!(a.verifier.expose(), b.verifier.expose());
        assert_eq!(a.challenge, s256_challenge(a.verifier.expose()));
        assert!(new_state().expect("state").expose().len() >= 22);
    }

    #[test]
    fn callback_refuses_repeated_parameters() {
        for (query, parameter) in [
            ("state=A&code=X&state=B", "state"),
            ("code=X&state=A&code=Y", "code"),
            ("state=A&code=X&code=X", "code"),
            ("error=access_denied&state=A&error=x", "error"),
            (
                "error=access_denied&error_description=a&error_description=b&state=A",
                "error_description",
            ),
            ("code=X&state=A&st%61te=B", "state"),
        ] {
            let e = Callback::from_query(query).expect_err(query);
            assert!(
                matches!(e, SmartError::MalformedCallback { parameter: p } if p == parameter),
                "{query}: {e:?}"
            );
        }
        let e = Callback::from_query("state=A&code=secret-code&state=B").expect_err("repeat");
        assert_eq!(
            e.to_string(),
            "the callback is malformed: it repeats the state parameter"
        );
        // Other parameters may repeat (the server may add its own).
        let c = Callback::from_query("code=X&state=A&iss=a&iss=b").expect("callback");
        assert_eq!(c.state, "A");
    }

    #[test]
    fn callback_parses_code_state_and_errors() {
        let c = Callback::from_query("code=abc&state=xyz").expect("callback");
        assert_eq!(c.code.expose(), "abc");
        assert_eq!(c.state, "xyz");
        assert!(!format!("{c:?}").contains("abc"));
        let e = Callback::from_query("error=access_denied&error_description=user+said+no&state=x")
            .expect_err("denied");
        assert!(
            matches!(e, SmartError::AuthorizationDenied { ref error, .. } if error == "access_denied")
        );
        assert_eq!(
            e.to_string(),
            "the authorization server refused the authorization: access_denied (user said no)"
        );
        assert!(matches!(
            Callback::from_query("state=x"),
            Err(SmartError::StateUnknownOrUsed)
        ));
    }
}
