//! A seeded fault schedule against a whole cluster, and a checker over the whole history (issue 11 item 6, in the
//! way Jepsen tests lock services).
//!
//! Three supervisors (nodes a, b, c) and a three-server ensemble whose servers talk through links that can be cut
//! ([`QuorumEnsemble`]: a server can be cut off from the quorum while it still answers clients); each node
//! reaches every server through a [`Proxy`] of its own, so a node can be cut off, in one direction or both, or
//! slowed down. The servers' `syncLimit × tickTime` is 1 s or 3 s, below or above S, by the seed. About ten workers,
//! whose children report to a [`Recorder`] (the observer outside every process), some of them ignoring SIGTERM
//! so their grace period (300-500 ms) runs out. S = 2 s.
//!
//! A small PRNG seeded from `NEMESIS_SEED` (else the clock) plans the whole schedule before it starts: faults
//! of every kind in [`Kind`], each healed after a random time, at most two at once, in bursts separated by quiet
//! windows of 5-9 s so that liveness can be checked. The run then plays the plan, keeping its gaps (an action that
//! takes time, such as restarting a ZooKeeper server, shifts what follows). A seed replays the same schedule; the
//! interleaving with the real processes is not replayed, so a violation found once may need a few runs to show
//! again.
//!
//! The checker ([`history::check`]) reads the recorded history: no overlap ever; fencing tokens of new
//! leaderships above all earlier ones; in every quiet window, from S + 2 s after its start, every configured
//! worker running exactly once and staying put. On failure it prints the seed, the command that replays it, the
//! schedule with times, the history around each violation and the supervisors' log lines of that time.
//!
//! `cargo test --test nemesis` runs a one-minute schedule (CI); `NEMESIS_SECS` changes the length, and
//! `NEMESIS_SKIP` (fault kinds by name, comma-separated, e.g. `guard-kill,zk-pause`) leaves kinds out, to look
//! past a known bug. The long form is `cargo bench --bench nemesis` (bench/nemesis.rs, 30 minutes), which prints
//! the run's figures.
#![allow(dead_code)] // bench/nemesis.rs uses what the test does not, and the other way round

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::history::{self, Configured, Fault, Recorder, Violation};
use common::quorum::{QuorumEnsemble, SERVERS, TICK};
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The session timeout.
const S: Duration = Duration::from_secs(2);
const S_STR: &str = "2s";
/// After every fault is healed, each configured worker runs exactly once within this.
const SETTLE: Duration = Duration::from_secs(4);
const NODES: [&str; 3] = ["a", "b", "c"];
const WORKERS: usize = 10;
/// Reloads keep the number of workers within these bounds.
const MIN_WORKERS: usize = 8;
const MAX_WORKERS: usize = 12;
/// How long a SIGTERMed supervisor gets to shut down, even with its link to ZooKeeper cut: the daemon waits the
/// largest grace period plus 5 s for its workers, SIGKILLs the children, waits 5 s more for the deletes of their
/// candidates, then closes the session (src/supervisor.rs, `drain`).
const SHUTDOWN: Duration = Duration::from_secs(15);
/// How many violations get their history and logs printed.
const DETAILED: usize = 5;

// ---------------------------------------------------------------------------------------------------------------
// The schedule

