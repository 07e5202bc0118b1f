//! The run: plays the plan against the cluster, records the history, and checks it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cluster::*;
use super::schedule::*;
use super::*;
use crate::history::{self, Configured, Fault, Violation};
use crate::zk::quorum::{SERVERS, TICK};
use crate::*;

/// What a run is asked to do.
pub struct Options {
    pub seed: u64,
    pub duration: Duration,
    pub max_active: usize,
    pub kinds: Vec<Kind>,
    /// The command that replays this run, printed with its results.
    pub replay: String,
}

impl Options {
    /// `NEMESIS_SEED` (else the clock) and `NEMESIS_SECS` (else `default`); `replay` is the command to run
    /// again, after the environment.
    pub fn from_env(default: Duration, replay: &str) -> Options {
        let seed = std::env::var("NEMESIS_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                now.as_secs() ^ u64::from(now.subsec_nanos()) ^ u64::from(std::process::id())
            });
        let duration = std::env::var("NEMESIS_SECS")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map_or(default, Duration::from_secs);
        let skip = std::env::var("NEMESIS_SKIP").unwrap_or_default();
        let skipped: Vec<&str> = skip
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        for name in &skipped {
            assert!(
                Kind::ALL.iter().any(|k| k.name() == *name),
                "NEMESIS_SKIP names {name:?}, not a fault kind; the kinds: {:?}",
                Kind::ALL.map(Kind::name)
            );
        }
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| !skipped.contains(&k.name()))
            .collect();
        let skip = if skipped.is_empty() {
            String::new()
        } else {
            format!("NEMESIS_SKIP={} ", skipped.join(","))
        };
        Options {
            seed,
            duration,
            max_active: 2,
            kinds,
            replay: format!(
                "NEMESIS_SEED={seed} NEMESIS_SECS={} {skip}{replay}",
                duration.as_secs()
            ),
        }
    }
}

/// What a run found.
pub struct Outcome {
    /// The figures (see [`history::figures`]).
    pub figures: String,
    /// The schedule as it ran.
    pub schedule: String,
    /// On violations: everything to understand them.
    pub failure: Option<String>,
}

/// A fault in progress, with what healing it needs.
pub(crate) struct Active {
    /// Its index in `faults`.
    index: usize,
    /// A reload's node config before the change.
    before: Option<BTreeMap<String, WorkerDef>>,
    /// The server a `zk-isolate` cut off.
    isolated: Option<usize>,
}

/// The state of a run in progress.
pub(crate) struct Runner {
    cluster: Cluster,
    faults: Vec<Fault>,
    configured: Vec<Configured>,
    anomalies: Vec<Violation>,
    active: BTreeMap<usize, Active>,
    started: Instant,
    /// The workers at the start, described.
    workers: String,
    /// The servers' syncLimit, in ticks.
    sync_limit: u32,
}

impl Runner {
    pub(crate) fn say(&self, what: &str) {
        println!(
            "nemesis {} {what}",
            self.cluster.recorder.clock().at(Instant::now())
        );
    }

    /// Records a problem the run itself saw; `node` is "" when no node is concerned.
    pub(crate) fn anomaly(&mut self, node: &str, what: String) {
        self.say(&format!("ANOMALY: {what}"));
        self.anomalies.push(Violation {
            rule: "anomaly",
            at: Instant::now(),
            since: Instant::now() - history::LEAD,
            worker: None,
            nodes: if node.is_empty() {
                Vec::new()
            } else {
                vec![node.to_owned()]
            },
            what,
        });
    }

    /// A supervisor that exited although no fault asked it to is an anomaly: it is started again.
    pub(crate) fn check_supervisors(&mut self) {
        for n in 0..self.cluster.nodes.len() {
            let exited = self.cluster.nodes[n]
                .supervisor
                .as_ref()
                .is_some_and(Supervisor::has_exited);
            if exited {
                let node = &mut self.cluster.nodes[n];
                let status = node.retire().expect("a supervisor").kill();
                let id = node.id;
                self.anomaly(
                    id,
                    format!("the supervisor of node {id} exited by itself: {status}"),
                );
                let (root, recorder) = (&self.cluster.root, &self.cluster.recorder);
                self.cluster.nodes[n].start(root, recorder);
            }
        }
    }

