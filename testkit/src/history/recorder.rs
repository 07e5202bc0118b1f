//! The recorder: the observer outside every process, and its clock.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::rig::lock;
use crate::witness::Conn;

struct RecorderShared {
    conns: Mutex<Vec<Conn>>,
    /// Connections that ended before saying which worker they were.
    unidentified: AtomicUsize,
    stop: AtomicBool,
}

/// The worker command's TCP peer; see the module docs. Dropping it closes every connection (the workers still
/// running read end-of-file and exit).
pub struct Recorder {
    addr: SocketAddr,
    started: Instant,
    /// The wall clock at `started`, to find a moment in the supervisors' logs.
    started_wall: SystemTime,
    shared: Arc<RecorderShared>,
    thread: Option<thread::JoinHandle<()>>,
}

/// A connection the recorder follows.
struct Open {
    stream: TcpStream,
    opened: Instant,
    /// The worker's line so far, until it is complete.
    line: Vec<u8>,
    /// Its index in the recorded connections, once its line came.
    index: Option<usize>,
}

impl Recorder {
    pub fn new() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recorder");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("recorder address");
        let shared = Arc::new(RecorderShared {
            conns: Mutex::new(Vec::new()),
            unidentified: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let polling = shared.clone();
        let thread = thread::Builder::new()
            .name("recorder".into())
            .spawn(move || Recorder::follow(&listener, &polling))
            .expect("spawn the recorder thread");
        Recorder {
            addr,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            shared,
            thread: Some(thread),
        }
    }

    /// The poll loop: the listener first, then every open connection; one timestamp per wakeup.
    fn follow(listener: &TcpListener, shared: &RecorderShared) {
        let mut open: Vec<Open> = Vec::new();
        let mut buf = [0u8; 512];
        while !shared.stop.load(Ordering::SeqCst) {
            let ready: Vec<bool> = {
                let mut fds = Vec::with_capacity(1 + open.len());
                fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
                fds.extend(
                    open.iter()
                        .map(|o| PollFd::new(o.stream.as_fd(), PollFlags::POLLIN)),
                );
                match poll(&mut fds, PollTimeout::from(100u16)) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => panic!("the recorder's poll: {e}"),
                }
                fds.iter()
                    .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            let now = Instant::now();
            let followed = open.len();
            if ready[0] {
                while let Ok((stream, _)) = listener.accept() {
                    if stream.set_nonblocking(true).is_ok() {
                        open.push(Open {
                            stream,
                            opened: now,
                            line: Vec::new(),
                            index: None,
                        });
                    }
                }
            }
            let mut ended = Vec::new();
            for (i, conn) in open.iter_mut().enumerate().take(followed) {
                if !ready[1 + i] {
                    continue;
                }
                let eof = loop {
                    match conn.stream.read(&mut buf) {
                        Ok(0) => break true,
                        Ok(n) => {
                            if conn.index.is_none() {
                                conn.line.extend_from_slice(&buf[..n]);
                                Recorder::identify(conn, shared);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break true,
                    }
                };
                if eof {
                    match conn.index {
                        Some(index) => lock(&shared.conns)[index].closed = Some(now),
                        None => {
                            shared.unidentified.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    ended.push(i);
                }
            }
            for i in ended.into_iter().rev() {
                open.swap_remove(i);
            }
        }
    }

    /// Records the connection once its line (`worker node token pid znode`) is complete.
    fn identify(conn: &mut Open, shared: &RecorderShared) {
        let Some(end) = conn.line.iter().position(|&b| b == b'\n') else {
            return;
        };
        let line = String::from_utf8_lossy(&conn.line[..end]);
        let mut conns = lock(&shared.conns);
        let index = conns.len();
        conns.push(Conn::reported(index, &line, conn.opened));
        conn.index = Some(index);
    }

    /// The worker argv: as [`super::Witness::command`], reporting to this recorder.
    pub fn command(&self) -> Vec<String> {
        self.command_with("")
    }

    /// As [`super::Witness::command_with`]: `shell` runs after reporting and before waiting.
    pub fn command_with(&self, shell: &str) -> Vec<String> {
        crate::witness::worker_command(self.addr.port(), shell)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// When the recorder started: time 0 of the run's printouts.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Every identified connection so far, by time of opening (then order of arrival).
    pub fn all(&self) -> Vec<Conn> {
        let mut conns = lock(&self.shared.conns).clone();
        conns.sort_by_key(|c| (c.opened, c.id));
        conns
    }

    /// The connections open now.
    pub fn live(&self) -> Vec<Conn> {
        self.all().into_iter().filter(Conn::is_live).collect()
    }

    /// How many processes of each worker are alive now (workers with none are left out).
    pub fn live_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for conn in self.live() {
            *counts.entry(conn.worker).or_insert(0) += 1;
        }
        counts
    }

    /// Connections that ended before reporting who they were.
    pub fn unidentified(&self) -> usize {
        self.shared.unidentified.load(Ordering::Relaxed)
    }

    /// A clock that prints instants relative to the recorder's start and finds them in the logs.
    pub fn clock(&self) -> Clock {
        Clock {
            started: self.started,
            started_wall: self.started_wall,
        }
    }
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join(); // closes every connection it followed
        }
    }
}

/// Time 0 of a run, on the monotonic clock and on the wall clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub started: Instant,
    pub started_wall: SystemTime,
}

impl Clock {
    /// Seconds since time 0: "+12.345s" (negative before it).
    pub fn at(&self, t: Instant) -> String {
        match t.checked_duration_since(self.started) {
            Some(d) => format!("+{:.3}s", d.as_secs_f64()),
            None => format!("-{:.3}s", (self.started - t).as_secs_f64()),
        }
    }

    /// The wall-clock time of `t`, as the supervisors' text logs print it (RFC 3339, UTC, microseconds).
    pub fn wall(&self, t: Instant) -> String {
        let wall = match t.checked_duration_since(self.started) {
            Some(d) => self.started_wall + d,
            None => self.started_wall - (self.started - t),
        };
        rfc3339(wall)
    }
}

/// `2026-11-29T10:24:48.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        d.subsec_micros()
    )
}

/// The lines of a supervisor's text log stamped within `[from, to]` (RFC 3339 strings as [`Clock::wall`] makes
/// them) that concern `worker` or no worker at all (the session, the lease); `None` keeps every worker's.
pub fn log_window(log: &str, from: &str, to: &str, worker: Option<&str>) -> Vec<String> {
    let field = worker.map(|w| format!("worker={w}"));
    log.lines()
        .filter(|line| {
            let stamp = line.get(..27).unwrap_or("");
            stamp >= from && stamp <= to
        })
        .filter(|line| {
            field
                .as_ref()
                .is_none_or(|f| line.contains(f.as_str()) || !line.contains("worker="))
        })
        .map(str::to_owned)
        .collect()
}
