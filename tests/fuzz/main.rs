//! Hostile input for every parser that reads what arrives from outside: launch and callback
//! queries, SMART token-response context and id_token claims, SMART discovery, FHIR resources and
//! Bundles, Graph notification batches (plain and encrypted), Graph's validation handshake,
//! database URLs and both services' TOML configuration. None may panic, whatever the bytes.
//!
//! The harness is `visitbridge_testkit::fuzz` (proptest on stable): each target starts from its
//! seeds — the upstreams' documented shapes (testkit fixtures) and the hostile cases in
//! `tests/fuzz/corpus/<target>/`, which also keep every input that once failed — and mutates
//! them. A failure is shrunk and printed; add the input to the corpus when fixing it. The
//! portal's forms, JSON bodies and report queries are fuzzed through its routes in
//! `bins/portal/tests/it/fuzz.rs`.
//!
//! In the suite every corpus entry is replayed and each target gets a few hundred mutations. A
//! long run: `VISITBRIDGE_FUZZ_SECONDS=600 cargo test --release -p visitbridge-e2e --test fuzz
//! -- --test-threads 1 --nocapture` gives each target ten minutes (one target:
//! append its name, e.g. `graph_notifications`).

use std::path::PathBuf;

use visitbridge_http::Secret;
use visitbridge_testkit::fixtures::{self, keys};

