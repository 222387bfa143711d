//! Configurations, their history, approved lookups, optimistic concurrency and tenant isolation.

use visitbridge_approval::*;
use visitbridge_store::*;

use crate::fixtures::*;

async fn round_trip_with_history_that_replays(db: TestDb) {
    let store = db.store().await;
    let t = with_tenant(&store, "contoso").await;
    let config = create(&store, &t, "cfg-1", URL, Environment::Production).await;
    assert_eq!(
        store.get_configuration(&t, config.id()).await.unwrap(),
        Some(config.clone())
    );
    let approved = approve(&store, config).await;
    let stored = store
        .get_configuration(&t, approved.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, approved);

    let history = store
        .configuration_history(&t, approved.id())
        .await
        .unwrap();
    let actions: Vec<_> = history.iter().map(|e| e.action.kind()).collect();
    assert_eq!(
        actions,
        [
            ActionKind::Create,
            ActionKind::Submit,
            ActionKind::RecordEhrValidation,
            ActionKind::Approve
        ]
    );
    assert_eq!(
        Configuration::replay(stored.id(), stored.tenant(), &history).unwrap(),
        stored
    );
}

async fn launches_find_the_approved_version_only(db: TestDb) {
    let store = db.store().await;
    let t = with_tenant(&store, "contoso").await;
    let config = create(&store, &t, "cfg-1", URL, Environment::Production).await;
    assert_eq!(
        store
            .find_approved(&url(URL), Environment::Production)
            .await
            .unwrap(),
        None
    );

    let approved = approve(&store, config).await;
    let found = store
        .find_approved(&url(URL), Environment::Production)
        .await
        .unwrap();
    assert_eq!(found.as_ref().map(|c| c.id()), Some(approved.id()));
    // The launch came through the test record: no production/test confusion.
    assert_eq!(
        store
            .find_approved(&url(URL), Environment::Test)
            .await
            .unwrap(),
        None
    );
    let by_issuer = store.find_approved_by_issuer(&url(URL)).await.unwrap();
    assert_eq!(by_issuer.len(), 1);
    assert_eq!(
        by_issuer[0].approved().unwrap().settings.environment,
        Environment::Production
    );

    // An edit to another URL awaits approval: the old URL keeps serving, the new one doesn't yet.
    let edited = approved
        .edit(
            &admin(&t),
            settings(TEST_URL, Environment::Production),
            at(10),
        )
        .unwrap();
    store.update_configuration(&edited).await.unwrap();
    let found = store
        .find_approved(&url(URL), Environment::Production)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.state(), ApprovalState::AwaitingApproval);
    assert_eq!(found.approved().unwrap().settings.fhir_base_url, url(URL));
    assert_eq!(
        store
            .find_approved(&url(TEST_URL), Environment::Production)
            .await
            .unwrap(),
        None
    );
}

async fn concurrent_edits_conflict_instead_of_overwriting(db: TestDb) {
    let store = db.store().await;
    let t = with_tenant(&store, "contoso").await;
    let config = create(&store, &t, "cfg-1", URL, Environment::Production).await;

    // Two admins start from the same revision.
    let first = config
        .edit(
            &admin(&t),
            settings(TEST_URL, Environment::Production),
            at(1),
        )
        .unwrap();
    let second = config.submit(&admin(&t), at(2)).unwrap();
    store.update_configuration(&first).await.unwrap();
    let err = store.update_configuration(&second).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                what: "configuration"
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the configuration was changed by someone else; reload it and try again"
    );

    let stored = store
        .get_configuration(&t, config.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, first.configuration);
    let history = store.configuration_history(&t, config.id()).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1], first.entry);
}

async fn refuses_inconsistent_or_unknown_writes(db: TestDb) {
    let store = db.store().await;
    let t = with_tenant(&store, "contoso").await;
    let config = create(&store, &t, "cfg-1", URL, Environment::Production).await;
    let submitted = config.submit(&admin(&t), at(1)).unwrap();

    // A later transition cannot be inserted, nor a creation updated.
    assert!(matches!(
        store.insert_configuration(&submitted).await,
        Err(StoreError::InvalidRecord(_))
    ));
    // An entry that is not the configuration's.
    let mut mismatched = submitted.clone();
    mismatched.entry.revision = 7;
    assert!(matches!(
        store.update_configuration(&mismatched).await,
        Err(StoreError::InvalidRecord(_))
    ));

    // A configuration that was never stored.
    let ghost = Configuration::create(
        &admin(&t),
        ConfigurationId::new("ghost").unwrap(),
        settings(TEST_URL, Environment::Test),
        at(0),
    )
    .unwrap();
    let ghost_submit = ghost.configuration.submit(&admin(&t), at(1)).unwrap();
    assert!(matches!(
        store.update_configuration(&ghost_submit).await,
        Err(StoreError::NotFound { .. })
    ));

    // A tenant that does not exist.
    let nowhere = tenant_id("nowhere");
    let orphan = Configuration::create(
        &admin(&nowhere),
        ConfigurationId::new("orphan").unwrap(),
        settings(URL, Environment::Test),
        at(0),
    )
    .unwrap();
    assert!(matches!(
        store.insert_configuration(&orphan).await,
        Err(StoreError::UnknownTenant)
    ));

    // save_configuration picks insert or update.
    store.save_configuration(&submitted).await.unwrap();
    assert_eq!(
        store
            .get_configuration(&t, config.id())
            .await
            .unwrap()
            .unwrap()
            .state(),
        ApprovalState::AwaitingApproval
    );
}

