//! The configuration portal: an admin adds a production configuration, the named approver signs
//! in to the EHR and approves it, and the integration records appear.

use fantoccini::Locator;
use visitbridge_e2e::Browser;

use crate::{artefacts, demo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_adds_and_the_approver_validates_and_approves_a_configuration() {
    let demo = demo().await;
    let dir = artefacts("portal");

    // The admin signs in with Microsoft and sees the seeded, approved test configuration.
    let admin = Browser::start(dir.clone()).await.expect("browser");
    admin.open(demo.portal_url.as_str()).await.unwrap();
    admin.click("Sign in with Microsoft").await.unwrap();
    admin.click("Casey Admin").await.unwrap();
    let list = admin.wait_for_text("Configurations").await.unwrap();
    assert!(list.contains("Approved"), "{list}");
    admin.screenshot("01-configurations").await.unwrap();

    // Adds the same EHR for production, naming the approver.
    admin.click("Add a configuration").await.unwrap();
    admin
        .fill("fhir_base_url", demo.fhir_base_url.as_str())
        .await
        .unwrap();
    admin
        .client()
        .find(Locator::Id("environment-production"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    admin.fill("approver", &demo.approver).await.unwrap();
    admin.fill("client_id", "visitbridge-prod").await.unwrap();
    admin.click("Check and save").await.unwrap();
    admin.wait_for_text("Submit for approval").await.unwrap();
    admin.screenshot("02-added").await.unwrap();
    admin.click("Submit for approval").await.unwrap();
    admin.wait_for_text("Awaiting approval").await.unwrap();
    let detail_url = admin.url().await.unwrap();

    // The approver signs in with Microsoft, then to the EHR, then approves.
    let approver = Browser::start(dir.clone()).await.expect("browser");
    approver.open(demo.portal_url.as_str()).await.unwrap();
    approver.click("Sign in with Microsoft").await.unwrap();
    approver.click("Quinn Analyst").await.unwrap();
    approver.wait_for_text("Configurations").await.unwrap();
    approver.open(&detail_url).await.unwrap();
    let before = approver.wait_for_text("Sign in to your EHR").await.unwrap();
    assert!(before.contains("Awaiting approval"), "{before}");
    approver.click("Sign in to your EHR").await.unwrap();
    approver.wait_for_text("Sign in as").await.unwrap();
    approver.screenshot("03-ehr-sign-in").await.unwrap();
    approver.click("Sign in as").await.unwrap();
    approver.wait_for_text("EHR sign-in").await.unwrap();
    approver.click("Approve").await.unwrap();
    approver.wait_for_text("Approved").await.unwrap();
    approver.screenshot("04-approved").await.unwrap();

    // The records to enter in the EHR.
    approver.click("Integration records").await.unwrap();
    let records = approver.wait_for_text("sessionId=%CSN%").await.unwrap();
    for wanted in [
        "/launch/provider",
        "/launch/patient",
        "/launch/device-test",
        "/launch/callback",
        "visitbridge-prod",
    ] {
        assert!(records.contains(wanted), "{wanted} missing: {records}");
    }
    approver.screenshot("05-integration-records").await.unwrap();

    admin.close().await;
    approver.close().await;
}
