//! `cargo bench --bench handoff`: clean handoff gap between two nodes.
//!
//! Two supervisors run one worker against a throwaway standalone ZooKeeper. Each round SIGTERMs the node
//! that runs the worker, measures the gap from the old child's death to the new child's start with a TCP
//! witness (the kernel closes the old child's connection the instant it dies), then starts the stopped node
//! again so it queues behind the new leader. Prints every gap's median, p95 and max.
//!
//! `HANDOFF_ROUNDS` sets the number of rounds (default 50).

use std::time::Duration;

use nix::sys::signal::Signal;
use testkit::bench::{env_num, light_worker, quantile};
use testkit::*;

fn main() {
    let rounds = env_num("HANDOFF_ROUNDS", 50);
    let zk = ZkServer::standalone();
    let witness = Witness::new();
    let root = unique_root("bench-handoff");
    let (command, client) = light_worker(
        &witness,
        "bash (no C compiler found: the figures include bash's start-up)",
    );
    println!("worker command: {client}");
    let toml = config(
        &zk.connect_string(),
        &root,
        "2s",
        &[WorkerSpec::new("w", command)],
    );
    let mut nodes = [Some(Supervisor::start(&toml, "a")), None];
    witness.wait_live("w", Some("a"), Duration::from_secs(30));
    nodes[1] = Some(Supervisor::start(&toml, "b"));
    let path = format!("{root}/w");
    // On the current thread, unlike testkit::bench::runtime: the benchmark's own session does its work only while
    // the benchmark waits for the two candidates, never during a handoff it measures.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = runtime.block_on(zk_client(&zk.connect_string()));
    let mut gaps = Vec::with_capacity(rounds);
    for round in 0..rounds {
        runtime.block_on(wait_until_async(
            Duration::from_secs(10),
            "two candidates",
            || async { candidates(&client, &path).await.len() == 2 },
        ));
        let old = witness.live("w").pop().expect("the worker runs");
        let leader = usize::from(old.node == "b");
        let mut stopping = nodes[leader].take().expect("the leader runs");
        stopping.signal(Signal::SIGTERM);
        let next_node = if leader == 0 { "b" } else { "a" };
        let new = witness.wait_live("w", Some(next_node), Duration::from_secs(10));
        let status = stopping.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0));
        witness.assert_no_overlap("w");
        let old = witness.again(&old);
        let g = gap(&old, &new);
        println!(
            "round {round:>2}: {} -> {next_node}: {:.2} ms",
            old.node,
            g.as_secs_f64() * 1e3
        );
        gaps.push(g);
        nodes[leader] = Some(Supervisor::start(&toml, &old.node));
    }
    let at = |q: f64| quantile(&gaps, q).as_secs_f64() * 1e3;
    println!(
        "clean handoff gap over {} rounds: median {:.2} ms, p95 {:.2} ms, max {:.2} ms, min {:.2} ms",
        gaps.len(),
        at(0.5),
        at(0.95),
        at(1.0),
        at(0.0)
    );
}
