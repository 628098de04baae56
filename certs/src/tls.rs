//! rustls configurations for the agent link.
//!
//! - The controller offers client authentication: a presented certificate
//!   must chain to our CA, carry the client-auth usage and not be revoked.
//!   Whether a certificate is *required* depends on the ALPN and is decided
//!   by the caller after the handshake (enrollment needs none).
//! - Enrolled agents trust exactly our CA and present their certificate.
//! - An agent enrolling for the first time trusts only a CA whose SHA-256
//!   equals the pin from its install line: no trust on first use.
//!
//! All configs use the ring provider and TLS 1.3 only.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::ca::agent_of_certificate;
use crate::{AgentId, AgentIdentity, CaPin, CertificateAuthority, Result, Role};

pub use crate::ca::SERVER_NAME;

/// Start of the error text when the controller's CA does not match the pin.
pub const PIN_MISMATCH: &str = "CA pin mismatch";

/// The one crypto provider of the workspace.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide default provider, for libraries that
/// build rustls configs without asking (call first thing in `main`).
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Revoked agent ids, shared by the TLS verifier and whoever loads the
/// revocations from storage.
#[derive(Debug, Clone, Default)]
pub struct RevocationList(Arc<RwLock<HashSet<AgentId>>>);

impl RevocationList {
    pub fn contains(&self, id: &AgentId) -> bool {
        self.0
            .read()
            .expect("revocation lock poisoned")
            .contains(id)
    }

    pub fn insert(&self, id: AgentId) {
        self.0.write().expect("revocation lock poisoned").insert(id);
    }

    /// Replaces the whole set; returns the ids that are newly revoked.
    pub fn replace(&self, ids: HashSet<AgentId>) -> Vec<AgentId> {
        let mut set = self.0.write().expect("revocation lock poisoned");
        let added = ids.difference(&set).cloned().collect();
        *set = ids;
        added
    }

    pub fn len(&self) -> usize {
        self.0.read().expect("revocation lock poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Server config for the controller's agent endpoint.
pub fn controller_config(
    ca: &CertificateAuthority,
    revoked: RevocationList,
    alpn: &[&[u8]],
) -> Result<ServerConfig> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone())?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let verifier = Arc::new(RevocationCheckingVerifier { inner, revoked });
    let (chain, key) = ca.server_identity()?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(cfg)
}

/// Client config for an enrolled agent: trusts our CA, presents its
/// certificate.
pub fn agent_config(identity: &AgentIdentity, alpn: &[u8]) -> Result<ClientConfig> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.add(identity.ca_der()?)?;
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.cert_chain()?, identity.private_key()?)?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// Client config for enrollment: trusts only a CA matching `pin`, presents
/// no certificate.
pub fn enrollment_config(pin: &CaPin, alpn: &[u8]) -> Result<ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(PinnedCaVerifier {
        pin: pin.clone(),
        provider: provider.clone(),
    });
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// Reads who a verified peer is from its certificate chain.
pub fn peer_agent(chain: &[CertificateDer<'_>]) -> Result<(AgentId, Role)> {
    let leaf = chain
        .first()
        .ok_or_else(|| crate::Error::BadCertificate("no certificate presented".into()))?;
    agent_of_certificate(leaf)
}

#[derive(Debug)]
struct RevocationCheckingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevocationList,
}

impl ClientCertVerifier for RevocationCheckingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let (id, _) = agent_of_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.revoked.contains(&id) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct PinnedCaVerifier {
    pin: CaPin,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
struct PinMismatch(String);

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| self.pin.matches(c)) else {
            let seen: Vec<String> = intermediates
                .iter()
                .map(|c| CaPin::of(c).to_string())
                .collect();
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch(format!(
                    "{PIN_MISMATCH}: the controller's CA is {}, the install line pins {}",
                    seen.join(", "),
                    self.pin
                )))),
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
