//! Integration records generated from an approved configuration.

use visitbridge_approval::*;

use crate::fixtures::*;

fn approved(settings: ConfigurationSettings) -> Configuration {
    let admin = Who::Admin.actor();
    let url = settings.fhir_base_url.clone();
    let approver = Actor::approver(tenant(), settings.approver.clone());
    let c = Configuration::create(
        &admin,
        ConfigurationId::new("cfg-r").unwrap(),
        settings,
        at(0),
    )
    .unwrap()
    .configuration;
    let c = c.submit(&admin, at(1)).unwrap().configuration;
    let c = c
        .record_ehr_validation(
            &approver,
            &url,
            EhrUserId::new("Practitioner/x").unwrap(),
            at(2),
        )
        .unwrap()
        .configuration;
    c.approve(&approver, at(3)).unwrap().configuration
}

#[test]
fn records_for_an_approved_configuration() {
    let config = approved(settings(URL, APPROVER));
    let urls = LaunchServiceUrls::new("https://visits.contoso.org/").unwrap();
    let records = config.integration_records(&urls).unwrap();
    assert_eq!(records.fhir_base_url, url(URL));
    assert_eq!(records.environment, Environment::Production);
    assert_eq!(records.configuration_version, 1);

    let p = &records.provider_launch;
    assert_eq!(p.kind, RecordKind::ProviderLaunch);
    assert_eq!(
        p.launch_url.as_str(),
        "https://visits.contoso.org/launch/provider"
    );
    assert_eq!(
        p.redirect_uri.as_str(),
        "https://visits.contoso.org/launch/callback"
    );
    assert_eq!(p.client_id.as_str(), "vb-client");
    assert_eq!(
        p.scope_string(),
        "launch openid fhirUser user/Appointment.read user/Encounter.read user/Patient.read user/Practitioner.read"
    );
    assert_eq!(
        p.context_parameters,
        "sessionId=%CSN%&departmentId=%PERFDEPID;;; ; ;;NONE;%&conferenceId=%CONFERENCEID%&environment=production"
    );

    let pt = &records.patient_launch;
    assert_eq!(
        pt.launch_url.as_str(),
        "https://visits.contoso.org/launch/patient"
    );
    assert_eq!(
        pt.redirect_uri.as_str(),
        "https://visits.contoso.org/launch/callback"
    );
    assert_eq!(
        pt.scope_string(),
        "launch openid fhirUser patient/Appointment.read patient/Encounter.read"
    );
    assert_eq!(pt.context_parameters, p.context_parameters);

    let d = &records.device_test;
    assert_eq!(
        d.launch_url.as_str(),
        "https://visits.contoso.org/launch/device-test"
    );
    assert_eq!(d.scope_string(), "launch");
    assert_eq!(d.context_parameters, "environment=production");

    let kinds: Vec<_> = records.all().iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RecordKind::ProviderLaunch,
            RecordKind::PatientLaunch,
            RecordKind::DeviceTest
        ]
    );
}

#[test]
fn v2_scopes_patient_client_and_path_prefix() {
    let mut s = settings(URL, APPROVER);
    s.environment = Environment::Test;
    s.ehr_client.scope_style = ScopeStyle::V2;
    s.ehr_client.patient_client_id = Some(ClientId::new("vb-mychart").unwrap());
    let config = approved(s);
    let urls = LaunchServiceUrls::new("https://apps.contoso.org/visitbridge").unwrap();
    let records = config.integration_records(&urls).unwrap();
    assert_eq!(
        records.provider_launch.launch_url.as_str(),
        "https://apps.contoso.org/visitbridge/launch/provider"
    );
    assert_eq!(
        records.provider_launch.redirect_uri.as_str(),
        "https://apps.contoso.org/visitbridge/launch/callback"
    );
    assert_eq!(
        records.provider_launch.scope_string(),
        "launch openid fhirUser user/Appointment.rs user/Encounter.rs user/Patient.rs user/Practitioner.rs"
    );
    assert_eq!(
        records.patient_launch.scope_string(),
        "launch openid fhirUser patient/Appointment.rs patient/Encounter.rs"
    );
    assert_eq!(records.provider_launch.client_id.as_str(), "vb-client");
    assert_eq!(records.patient_launch.client_id.as_str(), "vb-mychart");
    assert_eq!(records.device_test.client_id.as_str(), "vb-mychart");
    assert!(
        records
            .provider_launch
            .context_parameters
            .ends_with("&environment=test")
    );
}

