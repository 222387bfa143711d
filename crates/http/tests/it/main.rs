//! Integration tests of the shared HTTP plumbing against a local wiremock server.

mod assertion;
mod jwks;
mod retry;
