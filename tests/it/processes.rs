//! A child's whole process tree (issue 11, items 1b and 5): processes that leave the child's process group
//! die with it whichever process above them is killed, get the stop signal like the rest of the group, and
//! health checks run as the worker runs. One standalone server is shared by the tests of this file; each
//! test has its own root path.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use testkit::*;

const S: &str = "2s";

fn pid(raw: u32) -> Pid {
    Pid::from_raw(i32::try_from(raw).expect("a pid"))
}

/// The fields of `/proc/<pid>/stat` after the command name, from the state on; `None` once it is gone.
fn stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields after it are space-separated.
    let after = &stat[stat.rfind(')')? + 2..];
    Some(after.split(' ').map(str::to_owned).collect())
}

/// The parent pid of `pid`.
fn parent_of(pid: u32) -> u32 {
    stat(pid).expect("a live process")[1]
        .parse()
        .expect("a number")
}

/// The process group of `pid`.
fn group_of(pid: u32) -> u32 {
    stat(pid).expect("a live process")[2]
        .parse()
        .expect("a number")
}

/// Whether `pid` no longer runs: gone, or a zombie (dead, waiting for a parent to reap it; in a
/// container, init may never do so).
fn is_gone(pid: u32) -> bool {
    stat(pid).is_none_or(|s| s[0] == "Z")
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

/// A command that runs `script` (bash) with the witness environment, given through the worker's `env`
/// so that no quoting is needed: `prefix` comes first, e.g. `setsid -f`.
fn via_env(prefix: &str, script: &str) -> (Vec<String>, String) {
    let command = vec![
        "/bin/bash".to_owned(),
        "-c".to_owned(),
        format!("{prefix} /bin/bash -c \"$SCRIPT\""),
    ];
    (
        command,
        format!("env = {{ SCRIPT = {} }}", toml_str(script)),
    )
}

/// Issue 11, 1b: the command starts a grandchild with `setsid -f`, which leaves the child's process group
/// and, once the `setsid` in between has exited, has the guard for its parent. SIGKILL the guard: the
/// grandchild must be dead before the worker starts again, and nothing may be left after a clean shutdown.
#[test]
fn a_setsid_grandchild_of_a_killed_guard_is_dead_before_the_restart_and_after_shutdown() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("setsid-guard-killed");
    // The grandchild connects to the witness; the child itself only waits.
    let script = &witness.command()[2];
    let command = vec![
        "/bin/bash".to_owned(),
        "-c".to_owned(),
        "setsid -f /bin/bash -c \"$SCRIPT\"; exec sleep 1000".to_owned(),
    ];
    let worker = WorkerSpec::new("w", command)
        .restart_delay("100ms")
        .extra(&format!("env = {{ SCRIPT = {} }}", toml_str(script)));
    let mut a = Supervisor::start(&config(&zk.connect_string(), &root, S, &[worker]), "a");
    let first = witness.wait_live("w", Some("a"), Duration::from_secs(20));
    // Once the `setsid` in between has exited, the grandchild is re-parented to the guard (a subreaper).
    wait_until(
        Duration::from_secs(5),
        "the grandchild's parent to be its guard",
        || comm(parent_of(first.pid)) == "zk-supervise",
    );
    let guard = parent_of(first.pid);
    assert_eq!(
        parent_of(parent_of(guard)),
        a.pid(),
        "supervisor -> spawner -> guard"
    );
    assert_eq!(
        group_of(first.pid),
        first.pid,
        "the grandchild left the group"
    );
    kill(pid(guard), Signal::SIGKILL).expect("kill the guard");
    witness.wait_count("w", 2, Duration::from_secs(10));
    let second = witness.wait_live("w", Some("a"), Duration::from_secs(10));
    // The first grandchild closed its connection before the second opened one: no overlap, ever.
    witness.assert_no_overlap("w");
    assert!(is_gone(first.pid), "{}", witness.timeline("w"));
    // A clean shutdown leaves nothing: not the second grandchild, its guard, nor the spawner.
    wait_until(
        Duration::from_secs(5),
        "the second grandchild's guard",
        || comm(parent_of(second.pid)) == "zk-supervise",
    );
    let guard = parent_of(second.pid);
    let spawner = parent_of(guard);
    a.signal(Signal::SIGTERM);
    let status = a.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", a.log());
    witness.wait_none_live("w", Duration::from_secs(5));
    for (what, pid) in [
        ("first grandchild", first.pid),
        ("second grandchild", second.pid),
        ("guard", guard),
        ("spawner", spawner),
    ] {
        let gone = poll_until(Duration::from_secs(5), &mut || is_gone(pid));
        assert!(gone, "the {what} ({pid}) outlived a clean shutdown");
    }
    assert_eq!(witness.history("w").len(), 2, "{}", witness.timeline("w"));
    assert!(!a.log().contains("survive"), "{}", a.log());
}

