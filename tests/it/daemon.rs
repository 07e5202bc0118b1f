//! The core daemon against a real ZooKeeper, the real binary and real children (issue: core daemon).
//!
//! One standalone server is shared by every test of this file; each test has its own root path.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use testkit::*;

/// The session timeout every test here asks for (the test servers allow 400 ms..4 s).
const S: &str = "2s";

#[test]
fn three_nodes_three_workers_each_runs_exactly_once() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("three");
    let names = ["alpha", "beta", "gamma"];
    let workers: Vec<WorkerSpec> = names
        .iter()
        .map(|n| WorkerSpec::new(n, witness.command()))
        .collect();
    let toml = config(&zk.connect_string(), &root, S, &workers);
    let _nodes: Vec<Supervisor> = ["a", "b", "c"]
        .iter()
        .map(|id| Supervisor::start(&toml, id))
        .collect();
    for name in names {
        witness.wait_live(name, None, Duration::from_secs(20));
    }
    for name in names {
        assert_stable(&witness, name, None, Duration::from_millis(1000));
    }
    for name in names {
        assert_eq!(witness.history(name).len(), 1, "{}", witness.timeline(name));
        witness.assert_no_overlap(name);
    }
    // Every node is a candidate of every election, and the first one is the node that runs it.
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        for name in names {
            let queue = candidate_list(&client, &format!("{root}/{name}")).await;
            let mut nodes: Vec<&str> = queue.iter().map(|c| c.node.as_str()).collect();
            assert_eq!(queue[0].node, witness.live(name)[0].node);
            nodes.sort_unstable();
            assert_eq!(nodes, ["a", "b", "c"], "{queue:?}");
            assert!(queue
                .iter()
                .all(|c| c.version == env!("CARGO_PKG_VERSION") && c.pid > 0));
        }
    });
}

#[test]
fn sigterm_to_the_leader_hands_every_worker_over_without_overlap() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("handoff");
    let names = ["one", "two"];
    let workers: Vec<WorkerSpec> = names
        .iter()
        .map(|n| WorkerSpec::new(n, witness.command()))
        .collect();
    let toml = config(&zk.connect_string(), &root, S, &workers);
    let mut a = Supervisor::start(&toml, "a");
    for name in names {
        witness.wait_live(name, Some("a"), Duration::from_secs(20));
    }
    let b = Supervisor::start(&toml, "b");
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        for name in names {
            let path = format!("{root}/{name}");
            wait_until_async(Duration::from_secs(10), "b to queue behind a", || async {
                candidates(&client, &path).await.len() == 2
            })
            .await;
        }
    });
    a.signal(Signal::SIGTERM);
    let status = a.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", a.log());
    for name in names {
        let next = witness.wait_live(name, Some("b"), Duration::from_secs(10));
        let history = witness.history(name);
        assert_eq!(history.len(), 2, "{}", witness.timeline(name));
        witness.assert_no_overlap(name);
        println!(
            "clean handoff gap for {name}: {:?} (old child's death -> new child's start)",
            gap(&history[0], &next)
        );
    }
    drop(b);
}

#[test]
fn a_killed_child_restarts_on_the_same_node_after_restart_delay() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("restart");
    let worker = WorkerSpec::new("w", witness.command()).restart_delay("500ms");
    let toml = config(&zk.connect_string(), &root, S, &[worker]);
    let _a = Supervisor::start(&toml, "a");
    let first = witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let _b = Supervisor::start(&toml, "b");
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        let path = format!("{root}/w");
        wait_until_async(Duration::from_secs(10), "b to queue", || async {
            candidates(&client, &path).await.len() == 2
        })
        .await;
    });
    kill(
        Pid::from_raw(i32::try_from(first.pid).unwrap()),
        Signal::SIGKILL,
    )
    .expect("kill the child");
    let history = witness.wait_count("w", 2, Duration::from_secs(10));
    let second = witness.wait_live("w", None, Duration::from_secs(5));
    assert_eq!(second.node, "a", "{}", witness.timeline("w"));
    let gap = gap(&history[0], &second);
    // The witness may see the close a little after the death; the delay is counted from the death.
    assert!(
        gap >= Duration::from_millis(400),
        "restarted after {gap:?}\n{}",
        witness.timeline("w")
    );
    assert_stable(&witness, "w", None, Duration::from_millis(500));
    assert!(
        witness.history("w").iter().all(|c| c.node == "a"),
        "{}",
        witness.timeline("w")
    );
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_at_the_grace_period() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("grace");
    let worker =
        WorkerSpec::new("stubborn", witness.command_with("trap '' TERM")).grace_period("800ms");
    let toml = config(&zk.connect_string(), &root, S, &[worker]);
    let mut a = Supervisor::start(&toml, "a");
    witness.wait_live("stubborn", Some("a"), Duration::from_secs(20));
    let asked = Instant::now();
    a.signal(Signal::SIGTERM);
    witness.wait_none_live("stubborn", Duration::from_secs(5));
    let closed = witness.history("stubborn")[0].closed.expect("closed");
    let lived = closed.duration_since(asked);
    assert!(
        lived >= Duration::from_millis(700),
        "killed after {lived:?}, before its grace period"
    );
    assert_eq!(
        a.wait_exit(Duration::from_secs(5)).code(),
        Some(0),
        "{}",
        a.log()
    );
    assert!(a.log().contains("signal 9"), "{}", a.log());
}

