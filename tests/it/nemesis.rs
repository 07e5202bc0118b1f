//! The seeded fault schedule (testkit's `nemesis`: the schedule, the cluster and the run live there, so that
//! bench/nemesis.rs plays the same one) and the tests of its parts: the planner, the recorder, the checker.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, UNIX_EPOCH};

use testkit::history::{self, Configured, Fault, Recorder};
use testkit::nemesis::*;
use testkit::*;

/// The CI form: a one-minute schedule.
#[test]
fn a_seeded_fault_schedule_keeps_every_rule() {
    let _alone = testkit::heavy::alone();
    let options = Options::from_env(
        Duration::from_secs(60),
        "cargo test --test it -- --nocapture nemesis::a_seeded_fault_schedule_keeps_every_rule",
    );
    let outcome = run(&options);
    println!(
        "{}\nschedule (began .. healed):\n{}",
        outcome.figures, outcome.schedule
    );
    if let Some(failure) = outcome.failure {
        panic!("{failure}");
    }
}

#[test]
fn a_seed_plans_the_same_schedule() {
    let workers: BTreeMap<String, WorkerDef> = (0..WORKERS)
        .map(|i| {
            let name = format!("w{i:02}");
            (
                name.clone(),
                WorkerDef::random(name, &mut Rng::new(i as u64)),
            )
        })
        .collect();
    let first = plan(
        &mut Rng::new(42),
        Duration::from_secs(600),
        2,
        &Kind::ALL,
        &workers,
    );
    let again = plan(
        &mut Rng::new(42),
        Duration::from_secs(600),
        2,
        &Kind::ALL,
        &workers,
    );
    let show = |p: &[Planned]| format!("{p:?}");
    assert_eq!(show(&first), show(&again));
    // Every kind comes up in ten minutes; never more than two faults at once, one server and one reload at a
    // time, one process and one link fault per node.
    let kinds: BTreeSet<Kind> = first.iter().map(|p| p.kind).collect();
    assert_eq!(kinds.len(), Kind::ALL.len(), "kinds planned: {kinds:?}");
    for p in &first {
        let during: Vec<&Planned> = first
            .iter()
            .filter(|q| !q.hold.is_zero() && q.at <= p.at && p.at < q.at + q.hold)
            .collect();
        assert!(during.len() <= 2, "more than two at {:?}: {during:?}", p.at);
        let count = |scope: Scope, target: Option<usize>| {
            during
                .iter()
                .filter(|q| q.kind.scope() == scope && target.is_none_or(|t| q.target == t))
                .count()
        };
        assert!(
            count(Scope::Server, None) <= 1 && count(Scope::Config, None) <= 1,
            "at {:?}: {during:?}",
            p.at
        );
        for n in 0..NODES.len() {
            assert!(
                count(Scope::Process, Some(n)) <= 1 && count(Scope::Link, Some(n)) <= 1,
                "two faults of a kind on node {n} at {:?}: {during:?}",
                p.at
            );
        }
    }
}

/// Runs a recorder command as the daemon would, with the environment it gives a worker.
#[cfg(test)]
fn spawn_worker(argv: &[String], worker: &str, node: &str, token: u64) -> std::process::Child {
    std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("ZK_SUPERVISE_WORKER", worker)
        .env("ZK_SUPERVISE_NODE", node)
        .env("ZK_SUPERVISE_FENCING_TOKEN", token.to_string())
        .env(
            "ZK_SUPERVISE_ZNODE",
            format!("/r/{worker}/_c_{node}-0000000001"),
        )
        .spawn()
        .expect("spawn bash")
}

