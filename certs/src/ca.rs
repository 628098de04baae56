//! The controller's private certificate authority.
//!
//! Created on first start in the controller's data directory (`ca.pem`,
//! `ca.key` with mode 0600) and reloaded afterwards. It signs a fresh server
//! certificate for the controller at each start and one client-only
//! certificate per enrolled agent. It never signs anything an agent asked
//! for beyond its public key: names, usages and validity are ours.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

use crate::{AgentId, Error, Result, Role, io_err, sha256_hex, write_private_file};

/// The DNS name in the controller's server certificate. Agents connect with
/// this name whatever address they dial: the CA pin, not DNS, authenticates
/// the controller, and only this CA issues certificates for this name.
pub const SERVER_NAME: &str = "controller.myplatform.internal";

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
/// Clock skew we tolerate between controller and agents.
const BACKDATE: Duration = Duration::from_secs(300);

/// SHA-256 of the CA certificate (DER), written `sha256:<64 hex digits>`.
/// An agent that knows the pin verifies the controller on first contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaPin(String);

impl CaPin {
    pub fn of(cert_der: &[u8]) -> CaPin {
        CaPin(format!("sha256:{}", sha256_hex(cert_der)))
    }

    pub fn matches(&self, cert_der: &[u8]) -> bool {
        *self == CaPin::of(cert_der)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for CaPin {
    type Err = Error;
    fn from_str(s: &str) -> Result<CaPin> {
        let hexpart = s.strip_prefix("sha256:").unwrap_or("");
        if hexpart.len() == 64 && hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(CaPin(format!("sha256:{}", hexpart.to_ascii_lowercase())))
        } else {
            Err(Error::BadPin(s.to_string()))
        }
    }
}

impl TryFrom<String> for CaPin {
    type Error = Error;
    fn try_from(s: String) -> Result<CaPin> {
        s.parse()
    }
}

impl From<CaPin> for String {
    fn from(p: CaPin) -> String {
        p.0
    }
}

impl std::fmt::Display for CaPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A certificate issued to an agent.
#[derive(Debug, Clone)]
pub struct CertifiedAgent {
    pub agent_id: AgentId,
    pub role: Role,
    pub cert_pem: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    pub not_after: SystemTime,
}

pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("pin", &self.pin())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads the CA from `dir`, creating it (and `dir`) on first start.
    pub fn load_or_create(dir: &Path) -> Result<CertificateAuthority> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if cert_path.exists() || key_path.exists() {
            return Self::load(&cert_path, &key_path);
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "MyPlatform");
        dn.push(DnType::CommonName, "MyPlatform controller CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + time::Duration::days(20 * 365);
        let cert = params.self_signed(&key)?;
        // Key first: a certificate without its key would be unusable.
        write_private_file(&key_path, key.serialize_pem().as_bytes())?;
        write_private_file(&cert_path, cert.pem().as_bytes())?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<CertificateAuthority> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(key_path).map_err(io_err(key_path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::BadCertificate(format!(
                "{} is accessible by other users (mode {mode:o}); run chmod 600 on it",
                key_path.display()
            )));
        }
        let key_pem = std::fs::read_to_string(key_path).map_err(io_err(key_path))?;
        let cert_pem = std::fs::read_to_string(cert_path).map_err(io_err(cert_path))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let cert_der = first_cert_der(&cert_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(CertificateAuthority {
            cert_pem,
            cert_der,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn pin(&self) -> CaPin {
        CaPin::of(&self.cert_der)
    }

    /// A fresh server certificate for the controller (chain: leaf, CA).
    /// Made at each start, so it is never stored.
    pub fn server_identity(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, SERVER_NAME);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName(SERVER_NAME.try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + time::Duration::days(397);
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }

    /// Signs an agent's CSR into a client-only certificate naming `agent_id`
    /// and `role`. Only the CSR's public key is used (its signature is
    /// checked first); everything else the CSR asks for is ignored.
    pub fn sign_agent(
        &self,
        csr_pem: &str,
        agent_id: &AgentId,
        role: Role,
        validity: Duration,
    ) -> Result<CertifiedAgent> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Error::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "MyPlatform");
        dn.push(DnType::OrganizationalUnitName, role.as_str());
        dn.push(DnType::CommonName, agent_id.as_str());
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial = random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        let not_after = now + validity;
        params.not_after = not_after;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(CertifiedAgent {
            agent_id: agent_id.clone(),
            role,
            cert_pem: cert.pem(),
            serial: serial_hex,
            not_after: SystemTime::UNIX_EPOCH
                + Duration::from_secs(not_after.unix_timestamp().max(0) as u64),
        })
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random number generator failed");
    bytes[0] &= 0x7f; // keep it positive in DER
    bytes[0] |= 0x01; // and of constant length
    SerialNumber::from_slice(&bytes)
}

pub(crate) fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| Error::BadCertificate(format!("not a PEM certificate: {e}")))
}

/// SHA-256 of the public key a CSR asks a certificate for (after checking
/// the CSR's signature): how an enrollment retry is recognised.
pub fn csr_key_fingerprint(csr_pem: &str) -> Result<String> {
    use rcgen::PublicKeyData;
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| Error::BadCsr(e.to_string()))?;
    Ok(sha256_hex(csr.public_key.der_bytes()))
}

