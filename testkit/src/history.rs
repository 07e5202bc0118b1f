//! The history of a fault run ([`crate::nemesis`]) and the checker over all of it.
//!
//! - [`Recorder`]: the observer outside every process. Like [`super::Witness`], each worker process holds a TCP
//!   connection to it for exactly as long as it lives, and reports its worker, node, fencing token, pid and
//!   candidate. Unlike the witness (a thread per connection, each taking its own timestamps, so a thread that
//!   is scheduled late records a close late), one thread polls every connection, with the listener first: a
//!   connection accepted in one wakeup while another's end-of-file only shows in a later one really overlapped
//!   it, because `poll` looked at the listener before it looked at the other connection. Opens and closes seen
//!   in the same wakeup get the same time and do not count as an overlap. The checker can therefore never blame
//!   the daemon for the observer's own scheduling delays.
//! - [`Fault`]: one injected fault, when it began and when it was healed.
//! - [`check`]: every rule over the whole history, and the figures of the run ([`Checked`]).
//!
//! The rules:
//!
//! 1. **No overlap, ever**: no two processes of one worker alive at the same time.
//! 2. **Fencing tokens**: a new leadership (a connection with another candidate znode than the worker's previous
//!    one) carries a token greater than every token before it; a restart within one leadership (same znode)
//!    carries the same token; a leadership never comes back after a newer one (SPEC §5, src/election.rs: the
//!    token is the candidate's `czxid`).
//! 3. **Liveness once healed**: in every quiet window (no fault active) that lasts longer than `settle`
//!    (S + 2 s), from `settle` after its start to its end, every configured worker runs exactly once, always the
//!    same process, and every worker no longer configured runs nowhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::rig::lock;
use crate::witness::Conn;

// ---------------------------------------------------------------------------------------------------------------
// The recorder

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
        let line = String::from_utf8_lossy(&conn.line[..end]).into_owned();
        let mut fields = line.splitn(5, ' ');
        let mut field = || fields.next().unwrap_or_default().to_owned();
        let (worker, node, token, pid, znode) = (field(), field(), field(), field(), field());
        let mut conns = lock(&shared.conns);
        let index = conns.len();
        conns.push(Conn {
            id: index,
            worker,
            node,
            token,
            znode,
            pid: pid.parse().unwrap_or(0),
            opened: conn.opened,
            closed: None,
        });
        conn.index = Some(index);
    }

    /// The worker argv: as [`super::Witness::command`], reporting to this recorder.
    pub fn command(&self) -> Vec<String> {
        self.command_with("")
    }

    /// As [`super::Witness::command_with`]: `shell` runs after reporting and before waiting.
    pub fn command_with(&self, shell: &str) -> Vec<String> {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} || exit 111\n\
             printf '%s %s %s %s %s\\n' \"$ZK_SUPERVISE_WORKER\" \"$ZK_SUPERVISE_NODE\" \
             \"$ZK_SUPERVISE_FENCING_TOKEN\" \"$$\" \"$ZK_SUPERVISE_ZNODE\" >&3\n\
             {shell}\n\
             read -r _ <&3\n",
            port = self.addr.port()
        );
        vec!["/bin/bash".into(), "-c".into(), script]
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

// ---------------------------------------------------------------------------------------------------------------
// Faults

/// One fault as it was injected.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Its index in the schedule.
    pub id: usize,
    /// The kind, e.g. "supervisor-sigkill".
    pub kind: &'static str,
    /// What it hit, e.g. "node b", "zk2", "w03 on a (pid 1234)".
    pub target: String,
    /// How it was planned, e.g. "hold 1.200s".
    pub detail: String,
    pub began: Instant,
    /// `None` while it lasts; a one-shot fault (a child killed) is healed when it began.
    pub healed: Option<Instant>,
}

