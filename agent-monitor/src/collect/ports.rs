//! TCP sockets of this host and the per-port counts of the application's
//! listening ports, read from the kernel's NETLINK_SOCK_DIAG (inet_diag)
//! interface, the one `ss` uses underneath.
//!
//! Owns: the netlink socket, encoding the dump request (state mask and an
//! optional local-port filter), parsing the reply, and the pure counting.
//! Must not: read /proc/net/tcp* or fork `ss` (both format every socket of the
//! host as text on every tick), use unsafe code, or allocate per socket while
//! parsing: it runs every second on hosts that may hold 100k sockets.
//! Linux only.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read};
use std::time::Duration;

use protocol::metrics::PortStats;
use socket2::{Domain, Protocol, Socket, Type};

// Kernel ABI constants, from linux/netlink.h, linux/sock_diag.h and
// linux/inet_diag.h (not all of them are exported by the libc crate).
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const AF_NETLINK: i32 = 16;
const NETLINK_SOCK_DIAG: i32 = 4;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const TCPDIAG_GETSOCK: u16 = 18;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
/// Kernel-internal state of request sockets; inet_diag normally reports them
/// as SYN_RECV, but accept it in case a kernel passes it through.
const TCP_NEW_SYN_RECV: u8 = 12;

const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_req`: the legacy request, see [`SockDiag::tcp_sockets`].
const INET_DIAG_REQ_LEN: usize = 60;
/// `struct inet_diag_msg`, without attributes (we ask for no extensions).
const INET_DIAG_MSG_LEN: usize = 72;
/// The kernel caps one dump datagram at about 32 KiB; a reply that fills this
/// buffer exactly may have been cut, so it is treated as an error.
const RECV_BUF_LEN: usize = 64 * 1024;
/// A dump never blocks for long; this only bounds a wedged kernel/socket.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytecode jump offsets are u16 and the attribute length is u16: past this
/// many port ranges the filter is done in user space instead.
const MAX_FILTER_RANGES: usize = 1024;

/// One TCP socket (IPv4 or IPv6) as reported by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub local_port: u16,
    pub remote_port: u16,
    pub state: TcpState,
    /// 0 for TIME_WAIT and SYN_RECV minisockets: they belong to no file.
    pub inode: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
}

impl TcpState {
    pub const ALL: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// The kernel's number for the state (include/net/tcp_states.h).
    pub fn code(self) -> u8 {
        match self {
            TcpState::Established => 1,
            TcpState::SynSent => 2,
            TcpState::SynRecv => 3,
            TcpState::FinWait1 => 4,
            TcpState::FinWait2 => 5,
            TcpState::TimeWait => 6,
            TcpState::Close => 7,
            TcpState::CloseWait => 8,
            TcpState::LastAck => 9,
            TcpState::Listen => 10,
            TcpState::Closing => 11,
        }
    }

    fn from_code(code: u8) -> Option<TcpState> {
        if code == TCP_NEW_SYN_RECV {
            return Some(TcpState::SynRecv);
        }
        TcpState::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// The `idiag_states` bitmask selecting `states`.
pub fn state_mask(states: &[TcpState]) -> u32 {
    states.iter().fold(0, |m, s| m | (1u32 << s.code()))
}

/// A reply the parser refused. Never a panic: the bytes come from the kernel,
/// but a bug here must not take the agent down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A message header or body runs past the end of the buffer.
    Truncated {
        offset: usize,
    },
    /// `nlmsg_len` smaller than the header itself.
    BadLength {
        offset: usize,
        len: u32,
    },
    /// The kernel answered with NLMSG_ERROR (or an error in NLMSG_DONE).
    Kernel {
        errno: i32,
    },
    UnexpectedType {
        offset: usize,
        ty: u16,
    },
    UnknownFamily {
        offset: usize,
        family: u8,
    },
    UnknownState {
        offset: usize,
        state: u8,
    },
    /// The bytes ended before NLMSG_DONE.
    MissingDone,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated { offset } => {
                write!(f, "sock_diag reply truncated at byte {offset}")
            }
            ParseError::BadLength { offset, len } => {
                write!(f, "sock_diag message at byte {offset} has bad length {len}")
            }
            ParseError::Kernel { errno } => write!(
                f,
                "sock_diag request failed: {}",
                io::Error::from_raw_os_error(*errno)
            ),
            ParseError::UnexpectedType { offset, ty } => {
                write!(f, "unexpected netlink message type {ty} at byte {offset}")
            }
            ParseError::UnknownFamily { offset, family } => {
                write!(f, "unexpected address family {family} at byte {offset}")
            }
            ParseError::UnknownState { offset, state } => {
                write!(f, "unknown TCP state {state} at byte {offset}")
            }
            ParseError::MissingDone => write!(f, "sock_diag dump ended without NLMSG_DONE"),
        }
    }
}

impl std::error::Error for ParseError {}

impl From<ParseError> for io::Error {
    fn from(e: ParseError) -> io::Error {
        match e {
            ParseError::Kernel { errno } => io::Error::from_raw_os_error(errno),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    More,
    Done,
}

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the netlink messages in `buf` (one datagram, or several
/// concatenated: messages are self-delimiting), appending sockets to `out`.
/// Messages whose sequence number is not `seq` are leftovers of an earlier,
/// abandoned dump and are skipped.
fn parse_messages(
    buf: &[u8],
    seq: Option<u32>,
    out: &mut Vec<TcpSocket>,
) -> Result<Progress, ParseError> {
    let mut off = 0;
    while off < buf.len() {
        if buf.len() - off < NLMSG_HDR_LEN {
            return Err(ParseError::Truncated { offset: off });
        }
        let len = u32_ne(buf, off);
        let ty = u16_ne(buf, off + 4);
        let msg_seq = u32_ne(buf, off + 8);
        if (len as usize) < NLMSG_HDR_LEN {
            return Err(ParseError::BadLength { offset: off, len });
        }
        if len as usize > buf.len() - off {
            return Err(ParseError::Truncated { offset: off });
        }
        let body = &buf[off + NLMSG_HDR_LEN..off + len as usize];
        if seq.is_none_or(|s| s == msg_seq) {
            match ty {
                NLMSG_DONE => {
                    // Since Linux 4.x a dump that failed midway says so here.
                    if body.len() >= 4 {
                        let err = u32_ne(body, 0) as i32;
                        if err < 0 {
                            return Err(ParseError::Kernel {
                                errno: err.saturating_neg(),
                            });
                        }
                    }
                    return Ok(Progress::Done);
                }
                NLMSG_ERROR => {
                    if body.len() < 4 {
                        return Err(ParseError::Truncated { offset: off });
                    }
                    let err = u32_ne(body, 0) as i32;
                    // 0 is an ACK, which a dump does not ask for; harmless.
                    if err != 0 {
                        return Err(ParseError::Kernel {
                            errno: err.saturating_neg(),
                        });
                    }
                }
                NLMSG_NOOP => {}
                SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                    out.push(parse_inet_diag_msg(body, off)?);
                }
                _ => return Err(ParseError::UnexpectedType { offset: off, ty }),
            }
        }
        // Messages are padded to 4 bytes; the last one may not be.
        off = off.saturating_add((len as usize + 3) & !3);
    }
    Ok(Progress::More)
}

fn parse_inet_diag_msg(body: &[u8], offset: usize) -> Result<TcpSocket, ParseError> {
    if body.len() < INET_DIAG_MSG_LEN {
        return Err(ParseError::Truncated { offset });
    }
    let family = body[0];
    if family != AF_INET && family != AF_INET6 {
        return Err(ParseError::UnknownFamily { offset, family });
    }
    let state = TcpState::from_code(body[1]).ok_or(ParseError::UnknownState {
        offset,
        state: body[1],
    })?;
    Ok(TcpSocket {
        // Ports are in network order, everything else in host order.
        local_port: u16::from_be_bytes([body[4], body[5]]),
        remote_port: u16::from_be_bytes([body[6], body[7]]),
        state,
        inode: u64::from(u32_ne(body, 68)),
    })
}

/// Parses a complete captured dump reply (all its datagrams concatenated),
/// which must end with NLMSG_DONE.
pub fn parse_inet_diag_dump(buf: &[u8]) -> Result<Vec<TcpSocket>, ParseError> {
    let mut out = Vec::with_capacity(buf.len() / (NLMSG_HDR_LEN + INET_DIAG_MSG_LEN));
    match parse_messages(buf, None, &mut out)? {
        Progress::Done => Ok(out),
        Progress::More => Err(ParseError::MissingDone),
    }
}

/// Collapses sorted, deduplicated ports into inclusive ranges, so a service
/// listening on 8080..=8089 costs the kernel two comparisons, not twenty.
fn port_ranges(sorted: &[u16]) -> Vec<(u16, u16)> {
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for &p in sorted {
        match ranges.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(p) => *hi = p,
            _ => ranges.push((p, p)),
        }
    }
    ranges
}

/// inet_diag bytecode accepting sockets whose local port is in one of the
/// ranges. The kernel's verifier (inet_diag_bc_audit) only accepts programs
/// whose "yes" branches step forward op by op, so an OR is built as ss builds
/// it: per range `sport >= lo` and `sport <= hi` falling through to a JMP to the
/// end (accept), their "no" branches skipping to the next range; the last
/// range's "no" jumps past the end, which rejects. S_GE/S_LE rather than the
/// newer S_EQ so that old (3.x) kernels accept it too.
fn port_filter_bytecode(ranges: &[(u16, u16)], out: &mut Vec<u8>) {
    const COND: usize = 8; // op + the op-sized word holding the port
    const JMP: usize = 4;
    const BLOCK: usize = 2 * COND + JMP;
    out.clear();
    let total = ranges.len() * BLOCK - JMP;
    let op = |out: &mut Vec<u8>, code: u8, yes: u8, no: usize| {
        out.push(code);
        out.push(yes);
        out.extend_from_slice(&(no as u16).to_ne_bytes());
    };
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let last = i + 1 == ranges.len();
        for (k, (code, port)) in [(INET_DIAG_BC_S_GE, lo), (INET_DIAG_BC_S_LE, hi)]
            .into_iter()
            .enumerate()
        {
            let pos = out.len();
            let no = if last {
                total - pos + 4
            } else {
                BLOCK - k * COND
            };
            op(out, code, COND as u8, no);
            op(out, 0, 0, usize::from(port));
        }
        if !last {
            let pos = out.len();
            op(out, INET_DIAG_BC_JMP, JMP as u8, total - pos);
        }
    }
    debug_assert_eq!(out.len(), total);
}

/// Encodes one dump request. The legacy TCPDIAG_GETSOCK message is used on
/// purpose: the kernel treats it as family AF_UNSPEC, so one request (one walk
/// of the kernel's socket hash) returns IPv4 and IPv6 sockets, where
/// SOCK_DIAG_BY_FAMILY needs one request and one full walk per family.
fn encode_request(buf: &mut Vec<u8>, seq: u32, states: u32, bytecode: &[u8]) {
    let attr_len = if bytecode.is_empty() {
        0
    } else {
        4 + bytecode.len()
    };
    let total = NLMSG_HDR_LEN + INET_DIAG_REQ_LEN + attr_len;
    buf.clear();
    buf.extend_from_slice(&(total as u32).to_ne_bytes());
    buf.extend_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    // struct inet_diag_req: family AF_UNSPEC, no address lengths, no
    // extensions (the fixed 72-byte message is all we need; recent kernels
    // still append a few small attributes, which the parser skips), a zero
    // socket id (no exact-match filter), the state mask, the unused idiag_dbs.
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&[0u8; 48]);
    buf.extend_from_slice(&states.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    if !bytecode.is_empty() {
        buf.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        buf.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        buf.extend_from_slice(bytecode);
    }
    debug_assert_eq!(buf.len(), total);
}

/// A reusable NETLINK_SOCK_DIAG socket (open once, query every tick).
pub struct SockDiag {
    sock: Socket,
    buf: Vec<u8>,
    req: Vec<u8>,
    bytecode: Vec<u8>,
    seq: u32,
}

impl fmt::Debug for SockDiag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the 64 KiB buffer.
        f.debug_struct("SockDiag")
            .field("sock", &self.sock)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl SockDiag {
    pub fn new() -> io::Result<SockDiag> {
        Ok(SockDiag {
            sock: open_socket()?,
            buf: vec![0; RECV_BUF_LEN],
            req: Vec::with_capacity(256),
            bytecode: Vec::new(),
            seq: 0,
        })
    }

    /// TCP sockets (IPv4 and IPv6) in the given states (a [`state_mask`]):
    /// local port, state, inode. Asking only for the states needed matters:
    /// LISTEN alone does not make the kernel walk the established hash at all.
    pub fn tcp_sockets(&mut self, states: u32) -> io::Result<Vec<TcpSocket>> {
        let mut out = Vec::new();
        self.dump(states, None, &mut out)?;
        Ok(out)
    }

    /// Like [`SockDiag::tcp_sockets`], but only sockets whose local port is in
    /// `ports`, filtered in the kernel so that the other sockets of a busy
    /// host are never copied to us.
    pub fn tcp_sockets_on_ports(
        &mut self,
        states: u32,
        ports: &[u16],
    ) -> io::Result<Vec<TcpSocket>> {
        let mut sorted = ports.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut out = Vec::new();
        if sorted.is_empty() {
            return Ok(out);
        }
        let ranges = port_ranges(&sorted);
        if ranges.len() <= MAX_FILTER_RANGES {
            let mut bytecode = std::mem::take(&mut self.bytecode);
            port_filter_bytecode(&ranges, &mut bytecode);
            let res = self.dump(states, Some(&bytecode), &mut out);
            self.bytecode = bytecode;
            res?;
        } else {
            self.dump(states, None, &mut out)?;
            out.retain(|s| sorted.binary_search(&s.local_port).is_ok());
        }
        Ok(out)
    }

    fn dump(
        &mut self,
        states: u32,
        bytecode: Option<&[u8]>,
        out: &mut Vec<TcpSocket>,
    ) -> io::Result<()> {
        let res = self.dump_once(states, bytecode.unwrap_or(&[]), out, None);
        if res.is_err() {
            // The kernel refuses a new dump (EBUSY) while the old one is still
            // pending on the socket; a fresh socket is the simple way out.
            if let Ok(sock) = open_socket() {
                self.sock = sock;
            }
        }
        res
    }

    /// `raw`, for capturing test fixtures, receives every datagram's bytes.
    fn dump_once(
        &mut self,
        states: u32,
        bytecode: &[u8],
        out: &mut Vec<TcpSocket>,
        mut raw: Option<&mut Vec<u8>>,
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        encode_request(&mut self.req, self.seq, states, bytecode);
        let sent = self.sock.send(&self.req)?;
        if sent != self.req.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write of sock_diag request",
            ));
        }
        loop {
            let n = match self.sock.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "sock_diag dump timed out",
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if n == self.buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "sock_diag datagram may be truncated",
                ));
            }
            if let Some(raw) = raw.as_deref_mut() {
                raw.extend_from_slice(&self.buf[..n]);
            }
            if parse_messages(&self.buf[..n], Some(self.seq), out)? == Progress::Done {
                return Ok(());
            }
        }
    }
}

fn open_socket() -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::from(AF_NETLINK),
        Type::DGRAM,
        Some(Protocol::from(NETLINK_SOCK_DIAG)),
    )?;
    sock.set_read_timeout(Some(RECV_TIMEOUT))?;
    Ok(sock)
}

/// Listening ports of a process: LISTEN sockets whose inode the process holds.
/// Sorted and deduplicated (a port bound on both 0.0.0.0 and :: counts once).
pub fn listening_ports(socks: &[TcpSocket], inodes: &HashSet<u64>) -> Vec<u16> {
    let mut ports: Vec<u16> = socks
        .iter()
        .filter(|s| s.state == TcpState::Listen && s.inode != 0 && inodes.contains(&s.inode))
        .map(|s| s.local_port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Per port in `ports` (same order), the sockets whose local port is that
/// port, LISTEN excluded: the server side of the port's connections. Client
/// sockets of other programs that happen to use it as a local port would be
/// counted too, but the kernel does not hand out a listening port for that.
pub fn count_ports(socks: &[TcpSocket], ports: &[u16]) -> Vec<PortStats> {
    let mut uniq = ports.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let mut stats: Vec<PortStats> = uniq
        .iter()
        .map(|&port| PortStats {
            port,
            ..PortStats::default()
        })
        .collect();
    for s in socks {
        if s.state == TcpState::Listen {
            continue;
        }
        let Ok(i) = uniq.binary_search(&s.local_port) else {
            continue;
        };
        let st = &mut stats[i];
        st.total += 1;
        match s.state {
            TcpState::Established => st.established += 1,
            TcpState::TimeWait => st.time_wait += 1,
            TcpState::CloseWait => st.close_wait += 1,
            _ => {}
        }
    }
    ports
        .iter()
        .map(|p| uniq.binary_search(p).map(|i| stats[i]).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/sock_diag/tcp_dump.bin");

    fn sock(local_port: u16, state: TcpState, inode: u64) -> TcpSocket {
        TcpSocket {
            local_port,
            remote_port: 40000,
            state,
            inode,
        }
    }

    #[test]
    fn sock_diag_debug_is_short() {
        let sd = SockDiag::new().unwrap();
        assert!(format!("{sd:?}").len() < 200);
    }

    #[test]
    fn state_codes_and_mask() {
        assert_eq!(state_mask(&[]), 0);
        assert_eq!(state_mask(&[TcpState::Listen]), 1 << 10);
        assert_eq!(
            state_mask(&[
                TcpState::Established,
                TcpState::TimeWait,
                TcpState::CloseWait
            ]),
            (1 << 1) | (1 << 6) | (1 << 8)
        );
        // The kernel's TCPF_ALL is 0xfff (bit 0 unused, bit 12 NEW_SYN_RECV).
        assert_eq!(state_mask(&TcpState::ALL), 0xffe);
        for s in TcpState::ALL {
            assert_eq!(TcpState::from_code(s.code()), Some(s));
        }
        assert_eq!(TcpState::from_code(12), Some(TcpState::SynRecv));
        assert_eq!(TcpState::from_code(0), None);
        assert_eq!(TcpState::from_code(13), None);
    }

    // Tests on the checked-in capture only hold where it was made: the
    // netlink header and inode are in host byte order.
    #[cfg(target_endian = "little")]
    #[test]
    fn parses_captured_dump() {
        // See tests/fixtures/sock_diag/README.md for what was captured.
        let socks = parse_inet_diag_dump(FIXTURE).unwrap();
        let count = |st: TcpState| socks.iter().filter(|s| s.state == st).count();
        assert_eq!(socks.len(), 7, "{socks:#?}");
        assert_eq!(count(TcpState::Listen), 2);
        assert_eq!(count(TcpState::Established), 3);
        assert_eq!(count(TcpState::CloseWait), 1);
        assert_eq!(count(TcpState::TimeWait), 1);
        let listen: Vec<u16> = socks
            .iter()
            .filter(|s| s.state == TcpState::Listen)
            .map(|s| s.local_port)
            .collect();
        assert_ne!(listen[0], listen[1]);
        for s in &socks {
            assert!(listen.contains(&s.local_port), "{s:?}");
            match s.state {
                TcpState::Listen => assert_eq!(s.remote_port, 0),
                _ => assert_ne!(s.remote_port, 0),
            }
            // TIME_WAIT minisockets have no inode; real sockets do.
            assert_eq!(s.inode == 0, s.state == TcpState::TimeWait, "{s:?}");
        }
        let (v4, v6) = (listen[0], listen[1]);
        let inodes: HashSet<u64> = socks.iter().map(|s| s.inode).collect();
        assert_eq!(listening_ports(&socks, &inodes), {
            let mut l = vec![v4, v6];
            l.sort_unstable();
            l
        });
        let stats = count_ports(&socks, &[v4, v6]);
        assert_eq!(
            stats,
            vec![
                PortStats {
                    port: v4,
                    total: 4,
                    established: 2,
                    time_wait: 1,
                    close_wait: 1
                },
                PortStats {
                    port: v6,
                    total: 1,
                    established: 1,
                    time_wait: 0,
                    close_wait: 0
                },
            ]
        );
    }

    #[test]
    fn truncated_and_garbage_replies_are_errors_not_panics() {
        // Every proper prefix lacks NLMSG_DONE (the last message), so must fail.
        for end in 0..FIXTURE.len() {
            assert!(
                parse_inet_diag_dump(&FIXTURE[..end]).is_err(),
                "prefix {end}"
            );
        }
        for i in 0..FIXTURE.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = FIXTURE.to_vec();
                b[i] ^= flip;
                let _ = parse_inet_diag_dump(&b);
                let _ = parse_messages(&b, Some(1), &mut Vec::new());
            }
        }
        // Cheap deterministic noise: lengths and types all over the place.
        let mut x: u32 = 0x9e37_79b9;
        for len in 0..2000 {
            let b: Vec<u8> = (0..len % 300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = parse_inet_diag_dump(&b);
        }
        assert_eq!(parse_inet_diag_dump(&[]), Err(ParseError::MissingDone));
        let mut huge = FIXTURE.to_vec();
        huge[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(
            parse_inet_diag_dump(&huge),
            Err(ParseError::Truncated { offset: 0 })
        ));
    }

    fn nlmsg(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn diag_body(family: u8, state: u8, sport: u16, inode: u32) -> Vec<u8> {
        let mut b = vec![0u8; INET_DIAG_MSG_LEN];
        b[0] = family;
        b[1] = state;
        b[4..6].copy_from_slice(&sport.to_be_bytes());
        b[6..8].copy_from_slice(&443u16.to_be_bytes());
        b[68..72].copy_from_slice(&inode.to_ne_bytes());
        b
    }

    #[test]
    fn kernel_errors_stale_messages_and_bad_fields() {
        let err = nlmsg(NLMSG_ERROR, 5, &(-16i32).to_ne_bytes());
        assert_eq!(
            parse_inet_diag_dump(&err),
            Err(ParseError::Kernel { errno: 16 })
        );
        let io: io::Error = ParseError::Kernel { errno: 16 }.into();
        assert_eq!(io.raw_os_error(), Some(16));
        let done_err = nlmsg(NLMSG_DONE, 5, &(-4i32).to_ne_bytes());
        assert_eq!(
            parse_inet_diag_dump(&done_err),
            Err(ParseError::Kernel { errno: 4 })
        );

        // Leftovers of an abandoned dump (other seq) are skipped, errors too.
        let mut buf = nlmsg(SOCK_DIAG_BY_FAMILY, 1, &diag_body(AF_INET, 1, 80, 9));
        buf.extend(nlmsg(NLMSG_ERROR, 1, &(-16i32).to_ne_bytes()));
        buf.extend(nlmsg(TCPDIAG_GETSOCK, 2, &diag_body(AF_INET6, 6, 8080, 0)));
        buf.extend(nlmsg(NLMSG_NOOP, 2, &[]));
        buf.extend(nlmsg(NLMSG_DONE, 2, &0i32.to_ne_bytes()));
        let mut out = Vec::new();
        assert_eq!(parse_messages(&buf, Some(2), &mut out), Ok(Progress::Done));
        assert_eq!(
            out,
            vec![TcpSocket {
                local_port: 8080,
                remote_port: 443,
                state: TcpState::TimeWait,
                inode: 0
            }]
        );

        let unknown_state = nlmsg(SOCK_DIAG_BY_FAMILY, 1, &diag_body(AF_INET, 42, 80, 9));
        assert!(matches!(
            parse_inet_diag_dump(&unknown_state),
            Err(ParseError::UnknownState { state: 42, .. })
        ));
        let unix = nlmsg(SOCK_DIAG_BY_FAMILY, 1, &diag_body(1, 1, 80, 9));
        assert!(matches!(
            parse_inet_diag_dump(&unix),
            Err(ParseError::UnknownFamily { family: 1, .. })
        ));
        let short = nlmsg(SOCK_DIAG_BY_FAMILY, 1, &[AF_INET, 1, 0, 0]);
        assert!(matches!(
            parse_inet_diag_dump(&short),
            Err(ParseError::Truncated { .. })
        ));
        let other = nlmsg(99, 1, &[]);
        assert!(matches!(
            parse_inet_diag_dump(&other),
            Err(ParseError::UnexpectedType { ty: 99, .. })
        ));
        let mut bad_len = nlmsg(NLMSG_DONE, 1, &[0; 4]);
        bad_len[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(
            parse_inet_diag_dump(&bad_len),
            Err(ParseError::BadLength { len: 8, .. })
        ));
    }

    /// The kernel's inet_diag_bc_audit() and inet_diag_bc_run() restricted to
    /// the ops we emit, so the filter logic is checked without a kernel.
    fn kernel_audit(bc: &[u8]) -> bool {
        let valid_cc = |cc: usize| {
            let mut len = bc.len() as isize;
            let mut pos = 0usize;
            while len >= 0 {
                if cc as isize > len {
                    return false;
                }
                if cc as isize == len {
                    return true;
                }
                let yes = bc[pos + 1] as isize;
                if yes < 4 || yes & 3 != 0 {
                    return false;
                }
                len -= yes;
                pos += yes as usize;
            }
            false
        };
        let mut len = bc.len() as isize;
        let mut pos = 0usize;
        while len > 0 {
            let (code, yes, no) = (bc[pos], bc[pos + 1] as isize, u16_ne(bc, pos + 2) as isize);
            let min_len = match code {
                INET_DIAG_BC_S_GE | INET_DIAG_BC_S_LE => {
                    if len < 8 {
                        return false;
                    }
                    8
                }
                INET_DIAG_BC_JMP => 4,
                _ => return false,
            };
            if no < min_len || no > len + 4 || no & 3 != 0 {
                return false;
            }
            if no < len && !valid_cc((len - no) as usize) {
                return false;
            }
            if yes < min_len || yes > len + 4 || yes & 3 != 0 {
                return false;
            }
            pos += yes as usize;
            len -= yes;
        }
        len == 0
    }

    fn kernel_run(bc: &[u8], sport: u16) -> bool {
        let mut len = bc.len() as isize;
        let mut pos = 0usize;
        while len > 0 {
            let (code, yes_off, no_off) = (bc[pos], bc[pos + 1] as isize, u16_ne(bc, pos + 2));
            let arg = || u16_ne(bc, pos + 6);
            let yes = match code {
                INET_DIAG_BC_JMP => false,
                INET_DIAG_BC_S_GE => sport >= arg(),
                INET_DIAG_BC_S_LE => sport <= arg(),
                _ => unreachable!(),
            };
            let step = if yes { yes_off } else { no_off as isize };
            len -= step;
            pos = pos.wrapping_add(step as usize);
        }
        len == 0
    }

    #[test]
    fn port_filter_bytecode_accepts_exactly_the_ports() {
        let sets: &[&[u16]] = &[
            &[80],
            &[0],
            &[65535],
            &[0, 65535],
            &[80, 443],
            &[8080, 8081, 8082, 9000],
            &[1, 3, 5, 7, 9, 11, 13],
            &[22, 80, 443, 3306, 5432, 6379, 8080, 8443, 9090, 9200, 27017],
        ];
        let mut bc = Vec::new();
        for ports in sets {
            let ranges = port_ranges(ports);
            port_filter_bytecode(&ranges, &mut bc);
            assert!(kernel_audit(&bc), "audit rejects {ports:?}");
            for p in (0..=u16::MAX)
                .step_by(1)
                .filter(|p| p % 97 == 0 || ports.iter().any(|q| q.abs_diff(*p) <= 1))
            {
                assert_eq!(
                    kernel_run(&bc, p),
                    ports.contains(&p),
                    "port {p} in {ports:?}"
                );
            }
        }
        assert_eq!(
            port_ranges(&[8080, 8081, 8082, 9000]),
            vec![(8080, 8082), (9000, 9000)]
        );
        assert_eq!(port_ranges(&[65534, 65535]), vec![(65534, 65535)]);
        // The largest filter we emit still fits the u16 jump and length fields.
        let many: Vec<u16> = (0..MAX_FILTER_RANGES as u16).map(|i| i * 2).collect();
        port_filter_bytecode(&port_ranges(&many), &mut bc);
        assert!(bc.len() + 4 <= usize::from(u16::MAX));
        assert!(kernel_audit(&bc));
        assert!(kernel_run(&bc, 2 * (MAX_FILTER_RANGES as u16 - 1)));
        assert!(!kernel_run(&bc, 1));
    }

    #[test]
    fn request_layout() {
        let mut req = Vec::new();
        encode_request(&mut req, 7, state_mask(&[TcpState::Listen]), &[]);
        assert_eq!(req.len(), NLMSG_HDR_LEN + INET_DIAG_REQ_LEN);
        assert_eq!(u32_ne(&req, 0) as usize, req.len());
        assert_eq!(u16_ne(&req, 4), TCPDIAG_GETSOCK);
        assert_eq!(u16_ne(&req, 6), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(u32_ne(&req, 8), 7);
        assert_eq!(req[16], 0, "AF_UNSPEC: both families");
        assert_eq!(u32_ne(&req, 16 + 52), 1 << 10);
        let bc = [1u8, 4, 4, 0];
        encode_request(&mut req, 8, 2, &bc);
        assert_eq!(u32_ne(&req, 0) as usize, req.len());
        assert_eq!(u16_ne(&req, 76), 8, "nla_len");
        assert_eq!(u16_ne(&req, 78), INET_DIAG_REQ_BYTECODE);
        assert_eq!(&req[80..], &bc);
    }

    #[test]
    fn listening_ports_are_the_process_listeners() {
        let socks = [
            sock(8080, TcpState::Listen, 11),
            sock(8080, TcpState::Listen, 12), // same port on ::
            sock(9090, TcpState::Listen, 13), // another process
            sock(7070, TcpState::Listen, 14),
            sock(8080, TcpState::Established, 15),
            sock(5000, TcpState::Established, 16), // ours, but not listening
        ];
        let ours = HashSet::from([11, 12, 14, 15, 16]);
        assert_eq!(listening_ports(&socks, &ours), vec![7070, 8080]);
        assert_eq!(listening_ports(&socks, &HashSet::new()), Vec::<u16>::new());
        // TIME_WAIT/request minisockets have inode 0; never let 0 match.
        let tw = [sock(1, TcpState::Listen, 0)];
        assert_eq!(listening_ports(&tw, &HashSet::from([0])), Vec::<u16>::new());
    }

    #[test]
    fn count_ports_counts_local_port_without_listen() {
        use TcpState::*;
        let socks = [
            sock(8080, Listen, 1),
            sock(8080, Established, 2),
            sock(8080, Established, 3),
            sock(8080, TimeWait, 0),
            sock(8080, CloseWait, 4),
            sock(8080, SynRecv, 0),
            sock(8080, FinWait2, 5),
            sock(9090, Established, 6),
            sock(1234, Established, 7), // a client whose remote port is ours
        ];
        let stats = count_ports(&socks, &[9090, 8080, 7070]);
        assert_eq!(
            stats,
            vec![
                PortStats {
                    port: 9090,
                    total: 1,
                    established: 1,
                    ..Default::default()
                },
                PortStats {
                    port: 8080,
                    total: 6,
                    established: 2,
                    time_wait: 1,
                    close_wait: 1
                },
                PortStats {
                    port: 7070,
                    ..Default::default()
                },
            ]
        );
        assert_eq!(count_ports(&socks, &[]), vec![]);
        assert_eq!(count_ports(&socks, &[9090, 9090]).len(), 2);
    }

    /// Regenerates the fixture:
    /// `cargo test -p agent-monitor --lib capture_fixture -- --ignored`.
    #[test]
    #[ignore = "rewrites tests/fixtures/sock_diag/tcp_dump.bin"]
    fn capture_fixture() {
        use std::io::Write;
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::time::Instant;

        let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let l6 = TcpListener::bind("[::1]:0").unwrap();
        let (p4, p6) = (
            l4.local_addr().unwrap().port(),
            l6.local_addr().unwrap().port(),
        );
        let pair = |l: &TcpListener| {
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().unwrap();
            (c, s)
        };
        let est: Vec<_> = vec![pair(&l4), pair(&l4), pair(&l6)];
        let (cw_client, cw_server) = pair(&l4);
        drop(cw_client);
        let (mut tw_client, tw_server) = pair(&l4);
        drop(tw_server);
        tw_client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(tw_client.read(&mut [0; 8]).unwrap(), 0);
        tw_client.shutdown(Shutdown::Both).unwrap();
        drop(tw_client);

        let mut sd = SockDiag::new().unwrap();
        let mut bc = Vec::new();
        let mut ports = [p4, p6];
        ports.sort_unstable();
        port_filter_bytecode(&port_ranges(&ports), &mut bc);
        let deadline = Instant::now() + Duration::from_secs(5);
        let raw = loop {
            let mut raw = Vec::new();
            let mut out = Vec::new();
            sd.dump_once(state_mask(&TcpState::ALL), &bc, &mut out, Some(&mut raw))
                .unwrap();
            let n = |st| out.iter().filter(|s| s.state == st).count();
            if n(TcpState::TimeWait) == 1 && n(TcpState::CloseWait) == 1 {
                break raw;
            }
            assert!(Instant::now() < deadline, "states did not settle: {out:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/sock_diag/tcp_dump.bin"
        );
        std::fs::File::create(path)
            .unwrap()
            .write_all(&raw)
            .unwrap();
        eprintln!("wrote {} bytes; v4 port {p4}, v6 port {p6}", raw.len());
        drop((est, cw_server));
    }
}
