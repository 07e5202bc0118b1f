//! `cargo bench --bench failover`: how long a worker is down when the node that runs it fails, whether a rolling
//! restart of the ZooKeeper ensemble restarts workers, and what the enforcement design (one guard process per
//! running worker) costs in memory.
//!
//! 1. Crash failover, S = 2 s: two supervisors, one worker. Each trial SIGKILLs the supervisor that runs it and
//!    measures SIGKILL -> the new child's start on the other node, and the old child's death -> the new child's
//!    start; the killed node is started again and queues behind before the next trial.
//! 2. Partition, S = 2 s: each node reaches ZooKeeper through a proxy of its own. Each trial black-holes the
//!    leader's proxy and measures partition -> the new child's start elsewhere, and the old child's death -> the
//!    new child's start; then heals it and waits for the old leader to queue behind again.
//! 3. Rolling restart of a three-server ensemble, S = 4 s: three supervisors, ten workers; every server is
//!    killed and restarted in turn (the quorum leader last). Counts the worker starts beyond the first.
//! 4. Memory: one supervisor running twenty workers. RSS, PSS and private memory (`/proc/<pid>/smaps_rollup`) of
//!    every guard (the parent of each worker process) and of the supervisor, and the supervisor with one worker.
//!
//! Standalone servers and ensembles come from the test rig (testkit/), with its settings: `tickTime=200`,
//! `forceSync=no`, C1-only JIT. `ZK_JAVA_OPTS` adds JVM options to every server (e.g. `-XX:TieredStopAtLevel=4`
//! for full JIT compilation). A child's life is seen through a TCP witness: the kernel closes its connection the
//! instant it dies. Figures are printed, never asserted.
//!
//! `FAILOVER_TRIALS` sets the number of crash trials (default 20), `PARTITION_TRIALS` the number of partition
//! trials (default 5).

use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use testkit::bench::*;
use testkit::*;

/// The session timeout of the crash, partition and memory runs.
const S_FAILOVER: &str = "2s";
/// The session timeout of the ensemble run: the test servers' maximum, so the lease outlasts a quorum election.
const S_ENSEMBLE: &str = "4s";
const ENSEMBLE_WORKERS: usize = 10;
const MEMORY_WORKERS: usize = 20;
/// A failover trial this much slower than the median gets its logs printed.
const SLOW: Duration = Duration::from_millis(250);
const NODES: [&str; 2] = ["a", "b"];

/// Waits until the election at `path` holds exactly `want`, in that order.
fn wait_queue(
    runtime: &tokio::runtime::Runtime,
    client: &zookeeper_client::Client,
    path: &str,
    want: &[&str],
    timeout: Duration,
) {
    runtime.block_on(wait_queue_async(client, path, want, timeout));
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Wall-clock time of day in UTC, as the supervisor's log shows it.
fn utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let s = d.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// Median and max of a non-empty sample.
fn median_max(sample: &[Duration]) -> (Duration, Duration) {
    (median(sample), quantile(sample, 1.0))
}

/// The lines of `text` after byte `from` that contain one of `needles` (every line if `needles` is empty),
/// indented.
fn excerpt(text: &str, from: usize, needles: &[&str]) -> String {
    let mut out = String::new();
    for line in text.get(from..).unwrap_or_default().lines() {
        if needles.is_empty() || needles.iter().any(|n| line.contains(n)) {
            let _ = writeln!(out, "      {line}");
        }
    }
    out
}

/// One failover trial: fault -> new child, old child's death -> new child, and the logs of its window.
struct Trial {
    fault_to_start: Duration,
    death_to_start: Duration,
    logs: String,
}

struct Failover {
    trials: Vec<Trial>,
    /// Partition runs: heal -> the old leader queued again.
    rejoins: Vec<Duration>,
}

impl Failover {
    fn fault_to_start(&self) -> (Duration, Duration) {
        median_max(
            &self
                .trials
                .iter()
                .map(|t| t.fault_to_start)
                .collect::<Vec<_>>(),
        )
    }

    fn death_to_start(&self) -> (Duration, Duration) {
        median_max(
            &self
                .trials
                .iter()
                .map(|t| t.death_to_start)
                .collect::<Vec<_>>(),
        )
    }

    /// Prints the logs of the trials more than [`SLOW`] above the median (the three slowest at most).
    fn print_slow(&self, what: &str) {
        let (median, _) = self.fault_to_start();
        let mut slow: Vec<(usize, &Trial)> = self
            .trials
            .iter()
            .enumerate()
            .filter(|(_, t)| t.fault_to_start > median + SLOW)
            .collect();
        slow.sort_by_key(|(_, t)| std::cmp::Reverse(t.fault_to_start));
        for (i, trial) in slow.into_iter().take(3) {
            println!(
                "  slow {what} trial {i} ({} vs median {}); logs of its window:\n{}",
                secs(trial.fault_to_start),
                secs(median),
                trial.logs
            );
        }
    }
}

/// What makes a node lose the worker in [`failover`].
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Crash,
    Partition,
}