/// A worker set every node is configured with, from `from` on.
#[derive(Clone, Debug)]
pub struct Configured {
    pub from: Instant,
    pub workers: BTreeSet<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// The checker

/// One broken rule.
#[derive(Clone, Debug)]
pub struct Violation {
    /// "overlap", "token", "liveness", "stability", "anomaly".
    pub rule: &'static str,
    /// When it was seen.
    pub at: Instant,
    /// Where the story leading to it begins (a few seconds before `at`; a liveness violation's quiet window):
    /// the history and the logs are printed from there.
    pub since: Instant,
    /// The worker concerned, if one is.
    pub worker: Option<String>,
    /// The nodes concerned.
    pub nodes: Vec<String>,
    pub what: String,
}

/// What the checker needs.
pub struct Input<'a> {
    pub conns: &'a [Conn],
    pub faults: &'a [Fault],
    pub configured: &'a [Configured],
    /// Time 0: every configured worker ran once.
    pub started: Instant,
    /// The end of the run; nothing after it counts.
    pub ended: Instant,
    /// How long after every fault is healed each configured worker must run exactly once: S + 2 s.
    pub settle: Duration,
    /// Problems the run itself found (a shutdown that hung...).
    pub anomalies: &'a [Violation],
}

/// A window with no fault active, `[from, to)`.
#[derive(Clone, Debug)]
pub struct Quiet {
    pub from: Instant,
    pub to: Instant,
    /// The fault whose heal opened it (the last one healed), if any.
    pub opened_by: Option<usize>,
}

/// The verdict and the figures of a run.
#[derive(Debug, Default)]
pub struct Checked {
    pub violations: Vec<Violation>,
    pub quiet: Vec<Quiet>,
    /// Quiet windows long enough to check liveness in.
    pub windows_checked: usize,
    /// Overlapping pairs, and the time they overlapped in all.
    pub overlaps: usize,
    pub overlap_total: Duration,
    /// The longest time a configured worker had no copy within a quiet window, counted from the window's
    /// start: (how long, worker, window start).
    pub worst_no_copy: Option<(Duration, String, Instant)>,
    /// Per fault kind: faults injected.
    pub injected: BTreeMap<&'static str, usize>,
    /// Per fault kind: the recoveries measured (from the heal that opened a quiet window to the moment from
    /// which every configured worker ran exactly once until the window closed) and those not seen before it
    /// closed.
    pub recoveries: BTreeMap<&'static str, Vec<Duration>>,
    pub unrecovered: BTreeMap<&'static str, usize>,
    /// Processes started (connections), per worker.
    pub starts: usize,
}

/// How far before a violation its story is printed from (unless it says otherwise).
pub const LEAD: Duration = Duration::from_secs(3);

fn token_of(conn: &Conn) -> Option<u64> {
    conn.token.parse().ok()
}

/// How many processes of the worker whose connections are `conns` live at `t`.
fn live_at(conns: &[&Conn], t: Instant) -> usize {
    conns
        .iter()
        .filter(|c| c.opened <= t && c.closed.is_none_or(|closed| closed > t))
        .count()
}

/// Checks every rule over the whole history; see the module docs.
pub fn check(input: &Input<'_>) -> Checked {
    let mut out = Checked {
        violations: input.anomalies.to_vec(),
        ..Checked::default()
    };
    let mut by_worker: BTreeMap<&str, Vec<&Conn>> = BTreeMap::new();
    for conn in input.conns {
        by_worker.entry(&conn.worker).or_default().push(conn);
    }
    for conns in by_worker.values_mut() {
        conns.sort_by_key(|c| (c.opened, c.id));
    }
    out.starts = input.conns.len();
    for fault in input.faults {
        *out.injected.entry(fault.kind).or_insert(0) += 1;
    }
    for (worker, conns) in &by_worker {
        check_overlaps(worker, conns, input.ended, &mut out);
        check_tokens(worker, conns, &mut out);
    }
    out.quiet = quiet_windows(input);
    let mut ever: BTreeSet<String> = by_worker.keys().map(|w| (*w).to_owned()).collect();
    for configured in input.configured {
        ever.extend(configured.workers.iter().cloned());
    }
    let none: Vec<&Conn> = Vec::new();
    for window in out.quiet.clone() {
        let configured = configured_at(input.configured, window.from);
        check_window(
            input,
            &window,
            &configured,
            &ever,
            &by_worker,
            &none,
            &mut out,
        );
        measure_window(input, &window, &configured, &by_worker, &none, &mut out);
    }
    out.violations.sort_by_key(|v| v.at);
    out
}

