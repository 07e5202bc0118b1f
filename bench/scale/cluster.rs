//! Section 3, `cluster`: one standalone ZooKeeper, three supervisors started together with `SCALE_WORKERS`
//! workers. Its steps, in order: [`place`] (until every worker runs), [`join`] (until every node is in every
//! election), [`exactly_once`], [`idle_window`], [`watches`], [`shut_down_busiest`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Map, Value};
use testkit::bench::*;
use testkit::*;

use super::*;

pub(crate) fn cluster(quick: bool) -> Value {
    let n = env_num("SCALE_WORKERS", 1000);
    // Whole periods of S/5 = 0.8 s.
    let idle = Duration::from_secs(env_num("SCALE_IDLE_SECS", if quick { 16 } else { 60 }) as u64);
    let zk = ZkServer::standalone();
    let addr = zk.connect_string();
    let witness = Witness::new();
    let (command, worker_kind) = light(&witness);
    let root = unique_root("bench-scale");
    let (names, specs) = workers("w", n, &command);
    let toml = config(&addr, &root, S_SCALE, &specs);
    let ids = ["a", "b", "c"];
    println!("\n3. cluster: 3 nodes started together, {n} workers ({worker_kind}), S = {S_SCALE}, grace 1s");

    let mut figures = Map::new();
    figures.insert("workers".into(), n.into());
    figures.insert("worker_command".into(), worker_kind.into());
    figures.insert("session_timeout_s".into(), S_SCALE_SECS.into());
    figures.insert("grace_s".into(), 1.0.into());
    let Placement {
        mut nodes,
        began,
        began_utc,
    } = place(&addr, &witness, &names, &toml, &ids, quick, &mut figures);
    let (all_joined, owner_node, queues) = join(&addr, &root, &names, began);
    figures.insert(
        "all_joined_s".into(),
        round3(all_joined.as_secs_f64()).into(),
    );
    let (live, per_node) = exactly_once(n, &zk, &witness, &nodes, began_utc, &mut figures);
    figures.insert(
        "idle".into(),
        idle_window(&addr, &witness, &nodes, &owner_node, idle),
    );
    // The busiest node: who is told when each of its candidates goes is counted by the server during its
    // shutdown (mntr's node_deleted_watch_count), since child watches cannot be listed per path.
    let busiest = per_node
        .iter()
        .max_by_key(|(_, c)| **c)
        .map(|(n, _)| n.clone())
        .expect("a node runs workers");

    figures.insert(
        "watches".into(),
        watches(&addr, &queues, &owner_node, &busiest),
    );
    // The busiest node shuts down cleanly.
    let index = ids.iter().position(|id| *id == busiest).expect("known");
    let stopping = nodes[index].take().expect("running");
    shut_down_busiest(
        &addr,
        &witness,
        stopping,
        &nodes,
        &busiest,
        &live,
        &mut figures,
    );
    for node in nodes.iter_mut().flatten() {
        node.signal(Signal::SIGTERM);
    }
    for node in nodes.iter_mut().flatten() {
        node.wait_exit(Duration::from_secs(30));
    }
    Value::Object(figures)
}

/// The three nodes once every worker runs, and when they were started.
struct Placement {
    nodes: Vec<Option<Supervisor>>,
    began: Instant,
    /// `began` as UTC seconds, to read the supervisors' logs from.
    began_utc: f64,
}

