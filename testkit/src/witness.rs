//! The witness: the worker command that tests hand to the daemon. Each running worker holds a TCP connection
//! to the witness for exactly as long as it lives (the kernel closes it however the process dies), so the
//! witness sees which node runs a worker, with which fencing token, and when it started and stopped.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::rig::lock;
use crate::wait::poll_until;

/// One worker process as the witness saw it: from its connection to the close of that connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Order of arrival at the witness, from 0.
    pub id: usize,
    /// `$ZK_SUPERVISE_WORKER`.
    pub worker: String,
    /// `$ZK_SUPERVISE_NODE`.
    pub node: String,
    /// `$ZK_SUPERVISE_FENCING_TOKEN`, as given; see [`Conn::token`].
    pub token: String,
    /// `$ZK_SUPERVISE_ZNODE`.
    pub znode: String,
    /// The worker's pid (the shell's `$$`).
    pub pid: u32,
    /// When the witness accepted the connection.
    pub opened: Instant,
    /// When the witness read end-of-file or an error: no process holds the connection any more.
    pub closed: Option<Instant>,
}

impl Conn {
    /// The fencing token as a number; panics if the worker was not given one.
    pub fn token(&self) -> u64 {
        self.token.parse().unwrap_or_else(|_| {
            panic!(
                "worker {} on {} got ZK_SUPERVISE_FENCING_TOKEN={:?}, not a number",
                self.worker, self.node, self.token
            )
        })
    }

    pub fn is_live(&self) -> bool {
        self.closed.is_none()
    }
}

/// How long after `prev` closed `next` opened; panics if they overlapped.
pub fn gap(prev: &Conn, next: &Conn) -> Duration {
    let closed = prev.closed.unwrap_or_else(|| {
        panic!(
            "#{} ({} on {}) is still live",
            prev.id, prev.worker, prev.node
        )
    });
    next.opened
        .checked_duration_since(closed)
        .unwrap_or_else(|| {
            panic!(
                "#{} ({} on {}) opened {:?} before #{} ({} on {}) closed",
                next.id,
                next.worker,
                next.node,
                closed - next.opened,
                prev.id,
                prev.worker,
                prev.node
            )
        })
}

struct WitnessShared {
    conns: Mutex<Vec<Conn>>,
    /// Every accepted stream, to close them all when the witness goes away.
    streams: Mutex<Vec<TcpStream>>,
    closing: AtomicBool,
}

/// A TCP listener that the worker commands of a test connect to. See the module docs.
pub struct Witness {
    addr: SocketAddr,
    started: Instant,
    shared: Arc<WitnessShared>,
}

