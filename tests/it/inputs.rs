//! Issue 12, items 1 and 7: no file an operator names can hang or exhaust the daemon, and a reload
//! says what it changed. The config, the credentials file and the TLS files are read only if they are
//! regular files, at most 16 MiB, and off the event loop that renews the lease.
//!
//! One standalone server is shared by the tests of this file; each test has its own root path.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use testkit::*;

const S: &str = "2s";
const EXIT_CONFIG: i32 = 78;

/// Replaces whatever is at `path` with a FIFO.
fn make_fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// Replaces whatever is at `path` with a symbolic link to /dev/zero.
fn make_dev_zero(path: &Path) {
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink("/dev/zero", path).expect("symlink to /dev/zero");
}

/// The resident memory of process `pid`, in KiB (`VmRSS` of /proc/<pid>/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read its status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("a VmRSS line")
}

/// Runs `check` on `path`: it must refuse within a few seconds, exit 78, and say `expected` on one line.
fn check_refuses(path: &Path, expected: &str) {
    let started = Instant::now();
    let out = run_cli(
        &["check", &path.display().to_string()],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert_eq!(
        stderr,
        format!("{}: {expected}\n", path.display()),
        "check on {}",
        path.display()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "check took {:?}",
        started.elapsed()
    );
}

#[test]
fn check_refuses_a_fifo_and_dev_zero_at_once() {
    let dir = TempDir::new("inputs-check");
    let fifo = dir.path().join("fifo.toml");
    make_fifo(&fifo);
    check_refuses(&fifo, "is a FIFO, not a regular file");
    let zero = dir.path().join("zero.toml");
    make_dev_zero(&zero);
    check_refuses(&zero, "is a character device, not a regular file");
}

/// The config becomes a FIFO, then a symlink to /dev/zero, with a SIGHUP each time: each reload fails
/// at once with one line naming the file, the worker keeps running (its witness connection never
/// drops), memory stays small, and a valid file after that reloads as usual, naming the
/// `[zookeeper]` key it cannot apply until the next restart.
#[test]
fn a_config_turned_into_a_fifo_or_dev_zero_fails_the_reload_and_stops_nothing() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("inputs-reload");
    let w = WorkerSpec::new("w", witness.command());
    let toml = config(&zk.connect_string(), &root, S, std::slice::from_ref(&w));
    let a = Supervisor::start(&toml, "a");
    let first = witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let path = a.config_path();
    let rss_before = rss_kib(a.pid());

    make_fifo(&path);
    a.signal(Signal::SIGHUP);
    a.wait_log(
        &format!("{}: is a FIFO, not a regular file", path.display()),
        Duration::from_secs(10),
    );
    a.wait_log(
        "reload: the config is invalid; nothing changed",
        Duration::from_secs(5),
    );

    make_dev_zero(&path);
    a.signal(Signal::SIGHUP);
    a.wait_log(
        &format!(
            "{}: is a character device, not a regular file",
            path.display()
        ),
        Duration::from_secs(10),
    );
    wait_until(Duration::from_secs(5), "the second reload to fail", || {
        a.log()
            .matches("reload: the config is invalid; nothing changed")
            .count()
            == 2
    });
    // Nothing must happen: the lease keeps being renewed, and the child keeps running.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(first.is_live(), "{}", witness.timeline("w"));
    assert_eq!(witness.history("w").len(), 1, "{}", witness.timeline("w"));
    let rss_after = rss_kib(a.pid());
    assert!(
        rss_after < rss_before + 32 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );

    // A valid file again: a worker added, and a [zookeeper] key changed (named, applied at the next
    // restart).
    let added = WorkerSpec::new("added", witness.command());
    std::fs::remove_file(&path).expect("remove the symlink");
    a.write_config(&config(&zk.connect_string(), &root, "3s", &[w, added]));
    a.signal(Signal::SIGHUP);
    witness.wait_live("added", Some("a"), Duration::from_secs(10));
    a.wait_log(
        "reload: zookeeper.session_timeout changed; changes to [zookeeper], [node] and [metrics] take effect at the next restart",
        Duration::from_secs(5),
    );
    assert!(first.is_live(), "{}", witness.timeline("w"));
    assert_eq!(witness.history("w").len(), 1, "{}", witness.timeline("w"));
}

/// A config that names `auth` with `credentials_file`.
fn with_auth(toml: &str, file: &Path) -> String {
    toml.replacen(
        "[zookeeper]\n",
        &format!(
            "[zookeeper]\nauth = {{ scheme = \"digest\", credentials_file = {} }}\n",
            toml_str(&file.display().to_string())
        ),
        1,
    )
}

/// A config that names `tls` with `ca`.
fn with_tls_ca(toml: &str, ca: &Path) -> String {
    toml.replacen(
        "[zookeeper]\n",
        &format!(
            "[zookeeper]\ntls = {{ ca = {} }}\n",
            toml_str(&ca.display().to_string())
        ),
        1,
    )
}

/// The daemon exits 78 within a few seconds, its last line `expected`.
fn refused_at_start(toml: &str, expected: &str) {
    let mut daemon = Supervisor::start(toml, "a");
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(EXIT_CONFIG), "{}", daemon.log());
    let log = daemon.log();
    assert_eq!(log.lines().last(), Some(expected), "{log}");
}

