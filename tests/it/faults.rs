//! Hard faults on one standalone server (issue: hard faults): the supervisor killed or frozen, a lost create
//! reply, a candidate deleted by someone else, fencing tokens, the takeover delay.
//!
//! One standalone server is shared by every test of this file; each test has its own root path. Faults of the
//! ZooKeeper servers themselves are in tests/ensemble.rs.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use testkit::*;

/// The session timeout every test here asks for (the test servers allow 400 ms..4 s).
const S: Duration = Duration::from_secs(2);
const S_STR: &str = "2s";

/// Starts supervisor a on `toml` and waits until it runs every worker of `names`; then starts b and waits until
/// it queues behind a in each of their elections (under `root`). Returns a and b.
fn a_leads_b_queues(
    zk: &ZkServer,
    witness: &Witness,
    toml: &str,
    root: &str,
    names: &[&str],
) -> (Supervisor, Supervisor) {
    let a = Supervisor::start(toml, "a");
    for name in names {
        witness.wait_live(name, Some("a"), Duration::from_secs(20));
    }
    let b = Supervisor::start(toml, "b");
    for name in names {
        wait_queue(
            &zk.connect_string(),
            &format!("{root}/{name}"),
            &["a", "b"],
            Duration::from_secs(10),
        );
    }
    (a, b)
}

#[test]
fn a_supervisor_killed_while_leading_takes_its_children_with_it() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("sigkill");
    let names = ["w1", "w2"];
    let workers: Vec<WorkerSpec> = names
        .iter()
        .map(|n| WorkerSpec::new(n, witness.command()))
        .collect();
    let toml = config(&zk.connect_string(), &root, S_STR, &workers);
    let (mut a, _b) = a_leads_b_queues(zk, &witness, &toml, &root, &names);
    let killed = Instant::now();
    a.kill();
    // Every child of the killed supervisor dies within a second, whatever its grace period.
    for name in names {
        witness.wait_none_live(name, Duration::from_secs(1));
    }
    for name in names {
        let moved = witness.wait_live(name, Some("b"), Duration::from_secs(15));
        witness.assert_no_overlap(name);
        // b may start only once a's session has expired: no earlier than S after a's last contact, which was
        // at most S/5 before the kill (the supervisor sends a request every S/5, the client pings more often).
        let after = moved.opened.duration_since(killed);
        assert!(
            after >= S - S / 5,
            "{name} moved {after:?} after the kill, before a's session could expire"
        );
        println!("crash failover for {name}: {after:?} after SIGKILL");
    }
}

#[test]
fn a_frozen_supervisor_loses_its_children_by_the_lease_and_rejoins_at_the_back() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("sigstop");
    let worker = WorkerSpec::new("w", witness.command()).grace_period("500ms");
    let toml = config(&zk.connect_string(), &root, S_STR, &[worker]);
    let (a, _b) = a_leads_b_queues(zk, &witness, &toml, &root, &["w"]);
    let path = format!("{root}/w");
    let frozen = Instant::now();
    a.signal(Signal::SIGSTOP);
    // The guard stops the child by the lease deadline even though the supervisor cannot run: K is at most
    // S - margin after the freeze.
    witness.wait_none_live("w", S);
    let moved = witness.wait_live("w", Some("b"), Duration::from_secs(15));
    witness.assert_no_overlap("w");
    println!(
        "freeze failover: {:?} after SIGSTOP",
        moved.opened.duration_since(frozen)
    );
    // Frozen for twice the session timeout in all.
    if let Some(rest) = (2 * S).checked_sub(frozen.elapsed()) {
        std::thread::sleep(rest);
    }
    a.signal(Signal::SIGCONT);
    // It sees its session is gone, starts nothing, and queues behind b.
    wait_queue(
        &zk.connect_string(),
        &path,
        &["b", "a"],
        Duration::from_secs(15),
    );
    assert_stable(&witness, "w", Some("b"), Duration::from_secs(1));
    witness.assert_no_overlap("w");
    assert_eq!(witness.history("w").len(), 2, "{}", witness.timeline("w"));
}

