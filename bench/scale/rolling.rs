//! Section 5, `rolling`: a rolling restart of the ensemble (bench/failover's method, more workers).

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::bench::*;
use testkit::*;

use super::*;

pub(crate) fn rolling(n: usize) -> Value {
    println!(
        "\n5. rolling ensemble restart: 3 servers, S = {S_SCALE}, 3 nodes, {n} workers (grace 500ms), each server \
         down 1 s, 1 s between"
    );
    let mut ensemble = ZkEnsemble::start(3);
    let witness = Witness::new();
    let (command, _) = light(&witness);
    let root = unique_root("bench-rolling");
    let names: Vec<String> = (0..n).map(|i| format!("r{i:03}")).collect();
    let specs: Vec<WorkerSpec> = names
        .iter()
        .map(|name| WorkerSpec::new(name, command.clone()).grace_period("500ms"))
        .collect();
    let toml = config(&ensemble.connect_string(), &root, S_SCALE, &specs);
    let nodes: Vec<Supervisor> = ["a", "b", "c"]
        .iter()
        .map(|id| Supervisor::start(&toml, id))
        .collect();
    wait_all_live(&witness, &names, Duration::from_secs(60));
    {
        let runtime = runtime();
        let client = runtime.block_on(zk_client(&ensemble.connect_string()));
        wait_all_joined(&runtime, &client, &root, &names, 3, Duration::from_secs(60));
    }
    let started = Instant::now();
    restart_one_by_one(&mut ensemble, |_, _, _| {});
    // A lease that lapsed during the last restart shows within S: look a little longer.
    thread::sleep(Duration::from_secs(5));
    wait_all_live(&witness, &names, Duration::from_secs(30));
    let elapsed = started.elapsed();
    let (extra, restarted) = extra_starts(&witness, &names);
    let (disconnects, sessions_lost, lapses) = (
        count_in_logs(&nodes, "disconnected from zookeeper"),
        count_in_logs(&nodes, "zookeeper session ended"),
        count_in_logs(&nodes, "lease lapsed"),
    );
    println!(
        "  extra worker starts: {extra} (target 0); supervisor disconnects {disconnects}, sessions lost \
         {sessions_lost}, leases lapsed {lapses}; took {:.1} s",
        elapsed.as_secs_f64()
    );
    for t in restarted.iter().take(3) {
        print!("{t}");
    }
    json!({
        "workers": n, "extra_starts": extra, "disconnects": disconnects, "sessions_lost": sessions_lost,
        "lease_lapses": lapses, "seconds": round3(elapsed.as_secs_f64()),
        "restarted": restarted.iter().take(3).collect::<Vec<_>>(),
    })
}