    pub(crate) fn begin(&mut self, planned: &Planned, index: usize) {
        self.check_supervisors();
        let kind = planned.kind;
        let n = planned.target;
        let mut before = None;
        let mut anomaly = None;
        let mut isolated = None;
        let target = match kind {
            Kind::ZkKill | Kind::ZkPause => format!("zk{}", n + 1),
            Kind::ZkIsolate => String::new(),
            Kind::ChildKill | Kind::GuardKill => String::new(),
            _ => format!("node {}", NODES[n]),
        };
        let mut fault = Fault {
            id: index,
            kind: kind.name(),
            target,
            detail: planned.detail(),
            began: Instant::now(),
            healed: None,
        };
        let (root, recorder) = (&self.cluster.root, &self.cluster.recorder);
        let node = &mut self.cluster.nodes[n.min(NODES.len() - 1)];
        match kind {
            Kind::SupervisorKill => {
                if let Some(supervisor) = node.retire() {
                    supervisor.kill();
                }
            }
            Kind::SupervisorStop => {
                if let Some(supervisor) = &node.supervisor {
                    supervisor.signal(Signal::SIGSTOP);
                }
            }
            Kind::SupervisorTerm => {
                let id = node.id;
                if let Some(supervisor) = node.retire() {
                    supervisor.signal(Signal::SIGTERM);
                    let exited = poll_until(SHUTDOWN, &mut || supervisor.has_exited());
                    let status = supervisor.kill();
                    if !exited {
                        anomaly = Some((
                            id,
                            format!("node {id} did not shut down within {SHUTDOWN:?} of SIGTERM"),
                        ));
                    } else if !status.success() {
                        anomaly =
                            Some((id, format!("node {id} exited with {status} after SIGTERM")));
                    }
                }
            }
            Kind::Partition => node.links.iter().for_each(Proxy::partition),
            Kind::CutToZk => node.links.iter().for_each(|p| p.cut(Direction::ToServer)),
            Kind::CutFromZk => node.links.iter().for_each(|p| p.cut(Direction::ToClient)),
            Kind::SlowLink => node.links.iter().for_each(|p| {
                p.slow(Duration::from_millis(500), Duration::from_millis(2_000));
            }),
            Kind::ZkKill => self.cluster.ensemble.kill(n),
            Kind::ZkPause => self.cluster.ensemble.signal(n, Signal::SIGSTOP),
            Kind::ZkIsolate => {
                let (server, why) = self.cluster.server_of(n);
                self.cluster.ensemble.isolate(server);
                fault.target = format!("zk{} ({why})", server + 1);
                isolated = Some(server);
            }
            Kind::Reload => {
                before = Some(node.workers.clone());
                planned
                    .change
                    .as_ref()
                    .expect("a reload has a change")
                    .apply(&mut node.workers);
                node.reload(root, recorder);
            }
            Kind::ChildKill | Kind::GuardKill => {
                // By worker name: with every worker running once, a seed picks the same worker again.
                let mut live = recorder.live();
                live.sort_by(|a, b| (&a.worker, &a.node, a.id).cmp(&(&b.worker, &b.node, b.id)));
                fault.target = if live.is_empty() {
                    "(no child running)".to_owned()
                } else {
                    let pick = usize::try_from(planned.pick % live.len() as u64).expect("index");
                    let conn = &live[pick];
                    let what = format!(
                        "{} on {} (pid {}, #{})",
                        conn.worker, conn.node, conn.pid, conn.id
                    );
                    let victim = if kind == Kind::ChildKill {
                        Some(conn.pid)
                    } else {
                        guard_of(conn.pid)
                    };
                    match victim {
                        Some(pid) if kind == Kind::GuardKill => {
                            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                            format!("guard {pid} of {what}")
                        }
                        Some(pid) => {
                            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                            what
                        }
                        None => format!("(no guard found for {what})"),
                    }
                };
                fault.healed = Some(fault.began);
            }
        }
        self.say(&format!(
            "begin #{index} {} {} ({})",
            fault.kind, fault.target, fault.detail
        ));
        if let Some((node, what)) = anomaly {
            self.anomaly(node, what);
        }
        if fault.healed.is_none() {
            self.active.insert(
                index,
                Active {
                    index: self.faults.len(),
                    before,
                    isolated,
                },
            );
        }
        self.faults.push(fault);
    }