#[test]
fn the_recorder_sees_each_life_from_connect_to_death() {
    let recorder = Recorder::new();
    let mut first = spawn_worker(&recorder.command(), "w", "a", 7);
    wait_until(Duration::from_secs(5), "the first worker to report", || {
        recorder.live().len() == 1
    });
    first.kill().expect("kill the first worker");
    first.wait().expect("reap it");
    wait_until(Duration::from_secs(5), "its end to be seen", || {
        recorder.live().is_empty()
    });
    let mut second = spawn_worker(&recorder.command(), "w", "b", 9);
    wait_until(
        Duration::from_secs(5),
        "the second worker to report",
        || recorder.live().len() == 1,
    );
    let all = recorder.all();
    assert_eq!(all.len(), 2, "{all:?}");
    let (a, b) = (&all[0], &all[1]);
    assert_eq!(
        (
            a.worker.as_str(),
            a.node.as_str(),
            a.token(),
            a.pid,
            a.znode.as_str()
        ),
        ("w", "a", 7, first.id(), "/r/w/_c_a-0000000001")
    );
    assert_eq!((b.node.as_str(), b.token(), b.pid), ("b", 9, second.id()));
    assert!(
        a.closed.is_some_and(|closed| closed <= b.opened) && b.is_live(),
        "{all:?}"
    );
    drop(recorder);
    // Without its recorder a worker reads end-of-file and exits.
    let exited = poll_until(Duration::from_secs(5), &mut || {
        second.try_wait().ok().flatten().is_some()
    });
    assert!(exited, "the worker outlived its recorder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_cuts_one_direction_or_slows_every_chunk() {
    use zookeeper_client::{Acls, CreateMode};
    const SECOND: Duration = Duration::from_secs(1);
    let server = shared_server();
    let proxy = Proxy::new(&server.connect_string());
    let root = unique_root("proxy-modes");
    let via_proxy = zk_client(&proxy.connect_string()).await;
    let direct = zk_client(&server.connect_string()).await;
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    via_proxy
        .create(&root, b"", &options)
        .await
        .expect("create through the proxy");
    let works_again = || async {
        wait_until_async(
            10 * SECOND,
            "the proxied client to work after heal",
            || async { via_proxy.get_data(&root).await.is_ok() },
        )
        .await;
    };

    // Replies cut: the server gets the request, the client never hears back.
    proxy.cut(Direction::ToClient);
    assert!(proxy.is_cut(Direction::ToClient) && !proxy.is_partitioned());
    let heard = format!("{root}/heard");
    let unanswered = tokio::time::timeout(SECOND, via_proxy.create(&heard, b"", &options)).await;
    assert!(
        unanswered.is_err(),
        "an answer came through: {unanswered:?}"
    );
    assert!(
        direct.check_stat(&heard).await.expect("stat").is_some(),
        "the request did not reach the server"
    );
    proxy.heal();
    works_again().await;

    // Requests cut: the server never gets it.
    proxy.cut(Direction::ToServer);
    let lost = format!("{root}/lost");
    let unanswered = tokio::time::timeout(SECOND, via_proxy.create(&lost, b"", &options)).await;
    assert!(
        unanswered.is_err(),
        "an answer came through: {unanswered:?}"
    );
    assert!(
        direct.check_stat(&lost).await.expect("stat").is_none(),
        "the request reached the server"
    );
    proxy.heal();
    works_again().await;

    // Slow: each chunk is held 400-500 ms each way, so a round trip takes at least 800 ms.
    proxy.slow(Duration::from_millis(400), Duration::from_millis(500));
    let began = Instant::now();
    via_proxy
        .get_data(&root)
        .await
        .expect("a read on a slow link");
    let slow = began.elapsed();
    assert!(
        slow >= Duration::from_millis(800),
        "a round trip took {slow:?}"
    );
    proxy.heal();
    let began = Instant::now();
    via_proxy.get_data(&root).await.expect("a read once healed");
    let fast = began.elapsed();
    // A chunk already held when the link healed (the client's ping, say) still takes its up to 500 ms, and
    // a request may queue behind it; no longer slowed both ways means under the 800 ms of a slow round trip.
    assert!(
        fast < Duration::from_millis(800),
        "a round trip took {fast:?} once healed"
    );
    direct.delete(&heard, None).await.expect("delete");
    direct.delete(&root, None).await.expect("delete");
}

#[test]
fn the_checker_finds_each_kind_of_violation() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut conns = Vec::new();
    let mut conn = |worker: &str, node: &str, token: u64, znode: &str, opened, closed| {
        conns.push(Conn {
            id: conns.len(),
            worker: worker.into(),
            node: node.into(),
            token: token.to_string(),
            znode: znode.into(),
            pid: 1,
            opened,
            closed,
        });
    };
    // w1 keeps every rule: a clean handoff, then a restart within b's leadership before the window settles.
    conn("w1", "a", 10, "/w1/z1", at(0), Some(at(1_000)));
    conn("w1", "b", 11, "/w1/z2", at(1_000), Some(at(3_000)));
    conn("w1", "b", 11, "/w1/z2", at(3_200), None);
    // w2: b starts while a still runs.
    conn("w2", "a", 10, "/w2/z1", at(0), Some(at(2_000)));
    conn("w2", "b", 20, "/w2/z2", at(1_500), None);
    // w3: a new leadership with a smaller token.
    conn("w3", "a", 30, "/w3/z1", at(0), Some(at(1_000)));
    conn("w3", "b", 25, "/w3/z2", at(1_000), None);
    // w4: configured, but gone after the fault.
    conn("w4", "a", 1, "/w4/z1", at(0), Some(at(2_000)));
    // w5: moves in the middle of a quiet window.
    conn("w5", "a", 1, "/w5/z1", at(0), Some(at(10_000)));
    conn("w5", "b", 2, "/w5/z2", at(10_000), None);
    let faults = [Fault {
        id: 0,
        kind: "partition",
        target: "node a".into(),
        detail: String::new(),
        began: at(100),
        healed: Some(at(2_500)),
    }];
    let configured = [Configured {
        from: t0,
        workers: ["w1", "w2", "w3", "w4", "w5"].map(String::from).into(),
    }];
    let checked = history::check(&history::Input {
        conns: &conns,
        faults: &faults,
        configured: &configured,
        started: t0,
        ended: at(20_000),
        settle: SETTLE,
        anomalies: &[],
    });
    let found: BTreeSet<(&str, &str)> = checked
        .violations
        .iter()
        .map(|v| (v.rule, v.worker.as_deref().unwrap_or("")))
        .collect();
    let want: BTreeSet<(&str, &str)> = [
        ("overlap", "w2"),
        ("token", "w3"),
        ("liveness", "w4"),
        ("stability", "w5"),
    ]
    .into();
    assert_eq!(found, want, "{:#?}", checked.violations);
    assert_eq!((checked.overlaps, checked.windows_checked), (1, 1));
    assert_eq!(checked.overlap_total, Duration::from_millis(500));
    // w4 never came back: the partition's window never saw every worker once.
    assert_eq!(checked.unrecovered.get("partition"), Some(&1));
    let (worst, worker, _) = checked.worst_no_copy.expect("w4 had no copy");
    assert_eq!(
        (worst, worker.as_str()),
        (Duration::from_millis(17_500), "w4")
    );

    // A child killed: its end comes just after the kill, which opens the window; it recovers with the restart.
    let life = |id: usize, opened, closed| Conn {
        id,
        worker: "w1".into(),
        node: "a".into(),
        token: "1".into(),
        znode: "/w1/z1".into(),
        pid: 1,
        opened,
        closed,
    };
    let conns = [life(0, t0, Some(at(1_001))), life(1, at(1_300), None)];
    let faults = [Fault {
        id: 0,
        kind: "child-kill",
        target: "w1 on a".into(),
        detail: String::new(),
        began: at(1_000),
        healed: Some(at(1_000)),
    }];
    let configured = [Configured {
        from: t0,
        workers: ["w1".to_owned()].into(),
    }];
    let checked = history::check(&history::Input {
        conns: &conns,
        faults: &faults,
        configured: &configured,
        started: t0,
        ended: at(10_000),
        settle: SETTLE,
        anomalies: &[],
    });
    assert!(checked.violations.is_empty(), "{:#?}", checked.violations);
    assert_eq!(
        checked.recoveries.get("child-kill"),
        Some(&vec![Duration::from_millis(300)])
    );
}

#[test]
fn log_lines_are_found_by_their_time_and_worker() {
    let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    assert_eq!(history::rfc3339(t), "2023-11-14T22:13:20.123456Z");
    assert_eq!(history::rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    let log = "2023-11-14T22:13:19.000000Z  INFO zk_supervise::worker: started worker=w1 pid=1\n\
               2023-11-14T22:13:20.500000Z  INFO zk_supervise::worker: started worker=w2 pid=2\n\
               2023-11-14T22:13:20.600000Z  WARN zk_supervise::session: disconnected\n\
               2023-11-14T22:13:22.000000Z  INFO zk_supervise::worker: started worker=w2 pid=3";
    let lines = history::log_window(
        log,
        "2023-11-14T22:13:20.000000Z",
        "2023-11-14T22:13:21.000000Z",
        Some("w2"),
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with("pid=2") && lines[1].ends_with("disconnected"));
}
