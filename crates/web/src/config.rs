//! Loading a service's configuration: a TOML file read into the service's own `Deserialize`
//! type, then (by the service) overridden by flags and environment variables and validated.
//!
//! [`ConfigError`] is the one error of both services' configuration: a file that cannot be read,
//! a document that is not valid TOML for the type (with the line and column of the mistake), or a
//! value the service refuses.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The document is not valid TOML for this configuration.
    #[error("invalid configuration{}: {message}", at(*line, *column))]
    Parse {
        /// The line of the mistake (1-based), when TOML names a place.
        line: Option<usize>,
        /// The column of the mistake (1-based, in characters), when TOML names a place.
        column: Option<usize>,
        /// What is wrong, without the place.
        message: String,
        /// TOML's error (boxed: it is large).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is not acceptable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ConfigError {
    /// A refused value, with what is wrong with it.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// TOML's error `source` for the document `text`, with the line and column of its span.
    fn parse(text: &str, source: toml::de::Error) -> Self {
        let (line, column) = match source.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        Self::Parse {
            line,
            column,
            message: source.message().to_owned(),
            source: Box::new(source),
        }
    }
}

/// ` at line L, column C`, or nothing without a place.
fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        _ => String::new(),
    }
}

/// The 1-based line and column (in characters) of the byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Parses the TOML document `text` into `T` (not yet validated).
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::parse(text, e))
}

/// Reads the TOML file at `path` into `T` (not yet validated).
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_toml(&text)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        name: String,
        #[serde(default)]
        port: u16,
    }

    #[test]
    fn a_valid_document_reads() {
        let sample: Sample = from_toml("name = \"a\"\nport = 8080").unwrap();
        assert_eq!((sample.name.as_str(), sample.port), ("a", 8080));
    }

    #[test]
    fn a_mistake_is_placed_by_line_and_column_and_keeps_its_source() {
        let err = from_toml::<Sample>("name = \"a\"\n  port = \"eighty\"").unwrap_err();
        let ConfigError::Parse {
            line,
            column,
            ref message,
            ..
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!((line, column), (Some(2), Some(10)));
        assert!(!message.is_empty());
        assert!(
            err.to_string()
                .starts_with("invalid configuration at line 2, column 10: "),
            "{err}"
        );
        assert!(err.source().is_some());
        let err = from_toml::<Sample>("colour = \"blue\"").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        assert!(err.to_string().contains("line 1, column 1"), "{err}");
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err = read_toml::<Sample>(Path::new("/nonexistent/visitbridge.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/visitbridge.toml"));
        assert!(err.source().is_some());
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("é = 1\nab", 7), (2, 1));
        assert_eq!(line_column("é = 1", 2), (1, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