/// A small PRNG (splitmix64): the same seed plans the same schedule on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).expect("below n")
    }

    /// Uniform in `[lo, hi]` milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next_u64() % (hi - lo + 1))
    }
}

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// SIGKILL a supervisor; healed by starting it again.
    SupervisorKill,
    /// SIGSTOP a supervisor; healed by SIGCONT.
    SupervisorStop,
    /// SIGTERM a supervisor (a clean shutdown); healed by starting it again.
    SupervisorTerm,
    /// Black-hole every byte between a node and ZooKeeper.
    Partition,
    /// Black-hole what a node sends to ZooKeeper; the replies would still come.
    CutToZk,
    /// Black-hole what ZooKeeper sends to a node: the servers hear it (its session lives), it hears nothing.
    CutFromZk,
    /// Hold every chunk between a node and ZooKeeper 0.5-2 s.
    SlowLink,
    /// SIGKILL a ZooKeeper server; healed by starting it again.
    ZkKill,
    /// SIGSTOP a ZooKeeper server; healed by SIGCONT.
    ZkPause,
    /// Cut a ZooKeeper server off from the quorum (its quorum and election links drop every byte) while its
    /// client port still answers: the server a node is connected to, a follower if it can be (issue 11 item 1).
    ZkIsolate,
    /// SIGHUP one node with a changed config (a worker added, removed or changed); healed by rolling the change
    /// out to the other nodes, or by reverting it on that node.
    Reload,
    /// SIGKILL a running child (a pid the recorder reported). One-shot.
    ChildKill,
    /// SIGKILL the guard of a running child (its parent, as the OOM killer might): issue 11 item 1b. One-shot.
    GuardKill,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::SupervisorKill,
        Kind::SupervisorStop,
        Kind::SupervisorTerm,
        Kind::Partition,
        Kind::CutToZk,
        Kind::CutFromZk,
        Kind::SlowLink,
        Kind::ZkKill,
        Kind::ZkPause,
        Kind::ZkIsolate,
        Kind::Reload,
        Kind::ChildKill,
        Kind::GuardKill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::SupervisorKill => "supervisor-sigkill",
            Kind::SupervisorStop => "supervisor-sigstop",
            Kind::SupervisorTerm => "supervisor-sigterm",
            Kind::Partition => "partition",
            Kind::CutToZk => "cut-node-to-zk",
            Kind::CutFromZk => "cut-zk-to-node",
            Kind::SlowLink => "slow-link",
            Kind::ZkKill => "zk-kill",
            Kind::ZkPause => "zk-pause",
            Kind::ZkIsolate => "zk-isolate",
            Kind::Reload => "reload",
            Kind::ChildKill => "child-kill",
            Kind::GuardKill => "guard-kill",
        }
    }

    /// What it hits, which says what it may run alongside.
    fn scope(self) -> Scope {
        match self {
            Kind::SupervisorKill | Kind::SupervisorStop | Kind::SupervisorTerm => Scope::Process,
            Kind::Partition | Kind::CutToZk | Kind::CutFromZk | Kind::SlowLink => Scope::Link,
            Kind::Reload => Scope::Config,
            Kind::ZkKill | Kind::ZkPause | Kind::ZkIsolate => Scope::Server,
            Kind::ChildKill | Kind::GuardKill => Scope::Child,
        }
    }
}

/// What a fault hits. At any time a node has at most one fault of the process and one of the link scope (a
/// node partitioned while it is SIGTERMed, or reloaded while its link is silent, are faults worth combining);
/// one reload and one ZooKeeper server at a time (a quorum stays); children are killed whenever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A node's supervisor process.
    Process,
    /// A node's links to ZooKeeper.
    Link,
    /// A node's config.
    Config,
    /// A ZooKeeper server.
    Server,
    /// A child: one-shot.
    Child,
}

impl Scope {
    /// The targets a fault of this scope may hit while `active` faults (kind, target) last: node or server
    /// indexes.
    fn free(self, active: &[(Duration, Kind, usize)]) -> Vec<usize> {
        let busy = |scope: Scope, target: Option<usize>| {
            active
                .iter()
                .any(|&(_, k, t)| k.scope() == scope && target.is_none_or(|target| t == target))
        };
        match self {
            Scope::Process | Scope::Link => {
                (0..NODES.len()).filter(|&n| !busy(self, Some(n))).collect()
            }
            Scope::Config if !busy(Scope::Config, None) => (0..NODES.len()).collect(),
            Scope::Server if !busy(Scope::Server, None) => (0..3).collect(),
            Scope::Config | Scope::Server => Vec::new(),
            Scope::Child => vec![0],
        }
    }
}

/// One worker definition, as the nodes' configs hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerDef {
    pub name: String,
    /// Its child ignores SIGTERM: stopping it takes the whole grace period and a SIGKILL.
    pub ignores_term: bool,
    /// Its child starts a grandchild with `setsid -f` that holds the recorder connection too: the worker counts
    /// as running until both are gone, and the grandchild is out of the child's process group.
    pub grandchild: bool,
    pub grace_ms: u64,
    /// Bumped by a change; goes into the child's environment, so a changed definition differs.
    pub generation: u32,
}

