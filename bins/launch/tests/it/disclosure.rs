//! What the launch service must never hand out: another environment variable as an EHR client
//! secret, the FHIR server's diagnostics (which may quote the patient), or the EHR's free-text
//! OAuth errors.

use chrono::Utc;
use visitbridge_approval::{
    Actor, ClientAuth, ClientId, Configuration, ConfigurationId, ConfigurationSettings,
    EhrClientSettings, EhrUserId, Environment, FhirBaseUrl, ScopeStyle, SecretRef, TenantId,
    UrlPolicy, Username,
};
use visitbridge_testkit::{
    fhir::{APPOINTMENT_ID, fhir_json, operation_outcome},
    fixtures::PHI_PROBES,
    smart::{ExpectedClientAuth, SmartFake},
};
use wiremock::{
    Mock, MockServer,
    matchers::{method, path},
};

use crate::harness::{EHR_CLIENT_ID, Env, logs};

/// Approves a second configuration, for `fhir_base`, whose client authenticates with
/// `client_secret_basic` and the secret named `secret_ref`. (The harness's tenant exists.)
async fn approve_with_secret_ref(env: &Env, fhir_base: &str, secret_ref: &str) {
    let tenant = TenantId::new("contoso").unwrap();
    let admin = Actor::admin(
        tenant.clone(),
        Username::new("admin@contoso.example").unwrap(),
    );
    let approver = Actor::approver(tenant, Username::new("analyst@contoso.example").unwrap());
    let url = FhirBaseUrl::parse(fhir_base, UrlPolicy::DEVELOPMENT).unwrap();
    let settings = ConfigurationSettings {
        fhir_base_url: url.clone(),
        environment: Environment::Test,
        ehr_vendor: Default::default(),
        approver: Username::new("analyst@contoso.example").unwrap(),
        ehr_client: EhrClientSettings {
            client_id: ClientId::new(EHR_CLIENT_ID).unwrap(),
            patient_client_id: None,
            auth: ClientAuth::ClientSecretBasic {
                secret_ref: SecretRef::new(secret_ref).unwrap(),
            },
            scope_style: ScopeStyle::V1,
            send_epic_client_id_header: true,
        },
    };
    let now = Utc::now();
    let id = ConfigurationId::new("cfg-secret-ref").unwrap();
    let t = Configuration::create(&admin, id, settings, now).unwrap();
    env.store.save_configuration(&t).await.unwrap();
    let t = t.configuration.submit(&admin, now).unwrap();
    env.store.save_configuration(&t).await.unwrap();
    let t = t
        .configuration
        .record_ehr_validation(
            &approver,
            &url,
            EhrUserId::new("Practitioner/analyst").unwrap(),
            now,
        )
        .unwrap();
    env.store.save_configuration(&t).await.unwrap();
    let t = t.configuration.approve(&approver, now).unwrap();
    env.store.save_configuration(&t).await.unwrap();
}

#[tokio::test]
async fn a_secret_ref_naming_another_environment_variable_is_never_read() {
    let env = Env::start().await;
    // `PATH` is set in every test process (setting a variable needs `unsafe`, which the
    // workspace forbids); before the fix, `secret_ref = "PATH"` sent its value as the secret.
    let leaked = std::env::var("PATH").expect("PATH is set");
    assert!(!leaked.is_empty());
    let ehr = MockServer::start().await;
    let smart = SmartFake::mount(
        &ehr,
        ExpectedClientAuth::SecretBasic {
            client_id: EHR_CLIENT_ID.into(),
            secret: leaked.clone(),
        },
    )
    .await;
    approve_with_secret_ref(&env, &smart.fhir_base(), "PATH").await;

    let url = format!(
        "{}/launch/provider?iss={}&launch=x&sessionId=10000001234&environment=test",
        env.base,
        smart.fhir_base()
    );
    let page = env.browser().navigate(&url).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(
        page.body
            .contains("The EHR client secret named PATH is not set"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("VISITBRIDGE_EHR_SECRET_PATH"),
        "names the variable it reads: {}",
        page.body
    );
    assert!(!page.body.contains(&leaked));

    assert!(smart.token_requests().is_empty(), "no token request");
    for request in ehr.received_requests().await.unwrap() {
        assert!(
            !request.url.path().ends_with("/token"),
            "token endpoint called: {}",
            request.url
        );
        assert!(
            request.headers.get("authorization").is_none(),
            "credentials sent to {}",
            request.url
        );
        assert!(!String::from_utf8_lossy(&request.body).contains(&leaked));
    }
}

#[tokio::test]
async fn fhir_diagnostics_reach_neither_the_page_nor_the_log() {
    let env = Env::start().await;
    // Epic quoting the patient in its OperationOutcome.
    let diagnostics = format!(
        "Access to the record of {} is restricted",
        PHI_PROBES.join(" ")
    );
    Mock::given(method("GET"))
        .and(path(
            env.fhir.path(&format!("Appointment/{APPOINTMENT_ID}")),
        ))
        .respond_with(fhir_json(
            403,
            operation_outcome("forbidden", Some(4118), &diagnostics),
        ))
        .with_priority(1)
        .mount(&env.ehr)
        .await;

    let page = env
        .browser()
        .navigate(&env.launch_url("provider", &Env::visit_context()))
        .await;
    assert_eq!(page.status, 502, "{}", page.body);
    // What an administrator can act on is there: the status and Epic's code.
    assert!(page.body.contains("403"), "{}", page.body);
    assert!(page.body.contains("4118"), "{}", page.body);
    let logged = logs();
    assert!(logged.contains("4118"), "the failure is logged");
    for probe in PHI_PROBES {
        assert!(!page.body.contains(probe), "the page shows {probe:?}");
        assert!(!logged.contains(probe), "the log holds {probe:?}");
    }
    assert!(!page.body.contains("is restricted"));
}

#[tokio::test]
async fn the_ehrs_free_text_oauth_error_is_not_shown() {
    let env = Env::start().await;
    env.smart.set_token_error(Some((
        400,
        "<b>Camila Lopez</b> may not be seen",
        "Patient Camila Lopez 1987-09-12",
    )));
    let page = env
        .browser()
        .navigate(&env.launch_url("provider", &Env::visit_context()))
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("(unrecognised)"), "{}", page.body);
    for probe in PHI_PROBES {
        assert!(!page.body.contains(probe), "the page shows {probe:?}");
    }
    assert!(!page.body.contains("may not be seen"));

    // A known code is explained.
    env.smart.set_token_error(Some((
        401,
        "invalid_client",
        "Client authentication failed",
    )));
    let page = env
        .browser()
        .navigate(&env.launch_url("provider", &Env::visit_context()))
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body
            .contains("the EHR does not recognise the VisitBridge client (invalid_client)"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Client authentication failed"));
}