#[test]
fn a_second_signal_skips_the_grace_period() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("second");
    // S = 4s with the test servers' tick allows a grace period of up to 2s.
    let worker =
        WorkerSpec::new("stubborn", witness.command_with("trap '' TERM")).grace_period("2s");
    let toml = config(&zk.connect_string(), &root, "4s", &[worker]);
    let mut a = Supervisor::start(&toml, "a");
    witness.wait_live("stubborn", Some("a"), Duration::from_secs(20));
    a.signal(Signal::SIGTERM);
    a.wait_log("stopping", Duration::from_secs(5));
    let asked = Instant::now();
    a.signal(Signal::SIGTERM);
    witness.wait_none_live("stubborn", Duration::from_secs(5));
    let lived = witness.history("stubborn")[0]
        .closed
        .expect("closed")
        .duration_since(asked);
    assert_eq!(
        a.wait_exit(Duration::from_secs(5)).code(),
        Some(0),
        "{}",
        a.log()
    );
    assert!(
        lived < Duration::from_millis(1500),
        "the second signal did not skip the grace: {lived:?}"
    );
}

#[test]
fn grandchildren_are_stopped_with_the_child() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("grandchildren");
    // Two grandchildren hold the witness connection too: one in the child's process group, one that left it
    // with setsid. The connection closes only when every one of them is gone.
    let shell = "read -r _ <&3 & setsid bash -c 'read -r _ <&3' & sleep 0.2";
    let worker = WorkerSpec::new("family", witness.command_with(shell));
    let toml = config(&zk.connect_string(), &root, S, &[worker]);
    let mut a = Supervisor::start(&toml, "a");
    witness.wait_live("family", Some("a"), Duration::from_secs(20));
    a.signal(Signal::SIGTERM);
    assert_eq!(
        a.wait_exit(Duration::from_secs(10)).code(),
        Some(0),
        "{}",
        a.log()
    );
    witness.wait_none_live("family", Duration::from_secs(1));
}

#[test]
fn the_leader_losing_its_session_stops_its_child_before_another_node_starts_it() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("partition");
    let worker = WorkerSpec::new("w", witness.command());
    let proxy = Proxy::new(&zk.connect_string());
    let via_proxy = config(
        &proxy.connect_string(),
        &root,
        S,
        std::slice::from_ref(&worker),
    );
    let direct = config(&zk.connect_string(), &root, S, &[worker]);
    let a = Supervisor::start(&via_proxy, "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let _b = Supervisor::start(&direct, "b");
    let path = format!("{root}/w");
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        wait_until_async(Duration::from_secs(10), "b to queue", || async {
            candidates(&client, &path).await.len() == 2
        })
        .await;
    });
    proxy.partition();
    let moved = witness.wait_live("w", Some("b"), Duration::from_secs(15));
    let history = witness.history("w");
    witness.assert_no_overlap("w");
    println!("partition gap: {:?}", gap(&history[0], &moved));
    proxy.heal();
    // a rejoins behind b, and b keeps the worker.
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        wait_until_async(Duration::from_secs(20), "a to rejoin behind b", || async {
            let queue: Vec<String> = candidates(&client, &path)
                .await
                .into_iter()
                .map(|(_, node)| node)
                .collect();
            queue == ["b", "a"]
        })
        .await;
    });
    assert_stable(&witness, "w", None, Duration::from_millis(500));
    witness.assert_no_overlap("w");
    assert!(a.log().contains("session ended"), "{}", a.log());
}

