//! Where an EHR client secret comes from: the configuration file's `[ehr_client_secrets]`, else
//! one environment variable with a fixed prefix — never a variable a portal admin names freely.

use std::collections::BTreeMap;

use visitbridge_approval::SecretRef;
use visitbridge_http::Secret;

/// The prefix of the environment variables EHR client secrets may be read from.
///
/// A configuration's `secret_ref` is typed by a portal admin, so it must never name an arbitrary
/// variable (the service's own Entra secret, say, would be sent to the admin's token endpoint).
pub const EHR_SECRET_ENV_PREFIX: &str = "VISITBRIDGE_EHR_SECRET_";

/// An EHR client secret that is set nowhere: the operator has to set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the EHR client secret named {name} is not set: set it under [ehr_client_secrets] as {name} \
     or in the environment variable {variable}"
)]
pub struct SecretNotSet {
    /// The name the configuration refers to.
    pub name: String,
    /// The one environment variable that was read.
    pub variable: String,
}

/// The EHR client secret `name`: from `file` (the configuration file's secrets), else from the
/// environment variable `VISITBRIDGE_EHR_SECRET_<name>` (`env` reads one variable; an empty one
/// is not a secret).
pub fn resolve_secret(
    file: &BTreeMap<String, Secret>,
    name: &SecretRef,
    env: impl FnOnce(&str) -> Option<String>,
) -> Result<Secret, SecretNotSet> {
    if let Some(secret) = file.get(name.as_str()) {
        return Ok(secret.clone());
    }
    let variable = format!("{EHR_SECRET_ENV_PREFIX}{name}");
    match env(&variable) {
        Some(value) if !value.is_empty() => Ok(Secret::new(value)),
        _ => Err(SecretNotSet {
            name: name.as_str().to_owned(),
            variable,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(value: &str) -> SecretRef {
        SecretRef::new(value).unwrap()
    }

    #[test]
    fn the_file_wins_then_only_the_prefixed_variable_is_read() {
        let mut file = BTreeMap::new();
        file.insert("EPIC_PROD".to_owned(), Secret::new("from-file"));
        let from_file = resolve_secret(&file, &name("EPIC_PROD"), |_| panic!("not read")).unwrap();
        assert_eq!(from_file.expose(), "from-file");

        let mut asked = Vec::new();
        let from_env = resolve_secret(&file, &name("EPIC_TEST"), |var| {
            asked.push(var.to_owned());
            Some("from-env".to_owned())
        })
        .unwrap();
        assert_eq!(from_env.expose(), "from-env");
        assert_eq!(asked, ["VISITBRIDGE_EHR_SECRET_EPIC_TEST"]);
    }

    #[test]
    fn another_variables_name_is_never_read() {
        let err = resolve_secret(
            &BTreeMap::new(),
            &name("VISITBRIDGE_LAUNCH_ENTRA_CLIENT_SECRET"),
            |var| (var == "VISITBRIDGE_LAUNCH_ENTRA_CLIENT_SECRET").then(|| "entra".to_owned()),
        )
        .unwrap_err();
        assert_eq!(
            err.variable,
            "VISITBRIDGE_EHR_SECRET_VISITBRIDGE_LAUNCH_ENTRA_CLIENT_SECRET"
        );
        let empty = resolve_secret(&BTreeMap::new(), &name("X"), |_| Some(String::new()));
        assert!(empty.is_err(), "an empty variable is not a secret");
    }
}
