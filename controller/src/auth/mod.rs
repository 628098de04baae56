//! Who is asking: password hashing (argon2id), login with a rate limit,
//! sessions with their CSRF secret, API tokens, and (in [`policy`]) the
//! one decision of what a subject may do.
//!
//! Knows no HTTP: the web layer hands it the cookie or bearer value and the
//! client address, and maps the answers to status codes. Only hashes of
//! passwords, session ids and tokens are stored.

pub mod policy;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use ring::rand::{SecureRandom, SystemRandom};

pub use policy::{Act, Denied, Subject};

use crate::inventory::model::{Name, check_password};
use crate::inventory::{self, Inventory, unix_now};

/// Prefix of API tokens, so a leaked one is recognisable in a scan.
pub const API_TOKEN_PREFIX: &str = "mpa_";

/// Failed logins allowed per user name (and, separately, 4x that per client
/// address) within [`LIMIT_WINDOW`] before further attempts are refused
/// without checking the password.
const LIMIT_PER_USER: u32 = 5;
const LIMIT_WINDOW: Duration = Duration::from_secs(15 * 60);

pub fn hash_password(password: &str) -> String {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default parameters")
        .to_string()
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// 32 random bytes as hex, prefixed.
pub fn new_secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    format!("{prefix}{}", hex::encode(b))
}

/// A random password for a first admin, easy to copy (no ambiguous
/// characters), 20 characters.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 20];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect()
}

/// What the database stores of a session id or token.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}

/// Byte-wise comparison whose time does not depend on where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("inventory unavailable")]
    Inventory(#[from] inventory::Error),
}

/// A session just created: the cookie value and its CSRF secret.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
    pub subject: Subject,
}

/// A request's verified session.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub subject: Subject,
    pub csrf: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("not logged in")]
    Missing,
    #[error("session expired; log in again")]
    Expired,
    #[error("inventory unavailable")]
    Inventory(#[from] inventory::Error),
}

#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// A session unused this long ends.
    pub idle: Duration,
    /// No session lives longer than this.
    pub max_age: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: Duration::from_secs(8 * 3600),
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Default)]
struct Failures {
    by_key: HashMap<String, (u32, Instant)>,
}

impl Failures {
    /// Seconds until `key` may try again, if it is over `limit`.
    fn blocked(&mut self, key: &str, limit: u32, now: Instant) -> Option<u64> {
        let (n, since) = *self.by_key.get(key)?;
        let elapsed = now.duration_since(since);
        if elapsed >= LIMIT_WINDOW {
            self.by_key.remove(key);
            return None;
        }
        (n >= limit).then(|| (LIMIT_WINDOW - elapsed).as_secs().max(1))
    }

    fn fail(&mut self, key: String, now: Instant) {
        if self.by_key.len() > 100_000 {
            // Bounded memory under a spray of names: forget stale entries.
            self.by_key
                .retain(|_, (_, since)| now.duration_since(*since) < LIMIT_WINDOW);
        }
        let e = self.by_key.entry(key).or_insert((0, now));
        e.0 += 1;
    }
}

/// Login, sessions and tokens over the inventory.
pub struct Auth {
    inventory: Arc<Inventory>,
    limits: SessionLimits,
    failures: Mutex<Failures>,
    /// Verified against when the user does not exist, so a wrong name
    /// costs the same time as a wrong password.
    dummy_hash: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(inventory: Arc<Inventory>, limits: SessionLimits) -> Auth {
        Auth {
            inventory,
            limits,
            failures: Mutex::new(Failures::default()),
            dummy_hash: hash_password("not a real password, only for timing"),
        }
    }

    /// Checks a password and opens a session. Blocking (argon2): call it
    /// off the async threads.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<NewSession, LoginError> {
        let now = Instant::now();
        let user_key = format!("u:{}", name.trim().to_lowercase());
        let ip_key = format!("i:{client}");
        {
            let mut f = self.failures.lock().expect("login limiter");
            let blocked = f
                .blocked(&user_key, LIMIT_PER_USER, now)
                .into_iter()
                .chain(f.blocked(&ip_key, LIMIT_PER_USER * 4, now))
                .max();
            if let Some(retry_after_secs) = blocked {
                return Err(LoginError::RateLimited { retry_after_secs });
            }
        }
        let record = self.inventory.login_record(name.trim())?;
        let ok = match &record {
            Some((_, hash)) => verify_password(hash, password),
            None => {
                let _ = verify_password(&self.dummy_hash, password);
                false
            }
        };
        let principal = match (ok, record) {
            (true, Some((id, _))) => self.inventory.principal(id)?,
            _ => None,
        };
        let Some(principal) = principal.filter(|p| !p.disabled) else {
            let mut f = self.failures.lock().expect("login limiter");
            f.fail(user_key, now);
            f.fail(ip_key, now);
            tracing::warn!(user = name.trim(), %client, "failed login");
            return Err(LoginError::BadCredentials);
        };
        self.failures
            .lock()
            .expect("login limiter")
            .by_key
            .remove(&user_key);
        let token = new_secret("");
        let csrf = new_secret("");
        self.inventory
            .create_session(&secret_hash(&token), principal.id, &csrf, unix_now())?;
        tracing::info!(user = %principal.name, %client, "login");
        Ok(NewSession {
            token,
            csrf,
            subject: Subject::new(principal),
        })
    }

    /// The session behind a cookie value, if it is still valid.
    pub fn session(&self, token: &str) -> Result<SessionView, SessionError> {
        let hash = secret_hash(token);
        let rec = self
            .inventory
            .session(&hash)?
            .ok_or(SessionError::Missing)?;
        let now = unix_now();
        if now.saturating_sub(rec.last_seen) > self.limits.idle.as_secs()
            || now.saturating_sub(rec.created_at) > self.limits.max_age.as_secs()
        {
            self.inventory.delete_session(&hash)?;
            return Err(SessionError::Expired);
        }
        let principal = self
            .inventory
            .principal(rec.user_id)?
            .filter(|p| !p.disabled)
            .ok_or(SessionError::Expired)?;
        // Writing on every request would serialise reads behind the one
        // connection; a minute's precision is plenty for an idle limit.
        if now.saturating_sub(rec.last_seen) >= 60 {
            self.inventory.touch_session(&hash, now)?;
        }
        Ok(SessionView {
            subject: Subject::new(principal),
            csrf: rec.csrf,
        })
    }

    pub fn logout(&self, token: &str) -> Result<(), inventory::Error> {
        self.inventory.delete_session(&secret_hash(token))
    }

    /// The subject behind an API token.
    pub fn api_token(&self, token: &str) -> Result<Subject, SessionError> {
        if !token.starts_with(API_TOKEN_PREFIX) {
            return Err(SessionError::Missing);
        }
        let user = self
            .inventory
            .api_token_user(&secret_hash(token))?
            .ok_or(SessionError::Missing)?;
        self.inventory
            .principal(user)?
            .filter(|p| !p.disabled)
            .map(Subject::new)
            .ok_or(SessionError::Missing)
    }

    /// Forgets expired sessions.
    pub fn prune(&self) -> Result<usize, inventory::Error> {
        let now = unix_now();
        self.inventory.prune_sessions(
            now.saturating_sub(self.limits.idle.as_secs()),
            now.saturating_sub(self.limits.max_age.as_secs()),
        )
    }
}

