//! The host's integration tests: one binary, a module per area, real SQLite
//! files and real components built from `guest-examples/`.

mod awaits;
mod cli;
mod fuzz;
mod guarantees;
mod harness;
mod http;
mod manifests;
mod polyglot;
mod postgres;
mod registry;
mod sandbox;
mod scaffold;
mod serve;
mod sql;
mod workers;
