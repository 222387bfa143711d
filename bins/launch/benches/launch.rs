//! The launch-path benchmark: `cargo bench -p visitbridge-launch` (release build) prints one
//! Markdown table — round trips on the critical path, the overhead with instant upstreams against
//! a minimal hyper server, webhook ingestion, memory and start-up, on SQLite and PostgreSQL.
//! docs/performance.md holds the latest table and how to read it.
//!
//! The flows are the test tree's (`tests/it/bench.rs` and the harness it drives), included here
//! module by module so that the benchmark and the tests exercise the same fakes; what only the
//! tests use is not compiled into this target's calls, hence the allowances.
#![allow(dead_code, unused_imports, unused_macros)]

#[path = "../tests/it/bench.rs"]
mod bench;
#[path = "../tests/it/cluster.rs"]
mod cluster;
#[path = "../tests/it/harness.rs"]
mod harness;
#[path = "../tests/it/provider.rs"]
mod provider;
#[path = "../tests/it/round_trips.rs"]
mod round_trips;

fn main() {
    bench::main();
}
