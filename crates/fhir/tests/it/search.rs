//! Searches: Epic searchset Bundles, "no results" outcomes, bounded paging, bad entries.

use chrono::NaiveDate;
use visitbridge_fhir::{
    Appointment, AppointmentId, AppointmentStatus, DatePrefix, Encounter, FhirError, PatientId,
    PractitionerId, SearchQuery,
};
use visitbridge_testkit::{
    fhir::{self, FhirFake, fhir_json, searchset},
    fixtures::EPIC_APPOINTMENT,
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path, query_param},
};

use crate::client;

fn appointment_with_id(id: &str) -> String {
    let mut value: serde_json::Value = serde_json::from_str(EPIC_APPOINTMENT).unwrap();
    value["id"] = id.into();
    value.to_string()
}

#[tokio::test]
async fn finds_appointments_by_patient_or_practitioner_and_the_encounter_of_an_appointment() {
    let (server, fake) = FhirFake::start().await;
    let fhir = client(fake.base_url());
    let day = NaiveDate::from_ymd_opt(2026, 3, 5).unwrap();

    let by_patient = SearchQuery::<Appointment>::new()
        .patient(&PatientId::new(fhir::PATIENT_ID).unwrap())
        .date(DatePrefix::Ge, day)
        .date(DatePrefix::Lt, day.succ_opt().unwrap())
        .status(&AppointmentStatus::Booked);
    let page = fhir.search(&by_patient).await.unwrap();
    assert_eq!(page.total, Some(1));
    assert_eq!(page.entry.len(), 1);
    let entry = &page.entry[0];
    assert_eq!(entry.search_mode.as_deref(), Some("match"));
    assert_eq!(
        entry.full_url.as_deref(),
        Some(format!("{}/Appointment/{}", fake.base_url(), fhir::APPOINTMENT_ID).as_str())
    );
    assert_eq!(
        entry
            .resource
            .as_ref()
            .unwrap()
            .id
            .as_ref()
            .unwrap()
            .as_str(),
        fhir::APPOINTMENT_ID
    );
    let query = server.received_requests().await.unwrap()[0]
        .url
        .query()
        .unwrap()
        .to_owned();
    assert_eq!(
        query,
        format!(
            "patient={}&date=ge2026-03-05&date=lt2026-03-06&status=booked",
            fhir::PATIENT_ID
        )
    );

    let by_practitioner = SearchQuery::<Appointment>::new()
        .practitioner(&PractitionerId::new(fhir::PRACTITIONER_ID).unwrap());
    assert_eq!(
        fhir.search(&by_practitioner)
            .await
            .unwrap()
            .resources()
            .count(),
        1
    );

    let encounters = fhir
        .search(
            &SearchQuery::<Encounter>::new()
                .appointment(&AppointmentId::new(fhir::APPOINTMENT_ID).unwrap()),
        )
        .await
        .unwrap();
    let encounter = encounters.resources().next().unwrap();
    assert_eq!(encounter.id.as_ref().unwrap().as_str(), fhir::ENCOUNTER_ID);
}

#[tokio::test]
async fn no_results_is_an_empty_page_with_epic_4101() {
    let (_server, fake) = FhirFake::start().await;
    let query = SearchQuery::<Appointment>::new().patient(&PatientId::new("someone-else").unwrap());
    let page = client(fake.base_url()).search(&query).await.unwrap();
    assert!(page.entry.is_empty());
    assert_eq!(page.outcomes.len(), 1);
    assert!(page.outcomes[0].has_epic_code(4101));
}

/// Mounts three pages of one appointment each; page N links to page N+1 via `next` (absolute
/// from page 1, relative to the base from page 2, as some servers write it).
async fn mount_three_pages(server: &MockServer, fake: &FhirFake) {
    for page in 1..=3 {
        let url = |n: u32| format!("{}/Appointment?patient=p1&page={n}", fake.base_url());
        let next = match page {
            1 => Some(url(2)),
            2 => Some("Appointment?patient=p1&page=3".to_owned()),
            _ => None,
        };
        let body = searchset(
            fake.base_url(),
            &url(page),
            &[&appointment_with_id(&format!("appt-{page}"))],
            next.as_deref(),
        );
        let mut mock = Mock::given(method("GET")).and(path(fake.path("Appointment")));
        mock = if page == 1 {
            mock.and(wiremock::matchers::query_param_is_missing("page"))
        } else {
            mock.and(query_param("page", page.to_string()))
        };
        mock.and(query_param("patient", "p1"))
            .respond_with(fhir_json(200, body))
            .with_priority(1)
            .mount(server)
            .await;
    }
}

#[tokio::test]
async fn paging_follows_next_links_up_to_the_bound() {
    let (server, fake) = FhirFake::start().await;
    mount_three_pages(&server, &fake).await;
    let fhir = client(fake.base_url());
    let query = SearchQuery::<Appointment>::new().patient(&PatientId::new("p1").unwrap());

    let bounded = fhir.search_all(&query, 2).await.unwrap();
    let ids: Vec<&str> = bounded
        .resources()
        .map(|a| a.id.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(ids, ["appt-1", "appt-2"]);
    assert!(
        bounded.next_link().is_some(),
        "a truncated result must say so"
    );

    let all = fhir.search_all(&query, 10).await.unwrap();
    let ids: Vec<&str> = all
        .resources()
        .map(|a| a.id.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(ids, ["appt-1", "appt-2", "appt-3"]);
    assert!(all.next_link().is_none());
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_next_link_to_another_server_is_not_followed() {
    let (server, fake) = FhirFake::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let body = searchset(
        fake.base_url(),
        &format!("{}/Appointment?patient=p1", fake.base_url()),
        &[&appointment_with_id("appt-1")],
        Some(&format!(
            "{}/R4/Appointment?patient=p1&page=2",
            elsewhere.uri()
        )),
    );
    Mock::given(method("GET"))
        .and(path(fake.path("Appointment")))
        .respond_with(fhir_json(200, body))
        .with_priority(1)
        .mount(&server)
        .await;

    let query = SearchQuery::<Appointment>::new().patient(&PatientId::new("p1").unwrap());
    let err = client(fake.base_url())
        .search_all(&query, 5)
        .await
        .unwrap_err();
    assert!(matches!(err, FhirError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test]
async fn one_broken_entry_spoils_only_itself() {
    let (server, fake) = FhirFake::start().await;
    let mut broken: serde_json::Value = serde_json::from_str(&appointment_with_id("bad")).unwrap();
    // A value the model cannot take, which is also patient data that must not reach the error.
    broken["participant"][1]["actor"] = "Lopez, Camila".into();
    let body = searchset(
        fake.base_url(),
        &format!("{}/Appointment?patient=p1", fake.base_url()),
        &[
            &appointment_with_id("good-1"),
            &broken.to_string(),
            &appointment_with_id("good-2"),
        ],
        None,
    );
    Mock::given(method("GET"))
        .and(path(fake.path("Appointment")))
        .respond_with(fhir_json(200, body))
        .with_priority(1)
        .mount(&server)
        .await;

    let query = SearchQuery::<Appointment>::new().patient(&PatientId::new("p1").unwrap());
    let page = client(fake.base_url()).search(&query).await.unwrap();
    let ids: Vec<&str> = page
        .resources()
        .map(|a| a.id.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(ids, ["good-1", "good-2"]);
    let errors: Vec<_> = page.errors().collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].index, 1);
    assert_eq!(errors[0].resource_type, "Appointment");
    assert_eq!(errors[0].path, "participant[1].actor");
    assert!(!errors[0].to_string().contains("Lopez"), "{}", errors[0]);
}