#[test]
fn a_credentials_file_or_tls_file_that_is_a_fifo_is_refused_at_start() {
    let zk = shared_server();
    let root = unique_root("inputs-start");
    let dir = TempDir::new("inputs-start");
    let fifo: PathBuf = dir.path().join("zk.auth");
    make_fifo(&fifo);
    let toml = config(
        &zk.connect_string(),
        &root,
        S,
        &[WorkerSpec::new("w", vec!["/bin/sleep".into(), "60".into()])],
    );

    let auth = with_auth(&toml, &fifo);
    refused_at_start(
        &auth,
        &format!(
            "credentials file {}: is a FIFO, not a regular file",
            fifo.display()
        ),
    );
    // `check` reads the credentials file too.
    let file = dir.path().join("auth.toml");
    std::fs::write(&file, &auth).expect("write the config");
    let out = run_cli(
        &["check", &file.display().to_string()],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}: credentials file {}: is a FIFO, not a regular file\n",
            file.display(),
            fifo.display()
        )
    );

    let zero = dir.path().join("ca.pem");
    make_dev_zero(&zero);
    refused_at_start(
        &with_tls_ca(&toml, &zero),
        &format!(
            "zookeeper tls ca {}: is a character device, not a regular file",
            zero.display()
        ),
    );
}

/// Issue 12, 5: a worker whose environment is large (here 1.5 MB, within `ARG_MAX`) starts promptly:
/// the guard reads its spec in linear time, and the child gets every variable.
#[test]
fn a_worker_with_a_large_environment_starts_promptly() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("inputs-env");
    let vars: Vec<String> = (0..15)
        .map(|i| format!("BIG{i} = \"{}\"", "x".repeat(100_000)))
        .collect();
    let w = WorkerSpec::new(
        "w",
        witness.command_with("[ ${#BIG14} = 100000 ] || exit 3"),
    )
    .extra(&format!("env = {{ {} }}", vars.join(", ")));
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S, &[w]), "a");
    let started = Instant::now();
    let conn = witness.wait_live("w", Some("a"), Duration::from_secs(20));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(300)); // it must stay up: the environment arrived whole
    assert!(conn.is_live(), "{}\n{}", witness.timeline("w"), a.log());
    assert_eq!(witness.history("w").len(), 1, "{}", witness.timeline("w"));
}

/// `zk-supervise run` as the user `nobody`, its log in a file; SIGKILLed when dropped, and (through
/// the parent-death signal) when the test process dies first. Started here rather than through
/// [`Supervisor`], which runs the daemon as the test's own user.
struct RunAsNobody {
    child: std::process::Child,
    log: PathBuf,
}

impl RunAsNobody {
    fn start(config_toml: &str, dir: &Path) -> RunAsNobody {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let nobody = nix::unistd::User::from_name("nobody")
            .expect("look up nobody")
            .expect("a nobody user");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let config_path = dir.join("workers.toml");
        std::fs::write(&config_path, config_toml).expect("write the config");
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let log = dir.join("supervisor.log");
        let out = std::fs::File::create(&log).expect("create the log");
        let mut command = std::process::Command::new(bin());
        command
            .arg("run")
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("clone the log"))
            .stderr(out)
            .uid(nobody.uid.as_raw())
            .gid(nobody.gid.as_raw())
            .process_group(0);
        // SAFETY: only an async-signal-safe system call between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().expect("start the daemon as nobody");
        RunAsNobody { child, log }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let found = poll_until(timeout, &mut || self.log().contains(needle));
        assert!(found, "no {needle:?} in the log:\n{}", self.log());
    }
}

impl Drop for RunAsNobody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 12, 7: a daemon that is not root warns at start about a worker that sets `user = "root"`,
/// and its start fails saying that switching users needs root, not `Operation not permitted`.
#[test]
fn a_daemon_that_is_not_root_says_switching_users_needs_root() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("this test switches users: run the suite as root (CI does)");
    }
    let zk = shared_server();
    let root = unique_root("inputs-nonroot");
    let dir = TempDir::new("inputs-nonroot");
    let worker = WorkerSpec::new("w", vec!["/bin/sleep".into(), "60".into()])
        .extra("user = \"root\"")
        .handoff_after(0);
    let toml = format!(
        "{}\n[node]\nid = \"a\"\n",
        config(&zk.connect_string(), &root, S, &[worker])
    );
    let daemon = RunAsNobody::start(&toml, dir.path());
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("look up nobody")
        .expect("a nobody user");
    let why = format!(
        "switching to user \"root\" (uid 0, gid 0) needs root, and the daemon runs as uid {}, gid {}; \
         run it as root or remove user and group from the worker",
        nobody.uid, nobody.gid
    );
    daemon.wait_log(
        &format!("worker \"w\": {why}; its child cannot start on this node"),
        Duration::from_secs(10),
    );
    daemon.wait_log(&format!("spawn /bin/sleep: {why}"), Duration::from_secs(20));
    assert!(
        !daemon.log().contains("Operation not permitted"),
        "{}",
        daemon.log()
    );
}
