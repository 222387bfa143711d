//! `Bundle` (search results), parsed entry by entry so one bad entry spoils only itself.

use serde::Deserialize;
use serde_json::Value;

use super::{Extra, OperationOutcome, Resource, ResourceTypeName, lenient};
use crate::error::{FhirError, decode_error_parts, decode_slice};

/// A page of search results whose matches are of type `T`.
///
/// Each entry is decoded on its own: an entry a model cannot read is an [`EntryError`] in its
/// place, and the other entries are still there. `OperationOutcome` entries (Epic sends one with
/// code 4101 when nothing matched, and warnings the same way) are collected in
/// [`Self::outcomes`], not among the entries.
#[derive(Debug, Clone)]
pub struct Bundle<T> {
    /// `searchset` for a search.
    pub type_: Option<String>,
    /// Matches across all pages, when the server counts them.
    pub total: Option<u32>,
    /// Paging links (`self`, `next`, …).
    pub link: Vec<BundleLink>,
    /// The entries, in order, each decoded or failed on its own.
    pub entry: Vec<BundleEntry<T>>,
    /// OperationOutcome entries (`search.mode` `outcome`).
    pub outcomes: Vec<OperationOutcome>,
}

/// A `Bundle.link`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BundleLink {
    /// `self`, `next`, `previous`, …
    pub relation: String,
    /// The link.
    pub url: String,
}

/// A `Bundle.entry` whose resource was decoded (or failed) on its own.
#[derive(Debug, Clone)]
pub struct BundleEntry<T> {
    /// The resource's absolute URL.
    pub full_url: Option<String>,
    /// `match` or `include` in a search result.
    pub search_mode: Option<String>,
    /// The resource, or why it could not be read.
    pub resource: Result<T, EntryError>,
}

/// Why one bundle entry could not be read. Says where, never what the value was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bundle entry {index} ({resource_type}): could not decode at {path}: {message}")]
pub struct EntryError {
    /// The entry's position in the page, from 0.
    pub index: usize,
    /// The entry's resourceType, or `(invalid)`/`(none)`.
    pub resource_type: String,
    /// The JSON path inside the resource, e.g. `participant[1].actor.reference`.
    pub path: String,
    /// What was wrong, without the offending value.
    pub message: String,
}

#[derive(Deserialize)]
struct RawBundle {
    #[serde(rename = "resourceType")]
    resource_type: String,
    #[serde(rename = "type", default)]
    type_: Option<String>,
    #[serde(default, deserialize_with = "lenient::u32_opt")]
    total: Option<u32>,
    #[serde(default)]
    link: Vec<BundleLink>,
    #[serde(default)]
    entry: Vec<Value>,
    #[serde(flatten)]
    _extra: Extra,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "fullUrl", default)]
    full_url: Option<String>,
    #[serde(default)]
    search: Option<RawSearch>,
    #[serde(default)]
    resource: Option<Value>,
}

#[derive(Deserialize)]
struct RawSearch {
    #[serde(default)]
    mode: Option<String>,
}

impl<T: Resource> Bundle<T> {
    /// Decodes a Bundle; fails only if the Bundle itself is malformed, not for a bad entry.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, FhirError> {
        let raw: RawBundle = decode_slice(bytes, "Bundle")?;
        if raw.resource_type != "Bundle" {
            return Err(FhirError::Decode {
                resource_type: "Bundle".to_owned(),
                path: "resourceType".to_owned(),
                message: format!(
                    "expected resourceType Bundle, found {}",
                    ResourceTypeName(&raw.resource_type)
                ),
            });
        }
        let mut entry = Vec::with_capacity(raw.entry.len());
        let mut outcomes = Vec::new();
        for (index, value) in raw.entry.into_iter().enumerate() {
            match decode_entry::<T>(index, value) {
                Decoded::Outcome(outcome) => outcomes.push(outcome),
                Decoded::Entry(e) => entry.push(e),
            }
        }
        Ok(Self {
            type_: raw.type_,
            total: raw.total,
            link: raw.link,
            entry,
            outcomes,
        })
    }
}

impl<T> Bundle<T> {
    /// The `next` page link, if any.
    pub fn next_link(&self) -> Option<&str> {
        self.link
            .iter()
            .find(|l| l.relation == "next")
            .map(|l| l.url.as_str())
    }

    /// The entries that decoded.
    pub fn resources(&self) -> impl Iterator<Item = &T> {
        self.entry.iter().filter_map(|e| e.resource.as_ref().ok())
    }

    /// The entries that did not decode.
    pub fn errors(&self) -> impl Iterator<Item = &EntryError> {
        self.entry.iter().filter_map(|e| e.resource.as_ref().err())
    }
}

enum Decoded<T> {
    Entry(BundleEntry<T>),
    Outcome(OperationOutcome),
}

fn decode_entry<T: Resource>(index: usize, value: Value) -> Decoded<T> {
    let fail = |resource_type: &str, path: String, message: String| EntryError {
        index,
        resource_type: resource_type.to_owned(),
        path,
        message,
    };
    let raw: RawEntry = match serde_path_to_error::deserialize(value) {
        Ok(raw) => raw,
        Err(e) => {
            let (path, message) = decode_error_parts(&e);
            return Decoded::Entry(BundleEntry {
                full_url: None,
                search_mode: None,
                resource: Err(fail("(none)", format!("entry.{path}"), message)),
            });
        }
    };
    let search_mode = raw.search.and_then(|s| s.mode);
    let mut entry = BundleEntry {
        full_url: raw.full_url,
        search_mode,
        resource: Err(fail("(none)", "resource".to_owned(), "missing".to_owned())),
    };
    let Some(resource) = raw.resource else {
        return Decoded::Entry(entry);
    };
    let found = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .map(|t| ResourceTypeName(t).to_string())
        .unwrap_or_else(|| "(none)".to_owned());
    if found == "OperationOutcome" && T::TYPE != "OperationOutcome" {
        match decode_value::<OperationOutcome>(resource) {
            Ok(outcome) => return Decoded::Outcome(outcome),
            Err((path, message)) => {
                entry.resource = Err(fail(&found, path, message));
                return Decoded::Entry(entry);
            }
        }
    }
    entry.resource =
        decode_value::<T>(resource).map_err(|(path, message)| fail(&found, path, message));
    Decoded::Entry(entry)
}

fn decode_value<T: Resource>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| decode_error_parts(&e))
}
