//! Operations (issue: operations): `status`, SIGHUP reload, health checks, metrics, systemd readiness and
//! watchdog, structured logs. One standalone server is shared by every test of this file; each test has its
//! own root path.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use testkit::*;

const S: &str = "2s";

/// `zk-supervise status <config> [--json]` run against the config file of `node`.
fn status(node: &Supervisor, json: bool) -> (i32, String) {
    let config = node.config_path();
    let mut args = vec!["status", config.to_str().expect("a UTF-8 path")];
    if json {
        args.push("--json");
    }
    let out = run_cli(&args, Duration::from_secs(15));
    assert!(
        out.stderr.is_empty() || !json,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A plain HTTP/1.0 GET on 127.0.0.1:`port`; returns the status code and the body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// The value of the series `name` (with its labels, as printed) in an exposition.
fn series(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

#[test]
fn status_shows_leaders_queues_and_whether_children_run() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("status");
    let workers = [
        WorkerSpec::new("steady", witness.command()),
        // Exits at once and waits 30 s before its restart: it has a leader but does not run.
        WorkerSpec::new("crashing", vec!["/bin/false".into()])
            .restart_delay("30s")
            .handoff_after(0)
            .extra("max_restart_delay = \"30s\""),
    ];
    let toml = config(&zk.connect_string(), &root, S, &workers);
    let a = Supervisor::start(&toml, "a");
    let child = witness.wait_live("steady", Some("a"), Duration::from_secs(20));
    let _b = Supervisor::start(&toml, "b");
    wait_queue(
        &zk.connect_string(),
        &format!("{root}/steady"),
        &["a", "b"],
        Duration::from_secs(15),
    );
    wait_queue(
        &zk.connect_string(),
        &format!("{root}/crashing"),
        &["a", "b"],
        Duration::from_secs(15),
    );
    a.wait_log("restarting after a delay", Duration::from_secs(10));
    wait_until(
        Duration::from_secs(10),
        "status to show the child's pid",
        || {
            status(&a, false)
                .1
                .contains(&format!("yes (pid {})", child.pid))
        },
    );
    let (code, table) = status(&a, false);
    assert_eq!(code, 3, "crashing runs nowhere: {table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("WORKER") && lines[0].contains("RUNNING"),
        "{table}"
    );
    let row = |name: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{table}"))
    };
    assert!(
        row("steady").contains(" a ") && row("steady").ends_with(" b"),
        "{table}"
    );
    assert!(row("crashing").contains(" no "), "{table}");
    // Aligned: every column starts at the same place on every line.
    assert_eq!(
        lines[0].find("RUNNING"),
        lines[1].find(if lines[1].starts_with("steady") {
            "yes"
        } else {
            "no"
        })
    );
    let (code, json) = status(&a, true);
    assert_eq!(code, 3, "crashing runs nowhere: {json}");
    let value: serde_json::Value = serde_json::from_str(&json).expect("status --json is JSON");
    let workers = value["workers"].as_array().expect("workers");
    let steady = workers
        .iter()
        .find(|w| w["name"] == "steady")
        .expect("steady");
    assert_eq!(steady["leader"]["node"], "a");
    assert_eq!(steady["running"], true);
    assert_eq!(steady["child_pid"], u64::from(child.pid));
    assert_eq!(steady["waiting"][0]["node"], "b");
    assert!(
        steady["leader"]["since"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')),
        "{json}"
    );
    let crashing = workers
        .iter()
        .find(|w| w["name"] == "crashing")
        .expect("crashing");
    assert_eq!(crashing["leader"]["node"], "a");
    assert_eq!(crashing["running"], false);
    // It only reads: still two candidates each.
    wait_queue(
        &zk.connect_string(),
        &format!("{root}/steady"),
        &["a", "b"],
        Duration::from_secs(15),
    );
}

#[test]
fn status_fails_fast_when_zookeeper_is_unreachable() {
    let port = free_ports(1)[0];
    let dir = std::env::temp_dir().join(format!("zk-supervise-status-{port}"));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let file = dir.join("w.toml");
    let toml = config(
        &format!("127.0.0.1:{port}"),
        "/x",
        S,
        &[WorkerSpec::new("w", vec!["/bin/true".into()])],
    );
    std::fs::write(&file, toml).expect("write the config");
    let started = Instant::now();
    let out = run_cli(
        &["status", file.to_str().expect("UTF-8")],
        Duration::from_secs(15),
    );
    println!("status gave up after {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach zookeeper") && err.contains(&port.to_string()),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sighup_applies_added_removed_and_changed_workers_and_leaves_the_others_alone() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("reload");
    let keep = WorkerSpec::new("keep", witness.command());
    let gone = WorkerSpec::new("gone", witness.command());
    let change = WorkerSpec::new("change", witness.command());
    let a = Supervisor::start(
        &config(
            &zk.connect_string(),
            &root,
            S,
            &[keep.clone(), gone, change],
        ),
        "a",
    );
    for name in ["keep", "gone", "change"] {
        witness.wait_live(name, Some("a"), Duration::from_secs(20));
    }
    // An invalid file: logged with the same messages as `check`, and nothing changes.
    let broken = config(
        &zk.connect_string(),
        &root,
        S,
        &[keep.clone().extra("grace_priod = \"1s\"")],
    );
    a.write_config(&broken);
    a.signal(Signal::SIGHUP);
    a.wait_log(
        "the config is invalid; nothing changed",
        Duration::from_secs(10),
    );
    assert!(
        a.log()
            .contains("unknown key `grace_priod`; did you mean `grace_period`?"),
        "{}",
        a.log()
    );
    std::thread::sleep(Duration::from_millis(300)); // nothing must happen
    for name in ["keep", "gone", "change"] {
        assert_eq!(witness.history(name).len(), 1, "{}", witness.timeline(name));
        assert_eq!(witness.live(name).len(), 1, "{}", witness.timeline(name));
    }
    // Now: keep as it was, gone removed, change changed, new added.
    let changed = WorkerSpec::new("change", witness.command_with("echo second definition >&2"));
    let new = WorkerSpec::new("new", witness.command());
    a.write_config(&config(
        &zk.connect_string(),
        &root,
        S,
        &[keep, changed, new],
    ));
    a.signal(Signal::SIGHUP);
    witness.wait_live("new", Some("a"), Duration::from_secs(10));
    witness.wait_none_live("gone", Duration::from_secs(10));
    witness.wait_count("change", 2, Duration::from_secs(10));
    witness.wait_live("change", Some("a"), Duration::from_secs(10));
    a.wait_log("second definition", Duration::from_secs(5));
    witness.assert_no_overlap("change");
    // The removed worker's candidate is gone, so no ghost holds its election.
    wait_queue(
        &zk.connect_string(),
        &format!("{root}/gone"),
        &[],
        Duration::from_secs(15),
    );
    assert_eq!(
        witness.history("keep").len(),
        1,
        "keep was touched\n{}",
        witness.timeline("keep")
    );
    assert!(
        a.log().contains("added=1 removed=1 changed=1 unchanged=1"),
        "{}",
        a.log()
    );
}

#[test]
fn a_worker_whose_health_check_fails_on_one_node_settles_on_a_healthy_one() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("health");
    let check = "[worker.health_check]\ncommand = [\"/bin/sh\", \"-c\", \"test \\\"$ZK_SUPERVISE_NODE\\\" != a\"]\ninterval = \"200ms\"\ntimeout = \"200ms\"\nfailures = 2";
    let worker = WorkerSpec::new("w", witness.command()).extra(check);
    let toml = config(&zk.connect_string(), &root, S, &[worker]);
    let a = Supervisor::start(&toml, "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let _b = Supervisor::start(&toml, "b");
    witness.wait_live("w", Some("b"), Duration::from_secs(15));
    // It stays on b: a queues behind and does not grab it back.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let live = witness.live("w");
        assert!(
            live.len() == 1 && live[0].node == "b",
            "{}",
            witness.timeline("w")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    witness.assert_no_overlap("w");
    assert!(a.log().contains("health check failed"), "{}", a.log());
    wait_queue(
        &zk.connect_string(),
        &format!("{root}/w"),
        &["b", "a"],
        Duration::from_secs(15),
    );
}

#[test]
fn metrics_follow_a_failover() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("metrics");
    let ports = free_ports(2);
    let toml = |port: u16| {
        let mut t = config(
            &zk.connect_string(),
            &root,
            S,
            &[WorkerSpec::new("w", witness.command())],
        );
        t.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
        t
    };
    let mut a = Supervisor::start(&toml(ports[0]), "a");
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let b = Supervisor::start(&toml(ports[1]), "b");
    wait_queue(
        &zk.connect_string(),
        &format!("{root}/w"),
        &["a", "b"],
        Duration::from_secs(15),
    );
    let (code, body) = http_get(ports[0], "/metrics");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        series(&body, "zk_supervise_worker_leading{worker=\"w\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        series(&body, "zk_supervise_worker_running{worker=\"w\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        series(&body, "zk_supervise_session_up"),
        Some(1.0),
        "{body}"
    );
    assert!(
        series(&body, "zk_supervise_lease_remaining_seconds").is_some_and(|s| s > 0.0 && s <= 2.0),
        "{body}"
    );
    let (_, body) = http_get(ports[1], "/metrics");
    assert_eq!(
        series(&body, "zk_supervise_worker_leading{worker=\"w\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        series(
            &body,
            "zk_supervise_worker_last_failover_timestamp_seconds{worker=\"w\"}"
        ),
        Some(0.0)
    );
    assert_eq!(http_get(ports[1], "/healthz").0, 200);
    a.signal(Signal::SIGTERM);
    a.wait_exit(Duration::from_secs(10));
    witness.wait_live("w", Some("b"), Duration::from_secs(10));
    wait_until(
        Duration::from_secs(5),
        "b's metrics to show it leads",
        || {
            let (_, body) = http_get(ports[1], "/metrics");
            series(&body, "zk_supervise_worker_running{worker=\"w\"}") == Some(1.0)
        },
    );
    let (_, body) = http_get(ports[1], "/metrics");
    assert_eq!(
        series(&body, "zk_supervise_worker_leading{worker=\"w\"}"),
        Some(1.0),
        "{body}"
    );
    assert!(series(
        &body,
        "zk_supervise_worker_last_failover_timestamp_seconds{worker=\"w\"}"
    )
    .is_some_and(|t| t > 1e9));
    assert!(
        body.contains("zk_supervise_worker_restarts_total{worker=\"w\"} 0"),
        "{body}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    drop(b);
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("notify");
    let dir = std::env::temp_dir().join(format!("zk-supervise-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).expect("bind a notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("a timeout");
    let toml = config(
        &zk.connect_string(),
        &root,
        S,
        &[WorkerSpec::new("w", witness.command())],
    );
    let path = socket_path.to_str().expect("UTF-8");
    let mut a = Supervisor::start_with(
        &toml,
        "a",
        &[],
        &[("NOTIFY_SOCKET", path), ("WATCHDOG_USEC", "1000000")],
    );
    let mut seen: Vec<String> = Vec::new();
    let receive_until = |what: &str, timeout: Duration, seen: &mut Vec<String>| {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            if let Ok(n) = socket.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            if seen.iter().any(|m| m.contains(what)) {
                return;
            }
        }
        panic!("no {what} within {timeout:?}; got {seen:?}");
    };
    receive_until("READY=1", Duration::from_secs(20), &mut seen);
    receive_until(
        "STATUS=running 1 of 1 workers",
        Duration::from_secs(10),
        &mut seen,
    );
    let child = witness.wait_live("w", Some("a"), Duration::from_secs(10));
    // Pings keep coming, at least twice a second (half of WATCHDOG_USEC).
    let before = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let mut buf = [0u8; 4096];
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let pings = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() - before;
    assert!(pings >= 2, "{pings} watchdog pings in 1.5 s: {seen:?}");
    // The notification socket is the supervisor's, not the worker's.
    let environ =
        std::fs::read(format!("/proc/{}/environ", child.pid)).expect("the child's environment");
    assert!(
        !String::from_utf8_lossy(&environ).contains("NOTIFY_SOCKET"),
        "the child got NOTIFY_SOCKET"
    );
    a.signal(Signal::SIGTERM);
    receive_until("STOPPING=1", Duration::from_secs(10), &mut seen);
    assert_eq!(a.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn logs_are_json_with_stable_fields_or_text_without_timestamps_under_journald() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("logs");
    let worker = WorkerSpec::new("w", witness.command_with("echo hello-from-the-child"));
    let toml = config(&zk.connect_string(), &root, S, &[worker]);
    let json = Supervisor::start_with_args(&toml, "a", &["--log-format", "json"]);
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    json.wait_log("hello-from-the-child", Duration::from_secs(5));
    let lines: Vec<serde_json::Value> = json
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|l| l["fields"]["message"] == "started")
        .expect("a started line");
    assert_eq!(started["fields"]["worker"], "w");
    assert!(started["fields"]["pid"].as_u64().is_some(), "{started}");
    assert!(
        started["timestamp"].is_string() && started["level"] == "INFO",
        "{started}"
    );
    let output = lines
        .iter()
        .find(|l| l["fields"]["message"] == "hello-from-the-child")
        .expect("child output");
    assert_eq!(output["fields"]["stream"], "stdout");
    assert_eq!(output["fields"]["worker"], "w");
    drop(json);
    witness.wait_none_live("w", Duration::from_secs(10));
    let text = Supervisor::start_with(&toml, "a", &[], &[("JOURNAL_STREAM", "8:12345")]);
    text.wait_log("hello-from-the-child", Duration::from_secs(20));
    for line in text.log().lines() {
        assert!(
            !line.starts_with("20"),
            "a timestamp under journald: {line}"
        );
    }
    assert!(
        text.log()
            .lines()
            .any(|l| l.trim_start().starts_with("INFO")),
        "{}",
        text.log()
    );
}
