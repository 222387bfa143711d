//! Sample payloads as the real services send them, and test-only keys, compiled into the crate.
//!
//! The names, birth date and MRN in the Epic resources are the public sandbox's synthetic data;
//! [`PHI_PROBES`] lists them so privacy tests can scan databases and logs for them.

/// `GET {iss}/.well-known/smart-configuration` at Epic.
pub const EPIC_SMART_CONFIGURATION: &str =
    include_str!("../fixtures/epic-smart-configuration.json");
/// Epic's token endpoint answer after a provider EHR launch (its `id_token` is a placeholder).
pub const EPIC_TOKEN_RESPONSE: &str = include_str!("../fixtures/epic-token-response.json");
/// An R4 Appointment as Epic returns it.
pub const EPIC_APPOINTMENT: &str = include_str!("../fixtures/epic-r4-appointment.json");
/// An R4 Encounter as Epic returns it.
pub const EPIC_ENCOUNTER: &str = include_str!("../fixtures/epic-r4-encounter.json");
/// An R4 Patient as Epic returns it (synthetic sandbox data).
pub const EPIC_PATIENT: &str = include_str!("../fixtures/epic-r4-patient.json");
/// An R4 Practitioner as Epic returns it.
pub const EPIC_PRACTITIONER: &str = include_str!("../fixtures/epic-r4-practitioner.json");
/// Graph's answer to `POST /users/{id}/onlineMeetings/createOrGet`.
pub const GRAPH_CREATE_OR_GET: &str = include_str!("../fixtures/graph-createorget-response.json");
/// A Graph change notification (roster update, without encrypted content).
pub const GRAPH_ROSTER_NOTIFICATION: &str =
    include_str!("../fixtures/graph-roster-notification.json");

/// Patient data from [`EPIC_PATIENT`] (and the participant display names of
/// [`GRAPH_ROSTER_NOTIFICATION`]) that must never be found in a database, a log or a page.
pub const PHI_PROBES: &[&str] = &[
    "Camila",
    "Lopez",
    "1987-09-12",
    "203713",
    "E4007",
    "469-555-5555",
    "knixontestemail@epic.com",
    "3268 West Johnson",
    "Dr. Ross",
];

/// Test keys (PKCS#8 PEM). Generated for these tests only; they protect nothing.
pub mod keys {
    /// The fake EHR's id_token signing key.
    pub const EHR_SIGNING_RSA: &str = include_str!("../fixtures/keys/ehr-signing-rsa.pem");
    /// Its public half.
    pub const EHR_SIGNING_RSA_PUB: &str = include_str!("../fixtures/keys/ehr-signing-rsa.pub.pem");
    /// Our client's RSA key (private_key_jwt, backend services, Entra certificate credential).
    pub const CLIENT_RSA: &str = include_str!("../fixtures/keys/client-rsa.pem");
    /// Its public half.
    pub const CLIENT_RSA_PUB: &str = include_str!("../fixtures/keys/client-rsa.pub.pem");
    /// A self-signed certificate for [`CLIENT_RSA`].
    pub const CLIENT_CERT: &str = include_str!("../fixtures/keys/client-cert.pem");
    /// Our client's P-384 key (ES384 assertions).
    pub const CLIENT_EC384: &str = include_str!("../fixtures/keys/client-ec384.pem");
    /// Its public half.
    pub const CLIENT_EC384_PUB: &str = include_str!("../fixtures/keys/client-ec384.pub.pem");
    /// The key whose certificate Graph encrypts notification content for.
    pub const GRAPH_ENCRYPTION_RSA: &str =
        include_str!("../fixtures/keys/graph-encryption-rsa.pem");
    /// Its public half.
    pub const GRAPH_ENCRYPTION_RSA_PUB: &str =
        include_str!("../fixtures/keys/graph-encryption-rsa.pub.pem");
    /// A self-signed certificate for [`GRAPH_ENCRYPTION_RSA`].
    pub const GRAPH_ENCRYPTION_CERT: &str =
        include_str!("../fixtures/keys/graph-encryption-cert.pem");
    /// A key nobody trusts: for forged id_tokens and signatures.
    pub const ATTACKER_RSA: &str = include_str!("../fixtures/keys/attacker-rsa.pem");
}
