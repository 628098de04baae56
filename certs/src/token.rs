//! Join tokens: the one-time secret an admin hands to a new agent.
//!
//! A token is 160 random bits, shown once. Only its SHA-256 is stored; the
//! stored policy says which role it admits, where the agent lands (group,
//! room), until when, and how many more agents may use it.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Role, sha256_hex};

const PREFIX: &str = "mpt_";
const SECRET_BYTES: usize = 20;

/// The secret itself. Never logged: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken(String);

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinToken(<secret>)")
    }
}

impl JoinToken {
    pub fn generate() -> JoinToken {
        let mut bytes = [0u8; SECRET_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .expect("the system random number generator failed");
        JoinToken(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// Accepts only the shape we issue, so a typo fails fast and clearly.
    pub fn parse(s: &str) -> Result<JoinToken, TokenRefusal> {
        let body = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(TokenRefusal::Malformed)?;
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body) {
            Ok(bytes) if bytes.len() == SECRET_BYTES => Ok(JoinToken(s.trim().to_string())),
            _ => Err(TokenRefusal::Malformed),
        }
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(sha256_hex(self.0.as_bytes()))
    }
}

/// What is stored instead of the token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenHash(pub String);

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPolicy {
    pub role: Role,
    pub group: Option<String>,
    pub room: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    pub uses_left: u32,
}

/// Why a token was not accepted. The messages go back to the agent, so they
/// say what to do, and never echo the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("join token is malformed (expected mpt_ followed by 27 characters)")]
    Malformed,
    #[error("join token is unknown to this controller (create one with `controller token create`)")]
    Unknown,
    #[error("join token expired; create a new one with `controller token create`")]
    Expired,
    #[error("join token has no uses left; create a new one with `controller token create`")]
    UsedUp,
    #[error("join token is for {token} agents, but a {agent} agent presented it")]
    WrongRole { token: Role, agent: Role },
}

impl TokenPolicy {
    /// Whether an agent of `role` may enroll with this token at `now` (Unix
    /// seconds). The caller consumes one use atomically with its store.
    pub fn admit(&self, role: Role, now: u64) -> Result<(), TokenRefusal> {
        if now >= self.expires_at {
            return Err(TokenRefusal::Expired);
        }
        if self.uses_left == 0 {
            return Err(TokenRefusal::UsedUp);
        }
        if self.role != role {
            return Err(TokenRefusal::WrongRole {
                token: self.role,
                agent: role,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_parse_back() {
        let a = JoinToken::generate();
        let b = JoinToken::generate();
        assert_ne!(a, b);
        assert!(a.expose_secret().len() >= PREFIX.len() + 27);
        assert_eq!(JoinToken::parse(a.expose_secret()).unwrap(), a);
        assert_eq!(
            a.hash(),
            JoinToken::parse(a.expose_secret()).unwrap().hash()
        );
        assert!(!format!("{a:?}").contains(a.expose_secret()));
        for bad in ["", "mpt_", "mpt_short", "xyz_AAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert_eq!(JoinToken::parse(bad), Err(TokenRefusal::Malformed), "{bad}");
        }
    }

    #[test]
    fn policy_checks_expiry_uses_and_role() {
        let p = TokenPolicy {
            role: Role::Monitor,
            group: None,
            room: None,
            expires_at: 100,
            uses_left: 1,
        };
        assert_eq!(p.admit(Role::Monitor, 99), Ok(()));
        assert_eq!(p.admit(Role::Monitor, 100), Err(TokenRefusal::Expired));
        assert!(matches!(
            p.admit(Role::Jmeter, 1),
            Err(TokenRefusal::WrongRole { .. })
        ));
        let used = TokenPolicy { uses_left: 0, ..p };
        assert_eq!(used.admit(Role::Monitor, 1), Err(TokenRefusal::UsedUp));
    }
}
