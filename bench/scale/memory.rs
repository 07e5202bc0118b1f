//! Section 4, `memory`: the memory of one node, and idle CPU at 100 workers.

use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use testkit::bench::*;
use testkit::*;

use super::*;

pub(crate) struct NodeCost {
    pub(crate) agent: (u64, u64, u64),
    pub(crate) guards: Vec<(u64, u64, u64)>,
    pub(crate) cpu: Option<(f64, f64)>,
}

impl NodeCost {
    pub(crate) fn to_json(&self) -> Value {
        let col = |i: usize| -> Vec<u64> {
            self.guards
                .iter()
                .map(|g| [g.0, g.1, g.2][i])
                .collect::<Vec<_>>()
        };
        let (rss, pss, private) = (col(0), col(1), col(2));
        json!({
            "agent_rss_kb": self.agent.0, "agent_pss_kb": self.agent.1, "agent_private_kb": self.agent.2,
            "guards": self.guards.len(),
            "guard_rss_median_kb": median_u64(&rss), "guard_pss_median_kb": median_u64(&pss),
            "guard_private_median_kb": median_u64(&private),
            "guards_pss_total_kb": pss.iter().sum::<u64>(),
            "guards_private_total_kb": private.iter().sum::<u64>(),
            "node_pss_total_kb": self.agent.1 + pss.iter().sum::<u64>(),
            "idle_cpu_agent_percent": self.cpu.map(|c| c.0),
            "idle_cpu_guards_percent": self.cpu.map(|c| c.1),
            "idle_cpu_total_percent": self.cpu.map(|c| round3(c.0 + c.1)),
        })
    }
}

/// One node of `agent` alone with `n` light workers: memory once all run (plus a settling pause), and idle CPU
/// over `idle` if given.
pub(crate) fn node_cost(zk: &ZkServer, agent: Agent, n: usize, idle: Option<Duration>) -> NodeCost {
    let witness = Witness::new();
    let (command, _) = light(&witness);
    let root = unique_root("bench-memory");
    let (names, specs) = workers("m", n, &command);
    let mut node = agent.start(&config(&zk.connect_string(), &root, S_SCALE, &specs), "m");
    wait_all_live(&witness, &names, Duration::from_secs(120));
    // A few lease renewals: the steady state.
    thread::sleep(Duration::from_secs(3));
    let guards = match agent {
        Agent::ZkSupervise => guards_of(node.pid()),
        Agent::Kazoo => Vec::new(),
    };
    let cost_guards: Vec<(u64, u64, u64)> = guards.iter().map(|&g| memory_of(g)).collect();
    let cost_agent = memory_of(node.pid());
    let cpu = idle.map(|window| {
        let (a0, g0) = (cpu_secs(&[node.pid()]), cpu_secs(&guards));
        let t0 = Instant::now();
        thread::sleep(window);
        let window = t0.elapsed();
        (
            cpu_percent(&[node.pid()], a0, window),
            cpu_percent(&guards, g0, window),
        )
    });
    let starts = witness.all().len();
    assert_eq!(
        starts,
        n,
        "{} with {n} workers: {} extra starts while measuring\n{}",
        agent.name(),
        starts.saturating_sub(n),
        node.log()
    );
    node.signal(Signal::SIGTERM);
    node.wait_exit(Duration::from_secs(60));
    let cost = NodeCost {
        agent: cost_agent,
        guards: cost_guards,
        cpu,
    };
    let j = cost.to_json();
    println!(
        "  {} with {n} workers: agent RSS {} kB, PSS {} kB, private {} kB; {} guard processes: RSS median {} kB, PSS median \
         {} kB, private median {} kB, PSS total {} kB{}",
        agent.name(),
        j["agent_rss_kb"],
        j["agent_pss_kb"],
        j["agent_private_kb"],
        j["guards"],
        j["guard_rss_median_kb"],
        j["guard_pss_median_kb"],
        j["guard_private_median_kb"],
        j["guards_pss_total_kb"],
        cpu.map_or(String::new(), |(a, g)| format!(
            "; idle CPU over {} s: agent {a:.3} %, guards {g:.3} %",
            idle.unwrap_or_default().as_secs()
        ))
    );
    cost
}

pub(crate) fn memory(zk: &ZkServer, compare_idle: Duration) -> Value {
    println!(
        "\n4. memory: one supervisor alone, 10 / 100 / 1000 light workers, S = {S_SCALE}; idle CPU at 100 over {} s",
        compare_idle.as_secs()
    );
    let mut out = serde_json::Map::new();
    for n in [10, 100, 1000] {
        let idle = (n == 100).then_some(compare_idle);
        out.insert(
            n.to_string(),
            node_cost(zk, Agent::ZkSupervise, n, idle).to_json(),
        );
    }
    Value::Object(out)
}