/// Starts the three supervisors together once the machine is quiet, and waits until every worker runs: how long
/// that took, the CPU it cost, and what the server went through.
fn place(
    addr: &str,
    witness: &Witness,
    names: &[String],
    toml: &str,
    ids: &[&str],
    quick: bool,
    figures: &mut Map<String, Value>,
) -> Placement {
    let n = names.len();
    let patience = Duration::from_secs(if quick { 20 } else { 90 });
    let quiet = wait_quiet(30.0, patience);
    println!(
        "  machine {quiet:.0} % busy before the start (waited up to {} s for < 30 %)",
        patience.as_secs()
    );
    // Server statistics (latencies) from the start of placement on, and a sampler of its request queues.
    word(addr, "srst");
    let sampler = QueueSampler::start(addr);
    let profile_start = Profile::now();
    let began_utc = utc_secs_now();
    let began = Instant::now();
    let nodes: Vec<Option<Supervisor>> = ids
        .iter()
        .map(|id| Some(Supervisor::start(toml, id)))
        .collect();
    let last_start = wait_all_live(witness, names, Duration::from_secs(120));
    let placement = last_start.duration_since(began);
    let (placement_cpu, placement_cpu_line) = Profile::now().since(&profile_start);
    let (max_outstanding, max_queued) = sampler.stop();
    let mntr = word(addr, "mntr");
    let server_latency = json!({
        "avg_ms": mntr_field(&mntr, "zk_avg_latency"),
        "max_ms": mntr_field(&mntr, "zk_max_latency"),
        "packets_received": mntr_field(&mntr, "zk_packets_received"),
        "max_outstanding_requests": max_outstanding,
        "max_queued_per_connection": max_queued,
    });
    let logs: Vec<String> = nodes.iter().flatten().map(Supervisor::log).collect();
    let placement_phases = phases(&logs, names, began_utc);
    println!(
        "  placement: all {n} workers running {:.3} s after the supervisors' start",
        placement.as_secs_f64()
    );
    println!("    CPU during placement: {placement_cpu_line}");
    println!(
        "    ZooKeeper during placement: {} requests, server latency avg {} ms, max {} ms; sampled every 100 ms: \
         at most {max_outstanding} requests outstanding in the server, at most {max_queued} queued on one \
         connection",
        server_latency["packets_received"], server_latency["avg_ms"], server_latency["max_ms"]
    );
    if let Some((leading, started, lag, lag_max)) = placement_phases {
        println!(
            "    from the logs: last `leading` at {leading:.3} s, last `started` at {started:.3} s; leading -> started \
             median {lag:.3} s, max {lag_max:.3} s"
        );
    }

    figures.insert("machine_busy_before_percent".into(), quiet.into());
    figures.insert("placement_s".into(), round3(placement.as_secs_f64()).into());
    figures.insert("placement_cpu".into(), placement_cpu);
    figures.insert("placement_server_latency".into(), server_latency);
    figures.insert(
        "placement_log".into(),
        json!(placement_phases.map(|(l, s, m, x)| json!({
            "last_leading_s": l, "last_started_s": s, "leading_to_started_median_s": m,
            "leading_to_started_max_s": x}))),
    );
    Placement {
        nodes,
        began,
        began_utc,
    }
}

/// Waits until every node is in every election: how long after the start, each session's node, and each
/// election's queue.
#[allow(clippy::type_complexity)]
fn join(
    addr: &str,
    root: &str,
    names: &[String],
    began: Instant,
) -> (
    Duration,
    HashMap<i64, String>,
    HashMap<String, Vec<Candidate>>,
) {
    // Every node joins every election; then each worker must have run exactly once.
    let runtime = runtime();
    let client = runtime.block_on(zk_client(addr));
    let joined = Instant::now();
    wait_all_joined(&runtime, &client, root, names, 3, Duration::from_secs(120));
    let all_joined = began.elapsed();
    println!(
        "  every node in every election {:.3} s after the start (checked for {:.1} s)",
        all_joined.as_secs_f64(),
        joined.elapsed().as_secs_f64()
    );
    // Session -> node, and each election's queue.
    let mut owner_node: HashMap<i64, String> = HashMap::new();
    let mut queues: HashMap<String, Vec<Candidate>> = HashMap::new();
    for name in names {
        let path = format!("{root}/{name}");
        let queue = runtime.block_on(candidate_list(&client, &path));
        for c in &queue {
            owner_node.insert(c.ephemeral_owner, c.node.clone());
        }
        queues.insert(path, queue);
    }
    drop(client);
    drop(runtime);
    (all_joined, owner_node, queues)
}

/// `(extra starts, workers running twice, workers running once)` as the witness saw them.
fn count_starts(witness: &Witness) -> (usize, usize, usize) {
    let all = witness.all();
    let mut per: HashMap<&str, (usize, usize)> = HashMap::new();
    for c in &all {
        let e = per.entry(c.worker.as_str()).or_default();
        e.0 += 1;
        e.1 += usize::from(c.is_live());
    }
    let extra = per.values().map(|(s, _)| s - 1).sum();
    let twice = per.values().filter(|(_, l)| *l > 1).count();
    let running = per.values().filter(|(_, l)| *l == 1).count();
    (extra, twice, running)
}