fn check_overlaps(worker: &str, conns: &[&Conn], ended: Instant, out: &mut Checked) {
    for (i, later) in conns.iter().enumerate() {
        for earlier in &conns[..i] {
            let alive = earlier.closed.is_none_or(|closed| closed > later.opened);
            if !alive {
                continue;
            }
            let until = [earlier.closed, later.closed]
                .into_iter()
                .map(|c| c.unwrap_or(ended))
                .min()
                .unwrap_or(ended);
            let overlap = until.saturating_duration_since(later.opened);
            out.overlaps += 1;
            out.overlap_total += overlap;
            out.violations.push(Violation {
                rule: "overlap",
                at: later.opened,
                since: earlier.opened.max(later.opened - LEAD).min(later.opened),
                worker: Some(worker.to_owned()),
                nodes: vec![earlier.node.clone(), later.node.clone()],
                what: format!(
                    "two copies of {worker} for {:.3}s: #{} (node {}, token {}, pid {}) was alive when #{} \
                     (node {}, token {}, pid {}) started",
                    overlap.as_secs_f64(),
                    earlier.id,
                    earlier.node,
                    earlier.token,
                    earlier.pid,
                    later.id,
                    later.node,
                    later.token,
                    later.pid
                ),
            });
        }
    }
}

fn check_tokens(worker: &str, conns: &[&Conn], out: &mut Checked) {
    let mut previous: Option<&Conn> = None;
    let mut highest: Option<(u64, usize)> = None;
    let mut leaderships: BTreeSet<&str> = BTreeSet::new();
    for conn in conns {
        let violation = |what: String| Violation {
            rule: "token",
            at: conn.opened,
            since: conn.opened - LEAD,
            worker: Some(worker.to_owned()),
            nodes: vec![conn.node.clone()],
            what,
        };
        let Some(token) = token_of(conn) else {
            out.violations.push(violation(format!(
                "#{} on {} got the fencing token {:?}, not a number",
                conn.id, conn.node, conn.token
            )));
            continue;
        };
        match previous {
            Some(prev) if prev.znode == conn.znode => {
                if token_of(prev) != Some(token) {
                    out.violations.push(violation(format!(
                        "#{} on {} restarted within the leadership of {} with token {token}, #{} had {}",
                        conn.id, conn.node, conn.znode, prev.id, prev.token
                    )));
                }
            }
            _ => {
                if leaderships.contains(conn.znode.as_str()) {
                    out.violations.push(violation(format!(
                        "#{} on {}: the leadership of {} came back after a newer one",
                        conn.id, conn.node, conn.znode
                    )));
                }
                if let Some((high, id)) = highest.filter(|&(high, _)| token <= high) {
                    out.violations.push(violation(format!(
                        "#{} on {} leads as {} with token {token}, not greater than token {high} of #{id}",
                        conn.id, conn.node, conn.znode
                    )));
                }
            }
        }
        if highest.is_none_or(|(high, _)| token > high) {
            highest = Some((token, conn.id));
        }
        leaderships.insert(&conn.znode);
        previous = Some(conn);
    }
}

/// The windows in which no fault is active, from time 0 to the end.
fn quiet_windows(input: &Input<'_>) -> Vec<Quiet> {
    let mut intervals: Vec<(Instant, Instant, usize)> = input
        .faults
        .iter()
        .map(|f| (f.began, f.healed.unwrap_or(input.ended), f.id))
        .collect();
    intervals.sort_by_key(|&(began, _, _)| began);
    let mut windows = Vec::new();
    let mut from = input.started;
    let mut opened_by = None;
    for (began, healed, id) in intervals {
        if began > from {
            windows.push(Quiet {
                from,
                to: began.min(input.ended),
                opened_by,
            });
        }
        if healed >= from {
            from = healed;
            opened_by = Some(id);
        }
    }
    if input.ended > from {
        windows.push(Quiet {
            from,
            to: input.ended,
            opened_by,
        });
    }
    windows
}

