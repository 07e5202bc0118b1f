//! No worker stranded (issue 11, items 2, 3, 5d, 5f): a candidate that outlives what it stood for — a
//! worker removed or handed off while the link to ZooKeeper is silent, a reload reverted while the old
//! child still stops, an election path deleted while nobody leads, a shutdown whose deletes fail — must
//! never leave a worker running nowhere, nor `status` saying a dead child runs.
//!
//! One standalone server is shared by every test of this file; each test has its own root path. A node
//! whose link must go silent reaches the server through a [`Proxy`].

use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use testkit::*;

/// The session timeout of every test here: the longest the test servers grant, so that a silence of half
/// of it leaves the lease (and the session) alive.
const S: Duration = Duration::from_secs(4);
const S_STR: &str = "4s";

/// The environment variable `name` of the live process `pid`, read from /proc.
fn env_of(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()).map(<[u8]>::to_vec))
        .map(|v| {
            std::ffi::OsStr::from_bytes(&v)
                .to_string_lossy()
                .into_owned()
        })
}

/// The session that owns the candidate of node `node` in the election at `path`.
fn owner_of(connect: &str, path: &str, node: &str) -> Option<i64> {
    block_on(async {
        let client = zk_client(connect).await;
        candidate_list(&client, path)
            .await
            .into_iter()
            .find(|c| c.node == node)
            .map(|c| c.ephemeral_owner)
    })
}

/// Waits until `node` has applied `n` reloads in all.
fn wait_reloads(node: &Supervisor, n: usize) {
    wait_until(Duration::from_secs(10), &format!("{n} reloads"), || {
        node.log().matches(" reloaded").count() >= n
    });
}

/// Waits until `node` has stopped reloading (no new reload for 300 ms: every SIGHUP sent so far has been
/// handled); returns how many reloads it has applied in all.
fn settle_reloads(node: &Supervisor) -> usize {
    let count = || node.log().matches(" reloaded").count();
    let mut last = (count(), Instant::now());
    wait_until(Duration::from_secs(15), "the reloads to settle", || {
        let now = count();
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() >= Duration::from_millis(300)
    });
    last.0
}

/// A worker that only ever runs when its node is told to stop it: a witness child that dies on SIGTERM.
fn quick(name: &str, witness: &Witness) -> WorkerSpec {
    WorkerSpec::new(name, witness.command()).grace_period("100ms")
}

#[test]
fn a_worker_removed_while_the_link_is_silent_moves_to_another_node_and_status_never_shows_it_dead()
{
    let zk = shared_server();
    let proxy = Proxy::new(&zk.connect_string());
    let witness = Witness::new();
    let root = unique_root("removed-silent");
    // y keeps node a's session busy; its short grace period keeps its guard's stop point past the silence.
    let (x, y) = (quick("x", &witness), quick("y", &witness));
    let a = Supervisor::start(
        &config(
            &proxy.connect_string(),
            &root,
            S_STR,
            &[x.clone(), y.clone()],
        ),
        "a",
    );
    witness.wait_live("x", Some("a"), Duration::from_secs(20));
    witness.wait_live("y", Some("a"), Duration::from_secs(20));
    let b = Supervisor::start(
        &config(&zk.connect_string(), &root, S_STR, &[x, y.clone()]),
        "b",
    );
    let x_path = format!("{root}/x");
    wait_queue(
        &zk.connect_string(),
        &x_path,
        &["a", "b"],
        Duration::from_secs(10),
    );
    let session = owner_of(&zk.connect_string(), &format!("{root}/y"), "a");
    let sampler = StatusSampler::start(&b.config_path(), "x");

    // x removed from a while a's link is silent for S/2: the client reconnects, the session lives.
    a.replace_config(&config(&proxy.connect_string(), &root, S_STR, &[y]));
    proxy.partition();
    let silent = Instant::now();
    a.signal(Signal::SIGHUP);
    a.wait_log("reload: removed", Duration::from_secs(5));
    std::thread::sleep((S / 2).saturating_sub(silent.elapsed())); // the silence
    proxy.heal();

    // x runs on b (a's candidate did not stay first), once, and a's candidate is gone.
    witness.wait_live("x", Some("b"), S * 3);
    wait_queue(&zk.connect_string(), &x_path, &["b"], S * 2);
    wait_until(S, "status to show x running on b", || {
        status_sample(&b.config_path(), "x")
            .and_then(|s| s.running)
            .is_some_and(|(node, _)| node == "b")
    });
    let samples = sampler.finish();
    witness.assert_no_overlap("x");
    assert_status_never_showed_a_dead_child(&witness, "x", &samples);
    assert!(
        samples.iter().any(|s| s.running.is_some()),
        "status never answered"
    );
    assert_eq!(
        owner_of(&zk.connect_string(), &format!("{root}/y"), "a"),
        session,
        "node a's session did not live through the silence: the test proves nothing\n{}",
        a.log()
    );
}

