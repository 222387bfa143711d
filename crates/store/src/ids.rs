//! Identifiers of Microsoft (Entra ID) directory objects, as kept in user links and tenants.

use crate::StoreError;

/// Checks an identifier-like value: non-empty, at most `max_len` bytes, no whitespace or control
/// characters; refused as `what`.
pub(crate) fn check_bounded_id(
    value: &str,
    max_len: usize,
    what: &'static str,
) -> Result<(), StoreError> {
    if value.is_empty()
        || value.len() > max_len
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(StoreError::InvalidRecord(what));
    }
    Ok(())
}

macro_rules! directory_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        visitbridge_approval::string_newtype! {
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Eq, Hash)]
            pub struct $name;
            error: StoreError,
            check: |value: &str| {
                check_bounded_id(
                    value,
                    128,
                    concat!($what, " must be 1 to 128 characters without spaces"),
                )
            },
            new_doc: "Checks and wraps the id: non-empty, at most 128 characters, no whitespace.",
            as_str_doc: "The id as text.",
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
