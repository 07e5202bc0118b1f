//! Issue 12 (operator truth), items 2, 3, 6 and 7: a missing chroot is named, a foreign znode never
//! blocks an election silently, `status` answers "why is it not running?" and exits non-zero when a
//! worker runs nowhere, and the log says why a child is stopped. One standalone server is shared by
//! every test of this file; each test has its own root path (or chroot).

use std::time::{Duration, Instant};

use testkit::*;
use zookeeper_client as zk;

const S: &str = "2s";

/// `status`'s exit code when a worker of the config runs nowhere.
const EXIT_NOT_RUNNING: i32 = 3;

/// `zk-supervise status <config> [--json]` on `config`: its exit code, stdout and stderr.
fn status_of(config: &std::path::Path, json: bool) -> (i32, String, String) {
    let mut args = vec!["status", config.to_str().expect("a UTF-8 path")];
    if json {
        args.push("--json");
    }
    let out = run_cli(&args, Duration::from_secs(15));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `status --json` on `config`, parsed, and its exit code.
fn status_json(config: &std::path::Path) -> (i32, serde_json::Value) {
    let (code, out, err) = status_of(config, true);
    let value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out}\nstderr: {err}"));
    (code, value)
}

/// The entry of `worker` in a `status --json` output.
fn worker_of<'v>(status: &'v serde_json::Value, worker: &str) -> &'v serde_json::Value {
    status["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .find(|w| w["name"] == worker)
        .unwrap_or_else(|| panic!("no worker {worker} in {status}"))
}

/// Creates the persistent znode `path` with `data` (its parents too, empty).
async fn create_persistent(client: &zk::Client, path: &str, data: &[u8]) {
    let (parent, _) = path.rsplit_once('/').expect("an absolute path");
    if !parent.is_empty() {
        client
            .mkdir(
                parent,
                &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .expect("create the parents");
    }
    client
        .create(
            path,
            data,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .expect("create the znode");
}

/// Deletes `path` and everything under it in one transaction, as an operator's `deleteall` does
/// when nothing races it; a daemon that recreates an election path meanwhile makes the transaction
/// fail, and it is tried again on the tree as it is then.
async fn delete_all(client: &zk::Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stack = vec![path.to_owned()];
        let mut order = Vec::new();
        while let Some(p) = stack.pop() {
            if let Ok(children) = client.list_children(&p).await {
                stack.extend(children.iter().map(|c| format!("{p}/{c}")));
            }
            order.push(p);
        }
        let mut multi = client.new_multi_writer();
        for p in order.iter().rev() {
            multi.add_delete(p, None).expect("a valid path");
        }
        if multi.commit().await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "cannot delete {path}");
    }
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

// ---------------------------------------------------------------------------------------------------------------
// Item 2: a missing chroot

#[test]
fn a_missing_chroot_is_named_and_the_daemon_exits_78_at_once() {
    let zk = shared_server();
    let chroot = unique_root("chroot");
    let connect = format!("{}{chroot}", zk.connect_string());
    let toml = config(
        &connect,
        "/workers",
        S,
        &[WorkerSpec::new("w", vec!["/bin/true".into()])],
    );
    let started = Instant::now();
    let mut a = Supervisor::start(&toml, "a");
    let exit = a.wait_exit(Duration::from_secs(15));
    let took = started.elapsed();
    let log = a.log();
    assert_eq!(exit.code(), Some(78), "{log}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {log}");
    assert!(
        log.contains(&format!("the chroot {chroot} does not exist"))
            && log.contains(&format!("zkCli.sh create {chroot} \"\""))
            && log.contains("fix connect"),
        "{log}"
    );
    assert_eq!(count(&log, "cannot join the election"), 0, "{log}");
    // Refused, not created.
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        assert_eq!(client.check_stat(&chroot).await.expect("exists"), None);
    });
    // `status` names it too.
    let (code, _, err) = status_of(&a.config_path(), false);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(&format!("the chroot {chroot} does not exist")),
        "{err}"
    );
    // `check` does not touch ZooKeeper: it still passes.
    let out = run_cli(
        &["check", a.config_path().to_str().expect("UTF-8")],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_chroot_deleted_later_is_logged_once_and_the_workers_wait_for_it_quietly() {
    let zk = shared_server();
    let witness = Witness::new();
    let chroot = unique_root("chroot-later");
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        create_persistent(&client, &chroot, b"").await;
    });
    let connect = format!("{}{chroot}", zk.connect_string());
    let workers: Vec<WorkerSpec> = ["w1", "w2", "w3"]
        .iter()
        .map(|n| WorkerSpec::new(n, witness.command()))
        .collect();
    let toml = config(&connect, "/workers", S, &workers);
    let a = Supervisor::start(&toml, "a");
    for w in ["w1", "w2", "w3"] {
        witness.wait_live(w, Some("a"), Duration::from_secs(20));
    }
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        delete_all(&client, &chroot).await;
    });
    for w in ["w1", "w2", "w3"] {
        witness.wait_none_live(w, Duration::from_secs(10));
    }
    a.wait_log(
        "the chroot of [zookeeper] connect does not exist",
        Duration::from_secs(10),
    );
    // Nothing must repeat while it is missing.
    std::thread::sleep(Duration::from_secs(2));
    let log = a.log();
    assert_eq!(
        count(&log, "the chroot of [zookeeper] connect does not exist"),
        1,
        "{log}"
    );
    assert_eq!(count(&log, "cannot join the election"), 0, "{log}");
    // Back: every worker runs again, without a restart of the daemon.
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        create_persistent(&client, &chroot, b"").await;
    });
    for w in ["w1", "w2", "w3"] {
        witness.wait_live(w, Some("a"), Duration::from_secs(20));
    }
    assert_eq!(count(&a.log(), "the chroot exists again"), 1, "{}", a.log());
}

