//! The workers and the agents that run them: zk-supervise or the kazoo baseline, and waits on the witness.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use testkit::*;

/// The light worker (see [`testkit::bench::light_worker`]).
pub(crate) fn light(witness: &Witness) -> (Vec<String>, &'static str) {
    testkit::bench::light_worker(witness, "bash witness (no C compiler)")
}

/// The program that runs on each node: the daemon, or the kazoo baseline.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Agent {
    ZkSupervise,
    Kazoo,
}

impl Agent {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Agent::ZkSupervise => "zk-supervise",
            Agent::Kazoo => "kazoo",
        }
    }

    pub(crate) fn start(self, toml: &str, node: &str) -> Supervisor {
        match self {
            Agent::ZkSupervise => Supervisor::start(toml, node),
            Agent::Kazoo => start_program(
                &[
                    "python3",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/bench/kazoo_agent.py"),
                ],
                toml,
                node,
            ),
        }
    }
}

/// Live connections by worker.
pub(crate) fn live_by_worker(witness: &Witness) -> HashMap<String, Vec<Conn>> {
    let mut live: HashMap<String, Vec<Conn>> = HashMap::new();
    for conn in witness.all().into_iter().filter(Conn::is_live) {
        live.entry(conn.worker.clone()).or_default().push(conn);
    }
    live
}

/// Waits until every worker of `names` has a live connection; returns when the last one first opened.
pub(crate) fn wait_all_live(witness: &Witness, names: &[String], timeout: Duration) -> Instant {
    let mut last = None;
    wait_until(timeout, &format!("{} workers to run", names.len()), || {
        let live = live_by_worker(witness);
        if !names.iter().all(|n| live.contains_key(n)) {
            return false;
        }
        last = names
            .iter()
            .filter_map(|n| live[n].iter().map(|c| c.opened).min())
            .max();
        true
    });
    last.expect("at least one worker")
}

/// `n` worker specs running `command`.
pub(crate) fn workers(
    prefix: &str,
    n: usize,
    command: &[String],
) -> (Vec<String>, Vec<WorkerSpec>) {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i:04}")).collect();
    let specs = names
        .iter()
        .map(|name| WorkerSpec::new(name, command.to_vec()))
        .collect();
    (names, specs)
}
