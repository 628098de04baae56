//! Trust between the controller and its agents.
//!
//! - [`ca`]: the controller's private certificate authority (created on first
//!   start, key file 0600), the controller's server certificate, CSR signing
//!   into client-only agent certificates, and the CA pin.
//! - [`token`]: join tokens (random secret, only the hash stored, expiry, use
//!   count, bound to a role and optionally a group/room).
//! - [`identity`]: what an agent keeps on disk after enrollment.
//! - [`tls`]: rustls configurations for mutual TLS (controller and agents),
//!   the pinned-CA verifier used once during enrollment, and revocation.
//!
//! This crate knows nothing about the wire protocol, QUIC or SQLite: callers
//! persist tokens and revocations wherever they like.

pub mod ca;
pub mod identity;
pub mod tls;
pub mod token;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use ca::{CaPin, CertificateAuthority, CertifiedAgent};
pub use identity::AgentIdentity;
pub use tls::RevocationList;
pub use token::{JoinToken, TokenHash, TokenPolicy, TokenRefusal};

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("certificate error: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration error: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid CA pin {0:?}: expected sha256:<64 hex digits>")]
    BadPin(String),
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an agent is for. Carried in its certificate, its join token and its
/// `Hello`, and all three must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watches a host: agent-monitor.
    Monitor,
    /// Generates load with JMeter: agent-jmeter.
    Jmeter,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Monitor => "monitor",
            Role::Jmeter => "jmeter",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "monitor" => Ok(Role::Monitor),
            "jmeter" => Ok(Role::Jmeter),
            other => Err(format!(
                "unknown role {other:?}: expected monitor or jmeter"
            )),
        }
    }
}

/// An agent's identity as issued by the controller at enrollment: `ag-` and
/// 16 hex digits. It is the certificate's common name; IP addresses play no
/// part in identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    /// A fresh random id (64 bits: unique per controller, not a secret).
    pub fn generate() -> AgentId {
        let mut bytes = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .expect("the system random number generator failed");
        AgentId(format!("ag-{}", hex::encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AgentId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = s.len() == 19
            && s.starts_with("ag-")
            && s[3..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if ok {
            Ok(AgentId(s))
        } else {
            Err(format!(
                "invalid agent id {s:?}: expected ag- and 16 lowercase hex digits"
            ))
        }
    }
}

impl std::str::FromStr for AgentId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AgentId::try_from(s.to_string())
    }
}

impl From<AgentId> for String {
    fn from(id: AgentId) -> String {
        id.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of some bytes, as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Writes a file readable only by its owner (keys, certificates).
pub fn write_private_file(path: &std::path::Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Write to a temporary name then rename, so a crash never leaves half a key.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_parse_strictly() {
        let id = AgentId::generate();
        assert_eq!(id.as_str().parse::<AgentId>().unwrap(), id);
        for bad in [
            "",
            "ag-",
            "ag-XYZ",
            "ag-0123456789ABCDEF",
            "xx-0123456789abcdef",
            "ag-0123456789abcdef0",
        ] {
            assert!(bad.parse::<AgentId>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn roles_round_trip() {
        for r in [Role::Monitor, Role::Jmeter] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
