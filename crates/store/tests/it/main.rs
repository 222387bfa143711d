//! Integration tests of visitbridge-store, on real SQLite files in temporary directories.

mod concurrency;
mod configurations;
mod fixtures;
mod migrations;
mod outbox;
mod pending;
mod sessions;
mod tenants;
mod upkeep;
mod user_links;
mod visits;