#[test]
fn a_command_that_does_not_exist_backs_off_then_hands_off() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("missing");
    let broken = WorkerSpec::new("w", vec!["/nonexistent/zk-supervise-test".into()])
        .restart_delay("100ms")
        .handoff_after(3);
    let working = WorkerSpec::new("w", witness.command()).handoff_after(3);
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S, &[broken]), "a");
    a.wait_log("cannot start the command", Duration::from_secs(20));
    let _b = Supervisor::start(&config(&zk.connect_string(), &root, S, &[working]), "b");
    witness.wait_live("w", Some("b"), Duration::from_secs(20));
    let log = a.log();
    assert!(log.contains("/nonexistent/zk-supervise-test"), "{log}");
    assert!(log.contains("handing off"), "{log}");
    assert!(!a.has_exited(), "the daemon must keep running\n{log}");
    assert_stable(&witness, "w", None, Duration::from_millis(500));
}

#[test]
fn invalid_utf8_and_very_long_lines_are_logged() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("output");
    let shell = "printf 'before \\377\\376 after\\n'; head -c 100000 /dev/zero | tr '\\0' x; echo; echo still-here";
    let worker = WorkerSpec::new("noisy", witness.command_with(shell));
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S, &[worker]), "a");
    witness.wait_live("noisy", Some("a"), Duration::from_secs(20));
    a.wait_log("still-here", Duration::from_secs(10));
    let log = a.log();
    assert!(log.contains("before \u{fffd}\u{fffd} after"), "{log}");
    let longest = log
        .lines()
        .map(|l| l.matches('x').count())
        .max()
        .unwrap_or(0);
    assert!(
        (16 * 1024..100_000).contains(&longest),
        "longest x run {longest}"
    );
    assert!(!a.has_exited());
    assert_eq!(
        witness.history("noisy").len(),
        1,
        "{}",
        witness.timeline("noisy")
    );
}

#[test]
fn zookeeper_unreachable_at_start_is_retried_and_nothing_runs_without_a_lease() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("unreachable");
    let proxy = Proxy::new(&zk.connect_string());
    proxy.partition();
    let worker = WorkerSpec::new("w", witness.command());
    let a = Supervisor::start(&config(&proxy.connect_string(), &root, S, &[worker]), "a");
    a.wait_log("cannot reach zookeeper", Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500)); // nothing must start meanwhile
    assert!(witness.history("w").is_empty(), "{}", witness.timeline("w"));
    proxy.heal();
    witness.wait_live("w", Some("a"), Duration::from_secs(30));
}

#[test]
fn a_missing_working_dir_or_unknown_user_is_one_log_line_and_a_failed_start() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("bad-start");
    let workers = [
        WorkerSpec::new("nodir", witness.command())
            .restart_delay("100ms")
            .extra("working_dir = \"/nonexistent/zk-supervise-dir\""),
        WorkerSpec::new("nouser", witness.command())
            .restart_delay("100ms")
            .extra("user = \"zk-supervise-no-such-user\""),
        WorkerSpec::new("fine", witness.command()),
    ];
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S, &workers), "a");
    witness.wait_live("fine", Some("a"), Duration::from_secs(20));
    a.wait_log(
        "working_dir /nonexistent/zk-supervise-dir: No such file or directory",
        Duration::from_secs(10),
    );
    a.wait_log(
        "unknown user \"zk-supervise-no-such-user\"",
        Duration::from_secs(10),
    );
    // Counted as failed starts: after handoff_after (5 by default) of them, the node hands off (and, alone,
    // takes the worker back at the back of the queue).
    a.wait_log("handing off", Duration::from_secs(20));
    assert!(!a.has_exited(), "{}", a.log());
    assert!(witness.history("nodir").is_empty() && witness.history("nouser").is_empty());
    assert_eq!(
        witness.history("fine").len(),
        1,
        "{}",
        witness.timeline("fine")
    );
}