#[test]
fn a_handoff_cancelled_by_a_reload_after_its_delete_was_lost_leaves_no_candidate_first() {
    let zk = shared_server();
    let proxy = Proxy::new(&zk.connect_string());
    let witness = Witness::new();
    let root = unique_root("handoff-lost");
    let dir = TempDir::new("handoff-lost");
    let go = dir.path().join("go");
    // On a, x fails when told to (and hands off after one failure); on b it runs.
    let script = format!(
        "if [ \"$ZK_SUPERVISE_NODE\" = a ]; then while [ ! -e {} ]; do sleep 0.05; done; exit 3; fi",
        go.display()
    );
    let x = WorkerSpec::new("x", witness.command_with(&script))
        .handoff_after(1)
        .grace_period("100ms");
    let y = quick("y", &witness);
    let a = Supervisor::start(
        &config(
            &proxy.connect_string(),
            &root,
            S_STR,
            &[x.clone(), y.clone()],
        ),
        "a",
    );
    witness.wait_live("x", Some("a"), Duration::from_secs(20));
    let _b = Supervisor::start(&config(&zk.connect_string(), &root, S_STR, &[x]), "b");
    let x_path = format!("{root}/x");
    wait_queue(
        &zk.connect_string(),
        &x_path,
        &["a", "b"],
        Duration::from_secs(10),
    );
    let session = owner_of(&zk.connect_string(), &format!("{root}/y"), "a");

    // x fails on a, a hands off, the delete of its candidate is lost with a's connection (and a cannot
    // reconnect for S/4) — and x is removed from a while the handoff is unfinished.
    proxy.lose_next_candidate_delete();
    std::fs::write(&go, "").expect("tell x to fail");
    proxy.wait_lost_delete(Duration::from_secs(5));
    let lost = Instant::now();
    a.replace_config(&config(&proxy.connect_string(), &root, S_STR, &[y]));
    a.signal(Signal::SIGHUP);
    a.wait_log("reload: removed", Duration::from_secs(5));
    std::thread::sleep((S / 4).saturating_sub(lost.elapsed())); // the rest of the outage
    proxy.heal();

    witness.wait_live("x", Some("b"), S * 3);
    wait_queue(&zk.connect_string(), &x_path, &["b"], S * 2);
    witness.assert_no_overlap("x");
    assert_eq!(
        owner_of(&zk.connect_string(), &format!("{root}/y"), "a"),
        session,
        "node a's session did not live through the outage: the test proves nothing\n{}",
        a.log()
    );
}

#[test]
fn a_worker_removed_and_put_back_while_its_child_stops_starts_again() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("removed-back");
    // x ignores SIGTERM: it stops only at the end of its grace period.
    let x = WorkerSpec::new("x", witness.command_with("trap '' TERM")).grace_period("2s");
    let u = quick("u", &witness);
    let both = config(&zk.connect_string(), &root, S_STR, &[x, u.clone()]);
    let a = Supervisor::start(&both, "a");
    let first = witness.wait_live("x", Some("a"), Duration::from_secs(20));
    witness.wait_live("u", Some("a"), Duration::from_secs(20));

    a.replace_config(&config(&zk.connect_string(), &root, S_STR, &[u]));
    a.signal(Signal::SIGHUP);
    a.wait_log("reload: removed", Duration::from_secs(5));
    // Put back, unchanged, while the old child is still stopping.
    a.replace_config(&both);
    a.signal(Signal::SIGHUP);
    wait_reloads(&a, 2);
    assert!(
        witness.again(&first).is_live(),
        "x stopped before it was put back: the test proves nothing\n{}",
        witness.timeline("x")
    );

    let history = witness.wait_count("x", 2, Duration::from_secs(15));
    assert_eq!(history[1].node, "a");
    witness.assert_no_overlap("x");
    assert_stable(&witness, "x", Some("a"), Duration::from_millis(500));
    assert_eq!(witness.history("u").len(), 1, "{}", witness.timeline("u"));
}

