//! Server credentials at rest: AES-256-GCM under a master key that lives in
//! its own file (`master.key`, 0600) beside the inventory, so a copy of the
//! database alone reveals no password.
//!
//! Owns the key file and the sealed format; knows nothing about SQL or
//! HTTP. Sealed values are `version (1) || nonce (12) || ciphertext+tag`.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// File name of the master key inside the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";
const KEY_LEN: usize = 32;
const VERSION: u8 = 1;
/// Binds a sealed value to its use, so a sealed credential cannot be
/// replayed as some other secret sealed under the same key later.
const AAD: &[u8] = b"myplatform/server-credential/v1";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("master key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("master key {path} is not {KEY_LEN} bytes; refusing to guess (restore it from backup)")]
    BadKey { path: PathBuf },
    #[error(
        "a stored credential cannot be decrypted: the master key does not match the one it was sealed with, or the value is damaged"
    )]
    Unseal,
}

pub struct Vault {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<key>)")
    }
}

impl Vault {
    /// Loads the master key from `dir`, creating it (0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Vault, VaultError> {
        let path = dir.join(MASTER_KEY_FILE);
        let io = |source| VaultError::Io {
            path: path.clone(),
            source,
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| io(std::io::Error::other("no system randomness")))?;
                write_new_secret(&path, &key).map_err(io)?;
                key.to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        if bytes.len() != KEY_LEN {
            return Err(VaultError::BadKey { path });
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| VaultError::BadKey { path: path.clone() })?;
        Ok(Vault {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("system randomness for a nonce");
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut buf,
            )
            .expect("AES-GCM sealing of a bounded value");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        let (&version, rest) = sealed.split_first().ok_or(VaultError::Unseal)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(VaultError::Unseal);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Unseal)?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut buf)
            .map_err(|_| VaultError::Unseal)?;
        Ok(plain.to_vec())
    }
}

/// Writes a new secret file readable only by its owner, never replacing one
/// that appeared meanwhile (two controllers starting at once).
fn write_new_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn seals_opens_and_refuses_tampering_and_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(MASTER_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = v.seal(b"p@ssw0rd");
        assert!(!sealed.windows(8).any(|w| w == b"p@ssw0rd"));
        assert_ne!(sealed, v.seal(b"p@ssw0rd"), "nonce reused");
        assert_eq!(v.open(&sealed).unwrap(), b"p@ssw0rd");
        // The same key file loads the same key.
        let again = Vault::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"p@ssw0rd");

        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(v.open(&bad), Err(VaultError::Unseal)));
        assert!(matches!(v.open(&[]), Err(VaultError::Unseal)));
        let other = tempfile::tempdir().unwrap();
        let w = Vault::load_or_create(other.path()).unwrap();
        assert!(matches!(w.open(&sealed), Err(VaultError::Unseal)));

        std::fs::write(other.path().join(MASTER_KEY_FILE), b"short").unwrap();
        assert!(matches!(
            Vault::load_or_create(other.path()),
            Err(VaultError::BadKey { .. })
        ));
    }
}
