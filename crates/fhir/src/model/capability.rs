//! `CapabilityStatement` (`GET [base]/metadata`): FHIR version, OAuth endpoints, write support.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::{Extra, Resource, TypeTag};

/// The SMART extension on `rest.security` that lists the OAuth endpoints (servers that predate
/// `.well-known/smart-configuration` only publish them here).
pub const OAUTH_URIS_EXTENSION: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// An R4 CapabilityStatement, with the parts VisitBridge reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapabilityStatement {
    /// Always `CapabilityStatement`.
    #[serde(rename = "resourceType")]
    pub resource_type: TypeTag<CapabilityStatement>,
    /// E.g. `4.0.1`.
    #[serde(
        rename = "fhirVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fhir_version: Option<String>,
    /// What the server offers, per mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rest: Vec<CapabilityRest>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `CapabilityStatement.rest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapabilityRest {
    /// `server` or `client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Security, including the SMART `oauth-uris` extension (kept as JSON; read it through
    /// [`CapabilityStatement::oauth_uris`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Value>,
    /// Per resource type support.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource: Vec<CapabilityResource>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `CapabilityStatement.rest.resource`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapabilityResource {
    /// The resource type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Supported interactions, e.g. `read`, `search-type`, `create`, `update`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interaction: Vec<Value>,
    /// Whether `PUT` may create a resource with a client-chosen id.
    #[serde(
        rename = "updateCreate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub update_create: Option<bool>,
    /// Whether `If-None-Exist` (conditional create) is honoured.
    #[serde(
        rename = "conditionalCreate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub conditional_create: Option<bool>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Resource for CapabilityStatement {
    const TYPE: &'static str = "CapabilityStatement";
}

/// OAuth endpoints from the `oauth-uris` extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthUris {
    /// The authorization endpoint.
    pub authorize: Option<Url>,
    /// The token endpoint.
    pub token: Option<Url>,
}

impl CapabilityResource {
    /// Whether the server lists `interaction` (e.g. `create`) for this type.
    pub fn supports(&self, interaction: &str) -> bool {
        self.interaction
            .iter()
            .any(|i| i.get("code").and_then(Value::as_str) == Some(interaction))
    }
}

impl CapabilityStatement {
    fn server_rest(&self) -> impl Iterator<Item = &CapabilityRest> {
        self.rest
            .iter()
            .filter(|r| r.mode.as_deref().is_none_or(|m| m == "server"))
    }

    /// The server's declared support for `resource_type`.
    pub fn resource(&self, resource_type: &str) -> Option<&CapabilityResource> {
        self.server_rest()
            .flat_map(|r| &r.resource)
            .find(|r| r.type_.as_deref() == Some(resource_type))
    }

    /// The OAuth endpoints, when the server publishes the SMART `oauth-uris` extension.
    /// Entries that are not absolute URLs are ignored.
    pub fn oauth_uris(&self) -> Option<OAuthUris> {
        let extension = self
            .server_rest()
            .filter_map(|r| r.security.as_ref()?.get("extension")?.as_array())
            .flatten()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(OAUTH_URIS_EXTENSION))?;
        let inner = extension.get("extension")?.as_array()?;
        let find = |name: &str| {
            inner
                .iter()
                .find(|e| e.get("url").and_then(Value::as_str) == Some(name))
                .and_then(|e| e.get("valueUri")?.as_str())
                .and_then(|u| Url::parse(u).ok())
        };
        Some(OAuthUris {
            authorize: find("authorize"),
            token: find("token"),
        })
    }
}
