//! Issue 12 items 4, 8 and the first log line of 7: the limit on open files is checked and named, the
//! systemd status line counts the workers that run and names those that do not, what each running
//! worker costs in descriptors, and log lines a worker cannot forge.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use testkit::*;

/// The session timeout.
const S: &str = "2s";

/// A worker that runs until it is stopped, and costs nothing.
fn sleeper(name: &str) -> WorkerSpec {
    WorkerSpec::new(name, vec!["sleep".into(), "1000".into()])
}

/// A notification socket in a temp dir, as systemd's `NOTIFY_SOCKET`.
struct Notify {
    socket: UnixDatagram,
    path: String,
    _dir: TempDir,
    seen: Vec<String>,
}

impl Notify {
    fn new() -> Notify {
        let dir = TempDir::new("notify");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind a notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("a timeout");
        Notify {
            socket,
            path: path.to_str().expect("UTF-8").to_owned(),
            _dir: dir,
            seen: Vec::new(),
        }
    }

    /// Waits for a message for which `want` holds; returns it.
    fn wait_for(&mut self, what: &str, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.seen.iter().find(|m| want(m)) {
                return m.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}; got {:#?}",
                self.seen
            );
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }
}

/// `running N of M workers; F failing to start: ...` → (N, M, F).
fn counts(status: &str) -> Option<(usize, usize, usize)> {
    let line = status.lines().find_map(|l| l.strip_prefix("STATUS="))?;
    let rest = line.strip_prefix("running ")?;
    let (running, rest) = rest.split_once(" of ")?;
    let (workers, rest) = rest.split_once(" workers")?;
    let failing = rest
        .split("; ")
        .find_map(|part| part.split_once(" failing to start: "))
        .map_or(Some(0), |(n, _)| n.parse().ok())?;
    Some((running.parse().ok()?, workers.parse().ok()?, failing))
}

/// The number of open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .count()
}

/// The daemon's spawner: its child running `__guards`.
fn spawner_of(pid: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("the daemon's children");
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find(|c| {
            std::fs::read(format!("/proc/{c}/cmdline"))
                .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("__guards"))
        })
        .expect("a spawner")
}

#[test]
fn a_short_open_files_limit_is_named_and_systemd_hears_which_workers_do_not_run() {
    let zk = shared_server();
    let root = unique_root("nofile");
    // Quick retries, so that the workers kept by the last reload below start soon.
    let toml = |n: usize| {
        let workers: Vec<WorkerSpec> = (0..n)
            .map(|i| {
                sleeper(&format!("w{i:03}"))
                    .restart_delay("100ms")
                    .extra("max_restart_delay = \"200ms\"")
            })
            .collect();
        config(&zk.connect_string(), &root, S, &workers)
    };
    let mut notify = Notify::new();
    let socket = format!("NOTIFY_SOCKET={}", notify.path);
    let a = start_program(
        &[
            "env",
            "-u",
            "RUST_LOG",
            "-u",
            "JOURNAL_STREAM",
            &socket,
            "prlimit",
            "--nofile=256:256",
            bin(),
            "run",
        ],
        &toml(200),
        "a",
    );
    a.wait_log("the limit on open files is 256", Duration::from_secs(10));
    let log = a.log();
    // Item 7: the first line names the version, the config, the node and the workers.
    let first = log.lines().next().expect("a first line");
    let config = a.config_path();
    assert!(
        first.contains(&format!(
            "zk-supervise {} starting: config={} node=a workers=200",
            env!("CARGO_PKG_VERSION"),
            config.display()
        )),
        "{first}"
    );
    let warning = log
        .lines()
        .find(|l| l.contains("the limit on open files is 256"))
        .expect("the warning");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("200 workers need 664"), "{warning}");
    assert!(warning.contains("LimitNOFILE="), "{warning}");
    // Every worker leads here (one node): once each has tried to start, those past the limit are
    // named as failing, the others run.
    let status = notify.wait_for(
        "a STATUS= with every worker running or failing to start",
        Duration::from_secs(20),
        |m| {
            counts(m).is_some_and(|(running, workers, failing)| {
                running > 0 && failing > 0 && running + failing == workers
            })
        },
    );
    eprintln!("{status}");
    let (running, workers, _) = counts(&status).expect("counts");
    assert_eq!(workers, 200, "{status}");
    assert!(running < 200, "{status}");
    assert!(status.contains("Too many open files"), "{status}");
    assert!(status.contains(" more ("), "{status}");
    assert!(status.len() < 300, "{status}");
    assert!(
        notify.seen.iter().any(|m| m.contains("READY=1")),
        "{:#?}",
        notify.seen
    );
    assert!(
        !notify.seen.iter().any(|m| m.contains("running 200 of 200")),
        "{:#?}",
        notify.seen
    );
    // A reload checks the limit against the new number of workers: more are named again...
    let warnings = || a.log().matches("the limit on open files is 256").count();
    a.write_config(&toml(210));
    a.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "a second warning", || {
        warnings() == 2
    });
    assert!(a.log().contains("210 workers need 694"), "{}", a.log());
    // ... and as few as fit are not, and all run.
    a.write_config(&toml(50));
    a.signal(Signal::SIGHUP);
    notify.wait_for("every worker running", Duration::from_secs(20), |m| {
        m.contains("STATUS=running 50 of 50 workers")
    });
    assert_eq!(warnings(), 2, "{}", a.log());
}