#[test]
fn records_follow_the_approved_version_not_a_pending_edit() {
    let config = approved(settings(URL, APPROVER));
    let edited = config
        .edit(&Who::Admin.actor(), settings(OTHER_URL, APPROVER), at(4))
        .unwrap()
        .configuration;
    let urls = LaunchServiceUrls::new("https://visits.contoso.org").unwrap();
    let records = edited.integration_records(&urls).unwrap();
    assert_eq!(records.fhir_base_url, url(URL));
    assert_eq!(records.configuration_version, 1);
}

#[test]
fn no_records_before_approval() {
    let urls = LaunchServiceUrls::new("https://visits.contoso.org").unwrap();
    assert!(created().configuration.integration_records(&urls).is_none());
}

#[test]
fn launch_service_url_checks() {
    for bad in [
        "visits.contoso.org",
        "ftp://visits.contoso.org",
        "https://visits.contoso.org/?a=b",
        "https://u:p@visits.contoso.org",
    ] {
        assert!(LaunchServiceUrls::new(bad).is_err(), "{bad}");
    }
    let err = LaunchServiceUrls::new("https://visits.contoso.org/#x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid launch service URL: it must have no query or fragment"
    );
    let local = LaunchServiceUrls::new("http://127.0.0.1:3000").unwrap();
    assert_eq!(
        local.callback().as_str(),
        "http://127.0.0.1:3000/launch/callback"
    );
}

#[test]
fn records_for_a_generic_smart_ehr_ask_for_nothing_but_the_environment() {
    let mut generic = settings(URL, APPROVER);
    generic.ehr_vendor = EhrVendor::Generic;
    let config = approved(generic);
    let urls = LaunchServiceUrls::new("https://visits.contoso.org").unwrap();
    let records = config.integration_records(&urls).unwrap();
    assert_eq!(records.ehr_vendor, EhrVendor::Generic);
    for record in records.all() {
        assert_eq!(
            record.context_parameters, "environment=production",
            "{record:?}"
        );
        assert!(!record.context_parameters.contains('%'), "no Epic tokens");
    }
    // The rest is as for Epic: the same launch URLs, redirect URI, client ids and scopes.
    let epic = approved(settings(URL, APPROVER))
        .integration_records(&urls)
        .unwrap();
    assert_eq!(epic.ehr_vendor, EhrVendor::Epic);
    for (g, e) in records.all().into_iter().zip(epic.all()) {
        assert_eq!(
            (&g.launch_url, &g.redirect_uri, &g.client_id, &g.scopes),
            (&e.launch_url, &e.redirect_uri, &e.client_id, &e.scopes)
        );
    }
    assert_ne!(
        records.provider_launch.context_parameters,
        epic.provider_launch.context_parameters
    );
    assert_eq!(
        records.device_test.context_parameters, epic.device_test.context_parameters,
        "the device test carries the environment only, for every EHR"
    );
}

#[test]
fn settings_stored_before_the_vendor_existed_read_as_epic() {
    let mut stored = serde_json::to_value(settings(URL, APPROVER)).unwrap();
    stored.as_object_mut().unwrap().remove("ehr_vendor");
    let read: ConfigurationSettings = serde_json::from_value(stored).unwrap();
    assert_eq!(read.ehr_vendor, EhrVendor::Epic);
    assert_eq!(read, settings(URL, APPROVER));
    for vendor in EhrVendor::ALL {
        assert_eq!(EhrVendor::from_name(vendor.as_str()), Some(vendor));
    }
    assert_eq!(EhrVendor::from_name("cerner"), None);
}
