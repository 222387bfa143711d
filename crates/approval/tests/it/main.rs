//! Integration tests of visitbridge-approval, through its public API only.

mod allowed;
mod fixtures;
mod invariants;
mod machine;
mod properties;
mod records;