impl WorkerDef {
    fn random(name: String, rng: &mut Rng) -> WorkerDef {
        WorkerDef {
            name,
            ignores_term: rng.below(3) == 0,
            grandchild: rng.below(3) == 0,
            grace_ms: 300 + rng.next_u64() % 201,
            generation: 0,
        }
    }

    /// "w03 (grace 412ms, ignores TERM, setsid grandchild, generation 2)".
    fn describe(&self) -> String {
        let mut text = format!("{} (grace {}ms", self.name, self.grace_ms);
        if self.ignores_term {
            text.push_str(", ignores TERM");
        }
        if self.grandchild {
            text.push_str(", setsid grandchild");
        }
        if self.generation > 0 {
            let _ = write!(text, ", generation {}", self.generation);
        }
        text.push(')');
        text
    }

    fn spec(&self, recorder: &Recorder) -> WorkerSpec {
        let mut shell = String::new();
        if self.ignores_term {
            shell.push_str("trap '' TERM\n");
        }
        if self.grandchild {
            shell.push_str("setsid -f /bin/bash -c 'read -r _ <&3'\n");
        }
        let mut spec = WorkerSpec::new(&self.name, recorder.command_with(&shell))
            .grace_period(&format!("{}ms", self.grace_ms))
            .restart_delay("200ms")
            .extra("max_restart_delay = \"1s\"");
        if self.generation > 0 {
            spec = spec.extra(&format!(
                "env = {{ NEMESIS_GENERATION = \"{}\" }}",
                self.generation
            ));
        }
        spec
    }
}

/// A change of config.
#[derive(Clone, Debug)]
pub enum Change {
    Add(WorkerDef),
    Remove(String),
    /// The same worker with another definition.
    Redefine(WorkerDef),
}