/// Stops `a` cleanly and returns how long `conn` took to close after the SIGTERM.
fn stop_time(a: &mut Supervisor, witness: &Witness, conn: &Conn) -> Duration {
    let asked = Instant::now();
    a.signal(Signal::SIGTERM);
    witness.wait_none_live("w", Duration::from_secs(10));
    let closed = witness.again(conn).closed.expect("closed");
    let status = a.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", a.log());
    closed.saturating_duration_since(asked)
}

/// The grace period of the tests below, and what "well under it" means.
const GRACE: &str = "1800ms";
const WELL_UNDER_GRACE: Duration = Duration::from_millis(900);

/// Issue 11, 5b: the child moves itself out of its process group (here into its guard's, the only other
/// group it can join): the stop signal must still reach it, not only SIGKILL at the end of the grace.
#[test]
fn a_child_that_left_its_process_group_gets_its_stop_signal() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("left-group");
    let script = &witness.command_with("trap 'exit 0' TERM")[2];
    let command = [
        "/usr/bin/perl",
        "-e",
        "setpgrp(0, getpgrp(getppid())) or die qq(setpgrp: $!); exec q(/bin/bash), q(-c), $ENV{SCRIPT}",
    ]
    .map(String::from)
    .to_vec();
    let worker = WorkerSpec::new("w", command)
        .grace_period(GRACE)
        .extra(&format!("env = {{ SCRIPT = {} }}", toml_str(script)));
    let mut a = Supervisor::start(&config(&zk.connect_string(), &root, "4s", &[worker]), "a");
    let conn = witness.wait_live("w", Some("a"), Duration::from_secs(20));
    assert_ne!(group_of(conn.pid), conn.pid, "the child left its group");
    let took = stop_time(&mut a, &witness, &conn);
    assert!(
        took < WELL_UNDER_GRACE,
        "the stop took {took:?} (grace {GRACE})\n{}",
        a.log()
    );
}

/// Issue 11, 5b: the command is a wrapper that runs the real program in a session of its own
/// (`setsid --wait`, as `sudo` with a pty does): the program gets the stop signal and stops gracefully,
/// well within the grace period, rather than SIGKILL once the wrapper has died of it.
#[test]
fn a_program_in_a_session_of_its_own_stops_gracefully() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("setsid-wait");
    let (command, env) = via_env(
        "setsid --wait",
        &witness.command_with("trap 'echo stopping gracefully; exit 0' TERM; echo trap set")[2],
    );
    let worker = WorkerSpec::new("w", command)
        .grace_period(GRACE)
        .extra(&env);
    let mut a = Supervisor::start(&config(&zk.connect_string(), &root, "4s", &[worker]), "a");
    let conn = witness.wait_live("w", Some("a"), Duration::from_secs(20));
    assert_eq!(
        group_of(conn.pid),
        conn.pid,
        "the program has a group of its own"
    );
    // Stop it once it can stop gracefully.
    a.wait_log("trap set", Duration::from_secs(5));
    let took = stop_time(&mut a, &witness, &conn);
    assert!(
        took < WELL_UNDER_GRACE,
        "the stop took {took:?} (grace {GRACE})\n{}",
        a.log()
    );
    assert!(a.log().contains("stopping gracefully"), "{}", a.log());
}

/// A directory everybody may write to, for files a check running as `nobody` writes.
fn open_dir(label: &str) -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new(label);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