/// Two supervisors, one worker, `trials` failovers of the kind `fault`.
fn failover(zk: &ZkServer, fault: Fault, trials: usize) -> Failover {
    let what = match fault {
        Fault::Crash => "crash",
        Fault::Partition => "partition",
    };
    let witness = Witness::new();
    let root = unique_root(&format!("bench-{what}"));
    let path = format!("{root}/w");
    let worker = WorkerSpec::new("w", witness.command());
    // Crash: both nodes talk to the server directly. Partition: each through a proxy of its own.
    let proxies: Vec<Proxy> = match fault {
        Fault::Crash => Vec::new(),
        Fault::Partition => NODES
            .iter()
            .map(|_| Proxy::new(&zk.connect_string()))
            .collect(),
    };
    let tomls: Vec<String> = (0..NODES.len())
        .map(|i| {
            let connect = proxies
                .get(i)
                .map_or_else(|| zk.connect_string(), Proxy::connect_string);
            config(&connect, &root, S_FAILOVER, std::slice::from_ref(&worker))
        })
        .collect();
    let mut nodes: Vec<Option<Supervisor>> = vec![Some(Supervisor::start(&tomls[0], NODES[0]))];
    witness.wait_live("w", Some(NODES[0]), Duration::from_secs(30));
    nodes.push(Some(Supervisor::start(&tomls[1], NODES[1])));
    let runtime = runtime();
    let client = runtime.block_on(zk_client(&zk.connect_string()));
    wait_queue(&runtime, &client, &path, &NODES, Duration::from_secs(15));

    let mut result = Failover {
        trials: Vec::with_capacity(trials),
        rejoins: Vec::new(),
    };
    for trial in 0..trials {
        let old = witness.live("w").pop().expect("the worker runs");
        let leader = NODES
            .iter()
            .position(|n| *n == old.node)
            .expect("a known node");
        let next = 1 - leader;
        let next_log_from = nodes[next].as_ref().expect("running").log().len();
        let leader_log_from = nodes[leader].as_ref().expect("running").log().len();
        let zk_log_from = zk.log().len();
        let wall = SystemTime::now();
        let faulted = Instant::now();
        let victim = match fault {
            Fault::Crash => {
                let supervisor = nodes[leader].take().expect("the leader runs");
                supervisor.signal(Signal::SIGKILL);
                Some(supervisor)
            }
            Fault::Partition => {
                proxies[leader].partition();
                None
            }
        };
        let new = witness.wait_live("w", Some(NODES[next]), Duration::from_secs(15));
        witness.assert_no_overlap("w");
        let old = witness.again(&old);
        let died = old.closed.expect("closed").duration_since(faulted);
        let fault_to_start = new.opened.duration_since(faulted);
        let death_to_start = gap(&old, &new);
        // The window's logs, for a trial that turns out slow.
        let mut logs = format!("    fault at {}\n", utc(wall));
        let _ = write!(
            logs,
            "    ZooKeeper:\n{}",
            excerpt(&zk.log(), zk_log_from, &["xpir"])
        );
        let leader_log = match (&victim, &nodes[leader]) {
            (Some(supervisor), _) | (None, Some(supervisor)) => supervisor.log(),
            (None, None) => String::new(),
        };
        let _ = write!(
            logs,
            "    old leader {}:\n{}    new leader {}:\n{}",
            NODES[leader],
            excerpt(&leader_log, leader_log_from, &[]),
            NODES[next],
            excerpt(
                &nodes[next].as_ref().expect("running").log(),
                next_log_from,
                &[]
            )
        );
        let mut line = format!(
            "  {what} trial {trial:>2}: {} -> {}: fault -> new child {}, old child died {} after the fault, \
             death -> new child {}",
            NODES[leader],
            NODES[next],
            secs(fault_to_start),
            millis(died),
            secs(death_to_start)
        );
        match fault {
            Fault::Crash => {
                // Reap the killed supervisor, start it again and let it queue behind.
                drop(victim);
                nodes[leader] = Some(Supervisor::start(&tomls[leader], NODES[leader]));
                wait_queue(
                    &runtime,
                    &client,
                    &path,
                    &[NODES[next], NODES[leader]],
                    Duration::from_secs(15),
                );
            }
            Fault::Partition => {
                let healed = Instant::now();
                proxies[leader].heal();
                wait_queue(
                    &runtime,
                    &client,
                    &path,
                    &[NODES[next], NODES[leader]],
                    Duration::from_secs(30),
                );
                let rejoin = healed.elapsed();
                let _ = write!(line, ", heal -> rejoined {}", secs(rejoin));
                result.rejoins.push(rejoin);
            }
        }
        println!("{line}");
        result.trials.push(Trial {
            fault_to_start,
            death_to_start,
            logs,
        });
    }
    witness.assert_no_overlap("w");
    result
}

