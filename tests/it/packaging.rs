//! The packaged files (packaging/) agree with the daemon: the shipped config and its commented example
//! load, and the unit's stop timeout leaves room for the longest grace period the lease allows. These run
//! with the ordinary test suite; scripts/package.sh checks the built packages themselves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use zk_supervise::config;

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(packaging(file)).unwrap_or_else(|e| panic!("packaging/{file}: {e}"))
}

/// The value of `key=` in the unit (the last assignment wins, as in systemd).
fn unit_setting(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

/// A duration the unit writes in seconds, like "40s".
fn seconds(value: &str) -> Duration {
    let n = value
        .strip_suffix('s')
        .unwrap_or_else(|| panic!("{value:?}: expected seconds like 40s"));
    Duration::from_secs(n.parse().unwrap_or_else(|e| panic!("{value:?}: {e}")))
}

#[test]
fn the_shipped_config_loads_and_runs_no_worker() {
    let cfg =
        config::load(&packaging("workers.toml")).expect("packaging/workers.toml must pass check");
    assert!(
        cfg.workers.is_empty(),
        "the shipped config must not run anything until the operator adds workers"
    );
    assert!(
        zk_supervise::lease::max_grace_period(
            cfg.zookeeper.session_timeout,
            cfg.zookeeper.server_tick
        ) >= Duration::from_secs(5),
        "the default grace period (5s) must fit the shipped session timeout"
    );
}

#[test]
fn the_commented_example_in_the_shipped_config_loads() {
    // Settings are commented as "#key = ..." and explanations as "# text": uncomment the former, as
    // scripts/package.sh does with sed.
    let text: String = read("workers.toml")
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c != ' ' && c != '#' && c != '!') => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let path =
        std::env::temp_dir().join(format!("zk-supervise-example-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let loaded = config::load(&path);
    let _ = std::fs::remove_file(&path);
    let cfg = loaded.unwrap_or_else(|e| panic!("the commented example does not load:\n{e}"));
    assert_eq!(cfg.workers.len(), 1, "one example [[worker]]");
    assert!(
        cfg.workers[0].user.is_some(),
        "the example shows user/group"
    );
}

#[test]
fn the_unit_leaves_room_for_the_longest_grace_period() {
    let unit = read("zk-supervise.service");
    for (key, want) in [
        ("Type", "notify"),
        ("KillMode", "mixed"),
        ("Restart", "always"),
        ("RestartPreventExitStatus", "78"),
        ("OOMPolicy", "continue"),
        (
            "ExecStartPre",
            "/usr/bin/zk-supervise check /etc/zk-supervise/workers.toml",
        ),
        (
            "ExecStart",
            "/usr/bin/zk-supervise run /etc/zk-supervise/workers.toml",
        ),
    ] {
        assert_eq!(unit_setting(&unit, key).as_deref(), Some(want), "{key}=");
    }
    // The longest session ZooKeeper grants by default is 20 ticks of 2 s.
    let longest_grace =
        zk_supervise::lease::max_grace_period(Duration::from_secs(40), Duration::from_secs(2));
    let stop = seconds(&unit_setting(&unit, "TimeoutStopSec").expect("TimeoutStopSec="));
    assert!(
        stop >= longest_grace + Duration::from_secs(10),
        "TimeoutStopSec={stop:?} must exceed the longest grace period ({longest_grace:?}) with room to spare"
    );
    // The watchdog must not fire while the lease could still keep a worker running, nor between the
    // daemon's pings while ZooKeeper is unreachable (a connection attempt of up to S + 1 s, then up to
    // 2 s of backoff).
    let watchdog = seconds(&unit_setting(&unit, "WatchdogSec").expect("WatchdogSec="));
    assert!(
        watchdog > Duration::from_secs(40 + 1 + 2),
        "WatchdogSec={watchdog:?}"
    );
}
