//! The one definition of a checked string newtype, shared with `visitbridge-store` through
//! [`string_newtype!`](crate::string_newtype).

/// Defines a newtype over `String` whose every value passed a check: `new` (the only way in),
/// `as_str`, `TryFrom<String>` and `From<_> for String` (serde goes through them, so stored and
/// received values are checked too) and `Display` (the bare value).
///
/// The caller gives the struct's attributes (docs and the derives it wants besides serde's), its
/// error type, the check (a function or closure `(&str) -> Result<(), Error>`) and the docs of
/// `new` and `as_str`. The expansion derives `serde::{Serialize, Deserialize}`, so the calling
/// crate needs `serde` among its dependencies.
///
/// ```
/// visitbridge_approval::string_newtype! {
///     /// A room name.
///     #[derive(Debug, Clone, PartialEq, Eq)]
///     pub struct RoomName;
///     error: String,
///     check: |value: &str| {
///         if value.is_empty() { Err("a room name must not be empty".to_owned()) } else { Ok(()) }
///     },
///     new_doc: "Checks and wraps a room name.",
///     as_str_doc: "The room name as text.",
/// }
///
/// assert_eq!(RoomName::new("blue")?.to_string(), "blue");
/// assert!(RoomName::new("").is_err());
/// # Ok::<(), String>(())
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! string_newtype {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident;
        error: $err:ty,
        check: $check:expr,
        new_doc: $new_doc:literal,
        as_str_doc: $as_str_doc:literal $(,)?
    ) => {
        $(#[$attr])*
        #[derive(::serde::Serialize, ::serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        $vis struct $name(::std::string::String);

        impl $name {
            #[doc = $new_doc]
            pub fn new(
                value: impl ::std::convert::Into<::std::string::String>,
            ) -> ::std::result::Result<Self, $err> {
                let value = value.into();
                $check(&value)?;
                Ok(Self(value))
            }

            #[doc = $as_str_doc]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::convert::TryFrom<::std::string::String> for $name {
            type Error = $err;
            fn try_from(value: ::std::string::String) -> ::std::result::Result<Self, $err> {
                Self::new(value)
            }
        }

        impl ::std::convert::From<$name> for ::std::string::String {
            fn from(value: $name) -> ::std::string::String {
                value.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
