//! Tests of the test rig itself (testkit/): they need ZooKeeper but not the daemon.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Child, Command};
use std::time::Duration;

use testkit::{
    four_letter_at, shared_server, unique_root, wait_until, wait_until_async, zk_client, Proxy,
    Witness, ZkEnsemble, ZkServer,
};
use zookeeper_client::{Acls, CreateMode};

const SECOND: Duration = Duration::from_secs(1);

/// Runs a witness command as the daemon would, with the environment it gives a worker.
fn spawn_worker(argv: &[String], worker: &str, node: &str, token: u64) -> Child {
    Command::new(&argv[0])
        .args(&argv[1..])
        .env("ZK_SUPERVISE_WORKER", worker)
        .env("ZK_SUPERVISE_NODE", node)
        .env("ZK_SUPERVISE_FENCING_TOKEN", token.to_string())
        .env(
            "ZK_SUPERVISE_ZNODE",
            format!("/workers/{worker}/_c_x-0000000001"),
        )
        .spawn()
        .expect("spawn bash")
}

fn kill_and_reap(child: &mut Child) {
    child.kill().expect("kill the worker");
    child.wait().expect("reap the worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_server_serves_and_dies_with_its_handle() {
    let server = ZkServer::standalone();
    assert_eq!(server.four_letter("ruok"), "imok");
    assert!(server.four_letter("srvr").contains("Mode: standalone"));
    assert_eq!(
        server.connect_string(),
        format!("127.0.0.1:{}", server.port())
    );

    let client = zk_client(&server.connect_string()).await;
    let root = unique_root("standalone");
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    client
        .create(&root, b"hello", &options)
        .await
        .expect("create");
    assert_eq!(client.get_data(&root).await.expect("get").0, b"hello");
    drop(client);

    let addr = server.connect_string();
    drop(server);
    assert!(
        four_letter_at(&addr, "ruok").is_err(),
        "the server still answers after drop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_partition_black_holes_traffic_until_healed() {
    let server = shared_server();
    let proxy = Proxy::new(&server.connect_string());
    let root = unique_root("proxy");
    let via_proxy = zk_client(&proxy.connect_string()).await;
    let direct = zk_client(&server.connect_string()).await;
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    via_proxy
        .create(&root, b"x", &options)
        .await
        .expect("create through the proxy");
    assert!(direct.check_stat(&root).await.expect("stat").is_some());

    proxy.partition();
    let stalled = tokio::time::timeout(SECOND, via_proxy.get_data(&root)).await;
    assert!(
        stalled.is_err(),
        "a request through a partitioned proxy completed: {stalled:?}"
    );
    let direct_read = tokio::time::timeout(SECOND, direct.get_data(&root)).await;
    assert!(
        matches!(direct_read, Ok(Ok(_))),
        "a direct request failed: {direct_read:?}"
    );

    proxy.heal();
    // The client's old connection is closed; it reconnects through the proxy within its session.
    wait_until_async(
        10 * SECOND,
        "the proxied client to work after heal",
        || async { via_proxy.get_data(&root).await.is_ok() },
    )
    .await;
    direct.delete(&root, None).await.expect("delete");
}

#[test]
fn witness_sees_workers_start_and_die() {
    let witness = Witness::new();
    let mut worker = spawn_worker(&witness.command(), "w", "node-a", 7);
    let conn = witness.wait_live("w", Some("node-a"), 5 * SECOND);
    assert_eq!(
        (conn.node.as_str(), conn.token(), conn.pid),
        ("node-a", 7, worker.id())
    );
    assert_eq!(conn.znode, "/workers/w/_c_x-0000000001");
    assert!(witness.live("other").is_empty());

    kill_and_reap(&mut worker);
    witness.wait_none_live("w", 5 * SECOND);
    let history = witness.history("w");
    assert_eq!(history.len(), 1);
    assert!(history[0].closed.is_some());

    // One after the other is no overlap.
    let mut next = spawn_worker(&witness.command(), "w", "node-b", 8);
    let second = witness.wait_live("w", Some("node-b"), 5 * SECOND);
    witness.assert_no_overlap("w");
    let _ = testkit::gap(&history[0], &second);

    // A worker whose grandchild holds the connection is not gone until the grandchild is.
    let mut held = spawn_worker(&witness.command_with("read -r _ <&3 &"), "g", "node-a", 1);
    witness.wait_live("g", None, 5 * SECOND);
    kill_and_reap(&mut held);
    std::thread::sleep(Duration::from_millis(300)); // nothing must happen during this time
    assert_eq!(witness.live("g").len(), 1, "{}", witness.timeline("g"));

    // Dropping the witness makes the remaining workers exit by themselves.
    drop(witness);
    wait_until(
        5 * SECOND,
        "the worker to exit once the witness is gone",
        || next.try_wait().expect("try_wait").is_some(),
    );
}

#[test]
fn witness_catches_an_overlap() {
    let witness = Witness::new();
    let mut first = spawn_worker(&witness.command(), "w", "node-a", 1);
    witness.wait_live("w", Some("node-a"), 5 * SECOND);
    let mut second = spawn_worker(&witness.command(), "w", "node-b", 2);
    witness.wait_live("w", Some("node-b"), 5 * SECOND);
    kill_and_reap(&mut first);
    kill_and_reap(&mut second);
    witness.wait_none_live("w", 5 * SECOND);

    let caught = catch_unwind(AssertUnwindSafe(|| witness.assert_no_overlap("w")));
    let message = caught.expect_err("an overlap went unnoticed");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(message.contains("ran twice at once"), "{message}");
    assert!(message.contains("node=node-b"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The lock is held across awaits on purpose, for the whole test: only other test threads ever wait for it.
#[allow(clippy::await_holding_lock)]
async fn ensemble_survives_its_leader_and_takes_it_back() {
    let _clusters = testkit::heavy::shared();
    let mut ensemble = ZkEnsemble::start(3);
    let leader = ensemble.leader_index();
    let client = zk_client(&ensemble.connect_string()).await;
    let root = unique_root("ensemble");
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    client
        .create(&root, b"before", &options)
        .await
        .expect("create");

    ensemble.kill(leader);
    assert!(!ensemble.is_running(leader));
    let after = format!("{root}/after");
    wait_until_async(
        20 * SECOND,
        "a write after the leader was killed",
        || async {
            match client.create(&after, b"", &options).await {
                Ok(_) | Err(zookeeper_client::Error::NodeExists) => true,
                Err(_) => false,
            }
        },
    )
    .await;
    let new_leader = ensemble.leader_index();
    assert_ne!(new_leader, leader);

    ensemble.restart(leader);
    assert!(ensemble
        .four_letter(leader, "srvr")
        .contains("Mode: follower"));
    // It kept its data and caught up with what it missed.
    let rejoined = zk_client(&ensemble.connect_string_of(leader)).await;
    wait_until_async(
        10 * SECOND,
        "the restarted member to see the later write",
        || async {
            rejoined
                .check_stat(&after)
                .await
                .is_ok_and(|stat| stat.is_some())
        },
    )
    .await;
}

#[test]
fn the_kit_runs_the_binary_cargo_built_for_the_tests() {
    let canonical = |path: &str| std::fs::canonicalize(path).expect("the binary exists");
    assert_eq!(
        canonical(testkit::bin()),
        canonical(env!("CARGO_BIN_EXE_zk-supervise"))
    );
}
