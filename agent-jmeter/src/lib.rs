//! agent-jmeter: runs JMeter for the controller's load tests.
//!
//! - [`generator`]: the task state machine of this agent, driven by the
//!   controller: fetches and checks a task's artifact, runs it through the
//!   supervisor, streams its per-second results, answers rate changes,
//!   stops and file requests, and reports its tasks after every
//!   reconnection.
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
//! [`generator`] is the one module that knows the protocol and the link;
//! the others know neither and are tested without a controller.

pub mod control;
pub mod generator;
pub mod install;
pub mod results;
pub mod supervisor;
pub mod tail;