/// Fuzzes `target` from `seeds` and its corpus folder `tests/fuzz/corpus/<target>/`.
fn fuzz(target: &str, seeds: &[&[u8]], check: impl Fn(&[u8])) {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    visitbridge_testkit::fuzz::fuzz(target, &corpus, seeds, check);
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn launch_query() {
    let seeds: &[&[u8]] = &[
        b"iss=https%3A%2F%2Ffhir.epic.com%2Finterconnect-fhir-oauth%2Fapi%2FFHIR%2FR4&launch=abc&sessionId=10000001234&departmentId=10501101&conferenceId=&environment=test",
        b"sessionId=1&sessionId=2",
    ];
    fuzz("launch_query", seeds, |bytes| {
        let params: Vec<(String, String)> =
            url::form_urlencoded::parse(bytes).into_owned().collect();
        let _ = visitbridge_visit::RecordContext::from_params(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if let Some((_, iss)) = params.iter().find(|(k, _)| k == "iss") {
            let _ = visitbridge_smart::NormalizedIssuer::parse(iss);
            let _ = visitbridge_fhir::FhirBaseUrl::parse(iss);
            for policy in [
                visitbridge_approval::UrlPolicy::DEVELOPMENT,
                visitbridge_approval::UrlPolicy::STRICT,
            ] {
                let _ = visitbridge_approval::FhirBaseUrl::parse(iss, policy);
            }
        }
    });
}

#[test]
fn callback_query() {
    let seeds: &[&[u8]] = &[
        b"code=abc&state=xyz",
        b"error=access_denied&error_description=The+user+said+no&state=xyz",
        b"code=a&code=b&state=s",
    ];
    fuzz("callback_query", seeds, |bytes| {
        let _ = visitbridge_smart::Callback::from_query(&text(bytes));
    });
}

#[test]
fn token_response_context() {
    let seeds: &[&[u8]] = &[fixtures::EPIC_TOKEN_RESPONSE.as_bytes()];
    fuzz("token_response_context", seeds, |bytes| {
        if let Ok(context) = serde_json::from_slice::<visitbridge_smart::LaunchContext>(bytes) {
            let _ = context.context_ids("Appointment");
            let _ = visitbridge_visit::context_appointment(&context);
            let record = visitbridge_visit::RecordContext::default();
            let _ = visitbridge_visit::visit_key(&record, &context);
        }
    });
}

#[test]
fn id_token() {
    let claims: &[u8] = br#"{"iss":"https://ehr.example.org/fhir","sub":"abc","aud":"client","exp":4102444800,"iat":1700000000,"nonce":"n","fhirUser":"Practitioner/123"}"#;
    let jwt: &[u8] = b"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.c2ln";
    fuzz("id_token", &[claims, jwt], |bytes| {
        // What arrives before any key is checked: the token's header, and its claims as JSON.
        let _ = jsonwebtoken::decode_header(text(bytes));
        let _ = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes);
    });
}

#[test]
fn smart_configuration() {
    let seeds: &[&[u8]] = &[fixtures::EPIC_SMART_CONFIGURATION.as_bytes()];
    fuzz("smart_configuration", seeds, |bytes| {
        let _ = visitbridge_smart::SmartConfigurationOffer::from_json(bytes);
        let _ = serde_json::from_slice::<visitbridge_smart::SmartConfiguration>(bytes);
    });
}

#[test]
fn fhir_resources_and_bundles() {
    let seeds: &[&[u8]] = &[
        fixtures::EPIC_APPOINTMENT.as_bytes(),
        fixtures::EPIC_ENCOUNTER.as_bytes(),
        fixtures::EPIC_PATIENT.as_bytes(),
        fixtures::EPIC_PRACTITIONER.as_bytes(),
    ];
    let bundle = visitbridge_testkit::fhir::searchset(
        "https://fhir.example.org/R4",
        "https://fhir.example.org/R4/Appointment?patient=1",
        &[fixtures::EPIC_APPOINTMENT, fixtures::EPIC_ENCOUNTER],
        Some("https://fhir.example.org/R4/Appointment?page=2"),
    );
    let mut all = seeds.to_vec();
    all.push(bundle.as_bytes());
    fuzz("fhir_resources_and_bundles", &all, |bytes| {
        use visitbridge_fhir::{Appointment, Bundle, Encounter, Patient, Practitioner};
        let _ = serde_json::from_slice::<Appointment>(bytes);
        let _ = serde_json::from_slice::<Encounter>(bytes);
        let _ = serde_json::from_slice::<Patient>(bytes);
        let _ = serde_json::from_slice::<Practitioner>(bytes);
        if let Ok(bundle) = Bundle::<Appointment>::from_slice(bytes) {
            let _ = bundle.next_link();
            let _ = bundle.resources().count();
        }
        if let Ok(bundle) = Bundle::<Encounter>::from_slice(bytes) {
            let _ = bundle.resources().count();
        }
    });
}

fn client_state() -> visitbridge_graph::ClientStateSecret {
    visitbridge_graph::ClientStateSecret::new(Secret::new("test-client-state-5b1f0c"))
}

#[test]
fn graph_notifications() {
    let roster = fixtures::GRAPH_ROSTER_NOTIFICATION.as_bytes();
    fuzz("graph_notifications", &[roster], |bytes| {
        let _ = visitbridge_graph::parse_notifications(bytes, &client_state(), None);
    });
}

#[test]
fn graph_encrypted_notifications() {
    let cert =
        visitbridge_graph::EncryptionCertificate::from_pem("cert-1", keys::GRAPH_ENCRYPTION_CERT)
            .expect("the test certificate");
    let keys = visitbridge_graph::DecryptionKeys::new()
        .with_key_pem("cert-1", keys::GRAPH_ENCRYPTION_RSA, Some(&cert))
        .expect("the test key");
    let mut item: serde_json::Value =
        serde_json::from_str(fixtures::GRAPH_ROSTER_NOTIFICATION).expect("the fixture");
    let payload = item["value"][0]["resourceData"].clone();
    let mut content = visitbridge_testkit::graph::encrypted_content(payload.to_string().as_bytes());
    content["encryptionCertificateId"] = "cert-1".into();
    item["value"][0]["encryptedContent"] = content;
    item["value"][0]
        .as_object_mut()
        .expect("an item")
        .remove("resourceData");
    let seed = serde_json::to_vec(&item).expect("json");
    fuzz("graph_encrypted_notifications", &[&seed], |bytes| {
        let _ = visitbridge_graph::parse_notifications(bytes, &client_state(), Some(&keys));
    });
}

#[test]
fn graph_validation_handshake() {
    let seeds: &[&[u8]] = &[b"validationToken=Validation%3A+Testing+client+application+reachability+for+subscription+Request-Id%3A+25c8d7d4"];
    fuzz("graph_validation_handshake", seeds, |bytes| {
        let _ = visitbridge_graph::validation_response(Some(&text(bytes)));
    });
}

#[test]
fn database_url() {
    let seeds: &[&[u8]] = &[
        b"postgres://vb:secret@db.example.org:5432/visitbridge?sslmode=require&sslrootcert=/etc/ca.pem",
        b"sqlite:///var/lib/visitbridge/visitbridge.sqlite",
        b"visitbridge-data/visitbridge.sqlite",
    ];
    fuzz("database_url", seeds, |bytes| {
        let text = text(bytes);
        if let Ok(location) = visitbridge_store::DatabaseLocation::parse(&text) {
            let shown = location.to_string();
            // What is shown of a PostgreSQL URL carries no password: none in the user part,
            // none as a setting.
            if let visitbridge_store::DatabaseLocation::Postgres(_) = &location
                && let Ok(url) = url::Url::parse(&shown)
            {
                assert!(matches!(url.password(), None | Some("***")), "{shown}");
                for (key, value) in url.query_pairs() {
                    if key.eq_ignore_ascii_case("password")
                        || key.eq_ignore_ascii_case("sslpassword")
                    {
                        assert_eq!(value, "***", "{shown}");
                    }
                }
            }
            // A typo is not taken for a file named after a URL with credentials (a path given
            // as `sqlite:…` is the user's word for it).
            if let visitbridge_store::DatabaseLocation::Sqlite(path) = &location
                && !text.trim().starts_with("sqlite:")
            {
                let path = path.display().to_string();
                let head = path.split('/').next().unwrap_or_default();
                assert!(!(head.contains(':') && head.contains('@')), "{path}");
            }
        }
    });
}

#[test]
fn launch_configuration_toml() {
    let seeds: &[&[u8]] = &[br#"
listen = "127.0.0.1:8080"
public_base_url = "https://visits.example.org"
database = "/var/lib/visitbridge/visitbridge.sqlite"
dev_mode = false
[backend_key]
private_key_file = "/etc/visitbridge/backend.pem"
key_id = "k1"
algorithm = "RS384"
[microsoft]
tenant_id = "t"
client_id = "c"
[[writeback.sinks]]
kind = "epic-connection-status"
interconnect_base = "https://ehr.example.org/interconnect"
client_id = "x"
vendor_name = "VisitBridge"
external_id_type = "1"
connected_status = "2"
disconnected_status = "3"
[upkeep]
poll_millis = 60000
"#];
    let base = url::Url::parse("https://visits.example.org/").expect("a URL");
    fuzz("launch_configuration_toml", seeds, |bytes| {
        if let Ok(config) = visitbridge_launch::LaunchConfig::from_toml(&text(bytes)) {
            let _ = config.validate(&base);
        }
    });
}

#[test]
fn portal_configuration_toml() {
    let seeds: &[&[u8]] = &[br#"
public_base_url = "https://portal.example.org"
database = "postgres://vb@db.example.org/vb"
launch_base_url = "https://visits.example.org"
[entra]
authority = "https://login.microsoftonline.com/organizations"
client_id = "c"
client_secret = "s"
[ehr_sign_in]
client_id = "p"
[[admins]]
microsoft_tenant_id = "t"
usernames = ["admin@contoso.example"]
"#];
    fuzz("portal_configuration_toml", seeds, |bytes| {
        let _ = visitbridge_portal::PortalConfig::from_toml(&text(bytes));
    });
}