#[test]
fn a_candidate_whose_create_reply_was_lost_is_found_again() {
    lost_create_reply("lost-reply", true);
}

/// The first create of a new worker's candidate answers NoNode (there is no election path yet): losing that
/// answer must not leave the node looking for a candidate under a path that does not exist.
#[test]
fn a_lost_reply_to_a_create_before_the_election_path_exists_is_retried() {
    lost_create_reply("lost-nonode", false);
}

/// a's first candidate create goes through but its reply is cut (the connection drops); with
/// `path_exists`, the election path is there beforehand, so that create did make a candidate.
fn lost_create_reply(name: &str, path_exists: bool) {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root(name);
    if path_exists {
        block_on(async {
            let client = zk_client(&zk.connect_string()).await;
            let persistent = zookeeper_client::CreateMode::Persistent
                .with_acls(zookeeper_client::Acls::anyone_all());
            client
                .mkdir(&format!("{root}/w"), &persistent)
                .await
                .expect("make the election path");
        });
    }
    let proxy = Proxy::new(&zk.connect_string());
    proxy.lose_next_candidate_create_reply();
    let worker = WorkerSpec::new("w", witness.command());
    let a = Supervisor::start(
        &config(
            &proxy.connect_string(),
            &root,
            S_STR,
            std::slice::from_ref(&worker),
        ),
        "a",
    );
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    // The create happened although its reply was lost, and it was adopted: one candidate, a's, no ghost.
    let path = format!("{root}/w");
    wait_queue(&zk.connect_string(), &path, &["a"], Duration::from_secs(5));
    let _b = Supervisor::start(&config(&zk.connect_string(), &root, S_STR, &[worker]), "b");
    wait_queue(
        &zk.connect_string(),
        &path,
        &["a", "b"],
        Duration::from_secs(10),
    );
    assert_stable(&witness, "w", Some("a"), Duration::from_millis(500));
    // Had a ghost been left, a's clean shutdown would not hand the worker over.
    drop(a);
    witness.wait_live("w", Some("b"), Duration::from_secs(15));
    witness.assert_no_overlap("w");
}

#[test]
fn the_leaders_candidate_deleted_by_someone_else_stops_the_child_at_once() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("deleted");
    let worker = WorkerSpec::new("w", witness.command());
    let toml = config(&zk.connect_string(), &root, S_STR, &[worker]);
    let (a, _b) = a_leads_b_queues(zk, &witness, &toml, &root, &["w"]);
    let path = format!("{root}/w");
    let deleted = delete_leader_candidate(&zk.connect_string(), &path);
    wait_until(Duration::from_secs(2), "a's child to stop", || {
        witness.history("w")[0].closed.is_some()
    });
    let stopped = witness.history("w")[0].closed.expect("closed");
    println!(
        "stopped {:?} after the deletion",
        stopped.duration_since(deleted)
    );
    let next = witness.wait_live("w", Some("b"), Duration::from_secs(10));
    // A hand-deleted candidate makes b lead as of the deletion while a learns of it from its own
    // notification: both race from the same moment, so the two may overlap by about a round trip
    // (README, safety model). SIGKILL keeps that short; it is not the lease's promise.
    if next.opened < stopped {
        let overlap = stopped.duration_since(next.opened);
        println!("overlap after a deletion by hand: {overlap:?}");
        assert!(
            overlap < Duration::from_millis(250),
            "overlap {overlap:?}\n{}",
            witness.timeline("w")
        );
    }
    wait_queue(
        &zk.connect_string(),
        &path,
        &["b", "a"],
        Duration::from_secs(10),
    );
    assert!(a.log().contains("our candidate was deleted"), "{}", a.log());
}

