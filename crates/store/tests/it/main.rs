//! Integration tests of visitbridge-store. One suite, run on both backends: a real SQLite file in
//! a temporary directory, and a fresh database on a throwaway PostgreSQL server (see
//! `visitbridge-testpg`).

/// Runs each named test, an `async fn(TestDb)`, once on each backend, as
/// `<module>::on_sqlite::<name>` and `<module>::on_postgres::<name>`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::fixtures::TestDb::sqlite().await).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::fixtures::TestDb::postgres().await).await
                }
            )*
        }
    };
}

mod audit_search;
mod concurrency;
mod configurations;
mod crash;
mod fixtures;
mod leases;
mod migrations;
mod outbox;
mod pending;
mod report;
mod retention;
mod sessions;
mod tenants;
mod upkeep;
mod user_links;
mod visits;
