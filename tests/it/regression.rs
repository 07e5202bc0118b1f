//! One test per reported bug, named after it (review of the core daemon).

use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use testkit::*;

const S_STR: &str = "2s";

fn pid(raw: u32) -> Pid {
    Pid::from_raw(i32::try_from(raw).expect("a pid"))
}

/// The parent pid of `pid`, from /proc.
fn parent_of(child: u32) -> u32 {
    let stat =
        std::fs::read_to_string(format!("/proc/{child}/stat")).expect("read /proc/<pid>/stat");
    // The command name is in parentheses and may hold spaces: the fields after it are space-separated.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    after
        .split(' ')
        .nth(1)
        .expect("ppid")
        .parse()
        .expect("a number")
}

#[test]
fn ctrl_z_on_the_supervisors_process_group_does_not_freeze_enforcement() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("ctrl-z");
    let toml = config(
        &zk.connect_string(),
        &root,
        S_STR,
        &[WorkerSpec::new("w", witness.command())],
    );
    let a = Supervisor::start(&toml, "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let _b = Supervisor::start(&toml, "b");
    // What a Ctrl-Z in a's terminal does: SIGTSTP to a's whole foreground process group; and SIGSTOP, which
    // nothing can ignore.
    killpg(pid(a.pid()), Signal::SIGTSTP).expect("signal a's group");
    killpg(pid(a.pid()), Signal::SIGSTOP).expect("signal a's group");
    // a's child is still stopped by the lease, and only then does b start the worker.
    witness.wait_live("w", Some("b"), Duration::from_secs(15));
    witness.assert_no_overlap("w");
    killpg(pid(a.pid()), Signal::SIGCONT).expect("signal a's group");
}

#[test]
fn a_killed_guard_leaves_no_process_of_its_child_behind() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("guard-killed");
    // A grandchild holds the witness connection too; as root, the child also runs as another user (a change of
    // credentials clears a parent-death signal set before it).
    let mut worker =
        WorkerSpec::new("w", witness.command_with("read -r _ <&3 &")).restart_delay("100ms");
    if nix::unistd::Uid::effective().is_root() {
        worker = worker.extra("user = \"nobody\"");
    }
    let toml = config(&zk.connect_string(), &root, S_STR, &[worker]);
    let _a = Supervisor::start(&toml, "a");
    let first = witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let guard = parent_of(first.pid);
    kill(pid(guard), Signal::SIGKILL).expect("kill the guard");
    witness.wait_count("w", 2, Duration::from_secs(10));
    witness.wait_live("w", Some("a"), Duration::from_secs(10));
    // The first child and its grandchild were gone before the restart.
    witness.assert_no_overlap("w");
}

#[test]
fn a_killed_spawner_touches_no_running_child_and_is_replaced_at_the_next_start() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("spawner-killed");
    let worker = WorkerSpec::new("w", witness.command()).restart_delay("100ms");
    let toml = config(&zk.connect_string(), &root, S_STR, &[worker]);
    let mut a = Supervisor::start(&toml, "a");
    let first = witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let guard = parent_of(first.pid);
    let spawner = parent_of(guard);
    assert_eq!(
        parent_of(spawner),
        a.pid(),
        "supervisor -> spawner -> guard -> child"
    );
    for pid in [spawner, guard] {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("read comm");
        assert_eq!(
            comm.trim_end(),
            "zk-supervise",
            "the name of process {pid} in ps and top"
        );
    }
    kill(pid(spawner), Signal::SIGKILL).expect("kill the spawner");
    // The guards do not depend on it: the child runs on, under a live lease.
    assert_stable(&witness, "w", Some("a"), Duration::from_secs(3));
    // The next start needs a spawner: the supervisor starts another.
    kill(pid(first.pid), Signal::SIGKILL).expect("kill the child");
    witness.wait_count("w", 2, Duration::from_secs(10));
    let second = witness.wait_live("w", Some("a"), Duration::from_secs(10));
    let new_spawner = parent_of(parent_of(second.pid));
    assert_ne!(new_spawner, spawner, "{}", a.log());
    assert_eq!(parent_of(new_spawner), a.pid());
    witness.assert_no_overlap("w");
    // A supervisor that dies takes its spawner along (end of file on the request socket), as it does its
    // guards and children.
    a.kill();
    witness.wait_none_live("w", Duration::from_secs(5));
    let gone = poll_until(Duration::from_secs(5), &mut || {
        !std::path::Path::new(&format!("/proc/{new_spawner}")).exists()
    });
    assert!(gone, "the spawner {new_spawner} outlived its supervisor");
}

