//! A TCP forwarder in front of one ZooKeeper server that misbehaves on demand: it partitions, cuts one
//! direction, slows every chunk down, or loses one request or one reply of the election.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::rig::lock;
use crate::wait::wait_until;

/// One direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: the connect request, requests, pings. Cut, the server hears nothing from the client.
    ToServer,
    /// Server to client: replies and watch events. Cut, the server still hears the client (and keeps its
    /// session alive) while the client hears nothing back.
    ToClient,
}

/// A chunk on its way: no earlier than this, these bytes.
type Chunk = (Instant, Vec<u8>);

struct ProxyConn {
    client: TcpStream,
    upstream: Option<TcpStream>,
    /// Lived through a cut (bytes were, or may have been, dropped): its streams are garbage, heal closes it.
    tainted: AtomicBool,
    /// Replies from the server are no longer forwarded (a request's reply is being lost).
    mute: AtomicBool,
    done: AtomicBool,
}

impl ProxyConn {
    fn close(&self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(upstream) = &self.upstream {
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

struct ProxyShared {
    upstream: SocketAddr,
    /// Guards changes of the cuts together with the connection list.
    conns: Mutex<Vec<Arc<ProxyConn>>>,
    /// Bytes from the client to the server are discarded.
    cut_to_server: AtomicBool,
    /// Bytes from the server to the client are discarded.
    cut_to_client: AtomicBool,
    /// Each chunk is held a random time in `[delay_min_ms, delay_max_ms]` before it is forwarded (in order);
    /// both 0: forwarded at once.
    delay_min_ms: AtomicU64,
    delay_max_ms: AtomicU64,
    /// Armed by [`Proxy::lose_next_candidate_create_reply`].
    cut_on_create: AtomicBool,
    /// Armed by [`Proxy::lose_next_candidate_delete`].
    lose_delete: AtomicBool,
    /// How many deletes were lost.
    lost_deletes: AtomicUsize,
    closing: AtomicBool,
}

impl ProxyShared {
    fn is_cut(&self, direction: Direction) -> bool {
        match direction {
            Direction::ToServer => self.cut_to_server.load(Ordering::SeqCst),
            Direction::ToClient => self.cut_to_client.load(Ordering::SeqCst),
        }
    }

    fn any_cut(&self) -> bool {
        self.is_cut(Direction::ToServer) || self.is_cut(Direction::ToClient)
    }

    /// How long to hold the chunk read now.
    fn hold(&self) -> Duration {
        let min = self.delay_min_ms.load(Ordering::SeqCst);
        let max = self.delay_max_ms.load(Ordering::SeqCst).max(min);
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(fastrand::u64(min..=max))
    }

    /// When a chunk read now in a direction whose last chunk was due at `last` is due: after its hold, and
    /// never before the chunk ahead of it.
    fn due(&self, last: &mut Instant) -> Instant {
        let due = (Instant::now() + self.hold()).max(*last);
        *last = due;
        due
    }
}

/// A TCP forwarder from 127.0.0.1:<port> to one ZooKeeper server. It can black-hole all traffic
/// ([`Proxy::partition`]), one direction only ([`Proxy::cut`]), or hold every chunk for a while before
/// forwarding it ([`Proxy::slow`]); [`Proxy::heal`] ends all of these. It can also lose one request or one
/// reply of an election: [`Proxy::lose_next_candidate_create_reply`], [`Proxy::lose_next_candidate_delete`].
///
/// Each direction of each connection has a reader thread and a writer thread: the reader decides what is dropped
/// and when each chunk is due, the writer forwards chunks in order once due (at once unless the link is slow).
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
}

impl Proxy {
    /// A proxy to `upstream` ("127.0.0.1:<port>").
    pub fn new(upstream: &str) -> Proxy {
        let upstream: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|e| panic!("proxy upstream {upstream:?}: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(ProxyShared {
            upstream,
            conns: Mutex::new(Vec::new()),
            cut_to_server: AtomicBool::new(false),
            cut_to_client: AtomicBool::new(false),
            delay_min_ms: AtomicU64::new(0),
            delay_max_ms: AtomicU64::new(0),
            cut_on_create: AtomicBool::new(false),
            lose_delete: AtomicBool::new(false),
            lost_deletes: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        thread::Builder::new()
            .name("proxy".into())
            .spawn(move || Proxy::accept(&listener, &accepting))
            .expect("spawn the proxy thread");
        Proxy { addr, shared }
    }

    fn accept(listener: &TcpListener, shared: &Arc<ProxyShared>) {
        for client in listener.incoming() {
            if shared.closing.load(Ordering::SeqCst) {
                return;
            }
            let Ok(client) = client else { continue };
            // Connect upstream unless requests are cut; then the client talks into the void. With only replies
            // cut, the server gets the connection and its requests, the client none of the answers.
            let upstream = if shared.is_cut(Direction::ToServer) {
                None
            } else {
                match TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(2)) {
                    Ok(upstream) => Some(upstream),
                    Err(_) => continue, // drops the client: like a refused connection
                }
            };
            let _ = client.set_nodelay(true);
            if let Some(upstream) = &upstream {
                let _ = upstream.set_nodelay(true);
            }
            let mut conns = lock(&shared.conns);
            conns.retain(|c| !c.done.load(Ordering::SeqCst));
            let conn = Arc::new(ProxyConn {
                client,
                upstream,
                tainted: AtomicBool::new(shared.any_cut()),
                mute: AtomicBool::new(false),
                done: AtomicBool::new(false),
            });
            conns.push(conn.clone());
            drop(conns);
            if Proxy::pumps(&conn, shared).is_err() {
                conn.close();
            }
        }
    }

    /// Starts the threads that move one connection's bytes.
    fn pumps(conn: &Arc<ProxyConn>, shared: &Arc<ProxyShared>) -> io::Result<()> {
        let from_client = conn.client.try_clone()?;
        match &conn.upstream {
            Some(upstream) => {
                let (to_upstream, from_upstream) = (upstream.try_clone()?, upstream.try_clone()?);
                let to_client = conn.client.try_clone()?;
                let requests = Proxy::writer(Some(to_upstream), Direction::ToServer, conn, shared);
                Proxy::pump_requests(from_client, requests, conn.clone(), shared.clone());
                let replies = Proxy::writer(Some(to_client), Direction::ToClient, conn, shared);
                Proxy::pump_replies(from_upstream, replies, conn.clone(), shared.clone());
            }
            None => {
                let void = Proxy::writer(None, Direction::ToServer, conn, shared);
                Proxy::pump_requests(from_client, void, conn.clone(), shared.clone());
            }
        }
        Ok(())
    }

    /// The writing half of one direction: forwards chunks in order, each once due. A chunk due while its
    /// direction is cut is discarded; a connection that lived through a cut is closed at its first chunk after
    /// the heal (heal closes it anyway); a connection whose reader ended is closed once its chunks are out.
    fn writer(
        mut to: Option<TcpStream>,
        direction: Direction,
        conn: &Arc<ProxyConn>,
        shared: &Arc<ProxyShared>,
    ) -> mpsc::Sender<Chunk> {
        let (sender, chunks) = mpsc::channel::<Chunk>();
        let (conn, shared) = (conn.clone(), shared.clone());
        thread::spawn(move || {
            for (due, chunk) in chunks {
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                if shared.is_cut(direction) {
                    conn.tainted.store(true, Ordering::SeqCst);
                    continue;
                }
                if conn.tainted.load(Ordering::SeqCst) && !shared.any_cut() {
                    break;
                }
                let Some(to) = to.as_mut() else {
                    // Accepted during a cut of requests, and the cut is over: like a refused connection.
                    break;
                };
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            conn.close();
        });
        sender
    }

    /// Server to client: hands every chunk to `to` with its due time, unless replies are cut or muted.
    fn pump_replies(
        mut from: TcpStream,
        to: mpsc::Sender<Chunk>,
        conn: Arc<ProxyConn>,
        shared: Arc<ProxyShared>,
    ) {
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut last = Instant::now();
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if shared.is_cut(Direction::ToClient) {
                    conn.tainted.store(true, Ordering::SeqCst);
                    continue;
                }
                if conn.mute.load(Ordering::SeqCst) {
                    continue;
                }
                if to.send((shared.due(&mut last), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
            // Dropping `to` lets the writer deliver what it holds, then close.
        });
    }

    /// Client to server: like [`Proxy::pump_replies`], but whole ZooKeeper frames at a time (each is
    /// length-prefixed), so that a create of a candidate (`/_c_` in its path) can be let through while its reply
    /// is lost.
    fn pump_requests(
        mut from: TcpStream,
        to: mpsc::Sender<Chunk>,
        conn: Arc<ProxyConn>,
        shared: Arc<ProxyShared>,
    ) {
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = Vec::new();
            let mut frames = 0usize;
            let mut last = Instant::now();
            'read: loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if shared.is_cut(Direction::ToServer) {
                    conn.tainted.store(true, Ordering::SeqCst);
                    pending.clear();
                    continue;
                }
                pending.extend_from_slice(&buf[..n]);
                while pending.len() >= 4 {
                    let len = i32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]);
                    let end = 4 + usize::try_from(len).unwrap_or(0);
                    if pending.len() < end {
                        break;
                    }
                    let frame: Vec<u8> = pending.drain(..end).collect();
                    frames += 1;
                    // Every frame after the connect request: xid, op code, then the body; a create's body starts
                    // with its path.
                    if frames > 1
                        && is_candidate_delete(&frame)
                        && shared.lose_delete.swap(false, Ordering::SeqCst)
                    {
                        // Never forwarded: requests are cut from now on (new connections talk into the void
                        // until heal), and this connection drops, so the client sees the delete fail.
                        let conns = lock(&shared.conns);
                        shared.cut_to_server.store(true, Ordering::SeqCst);
                        shared.lost_deletes.fetch_add(1, Ordering::SeqCst);
                        drop(conns);
                        conn.close();
                        break 'read;
                    }
                    let cut = frames > 1
                        && is_candidate_create(&frame)
                        && shared.cut_on_create.swap(false, Ordering::SeqCst);
                    if cut {
                        conn.mute.store(true, Ordering::SeqCst);
                    }
                    if to.send((shared.due(&mut last), frame)).is_err() {
                        break 'read;
                    }
                    if cut {
                        // Let the server apply it, then drop the connection before the reply goes back. (On a
                        // slow link the frame may not have been forwarded yet: do not combine the two.)
                        thread::sleep(Duration::from_millis(100));
                        conn.close();
                        break 'read;
                    }
                }
            }
        });
    }

    /// Lets the next create of a candidate znode (a path with `/_c_`) reach the server, and cuts the connection
    /// before its reply reaches the client: a create whose reply is lost.
    pub fn lose_next_candidate_create_reply(&self) {
        self.shared.cut_on_create.store(true, Ordering::SeqCst);
    }

    /// Loses the next delete of a candidate znode (a path with `/_c_`) on its way to the server: the request
    /// never arrives, the connection it came on drops (so the client sees the delete fail), and the connections
    /// that follow talk into the void until [`Proxy::heal`] (so the client cannot simply try again), while the
    /// session lives on the server.
    pub fn lose_next_candidate_delete(&self) {
        self.shared.lose_delete.store(true, Ordering::SeqCst);
    }

    /// Waits until a delete armed by [`Proxy::lose_next_candidate_delete`] has been lost.
    pub fn wait_lost_delete(&self, timeout: Duration) {
        wait_until(timeout, "a delete of a candidate to be lost", || {
            self.shared.lost_deletes.load(Ordering::SeqCst) > 0
        });
    }

    /// "127.0.0.1:<port>".
    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    /// From now on every byte in both directions, on existing and new connections, is read and discarded;
    /// nothing is closed.
    pub fn partition(&self) {
        let conns = lock(&self.shared.conns);
        self.shared.cut_to_server.store(true, Ordering::SeqCst);
        self.shared.cut_to_client.store(true, Ordering::SeqCst);
        for conn in conns.iter() {
            conn.tainted.store(true, Ordering::SeqCst);
        }
    }

    /// From now on every byte in `direction`, on existing and new connections, is read and discarded; the other
    /// direction still flows. Nothing is closed. [`Proxy::heal`] ends it.
    pub fn cut(&self, direction: Direction) {
        let _conns = lock(&self.shared.conns);
        match direction {
            Direction::ToServer => self.shared.cut_to_server.store(true, Ordering::SeqCst),
            Direction::ToClient => self.shared.cut_to_client.store(true, Ordering::SeqCst),
        }
    }

    /// From now on every chunk, in both directions, is held a random time between `min` and `max` before it is
    /// forwarded; order is kept. [`Proxy::heal`] ends it (chunks held by then are still delivered, in order).
    pub fn slow(&self, min: Duration, max: Duration) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_min_ms.store(ms(min), Ordering::SeqCst);
        self.shared
            .delay_max_ms
            .store(ms(max.max(min)), Ordering::SeqCst);
    }

    /// Ends partitions, cuts and slowness: connections that lived through a cut are closed, new ones are
    /// forwarded at once.
    pub fn heal(&self) {
        let mut conns = lock(&self.shared.conns);
        for conn in conns.iter().filter(|c| c.tainted.load(Ordering::SeqCst)) {
            conn.close();
        }
        conns.retain(|c| !c.done.load(Ordering::SeqCst));
        self.shared.cut_to_server.store(false, Ordering::SeqCst);
        self.shared.cut_to_client.store(false, Ordering::SeqCst);
        self.shared.delay_min_ms.store(0, Ordering::SeqCst);
        self.shared.delay_max_ms.store(0, Ordering::SeqCst);
    }

    /// Whether both directions are cut (a [`Proxy::partition`]).
    pub fn is_partitioned(&self) -> bool {
        self.shared.is_cut(Direction::ToServer) && self.shared.is_cut(Direction::ToClient)
    }

    /// Whether `direction` is cut.
    pub fn is_cut(&self, direction: Direction) -> bool {
        self.shared.is_cut(direction)
    }

    /// How many connections it forwards now (closed ones excluded).
    pub fn connections(&self) -> usize {
        lock(&self.shared.conns)
            .iter()
            .filter(|c| !c.done.load(Ordering::SeqCst))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        for conn in lock(&self.shared.conns).iter() {
            conn.close();
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Whether a ZooKeeper request frame (length prefix included) creates a candidate: op code create (1) or
/// create2 (15), and a path containing `/_c_`.
fn is_candidate_create(frame: &[u8]) -> bool {
    candidate_op(frame).is_some_and(|op| matches!(op, 1 | 15))
}

/// Whether a ZooKeeper request frame (length prefix included) deletes a candidate: op code delete (2) and a
/// path containing `/_c_`.
fn is_candidate_delete(frame: &[u8]) -> bool {
    candidate_op(frame) == Some(2)
}

/// The op code of a ZooKeeper request frame (length prefix, xid, op, then the path) whose path names a
/// candidate (contains `/_c_`); `None` for any other frame.
fn candidate_op(frame: &[u8]) -> Option<i32> {
    let int = |at: usize| {
        frame
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (op, path_len) = (int(8)?, int(12)?);
    let path_len = usize::try_from(path_len).unwrap_or(0);
    frame
        .get(16..16 + path_len)
        .is_some_and(|path| path.windows(4).any(|w| w == b"/_c_"))
        .then_some(op)
}
