//! Tests of the launch service: its routes in-process, and the binary as a user starts it.

mod binary;
mod routes;