#[test]
fn a_child_at_the_largest_allowed_grace_period_is_not_stopped_on_a_healthy_session() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("max-grace");
    // S = 2s with the test servers' tick (200 ms): the bound is 2s - 200ms - 200ms - 3 * 200ms = 1s.
    let worker = WorkerSpec::new("w", witness.command()).grace_period("1s");
    let toml = config(&zk.connect_string(), &root, S_STR, &[worker]);
    let a = Supervisor::start(&toml, "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(4)); // several heartbeats: nothing must happen
    assert_eq!(
        witness.history("w").len(),
        1,
        "{}\n{}",
        witness.timeline("w"),
        a.log()
    );
    assert!(!a.log().contains("lease lapsed"), "{}", a.log());
}

#[test]
fn the_child_starts_with_no_blocked_or_ignored_signals() {
    let zk = shared_server();
    let root = unique_root("sigmask");
    // The command itself reports its own signal state (a shell would change it before running anything).
    let command = ["/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]
        .map(String::from)
        .to_vec();
    let worker = WorkerSpec::new("w", command).restart_delay("10s");
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S_STR, &[worker]), "a");
    a.wait_log("SigIgn", Duration::from_secs(5));
    let log = a.log();
    let mask = |name: &str| {
        let line = log
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name} in\n{log}"));
        let hex = line
            .split(&format!("{name}:"))
            .nth(1)
            .expect("a value")
            .split_whitespace()
            .next()
            .expect("hex");
        u64::from_str_radix(hex, 16).expect("a hex mask")
    };
    assert_eq!(mask("SigBlk"), 0, "{log}");
    // Signals 1 to 31 at their default (glibc reserves 32 and 33 for itself).
    assert_eq!(mask("SigIgn") & 0x7fff_ffff, 0, "{log}");
}

#[test]
fn a_deleted_candidate_kills_the_child_without_waiting_for_its_grace_period() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("deleted-kill");
    // S = 4s allows a grace period of 2s; the child ignores SIGTERM, so only SIGKILL ends it early.
    let worker = WorkerSpec::new("w", witness.command_with("trap '' TERM")).grace_period("2s");
    let a = Supervisor::start(&config(&zk.connect_string(), &root, "4s", &[worker]), "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let path = format!("{root}/w");
    let deleted = delete_leader_candidate(&zk.connect_string(), &path);
    wait_until(Duration::from_secs(2), "a's child to die", || {
        witness.history("w")[0].closed.is_some()
    });
    let lived = witness.history("w")[0]
        .closed
        .expect("closed")
        .duration_since(deleted);
    assert!(
        lived < Duration::from_millis(2000),
        "the child got its grace period: {lived:?}\n{}",
        a.log()
    );
}

#[test]
fn sighup_does_not_kill_the_daemon() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("sighup");
    let a = Supervisor::start(
        &config(
            &zk.connect_string(),
            &root,
            S_STR,
            &[WorkerSpec::new("w", witness.command())],
        ),
        "a",
    );
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    a.signal(Signal::SIGHUP);
    a.wait_log("SIGHUP", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300)); // nothing must happen
    assert!(!a.has_exited(), "{}", a.log());
    assert_eq!(witness.history("w").len(), 1, "{}", witness.timeline("w"));
}

