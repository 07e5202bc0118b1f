//! What the benchmarks (bench/handoff.rs, bench/failover.rs, bench/scale.rs) share beside the test rig: numbers
//! from the environment, the benchmark's own runtime, medians and quantiles, readers of `/proc`, the light worker
//! (bench/witness_client.c), and the steps of a rolling restart of an ensemble.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::{wait_until_async, Supervisor, TempDir, Witness, ZkEnsemble};

/// USER_HZ: the unit of utime/stime in /proc/<pid>/stat on Linux.
pub const CLOCK_TICKS: f64 = 100.0;

/// The positive number in the environment variable `name`, else `default`.
pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// A runtime whose worker thread keeps the benchmark's own ZooKeeper session alive between waits.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime")
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics

/// The median of a non-empty sample (the mean of the middle two for an even count).
pub fn median(sample: &[Duration]) -> Duration {
    let mut sorted = sample.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 if there are none.
pub fn median_u64(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => 0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// The q-quantile (nearest rank) of a non-empty sample: 0.0 is the minimum, 1.0 the maximum.
pub fn quantile(sample: &[Duration], q: f64) -> Duration {
    let mut sorted = sample.to_vec();
    sorted.sort();
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

// ---------------------------------------------------------------------------------------------------------------
// /proc

/// `(ppid, CPU seconds used)` of a process; `None` if it is gone. The CPU time is `utime + stime` from
/// `/proc/<pid>/stat` (all threads, including ended ones, but in whole ticks of 10 ms), or for a
/// single-threaded process the exact run time from `/proc/<pid>/schedstat`: a thousand guards that each used
/// a few milliseconds would otherwise count as nothing.
pub fn stat(pid: u32) -> Option<(u32, f64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces): state is field 3.
    let fields: Vec<&str> = text[text.rfind(')')? + 2..].split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let ticks = (num(11)? + num(12)?) as f64 / CLOCK_TICKS;
    let exact = (num(17) == Some(1))
        .then(|| fs::read_to_string(format!("/proc/{pid}/schedstat")).ok())
        .flatten()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(|ns| ns as f64 / 1e9);
    Some((num(1)? as u32, exact.unwrap_or(ticks)))
}

/// The command line of a process, its arguments joined by spaces; empty if it is gone.
pub fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// `(Rss, Pss, Private_Clean + Private_Dirty)` of a process in kB, from `/proc/<pid>/smaps_rollup`: the
/// private part is what the process alone holds.
pub fn memory_of(pid: u32) -> (u64, u64, u64) {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let field = |key: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or_else(|| panic!("no {key} line in {path}:\n{text}"))
    };
    (
        field("Rss:"),
        field("Pss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// The light worker

/// bench/witness_client.c compiled with `cc` (once per benchmark process), if there is a C compiler.
fn witness_client() -> Option<&'static Path> {
    // The directory lives as long as the process (statics are not dropped); the watchdog removes it.
    static BUILT: OnceLock<Option<(TempDir, PathBuf)>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = TempDir::new("witness-client");
            let out = dir.path().join("witness_client");
            let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/witness_client.c");
            std::process::Command::new("cc")
                .args(["-O2", "-o"])
                .arg(&out)
                .arg(source)
                .status()
                .is_ok_and(|s| s.success())
                .then_some((dir, out))
        })
        .as_ref()
        .map(|(_, out)| out.as_path())
}

/// The light worker's command and what it is: bench/witness_client.c compiled with `cc` (so that the figures do
/// not include bash's start-up), else the rig's bash witness command, described as `without_cc`.
pub fn light_worker(witness: &Witness, without_cc: &'static str) -> (Vec<String>, &'static str) {
    match witness_client() {
        Some(client) => (
            vec![client.display().to_string(), witness.port().to_string()],
            "bench/witness_client.c (compiled with cc)",
        ),
        None => (witness.command(), without_cc),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Rolling restart of an ensemble

/// Waits until each election `<root>/<name>` has `nodes` candidates: every node has joined every election.
pub fn wait_all_joined(
    runtime: &tokio::runtime::Runtime,
    client: &zookeeper_client::Client,
    root: &str,
    names: &[String],
    nodes: usize,
    timeout: Duration,
) {
    let what = format!("{nodes} candidates in every election");
    runtime.block_on(wait_until_async(timeout, &what, || async {
        for name in names {
            match client.list_children(&format!("{root}/{name}")).await {
                Ok(c) if c.len() == nodes => {}
                _ => return false,
            }
        }
        true
    }));
}

/// Kills every member of `ensemble` for a second and restarts it, one after the other with a second between,
/// the quorum leader last. After each restart calls `restarted(member, was it the quorum leader, time from the
/// kill until it served again)`.
pub fn restart_one_by_one(
    ensemble: &mut ZkEnsemble,
    mut restarted: impl FnMut(usize, bool, Duration),
) {
    let leader = ensemble.leader_index();
    let order: Vec<usize> = (0..ensemble.len())
        .filter(|&i| i != leader)
        .chain([leader])
        .collect();
    for i in order {
        let down = Instant::now();
        ensemble.kill(i);
        thread::sleep(Duration::from_secs(1));
        ensemble.restart(i);
        restarted(i, i == leader, down.elapsed());
        thread::sleep(Duration::from_secs(1));
    }
}

/// Worker starts beyond the first, summed over `names`, and the timelines of the workers that started more than
/// once. Panics if a worker ever ran twice at once.
pub fn extra_starts(witness: &Witness, names: &[String]) -> (usize, Vec<String>) {
    let mut extra = 0;
    let mut restarted = Vec::new();
    for name in names {
        witness.assert_no_overlap(name);
        let starts = witness.history(name).len();
        extra += starts - 1;
        if starts > 1 {
            restarted.push(witness.timeline(name));
        }
    }
    (extra, restarted)
}

/// How often `needle` occurs in the logs of `nodes`, together.
pub fn count_in_logs(nodes: &[Supervisor], needle: &str) -> usize {
    nodes.iter().map(|n| n.log().matches(needle).count()).sum()
}
