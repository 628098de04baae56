//! The MyPlatform controller: one binary that holds the inventory, talks to
//! every agent, and serves the API.
//!
//! - [`config`]: settings from one TOML file plus environment overrides.
//! - [`startup`]: builds and runs everything from `Settings` (used by
//!   `main` and by tests).
//! - [`inventory`]: SQLite; join tokens and enrolled agents so far.
//! - [`metrics`]: samples from agent-monitor: de-duplication, newest
//!   sample per host, fan-out to stores.
//! - [`gateway`]: QUIC endpoint, enrollment, agent sessions, live registry.
//! - [`web`]: HTTP JSON API; the only module that knows HTTP.
//! - [`alerts`]: alert rules and the mail that tells people.
//! - [`demo`]: the one-command local demo (controller + two local agents).

pub mod alerts;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod inventory;
pub mod metrics;
pub mod startup;
pub mod web;

pub use config::Settings;
pub use startup::Controller;
