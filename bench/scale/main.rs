//! `cargo bench --bench scale`: the scale figures of issue 6 and the kazoo baseline. `bench/run` runs it (with
//! `bench/handoff`) and writes `bench/REPORT.md` from its JSON.
//!
//! Sections, in this order (`SCALE_SECTIONS=kazoo,crash,cluster,memory,rolling` picks some):
//!
//! 1. `kazoo`: the baseline agent `bench/kazoo_agent.py`: clean handoff gap (`KAZOO_ROUNDS`, 50, bench/handoff's
//!    method), then the same harness on zk-supervise with the gap taken apart from its logs; memory and idle CPU
//!    of one kazoo node with 100 workers over `SCALE_COMPARE_IDLE_SECS` (30 s).
//! 2. `crash`: crash failover gap, S = 2 s, `CRASH_TRIALS` (20) SIGKILLs of the leader, for zk-supervise and the
//!    kazoo agent, with bench/failover's method (SIGKILL -> the new child's connection; bash witness).
//! 3. `cluster`: one standalone ZooKeeper, S = 4 s, `SCALE_WORKERS` (1000) workers, three supervisors started
//!    together. Placement time (start of the first supervisor -> the last worker's first connection to the
//!    witness), exactly-once check; then an idle window of `SCALE_IDLE_SECS` (60 s) with nothing happening:
//!    CPU of each node (supervisor and its guards), ZooKeeper requests (`mntr` `zk_packets_received`, and per
//!    session from `cons`); watches (`mntr` `zk_watch_count`; `wchs`, `wchc` for data watches); then the busiest node is shut down cleanly
//!    (SIGTERM): time until each of its workers runs elsewhere, and until it exits. CPU breakdowns of the busy
//!    phases, and their timing from the supervisors' logs (`leading`, `started`).
//! 4. `memory`: one supervisor alone with 10, 100 and 1000 workers: RSS, PSS and private memory of the
//!    supervisor and of each guard (`/proc/<pid>/smaps_rollup`); at 100 workers also idle CPU over
//!    `SCALE_COMPARE_IDLE_SECS`, to compare with kazoo.
//! 5. `rolling`: 3-server ensemble, S = 4 s, 3 supervisors, `ROLLING_WORKERS` (50) workers; every server killed
//!    for 1 s and restarted in turn (quorum leader last). Counts worker starts beyond the first.
//!
//! `SCALE_QUICK=1` shortens the rounds, trials and idle windows (bench/run --quick).
//! The workers are bench/witness_client.c compiled with `cc` (bash witnesses if there is none; the crash
//! section always uses bash, as bench/failover does): a process that holds a TCP connection to the witness for
//! exactly its life. `SCALE_JSON=<file>` writes the figures as JSON. Waits all have deadlines; figures are
//! printed, never asserted, except that a worker never runs twice at once.
//!
//! One module per section (cluster, memory, failover for `kazoo` and `crash`, rolling) and per kind of helper
//! (agents, logs, procs, zkstats).

mod agents;
mod cluster;
mod failover;
mod logs;
mod memory;
mod procs;
mod rolling;
mod zkstats;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::bench::*;
use testkit::*;

use agents::*;
use cluster::*;
use failover::*;
use logs::*;
use memory::*;
use procs::*;
use rolling::*;
use zkstats::*;

/// Session timeout of the cluster, memory and rolling runs: the test servers' maximum.
const S_SCALE: &str = "4s";
const S_SCALE_SECS: f64 = 4.0;
/// Session timeout of the crash and handoff runs (as bench/failover and bench/handoff).
const S_CRASH: &str = "2s";

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn main() {
    let quick = std::env::var("SCALE_QUICK").is_ok_and(|v| v == "1");
    let sections: Vec<String> = std::env::var("SCALE_SECTIONS")
        .unwrap_or_else(|_| "kazoo,crash,cluster,memory,rolling".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let want = |s: &str| sections.iter().any(|x| x == s);
    let compare_idle =
        Duration::from_secs(env_num("SCALE_COMPARE_IDLE_SECS", if quick { 10 } else { 30 }) as u64);
    let began = Instant::now();
    println!(
        "scale benchmark: {}; quick: {quick}; cores: {}",
        bin(),
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut report = serde_json::Map::new();
    report.insert("quick".into(), quick.into());
    report.insert("compare_idle_s".into(), compare_idle.as_secs().into());
    // One standalone server for the sections that do not start their own.
    let server = std::cell::OnceCell::new();
    let zk = || server.get_or_init(ZkServer::standalone);
    if want("kazoo") {
        let rounds = env_num("KAZOO_ROUNDS", if quick { 10 } else { 50 });
        println!(
            "\n1. kazoo baseline (bench/kazoo_agent.py): handoff ({rounds} rounds), memory and idle CPU with 100 \
             workers over {} s",
            compare_idle.as_secs()
        );
        let busy = wait_quiet(30.0, Duration::from_secs(30));
        println!("  machine {busy:.0} % busy before the handoffs (waited up to 30 s for < 30 %)");
        let h = handoff(zk(), Agent::Kazoo, rounds);
        // The same harness on zk-supervise, with the gap taken apart from its logs (the figure itself comes
        // from bench/handoff).
        let z = handoff(zk(), Agent::ZkSupervise, rounds);
        let cost = node_cost(zk(), Agent::Kazoo, 100, Some(compare_idle)).to_json();
        report.insert(
            "kazoo".into(),
            json!({"handoff": h, "zk_supervise_handoff_same_harness": z, "node_100": cost}),
        );
    }
    if want("crash") {
        let trials = env_num("CRASH_TRIALS", if quick { 5 } else { 20 });
        println!("\n2. crash failover: S = {S_CRASH}, {trials} SIGKILLs of the leader, two nodes");
        let mut out = serde_json::Map::new();
        for agent in [Agent::ZkSupervise, Agent::Kazoo] {
            out.insert(agent.name().into(), crash(zk(), agent, trials));
        }
        report.insert("crash".into(), Value::Object(out));
    }
    if want("cluster") {
        report.insert("cluster".into(), cluster(quick));
    }
    if want("memory") {
        report.insert("memory".into(), memory(zk(), compare_idle));
    }
    if want("rolling") {
        report.insert("rolling".into(), rolling(env_num("ROLLING_WORKERS", 50)));
    }
    report.insert(
        "seconds".into(),
        round3(began.elapsed().as_secs_f64()).into(),
    );
    let text = serde_json::to_string_pretty(&Value::Object(report)).expect("json");
    if let Ok(path) = std::env::var("SCALE_JSON") {
        fs::write(&path, &text).unwrap_or_else(|e| panic!("write {path}: {e}"));
        println!("\nfigures written to {path}");
    }
    println!("total time {:.1} s", began.elapsed().as_secs_f64());
}