struct Rolling {
    /// Worker starts beyond the first, summed over the workers.
    extra_starts: usize,
    /// Which workers restarted, with their timelines.
    restarted: Vec<String>,
    disconnects: usize,
    session_losses: usize,
    lease_lapses: usize,
    elapsed: Duration,
}

/// Three supervisors, ten workers, every ensemble member killed for a second and restarted in turn.
fn rolling_restart() -> Rolling {
    let mut ensemble = ZkEnsemble::start(3);
    let witness = Witness::new();
    let root = unique_root("bench-rolling");
    let names: Vec<String> = (0..ENSEMBLE_WORKERS).map(|i| format!("w{i:02}")).collect();
    let workers: Vec<WorkerSpec> = names
        .iter()
        .map(|n| WorkerSpec::new(n, witness.command()).grace_period("500ms"))
        .collect();
    let toml = config(&ensemble.connect_string(), &root, S_ENSEMBLE, &workers);
    let nodes: Vec<Supervisor> = ["a", "b", "c"]
        .iter()
        .map(|id| Supervisor::start(&toml, id))
        .collect();
    for name in &names {
        witness.wait_live(name, None, Duration::from_secs(30));
    }
    {
        // Every node has joined every election before the servers go down.
        let runtime = runtime();
        let client = runtime.block_on(zk_client(&ensemble.connect_string()));
        wait_all_joined(&runtime, &client, &root, &names, 3, Duration::from_secs(30));
    }
    let started = Instant::now();
    restart_one_by_one(&mut ensemble, |i, was_leader, down| {
        println!(
            "  ensemble member zk{}{} killed, restarted and serving again after {}",
            i + 1,
            if was_leader { " (quorum leader)" } else { "" },
            secs(down)
        );
    });
    // A lease that lapsed during the last restart shows by S after it: look a little longer, then make sure every
    // worker runs again before counting.
    thread::sleep(Duration::from_secs(3));
    for name in &names {
        witness.wait_live(name, None, Duration::from_secs(20));
    }
    let elapsed = started.elapsed();
    let (extra_starts, restarted) = extra_starts(&witness, &names);
    for node in &nodes {
        assert!(
            !node.has_exited(),
            "supervisor {} exited\n{}",
            node.node_id(),
            node.log()
        );
    }
    Rolling {
        extra_starts,
        restarted,
        disconnects: count_in_logs(&nodes, "disconnected from zookeeper"),
        session_losses: count_in_logs(&nodes, "zookeeper session ended"),
        lease_lapses: count_in_logs(&nodes, "lease lapsed"),
        elapsed,
    }
}

