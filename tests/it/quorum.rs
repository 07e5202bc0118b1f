//! A ZooKeeper server cut off from its quorum while it still answers its clients (issue 11, item 1).
//!
//! Only the quorum's leader expires sessions. A follower that stops hearing from its leader keeps answering
//! reads from its own copy for `syncLimit × tickTime`, and the session activity it sees no longer reaches the
//! leader. Node a's connect string reaches only such a follower, k; node b's names the other two servers. k's
//! quorum and election links are cut (testkit/src/zk/quorum.rs), its client port stays reachable: b takes over
//! once the leader expires a's session, and a's child must be dead by then — zero overlap, whether k gives up
//! before the session timeout S or after it. Once healed, a rejoins behind b.
//!
//! Each test starts its own ensemble; the figures of each run (from the cut to a's child stopping, to b's
//! starting, the gap or overlap) are printed (`--nocapture`).

use std::time::{Duration, Instant};

use testkit::zk::quorum::{QuorumEnsemble, SERVERS, TICK};
use testkit::*;
use zookeeper_client::{Acls, CreateMode};

const S: Duration = Duration::from_secs(2);
const S_STR: &str = "2s";
const ROOT: &str = "/workers";
const PATH: &str = "/workers/w";

/// syncLimit 5 ticks of 200 ms: the cut-off follower gives up after 1 s, before S.
const SYNC_BELOW_S: u32 = 5;
/// syncLimit 20: it keeps answering for 4 s, twice S (the measurement).
const SYNC_ABOVE_S: u32 = 20;

#[test]
fn an_isolated_follower_stops_serving_after_the_sync_timeout_and_catches_up_when_healed() {
    let _clusters = testkit::heavy::shared();
    let ensemble = QuorumEnsemble::start(SYNC_BELOW_S);
    let k = ensemble.follower_index();
    let others: Vec<usize> = (0..SERVERS).filter(|&i| i != k).collect();
    let quorum = ensemble.connect_string(&others);
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let through_k = ensemble.connect_string(&[k]);
    // The client on k lives across the cut: a runtime of its own that keeps running between calls.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let client_on_k = runtime.block_on(async {
        let client = zk_client(&through_k).await;
        client
            .create("/before", b"", &persistent)
            .await
            .expect("a write through the follower before the cut");
        client
    });
    let cut = Instant::now();
    ensemble.isolate(k);
    // A write through k is forwarded to the leader, over a link that is cut.
    let write = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(1),
            client_on_k.create("/through-the-cut", b"", &persistent),
        )
        .await
    });
    assert!(
        !matches!(write, Ok(Ok(_))),
        "a write through zk{} went through the cut",
        k + 1
    );
    let left = ensemble.wait_mode(k, &[], ensemble.sync_timeout() + Duration::from_secs(5));
    println!(
        "zk{} stopped serving {:.2}s after the cut (syncLimit × tickTime {:?})",
        k + 1,
        left.duration_since(cut).as_secs_f64(),
        ensemble.sync_timeout()
    );
    assert!(
        left.duration_since(cut) >= ensemble.sync_timeout() - TICK,
        "zk{} stopped serving {:?} after the cut, before its sync timeout",
        k + 1,
        left.duration_since(cut)
    );
    // The other two keep their quorum, and nothing gets through to k: no election, no rejoin.
    block_on(async {
        let client = zk_client(&quorum).await;
        client
            .create("/during-the-cut", b"", &persistent)
            .await
            .expect("a write through the rest of the quorum");
    });
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(
            ensemble.mode(k),
            None,
            "zk{} serves again while cut off",
            k + 1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let healed = Instant::now();
    ensemble.heal(k);
    ensemble.wait_mode(k, &["follower"], Duration::from_secs(30));
    println!(
        "zk{} serves as a follower again {:.2}s after the heal",
        k + 1,
        healed.elapsed().as_secs_f64()
    );
    block_on(async {
        let client = zk_client(&through_k).await;
        client.sync("/").await.expect("sync through zk{k}");
        for path in ["/before", "/during-the-cut"] {
            assert!(
                client.check_stat(path).await.expect("stat").is_some(),
                "zk{} has not caught up: no {path}",
                k + 1
            );
        }
        assert!(
            client
                .check_stat("/through-the-cut")
                .await
                .expect("stat")
                .is_none(),
            "a write through the cut was applied"
        );
    });
}

