//! The schedule: a seeded plan of faults, made whole before the run starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::*;
use crate::history::Recorder;
use crate::*;

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
    pub fn scope(self) -> Scope {
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
    pub(crate) fn free(self, active: &[(Duration, Kind, usize)]) -> Vec<usize> {
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
    pub fn random(name: String, rng: &mut Rng) -> WorkerDef {
        WorkerDef {
            name,
            ignores_term: rng.below(3) == 0,
            grandchild: rng.below(3) == 0,
            grace_ms: 300 + rng.next_u64() % 201,
            generation: 0,
        }
    }

    /// "w03 (grace 412ms, ignores TERM, setsid grandchild, generation 2)".
    pub(crate) fn describe(&self) -> String {
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

    pub(crate) fn spec(&self, recorder: &Recorder) -> WorkerSpec {
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
    pub(crate) fn apply(&self, workers: &mut BTreeMap<String, WorkerDef>) {
        match self {
            Change::Add(def) | Change::Redefine(def) => {
                workers.insert(def.name.clone(), def.clone());
            }
            Change::Remove(name) => {
                workers.remove(name);
            }
        }
    }

    pub(crate) fn describe(&self) -> String {
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
    pub(crate) fn detail(&self) -> String {
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
pub(crate) fn hold(rng: &mut Rng) -> Duration {
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
