//! QUIC endpoints for both sides, built from the rustls configs of `certs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, IdleTimeout, TransportConfig};

/// A silent peer is gone after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Keeps NAT bindings and the idle timer alive between heartbeats.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

fn transport() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(Some(
        IdleTimeout::try_from(IDLE_TIMEOUT).expect("idle timeout fits a VarInt"),
    ));
    Arc::new(t)
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS configuration unsuitable for QUIC: {0}")]
    Tls(String),
}

/// Socket buffers we ask for. The kernel's default (~208 KiB) overflows
/// when a fleet reconnects at once (after a controller restart): each
/// handshake flight carries certificates, and dropped Initials cost a
/// retransmission timeout. The kernel caps the request at net.core.rmem_max.
const SOCKET_BUFFER: usize = 8 << 20;

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack where the platform allows it.
        let _ = socket.set_only_v6(false);
    }
    // Best effort: a smaller buffer still works, only less well under bursts.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<Endpoint, EndpointError> {
    let bind_err = |source| EndpointError::Bind { addr, source };
    let socket = bind_udp(addr).map_err(bind_err)?;
    Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(bind_err)
}

/// The controller's endpoint.
pub fn server(addr: SocketAddr, tls: rustls::ServerConfig) -> Result<Endpoint, EndpointError> {
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| EndpointError::Tls(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport());
    endpoint(addr, Some(cfg))
}

/// A client endpoint able to reach `peer` (bound to the matching family).
pub fn client_for(peer: SocketAddr) -> Result<Endpoint, EndpointError> {
    let addr: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    endpoint(addr, None)
}

/// Per-connection client settings.
pub fn client_config(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, EndpointError> {
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| EndpointError::Tls(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport());
    Ok(cfg)
}
