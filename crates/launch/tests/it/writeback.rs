//! Each configuration's write-back sinks: set from the store before its first event, once per
//! approved version; none for a configuration that is not approved or not known; a failure to
//! build them is an error (the event waits), not an event without its outbox rows.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use visitbridge_approval::ConfigurationId;
use visitbridge_audit::{Sink, SinkResolver};
use visitbridge_launch_core::{
    ApprovedConfiguration, ConfigurationSinks, SinkBuilder, SinkSetupError,
};
use visitbridge_store::{ConfigurationRepo, TenantRepo};

use crate::fakes::{World, status_sink};

#[derive(Debug, thiserror::Error)]
#[error("the sink's endpoint is not a URL")]
struct BadSetting;

/// Builds one status sink per configuration, counting builds; fails while told to.
#[derive(Default)]
struct Builder {
    builds: AtomicUsize,
    failing: AtomicBool,
}

impl SinkBuilder for Builder {
    fn build(
        &self,
        _: &ApprovedConfiguration,
    ) -> Result<Vec<Arc<dyn Sink>>, Box<dyn std::error::Error + Send + Sync>> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(Box::new(BadSetting));
        }
        Ok(vec![status_sink()])
    }
}

fn sinks_of(world: &World, builder: &Arc<Builder>) -> ConfigurationSinks {
    ConfigurationSinks::new(
        world.store.clone() as Arc<dyn TenantRepo>,
        world.store.clone() as Arc<dyn ConfigurationRepo>,
        Arc::clone(builder) as Arc<dyn SinkBuilder>,
    )
}

#[tokio::test]
async fn an_approved_configuration_gets_its_sinks_once_from_the_store() {
    let world = World::new().await;
    world.approve().await;
    let builder = Arc::new(Builder::default());
    let sinks = sinks_of(&world, &builder);
    assert!(sinks.sinks().sinks_for(&world.configuration).is_empty());

    sinks.ensure(&world.configuration).await.unwrap();
    let set = sinks.sinks().sinks_for(&world.configuration);
    assert_eq!(
        set.iter().map(|s| s.name().as_str()).collect::<Vec<_>>(),
        ["epic-status"]
    );
    sinks.ensure(&world.configuration).await.unwrap();
    sinks.configure_all().await;
    assert_eq!(
        builder.builds.load(Ordering::SeqCst),
        1,
        "once per approved version"
    );
}

#[tokio::test]
async fn a_configuration_not_approved_or_not_known_has_nothing_to_write_back_to() {
    let world = World::new().await;
    let builder = Arc::new(Builder::default());
    let sinks = sinks_of(&world, &builder);
    sinks.ensure(&world.configuration).await.unwrap();
    let unknown = ConfigurationId::new("cfg-unknown").unwrap();
    sinks.ensure(&unknown).await.unwrap();
    sinks.configure_all().await;
    assert_eq!(builder.builds.load(Ordering::SeqCst), 0);
    assert!(!sinks.sinks().is_configured(&world.configuration));
    assert!(!sinks.sinks().is_configured(&unknown));

    // Approved since: its next event sets them.
    world.approve().await;
    sinks.ensure(&world.configuration).await.unwrap();
    assert_eq!(sinks.sinks().sinks_for(&world.configuration).len(), 1);
}

#[tokio::test]
async fn sinks_that_cannot_be_built_are_an_error_until_they_can() {
    let world = World::new().await;
    world.approve().await;
    let builder = Arc::new(Builder::default());
    builder.failing.store(true, Ordering::SeqCst);
    let sinks = sinks_of(&world, &builder);
    sinks.configure_all().await;
    let refused = sinks.ensure(&world.configuration).await.unwrap_err();
    assert!(
        matches!(&refused, SinkSetupError::Build { configuration, .. } if configuration == "cfg-1"),
        "{refused}"
    );
    assert!(std::error::Error::source(&refused).is_some(), "keeps why");
    assert!(!sinks.sinks().is_configured(&world.configuration));

    builder.failing.store(false, Ordering::SeqCst);
    sinks.ensure(&world.configuration).await.unwrap();
    assert_eq!(sinks.sinks().sinks_for(&world.configuration).len(), 1);
}