async fn one_configuration_per_url_and_environment(db: TestDb) {
    let store = db.store().await;
    let contoso = with_tenant(&store, "contoso").await;
    let fabrikam = with_tenant(&store, "fabrikam").await;
    let first = create(&store, &contoso, "cfg-1", URL, Environment::Production).await;

    // Same tenant, same URL and environment: refused. Other environment: fine.
    let dup = Configuration::create(
        &admin(&contoso),
        ConfigurationId::new("cfg-2").unwrap(),
        settings(URL, Environment::Production),
        at(0),
    )
    .unwrap();
    let err = store.insert_configuration(&dup).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "this organisation already has a configuration for this FHIR base URL and environment"
    );
    create(&store, &contoso, "cfg-3", URL, Environment::Test).await;

    // The same id twice.
    let same_id = Configuration::create(
        &admin(&fabrikam),
        ConfigurationId::new("cfg-1").unwrap(),
        settings(TEST_URL, Environment::Test),
        at(0),
    )
    .unwrap();
    assert_eq!(
        store
            .insert_configuration(&same_id)
            .await
            .unwrap_err()
            .to_string(),
        "a configuration with this id already exists"
    );

    // A FHIR base URL and environment belong to one organisation: another may not even draft
    // it while Contoso's configuration is not rejected, nor once it is approved.
    const HELD: &str = "another organisation already has a configuration for this FHIR base URL and environment; a FHIR base URL belongs to one organisation: check the URL, or ask VisitBridge's operator if it is really yours";
    let theirs = Configuration::create(
        &admin(&fabrikam),
        ConfigurationId::new("cfg-f").unwrap(),
        settings(URL, Environment::Production),
        at(0),
    )
    .unwrap();
    let err = store.insert_configuration(&theirs).await.unwrap_err();
    assert!(matches!(err, StoreError::HeldByAnotherTenant), "{err:?}");
    assert_eq!(err.to_string(), HELD);
    assert_eq!(
        store
            .get_configuration(&fabrikam, theirs.configuration.id())
            .await
            .unwrap(),
        None,
        "nothing was kept"
    );
    let approved = approve(&store, first).await;
    assert!(matches!(
        store.insert_configuration(&theirs).await.unwrap_err(),
        StoreError::HeldByAnotherTenant
    ));
    // Nor may another organisation move a configuration of its own onto it.
    let other = create(
        &store,
        &fabrikam,
        "cfg-g",
        TEST_URL,
        Environment::Production,
    )
    .await;
    let moved = other
        .edit(
            &admin(&fabrikam),
            settings(URL, Environment::Production),
            at(1),
        )
        .unwrap();
    assert!(matches!(
        store.update_configuration(&moved).await.unwrap_err(),
        StoreError::HeldByAnotherTenant
    ));

    // While an edit of Contoso's approved configuration is rejected, its approved version still
    // holds the URL.
    let edited = approved
        .edit(
            &admin(&contoso),
            settings(
                "https://ehr3.example.org/api/FHIR/R4",
                Environment::Production,
            ),
            at(4),
        )
        .unwrap();
    store.update_configuration(&edited).await.unwrap();
    let rejected = edited
        .configuration
        .reject(&approver(&contoso), "wrong URL", at(5))
        .unwrap();
    store.update_configuration(&rejected).await.unwrap();
    assert!(matches!(
        store.insert_configuration(&theirs).await.unwrap_err(),
        StoreError::HeldByAnotherTenant
    ));
}