fn configured_at(configured: &[Configured], t: Instant) -> BTreeSet<String> {
    configured
        .iter()
        .filter(|c| c.from <= t)
        .max_by_key(|c| c.from)
        .map(|c| c.workers.clone())
        .unwrap_or_default()
}

/// Rule 3 in one quiet window.
fn check_window(
    input: &Input<'_>,
    window: &Quiet,
    configured: &BTreeSet<String>,
    ever: &BTreeSet<String>,
    by_worker: &BTreeMap<&str, Vec<&Conn>>,
    none: &Vec<&Conn>,
    out: &mut Checked,
) {
    let settled = window.from + input.settle;
    if settled >= window.to {
        return;
    }
    out.windows_checked += 1;
    for worker in ever {
        let conns = by_worker.get(worker.as_str()).unwrap_or(none);
        let want = usize::from(configured.contains(worker));
        let live = live_at(conns, settled);
        let nodes = |at: Instant| -> Vec<String> {
            conns
                .iter()
                .filter(|c| c.opened <= at && c.closed.is_none_or(|closed| closed > at))
                .map(|c| c.node.clone())
                .collect()
        };
        if live != want {
            out.violations.push(Violation {
                rule: "liveness",
                at: settled,
                since: window.from,
                worker: Some(worker.clone()),
                nodes: nodes(settled),
                what: format!(
                    "{worker} {} ran {live} times {:.3}s after every fault was healed, not {want}",
                    if want == 1 {
                        "(configured)"
                    } else {
                        "(configured nowhere)"
                    },
                    input.settle.as_secs_f64()
                ),
            });
            continue;
        }
        let change = conns.iter().find_map(|c| {
            if c.opened > settled && c.opened < window.to {
                Some((c.opened, format!("#{} started on {}", c.id, c.node)))
            } else {
                c.closed
                    .filter(|&closed| closed > settled && closed < window.to)
                    .map(|closed| (closed, format!("#{} on {} ended", c.id, c.node)))
            }
        });
        if let Some((at, what)) = change {
            out.violations.push(Violation {
                rule: "stability",
                at,
                since: at - LEAD,
                worker: Some(worker.clone()),
                nodes: nodes(at),
                what: format!(
                    "{worker} did not stay put in a quiet window ({} after it began, no fault active): {what}",
                    format_args!("{:.3}s", at.duration_since(window.from).as_secs_f64())
                ),
            });
        }
    }
}