fn health_check(command: &str, interval: &str, timeout: &str) -> String {
    format!(
        "[worker.health_check]\ncommand = [\"/bin/sh\", \"-c\", {}]\ninterval = \"{interval}\"\n\
         timeout = \"{timeout}\"\nfailures = 100",
        toml_str(command)
    )
}

fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Issue 11, 5c: a health check runs with the worker's `user`, `group` and `working_dir`, in a process
/// group of its own.
#[test]
fn a_health_check_runs_as_the_worker_in_its_working_dir_and_own_group() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("this test switches users: run the suite as root (CI does)");
    }
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("check-as-worker");
    let dir = open_dir("check-as-worker");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    let out = dir.path().join("check.out");
    // Field 5 of /proc/<pid>/stat is the process group ("sh" has no space in it).
    let check = format!(
        "echo \"$(id -u) $(id -g) $(pwd) $$ $(cut -d' ' -f5 /proc/$$/stat)\" > {}.tmp && mv {}.tmp {}",
        out.display(),
        out.display(),
        out.display()
    );
    let worker = WorkerSpec::new("w", witness.command())
        .extra("user = \"nobody\"")
        .extra("group = \"users\"")
        .extra(&format!(
            "working_dir = {}",
            toml_str(&work.to_string_lossy())
        ))
        .extra(&health_check(&check, "500ms", "500ms"));
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S, &[worker]), "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    wait_until(Duration::from_secs(10), "the check's report", || {
        out.exists()
    });
    let report = std::fs::read_to_string(&out).expect("read the report");
    let fields: Vec<&str> = report.split_whitespace().collect();
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("look up nobody")
        .expect("a nobody user");
    let users = nix::unistd::Group::from_name("users")
        .expect("look up users")
        .expect("a users group");
    assert_eq!(
        fields[..3],
        [
            nobody.uid.to_string().as_str(),
            users.gid.to_string().as_str(),
            work.to_str().expect("UTF-8")
        ],
        "{report}"
    );
    assert_eq!(
        fields[3], fields[4],
        "the check leads a group of its own: {report}"
    );
    assert!(!a.log().contains("health check failed"), "{}", a.log());
}

/// Issue 11, 5c: a check that outlives its timeout is killed with everything it started, in its group or
/// out of it; and one that passes leaves nothing running either.
#[test]
fn nothing_of_a_health_check_survives_it() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("check-leftovers");
    let dir = open_dir("check-leftovers");
    let pids = dir.path().display();
    // Each run records its own pid, a grandchild in its group and one in a session of its own; only the
    // first run hangs (and times out), the next ones exit 0 with their grandchildren still sleeping.
    let check = format!(
        "n=$(ls {pids} | wc -l); d={pids}/run$n; mkdir $d; echo $$ > $d/check; \
         sleep 1000 & echo $! > $d/in-group; \
         setsid -f sh -c 'echo $$ > '$d'/own-session; exec sleep 1000'; \
         while [ ! -s $d/own-session ]; do sleep 0.01; done; \
         if [ $n = 0 ]; then exec sleep 1000; fi"
    );
    let worker =
        WorkerSpec::new("w", witness.command()).extra(&health_check(&check, "1500ms", "1500ms"));
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S, &[worker]), "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    a.wait_log("health check failed", Duration::from_secs(10));
    assert!(a.log().contains("no answer within 1.5s"), "{}", a.log());
    let run = |n: usize| dir.path().join(format!("run{n}"));
    wait_until(
        Duration::from_secs(10),
        "a passing run of the check",
        || run(1).join("own-session").exists(),
    );
    for n in [0, 1] {
        for what in ["check", "in-group", "own-session"] {
            let file = run(n).join(what);
            let Some(pid) = read_pid(&file) else {
                panic!("no pid in {}", file.display())
            };
            let gone = poll_until(Duration::from_secs(3), &mut || is_gone(pid));
            assert!(gone, "run {n}: the {what} process {pid} survived the check");
        }
    }
    // Killing what a passing run left behind does not make it fail: every failure is a timeout (the
    // first run's; on a loaded host a later run may be slow too).
    let log = a.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("health check failed"))
        .collect();
    assert!(
        failures.iter().all(|l| l.contains("no answer within")),
        "{log}"
    );
    assert_eq!(witness.history("w").len(), 1, "{}", witness.timeline("w"));
}