#[test]
fn the_fencing_token_strictly_increases_across_failovers_of_every_kind() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("fencing");
    let worker = WorkerSpec::new("w", witness.command()).restart_delay("100ms");
    let path = format!("{root}/w");
    // Each node reaches ZooKeeper through a proxy of its own, so any one of them can be partitioned.
    let proxies: Vec<Proxy> = (0..3).map(|_| Proxy::new(&zk.connect_string())).collect();
    let ids = ["a", "b", "c"];
    let tomls: Vec<String> = proxies
        .iter()
        .map(|p| {
            config(
                &p.connect_string(),
                &root,
                S_STR,
                std::slice::from_ref(&worker),
            )
        })
        .collect();
    let mut nodes: Vec<Option<Supervisor>> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        nodes.push(Some(Supervisor::start(&tomls[i], id)));
        if i == 0 {
            witness.wait_live("w", Some("a"), Duration::from_secs(20));
        }
    }
    let index = |node: &str| ids.iter().position(|id| *id == node).expect("a known node");
    let leader = || witness.wait_live("w", None, Duration::from_secs(15));
    let queue_full = || {
        block_on(async {
            let client = zk_client(&zk.connect_string()).await;
            wait_until_async(Duration::from_secs(15), "three candidates", || async {
                candidates(&client, &path).await.len() == 3
            })
            .await;
        });
    };
    let moved_from = |old: &Conn| {
        wait_until(Duration::from_secs(15), "the worker to move", || {
            witness.live("w").iter().any(|c| c.node != old.node)
        });
    };
    queue_full();
    // 1. Clean shutdown of the leader.
    let old = leader();
    nodes[index(&old.node)]
        .take()
        .expect("running")
        .signal(Signal::SIGTERM);
    moved_from(&old);
    nodes[index(&old.node)] = Some(Supervisor::start(&tomls[index(&old.node)], &old.node));
    queue_full();
    // 2. The leader's child killed: restarted on the same node, same leadership, same token.
    let old = leader();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(old.pid).unwrap()),
        Signal::SIGKILL,
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the child to restart", || {
        witness.live("w").iter().any(|c| c.id != old.id)
    });
    // 3. The leader's supervisor killed.
    let old = leader();
    nodes[index(&old.node)].take().expect("running").kill();
    moved_from(&old);
    nodes[index(&old.node)] = Some(Supervisor::start(&tomls[index(&old.node)], &old.node));
    queue_full();
    // 4. The leader partitioned away.
    let old = leader();
    proxies[index(&old.node)].partition();
    moved_from(&old);
    proxies[index(&old.node)].heal();
    queue_full();
    // 5. The leader's candidate deleted by someone else.
    let old = leader();
    delete_leader_candidate(&zk.connect_string(), &path);
    moved_from(&old);
    leader();
    witness.assert_no_overlap("w");
    let history = witness.history("w");
    let mut last: Option<&Conn> = None;
    for conn in &history {
        if let Some(prev) = last {
            let same_leadership = prev.znode == conn.znode;
            assert!(
                if same_leadership {
                    conn.token() == prev.token()
                } else {
                    conn.token() > prev.token()
                },
                "token went from {} to {}\n{}",
                prev.token,
                conn.token,
                witness.timeline("w")
            );
        }
        last = Some(conn);
    }
    assert!(history.len() >= 6, "{}", witness.timeline("w"));
}

#[test]
fn a_new_leader_waits_for_the_takeover_delay() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("takeover");
    let mut toml = config(
        &zk.connect_string(),
        &root,
        S_STR,
        &[WorkerSpec::new("w", witness.command())],
    );
    toml = toml.replacen(
        "[zookeeper]\n",
        "[zookeeper]\ntakeover_delay = \"700ms\"\n",
        1,
    );
    let (mut a, _b) = a_leads_b_queues(zk, &witness, &toml, &root, &["w"]);
    a.signal(Signal::SIGTERM);
    let moved = witness.wait_live("w", Some("b"), Duration::from_secs(10));
    let history = witness.history("w");
    let waited = gap(&history[0], &moved);
    assert!(
        waited >= Duration::from_millis(700),
        "b started {waited:?} after a's child died"
    );
    assert_eq!(a.wait_exit(Duration::from_secs(5)).code(), Some(0));
}