#[test]
fn each_running_worker_costs_three_descriptors() {
    let zk = shared_server();
    let root = unique_root("fds");
    let toml = |n: usize| {
        let workers: Vec<WorkerSpec> = (0..n).map(|i| sleeper(&format!("w{i}"))).collect();
        config(&zk.connect_string(), &root, S, &workers)
    };
    let a = Supervisor::start(&toml(0), "a");
    a.wait_log("ready: every election joined", Duration::from_secs(20));
    let spawner = spawner_of(a.pid());
    let base = (open_fds(a.pid()), open_fds(spawner));
    let mut seen = vec![(0, base)];
    for n in [1, 10] {
        a.write_config(&toml(n));
        a.signal(Signal::SIGHUP);
        wait_until(Duration::from_secs(20), &format!("{n} started"), || {
            a.log().matches(" started ").count() >= n
        });
        // The write ends of a starting child's pipes close once its guard has them.
        let want = base.0 + 3 * n;
        let settled = poll_until(Duration::from_secs(5), &mut || open_fds(a.pid()) <= want);
        let now = (open_fds(a.pid()), open_fds(spawner));
        seen.push((n, now));
        assert!(
            settled,
            "{n} running workers: the daemon holds {} descriptors, {} with none running \
             (want at most 3 per worker); spawner: {} then {}",
            now.0, base.0, base.1, now.1
        );
        assert_eq!(
            now.1, base.1,
            "the spawner holds descriptors per worker: {seen:?}"
        );
    }
    // The figures the docs give (src/limits.rs); the daemon's own share, which includes whatever the
    // test harness lets it inherit, fits the share `need` reserves for it.
    eprintln!("descriptors (workers running, (daemon, spawner)): {seen:?}");
    assert!(
        base.0 <= usize::try_from(zk_supervise::limits::BASE).expect("small"),
        "{seen:?}"
    );
}

#[test]
fn a_worker_cannot_forge_a_log_line() {
    let zk = shared_server();
    let root = unique_root("forge");
    let forger = WorkerSpec::new(
        "w",
        vec![
            "sh".into(),
            "-c".into(),
            r"printf '\rWORKER other: forged\0x\n'; exec sleep 1000".into(),
        ],
    );
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S, &[forger]), "a");
    a.wait_log("forged", Duration::from_secs(20));
    let log = a.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("forged")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = lines[0];
    assert!(
        line.contains(
            r#"zk_supervise::child: worker=w stream="stdout" \x0dWORKER other: forged\x00x"#
        ),
        "{line:?}"
    );
    assert!(
        !line.contains(|c: char| c.is_control()),
        "a control character in {line:?}"
    );
    // Nothing else of the log carries one either.
    assert!(
        !log.contains(|c: char| c.is_control() && c != '\n'),
        "{log:?}"
    );
}