    pub(crate) fn heal(&mut self, planned: &Planned, index: usize) {
        let Some(active) = self.active.remove(&index) else {
            return;
        };
        let n = planned.target;
        let (root, recorder) = (&self.cluster.root, &self.cluster.recorder);
        match planned.kind {
            Kind::SupervisorKill | Kind::SupervisorTerm => {
                self.cluster.nodes[n].start(root, recorder);
            }
            Kind::SupervisorStop => {
                if let Some(supervisor) = &self.cluster.nodes[n].supervisor {
                    supervisor.signal(Signal::SIGCONT);
                }
            }
            Kind::Partition | Kind::CutToZk | Kind::CutFromZk | Kind::SlowLink => {
                self.cluster.nodes[n].links.iter().for_each(Proxy::heal);
            }
            Kind::ZkKill => self.cluster.ensemble.restart(n),
            Kind::ZkPause => self.cluster.ensemble.signal(n, Signal::SIGCONT),
            Kind::ZkIsolate => {
                let server = active.isolated.expect("the isolated server");
                self.cluster.ensemble.heal(server);
            }
            Kind::Reload => {
                if planned.revert {
                    let node = &mut self.cluster.nodes[n];
                    node.workers = active.before.expect("the config before the reload");
                    node.reload(root, recorder);
                } else {
                    let change = planned.change.as_ref().expect("a reload has a change");
                    for (i, node) in self.cluster.nodes.iter_mut().enumerate() {
                        if i != n {
                            change.apply(&mut node.workers);
                            node.reload(root, recorder);
                        }
                    }
                }
                self.configured.push(Configured {
                    from: Instant::now(),
                    workers: self.cluster.nodes[n].workers.keys().cloned().collect(),
                });
            }
            Kind::ChildKill | Kind::GuardKill => {}
        }
        if planned.kind.scope() == Scope::Server {
            self.wait_for_quorum(active.index);
        }
        let fault = &mut self.faults[active.index];
        fault.healed = Some(Instant::now());
        let line = format!("heal  #{index} {} {}", fault.kind, fault.target);
        self.say(&line);
        self.check_supervisors();
    }

    /// After a server fault: the fault lasts until the ensemble serves again (a leader, and a majority of the
    /// servers leading or following it), since nothing can run without ZooKeeper. How long that took after the healing
    /// action is ZooKeeper's own recovery, noted in the fault's detail; more than 30 s is an anomaly.
    pub(crate) fn wait_for_quorum(&mut self, fault: usize) {
        let healed = Instant::now();
        let ensemble = &self.cluster.ensemble;
        let mut modes = Vec::new();
        let serving = poll_until(Duration::from_secs(30), &mut || {
            modes = (0..SERVERS).map(|i| ensemble.mode(i)).collect();
            let leaders = modes
                .iter()
                .filter(|m| m.as_deref() == Some("leader"))
                .count();
            let serving = modes
                .iter()
                .filter(|m| matches!(m.as_deref(), Some("leader" | "follower")))
                .count();
            leaders == 1 && serving > SERVERS / 2
        });
        let took = healed.elapsed();
        let _ = write!(
            self.faults[fault].detail,
            ", ensemble serving {:.3}s after the heal",
            took.as_secs_f64()
        );
        if !serving {
            let logs: String = (0..SERVERS)
                .map(|i| {
                    let log = self.cluster.ensemble.log(i);
                    let tail: Vec<&str> = log.lines().rev().take(40).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    format!("----- zk{} -----\n{}\n", i + 1, tail.join("\n"))
                })
                .collect();
            self.anomaly(
                "",
                format!("the ensemble had no quorum 30s after the heal: modes {modes:?}\n{logs}"),
            );
        }
    }
}

/// Whether process `pid` has handlers for SIGHUP and SIGTERM (`SigCgt` in /proc/<pid>/status).
pub(crate) fn catches_hup_and_term(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let caught = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .unwrap_or(0);
    let bit = |signal: Signal| 1u64 << (signal as i32 - 1);
    caught & bit(Signal::SIGHUP) != 0 && caught & bit(Signal::SIGTERM) != 0
}

/// The guard of the child `pid`: its parent, if that is a `zk-supervise` process (the spawner names its guards
/// so).
pub(crate) fn guard_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": the comm may hold spaces, so split after its closing parenthesis.
    let ppid: u32 = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).ok()?;
    (comm.trim() == "zk-supervise").then_some(ppid)
}