/// Each worker must have run exactly once: the live processes by worker, and how many each node runs. Prints
/// the warnings of the supervisors' logs and what they say of lease lapses if not.
fn exactly_once(
    n: usize,
    zk: &ZkServer,
    witness: &Witness,
    nodes: &[Option<Supervisor>],
    began_utc: f64,
    figures: &mut Map<String, Value>,
) -> (HashMap<String, Vec<Conn>>, BTreeMap<String, usize>) {
    let (extra_starts, twice, running_once) = count_starts(witness);
    let live = live_by_worker(witness);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for conns in live.values() {
        for c in conns {
            *per_node.entry(c.node.clone()).or_default() += 1;
        }
    }
    println!(
        "  exactly once: {running_once} of {n} running once, {twice} running twice, {extra_starts} extra starts; \
         per node {per_node:?}"
    );
    let logs: Vec<String> = nodes.iter().flatten().map(Supervisor::log).collect();
    let placement_warnings = warnings(&logs);
    // S - margin - grace: 4 s - 0.4 s - 1 s.
    let lapses = lapse_analysis(&logs, S_SCALE_SECS * 0.9 - 1.0, began_utc);
    if extra_starts > 0 || !placement_warnings.is_empty() {
        println!("    warnings and errors in the supervisors' logs: {placement_warnings:?}");
        println!(
            "    lease lapses per node (`implied_last_renewal_s`: when, after the start, the guards last saw a \
             renewal; `lease_age_at_start`: how old the lease was when those children started): {lapses}"
        );
        explain_restarts(witness, &logs, 3);
        if std::env::var("SCALE_DEBUG").is_ok() {
            println!(
                "    the ZooKeeper server's log during placement:\n{}",
                zk.log()
            );
        }
    }

    figures.insert("running_once".into(), running_once.into());
    figures.insert("running_twice".into(), twice.into());
    figures.insert("extra_starts".into(), extra_starts.into());
    figures.insert("placement_warnings".into(), json!(placement_warnings));
    figures.insert("placement_lapses".into(), lapses);
    figures.insert("per_node".into(), json!(per_node));
    (live, per_node)
}

/// An idle window with nothing happening: CPU of each node (supervisor and guards), and requests to ZooKeeper.
fn idle_window(
    addr: &str,
    witness: &Witness,
    nodes: &[Option<Supervisor>],
    owner_node: &HashMap<i64, String>,
    idle: Duration,
) -> Value {
    // Idle window.
    thread::sleep(Duration::from_secs(1));
    let pids: Vec<(String, u32, Vec<u32>)> = nodes
        .iter()
        .flatten()
        .map(|s| (s.node_id().to_owned(), s.pid(), guards_of(s.pid())))
        .collect();
    let before: Vec<(f64, f64)> = pids
        .iter()
        .map(|(_, s, g)| (cpu_secs(&[*s]), cpu_secs(g)))
        .collect();
    let cons_before = cons_received(&word(addr, "cons"));
    let packets_before = mntr_field(&word(addr, "mntr"), "zk_packets_received");
    let window_start = Instant::now();
    println!("  idle window: {} s", idle.as_secs());
    thread::sleep(idle);
    let packets_after = mntr_field(&word(addr, "mntr"), "zk_packets_received");
    let cons_after = cons_received(&word(addr, "cons"));
    let window = window_start.elapsed();
    let mut idle_nodes = Vec::new();
    for ((node, sup, guards), (sup_before, guards_before)) in pids.iter().zip(&before) {
        let sup_cpu = cpu_percent(&[*sup], *sup_before, window);
        let guards_cpu = cpu_percent(guards, *guards_before, window);
        // Requests of this node's sessions (from `cons`).
        let sessions: Vec<i64> = owner_node
            .iter()
            .filter(|(_, n)| *n == node)
            .map(|(s, _)| *s)
            .collect();
        let requests: u64 = sessions
            .iter()
            .map(|s| {
                cons_after
                    .get(s)
                    .unwrap_or(&0)
                    .saturating_sub(*cons_before.get(s).unwrap_or(&0))
            })
            .sum();
        println!(
            "  node {node}: supervisor {sup_cpu:.3} % of a core, {} guard processes {guards_cpu:.3} %, total {:.3} %; \
             {requests} requests to ZooKeeper",
            guards.len(),
            sup_cpu + guards_cpu
        );
        idle_nodes.push(json!({
            "node": node, "guards": guards.len(), "supervisor_cpu_percent": sup_cpu,
            "guards_cpu_percent": guards_cpu, "total_cpu_percent": round3(sup_cpu + guards_cpu),
            "requests": requests,
            "requests_per_s5": round3(requests as f64 / (window.as_secs_f64() / (S_SCALE_SECS / 5.0))),
        }));
    }
    // The second mntr counts itself as a packet.
    let packets = packets_after - packets_before - 1.0;
    let periods = window.as_secs_f64() / (S_SCALE_SECS / 5.0);
    let per_node_per_period = packets / 3.0 / periods;
    println!(
        "  ZooKeeper packets received in {:.1} s: {packets} = {per_node_per_period:.3} per node per S/5 ({periods:.1} \
         periods of {:.1} s)",
        window.as_secs_f64(),
        S_SCALE_SECS / 5.0
    );
    let (extra_after_idle, twice_after_idle, _) = count_starts(witness);
    json!({
        "window_s": round3(window.as_secs_f64()), "nodes": idle_nodes,
        "extra_starts_after": extra_after_idle, "running_twice_after": twice_after_idle,
        "packets_received": packets, "requests_per_node_per_s5": round3(per_node_per_period),
    })
}

