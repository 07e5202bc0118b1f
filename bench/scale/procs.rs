//! The processes of a node and what they cost: children and guards of a supervisor, CPU, how busy the machine is.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::bench::*;

use super::*;

/// Every process whose parent is `parent`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(ppid, _)| ppid == parent))
        .collect()
}

/// The guard processes of a supervisor: its spawner (`zk-supervise __guards`, its child) and the guards the
/// spawner forked. The spawner counts as one of them: what it costs, it costs for the guards.
pub(crate) fn guards_of(supervisor: u32) -> Vec<u32> {
    let spawners: Vec<u32> = children_of(supervisor)
        .into_iter()
        .filter(|&pid| cmdline(pid).contains("__guards"))
        .collect();
    let guards: Vec<u32> = spawners.iter().flat_map(|&s| children_of(s)).collect();
    spawners.into_iter().chain(guards).collect()
}

/// CPU seconds of `pids` so far (processes gone meanwhile count 0).
pub(crate) fn cpu_secs(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| stat(p)).map(|(_, t)| t).sum()
}

/// Percent of one core used by `pids` over `window`, given their CPU seconds at its start.
pub(crate) fn cpu_percent(pids: &[u32], before: f64, window: Duration) -> f64 {
    let used = (cpu_secs(pids) - before).max(0.0);
    round3(100.0 * used / window.as_secs_f64())
}

/// `(busy, total)` jiffies of the whole machine, from the first line of `/proc/stat`.
pub(crate) fn machine_ticks() -> (u64, u64) {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let nums: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = nums.iter().take(8).sum();
    let idle = nums.get(3).copied().unwrap_or(0) + nums.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Percent of the whole machine (all cores) busy over `sample`.
pub(crate) fn machine_busy(sample: Duration) -> f64 {
    let (b0, t0) = machine_ticks();
    thread::sleep(sample);
    let (b1, t1) = machine_ticks();
    round3(100.0 * (b1 - b0) as f64 / (t1 - t0).max(1) as f64)
}

/// Waits (up to `deadline`) until the machine is quiet: less than `max_busy` percent busy over a second.
/// Other work on the host (builds, other test runs) skews every figure; returns the last busy percentage.
pub(crate) fn wait_quiet(max_busy: f64, deadline: Duration) -> f64 {
    let until = Instant::now() + deadline;
    loop {
        let busy = machine_busy(Duration::from_secs(1));
        if busy < max_busy || Instant::now() >= until {
            return busy;
        }
    }
}

/// CPU ticks of this process and every descendant, and of the machine: a snapshot for [`Profile::since`].
pub(crate) struct Profile {
    pub(crate) at: Instant,
    pub(crate) machine: (u64, u64),
    pub(crate) pids: HashMap<u32, f64>,
}

impl Profile {
    pub(crate) fn now() -> Profile {
        let mut parent: HashMap<u32, u32> = HashMap::new();
        let mut ticks_of: HashMap<u32, f64> = HashMap::new();
        if let Ok(dir) = fs::read_dir("/proc") {
            for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
                if let Some((ppid, t)) = stat(pid) {
                    parent.insert(pid, ppid);
                    ticks_of.insert(pid, t);
                }
            }
        }
        let me = std::process::id();
        let ours = |mut pid: u32| loop {
            if pid == me {
                return true;
            }
            match parent.get(&pid) {
                Some(&p) if p > 1 => pid = p,
                _ => return false,
            }
        };
        Profile {
            at: Instant::now(),
            machine: machine_ticks(),
            pids: ticks_of.into_iter().filter(|(p, _)| ours(*p)).collect(),
        }
    }

    /// CPU seconds since `earlier` by kind of process (processes that ended meanwhile are not counted), and
    /// the rest of the machine; as JSON and as one line.
    pub(crate) fn since(&self, earlier: &Profile) -> (Value, String) {
        let mut by_kind: BTreeMap<&str, f64> = BTreeMap::new();
        let mut ours = 0.0;
        for (pid, t) in &self.pids {
            let used = (t - earlier.pids.get(pid).unwrap_or(&0.0)).max(0.0);
            let cmdline = cmdline(*pid);
            let kind = if *pid == std::process::id() {
                "bench (witness)"
            } else if cmdline.contains("__guard") {
                "guards"
            } else if cmdline.contains("zk-supervise") || cmdline.contains("kazoo_agent") {
                "supervisors"
            } else if cmdline.contains("QuorumPeerMain") {
                "zookeeper"
            } else if cmdline.contains("witness_client") || cmdline.contains("/dev/tcp/") {
                "workers"
            } else {
                "other of ours"
            };
            *by_kind.entry(kind).or_default() += used;
            ours += used;
        }
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        let busy = (self.machine.0 - earlier.machine.0) as f64 / CLOCK_TICKS;
        let total = (self.machine.1 - earlier.machine.1).max(1) as f64 / CLOCK_TICKS;
        let others = (busy - ours).max(0.0);
        let mut line = format!(
            "{:.2} s wall, machine {:.0} % busy ({} cores); CPU s:",
            wall,
            100.0 * busy / total,
            (total / wall.max(1e-3)).round()
        );
        for (kind, secs) in &by_kind {
            line.push_str(&format!(" {kind} {secs:.2},"));
        }
        line.push_str(&format!(" not ours {others:.2}"));
        let mut j = serde_json::Map::new();
        for (kind, secs) in &by_kind {
            j.insert((*kind).into(), round3(*secs).into());
        }
        j.insert("not_ours".into(), round3(others).into());
        j.insert("wall_s".into(), round3(wall).into());
        j.insert(
            "machine_busy_percent".into(),
            round3(100.0 * busy / total).into(),
        );
        (Value::Object(j), line)
    }
}
