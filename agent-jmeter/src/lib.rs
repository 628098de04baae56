//! agent-jmeter's JMeter supervisor, without the link to the controller.
//!
//! - [`install`]: finds JMeter (configured or `JMETER_HOME`) and `java`,
//!   and checks both run, with their versions.
//! - [`supervisor`]: runs one task: unpacks its artifact into the task
//!   directory, starts JMeter non-GUI, changes its rate, stops it (graceful,
//!   then killed), and reports [`supervisor::Event`]s.
//! - [`control`]: the local channel into the JVM (a Groovy init script
//!   reading the JVM's stdin): rate changes and shutdown.
//! - [`tail`] and [`results`]: follow the results CSV as JMeter writes it
//!   and turn it into per-second, per-label [`results::Second`]s with HDR
//!   histograms.
//!
//! Nothing here knows the protocol or the controller: `main.rs` will turn
//! events into messages and messages into calls.

pub mod control;
pub mod install;
pub mod results;
pub mod supervisor;
pub mod tail;