#[test]
fn a_follower_cut_off_from_the_quorum_before_s_never_runs_the_worker_twice() {
    follower_cut_off(SYNC_BELOW_S, false);
}

#[test]
fn a_follower_cut_off_from_the_quorum_after_s_never_runs_the_worker_twice() {
    follower_cut_off(SYNC_ABOVE_S, false);
}

/// The node lists every server, but the other two are black-holed for it (client-side proxies): it stays on
/// the cut-off follower, and when that one stops serving it finds no other.
#[test]
fn a_node_that_reaches_only_the_cut_off_follower_of_three_never_runs_the_worker_twice() {
    follower_cut_off(SYNC_ABOVE_S, true);
}

/// The scenario of the module docs; with `a_lists_every_server`, a's connect string names all three servers
/// through client-side proxies, the two other than k black-holed from the start.
fn follower_cut_off(sync_limit: u32, a_lists_every_server: bool) {
    let _clusters = testkit::heavy::shared();
    let ensemble = QuorumEnsemble::start(sync_limit);
    let k = ensemble.follower_index();
    let others: Vec<usize> = (0..SERVERS).filter(|&i| i != k).collect();
    let quorum = ensemble.connect_string(&others);
    let witness = Witness::new();
    // Half the largest grace period S allows with a 200 ms server tick (1 s): at the largest, one proof that
    // comes a heartbeat late lapses the lease, which is not what this test is about.
    let worker = WorkerSpec::new("w", witness.command()).grace_period("500ms");

    let client_proxies: Vec<Proxy> = if a_lists_every_server {
        (0..SERVERS).map(|i| ensemble.client_proxy(i)).collect()
    } else {
        Vec::new()
    };
    for &i in &others {
        if let Some(proxy) = client_proxies.get(i) {
            proxy.partition();
        }
    }
    let a_connect = if a_lists_every_server {
        client_proxies
            .iter()
            .map(Proxy::connect_string)
            .collect::<Vec<_>>()
            .join(",")
    } else {
        ensemble.connect_string(&[k])
    };
    let a = Supervisor::start(&node_config(&a_connect, &worker), "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(30));
    let b = Supervisor::start(&node_config(&quorum, &worker), "b");
    wait_queue(&quorum, PATH, &["a", "b"], Duration::from_secs(15));
    // The cut comes in a steady state: a's child has run for S, so a proof has renewed a's lease (the first
    // lease of a session, from the start of its connection attempt, ends earlier).
    let mut steady = None;
    wait_until(
        Duration::from_secs(30),
        "a's child to have run for S",
        || {
            steady = witness
                .live("w")
                .into_iter()
                .find(|c| c.node == "a" && c.opened.elapsed() >= S);
            steady.is_some()
        },
    );
    let a_child = steady.expect("found");
    let before_cut = witness.history("w").len();
    if before_cut > 1 {
        println!(
            "a started the worker {before_cut} times before the cut\n{}",
            witness.timeline("w")
        );
    }
    let a_session = block_on(async {
        let client = zk_client(&quorum).await;
        candidate_list(&client, PATH).await[0].ephemeral_owner
    });
    assert_eq!(
        ensemble.mode(k).as_deref(),
        Some("follower"),
        "zk{} is no longer a follower",
        k + 1
    );

    let cut = Instant::now();
    ensemble.isolate(k);
    let mut b_child: Option<Conn> = None;
    let mut k_left: Option<Instant> = None;
    wait_until(
        Duration::from_secs(30),
        "b to run the worker, a's child to stop and the cut-off server to stop serving",
        || {
            if b_child.is_none() {
                b_child = witness.live("w").into_iter().find(|c| c.node == "b");
                if b_child.is_some() {
                    assert_session_gone(&quorum, a_session, &witness);
                }
            }
            if k_left.is_none() && ensemble.mode(k).is_none() {
                k_left = Some(Instant::now());
            }
            b_child.is_some() && k_left.is_some() && witness.again(&a_child).closed.is_some()
        },
    );
    let (b_child, k_left) = (b_child.expect("b runs"), k_left.expect("k left"));
    let a_stopped = witness.again(&a_child).closed.expect("a's child stopped");
    let since_cut = |t: Instant| t.duration_since(cut).as_secs_f64();
    let between = match b_child.opened.checked_duration_since(a_stopped) {
        Some(gap) => format!("a gap of {:.2}s", gap.as_secs_f64()),
        None => format!(
            "{:.2}s with two copies",
            (a_stopped - b_child.opened).as_secs_f64()
        ),
    };
    let figures = format!(
        "S {S:?}, syncLimit × tickTime {:?}, a {}: a's child stopped {:.2}s after the cut, b's started \
         {:.2}s after it: {between}; zk{} stopped serving {:.2}s after the cut",
        ensemble.sync_timeout(),
        if a_lists_every_server {
            "lists every server, reaches one"
        } else {
            "names one server"
        },
        since_cut(a_stopped),
        since_cut(b_child.opened),
        k + 1,
        since_cut(k_left)
    );
    println!("{figures}");
    assert!(
        a_stopped <= b_child.opened,
        "two copies of the worker: {figures}\n{}",
        witness.timeline("w")
    );
    // The leader last heard of a's session shortly before the cut: a sends a request at least every S/5, and
    // k reports the session's activity every half tick. The leader expires it no earlier than S after that.
    assert!(
        b_child.opened.duration_since(cut) >= S - S / 5 - TICK,
        "b started before a's session could have expired: {figures}"
    );
    // Still cut off, with k out of the quorum: a starts nothing.
    assert_stable(&witness, "w", Some("b"), Duration::from_secs(1));

    let healed = Instant::now();
    ensemble.heal(k);
    ensemble.wait_mode(k, &["follower"], Duration::from_secs(30));
    wait_queue(&quorum, PATH, &["b", "a"], Duration::from_secs(30));
    println!(
        "a queues behind b {:.2}s after the heal",
        healed.elapsed().as_secs_f64()
    );
    assert_stable(&witness, "w", Some("b"), Duration::from_secs(1));
    witness.assert_no_overlap("w");
    let since_the_cut: Vec<usize> = witness.history("w")[before_cut..]
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        since_the_cut,
        [b_child.id],
        "the worker started again after b took over\n{}",
        witness.timeline("w")
    );
    assert!(!a.has_exited(), "{}", a.log());
    assert!(!b.has_exited(), "{}", b.log());
}

/// Asserts that the quorum no longer holds a candidate of `session` (read after a `sync`, so it reflects the
/// leader's state at least as recent as what b acted on).
fn assert_session_gone(quorum: &str, session: i64, witness: &Witness) {
    let left = block_on(async {
        let client = zk_client(quorum).await;
        client.sync(PATH).await.expect("sync");
        candidate_list(&client, PATH).await
    });
    assert!(
        left.iter().all(|c| c.ephemeral_owner != session),
        "b runs the worker while a's session {session:#x} still holds a candidate: {left:?}\n{}",
        witness.timeline("w")
    );
}

/// A node's config: the worker and S; the rig's `config` sets `server_tick` to the test servers' 200 ms tick.
fn node_config(connect: &str, worker: &WorkerSpec) -> String {
    config(connect, ROOT, S_STR, std::slice::from_ref(worker))
}
