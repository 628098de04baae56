//! agent-monitor: watches one host for the MyPlatform controller.
//!
//! - [`collect`]: one collector per source (/proc, /sys, sock_diag,
//!   hsperfdata), pure parsers over captured text/bytes plus thin I/O.
//! - [`app`]: the group's application process, its ports and JVM.
//! - [`sampler`]: all collectors into one `HostSample` per tick.
//! - [`spool`]: the on-disk buffer of unacknowledged batches.
//! - [`monitor`]: the loop: sample -> spool -> controller, acks, facts.
//! - [`cache`]: optional page-cache drop when memory is low.
//!
//! It never forks a process per tick (no iostat, ss or jstat), and it never
//! decides anything about groups or rooms: the controller does.

pub mod app;
pub mod cache;
pub mod collect;
pub mod monitor;
pub mod sampler;
pub mod spool;
