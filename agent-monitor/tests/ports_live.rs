//! Real sockets on loopback counted through sock_diag, and a real child
//! process found through /proc. Every wait is bounded; children are killed
//! on drop.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agent_monitor::collect::ports::*;
use agent_monitor::collect::process::*;
use protocol::metrics::PortStats;

const SETTLE: Duration = Duration::from_secs(10);

fn proc_root() -> &'static Path {
    Path::new("/proc")
}

fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// Server side ends in CLOSE_WAIT: the client's FIN arrived, we never closed.
fn close_wait(l: &TcpListener) -> TcpStream {
    let (c, s) = pair(l);
    drop(c);
    s
}

/// Server side ends in TIME_WAIT: it closes first, waits for the client to see
/// EOF (so its FIN was acked), then the client closes.
fn time_wait(l: &TcpListener) {
    let (mut c, s) = pair(l);
    drop(s);
    c.set_read_timeout(Some(SETTLE)).unwrap();
    assert_eq!(c.read(&mut [0; 16]).unwrap(), 0, "expected EOF");
    let _ = c.shutdown(Shutdown::Both);
}

/// Polls until `f` returns what is expected (TCP state changes are async).
fn settle<T: PartialEq + std::fmt::Debug>(expected: T, mut f: impl FnMut() -> T) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let got = f();
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "got {got:?}, want {expected:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn all_but_listen() -> u32 {
    let states: Vec<TcpState> = TcpState::ALL
        .into_iter()
        .filter(|s| *s != TcpState::Listen)
        .collect();
    state_mask(&states)
}

fn counts_on(l: &TcpListener, n_est: usize, n_cw: usize, n_tw: usize) {
    let port = l.local_addr().unwrap().port();
    let est: Vec<_> = (0..n_est).map(|_| pair(l)).collect();
    let cw: Vec<_> = (0..n_cw).map(|_| close_wait(l)).collect();
    (0..n_tw).for_each(|_| time_wait(l));
    let want = vec![PortStats {
        port,
        total: (n_est + n_cw + n_tw) as u32,
        established: n_est as u32,
        time_wait: n_tw as u32,
        close_wait: n_cw as u32,
    }];
    let mut sd = SockDiag::new().unwrap();
    settle(want.clone(), || {
        count_ports(&sd.tcp_sockets(all_but_listen()).unwrap(), &[port])
    });
    // The kernel-side port filter gives the same counts and nothing else.
    let filtered = sd.tcp_sockets_on_ports(all_but_listen(), &[port]).unwrap();
    assert!(
        filtered.iter().all(|s| s.local_port == port),
        "{filtered:?}"
    );
    assert_eq!(count_ports(&filtered, &[port]), want);
    // TIME_WAIT minisockets have no inode, real sockets all have one.
    for s in &filtered {
        assert_eq!(s.inode == 0, s.state == TcpState::TimeWait, "{s:?}");
    }
    drop((est, cw));
}

/// A listener on `addr` (port 0) whose port is also held in the other
/// address family: counts go by port alone, and the tests run in
/// parallel, so an IPv4 and an IPv6 listener must never share a port.
/// The second value is the guard to keep alive beside the listener.
fn listener_with_its_own_port(addr: &str, other: &str) -> (TcpListener, Option<TcpListener>) {
    for _ in 0..100 {
        let l = TcpListener::bind(addr).unwrap();
        let port = l.local_addr().unwrap().port();
        match TcpListener::bind(format!("{other}:{port}")) {
            Ok(guard) => return (l, Some(guard)),
            // No such family here: nothing can share the port either.
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => return (l, None),
            Err(_) => continue,
        }
    }
    panic!("no port free in both address families after 100 tries");
}

#[test]
fn counts_established_close_wait_time_wait_ipv4() {
    let (l, _guard) = listener_with_its_own_port("127.0.0.1:0", "[::1]");
    counts_on(&l, 5, 3, 4);
}

#[test]
fn counts_ipv6_in_the_same_dump() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let (l, _guard) = listener_with_its_own_port("[::1]:0", "127.0.0.1");
    counts_on(&l, 2, 1, 1);
}

#[test]
fn many_connections_span_several_datagrams() {
    // ~124 bytes per socket, ~32 KiB per datagram: 2x300 sockets need several.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let conns: Vec<_> = (0..300).map(|_| pair(&l)).collect();
    let mut sd = SockDiag::new().unwrap();
    let mask = state_mask(&[TcpState::Established]);
    settle(300, || {
        count_ports(&sd.tcp_sockets(mask).unwrap(), &[port])[0].established
    });
    let all = sd.tcp_sockets(mask).unwrap();
    // Both ends of every connection: clients have the listener as remote port.
    assert_eq!(all.iter().filter(|s| s.remote_port == port).count(), 300);
    drop(conns);
}