/// Runs a schedule against a fresh cluster and checks its history.
pub fn run(options: &Options) -> Outcome {
    println!(
        "nemesis: seed {}, {}s of faults; replay with: {}",
        options.seed,
        options.duration.as_secs(),
        options.replay
    );
    let mut rng = Rng::new(options.seed);
    let workers: BTreeMap<String, WorkerDef> = (0..WORKERS)
        .map(|i| {
            let name = format!("w{i:02}");
            (name.clone(), WorkerDef::random(name, &mut rng))
        })
        .collect();
    // How long a follower cut off from its leader keeps serving: below S or above it (issue 11 item 1 asks for
    // both).
    let sync_limit = if rng.below(2) == 0 { 5 } else { 15 };
    let plan = plan(
        &mut rng,
        options.duration,
        options.max_active,
        &options.kinds,
        &workers,
    );
    let described: Vec<String> = workers.values().map(WorkerDef::describe).collect();
    let described = described.join(", ");
    println!("nemesis: workers {described}");
    println!(
        "nemesis: syncLimit {sync_limit} ({:?} with tickTime {TICK:?}), S = {S:?}",
        TICK * sync_limit
    );
    let cluster = Cluster::start(&workers, sync_limit);
    let started = Instant::now();
    let mut runner = Runner {
        configured: vec![Configured {
            from: started,
            workers: workers.keys().cloned().collect(),
        }],
        cluster,
        faults: Vec::new(),
        anomalies: Vec::new(),
        active: BTreeMap::new(),
        started,
        workers: described,
        sync_limit,
    };
    runner.say(&format!(
        "every worker runs once; {} faults planned",
        plan.len()
    ));
    // Begin and heal events in plan order; at equal times heals first.
    let mut events: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        events.push((p.at, true, i));
        if !p.hold.is_zero() {
            events.push((p.at + p.hold, false, i));
        }
    }
    events.sort_by_key(|&(at, begins, i)| (at, begins, i));
    let mut clock = Duration::ZERO;
    for (at, begins, i) in events {
        // Keep the plan's gaps: a slow action shifts what follows rather than squeezing it.
        thread::sleep(at.saturating_sub(clock));
        clock = at;
        if begins {
            runner.begin(&plan[i], i);
        } else {
            runner.heal(&plan[i], i);
        }
    }
    runner.check_supervisors();
    // The last quiet window: nothing may happen but recovery.
    thread::sleep(SETTLE + Duration::from_secs(3));
    runner.check_supervisors();
    let ended = Instant::now();
    runner.say("done");
    verdict(&runner, options, ended)
}

