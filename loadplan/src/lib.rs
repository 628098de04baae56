//! loadplan: the load-test plan as MyPlatform edits it, and the JMeter
//! files made from it: the plan model and its validation, JMX generation
//! and import, uploaded JMeter zips, and the artifact a task runs.
//!
//! Pure data in, data out: no database, no network, no clock of its own.
//! The controller stores and serves plans; agent-jmeter runs artifacts.

pub mod jmx;
pub mod model;
pub mod validate;

pub use model::*;
pub use validate::{Limits, Problem, Problems};
