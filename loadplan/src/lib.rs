//! loadplan: the load-test plan as MyPlatform edits it, and the JMeter
//! files made from it: the plan model and its validation, JMX generation
//! and import, uploaded JMeter zips, and the artifact a task runs.
//!
//! - `model`, `validate`: the plan and its field-by-field checks.
//! - `jmx`: .jmx generation, import and preparing a plan for a run.
//! - `bundle`: uploaded JMeter zips (checked, unpacked safely) and the one
//!   zip a task runs.
//!
//! Pure data in, data out: no database, no network, no async runtime, no
//! clock of its own; the only I/O is `bundle` reading and writing the
//! files its caller names. The controller stores and serves plans;
//! agent-jmeter runs artifacts.

pub mod bundle;
pub mod jmx;
pub mod model;
pub mod validate;

pub use model::*;
pub use validate::{Limits, Problem, Problems};