/// Checks the history of a finished run and writes up what it found.
pub(crate) fn verdict(runner: &Runner, options: &Options, ended: Instant) -> Outcome {
    let recorder = &runner.cluster.recorder;
    let clock = recorder.clock();
    let conns = recorder.all();
    let checked = history::check(&history::Input {
        conns: &conns,
        faults: &runner.faults,
        configured: &runner.configured,
        started: runner.started,
        ended,
        settle: SETTLE,
        anomalies: &runner.anomalies,
    });
    let mut figures = format!(
        "seed {}, {:.0}s of faults, run {:.0}s, S = {S:?}, settle {SETTLE:?}, syncLimit {} ticks of {TICK:?}\n",
        options.seed,
        options.duration.as_secs_f64(),
        ended.duration_since(runner.started).as_secs_f64(),
        runner.sync_limit
    );
    figures.push_str(&history::figures(&checked, &clock));
    if recorder.unidentified() > 0 {
        let _ = writeln!(
            figures,
            "connections that ended before saying which worker they were: {}",
            recorder.unidentified()
        );
    }
    let schedule = history::schedule(&runner.faults, &clock);
    if checked.violations.is_empty() {
        return Outcome {
            figures,
            schedule,
            failure: None,
        };
    }
    let mut out = format!(
        "nemesis: {} violation(s) with seed {}\nreplay: {}\nworkers at the start: {}\n\n{figures}\nviolations:\n",
        checked.violations.len(),
        options.seed,
        options.replay,
        runner.workers
    );
    for v in &checked.violations {
        let _ = writeln!(out, "  {} [{}] {}", clock.at(v.at), v.rule, v.what);
    }
    let _ = write!(out, "\nschedule (began .. healed):\n{schedule}");
    let _ = write!(
        out,
        "\nelections at the end of the run:\n{}",
        elections(&runner.cluster, &conns)
    );
    for (k, v) in checked.violations.iter().take(DETAILED).enumerate() {
        let (from, to) = (
            v.since.min(v.at) - Duration::from_secs(2),
            v.at + Duration::from_secs(2),
        );
        let _ = writeln!(
            out,
            "\n===== violation {} at {}: [{}] {}",
            k + 1,
            clock.at(v.at),
            v.rule,
            v.what
        );
        let _ = writeln!(
            out,
            "faults active between {} and {}:",
            clock.at(from),
            clock.at(to)
        );
        out.push_str(&history::schedule(
            &history::faults_around(&runner.faults, from, to),
            &clock,
        ));
        if let Some(worker) = &v.worker {
            let _ = write!(
                out,
                "history of {worker} around it:\n{}",
                history::timeline(&conns, worker, from, to, &clock)
            );
        }
        let (log_from, log_to) = (
            clock.wall(v.since.min(v.at) - Duration::from_secs(1)),
            clock.wall(v.at + Duration::from_secs(1)),
        );
        for node in &runner.cluster.nodes {
            if !v.nodes.is_empty() && !v.nodes.iter().any(|n| n == node.id) {
                continue;
            }
            for (pid, log) in node.logs() {
                let lines = history::log_window(&log, &log_from, &log_to, v.worker.as_deref());
                if lines.is_empty() {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "log of node {} (pid {pid}) from {log_from} to {log_to}:",
                    node.id
                );
                for line in &lines[lines.len().saturating_sub(60)..] {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
    }
    Outcome {
        figures,
        schedule,
        failure: Some(out),
    }
}

/// Each worker's election queue as the ensemble holds it now: node and owning session of every candidate, the
/// leader first. A worker stranded behind a candidate nobody runs shows here.
pub(crate) fn elections(cluster: &Cluster, conns: &[Conn]) -> String {
    let mut workers: BTreeSet<String> = conns.iter().map(|c| c.worker.clone()).collect();
    for node in &cluster.nodes {
        workers.extend(node.workers.keys().cloned());
    }
    let connect = cluster.ensemble.connect_string(&[0, 1, 2]);
    let root = cluster.root.clone();
    let read = async {
        let client = zk_client(&connect).await;
        let mut out = String::new();
        for worker in &workers {
            let path = format!("{root}/{worker}");
            let mut children = match client.list_children(&path).await {
                Ok(children) => children,
                Err(e) => {
                    let _ = writeln!(out, "  {worker}: {e}");
                    continue;
                }
            };
            // By the 10-digit sequence suffix (SPEC §4).
            children.sort_by_key(|name| name[name.len().saturating_sub(10)..].to_owned());
            let mut queue = Vec::new();
            for name in children {
                queue.push(match client.get_data(&format!("{path}/{name}")).await {
                    Ok((data, stat)) => {
                        let json: serde_json::Value =
                            serde_json::from_slice(&data).unwrap_or_default();
                        format!(
                            "{} (#{}, session {:#x}{})",
                            json["node"].as_str().unwrap_or("?"),
                            &name[name.len().saturating_sub(10)..],
                            stat.ephemeral_owner,
                            json["running"]
                                .as_bool()
                                .map_or(String::new(), |r| format!(", running {r}"))
                        )
                    }
                    Err(e) => format!("{name}: {e}"),
                });
            }
            let _ = writeln!(out, "  {worker}: {}", queue.join(", "));
        }
        out
    };
    block_on(async {
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .unwrap_or_else(|_| "  (ZooKeeper did not answer within 20s)\n".to_owned())
    })
}

/// The long form (bench/nemesis.rs): 30 minutes unless `NEMESIS_SECS` says otherwise; prints the figures and
/// writes them to target/bench-report/nemesis.txt. Returns whether the history held every rule.
pub fn long_form() -> bool {
    let options = Options::from_env(Duration::from_secs(1_800), "cargo bench --bench nemesis");
    let outcome = run(&options);
    let mut text = format!(
        "# nemesis: {}\n\n{}\nschedule (began .. healed):\n{}",
        options.replay, outcome.figures, outcome.schedule
    );
    if let Some(failure) = &outcome.failure {
        text.push('\n');
        text.push_str(failure);
    }
    println!("\n{text}");
    let dir = std::path::Path::new("target/bench-report");
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = std::fs::write(dir.join("nemesis.txt"), &text);
    }
    outcome.failure.is_none()
}