/// The figures of one quiet window: how long each configured worker had no copy, and the recovery of the
/// fault whose heal opened it.
fn measure_window(
    input: &Input<'_>,
    window: &Quiet,
    configured: &BTreeSet<String>,
    by_worker: &BTreeMap<&str, Vec<&Conn>>,
    none: &Vec<&Conn>,
    out: &mut Checked,
) {
    for worker in configured {
        let conns = by_worker.get(worker.as_str()).unwrap_or(none);
        // Walk the events in the window, tracking the longest stretch with no copy.
        let mut events: Vec<Instant> = conns
            .iter()
            .flat_map(|c| [Some(c.opened), c.closed])
            .flatten()
            .filter(|&t| t > window.from && t < window.to)
            .collect();
        events.push(window.to);
        events.sort();
        let mut empty_since = (live_at(conns, window.from) == 0).then_some(window.from);
        let mut worst = Duration::ZERO;
        for t in events {
            let live = live_at(conns, t);
            match (empty_since, live) {
                (Some(since), n) if n > 0 || t == window.to => {
                    worst = worst.max(t - since);
                    empty_since = None;
                }
                (None, 0) => empty_since = Some(t),
                _ => {}
            }
        }
        if out
            .worst_no_copy
            .as_ref()
            .is_none_or(|(longest, _, _)| worst > *longest)
            && !worst.is_zero()
        {
            out.worst_no_copy = Some((worst, worker.clone(), window.from));
        }
    }
    let Some(fault) = window
        .opened_by
        .and_then(|id| input.faults.iter().find(|f| f.id == id))
    else {
        return;
    };
    let mut moments: Vec<Instant> = configured
        .iter()
        .filter_map(|w| by_worker.get(w.as_str()))
        .flat_map(|conns| conns.iter().flat_map(|c| [Some(c.opened), c.closed]))
        .flatten()
        .filter(|&t| t > window.from && t < window.to)
        .collect();
    moments.push(window.from);
    moments.sort();
    // Recovered from the moment every configured worker runs exactly once for the rest of the window (a child
    // killed at the window's start still counts as alive at that instant: its end comes just after).
    let mut recovered = None;
    for t in moments {
        let settled = configured
            .iter()
            .all(|w| live_at(by_worker.get(w.as_str()).unwrap_or(none), t) == 1);
        recovered = if settled { recovered.or(Some(t)) } else { None };
    }
    match recovered {
        Some(t) => out
            .recoveries
            .entry(fault.kind)
            .or_default()
            .push(t - window.from),
        None => *out.unrecovered.entry(fault.kind).or_insert(0) += 1,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Printing

/// The figures of a run, one a line.
pub fn figures(checked: &Checked, clock: &Clock) -> String {
    let mut out = String::new();
    let total: usize = checked.injected.values().sum();
    let _ = writeln!(out, "faults injected: {total}");
    for (kind, n) in &checked.injected {
        let recoveries = checked.recoveries.get(kind).cloned().unwrap_or_default();
        let worst = recoveries.iter().max().copied();
        let _ = writeln!(
            out,
            "  {kind:<22} {n:>4}   worst recovery {}   (measured {}, not recovered in its window {})",
            worst.map_or_else(|| "-".to_owned(), |d| format!("{:.3}s", d.as_secs_f64())),
            recoveries.len(),
            checked.unrecovered.get(kind).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        out,
        "overlaps: {} (in all {:.3}s)",
        checked.overlaps,
        checked.overlap_total.as_secs_f64()
    );
    match &checked.worst_no_copy {
        Some((d, worker, from)) => {
            let _ = writeln!(
                out,
                "worst time with no copy after healing: {:.3}s ({worker}, in the quiet window from {})",
                d.as_secs_f64(),
                clock.at(*from)
            );
        }
        None => {
            let _ = writeln!(out, "worst time with no copy after healing: 0");
        }
    }
    let _ = writeln!(
        out,
        "quiet windows: {} ({} long enough to check liveness); worker starts: {}; violations: {}",
        checked.quiet.len(),
        checked.windows_checked,
        checked.starts,
        checked.violations.len()
    );
    out
}

/// The faults, one a line, with their times.
pub fn schedule(faults: &[Fault], clock: &Clock) -> String {
    let mut out = String::new();
    for f in faults {
        let _ = writeln!(
            out,
            "  #{:<3} {} .. {}  {:<22} {:<28} {}",
            f.id,
            clock.at(f.began),
            f.healed
                .map_or_else(|| "(active)".to_owned(), |h| clock.at(h)),
            f.kind,
            f.target,
            f.detail
        );
    }
    out
}

/// The connections of `worker` that were alive at some time in `[from, to]`, one a line.
pub fn timeline(conns: &[Conn], worker: &str, from: Instant, to: Instant, clock: &Clock) -> String {
    let mut out = String::new();
    for c in conns.iter().filter(|c| {
        c.worker == worker && c.opened <= to && c.closed.is_none_or(|closed| closed >= from)
    }) {
        let _ = writeln!(
            out,
            "  #{:<4} node={} token={} pid={} open {} close {}  {}",
            c.id,
            c.node,
            c.token,
            c.pid,
            clock.at(c.opened),
            c.closed
                .map_or_else(|| "(live)".to_owned(), |t| clock.at(t)),
            c.znode
        );
    }
    if out.is_empty() {
        out.push_str("  (no process)\n");
    }
    out
}

/// The faults active at some time in `[from, to]`.
pub fn faults_around(faults: &[Fault], from: Instant, to: Instant) -> Vec<Fault> {
    faults
        .iter()
        .filter(|f| f.began <= to && f.healed.is_none_or(|h| h >= from))
        .cloned()
        .collect()
}
