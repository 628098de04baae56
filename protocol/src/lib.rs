//! How the controller and its agents talk.
//!
//! - [`messages`]: the serde message enums, `Hello`/`Welcome`/`Rejected`,
//!   the protocol version and ALPNs, QUIC close codes.
//! - [`metrics`]: host samples and facts as agent-monitor sends them.
//! - [`load`]: load-test tasks, results and files (agent-jmeter).
//! - [`frame`]: length-prefixed bincode frames with a size cap.
//! - [`endpoint`]: QUIC endpoints (quinn) over the rustls configs of `certs`.
//! - [`link`]: the agent side: enroll, connect with mutual TLS, heartbeat,
//!   reconnect with jittered backoff; used by both agents.
//! - `cli` (feature `cli`): the agents' shared options and main loop.
//!
//! Only this crate knows the wire format. It knows nothing about what the
//! controller stores or what the agents measure.

#[cfg(feature = "cli")]
pub mod cli;
pub mod endpoint;
pub mod frame;
pub mod link;
pub mod load;
pub mod messages;
pub mod metrics;

pub use link::{
    Backoff, BulkStream, IdentityStore, Link, LinkConfig, LinkError, LinkHandle, LinkState, Request,
};
pub use messages::{
    ALPN_AGENT, ALPN_ENROLL, AgentMsg, ControllerMsg, Hello, PROTOCOL_VERSION, close,
    peek_protocol_version,
};

/// Re-exported so agents and the controller name one version of these.
pub use certs::{AgentId, CaPin, Role};

/// The text the enrollment verifier puts in its error on a wrong CA pin.
pub(crate) fn tls_pin_mismatch() -> &'static str {
    certs::tls::PIN_MISMATCH
}