struct Memory {
    guard_rss: Vec<u64>,
    guard_pss: Vec<u64>,
    guard_private: Vec<u64>,
    supervisor: (u64, u64, u64),
    /// The supervisor with a single worker, for its growth per worker.
    supervisor_one: (u64, u64, u64),
}

/// Starts a supervisor with `n` witness workers and waits until all run; returns it with the worker names.
fn running(zk: &ZkServer, witness: &Witness, n: usize, node: &str) -> (Supervisor, Vec<String>) {
    let root = unique_root("bench-memory");
    let names: Vec<String> = (0..n).map(|i| format!("m{i:02}")).collect();
    let workers: Vec<WorkerSpec> = names
        .iter()
        .map(|name| WorkerSpec::new(name, witness.command()))
        .collect();
    let supervisor = Supervisor::start(
        &config(&zk.connect_string(), &root, S_FAILOVER, &workers),
        node,
    );
    for name in &names {
        witness.wait_live(name, Some(node), Duration::from_secs(30));
    }
    // A few lease renewals, so every guard has handled deadlines and the supervisor is in its steady state.
    thread::sleep(Duration::from_secs(1));
    (supervisor, names)
}

fn memory(zk: &ZkServer) -> Memory {
    let supervisor_one = {
        let witness = Witness::new();
        let (supervisor, _) = running(zk, &witness, 1, "m1");
        memory_of(supervisor.pid())
    };
    let witness = Witness::new();
    let (supervisor, names) = running(zk, &witness, MEMORY_WORKERS, "m");
    let mut guard_rss = Vec::new();
    let mut guard_pss = Vec::new();
    let mut guard_private = Vec::new();
    for name in &names {
        let child = witness.live(name).pop().expect("the worker runs");
        let (guard, _) = stat(child.pid)
            .unwrap_or_else(|| panic!("no /proc/{}/stat of worker {name}", child.pid));
        let guard_cmdline = cmdline(guard);
        assert!(
            guard_cmdline.contains("__guards"),
            "the parent {guard} of worker {name} (pid {}) is not a guard: {guard_cmdline}",
            child.pid
        );
        let (rss, pss, private) = memory_of(guard);
        guard_rss.push(rss);
        guard_pss.push(pss);
        guard_private.push(private);
    }
    Memory {
        guard_rss,
        guard_pss,
        guard_private,
        supervisor: memory_of(supervisor.pid()),
        supervisor_one,
    }
}

