//! A ZooKeeper ensemble whose servers reach each other only through [`Link`]s that can be cut: one server can
//! be cut off from the quorum while its client port stays reachable (issue 11, item 1).
//!
//! Each server has its own zoo.cfg. Its own `server.N` line names its real quorum and election ports (it binds
//! them); every other `server.M` line names the two links *from it to M* (one for the quorum port, one for the
//! election port), which forward to M's real ports. So every connection between two servers goes through a
//! link of its own, and [`QuorumEnsemble::isolate`] cuts every link to and from one server: each byte is read
//! and dropped, no connection is closed, new connections are accepted and talk into the void — as a partition
//! that drops packets looks to both ends. The server keeps serving its clients for as long as ZooKeeper lets a
//! learner without a leader do so (`syncLimit × tickTime`, see [`QuorumEnsemble::start`]).
//!
//! One detail of ZooKeeper 3.8 makes the links more than forwarders. The election (`QuorumCnxManager`) keeps
//! one connection per pair of servers, from the higher id to the lower: when the lower id connects, the higher
//! one closes that connection and connects back to the election address the lower one *advertised* in its
//! first message — its own, real port. The election link rewrites that address to the link going the other
//! way, so the connection back goes through a link too and nothing bypasses a cut.
//!
//! Every server is a [`ZkNode`] of the rig (registered with the watchdog, killed on drop, its log printed when
//! a test fails); client-side [`Proxy`]s from [`QuorumEnsemble::client_proxy`] let a supervisor's connect
//! string list every server while only some of them answer it.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::node::{
    kill_member, logs, restart_member, start_servers, StartError, ZkNode, ZK_START_TIMEOUT,
};
use crate::ports::free_ports;
use crate::proxy::Proxy;
use crate::rig::{lock, TempDir};
use crate::wait::poll_until;

/// The test servers' tick ([`ZkNode`] writes `tickTime=200`).
pub const TICK: Duration = Duration::from_millis(200);

/// How many servers a [`QuorumEnsemble`] has.
pub const SERVERS: usize = 3;

/// The cap on the election's notification back-off, in ms: ZooKeeper doubles the wait between rounds of
/// notifications up to 60 s by default, so a server healed after a few seconds alone could take up to a
/// minute to look again; with this cap it rejoins within about a second.
const MAX_NOTIFICATION_INTERVAL_MS: u32 = 1000;

// ---------------------------------------------------------------------------------------------------------------
// Link

/// The version numbers of the election protocol whose first message carries the sender's address
/// (`QuorumCnxManager.PROTOCOL_VERSION_V1` and `_V2`).
const ELECTION_PROTOCOLS: [i64; 2] = [-65536, -65535];

/// The longest address ZooKeeper accepts in that message (`QuorumCnxManager.maxBuffer`).
const MAX_ADVERTISED: usize = 2048;

struct LinkConn {
    /// The accepted socket and, outside a cut, the one to the upstream.
    sockets: Vec<TcpStream>,
    /// Lived through a cut: its streams lost bytes, heal closes it.
    tainted: AtomicBool,
}

