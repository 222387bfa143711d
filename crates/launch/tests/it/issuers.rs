//! Only approved issuers: a launch's `iss` finds its configuration only once it is approved, in
//! the environment the record says; every refusal names the host only.

use visitbridge_approval::Environment;
use visitbridge_launch_core::{IssuerRefusal, find_configuration};

use crate::fakes::*;

const ISS: &str = "https://fhir.example.org/api/FHIR/R4";

#[tokio::test]
async fn a_configuration_serves_launches_only_once_approved() {
    let world = World::new().await;
    let draft = find_configuration(world.store.as_ref(), ISS, None).await;
    assert!(
        matches!(&draft, Err(IssuerRefusal::NotApproved { host }) if host == "fhir.example.org"),
        "{draft:?}"
    );
    world.approve().await;
    let found = find_configuration(world.store.as_ref(), ISS, None)
        .await
        .unwrap();
    assert_eq!(found.id(), &world.configuration);
    assert_eq!(found.fhir_base().as_str(), ISS);
    // The issuer as EHRs send it: trailing slash, other case of the host.
    let found = find_configuration(
        world.store.as_ref(),
        "https://FHIR.example.org/api/FHIR/R4/",
        Some(Environment::Production),
    )
    .await
    .unwrap();
    assert_eq!(found.id(), &world.configuration);
}

#[tokio::test]
async fn another_issuer_or_a_lookalike_path_is_not_approved() {
    let world = World::new().await;
    world.approve().await;
    for iss in [
        "https://fhir.example.org/api/FHIR/R4/../../other/R4",
        "https://fhir.example.org.evil.example/api/FHIR/R4",
        "https://fhir.example.org/api/FHIR/DSTU2",
        "not a url",
        "",
    ] {
        let refused = find_configuration(world.store.as_ref(), iss, None).await;
        assert!(
            matches!(refused, Err(IssuerRefusal::NotApproved { .. })),
            "{iss}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn a_test_record_launching_against_a_production_approval_is_explained() {
    let world = World::new().await;
    world.approve().await;
    let refused = find_configuration(world.store.as_ref(), ISS, Some(Environment::Test)).await;
    let Err(IssuerRefusal::EnvironmentMismatch {
        host,
        launched,
        approved,
    }) = refused
    else {
        panic!("expected the environment mix-up, got {refused:?}");
    };
    assert_eq!(host, "fhir.example.org", "the host only, never the path");
    assert_eq!(
        (launched, approved),
        (Environment::Test, Environment::Production)
    );
}
