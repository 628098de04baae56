//! The MyPlatform controller: one binary that holds the inventory, talks to
//! every agent, and serves the API.
//!
//! - [`config`]: settings from one TOML file plus environment overrides.
//! - [`startup`]: builds and runs everything from `Settings` (used by
//!   `main` and by tests).
//! - [`inventory`]: SQLite; join tokens, agents, users, groups, rooms,
//!   servers, sessions.
//! - [`auth`]: passwords, sessions, API tokens, and the one policy that
//!   decides who may see or do what.
//! - [`vault`]: server credentials sealed at rest (AES-256-GCM).
//! - [`metrics`]: samples from agent-monitor: de-duplication, newest
//!   sample per host, fan-out to stores.
//! - [`gateway`]: QUIC endpoint, enrollment, agent sessions, live registry.
//! - [`web`]: pages, JSON API, static assets; the only module that knows
//!   HTTP.
//! - [`loadtest`]: load-test plans and uploaded JMeter zips, their data
//!   files and limits.
//! - [`alerts`]: alert rules and the mail that tells people.
//! - [`demo`]: the one-command local demo (controller + two local agents).

pub mod alerts;
pub mod auth;
pub mod config;
pub mod demo;
pub mod deploy;
pub mod files;
pub mod gateway;
pub mod inventory;
pub mod loadtest;
pub mod metrics;
pub mod shell;
pub mod ssh;
pub mod startup;
pub mod vault;
pub mod web;

pub use config::Settings;
pub use startup::Controller;