#[test]
fn kernel_port_filter_with_several_ports() {
    let ls: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
    let conns: Vec<_> = ls.iter().flat_map(|l| [pair(l), pair(l)]).collect();
    let mut sd = SockDiag::new().unwrap();
    let wanted = &ports[..3]; // the fourth listener's connections must not show
    let mask = state_mask(&TcpState::ALL);
    let mut sorted = wanted.to_vec();
    sorted.sort_unstable();
    settle(sorted.clone(), || {
        let got = sd.tcp_sockets_on_ports(mask, wanted).unwrap();
        let mut p: Vec<u16> = got.iter().map(|s| s.local_port).collect();
        p.sort_unstable();
        p.dedup();
        p
    });
    let got = sd.tcp_sockets_on_ports(mask, wanted).unwrap();
    // Per port: the listener and two accepted sockets.
    assert_eq!(got.len(), 9, "{got:?}");
    assert!(sd.tcp_sockets_on_ports(mask, &[]).unwrap().is_empty());
    // Adjacent ports become one range; make sure the kernel agrees too.
    if let Some((a, b)) = adjacent_listeners() {
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        let got = sd
            .tcp_sockets_on_ports(state_mask(&[TcpState::Listen]), &[pb, pa])
            .unwrap();
        let mut p: Vec<u16> = got.iter().map(|s| s.local_port).collect();
        p.sort_unstable();
        assert_eq!(p, vec![pa, pb]);
    }
    drop(conns);
}

fn adjacent_listeners() -> Option<(TcpListener, TcpListener)> {
    (0..20).find_map(|_| {
        let a = TcpListener::bind("127.0.0.1:0").ok()?;
        let next = a.local_addr().ok()?.port().checked_add(1)?;
        let b = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], next))).ok()?;
        Some((a, b))
    })
}

#[test]
fn listening_ports_of_this_process() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut sd = SockDiag::new().unwrap();
    let listen = sd.tcp_sockets(state_mask(&[TcpState::Listen])).unwrap();
    assert!(listen.iter().all(|s| s.state == TcpState::Listen));
    assert!(
        sd.tcp_sockets(0).unwrap().is_empty(),
        "no state asked, none given"
    );
    let inodes = socket_inodes(proc_root(), std::process::id()).unwrap();
    assert!(listening_ports(&listen, &inodes).contains(&port));
    // Another process's view: none of our listeners.
    assert!(!listening_ports(&listen, &HashSet::new()).contains(&port));
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Unique per test and run; the tag keeps one test's marker from being a
/// substring of another's.
fn marker(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("unique-marker-{tag}-{}-{nanos:09}", std::process::id())
}

const PY_LISTENER: &str = "import socket, sys, time
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)";

/// Spawns the python listener; None when python3 is not installed.
fn spawn_listener(marker: &str) -> Option<(KillOnDrop, u16)> {
    let child = match Command::new("python3")
        .args(["-c", PY_LISTENER, marker])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("spawn python3: {e}"),
    };
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(SETTLE).expect("python3 printed no port");
    let port = line.trim().parse().expect("port number");
    Some((child, port))
}

#[test]
fn finds_child_process_and_its_listening_port() {
    let marker = marker("listener");
    let Some((mut child, port)) = spawn_listener(&marker) else {
        eprintln!("python3 not installed; skipping");
        return;
    };
    let pid = child.0.id();
    let me = std::process::id();
    assert_eq!(find_process(proc_root(), &marker, me), Some(pid));
    assert!(process_matches(proc_root(), pid, &marker));
    // The child is not grep and not us, but excluding it must work too.
    assert_eq!(find_process(proc_root(), &marker, pid), None);

    let inodes = socket_inodes(proc_root(), pid).unwrap();
    let mut sd = SockDiag::new().unwrap();
    let listen = sd.tcp_sockets(state_mask(&[TcpState::Listen])).unwrap();
    assert_eq!(listening_ports(&listen, &inodes), vec![port]);

    // Gone (killed and reaped): None and Err, never a panic.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(find_process(proc_root(), &marker, me), None);
    assert!(!process_matches(proc_root(), pid, &marker));
    assert!(socket_inodes(proc_root(), pid).is_err());
}

#[test]
fn processes_exiting_mid_read_do_not_panic() {
    // Races the scans against processes that exit (and become zombies) while
    // being read; any Ok/Err/None outcome is fine, a panic is not.
    let marker = marker("churn");
    let deadline = Instant::now() + SETTLE;
    for _ in 0..50 {
        let child = Command::new("sh")
            .args(["-c", "exit 0", &marker])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let pid = child.0.id();
        for _ in 0..5 {
            let _ = socket_inodes(proc_root(), pid);
            let _ = find_process(proc_root(), &marker, std::process::id());
        }
        let _ = child.0.wait();
        assert!(Instant::now() < deadline, "churn loop too slow");
    }
}
