//! What an agent keeps after enrollment: its key, its certificate and the
//! controller's CA certificate, each a 0600 file in the agent's state
//! directory. Holding these is what makes an agent "enrolled".

use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::{agent_of_certificate, first_cert_der};
use crate::{AgentId, CaPin, Error, Result, Role, io_err, write_private_file};

const KEY_FILE: &str = "agent.key";
const CERT_FILE: &str = "agent.crt";
const CA_FILE: &str = "ca.crt";

#[derive(Clone)]
pub struct AgentIdentity {
    pub agent_id: AgentId,
    pub role: Role,
    pub cert_pem: String,
    key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("agent_id", &self.agent_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl AgentIdentity {
    /// A new private key and a CSR for it, both PEM. The subject is a
    /// placeholder: the controller decides the names.
    pub fn new_key_and_csr() -> Result<(String, String)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "myplatform agent");
        params.distinguished_name = dn;
        let csr = params.serialize_request(&key)?.pem()?;
        Ok((key.serialize_pem(), csr))
    }

    /// Assembles an identity from what enrollment returned, checking that
    /// the certificate matches our key and chains to the pinned CA.
    pub fn from_enrollment(
        key_pem: String,
        cert_pem: String,
        ca_pem: String,
        pin: &CaPin,
    ) -> Result<AgentIdentity> {
        let ca_der = first_cert_der(&ca_pem)?;
        if !pin.matches(&ca_der) {
            return Err(Error::BadCertificate(format!(
                "the CA certificate sent at enrollment does not match the pin {pin}"
            )));
        }
        let cert_der = first_cert_der(&cert_pem)?;
        let key = KeyPair::from_pem(&key_pem)?;
        if !cert_matches_key(&cert_der, &key) {
            return Err(Error::BadCertificate(
                "the issued certificate is not for our key".into(),
            ));
        }
        let (agent_id, role) = agent_of_certificate(&cert_der)?;
        Ok(AgentIdentity {
            agent_id,
            role,
            cert_pem,
            key_pem,
            ca_pem,
        })
    }

    /// Loads the identity from `dir`; `None` when the agent never enrolled.
    pub fn load(dir: &Path) -> Result<Option<AgentIdentity>> {
        let key_path = dir.join(KEY_FILE);
        if !key_path.exists() {
            return Ok(None);
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(io_err(&p))
        };
        let key_pem = read(KEY_FILE)?;
        let cert_pem = read(CERT_FILE)?;
        let ca_pem = read(CA_FILE)?;
        let (agent_id, role) = agent_of_certificate(&first_cert_der(&cert_pem)?)?;
        Ok(Some(AgentIdentity {
            agent_id,
            role,
            cert_pem,
            key_pem,
            ca_pem,
        }))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_private_file(&dir.join(KEY_FILE), self.key_pem.as_bytes())?;
        write_private_file(&dir.join(CA_FILE), self.ca_pem.as_bytes())?;
        // The certificate last: its presence with the key marks completion.
        write_private_file(&dir.join(CERT_FILE), self.cert_pem.as_bytes())
    }

    /// Forgets the identity (after revocation, before re-enrolling).
    pub fn remove(dir: &Path) -> Result<()> {
        for name in [CERT_FILE, KEY_FILE, CA_FILE] {
            let p = dir.join(name);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
        Ok(())
    }

    pub fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>> {
        Ok(vec![first_cert_der(&self.cert_pem)?])
    }

    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| Error::BadCertificate(format!("agent key unreadable: {e}")))
    }

    pub fn ca_der(&self) -> Result<CertificateDer<'static>> {
        first_cert_der(&self.ca_pem)
    }
}

fn cert_matches_key(cert_der: &[u8], key: &KeyPair) -> bool {
    use rcgen::PublicKeyData;
    use x509_parser::prelude::*;
    match X509Certificate::from_der(cert_der) {
        Ok((_, cert)) => cert.public_key().subject_public_key.data.as_ref() == key.der_bytes(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertificateAuthority;
    use std::time::Duration;

    #[test]
    fn enrollment_result_is_checked_saved_and_loaded() {
        let ca_dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(ca_dir.path()).unwrap();
        let (key, csr) = AgentIdentity::new_key_and_csr().unwrap();
        let id = AgentId::generate();
        let issued = ca
            .sign_agent(&csr, &id, Role::Monitor, Duration::from_secs(3600))
            .unwrap();
        let ident = AgentIdentity::from_enrollment(
            key.clone(),
            issued.cert_pem.clone(),
            ca.cert_pem().to_string(),
            &ca.pin(),
        )
        .unwrap();
        assert_eq!(ident.agent_id, id);

        let dir = tempfile::tempdir().unwrap();
        assert!(AgentIdentity::load(dir.path()).unwrap().is_none());
        ident.save(dir.path()).unwrap();
        let back = AgentIdentity::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.agent_id, id);
        use std::os::unix::fs::PermissionsExt;
        for f in [KEY_FILE, CERT_FILE, CA_FILE] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }

        // Someone else's key with our certificate is refused.
        let (other_key, _) = AgentIdentity::new_key_and_csr().unwrap();
        assert!(
            AgentIdentity::from_enrollment(
                other_key,
                issued.cert_pem.clone(),
                ca.cert_pem().to_string(),
                &ca.pin()
            )
            .is_err()
        );
        // A CA that is not the pinned one is refused.
        let wrong_pin = CaPin::of(b"another ca");
        assert!(
            AgentIdentity::from_enrollment(key, issued.cert_pem, ca.cert_pem().into(), &wrong_pin)
                .is_err()
        );
    }
}
