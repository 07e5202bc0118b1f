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
//! `cargo test --test it nemesis::` runs a one-minute schedule (CI, tests/it/nemesis.rs); `NEMESIS_SECS` changes
//! the length, and `NEMESIS_SKIP` (fault kinds by name, comma-separated, e.g. `guard-kill,zk-pause`) leaves kinds
//! out, to look past a known bug. The long form is `cargo bench --bench nemesis` (bench/nemesis.rs, 30 minutes),
//! which prints the run's figures.

mod cluster;
mod run;
mod schedule;

use std::time::Duration;

pub use run::{long_form, run, Options, Outcome};
pub use schedule::{plan, Change, Kind, Planned, Rng, Scope, WorkerDef};

/// The session timeout.
pub const S: Duration = Duration::from_secs(2);
pub const S_STR: &str = "2s";
/// After every fault is healed, each configured worker runs exactly once within this.
pub const SETTLE: Duration = Duration::from_secs(4);
pub const NODES: [&str; 3] = ["a", "b", "c"];
pub const WORKERS: usize = 10;
/// Reloads keep the number of workers within these bounds.
pub const MIN_WORKERS: usize = 8;
pub const MAX_WORKERS: usize = 12;
/// How long a SIGTERMed supervisor gets to shut down, even with its link to ZooKeeper cut: the daemon waits the
/// largest grace period plus 5 s for its workers, SIGKILLs the children, waits 5 s more for the deletes of their
/// candidates, then closes the session (src/supervisor.rs, `drain`).
pub const SHUTDOWN: Duration = Duration::from_secs(15);
/// How many violations get their history and logs printed.
pub const DETAILED: usize = 5;
