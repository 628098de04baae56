//! The inventory's vocabulary as types that can only hold valid values
//! ("parse, don't validate"): a handler that holds a [`Name`] or a
//! [`ServerAddr`] never checks it again. Every error message is meant for
//! the person who typed the value.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value was refused, in words for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Invalid {
        Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A display name of a group, room, server or user: trimmed, 1 to 64
/// characters, no control characters. Anything else (quotes, `<`, SQL
/// metacharacters, non-Latin scripts) is allowed: pages escape it and SQL
/// only ever sees it as a bound parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

pub const NAME_MAX: usize = 64;

impl Name {
    pub fn parse(field: &'static str, raw: &str) -> Result<Name, Invalid> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Invalid::new(field, "must not be empty"));
        }
        if s.chars().count() > NAME_MAX {
            return Err(Invalid::new(
                field,
                format!("at most {NAME_MAX} characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid::new(field, "must not contain control characters"));
        }
        Ok(Name(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's login name: 1 to 64 of letters, digits, `.`, `_`, `-`, `@`.
/// Stricter than [`Name`] because people type it at a login prompt and it
/// appears in audit lines.
pub fn parse_user_name(raw: &str) -> Result<Name, Invalid> {
    let name = Name::parse("user name", raw)?;
    if !name
        .0
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(Invalid::new(
            "user name",
            "only letters, digits, '.', '_', '-' and '@'",
        ));
    }
    Ok(name)
}

/// The string that finds a group's application process on a server
/// (`ps -ef | grep <identifier>`): empty (no application) or 2 to 128
/// printable characters without whitespace at either end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AppIdentifier(String);

impl AppIdentifier {
    pub fn parse(raw: &str) -> Result<AppIdentifier, Invalid> {
        let s = raw.trim();
        if s.chars().any(char::is_control) {
            return Err(Invalid::new(
                "application identifier",
                "must not contain control characters",
            ));
        }
        match s.chars().count() {
            0 => Ok(AppIdentifier(String::new())),
            1 => Err(Invalid::new(
                "application identifier",
                "at least 2 characters (one character matches almost every process)",
            )),
            n if n > 128 => Err(Invalid::new(
                "application identifier",
                "at most 128 characters",
            )),
            _ => Ok(AppIdentifier(s.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a room's machines are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomPurpose {
    Application,
    Middleware,
    LoadTesting,
}

impl RoomPurpose {
    pub const ALL: [RoomPurpose; 3] = [
        RoomPurpose::Application,
        RoomPurpose::Middleware,
        RoomPurpose::LoadTesting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RoomPurpose::Application => "application",
            RoomPurpose::Middleware => "middleware",
            RoomPurpose::LoadTesting => "load_testing",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RoomPurpose::Application => "Application",
            RoomPurpose::Middleware => "Middleware",
            RoomPurpose::LoadTesting => "Load testing",
        }
    }
}

impl FromStr for RoomPurpose {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        RoomPurpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim())
            .ok_or_else(|| {
                Invalid::new(
                    "purpose",
                    format!(
                        "{:?} is not a room purpose (application, middleware or load_testing)",
                        s.trim()
                    ),
                )
            })
    }
}

/// Where the controller reaches a server over SSH: an IP address or a DNS
/// host name. Something that looks like a dotted IPv4 address but is not
/// one (`999.1.1.1`, `10.0.0`) is refused rather than taken as a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ServerAddr(String);

impl ServerAddr {
    pub fn parse(raw: &str) -> Result<ServerAddr, Invalid> {
        const FIELD: &str = "address";
        let s = raw.trim();
        if s.is_empty() {
            return Err(Invalid::new(FIELD, "must not be empty"));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(ServerAddr(ip.to_string()));
        }
        if s.chars().all(|c| c.is_ascii_digit() || c == '.') || s.contains(':') {
            return Err(Invalid::new(
                FIELD,
                format!("{s:?} is not a valid IP address"),
            ));
        }
        let ok_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if s.len() > 253 || !s.split('.').all(ok_label) {
            return Err(Invalid::new(
                FIELD,
                format!("{s:?} is neither an IP address nor a host name"),
            ));
        }
        Ok(ServerAddr(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A TCP port a person typed: 1 to 65535.
pub fn parse_port(raw: i64) -> Result<u16, Invalid> {
    u16::try_from(raw)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Invalid::new("SSH port", format!("{raw} is not a port (1 to 65535)")))
}

/// A login password for a platform user: 10 to 1024 characters. (Long
/// enough to resist guessing at the login rate limit; the cap bounds the
/// hashing work a request can cause.)
pub fn check_password(pw: &str) -> Result<(), Invalid> {
    let n = pw.chars().count();
    if n < 10 {
        return Err(Invalid::new("password", "at least 10 characters"));
    }
    if n > 1024 {
        return Err(Invalid::new("password", "at most 1024 characters"));
    }
    Ok(())
}

/// How the controller logs in to a server, as typed by an admin. Stored
/// only sealed (see [`crate::vault`]); never sent back to any browser.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", content = "secret", rename_all = "snake_case")]
pub enum Credential {
    Password(String),
    /// An OpenSSH or PEM private key, unencrypted.
    PrivateKey(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Password(_) => "Credential::Password(<redacted>)",
            Credential::PrivateKey(_) => "Credential::PrivateKey(<redacted>)",
        })
    }
}

impl Credential {
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Password(_) => "password",
            Credential::PrivateKey(_) => "private_key",
        }
    }

    pub fn check(&self) -> Result<(), Invalid> {
        match self {
            Credential::Password(p) if p.is_empty() => {
                Err(Invalid::new("password", "must not be empty"))
            }
            Credential::Password(p) if p.len() > 4096 => {
                Err(Invalid::new("password", "at most 4096 bytes"))
            }
            Credential::PrivateKey(k) => {
                let k = k.trim();
                if k.len() > 32 * 1024 {
                    return Err(Invalid::new("private key", "at most 32 KiB"));
                }
                if !(k.starts_with("-----BEGIN ") && k.contains("PRIVATE KEY-----")) {
                    return Err(Invalid::new(
                        "private key",
                        "expected a PEM or OpenSSH private key (-----BEGIN ... PRIVATE KEY-----)",
                    ));
                }
                Ok(())
            }
            Credential::Password(_) => Ok(()),
        }
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let (tag, s) = match self {
            Credential::Password(p) => (b'p', p),
            Credential::PrivateKey(k) => (b'k', k),
        };
        let mut v = Vec::with_capacity(s.len() + 1);
        v.push(tag);
        v.extend_from_slice(s.as_bytes());
        v
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Option<Credential> {
        let (tag, rest) = b.split_first()?;
        let s = String::from_utf8(rest.to_vec()).ok()?;
        match tag {
            b'p' => Some(Credential::Password(s)),
            b'k' => Some(Credential::PrivateKey(s)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(Name::parse("name", "  shop ").unwrap().as_str(), "shop");
        assert!(Name::parse("name", "   ").is_err());
        assert!(Name::parse("name", &"x".repeat(65)).is_err());
        assert!(Name::parse("name", &"é".repeat(64)).is_ok());
        assert!(Name::parse("name", "a\nb").is_err());
        // Markup and SQL are data, not errors: pages escape, SQL binds.
        assert!(Name::parse("name", "<script>alert(1)</script>").is_ok());
        assert!(Name::parse("name", "x'; DROP TABLE servers; --").is_ok());
        assert!(parse_user_name("alice.b-c_d@x").is_ok());
        assert!(parse_user_name("alice bob").is_err());
        assert!(parse_user_name("<b>").is_err());
    }

    #[test]
    fn addresses_are_ips_or_host_names() {
        assert_eq!(
            ServerAddr::parse(" 10.0.0.1 ").unwrap().as_str(),
            "10.0.0.1"
        );
        assert_eq!(ServerAddr::parse("::1").unwrap().as_str(), "::1");
        assert_eq!(
            ServerAddr::parse("Web-1.Example.com").unwrap().as_str(),
            "web-1.example.com"
        );
        for bad in [
            "",
            "999.1.1.1",
            "10.0.0",
            "1.2.3.4.5",
            "a b",
            "-x.com",
            "x..y",
            "::g",
            "h_st",
        ] {
            assert!(ServerAddr::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ports_purposes_and_identifiers() {
        assert_eq!(parse_port(22).unwrap(), 22);
        assert!(parse_port(0).is_err());
        assert!(parse_port(65536).is_err());
        assert!(parse_port(-1).is_err());
        assert_eq!(
            "load_testing".parse::<RoomPurpose>().unwrap(),
            RoomPurpose::LoadTesting
        );
        let e = "kitchen".parse::<RoomPurpose>().unwrap_err();
        assert!(e.to_string().contains("not a room purpose"), "{e}");
        assert!(AppIdentifier::parse("").unwrap().is_empty());
        assert!(AppIdentifier::parse("j").is_err());
        assert_eq!(
            AppIdentifier::parse(" shop-api ").unwrap().as_str(),
            "shop-api"
        );
    }

    #[test]
    fn credentials_never_show_in_debug_and_round_trip_as_bytes() {
        let c = Credential::Password("hunter2-secret".into());
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(Credential::from_bytes(&c.to_bytes()), Some(c));
        let k = Credential::PrivateKey(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----".into(),
        );
        assert!(k.check().is_ok());
        assert!(
            Credential::PrivateKey("ssh-ed25519 AAAA".into())
                .check()
                .is_err()
        );
        assert!(Credential::Password(String::new()).check().is_err());
    }
}