#[test]
fn the_restart_delay_keeps_doubling_when_a_lone_node_hands_off_to_itself() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("lone-handoff");
    let worker = WorkerSpec::new("w", witness.command_with("exit 1"))
        .restart_delay("200ms")
        .handoff_after(1)
        .extra("max_restart_delay = \"10s\"");
    let _a = Supervisor::start(&config(&zk.connect_string(), &root, S_STR, &[worker]), "a");
    let history = witness.wait_count("w", 4, Duration::from_secs(20));
    // Waits of 200ms, 400ms, 800ms between the starts, each counted from the previous exit.
    for (i, pair) in history.windows(2).take(3).enumerate() {
        let waited = gap(&pair[0], &pair[1]);
        let expected = Duration::from_millis(200 << i);
        assert!(
            waited >= expected - Duration::from_millis(50),
            "start {}: waited {waited:?}, expected {expected:?}\n{}",
            i + 1,
            witness.timeline("w")
        );
    }
}

#[test]
fn the_child_inherits_no_descriptor_but_its_standard_streams() {
    let zk = shared_server();
    let root = unique_root("fds");
    let worker = WorkerSpec::new("w", vec!["/bin/sleep".into(), "1000".into()]);
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S_STR, &[worker]), "a");
    a.wait_log("started", Duration::from_secs(20));
    // Children of every thread of a process.
    let children = |pid: u32| -> Vec<u32> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("list the threads")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
            .flat_map(|c| {
                c.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    };
    // supervisor -> spawner -> guard -> child
    let spawner = children(a.pid())[0];
    let guard = children(spawner)[0];
    let child = children(guard)[0];
    // Nor do the spawner and the guard hold anything of the supervisor's or of another guard's: the
    // spawner only its standard streams (the request socket is its stdin) and its own signalfd (it reaps
    // the guards and their orphans), the guard those and its own signalfd and timerfd.
    let above_2 = |pid: u32| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("list descriptors")
            .filter_map(|e| {
                let e = e.ok()?;
                let n: u32 = e.file_name().to_str()?.parse().ok()?;
                (n > 2).then(|| std::fs::read_link(e.path()).ok())?
            })
            .map(|t| t.to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        above_2(spawner),
        ["anon_inode:[signalfd]"],
        "the spawner's descriptors"
    );
    assert_eq!(
        above_2(guard),
        ["anon_inode:[signalfd]", "anon_inode:[timerfd]"],
        "the guard's descriptors"
    );
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{child}/fd"))
        .expect("list the child's descriptors")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2], "the child inherited descriptors");
}

#[test]
fn a_negotiated_timeout_too_short_for_one_grace_period_refuses_that_worker_and_runs_the_others() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("refused");
    // Requested 10 s: a 3 s grace fits `check` (bound 5 s with the 200 ms tick). The test servers grant
    // at most 4 s, whose bound is 2 s: this node must stay out of "big" and still run "small".
    let big = WorkerSpec::new("big", witness.command()).grace_period("3s");
    let small = WorkerSpec::new("small", witness.command()).grace_period("500ms");
    let toml = config(&zk.connect_string(), &root, "10s", &[big, small]);
    let a = Supervisor::start(&toml, "a");
    witness.wait_live("small", Some("a"), Duration::from_secs(20));
    a.wait_log("not joining the election", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1)); // nothing more must happen: no exit, no candidate
    assert!(!a.has_exited(), "the daemon exited:\n{}", a.log());
    let queue = block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        candidates(&client, &format!("{root}/big")).await
    });
    assert!(queue.is_empty(), "a joined big's election: {queue:?}");
    assert!(
        witness.history("big").is_empty(),
        "{}",
        witness.timeline("big")
    );
    assert_eq!(
        witness.history("small").len(),
        1,
        "{}",
        witness.timeline("small")
    );
}