impl LinkConn {
    fn close(&self) {
        for socket in &self.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

struct LinkShared {
    /// Where it forwards to: set once, before the servers start (see [`QuorumEnsemble::start`]).
    upstream: OnceLock<SocketAddr>,
    /// For an election link: the address to advertise in place of the connecting server's own.
    advertise: OnceLock<String>,
    /// Guards `cut` changes together with the connection list.
    conns: Mutex<Vec<Arc<LinkConn>>>,
    cut: AtomicBool,
    closing: AtomicBool,
}

/// A raw TCP forwarder from 127.0.0.1:<port> to one port of one server, which can be cut. Unlike [`Proxy`] it
/// knows nothing of the client protocol (it forwards bytes as they come), and an end of one side during a cut
/// does not reach the other side.
pub struct Link {
    addr: SocketAddr,
    shared: Arc<LinkShared>,
}

impl Link {
    /// A link on a port of its own, which forwards nowhere until [`Link::forward_to`].
    fn new() -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a link");
        let addr = listener.local_addr().expect("link address");
        let shared = Arc::new(LinkShared {
            upstream: OnceLock::new(),
            advertise: OnceLock::new(),
            conns: Mutex::new(Vec::new()),
            cut: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        thread::Builder::new()
            .name("link".into())
            .spawn(move || Link::accept(&listener, &accepting))
            .expect("spawn a link thread");
        Link { addr, shared }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn forward_to(&self, upstream: SocketAddr) {
        assert!(
            self.shared.upstream.set(upstream).is_ok(),
            "a link forwards to one place"
        );
    }

    fn accept(listener: &TcpListener, shared: &Arc<LinkShared>) {
        for client in listener.incoming() {
            if shared.closing.load(Ordering::SeqCst) {
                return;
            }
            let Ok(client) = client else { continue };
            let upstream = if shared.cut.load(Ordering::SeqCst) {
                None
            } else {
                let Some(addr) = shared.upstream.get() else {
                    continue; // not set up yet: like a refused connection
                };
                match TcpStream::connect_timeout(addr, Duration::from_secs(2)) {
                    Ok(upstream) => Some(upstream),
                    Err(_) => continue, // the server is down: like a refused connection
                }
            };
            let mut sockets = vec![client];
            sockets.extend(upstream);
            for socket in &sockets {
                let _ = socket.set_nodelay(true);
            }
            let clones: std::io::Result<Vec<TcpStream>> =
                sockets.iter().map(TcpStream::try_clone).collect();
            let mut conns = lock(&shared.conns);
            conns.retain(|c| Arc::strong_count(c) > 1);
            let conn = Arc::new(LinkConn {
                sockets,
                tainted: AtomicBool::new(shared.cut.load(Ordering::SeqCst)),
            });
            conns.push(conn.clone());
            drop(conns);
            let Ok(mut clones) = clones else {
                conn.close();
                continue;
            };
            let from_client = clones.remove(0);
            match clones.pop() {
                Some(upstream) => {
                    let (to_upstream, to_client) =
                        match (upstream.try_clone(), from_client.try_clone()) {
                            (Ok(to_upstream), Ok(to_client)) => (to_upstream, to_client),
                            _ => {
                                conn.close();
                                continue;
                            }
                        };
                    let advertise = shared.advertise.get().cloned();
                    Link::pump(from_client, Some(to_upstream), advertise, &conn, shared);
                    Link::pump(upstream, Some(to_client), None, &conn, shared);
                }
                None => Link::pump(from_client, None, None, &conn, shared),
            }
        }
    }

    /// Copies `from` to `to` outside cuts and discards inside them. `advertise` rewrites the address in the
    /// first message of an election connection (see the module docs). An end of `from` (or a failed write)
    /// ends the whole connection outside a cut; inside one it is kept from the other side until heal.
    fn pump(
        mut from: TcpStream,
        mut to: Option<TcpStream>,
        advertise: Option<String>,
        conn: &Arc<LinkConn>,
        shared: &Arc<LinkShared>,
    ) {
        let (conn, shared) = (conn.clone(), shared.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            // The start of the stream, held back until the first message is whole and rewritten.
            let mut first: Option<(String, Vec<u8>)> = advertise.map(|a| (a, Vec::new()));
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if shared.cut.load(Ordering::SeqCst) {
                    conn.tainted.store(true, Ordering::SeqCst);
                    continue;
                }
                if conn.tainted.load(Ordering::SeqCst) {
                    break;
                }
                let data: Cow<[u8]> = match &mut first {
                    None => Cow::Borrowed(&buf[..n]),
                    Some((advertise, held)) => {
                        held.extend_from_slice(&buf[..n]);
                        let Some(rewritten) = rewrite_initial_message(held, advertise) else {
                            continue;
                        };
                        first = None;
                        Cow::Owned(rewritten)
                    }
                };
                let Some(to) = to.as_mut() else { break };
                if to.write_all(&data).is_err() {
                    break;
                }
            }
            let _conns = lock(&shared.conns);
            if shared.cut.load(Ordering::SeqCst) {
                conn.tainted.store(true, Ordering::SeqCst);
            } else {
                conn.close();
            }
        });
    }

    /// From now on every byte in both directions, on existing and new connections, is read and discarded;
    /// nothing is closed.
    pub fn cut(&self) {
        let conns = lock(&self.shared.conns);
        self.shared.cut.store(true, Ordering::SeqCst);
        for conn in conns.iter() {
            conn.tainted.store(true, Ordering::SeqCst);
        }
    }

    /// Ends the cut: connections that lived through it are closed, new ones are forwarded.
    pub fn heal(&self) {
        let mut conns = lock(&self.shared.conns);
        for conn in conns.iter().filter(|c| c.tainted.load(Ordering::SeqCst)) {
            conn.close();
        }
        conns.retain(|c| !c.tainted.load(Ordering::SeqCst));
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        for conn in lock(&self.shared.conns).iter() {
            conn.close();
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// The first message on a connection to an election port (`QuorumCnxManager.InitialMessage`): protocol
/// version (8 bytes), server id (8), length of the address (4), the sender's election address(es). Returns the
/// bytes held so far with the address replaced by `advertise` once the message is whole, `None` while it is
/// not; an older protocol (no address) passes unchanged.
fn rewrite_initial_message(held: &[u8], advertise: &str) -> Option<Vec<u8>> {
    let version = i64::from_be_bytes(held.get(..8)?.try_into().expect("8 bytes"));
    if !ELECTION_PROTOCOLS.contains(&version) {
        return Some(held.to_vec());
    }
    let len = i32::from_be_bytes(held.get(16..20)?.try_into().expect("4 bytes"));
    let Some(len) = usize::try_from(len).ok().filter(|&l| l <= MAX_ADVERTISED) else {
        return Some(held.to_vec()); // ZooKeeper rejects it anyway
    };
    let rest = held.get(20 + len..)?;
    let mut out = held[..16].to_vec();
    let advertise_len = i32::try_from(advertise.len()).expect("a short address");
    out.extend_from_slice(&advertise_len.to_be_bytes());
    out.extend_from_slice(advertise.as_bytes());
    out.extend_from_slice(rest);
    Some(out)
}

// ---------------------------------------------------------------------------------------------------------------
// QuorumEnsemble

/// The two links from one server to another.
struct Route {
    from: usize,
    to: usize,
    quorum: Link,
    election: Link,
}

impl Route {
    fn touches(&self, server: usize) -> bool {
        self.from == server || self.to == server
    }
}

/// A [`SERVERS`]-server ensemble on loopback whose servers talk to each other only through [`Link`]s; any one
/// of them can be cut off from the others. Indexes are 0-based (server `i` has myid `i + 1`). Dropping it
/// kills every server.
pub struct QuorumEnsemble {
    nodes: Vec<ZkNode>,
    routes: Vec<Route>,
    sync_limit: u32,
    /// Removed once `drop` has killed the servers.
    _dir: TempDir,
}

impl QuorumEnsemble {
    /// Starts the servers at once, `tickTime` 200 ms and `syncLimit` `sync_limit` ticks (how long a follower
    /// keeps serving without hearing from its leader, and the leader keeps a silent follower), and waits (up to
    /// 30 s) until each serves as leader or follower.
    pub fn start(sync_limit: u32) -> QuorumEnsemble {
        assert!(sync_limit >= 1, "syncLimit must be at least 1 tick");
        let dir = TempDir::new("quorum");
        let (nodes, routes) = start_servers(
            || {
                // The links take their ports first, and hold them: the kernel then cannot hand one of them to
                // free_ports, which releases its ports for the servers to bind.
                let mut routes = Vec::new();
                for from in 0..SERVERS {
                    for to in (0..SERVERS).filter(|&to| to != from) {
                        routes.push(Route {
                            from,
                            to,
                            quorum: Link::new(),
                            election: Link::new(),
                        });
                    }
                }
                let ports = free_ports(3 * SERVERS);
                let real = |i: usize, kind: usize| -> SocketAddr {
                    SocketAddr::from(([127, 0, 0, 1], ports[3 * i + kind]))
                };
                let route = |from: usize, to: usize| {
                    routes
                        .iter()
                        .find(|r| r.from == from && r.to == to)
                        .expect("a route between two servers")
                };
                for r in &routes {
                    r.quorum.forward_to(real(r.to, 1));
                    r.election.forward_to(real(r.to, 2));
                    let back = route(r.to, r.from).election.port();
                    let _ = r.election.shared.advertise.set(format!("127.0.0.1:{back}"));
                }
                let nodes: Vec<ZkNode> = (0..SERVERS)
                    .map(|i| {
                        let mut servers = String::new();
                        for j in 0..SERVERS {
                            let (quorum, election) = if i == j {
                                (ports[3 * j + 1], ports[3 * j + 2])
                            } else {
                                (route(i, j).quorum.port(), route(i, j).election.port())
                            };
                            let _ =
                                writeln!(servers, "server.{}=127.0.0.1:{quorum}:{election}", j + 1);
                        }
                        let name = format!("zk{}", i + 1);
                        let node_dir = dir.path().join(&name);
                        let node =
                            ZkNode::new(name, node_dir, ports[3 * i], Some(i + 1), &servers, None);
                        // zoo.cfg is a properties file: a later key wins over the rig's defaults. Keys ZooKeeper
                        // does not know become system properties prefixed with `zookeeper.`. initLimit (the time a
                        // learner gets to connect and sync) stays the rig's 10 ticks, or syncLimit if that is longer,
                        // as ZooKeeper's guide advises.
                        let config = node.dir.join("zoo.cfg");
                        let mut text = std::fs::read_to_string(&config).expect("read zoo.cfg");
                        let _ = write!(
                            text,
                            "syncLimit={sync_limit}\n\
                             initLimit={}\n\
                             fastleader.maxNotificationInterval={MAX_NOTIFICATION_INTERVAL_MS}\n",
                            sync_limit.max(10)
                        );
                        std::fs::write(&config, text).expect("write zoo.cfg");
                        node
                    })
                    .collect();
                (nodes, routes)
            },
            |node, deadline| {
                node.wait_serving(&["leader", "follower"], deadline)
                    .and_then(|()| wait_election_listener(node, deadline))
            },
        );
        QuorumEnsemble {
            nodes,
            routes,
            sync_limit,
            _dir: dir,
        }
    }

    /// `syncLimit × tickTime`: how long a follower cut off from its leader keeps serving its clients.
    pub fn sync_timeout(&self) -> Duration {
        TICK * self.sync_limit
    }

    /// The connect string of the servers `servers` (by index), in that order.
    pub fn connect_string(&self, servers: &[usize]) -> String {
        servers
            .iter()
            .map(|&i| self.nodes[i].addr())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client-side proxy in front of server `i`'s client port (for a connect string that names a server the
    /// supervisor cannot reach: [`Proxy::partition`] it).
    pub fn client_proxy(&self, i: usize) -> Proxy {
        Proxy::new(&self.nodes[i].addr())
    }

    /// Server `i`'s mode from `srvr` ("leader", "follower"), `None` while it does not serve.
    pub fn mode(&self, i: usize) -> Option<String> {
        self.nodes[i].mode()
    }

    /// The index of the leader; waits (up to 30 s) for one to be elected.
    pub fn leader_index(&self) -> usize {
        let mut leader = None;
        let found = poll_until(ZK_START_TIMEOUT, &mut || {
            leader = (0..SERVERS).find(|&i| self.mode(i).as_deref() == Some("leader"));
            leader.is_some()
        });
        assert!(
            found,
            "no server became leader within {ZK_START_TIMEOUT:?}\n{}",
            logs(&self.nodes, "")
        );
        leader.expect("found")
    }

    /// The index of a server that serves as a follower now (the first one); waits (up to 30 s) for a leader.
    pub fn follower_index(&self) -> usize {
        let leader = self.leader_index();
        let mut follower = None;
        let found = poll_until(ZK_START_TIMEOUT, &mut || {
            follower =
                (0..SERVERS).find(|&i| i != leader && self.mode(i).as_deref() == Some("follower"));
            follower.is_some()
        });
        assert!(
            found,
            "no server serves as a follower of zk{}\n{}",
            leader + 1,
            logs(&self.nodes, "")
        );
        follower.expect("found")
    }

    /// Waits until server `i` serves in one of `modes` ("leader", "follower"), or, with `modes` empty, until it
    /// does not serve at all; returns when it did.
    pub fn wait_mode(&self, i: usize, modes: &[&str], timeout: Duration) -> Instant {
        let ok = poll_until(timeout, &mut || match self.mode(i) {
            Some(mode) => modes.contains(&mode.as_str()),
            None => modes.is_empty(),
        });
        assert!(
            ok,
            "zk{} did not {} within {timeout:?}\n{}",
            i + 1,
            if modes.is_empty() {
                "stop serving".to_owned()
            } else {
                format!("serve as {}", modes.join("|"))
            },
            logs(&self.nodes, &self.nodes[i].name)
        );
        Instant::now()
    }

    /// Cuts every link to and from server `i`: its quorum and election traffic is dropped both ways, its client
    /// port is untouched.
    pub fn isolate(&self, i: usize) {
        for route in self.routes.iter().filter(|r| r.touches(i)) {
            route.quorum.cut();
            route.election.cut();
        }
    }

    /// Ends [`QuorumEnsemble::isolate`]: the links to and from `i` forward again (the connections that lived
    /// through the cut are closed), except those that touch another server still isolated.
    pub fn heal(&self, i: usize) {
        let isolated = |j: usize| {
            j != i
                && self
                    .routes
                    .iter()
                    .filter(|r| r.touches(j))
                    .all(|r| r.quorum.is_cut())
        };
        for route in self.routes.iter().filter(|r| r.touches(i)) {
            if !isolated(route.from) && !isolated(route.to) {
                route.quorum.heal();
                route.election.heal();
            }
        }
    }

    /// Server `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].log()
    }

    /// SIGKILLs server `i` (and reaps it); its data and links stay for [`QuorumEnsemble::restart`].
    pub fn kill(&mut self, i: usize) {
        kill_member(&mut self.nodes, i);
    }

    /// Starts server `i` again with the same data, ports and links; waits (up to 30 s) until it serves as leader
    /// or follower.
    pub fn restart(&mut self, i: usize) {
        restart_member(&mut self.nodes, i);
    }

    /// Sends `signal` to server `i` (SIGSTOP and SIGCONT freeze and thaw it).
    pub fn signal(&self, i: usize, signal: nix::sys::signal::Signal) {
        let process = self.nodes[i]
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("zk{} is not running", i + 1));
        process.signal(signal);
    }
}

/// Waits until the server's election listener has bound its port, as its log says. A server serves even when
/// that bind fails (another process took the port after [`free_ports`] chose it): it retries, then exits a few
/// seconds later, which would take the quorum down in the middle of a test. Without a log (no SLF4J binding)
/// there is nothing to check.
fn wait_election_listener(node: &ZkNode, deadline: Instant) -> Result<(), StartError> {
    loop {
        let log = node.log();
        if log.contains("Address already in use") {
            return Err(StartError::AddrInUse);
        }
        if log.contains("is accepting connections now") || !log.contains("org.apache.zookeeper") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartError::Failed(format!(
                "the election listener of {} did not start",
                node.name
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for QuorumEnsemble {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "the test failed; the ensemble's logs:\n{}",
                logs(&self.nodes, "")
            );
        }
        for node in &mut self.nodes {
            node.kill();
        }
    }
}
