//! Integration tests of visitbridge-smart: real HTTP against the testkit SMART and Entra fakes.

mod backend;
mod common;
mod discovery;
mod jwks;
mod launch;
mod oidc;
mod refusals;