#[test]
fn a_worker_changed_and_changed_back_while_its_child_stops_runs_the_last_definition() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("changed-back");
    let defined = |v: &str| {
        WorkerSpec::new("x", witness.command_with("trap '' TERM"))
            .grace_period("2s")
            .extra(&format!("env = {{ DEFINITION = \"{v}\" }}"))
    };
    let u = quick("u", &witness);
    let file = |v: &str| config(&zk.connect_string(), &root, S_STR, &[defined(v), u.clone()]);
    let a = Supervisor::start(&file("A"), "a");
    let first = witness.wait_live("x", Some("a"), Duration::from_secs(20));
    witness.wait_live("u", Some("a"), Duration::from_secs(20));

    // A → B → A while the child of A still stops.
    a.replace_config(&file("B"));
    a.signal(Signal::SIGHUP);
    a.wait_log("reload: changed", Duration::from_secs(5));
    a.replace_config(&file("A"));
    a.signal(Signal::SIGHUP);
    wait_reloads(&a, 2);
    assert!(
        witness.again(&first).is_live(),
        "x stopped before it was changed back: the test proves nothing\n{}",
        witness.timeline("x")
    );

    let history = witness.wait_count("x", 2, Duration::from_secs(15));
    let second = witness.wait_live("x", Some("a"), Duration::from_secs(5));
    assert_eq!(second.id, history[1].id, "{}", witness.timeline("x"));
    assert_eq!(env_of(second.pid, "DEFINITION").as_deref(), Some("A"));
    assert_stable(&witness, "x", Some("a"), Duration::from_millis(500));
    assert_eq!(witness.history("x").len(), 2, "{}", witness.timeline("x"));
    assert_eq!(witness.history("u").len(), 1, "{}", witness.timeline("u"));
}

#[test]
fn a_sighup_storm_restarts_nothing_unchanged_and_the_last_file_wins() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("storm");
    let y = |v: &str| quick("y", &witness).extra(&format!("env = {{ DEFINITION = \"{v}\" }}"));
    let (u, x) = (quick("u", &witness), quick("x", &witness));
    let first = config(
        &zk.connect_string(),
        &root,
        S_STR,
        &[u.clone(), x.clone(), y("A")],
    );
    let second = config(&zk.connect_string(), &root, S_STR, &[u.clone(), y("B")]);
    let a = Supervisor::start(&first, "a");
    for name in ["u", "x", "y"] {
        witness.wait_live(name, Some("a"), Duration::from_secs(20));
    }

    // 50 SIGHUPs in a second, the file unchanged: nothing restarts.
    for _ in 0..50 {
        a.signal(Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(20));
    }
    let reloads = settle_reloads(&a);
    assert_eq!(
        a.log()
            .matches("added=0 removed=0 changed=0 unchanged=3")
            .count(),
        reloads,
        "{}",
        a.log()
    );
    for name in ["u", "x", "y"] {
        assert_eq!(witness.history(name).len(), 1, "{}", witness.timeline(name));
    }

    // 50 SIGHUPs in a second, the file going back and forth (x removed and put back, y changed and
    // changed back), ending on the second file: u is never touched, x ends removed, y ends as B.
    // The last SIGHUP goes once every earlier one has been handled, so the last reload reads the last
    // file; the storm's own reloads may come in any number (signals coalesce).
    let storm = |last: &str| {
        for i in 0..50 {
            a.replace_config(if i % 2 == 0 { &second } else { &first });
            a.signal(Signal::SIGHUP);
            std::thread::sleep(Duration::from_millis(20));
        }
        let reloads = settle_reloads(&a);
        a.replace_config(last);
        a.signal(Signal::SIGHUP);
        wait_reloads(&a, reloads + 1);
    };
    storm(&second);
    witness.wait_none_live("x", Duration::from_secs(10));
    wait_until(Duration::from_secs(15), "y to run as B", || {
        witness
            .live("y")
            .first()
            .is_some_and(|c| env_of(c.pid, "DEFINITION").as_deref() == Some("B"))
    });
    wait_queue(
        &zk.connect_string(),
        &format!("{root}/x"),
        &[],
        Duration::from_secs(10),
    );
    assert_stable(&witness, "y", Some("a"), Duration::from_millis(500));
    assert!(witness.live("x").is_empty(), "{}", witness.timeline("x"));

    // And again, ending on the first file: x runs again, y as A.
    storm(&first);
    witness.wait_live("x", Some("a"), Duration::from_secs(15));
    wait_until(Duration::from_secs(15), "y to run as A", || {
        witness
            .live("y")
            .first()
            .is_some_and(|c| env_of(c.pid, "DEFINITION").as_deref() == Some("A"))
    });
    assert_stable(&witness, "x", Some("a"), Duration::from_millis(500));
    assert_stable(&witness, "y", Some("a"), Duration::from_millis(10));
    assert_eq!(witness.history("u").len(), 1, "{}", witness.timeline("u"));
    // (No overlap check: one node restarts x and y dozens of times within a millisecond of each stop, closer
    // than the witness's threads can order a close and the next open.)
}

