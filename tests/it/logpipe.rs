//! Issue 11 item 4: the daemon's stderr is a pipe nobody reads (a stuck journald, `run … 2>&1 | slow-consumer`)
//! while a worker prints without pause. Log lines are then dropped, never waited for: the lease, ZooKeeper I/O
//! and every child of the node carry on, `/metrics` counts what was dropped, and once the pipe is read again
//! one line says how much was lost.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::Signal;
use testkit::*;

/// The session timeout.
const S: &str = "2s";

/// How long nobody reads the daemon's stderr.
const UNREAD: Duration = Duration::from_secs(30);

/// The chatty worker, after reporting to the witness: about 10 000 lines a second on stdout, for ever.
const CHATTY: &str = "while :; do \
     for i in {1..100}; do echo \"chatty line $i: the quick brown fox jumps over the lazy dog\"; done; \
     sleep 0.01; \
     done";

/// How many bytes wait in the pipe `fd`.
fn unread_bytes(fd: &OwnedFd) -> usize {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the address given, which is `n`'s.
    let rc = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD on the log pipe");
    usize::try_from(n).unwrap_or(0)
}

/// A plain HTTP/1.0 GET of `/metrics` on 127.0.0.1:`port`; returns the body.
fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a timeout");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// The value of the series `name` (with its labels, as printed) in an exposition.
fn series(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|rest| rest.trim().parse().ok())
    })
}

/// `N` and `T` of "dropped N log lines in the last Ts: stderr was not read".
fn parse_summary(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find("dropped ")? + "dropped ".len()..];
    let (n, rest) = rest.split_once(" log lines in the last ")?;
    let (t, _) = rest.split_once("s: stderr was not read")?;
    Some((n.parse().ok()?, t.parse().ok()?))
}

/// What the test keeps of the daemon's stderr once it reads it: the lines that matter here, and whether it
/// reached end-of-file.
#[derive(Default)]
struct Read {
    kept: Vec<String>,
    lines: u64,
    eof: bool,
}

/// Reads `pipe` to its end on a thread of its own, keeping the lines that contain any of `needles`.
fn read_in_background(pipe: OwnedFd, needles: &'static [&'static str]) -> Arc<Mutex<Read>> {
    let read = Arc::new(Mutex::new(Read::default()));
    let shared = read.clone();
    thread::spawn(move || {
        let mut reader = BufReader::new(std::fs::File::from(pipe));
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let mut read = shared.lock().expect("not poisoned");
                    read.lines += 1;
                    if needles.iter().any(|n| text.contains(n)) {
                        read.kept.push(text.trim_end().to_owned());
                    }
                }
            }
        }
        shared.lock().expect("not poisoned").eof = true;
    });
    read
}

#[test]
fn a_log_pipe_nobody_reads_stops_no_child_and_delays_no_lease() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("logpipe");
    let port = free_ports(1)[0];
    let workers = [
        WorkerSpec::new("chatty", witness.command_with(CHATTY)),
        WorkerSpec::new("quiet", witness.command()),
    ];
    let mut toml = config(&zk.connect_string(), &root, S, &workers);
    toml.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let (pipe, stderr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("a pipe");
    let capacity =
        usize::try_from(fcntl(&pipe, FcntlArg::F_GETPIPE_SZ).expect("F_GETPIPE_SZ")).unwrap_or(0);
    let mut a = Supervisor::start_with_stderr(&toml, "a", Stdio::from(stderr));
    let chatty = witness.wait_live("chatty", Some("a"), Duration::from_secs(20));
    let quiet = witness.wait_live("quiet", Some("a"), Duration::from_secs(20));
    // A full pipe: every further write to it would block.
    wait_until(Duration::from_secs(10), "the log pipe to fill up", || {
        unread_bytes(&pipe) + 4096 >= capacity
    });

    // Nothing may happen while nobody reads: the first process of each worker keeps its witness connection
    // (a lapsed lease or a restart would close it or open a second one).
    let changed = {
        let witness = &witness;
        poll_until(UNREAD, &mut || {
            [&chatty, &quiet].iter().any(|first| {
                let history = witness.history(&first.worker);
                history.len() != 1 || !history[0].is_live()
            })
        })
    };
    assert!(
        !changed,
        "a worker stopped or restarted while nobody read the log\n{}{}",
        witness.timeline("chatty"),
        witness.timeline("quiet")
    );
    // The event loop still answers, with the session up, no restart, and the dropped lines counted.
    let body = metrics(port);
    assert_eq!(
        series(&body, "zk_supervise_session_up"),
        Some(1.0),
        "{body}"
    );
    for worker in ["chatty", "quiet"] {
        assert_eq!(
            series(
                &body,
                &format!("zk_supervise_worker_restarts_total{{worker=\"{worker}\"}}")
            ),
            Some(0.0),
            "{body}"
        );
    }
    let dropped_unread = series(&body, "zk_supervise_log_lines_dropped_total").unwrap_or(0.0);
    assert!(dropped_unread > 0.0, "{body}");

    // Read the pipe again: one line sums up what was lost while nobody read.
    let read = read_in_background(
        pipe,
        &[
            "log lines in the last",
            "lease lapsed",
            "panicked",
            "shut down cleanly",
        ],
    );
    let summary = || {
        let read = read.lock().expect("not poisoned");
        read.kept.iter().find_map(|l| parse_summary(l))
    };
    wait_until(
        Duration::from_secs(20),
        "the summary of the dropped log lines",
        || summary().is_some(),
    );
    let (n, t) = summary().expect("a summary");
    println!("summary: dropped {n} log lines in the last {t}s");
    assert!(
        n > 0 && t + 2 >= UNREAD.as_secs(),
        "dropped {n} lines in {t}s"
    );
    let body = metrics(port);
    let dropped = series(&body, "zk_supervise_log_lines_dropped_total").unwrap_or(0.0);
    #[allow(clippy::cast_precision_loss)]
    let n_f = n as f64;
    assert!(
        dropped >= n_f && dropped >= dropped_unread,
        "metric {dropped}, summary {n}\n{body}"
    );
    for first in [&chatty, &quiet] {
        assert_eq!(
            witness.history(&first.worker).len(),
            1,
            "{}",
            witness.timeline(&first.worker)
        );
    }

    // A clean shutdown writes out what is still queued before the process exits.
    a.signal(Signal::SIGTERM);
    let status = a.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    wait_until(Duration::from_secs(5), "the end of the log pipe", || {
        read.lock().expect("not poisoned").eof
    });
    let read = read.lock().expect("not poisoned");
    println!("read {} lines after the pipe was unblocked", read.lines);
    assert!(
        read.kept.iter().any(|l| l.contains("shut down cleanly")),
        "{:#?}",
        read.kept
    );
    assert!(
        !read
            .kept
            .iter()
            .any(|l| l.contains("lease lapsed") || l.contains("panicked")),
        "{:#?}",
        read.kept
    );
}