// ---------------------------------------------------------------------------------------------------------------
// Item 3: a foreign znode in an election

#[test]
fn a_persistent_znode_named_like_a_candidate_never_blocks_the_election() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("foreign");
    let foreign = format!("{root}/w/_c_x-n_0000000000");
    block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        create_persistent(&client, &foreign, b"garbage").await;
    });
    let toml = config(
        &zk.connect_string(),
        &root,
        S,
        &[WorkerSpec::new("w", witness.command())],
    );
    let a = Supervisor::start(&toml, "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    a.wait_log("ignoring a znode in the election", Duration::from_secs(5));
    let log = a.log();
    assert!(
        log.contains(&foreign) && log.contains("not ephemeral"),
        "{log}"
    );
    assert_eq!(
        count(&log, "ignoring a znode in the election"),
        1,
        "once: {log}"
    );
    // One in the middle of the queue: a is first, the foreign znode second, b third.
    let middle = block_on(async {
        let client = zk_client(&zk.connect_string()).await;
        let (_, sequence) = client
            .create(
                &format!("{root}/w/_c_y-n_"),
                b"garbage",
                &zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .expect("create a persistent sequential znode");
        format!("{root}/w/_c_y-n_{sequence}")
    });
    let b = Supervisor::start(&toml, "b");
    b.wait_log("joined the election", Duration::from_secs(20));
    let (code, table, _) = status_of(&a.config_path(), false);
    println!("{table}");
    assert_eq!(code, 0, "{table}");
    assert!(
        table.contains("_c_x-n_0000000000") && table.contains(&middle),
        "{table}"
    );
    let (_, json) = status_json(&a.config_path());
    let ignored = worker_of(&json, "w")["ignored"]
        .as_array()
        .expect("ignored")
        .clone();
    assert_eq!(ignored.len(), 2, "{json}");
    assert!(
        ignored.iter().all(|i| i["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not ephemeral"))),
        "{json}"
    );
    assert_eq!(worker_of(&json, "w")["waiting"][0]["node"], "b", "{json}");
    // a goes: b takes over past the foreign znode between them.
    drop(a);
    witness.wait_live("w", Some("b"), Duration::from_secs(20));
    b.wait_log(&middle, Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------------------------
// Item 6: `status` answers "why is it not running?"

/// Writes `toml` as a config file of its own (for `status` only) into `dir`.
fn write_config(dir: &TempDir, file: &str, toml: &str) -> std::path::PathBuf {
    let path = dir.path().join(file);
    std::fs::write(&path, toml).expect("write a config");
    path
}

#[test]
fn status_says_why_a_worker_runs_nowhere_and_exits_3_until_every_one_runs() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("why");
    let failing = |w: WorkerSpec| {
        w.handoff_after(0)
            .restart_delay("200ms")
            .extra("max_restart_delay = \"400ms\"")
    };
    let workers = [
        WorkerSpec::new("steady", witness.command()),
        failing(WorkerSpec::new(
            "missing",
            vec!["/nonexistent/zk-supervise-truth".into()],
        )),
        failing(WorkerSpec::new(
            "quits",
            vec!["/bin/sh".into(), "-c".into(), "exit 3".into()],
        )),
    ];
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S, &workers), "a");
    witness.wait_live("steady", Some("a"), Duration::from_secs(20));
    let failures = |json: &serde_json::Value, w: &str| worker_of(json, w)["failures"].as_u64();
    wait_until(
        Duration::from_secs(20),
        "status to show two failures in a row of each failing worker",
        || {
            let (_, json) = status_json(&a.config_path());
            failures(&json, "missing") >= Some(2) && failures(&json, "quits") >= Some(2)
        },
    );
    let (code, json) = status_json(&a.config_path());
    assert_eq!(code, EXIT_NOT_RUNNING, "{json}");
    let missing = worker_of(&json, "missing");
    assert_eq!(missing["running"], false, "{json}");
    assert_eq!(missing["leader"]["node"], "a", "{json}");
    assert!(
        missing["start_error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("/nonexistent/zk-supervise-truth")),
        "{json}"
    );
    assert!(
        missing["why_not_running"]
            .as_str()
            .is_some_and(|w| w.contains("leader a cannot start it")),
        "{json}"
    );
    let quits = worker_of(&json, "quits");
    assert_eq!(quits["last_exit"]["code"], 3, "{json}");
    assert_eq!(quits["last_exit"]["text"], "exit code 3", "{json}");
    assert!(
        quits["last_exit"]["at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{json}"
    );
    assert!(quits["failures"].as_u64() >= Some(2), "{json}");
    assert_eq!(worker_of(&json, "steady")["running"], true, "{json}");
    assert_eq!(worker_of(&json, "steady")["in_config"], true, "{json}");
    let (code, table, _) = status_of(&a.config_path(), false);
    println!("{table}");
    assert_eq!(code, EXIT_NOT_RUNNING, "{table}");
    assert!(
        table.contains("missing: not running: leader a cannot start it")
            && table.contains("/nonexistent/zk-supervise-truth")
            && table.contains("quits: ")
            && table.contains("exit code 3"),
        "{table}"
    );

    // A config with only the running worker: the other elections are listed, marked, and do not count.
    let dir = TempDir::new("truth-why");
    let only_steady = write_config(
        &dir,
        "steady.toml",
        &config(&zk.connect_string(), &root, S, &workers[..1]),
    );
    let (code, json) = status_json(&only_steady);
    assert_eq!(code, 0, "every worker of this config runs: {json}");
    let names: Vec<&str> = json["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(names, ["steady", "missing", "quits"], "{json}");
    assert_eq!(worker_of(&json, "missing")["in_config"], false, "{json}");
    let (code, table, _) = status_of(&only_steady, false);
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("missing: not in this config"), "{table}");

    // A worker no node has: no candidate.
    let nobody = write_config(
        &dir,
        "nobody.toml",
        &config(
            &zk.connect_string(),
            &root,
            S,
            &[
                workers[0].clone(),
                WorkerSpec::new("nobody", vec!["/bin/true".into()]),
            ],
        ),
    );
    let (code, json) = status_json(&nobody);
    assert_eq!(code, EXIT_NOT_RUNNING, "{json}");
    assert!(
        worker_of(&json, "nobody")["why_not_running"]
            .as_str()
            .is_some_and(|w| w.starts_with("no candidate")),
        "{json}"
    );
}

#[test]
fn status_flags_two_daemons_with_one_node_id() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("dup-id");
    let toml = config(
        &zk.connect_string(),
        &root,
        S,
        &[WorkerSpec::new("w", witness.command())],
    );
    let first = Supervisor::start(&toml, "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let second = Supervisor::start(&toml, "a");
    second.wait_log("joined the election", Duration::from_secs(20));
    let (code, json) = status_json(&first.config_path());
    assert_eq!(code, 0, "it runs: {json}");
    assert_eq!(
        worker_of(&json, "w")["duplicate_nodes"],
        serde_json::json!(["a"]),
        "{json}"
    );
    let (_, table, _) = status_of(&first.config_path(), false);
    assert!(
        table.contains("node id \"a\" has live candidates of two sessions"),
        "{table}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Item 7 (parts): why a child is stopped, and when its grace period runs out

/// The log lines of `worker` that contain `what`.
fn lines_of<'l>(log: &'l str, worker: &str, what: &str) -> Vec<&'l str> {
    let field = format!("worker=\"{worker}\"");
    log.lines()
        .filter(|l| l.contains(&field) && l.contains(what))
        .collect()
}

#[test]
fn a_reload_says_removed_or_changed_and_a_grace_period_that_runs_out_says_killing() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("why-stop");
    let keep = WorkerSpec::new("keep", witness.command());
    let changed = WorkerSpec::new("changed", witness.command());
    let workers = [
        keep.clone(),
        WorkerSpec::new("gone", witness.command()),
        changed.clone(),
        WorkerSpec::new("stubborn", witness.command_with("trap '' TERM")).grace_period("500ms"),
    ];
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S, &workers), "a");
    for w in ["keep", "gone", "changed", "stubborn"] {
        witness.wait_live(w, Some("a"), Duration::from_secs(20));
    }
    let next = [keep, changed.extra("env = { VERSION = \"2\" }")];
    a.write_config(&config(&zk.connect_string(), &root, S, &next));
    a.signal(nix::sys::signal::Signal::SIGHUP);
    a.wait_log("grace period over: killing", Duration::from_secs(10));
    witness.wait_count("changed", 2, Duration::from_secs(20));
    witness.wait_none_live("gone", Duration::from_secs(10));
    witness.wait_none_live("stubborn", Duration::from_secs(10));
    let log = a.log();
    let stopping = |w: &str| lines_of(&log, w, " stopping ");
    assert!(
        stopping("gone")
            .iter()
            .any(|l| l.contains("why=\"removed\"")),
        "{log}"
    );
    assert!(
        stopping("stubborn")
            .iter()
            .any(|l| l.contains("why=\"removed\"")),
        "{log}"
    );
    assert!(
        stopping("changed")
            .iter()
            .any(|l| l.contains("why=\"changed\"")),
        "{log}"
    );
    assert!(!log.contains("why=\"shutdown\""), "{log}");
    let killing = lines_of(&log, "stubborn", "grace period over: killing");
    assert_eq!(killing.len(), 1, "{log}");
    assert!(
        killing[0].contains("grace=500ms") && killing[0].contains("pid="),
        "{log}"
    );
    // A child that stops within its grace period is not said to be killed.
    assert!(lines_of(&log, "gone", "killing").is_empty(), "{log}");
}