/// The watches the server holds, per candidate and per node.
fn watches(
    addr: &str,
    queues: &HashMap<String, Vec<Candidate>>,
    owner_node: &HashMap<i64, String>,
    busiest: &str,
) -> Value {
    // Watches. The elections watch candidates with getChildren2 (child watches, which fire only when the
    // candidate is deleted); mntr's zk_watch_count counts those with the data watches, but the four-letter
    // words that list watches (wchs, wchc, wchp) cover data watches only: they show what else watches.
    let total_watches = mntr_field(&word(addr, "mntr"), "zk_watch_count");
    let wchs = word(addr, "wchs");
    let data_watches: f64 = wchs
        .lines()
        .find_map(|l| l.strip_prefix("Total watches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let candidates_total: usize = queues.values().map(Vec::len).sum();
    let wchc = indented_groups(&word(addr, "wchc"));
    let mut watches_per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut candidate_paths: HashSet<String> = HashSet::new();
    for (path, queue) in queues {
        for c in queue {
            candidate_paths.insert(format!("{path}/{}", c.name));
        }
    }
    let mut non_candidate_watches = 0;
    for (sid, paths) in &wchc {
        let node = session_id(sid)
            .and_then(|s| owner_node.get(&s).cloned())
            .unwrap_or_else(|| format!("other session {sid}"));
        *watches_per_node.entry(node).or_default() += paths.len();
        non_candidate_watches += paths
            .iter()
            .filter(|p| !candidate_paths.contains(*p))
            .count();
    }
    println!(
        "  watches (mntr zk_watch_count): {total_watches} -> {:.3} per candidate ({candidates_total} candidates); \
         data watches (wchs): {data_watches}, per node {watches_per_node:?}, {non_candidate_watches} on other paths",
        total_watches / candidates_total as f64
    );

    json!({
        "total": total_watches, "candidates": candidates_total,
        "per_candidate": round3(total_watches / candidates_total as f64),
        "data_watches": data_watches, "data_watches_per_node": watches_per_node,
        "data_watches_on_other_paths": non_candidate_watches, "busiest": busiest,
    })
}

/// The busiest node shuts down cleanly (SIGTERM): until each of its workers runs elsewhere, until it exits,
/// and what the survivors' logs say of it.
fn shut_down_busiest(
    addr: &str,
    witness: &Witness,
    mut stopping: Supervisor,
    nodes: &[Option<Supervisor>],
    busiest: &str,
    live: &HashMap<String, Vec<Conn>>,
    figures: &mut Map<String, Value>,
) {
    let moved: Vec<Conn> = live
        .values()
        .flatten()
        .filter(|c| c.node == busiest)
        .cloned()
        .collect();
    let mntr_before = word(addr, "mntr");
    let profile_stop = Profile::now();
    let signalled_utc = utc_secs_now();
    let signalled = Instant::now();
    stopping.signal(Signal::SIGTERM);
    let mut exited = None;
    let mut replaced = None;
    let deadline = signalled + Duration::from_secs(60);
    let moved_names: Vec<String> = moved.iter().map(|c| c.worker.clone()).collect();
    while (exited.is_none() || replaced.is_none()) && Instant::now() < deadline {
        if exited.is_none() && stopping.has_exited() {
            exited = Some(signalled.elapsed());
        }
        if replaced.is_none() {
            let live = live_by_worker(witness);
            let elsewhere = |name: &String| {
                live.get(name)
                    .and_then(|cs| cs.iter().find(|c| c.node != busiest).map(|c| c.opened))
            };
            let opened: Option<Vec<Instant>> = moved_names.iter().map(elsewhere).collect();
            if let Some(opened) = opened {
                replaced = opened
                    .into_iter()
                    .max()
                    .map(|t| t.duration_since(signalled));
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    let (shutdown_cpu, shutdown_cpu_line) = Profile::now().since(&profile_stop);
    let status = stopping.wait_exit(Duration::from_secs(30));
    let exit_code = status.code();
    let mntr_after = word(addr, "mntr");
    let deleted_watch = |m: &str| {
        (
            mntr_field(m, "zk_sum_node_deleted_watch_count"),
            mntr_field(m, "zk_cnt_node_deleted_watch_count"),
        )
    };
    // The most watchers one deletion notified since placement began (`srst` reset it).
    let max_notified = mntr_field(&mntr_after, "zk_max_node_deleted_watch_count");
    let (sum0, cnt0) = deleted_watch(&mntr_before);
    let (sum1, cnt1) = deleted_watch(&mntr_after);
    let mut gaps = Vec::new();
    for old in &moved {
        witness.assert_no_overlap(&old.worker);
        let history = witness.history(&old.worker);
        let closed = history.iter().find(|c| c.id == old.id).cloned();
        let next = history.iter().find(|c| c.id > old.id && c.node != busiest);
        if let (Some(closed), Some(next)) = (closed, next) {
            gaps.push(gap(&closed, next));
        }
    }
    println!(
        "  node {busiest} ({} workers) SIGTERM: all re-placed after {}, supervisor exited after {} (code {exit_code:?}); \
         death -> start elsewhere median {:.1} ms, max {:.1} ms; watch notifications for deletions: {} in {} events, \
         at most {max_notified} for one deletion",
        moved.len(),
        replaced.map_or("(not within 60 s)".into(), |d| format!("{:.3} s", d.as_secs_f64())),
        exited.map_or("(not within 60 s)".into(), |d| format!("{:.3} s", d.as_secs_f64())),
        if gaps.is_empty() { f64::NAN } else { ms(median(&gaps)) },
        gaps.iter().max().map_or(f64::NAN, |d| ms(*d)),
        sum1 - sum0,
        cnt1 - cnt0
    );
    let shutdown_log = stopping.log();
    drop(stopping);
    let survivors_log: Vec<String> = nodes.iter().flatten().map(Supervisor::log).collect();
    let shutdown_phases = phases(&survivors_log, &moved_names, signalled_utc);
    println!("    CPU until all re-placed: {shutdown_cpu_line}");
    if let Some((leading, started, lag, lag_max)) = shutdown_phases {
        println!(
            "    from the survivors' logs: last `leading` at {leading:.3} s, last `started` at {started:.3} s; \
             leading -> started median {lag:.3} s, max {lag_max:.3} s"
        );
    }
    let count_in = |needle: &str| -> usize {
        survivors_log
            .iter()
            .chain(std::iter::once(&shutdown_log))
            .map(|l| l.matches(needle).count())
            .sum()
    };
    let lease_lapses = count_in("lease lapsed");
    let disconnects = count_in("disconnected from zookeeper");
    figures.insert(
        "shutdown".into(),
        json!({
            "node": busiest, "workers": moved.len(),
            "replaced_s": replaced.map(|d| round3(d.as_secs_f64())),
            "exit_s": exited.map(|d| round3(d.as_secs_f64())),
            "exit_code": exit_code,
            "gap_median_ms": (!gaps.is_empty()).then(|| ms(median(&gaps))),
            "gap_max_ms": gaps.iter().max().map(|d| ms(*d)),
            "deleted_watch_notifications": sum1 - sum0, "deleted_watch_events": cnt1 - cnt0,
            "max_notified_per_deletion": max_notified,
            "cpu": shutdown_cpu,
            "log": shutdown_phases.map(|(l, s, m, x)| json!({
                "last_leading_s": l, "last_started_s": s, "leading_to_started_median_s": m,
                "leading_to_started_max_s": x})),
        }),
    );
    figures.insert("lease_lapses".into(), lease_lapses.into());
    figures.insert("disconnects".into(), disconnects.into());
}