async fn a_rejected_configuration_holds_no_url_and_cannot_take_it_back_once_taken(db: TestDb) {
    let store = db.store().await;
    let contoso = with_tenant(&store, "contoso").await;
    let fabrikam = with_tenant(&store, "fabrikam").await;
    let mistaken = create(&store, &contoso, "cfg-c", URL, Environment::Production).await;
    let t = mistaken.submit(&admin(&contoso), at(1)).unwrap();
    store.update_configuration(&t).await.unwrap();
    let t = t
        .configuration
        .reject(&approver(&contoso), "not our EHR", at(2))
        .unwrap();
    store.update_configuration(&t).await.unwrap();

    // Rejected: the URL is free for its real owner...
    let theirs = create(&store, &fabrikam, "cfg-f", URL, Environment::Production).await;
    approve(&store, theirs).await;
    // ...and the rejected one cannot be submitted again for it.
    let again = t.configuration.submit(&admin(&contoso), at(3)).unwrap();
    assert!(matches!(
        store.update_configuration(&again).await.unwrap_err(),
        StoreError::HeldByAnotherTenant
    ));
    assert_eq!(
        store
            .find_approved(&url(URL), Environment::Production)
            .await
            .unwrap()
            .unwrap()
            .tenant(),
        &fabrikam,
        "launches find the one approved configuration"
    );
}

async fn of_two_concurrent_creates_by_two_organisations_one_succeeds(db: TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    let contoso = with_tenant(&a, "contoso").await;
    let fabrikam = with_tenant(&a, "fabrikam").await;
    for round in 0..10 {
        let fhir = format!("https://ehr{round}.example.org/api/FHIR/R4");
        let insert = |store: AnyStore, tenant: TenantId, id: String, fhir: String| {
            tokio::spawn(async move {
                let created = Configuration::create(
                    &admin(&tenant),
                    ConfigurationId::new(id).unwrap(),
                    settings(&fhir, Environment::Production),
                    at(0),
                )
                .unwrap();
                store.insert_configuration(&created).await
            })
        };
        let first = insert(
            a.clone(),
            contoso.clone(),
            format!("c-{round}"),
            fhir.clone(),
        );
        let second = insert(
            b.clone(),
            fabrikam.clone(),
            format!("f-{round}"),
            fhir.clone(),
        );
        let results = [first.await.unwrap(), second.await.unwrap()];
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StoreError::HeldByAnotherTenant))),
            "round {round}: {results:?}"
        );
    }
}

async fn tenants_are_isolated(db: TestDb) {
    let store = db.store().await;
    let contoso = with_tenant(&store, "contoso").await;
    let fabrikam = with_tenant(&store, "fabrikam").await;
    let c1 = create(&store, &contoso, "c-1", URL, Environment::Production).await;
    let c2 = create(&store, &contoso, "c-2", URL, Environment::Test).await;
    let f1 = create(&store, &fabrikam, "f-1", TEST_URL, Environment::Test).await;

    let ids = |v: Vec<Configuration>| {
        v.into_iter()
            .map(|c| c.id().as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.list_configurations(&contoso).await.unwrap()),
        ["c-1", "c-2"]
    );
    assert_eq!(
        ids(store.list_configurations(&fabrikam).await.unwrap()),
        ["f-1"]
    );

    assert_eq!(
        store.get_configuration(&fabrikam, c1.id()).await.unwrap(),
        None
    );
    assert!(
        store
            .configuration_history(&fabrikam, c2.id())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .configuration_history(&fabrikam, f1.id())
            .await
            .unwrap()
            .len(),
        1
    );

    // A transition by another tenant's admin cannot even be built, and a forged one is not found.
    assert_eq!(
        c1.submit(&admin(&fabrikam), at(1)).unwrap_err(),
        TransitionError::WrongTenant
    );
}

async fn history_cannot_be_changed_or_deleted(db: TestDb) {
    let store = db.store().await;
    let t = with_tenant(&store, "contoso").await;
    let config = create(&store, &t, "cfg-1", URL, Environment::Production).await;
    let before = store.configuration_history(&t, config.id()).await.unwrap();

    // Even with direct SQL access to the database.
    let err = db
        .execute_raw("UPDATE configuration_history SET actor = 'mallory@example.org'")
        .await
        .unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    let err = db
        .execute_raw("DELETE FROM configuration_history")
        .await
        .unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    let err = db
        .execute_raw("DELETE FROM configurations")
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("foreign key"), "{err}");

    assert_eq!(
        store.configuration_history(&t, config.id()).await.unwrap(),
        before
    );
}

crate::on_both_backends!(
    round_trip_with_history_that_replays,
    launches_find_the_approved_version_only,
    concurrent_edits_conflict_instead_of_overwriting,
    refuses_inconsistent_or_unknown_writes,
    one_configuration_per_url_and_environment,
    a_rejected_configuration_holds_no_url_and_cannot_take_it_back_once_taken,
    of_two_concurrent_creates_by_two_organisations_one_succeeds,
    tenants_are_isolated,
    history_cannot_be_changed_or_deleted,
);