impl Witness {
    pub fn new() -> Witness {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the witness");
        let addr = listener.local_addr().expect("witness address");
        let shared = Arc::new(WitnessShared {
            conns: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        thread::Builder::new()
            .name("witness".into())
            .spawn(move || Witness::accept(&listener, &accepting))
            .expect("spawn the witness thread");
        Witness {
            addr,
            started: Instant::now(),
            shared,
        }
    }

    fn accept(listener: &TcpListener, shared: &Arc<WitnessShared>) {
        let next_id = AtomicUsize::new(0);
        for stream in listener.incoming() {
            let opened = Instant::now();
            if shared.closing.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            if let Ok(clone) = stream.try_clone() {
                lock(&shared.streams).push(clone);
            }
            let id = next_id.fetch_add(1, Ordering::SeqCst);
            let shared = shared.clone();
            thread::spawn(move || Witness::follow(id, opened, stream, &shared));
        }
    }

    /// Reads the worker's line, then waits for the connection to close.
    fn follow(id: usize, opened: Instant, stream: TcpStream, shared: &WitnessShared) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || !line.ends_with('\n') {
            return; // not a worker
        }
        lock(&shared.conns).push(Conn::reported(id, line.trim_end_matches('\n'), opened));
        let mut buf = [0u8; 256];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
        let closed = Instant::now();
        if let Some(conn) = lock(&shared.conns).iter_mut().find(|c| c.id == id) {
            conn.closed = Some(closed);
        }
    }

    /// The worker argv: connects to the witness, reports who it is, and holds the connection until it dies or
    /// the witness goes away.
    pub fn command(&self) -> Vec<String> {
        self.command_with("")
    }

    /// Like [`Witness::command`], with `shell` run (by bash) after reporting and before waiting. Examples:
    /// `trap '' TERM` (the worker ignores SIGTERM), `exit 3` (it fails right after starting),
    /// `sleep infinity &` (a grandchild that also holds the connection, so the connection closes only when the
    /// whole process group is gone; prefer `read -r _ <&3 &`, which also exits when the witness goes away).
    pub fn command_with(&self, shell: &str) -> Vec<String> {
        worker_command(self.addr.port(), shell)
    }

    /// The witness's port on 127.0.0.1, for worker commands of one's own (see bench/witness_client.c).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every connection so far, in order of arrival.
    pub fn all(&self) -> Vec<Conn> {
        let mut conns = lock(&self.shared.conns).clone();
        conns.sort_by_key(|c| c.opened);
        conns
    }

    /// Every connection of `worker` so far, in order of arrival.
    pub fn history(&self, worker: &str) -> Vec<Conn> {
        self.all()
            .into_iter()
            .filter(|c| c.worker == worker)
            .collect()
    }

    /// `conn` as the witness knows it now: with the time it closed, once it has.
    pub fn again(&self, conn: &Conn) -> Conn {
        lock(&self.shared.conns)
            .iter()
            .find(|c| c.id == conn.id)
            .cloned()
            .unwrap_or_else(|| panic!("connection #{} is not the witness's", conn.id))
    }

    /// The connections of `worker` that are open now.
    pub fn live(&self, worker: &str) -> Vec<Conn> {
        self.history(worker)
            .into_iter()
            .filter(Conn::is_live)
            .collect()
    }

    /// Waits until `worker` runs (on `node`, if given) and returns that connection.
    pub fn wait_live(&self, worker: &str, node: Option<&str>, timeout: Duration) -> Conn {
        let mut found = None;
        let ok = poll_until(timeout, &mut || {
            found = self
                .live(worker)
                .into_iter()
                .find(|c| node.is_none_or(|node| c.node == node));
            found.is_some()
        });
        assert!(
            ok,
            "timed out after {timeout:?} waiting for worker {worker} to run{}\n{}",
            node.map(|n| format!(" on {n}")).unwrap_or_default(),
            self.timeline(worker)
        );
        found.expect("found")
    }

    /// Waits until no process of `worker` holds a connection.
    pub fn wait_none_live(&self, worker: &str, timeout: Duration) {
        let ok = poll_until(timeout, &mut || self.live(worker).is_empty());
        assert!(
            ok,
            "timed out after {timeout:?} waiting for worker {worker} to stop\n{}",
            self.timeline(worker)
        );
    }

    /// Waits until `worker` has connected at least `n` times; returns its history.
    pub fn wait_count(&self, worker: &str, n: usize, timeout: Duration) -> Vec<Conn> {
        let ok = poll_until(timeout, &mut || self.history(worker).len() >= n);
        assert!(
            ok,
            "timed out after {timeout:?} waiting for worker {worker} to have started {n} times\n{}",
            self.timeline(worker)
        );
        self.history(worker)
    }

    /// Panics (printing the timeline) if two processes of `worker` were ever alive at the same time.
    pub fn assert_no_overlap(&self, worker: &str) {
        let history = self.history(worker);
        // The latest close among the earlier connections; None while one of them is still live.
        let mut latest_close = Some(self.started);
        let mut latest_id = None;
        for conn in &history {
            match latest_close {
                Some(closed) if closed <= conn.opened => {}
                _ => panic!(
                    "worker {worker} ran twice at once: #{} opened while #{} was alive\n{}",
                    conn.id,
                    latest_id.unwrap_or_default(),
                    self.timeline(worker)
                ),
            }
            if conn
                .closed
                .is_none_or(|c| latest_close.is_some_and(|l| c > l))
            {
                latest_close = conn.closed;
                latest_id = Some(conn.id);
            }
        }
    }

    /// `worker`'s connections, one a line, with times relative to the witness's start.
    pub fn timeline(&self, worker: &str) -> String {
        let at = |t: Instant| format!("+{:.3}s", t.duration_since(self.started).as_secs_f64());
        let mut out = format!("timeline of worker {worker}:\n");
        for c in self.history(worker) {
            let _ = writeln!(
                out,
                "  #{} node={} token={} pid={} znode={} open {} close {}",
                c.id,
                c.node,
                c.token,
                c.pid,
                c.znode,
                at(c.opened),
                c.closed.map_or_else(|| "(live)".to_owned(), at)
            );
        }
        out
    }
}

impl Default for Witness {
    fn default() -> Witness {
        Witness::new()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        // Workers still running read end-of-file and exit.
        for stream in lock(&self.shared.streams).iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so it sees `closing` and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Samples for `how_long` that `worker` has exactly one live process, always the same one (and on `node`, if
/// given).
pub fn assert_stable(witness: &Witness, worker: &str, node: Option<&str>, how_long: Duration) {
    let first = witness.live(worker);
    assert_eq!(first.len(), 1, "{}", witness.timeline(worker));
    let until = Instant::now() + how_long;
    loop {
        let live = witness.live(worker);
        assert!(
            live.len() == 1 && live[0].id == first[0].id && node.is_none_or(|n| live[0].node == n),
            "worker {worker} did not stay put{}\n{}",
            node.map(|n| format!(" on {n}")).unwrap_or_default(),
            witness.timeline(worker)
        );
        if Instant::now() >= until {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

impl Conn {
    /// Connection `id`, opened at `opened`, whose worker reported `line` (`worker node token pid znode`, as
    /// [`worker_command`] writes it).
    pub(crate) fn reported(id: usize, line: &str, opened: Instant) -> Conn {
        let mut fields = line.splitn(5, ' ');
        let mut field = || fields.next().unwrap_or_default().to_owned();
        let (worker, node, token, pid, znode) = (field(), field(), field(), field(), field());
        Conn {
            id,
            worker,
            node,
            token,
            znode,
            pid: pid.parse().unwrap_or(0),
            opened,
            closed: None,
        }
    }
}

/// The worker argv of a witness or a recorder listening on 127.0.0.1:`port`: connects, reports who it is
/// (the line [`Conn::reported`] reads), runs `shell` (by bash), and holds the connection until it dies or
/// the listener goes away.
pub(crate) fn worker_command(port: u16, shell: &str) -> Vec<String> {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} || exit 111\n\
         printf '%s %s %s %s %s\\n' \"$ZK_SUPERVISE_WORKER\" \"$ZK_SUPERVISE_NODE\" \
         \"$ZK_SUPERVISE_FENCING_TOKEN\" \"$$\" \"$ZK_SUPERVISE_ZNODE\" >&3\n\
         {shell}\n\
         read -r _ <&3\n"
    );
    vec!["/bin/bash".into(), "-c".into(), script]
}