fn main() {
    let crash_trials = env_num("FAILOVER_TRIALS", 20);
    let partition_trials = env_num("PARTITION_TRIALS", 5);
    let began = Instant::now();
    let java_opts = std::env::var("ZK_JAVA_OPTS").unwrap_or_default();
    println!("failover benchmark: {}", bin());
    println!(
        "ZooKeeper (test rig): 127.0.0.1, tickTime=200 (sessions 400 ms..4 s), JVM -Xmx128m -XX:+UseSerialGC \
         -XX:TieredStopAtLevel=1 -Dzookeeper.forceSync=no -Dzookeeper.preAllocSize=1024; ZK_JAVA_OPTS={}",
        if java_opts.is_empty() {
            "(unset)"
        } else {
            &java_opts
        }
    );
    println!(
        "lease: K = L + S - max(S/10, 200 ms), renewed every S/5; cores: {}",
        thread::available_parallelism().map_or(0, |n| n.get())
    );

    let zk = ZkServer::standalone();

    println!(
        "\n1. crash failover: S = {S_FAILOVER}, grace_period 1s, two nodes, one worker, {crash_trials} trials"
    );
    let crash = failover(&zk, Fault::Crash, crash_trials);
    let (crash_kill, crash_kill_max) = crash.fault_to_start();
    let (crash_death, crash_death_max) = crash.death_to_start();
    let crash_line = format!(
        "crash failover gap (S = {S_FAILOVER}, {} trials): SIGKILL -> new child median {}, max {}; \
         old child's death -> new child median {}, max {} (target: median <= 2.3 s)",
        crash.trials.len(),
        secs(crash_kill),
        secs(crash_kill_max),
        secs(crash_death),
        secs(crash_death_max)
    );
    println!("{crash_line}");
    crash.print_slow("crash");

    println!(
        "\n2. partition: S = {S_FAILOVER}, grace_period 1s, two nodes each behind its own proxy, {partition_trials} \
         trials"
    );
    let partition = failover(&zk, Fault::Partition, partition_trials);
    let (part_start, part_start_max) = partition.fault_to_start();
    let (part_death, part_death_max) = partition.death_to_start();
    let (rejoin, rejoin_max) = median_max(&partition.rejoins);
    let partition_line = format!(
        "partition gap (S = {S_FAILOVER}, {} trials): partition -> new child median {}, max {}; \
         old child's death -> new child median {}, max {}; heal -> rejoined median {}, max {} \
         (target: <= 2.5 s)",
        partition.trials.len(),
        secs(part_start),
        secs(part_start_max),
        secs(part_death),
        secs(part_death_max),
        secs(rejoin),
        secs(rejoin_max)
    );
    println!("{partition_line}");
    partition.print_slow("partition");

    println!(
        "\n3. rolling ensemble restart: 3 servers, S = {S_ENSEMBLE}, 3 nodes, {ENSEMBLE_WORKERS} workers \
         (grace_period 500ms), each server down 1 s, 1 s between"
    );
    let rolling = rolling_restart();
    let rolling_line = format!(
        "worker restarts during a rolling ensemble restart (S = {S_ENSEMBLE}, {ENSEMBLE_WORKERS} workers, 3 nodes): \
         {} extra starts (target 0); supervisor disconnects {}, sessions lost {}, leases lapsed {}; took {}",
        rolling.extra_starts,
        rolling.disconnects,
        rolling.session_losses,
        rolling.lease_lapses,
        secs(rolling.elapsed)
    );
    println!("{rolling_line}");
    for timeline in &rolling.restarted {
        print!("{timeline}");
    }

    println!("\n4. memory: one supervisor, {MEMORY_WORKERS} running workers (bash witnesses), S = {S_FAILOVER}");
    let memory = memory(&zk);
    let max_rss = memory.guard_rss.iter().max().copied().unwrap_or(0);
    let growth =
        memory.supervisor.0.saturating_sub(memory.supervisor_one.0) / (MEMORY_WORKERS as u64 - 1);
    let memory_line = format!(
        "memory per running worker ({} guards): guard RSS median {} kB (max {max_rss} kB), guard PSS median {} kB, \
         guard private median {} kB (target: < 1024 kB extra RSS per worker)",
        memory.guard_rss.len(),
        median_u64(&memory.guard_rss),
        median_u64(&memory.guard_pss),
        median_u64(&memory.guard_private)
    );
    let supervisor_line = format!(
        "supervisor with {MEMORY_WORKERS} workers: RSS {} kB, PSS {} kB, private {} kB (with 1 worker: RSS {} kB; \
         RSS growth ~{growth} kB per worker)",
        memory.supervisor.0, memory.supervisor.1, memory.supervisor.2, memory.supervisor_one.0
    );
    println!("{memory_line}");
    println!("{supervisor_line}");

    println!("\n===== failover summary =====");
    println!("1. {crash_line}");
    println!("2. {partition_line}");
    println!("3. {rolling_line}");
    println!("4. {memory_line}");
    println!("   {supervisor_line}");
    println!("total time {}", secs(began.elapsed()));
}
