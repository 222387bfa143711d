//! Identifier and name newtypes, so that a tenant id cannot be passed where a configuration id is due.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// A value refused by one of the identifier constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct InvalidId {
    /// Which kind of identifier was refused, e.g. "tenant id".
    pub what: &'static str,
    /// Why, e.g. "must not be empty".
    pub reason: &'static str,
}

/// Common checks: identifiers are single tokens (no whitespace or control characters) of bounded
/// length, because they end up in URLs, database keys and log lines.
fn check_token(what: &'static str, value: &str, max_len: usize) -> Result<(), InvalidId> {
    if value.is_empty() {
        return Err(InvalidId {
            what,
            reason: "must not be empty",
        });
    }
    if value.len() > max_len {
        return Err(InvalidId {
            what,
            reason: "is too long",
        });
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidId {
            what,
            reason: "must not contain spaces or control characters",
        });
    }
    Ok(())
}

/// Secret references become part of an environment variable name at the launch service
/// (`VISITBRIDGE_EHR_SECRET_<name>`), so they are restricted to the characters every shell and
/// secret store accepts in such names; nothing else could steer which variable is read.
fn check_secret_ref(value: &str) -> Result<(), InvalidId> {
    if value.len() > SecretRef::MAX_LEN
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(InvalidId {
            what: "secret reference",
            reason: "must be 1 to 64 ASCII letters, digits or underscores",
        });
    }
    Ok(())
}

/// A token-like identifier: [`check_token`] with its own name and length bound, after an
/// optional extra check.
macro_rules! token_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal $(, $extra:path)?) => {
        crate::string_newtype! {
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
            pub struct $name;
            error: InvalidId,
            check: |value: &str| -> Result<(), InvalidId> {
                $($extra(value)?;)?
                check_token($what, value, $max)
            },
            new_doc: "Checks and wraps the value (non-empty, no whitespace, bounded length).",
            as_str_doc: "The value as text.",
        }
    };
}

token_newtype!(
    /// An organisation (tenant) of this VisitBridge deployment.
    TenantId,
    "tenant id",
    128
);
token_newtype!(
    /// One configuration (one FHIR base URL in one environment) of a tenant; chosen by the caller,
    /// typically a random UUID.
    ConfigurationId,
    "configuration id",
    128
);
token_newtype!(
    /// The EHR user's unique id as the EHR reports it at sign-in (e.g. the id_token's `fhirUser`,
    /// `Practitioner/abc`). The only EHR user data VisitBridge keeps.
    EhrUserId,
    "EHR user id",
    512
);
token_newtype!(
    /// An OAuth client id registered at the EHR for VisitBridge.
    ClientId,
    "client id",
    256
);
token_newtype!(
    /// The *name* of a secret held outside the configuration: configurations are shown in the
    /// portal, so they never hold the secret itself. 1 to 64 ASCII letters, digits or underscores;
    /// the launch service looks the name up in its own `[ehr_client_secrets]` or in the
    /// environment variable `VISITBRIDGE_EHR_SECRET_<name>`, never in a variable named freely.
    SecretRef,
    "secret reference",
    256,
    check_secret_ref
);

impl SecretRef {
    /// The longest secret reference accepted.
    pub const MAX_LEN: usize = 64;
}

/// A Microsoft (Entra ID) username, e.g. `analyst@contoso.org`.
///
/// Compared case-insensitively (Entra user principal names are), while the spelling the admin typed
/// is kept for display.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// Checks and wraps a username (non-empty, no whitespace, at most 256 characters).
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
        let value = value.into();
        check_token("username", &value, 256)?;
        Ok(Self(value))
    }

    /// The username as entered.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

impl PartialEq for Username {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.folded() == other.folded()
    }
}

impl Eq for Username {}

impl Hash for Username {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.folded().hash(state);
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, InvalidId> {
        Self::new(value)
    }
}

impl From<Username> for String {
    fn from(value: Username) -> String {
        value.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_compare_case_insensitively() {
        let a = Username::new("Analyst@Contoso.org").unwrap();
        let b = Username::new("analyst@contoso.ORG").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Analyst@Contoso.org");
        assert_ne!(a, Username::new("other@contoso.org").unwrap());
    }

    #[test]
    fn ids_refuse_empty_and_whitespace() {
        assert!(TenantId::new("").is_err());
        assert!(TenantId::new("a b").is_err());
        assert!(ConfigurationId::new("x".repeat(129)).is_err());
        let err = Username::new("").unwrap_err();
        assert_eq!(err.to_string(), "invalid username: must not be empty");
    }

    #[test]
    fn secret_refs_are_plain_names() {
        for good in ["EPIC_PROD", "a", "epic_prod_2", &"x".repeat(64)] {
            assert!(SecretRef::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "epic-prod",
            "a.b",
            "ÄBC",
            "a=b",
            "../x",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(SecretRef::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SecretRef::new("epic-prod").unwrap_err().to_string(),
            "invalid secret reference: must be 1 to 64 ASCII letters, digits or underscores"
        );
        let parsed: Result<SecretRef, _> = serde_json::from_str("\"A-B\"");
        assert!(parsed.is_err(), "stored values are checked too");
    }

    #[test]
    fn serde_checks_values() {
        let parsed: Result<TenantId, _> = serde_json::from_str("\"\"");
        assert!(parsed.is_err());
        let user: Username = serde_json::from_str("\"A@b.org\"").unwrap();
        assert_eq!(serde_json::to_string(&user).unwrap(), "\"A@b.org\"");
    }
}