impl Change {
    fn apply(&self, workers: &mut BTreeMap<String, WorkerDef>) {
        match self {
            Change::Add(def) | Change::Redefine(def) => {
                workers.insert(def.name.clone(), def.clone());
            }
            Change::Remove(name) => {
                workers.remove(name);
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Change::Add(def) => format!("add {}", def.describe()),
            Change::Remove(name) => format!("remove {name}"),
            Change::Redefine(def) => format!("change {}", def.describe()),
        }
    }
}

/// One fault of the plan.
#[derive(Clone, Debug)]
pub struct Planned {
    /// When it begins, from the start of the schedule.
    pub at: Duration,
    pub kind: Kind,
    /// The node or ZooKeeper server it hits (an index), if it hits one.
    pub target: usize,
    /// How long until it is healed (zero for a one-shot fault).
    pub hold: Duration,
    /// For a child kill: which of the live children (index modulo their number).
    pub pick: u64,
    /// For a reload: the change, and whether the heal reverts it (else rolls it out).
    pub change: Option<Change>,
    pub revert: bool,
}

impl Planned {
    fn detail(&self) -> String {
        let mut detail = format!("hold {:.3}s", self.hold.as_secs_f64());
        if let Some(change) = &self.change {
            let _ = write!(
                detail,
                ", {}, then {}",
                change.describe(),
                if self.revert { "revert" } else { "roll out" }
            );
        }
        detail
    }
}

/// A fault's hold: short, about S, or long, equally often.
fn hold(rng: &mut Rng) -> Duration {
    match rng.below(3) {
        0 => rng.ms(200, 1_000),
        1 => rng.ms(1_000, 3_000),
        _ => rng.ms(3_000, 7_000),
    }
}

/// Plans `duration` of faults of `kinds` against a cluster configured with `workers`, at most `max_active` at
/// once.
pub fn plan(
    rng: &mut Rng,
    duration: Duration,
    max_active: usize,
    kinds: &[Kind],
    workers: &BTreeMap<String, WorkerDef>,
) -> Vec<Planned> {
    let mut workers = workers.clone();
    let mut extra = 0;
    let mut planned: Vec<Planned> = Vec::new();
    // The faults in progress: (ends, kind, target).
    let mut active: Vec<(Duration, Kind, usize)> = Vec::new();
    let mut t = Duration::from_secs(1);
    let mut burst = 2 + rng.below(4);
    while t < duration {
        active.retain(|&(ends, _, _)| ends > t);
        if burst == 0 {
            let healed = active.iter().map(|&(ends, _, _)| ends).max().unwrap_or(t);
            t = t.max(healed) + rng.ms(5_000, 9_000);
            active.clear();
            burst = 2 + rng.below(4);
            continue;
        }
        if active.len() >= max_active {
            t = active
                .iter()
                .map(|&(ends, _, _)| ends)
                .min()
                .expect("active faults");
            continue;
        }
        let possible: Vec<Kind> = kinds
            .iter()
            .copied()
            .filter(|k| !k.scope().free(&active).is_empty())
            .collect();
        if possible.is_empty() {
            t += Duration::from_millis(500);
            continue;
        }
        let kind = possible[rng.below(possible.len())];
        let targets = kind.scope().free(&active);
        let target = targets[rng.below(targets.len())];
        let mut fault = Planned {
            at: t,
            kind,
            target,
            hold: Duration::ZERO,
            pick: rng.next_u64(),
            change: None,
            revert: false,
        };
        match kind {
            Kind::ChildKill | Kind::GuardKill => {}
            Kind::Reload => {
                // Half of them end within a grace period: a revert while the old child is still stopping.
                fault.hold = if rng.below(2) == 0 {
                    rng.ms(50, 600)
                } else {
                    rng.ms(600, 3_000)
                };
                fault.revert = rng.below(3) == 0;
                let names: Vec<String> = workers.keys().cloned().collect();
                let choice = rng.below(3);
                let change = if (choice == 0 && workers.len() < MAX_WORKERS)
                    || workers.len() <= MIN_WORKERS
                {
                    extra += 1;
                    Change::Add(WorkerDef::random(format!("x{extra:02}"), rng))
                } else if choice == 1 || workers.len() >= MAX_WORKERS {
                    Change::Remove(names[rng.below(names.len())].clone())
                } else {
                    let mut def = workers[&names[rng.below(names.len())]].clone();
                    def.generation += 1;
                    def.grace_ms = 300 + rng.next_u64() % 201;
                    Change::Redefine(def)
                };
                if !fault.revert {
                    change.apply(&mut workers);
                }
                fault.change = Some(change);
            }
            _ => fault.hold = hold(rng),
        }
        if !fault.hold.is_zero() {
            active.push((t + fault.hold, kind, target));
        }
        planned.push(fault);
        burst -= 1;
        t += rng.ms(200, 3_000);
    }
    planned
}

// ---------------------------------------------------------------------------------------------------------------
// The cluster

/// One node: its links to the servers (a proxy per server), its supervisor, the ones it had before.
struct Node {
    id: &'static str,
    links: Vec<Proxy>,
    supervisor: Option<Supervisor>,
    /// Earlier supervisors of this node, kept for their logs.
    retired: Vec<Supervisor>,
    workers: BTreeMap<String, WorkerDef>,
}

impl Node {
    fn connect_string(&self) -> String {
        self.links
            .iter()
            .map(Proxy::connect_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn config(&self, root: &str, recorder: &Recorder) -> String {
        let specs: Vec<WorkerSpec> = self.workers.values().map(|w| w.spec(recorder)).collect();
        config(&self.connect_string(), root, S_STR, &specs)
    }

    /// Starts the node's supervisor and waits until it catches SIGHUP and SIGTERM: a signal that came before
    /// would kill it (their default action), which is no fault of the daemon.
    fn start(&mut self, root: &str, recorder: &Recorder) {
        assert!(self.supervisor.is_none(), "node {} still runs", self.id);
        let supervisor = Supervisor::start(&self.config(root, recorder), self.id);
        wait_until(
            Duration::from_secs(10),
            "a new supervisor to install its signal handlers",
            || catches_hup_and_term(supervisor.pid()) || supervisor.has_exited(),
        );
        self.supervisor = Some(supervisor);
    }

    /// Takes the supervisor away (it has exited or is to be killed), keeping it for its log.
    fn retire(&mut self) -> Option<&mut Supervisor> {
        let supervisor = self.supervisor.take()?;
        self.retired.push(supervisor);
        self.retired.last_mut()
    }

    /// Writes the node's config and SIGHUPs its supervisor (if it has one; a stopped one gets the signal when
    /// it continues).
    fn reload(&mut self, root: &str, recorder: &Recorder) {
        let toml = self.config(root, recorder);
        if let Some(supervisor) = &self.supervisor {
            supervisor.write_config(&toml);
            supervisor.signal(Signal::SIGHUP);
        }
    }

    /// Every log of this node, oldest first: (pid, text).
    fn logs(&self) -> Vec<(u32, String)> {
        self.retired
            .iter()
            .chain(self.supervisor.as_ref())
            .map(|s| (s.pid(), s.log()))
            .collect()
    }
}

struct Cluster {
    // Dropped in this order: the supervisors (their guards kill the children), the recorder, the servers.
    nodes: Vec<Node>,
    recorder: Recorder,
    ensemble: QuorumEnsemble,
    root: String,
}

impl Cluster {
    fn start(workers: &BTreeMap<String, WorkerDef>, sync_limit: u32) -> Cluster {
        let ensemble = QuorumEnsemble::start(sync_limit);
        let recorder = Recorder::new();
        let root = unique_root("nemesis");
        let mut nodes: Vec<Node> = NODES
            .iter()
            .map(|&id| Node {
                id,
                links: (0..SERVERS)
                    .map(|i| Proxy::new(&ensemble.connect_string(&[i])))
                    .collect(),
                supervisor: None,
                retired: Vec::new(),
                workers: workers.clone(),
            })
            .collect();
        for node in &mut nodes {
            node.start(&root, &recorder);
        }
        let cluster = Cluster {
            nodes,
            recorder,
            ensemble,
            root,
        };
        let names: BTreeSet<String> = workers.keys().cloned().collect();
        let mut counts = BTreeMap::new();
        let ok = poll_until(Duration::from_secs(60), &mut || {
            counts = cluster.recorder.live_counts();
            counts.keys().cloned().collect::<BTreeSet<_>>() == names
                && counts.values().all(|&n| n == 1)
        });
        assert!(
            ok,
            "the cluster did not run every worker once within 60s: {counts:?}"
        );
        cluster
    }

    /// The server to cut off from the quorum, and why: a follower that a node is connected to (node `n` first,
    /// then the others), as in issue 11 item 1; else the server node `n` is connected to; else a follower.
    fn server_of(&self, n: usize) -> (usize, String) {
        let modes: Vec<Option<String>> = (0..SERVERS).map(|i| self.ensemble.mode(i)).collect();
        let follower = |i: usize| modes[i].as_deref() == Some("follower");
        let used = |node: &Node| -> Vec<usize> {
            (0..SERVERS)
                .filter(|&i| node.links[i].connections() > 0)
                .collect()
        };
        for k in 0..NODES.len() {
            let node = &self.nodes[(n + k) % NODES.len()];
            if let Some(i) = used(node).into_iter().find(|&i| follower(i)) {
                return (i, format!("follower, node {}'s server", node.id));
            }
        }
        let node = &self.nodes[n];
        if let Some(&i) = used(node).first() {
            let mode = modes[i].as_deref().unwrap_or("not serving");
            return (i, format!("{mode}, node {}'s server", node.id));
        }
        match (0..SERVERS).find(|&i| follower(i)) {
            Some(i) => (i, format!("follower; node {} has no server", node.id)),
            None => (n, "no follower found".to_owned()),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The run

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
struct Active {
    /// Its index in `faults`.
    index: usize,
    /// A reload's node config before the change.
    before: Option<BTreeMap<String, WorkerDef>>,
    /// The server a `zk-isolate` cut off.
    isolated: Option<usize>,
}

/// The state of a run in progress.
struct Runner {
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
    fn say(&self, what: &str) {
        println!(
            "nemesis {} {what}",
            self.cluster.recorder.clock().at(Instant::now())
        );
    }

    /// Records a problem the run itself saw; `node` is "" when no node is concerned.
    fn anomaly(&mut self, node: &str, what: String) {
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
    fn check_supervisors(&mut self) {
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

    fn begin(&mut self, planned: &Planned, index: usize) {
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

    fn heal(&mut self, planned: &Planned, index: usize) {
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
    fn wait_for_quorum(&mut self, fault: usize) {
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
fn catches_hup_and_term(pid: u32) -> bool {
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
fn guard_of(pid: u32) -> Option<u32> {
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
fn verdict(runner: &Runner, options: &Options, ended: Instant) -> Outcome {
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
fn elections(cluster: &Cluster, conns: &[Conn]) -> String {
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

// ---------------------------------------------------------------------------------------------------------------
// Tests

/// The CI form: a one-minute schedule.
#[test]
fn a_seeded_fault_schedule_keeps_every_rule() {
    let options = Options::from_env(
        Duration::from_secs(60),
        "cargo test --test nemesis -- --nocapture a_seeded_fault_schedule_keeps_every_rule",
    );
    let outcome = run(&options);
    println!(
        "{}\nschedule (began .. healed):\n{}",
        outcome.figures, outcome.schedule
    );
    if let Some(failure) = outcome.failure {
        panic!("{failure}");
    }
}

#[test]
fn a_seed_plans_the_same_schedule() {
    let workers: BTreeMap<String, WorkerDef> = (0..WORKERS)
        .map(|i| {
            let name = format!("w{i:02}");
            (
                name.clone(),
                WorkerDef::random(name, &mut Rng::new(i as u64)),
            )
        })
        .collect();
    let first = plan(
        &mut Rng::new(42),
        Duration::from_secs(600),
        2,
        &Kind::ALL,
        &workers,
    );
    let again = plan(
        &mut Rng::new(42),
        Duration::from_secs(600),
        2,
        &Kind::ALL,
        &workers,
    );
    let show = |p: &[Planned]| format!("{p:?}");
    assert_eq!(show(&first), show(&again));
    // Every kind comes up in ten minutes; never more than two faults at once, one server and one reload at a
    // time, one process and one link fault per node.
    let kinds: BTreeSet<Kind> = first.iter().map(|p| p.kind).collect();
    assert_eq!(kinds.len(), Kind::ALL.len(), "kinds planned: {kinds:?}");
    for p in &first {
        let during: Vec<&Planned> = first
            .iter()
            .filter(|q| !q.hold.is_zero() && q.at <= p.at && p.at < q.at + q.hold)
            .collect();
        assert!(during.len() <= 2, "more than two at {:?}: {during:?}", p.at);
        let count = |scope: Scope, target: Option<usize>| {
            during
                .iter()
                .filter(|q| q.kind.scope() == scope && target.is_none_or(|t| q.target == t))
                .count()
        };
        assert!(
            count(Scope::Server, None) <= 1 && count(Scope::Config, None) <= 1,
            "at {:?}: {during:?}",
            p.at
        );
        for n in 0..NODES.len() {
            assert!(
                count(Scope::Process, Some(n)) <= 1 && count(Scope::Link, Some(n)) <= 1,
                "two faults of a kind on node {n} at {:?}: {during:?}",
                p.at
            );
        }
    }
}

/// Runs a recorder command as the daemon would, with the environment it gives a worker.
#[cfg(test)]
fn spawn_worker(argv: &[String], worker: &str, node: &str, token: u64) -> std::process::Child {
    std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("ZK_SUPERVISE_WORKER", worker)
        .env("ZK_SUPERVISE_NODE", node)
        .env("ZK_SUPERVISE_FENCING_TOKEN", token.to_string())
        .env(
            "ZK_SUPERVISE_ZNODE",
            format!("/r/{worker}/_c_{node}-0000000001"),
        )
        .spawn()
        .expect("spawn bash")
}

#[test]
fn the_recorder_sees_each_life_from_connect_to_death() {
    let recorder = Recorder::new();
    let mut first = spawn_worker(&recorder.command(), "w", "a", 7);
    wait_until(Duration::from_secs(5), "the first worker to report", || {
        recorder.live().len() == 1
    });
    first.kill().expect("kill the first worker");
    first.wait().expect("reap it");
    wait_until(Duration::from_secs(5), "its end to be seen", || {
        recorder.live().is_empty()
    });
    let mut second = spawn_worker(&recorder.command(), "w", "b", 9);
    wait_until(
        Duration::from_secs(5),
        "the second worker to report",
        || recorder.live().len() == 1,
    );
    let all = recorder.all();
    assert_eq!(all.len(), 2, "{all:?}");
    let (a, b) = (&all[0], &all[1]);
    assert_eq!(
        (
            a.worker.as_str(),
            a.node.as_str(),
            a.token(),
            a.pid,
            a.znode.as_str()
        ),
        ("w", "a", 7, first.id(), "/r/w/_c_a-0000000001")
    );
    assert_eq!((b.node.as_str(), b.token(), b.pid), ("b", 9, second.id()));
    assert!(
        a.closed.is_some_and(|closed| closed <= b.opened) && b.is_live(),
        "{all:?}"
    );
    drop(recorder);
    // Without its recorder a worker reads end-of-file and exits.
    let exited = poll_until(Duration::from_secs(5), &mut || {
        second.try_wait().ok().flatten().is_some()
    });
    assert!(exited, "the worker outlived its recorder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_cuts_one_direction_or_slows_every_chunk() {
    use zookeeper_client::{Acls, CreateMode};
    const SECOND: Duration = Duration::from_secs(1);
    let server = shared_server();
    let proxy = Proxy::new(&server.connect_string());
    let root = unique_root("proxy-modes");
    let via_proxy = zk_client(&proxy.connect_string()).await;
    let direct = zk_client(&server.connect_string()).await;
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    via_proxy
        .create(&root, b"", &options)
        .await
        .expect("create through the proxy");
    let works_again = || async {
        wait_until_async(
            10 * SECOND,
            "the proxied client to work after heal",
            || async { via_proxy.get_data(&root).await.is_ok() },
        )
        .await;
    };

    // Replies cut: the server gets the request, the client never hears back.
    proxy.cut(Direction::ToClient);
    assert!(proxy.is_cut(Direction::ToClient) && !proxy.is_partitioned());
    let heard = format!("{root}/heard");
    let unanswered = tokio::time::timeout(SECOND, via_proxy.create(&heard, b"", &options)).await;
    assert!(
        unanswered.is_err(),
        "an answer came through: {unanswered:?}"
    );
    assert!(
        direct.check_stat(&heard).await.expect("stat").is_some(),
        "the request did not reach the server"
    );
    proxy.heal();
    works_again().await;

    // Requests cut: the server never gets it.
    proxy.cut(Direction::ToServer);
    let lost = format!("{root}/lost");
    let unanswered = tokio::time::timeout(SECOND, via_proxy.create(&lost, b"", &options)).await;
    assert!(
        unanswered.is_err(),
        "an answer came through: {unanswered:?}"
    );
    assert!(
        direct.check_stat(&lost).await.expect("stat").is_none(),
        "the request reached the server"
    );
    proxy.heal();
    works_again().await;

    // Slow: each chunk is held 400-500 ms each way, so a round trip takes at least 800 ms.
    proxy.slow(Duration::from_millis(400), Duration::from_millis(500));
    let began = Instant::now();
    via_proxy
        .get_data(&root)
        .await
        .expect("a read on a slow link");
    let slow = began.elapsed();
    assert!(
        slow >= Duration::from_millis(800),
        "a round trip took {slow:?}"
    );
    proxy.heal();
    let began = Instant::now();
    via_proxy.get_data(&root).await.expect("a read once healed");
    let fast = began.elapsed();
    // A chunk already held when the link healed (the client's ping, say) still takes its up to 500 ms, and
    // a request may queue behind it; no longer slowed both ways means under the 800 ms of a slow round trip.
    assert!(
        fast < Duration::from_millis(800),
        "a round trip took {fast:?} once healed"
    );
    direct.delete(&heard, None).await.expect("delete");
    direct.delete(&root, None).await.expect("delete");
}

#[test]
fn the_checker_finds_each_kind_of_violation() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut conns = Vec::new();
    let mut conn = |worker: &str, node: &str, token: u64, znode: &str, opened, closed| {
        conns.push(Conn {
            id: conns.len(),
            worker: worker.into(),
            node: node.into(),
            token: token.to_string(),
            znode: znode.into(),
            pid: 1,
            opened,
            closed,
        });
    };
    // w1 keeps every rule: a clean handoff, then a restart within b's leadership before the window settles.
    conn("w1", "a", 10, "/w1/z1", at(0), Some(at(1_000)));
    conn("w1", "b", 11, "/w1/z2", at(1_000), Some(at(3_000)));
    conn("w1", "b", 11, "/w1/z2", at(3_200), None);
    // w2: b starts while a still runs.
    conn("w2", "a", 10, "/w2/z1", at(0), Some(at(2_000)));
    conn("w2", "b", 20, "/w2/z2", at(1_500), None);
    // w3: a new leadership with a smaller token.
    conn("w3", "a", 30, "/w3/z1", at(0), Some(at(1_000)));
    conn("w3", "b", 25, "/w3/z2", at(1_000), None);
    // w4: configured, but gone after the fault.
    conn("w4", "a", 1, "/w4/z1", at(0), Some(at(2_000)));
    // w5: moves in the middle of a quiet window.
    conn("w5", "a", 1, "/w5/z1", at(0), Some(at(10_000)));
    conn("w5", "b", 2, "/w5/z2", at(10_000), None);
    let faults = [Fault {
        id: 0,
        kind: "partition",
        target: "node a".into(),
        detail: String::new(),
        began: at(100),
        healed: Some(at(2_500)),
    }];
    let configured = [Configured {
        from: t0,
        workers: ["w1", "w2", "w3", "w4", "w5"].map(String::from).into(),
    }];
    let checked = history::check(&history::Input {
        conns: &conns,
        faults: &faults,
        configured: &configured,
        started: t0,
        ended: at(20_000),
        settle: SETTLE,
        anomalies: &[],
    });
    let found: BTreeSet<(&str, &str)> = checked
        .violations
        .iter()
        .map(|v| (v.rule, v.worker.as_deref().unwrap_or("")))
        .collect();
    let want: BTreeSet<(&str, &str)> = [
        ("overlap", "w2"),
        ("token", "w3"),
        ("liveness", "w4"),
        ("stability", "w5"),
    ]
    .into();
    assert_eq!(found, want, "{:#?}", checked.violations);
    assert_eq!((checked.overlaps, checked.windows_checked), (1, 1));
    assert_eq!(checked.overlap_total, Duration::from_millis(500));
    // w4 never came back: the partition's window never saw every worker once.
    assert_eq!(checked.unrecovered.get("partition"), Some(&1));
    let (worst, worker, _) = checked.worst_no_copy.expect("w4 had no copy");
    assert_eq!(
        (worst, worker.as_str()),
        (Duration::from_millis(17_500), "w4")
    );

    // A child killed: its end comes just after the kill, which opens the window; it recovers with the restart.
    let life = |id: usize, opened, closed| Conn {
        id,
        worker: "w1".into(),
        node: "a".into(),
        token: "1".into(),
        znode: "/w1/z1".into(),
        pid: 1,
        opened,
        closed,
    };
    let conns = [life(0, t0, Some(at(1_001))), life(1, at(1_300), None)];
    let faults = [Fault {
        id: 0,
        kind: "child-kill",
        target: "w1 on a".into(),
        detail: String::new(),
        began: at(1_000),
        healed: Some(at(1_000)),
    }];
    let configured = [Configured {
        from: t0,
        workers: ["w1".to_owned()].into(),
    }];
    let checked = history::check(&history::Input {
        conns: &conns,
        faults: &faults,
        configured: &configured,
        started: t0,
        ended: at(10_000),
        settle: SETTLE,
        anomalies: &[],
    });
    assert!(checked.violations.is_empty(), "{:#?}", checked.violations);
    assert_eq!(
        checked.recoveries.get("child-kill"),
        Some(&vec![Duration::from_millis(300)])
    );
}

#[test]
fn log_lines_are_found_by_their_time_and_worker() {
    let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    assert_eq!(history::rfc3339(t), "2023-11-14T22:13:20.123456Z");
    assert_eq!(history::rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    let log = "2023-11-14T22:13:19.000000Z  INFO zk_supervise::worker: started worker=w1 pid=1\n\
               2023-11-14T22:13:20.500000Z  INFO zk_supervise::worker: started worker=w2 pid=2\n\
               2023-11-14T22:13:20.600000Z  WARN zk_supervise::session: disconnected\n\
               2023-11-14T22:13:22.000000Z  INFO zk_supervise::worker: started worker=w2 pid=3";
    let lines = history::log_window(
        log,
        "2023-11-14T22:13:20.000000Z",
        "2023-11-14T22:13:21.000000Z",
        Some("w2"),
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with("pid=2") && lines[1].ends_with("disconnected"));
}
