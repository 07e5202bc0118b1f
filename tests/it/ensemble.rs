//! Faults of ZooKeeper itself, on a three-server ensemble (issue: hard faults): a rolling restart must not
//! restart any worker; a whole-ensemble outage stops every child by the lease and, when ZooKeeper returns,
//! every worker runs exactly once again.
//!
//! Each test starts its own ensemble (it kills servers).

use std::time::{Duration, Instant};

use testkit::*;

/// The longest session the test servers allow (20 ticks of 200 ms): a rolling restart includes a quorum leader
/// election, and the lease must outlast it.
const S: Duration = Duration::from_secs(4);
const S_STR: &str = "4s";
const WORKERS: [&str; 3] = ["w1", "w2", "w3"];

fn start_nodes(ensemble: &ZkEnsemble, witness: &Witness, root: &str) -> Vec<Supervisor> {
    let workers: Vec<WorkerSpec> = WORKERS
        .iter()
        .map(|n| WorkerSpec::new(n, witness.command()).grace_period("500ms"))
        .collect();
    let toml = config(&ensemble.connect_string(), root, S_STR, &workers);
    let nodes: Vec<Supervisor> = ["a", "b", "c"]
        .iter()
        .map(|id| Supervisor::start(&toml, id))
        .collect();
    for name in WORKERS {
        witness.wait_live(name, None, Duration::from_secs(30));
    }
    nodes
}

/// Samples for `how_long` that every worker runs exactly once.
fn assert_each_runs_once(witness: &Witness, how_long: Duration) {
    let until = Instant::now() + how_long;
    loop {
        for name in WORKERS {
            assert_eq!(witness.live(name).len(), 1, "{}", witness.timeline(name));
        }
        if Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rolling_restart_of_the_ensemble_restarts_no_worker() {
    let _clusters = testkit::heavy::shared();
    let mut ensemble = ZkEnsemble::start(3);
    let witness = Witness::new();
    let nodes = start_nodes(&ensemble, &witness, "/workers");
    assert_each_runs_once(&witness, Duration::from_millis(500));
    // Every server in turn, the quorum leader last (so it is restarted while clients are on it).
    let leader = ensemble.leader_index();
    let order: Vec<usize> = (0..3).filter(|&i| i != leader).chain([leader]).collect();
    for i in order {
        ensemble.kill(i);
        std::thread::sleep(Duration::from_secs(1));
        ensemble.restart(i);
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_each_runs_once(&witness, Duration::from_secs(1));
    for name in WORKERS {
        assert_eq!(
            witness.history(name).len(),
            1,
            "worker {name} restarted\n{}",
            witness.timeline(name)
        );
        witness.assert_no_overlap(name);
    }
    for node in &nodes {
        assert!(!node.has_exited(), "{}", node.log());
    }
}

#[test]
fn after_a_whole_ensemble_outage_every_worker_runs_exactly_once_again() {
    let _clusters = testkit::heavy::shared();
    let mut ensemble = ZkEnsemble::start(3);
    let witness = Witness::new();
    let _nodes = start_nodes(&ensemble, &witness, "/workers");
    let down = Instant::now();
    for i in 0..3 {
        ensemble.kill(i);
    }
    // Every child is stopped by its lease deadline, at most S - margin after the last renewal.
    for name in WORKERS {
        witness.wait_none_live(name, S);
    }
    println!(
        "every child stopped {:?} after the outage began",
        down.elapsed()
    );
    if let Some(rest) = (2 * S).checked_sub(down.elapsed()) {
        std::thread::sleep(rest);
    }
    let up = Instant::now();
    ensemble.restart_all();
    for name in WORKERS {
        witness.wait_live(name, None, Duration::from_secs(30));
    }
    println!(
        "every worker runs again {:?} after the restart began",
        up.elapsed()
    );
    assert_each_runs_once(&witness, Duration::from_secs(2));
    for name in WORKERS {
        witness.assert_no_overlap(name);
    }
}