/// Creates a user with a checked password (blocking: argon2).
pub fn create_user(
    inventory: &Inventory,
    name: &Name,
    password: &str,
    admin: bool,
) -> Result<i64, inventory::Error> {
    check_password(password)?;
    inventory.create_user(name, &hash_password(password), admin)
}

/// Issues an API token for a user; the token is shown once.
pub fn create_api_token(
    inventory: &Inventory,
    user: i64,
    name: &str,
) -> Result<String, inventory::Error> {
    let token = new_secret(API_TOKEN_PREFIX);
    inventory.create_api_token(&secret_hash(&token), user, name)?;
    Ok(token)
}

/// On a controller's first start: an `admin` user with a generated
/// password, which the caller shows once. `None` when users exist.
pub fn ensure_first_admin(inventory: &Inventory) -> Result<Option<String>, inventory::Error> {
    if inventory.user_count()? > 0 {
        return Ok(None);
    }
    let password = generate_password();
    let name = Name::parse("user name", "admin").expect("a valid name");
    create_user(inventory, &name, &password, true)?;
    Ok(Some(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Arc<Inventory>, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let inv = Arc::new(Inventory::open(&dir.path().join("inv.db")).unwrap());
        let auth = Auth::new(inv.clone(), SessionLimits::default());
        (dir, inv, auth)
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn login_sessions_and_the_rate_limit() {
        let (dir, inv, auth) = setup();
        let pw = ensure_first_admin(&inv).unwrap().unwrap();
        assert!(ensure_first_admin(&inv).unwrap().is_none());
        let s = auth.login("Admin", &pw, IP).unwrap();
        assert!(s.subject.admin);
        let v = auth.session(&s.token).unwrap();
        assert_eq!(v.csrf, s.csrf);
        auth.logout(&s.token).unwrap();
        assert!(matches!(auth.session(&s.token), Err(SessionError::Missing)));

        for _ in 0..LIMIT_PER_USER {
            assert!(matches!(
                auth.login("admin", "wrong password", IP),
                Err(LoginError::BadCredentials)
            ));
        }
        // Now even the right password is refused until the window passes.
        assert!(matches!(
            auth.login("admin", &pw, IP),
            Err(LoginError::RateLimited { .. })
        ));
        // Unknown users cost the same and count too.
        assert!(matches!(
            auth.login("nobody", "whatever-pw", IP),
            Err(LoginError::BadCredentials)
        ));

        // Nothing secret is stored in clear.
        drop(auth);
        let raw = std::fs::read(dir.path().join("inv.db")).unwrap();
        let wal = std::fs::read(dir.path().join("inv.db-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            let hay = String::from_utf8_lossy(&bytes);
            assert!(!hay.contains(&pw));
            assert!(!hay.contains(&s.token));
        }
    }

    #[test]
    fn expired_sessions_and_api_tokens() {
        let (_d, inv, _) = setup();
        let auth = Auth::new(
            inv.clone(),
            SessionLimits {
                idle: Duration::from_secs(0),
                max_age: Duration::from_secs(0),
            },
        );
        let name = Name::parse("n", "ops").unwrap();
        let id = create_user(&inv, &name, "long enough pw", false).unwrap();
        assert!(create_user(&inv, &Name::parse("n", "x").unwrap(), "short", false).is_err());
        let s = auth.login("ops", "long enough pw", IP).unwrap();
        inv.touch_session(&secret_hash(&s.token), 1).unwrap();
        assert!(matches!(auth.session(&s.token), Err(SessionError::Expired)));
        let t = create_api_token(&inv, id, "ci").unwrap();
        assert_eq!(auth.api_token(&t).unwrap().id, id);
        assert!(auth.api_token("mpa_nope").is_err());
        assert!(auth.api_token(&t[4..]).is_err());
        inv.update_user(id, false, true, None).unwrap();
        assert!(
            auth.api_token(&t).is_err(),
            "a disabled user's token still works"
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