/// Reads the agent id and role out of an agent certificate.
pub fn agent_of_certificate(der: &[u8]) -> Result<(AgentId, Role)> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::BadCertificate(format!("unparsable certificate: {e}")))?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or_else(|| Error::BadCertificate("no common name".into()))?;
    let ou = subject
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or_else(|| Error::BadCertificate("no organizational unit (role)".into()))?;
    let id = cn.parse::<AgentId>().map_err(Error::BadCertificate)?;
    let role = ou.parse::<Role>().map_err(Error::BadCertificate)?;
    Ok((id, role))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AgentIdentity;

    #[test]
    fn ca_is_created_once_with_a_private_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.pin(), again.pin());
        assert!(ca.pin().as_str().starts_with("sha256:"));
    }

    #[test]
    fn a_world_readable_ca_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::load_or_create(dir.path()).unwrap();
        let key = dir.path().join(CA_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn agent_certificates_name_the_agent_and_ignore_csr_requests() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        // The CSR asks to be a CA for another name: it must not get that.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut asked = CertificateParams::new(vec![SERVER_NAME.to_string()]).unwrap();
        asked.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        asked.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let id = AgentId::generate();
        let issued = ca
            .sign_agent(&csr, &id, Role::Jmeter, Duration::from_secs(3600))
            .unwrap();
        let der = first_cert_der(&issued.cert_pem).unwrap();
        assert_eq!(agent_of_certificate(&der).unwrap(), (id, Role::Jmeter));
        use x509_parser::prelude::*;
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(cert.subject_alternative_name().unwrap().is_none());
    }

    #[test]
    fn garbage_csr_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let id = AgentId::generate();
        let err = ca
            .sign_agent("not a csr", &id, Role::Monitor, Duration::from_secs(60))
            .unwrap_err();
        assert!(matches!(err, Error::BadCsr(_)));
        // A CSR whose signature does not match its key is refused too.
        let (_, csr) = AgentIdentity::new_key_and_csr().unwrap();
        let tampered = tamper_pem(&csr);
        assert!(
            ca.sign_agent(&tampered, &id, Role::Monitor, Duration::from_secs(60))
                .is_err()
        );
    }

    /// Flips a bit in the signature at the end of a PEM object.
    fn tamper_pem(pem: &str) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut der = b64.decode(body).unwrap();
        let n = der.len();
        der[n - 3] ^= 0x01;
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            b64.encode(der)
        )
    }

    #[test]
    fn pins_parse_and_match() {
        let pin = CaPin::of(b"abc");
        assert!(pin.matches(b"abc"));
        assert!(!pin.matches(b"abd"));
        assert_eq!(pin.as_str().parse::<CaPin>().unwrap(), pin);
        assert!("sha256:xyz".parse::<CaPin>().is_err());
        assert!("md5:00".parse::<CaPin>().is_err());
    }
}