#[test]
fn an_election_path_deleted_while_nobody_leads_is_joined_again() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("path-deleted");
    let toml = config(&zk.connect_string(), &root, S_STR, &[quick("x", &witness)]);
    let mut a = Supervisor::start(&toml, "a");
    witness.wait_live("x", Some("a"), Duration::from_secs(20));
    let b = Supervisor::start(&toml, "b");
    let x_path = format!("{root}/x");
    wait_queue(
        &zk.connect_string(),
        &x_path,
        &["a", "b"],
        Duration::from_secs(10),
    );

    // While b is frozen (well within its session): its candidate is deleted, a leaves, and the election
    // path, empty now, is deleted. b thaws to a predecessor gone and no election path to list.
    b.signal(Signal::SIGSTOP);
    let frozen = Instant::now();
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        let (name, node) = candidates(&client, &x_path).await.remove(1);
        assert_eq!(node, "b");
        client
            .delete(&format!("{x_path}/{name}"), None)
            .await
            .expect("delete b's candidate");
    });
    a.signal(Signal::SIGTERM);
    a.wait_exit(Duration::from_secs(10));
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        client
            .delete(&x_path, None)
            .await
            .expect("delete the election path");
    });
    assert!(
        frozen.elapsed() < S / 2,
        "b was frozen for {:?}: its session may have expired, and the test proves nothing",
        frozen.elapsed()
    );
    b.signal(Signal::SIGCONT);

    witness.wait_live("x", Some("b"), S * 2);
    wait_queue(&zk.connect_string(), &x_path, &["b"], S);
}

#[test]
fn shutdown_after_a_failed_delete_still_closes_the_session() {
    use zookeeper_client::{Acl, AuthId, Permission};
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("close");
    let toml = config(&zk.connect_string(), &root, S_STR, &[quick("x", &witness)]);
    let mut a = Supervisor::start(&toml, "a");
    witness.wait_live("x", Some("a"), Duration::from_secs(20));
    let _b = Supervisor::start(&toml, "b");
    let x_path = format!("{root}/x");
    wait_queue(
        &zk.connect_string(),
        &x_path,
        &["a", "b"],
        Duration::from_secs(10),
    );

    // Nobody may delete a candidate any more: a's delete at shutdown fails (NoAuth); only the close of its
    // session can take its candidate away.
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        let no_delete =
            Permission::READ | Permission::WRITE | Permission::CREATE | Permission::ADMIN;
        let acl = [Acl::new(no_delete, AuthId::new("world", "anyone"))];
        client
            .set_acl(&x_path, &acl, None)
            .await
            .expect("take DELETE away");
    });
    let asked = Instant::now();
    a.signal(Signal::SIGTERM);
    let started = witness.wait_live("x", Some("b"), S * 2);
    a.wait_exit(Duration::from_secs(10));
    let took = started.opened - asked;
    assert!(
        took < S / 2,
        "b started x {took:?} after a was asked to stop (S = {S:?}): a's session was not closed\n{}",
        a.log()
    );
}

#[test]
fn shutdown_after_a_lost_delete_closes_the_session_once_zookeeper_is_back() {
    let zk = shared_server();
    let proxy = Proxy::new(&zk.connect_string());
    let witness = Witness::new();
    let root = unique_root("close-lost");
    let x = [quick("x", &witness)];
    let mut a = Supervisor::start(&config(&proxy.connect_string(), &root, S_STR, &x), "a");
    witness.wait_live("x", Some("a"), Duration::from_secs(20));
    let _b = Supervisor::start(&config(&zk.connect_string(), &root, S_STR, &x), "b");
    let x_path = format!("{root}/x");
    wait_queue(
        &zk.connect_string(),
        &x_path,
        &["a", "b"],
        Duration::from_secs(10),
    );

    // a shuts down; the delete of its candidate is lost with its connection, which stays down for S/4.
    // Only the close of a's session, sent once the link is back, can let b lead before the session
    // expires.
    proxy.lose_next_candidate_delete();
    a.signal(Signal::SIGTERM);
    proxy.wait_lost_delete(Duration::from_secs(5));
    let lost = Instant::now();
    std::thread::sleep((S / 4).saturating_sub(lost.elapsed())); // the outage
    proxy.heal();
    let healed = Instant::now();
    let started = witness.wait_live("x", Some("b"), S * 2);
    let took = started.opened.saturating_duration_since(healed);
    assert!(
        took < S / 4,
        "b started x {took:?} after the link came back (S = {S:?}): a's session was not closed\n{}",
        a.log()
    );
    assert!(a.wait_exit(S).success());
}
