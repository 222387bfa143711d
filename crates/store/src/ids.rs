//! Identifiers of Microsoft (Entra ID) directory objects, as kept in user links and tenants.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::StoreError;

macro_rules! directory_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps the id: non-empty, at most 128 characters, no whitespace.
            pub fn new(value: impl Into<String>) -> Result<Self, StoreError> {
                let value = value.into();
                if value.is_empty()
                    || value.len() > 128
                    || value.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(StoreError::InvalidRecord(concat!(
                        $what,
                        " must be 1 to 128 characters without spaces"
                    )));
                }
                Ok(Self(value))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = StoreError;
            fn try_from(value: String) -> Result<Self, StoreError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

directory_id!(
    /// A Microsoft Entra tenant id (the `tid` claim), a GUID.
    MicrosoftTenantId,
    "a Microsoft tenant id"
);
directory_id!(
    /// A Microsoft Entra user's object id (the `oid` claim), a GUID.
    MicrosoftObjectId,
    "a Microsoft object id"
);
