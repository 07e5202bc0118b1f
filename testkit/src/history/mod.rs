//! The history of a fault run ([`crate::nemesis`]) and the checker over all of it.
//!
//! - [`Recorder`]: the observer outside every process. Like [`super::Witness`], each worker process holds a TCP
//!   connection to it for exactly as long as it lives, and reports its worker, node, fencing token, pid and
//!   candidate. Unlike the witness (a thread per connection, each taking its own timestamps, so a thread that
//!   is scheduled late records a close late), one thread polls every connection, with the listener first: a
//!   connection accepted in one wakeup while another's end-of-file only shows in a later one really overlapped
//!   it, because `poll` looked at the listener before it looked at the other connection. Opens and closes seen
//!   in the same wakeup get the same time and do not count as an overlap. The checker can therefore never blame
//!   the daemon for the observer's own scheduling delays.
//! - [`Fault`]: one injected fault, when it began and when it was healed.
//! - [`check`]: every rule over the whole history, and the figures of the run ([`Checked`]).
//!
//! The rules:
//!
//! 1. **No overlap, ever**: no two processes of one worker alive at the same time.
//! 2. **Fencing tokens**: a new leadership (a connection with another candidate znode than the worker's previous
//!    one) carries a token greater than every token before it; a restart within one leadership (same znode)
//!    carries the same token; a leadership never comes back after a newer one (SPEC §5, src/election.rs: the
//!    token is the candidate's `czxid`).
//! 3. **Liveness once healed**: in every quiet window (no fault active) that lasts longer than `settle`
//!    (S + 2 s), from `settle` after its start to its end, every configured worker runs exactly once, always the
//!    same process, and every worker no longer configured runs nowhere.

mod check;
mod print;
mod recorder;

use std::collections::BTreeSet;
use std::time::Instant;

pub use check::*;
pub use print::*;
pub use recorder::*;

/// One fault as it was injected.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Its index in the schedule.
    pub id: usize,
    /// The kind, e.g. "supervisor-sigkill".
    pub kind: &'static str,
    /// What it hit, e.g. "node b", "zk2", "w03 on a (pid 1234)".
    pub target: String,
    /// How it was planned, e.g. "hold 1.200s".
    pub detail: String,
    pub began: Instant,
    /// `None` while it lasts; a one-shot fault (a child killed) is healed when it began.
    pub healed: Option<Instant>,
}

/// A worker set every node is configured with, from `from` on.
#[derive(Clone, Debug)]
pub struct Configured {
    pub from: Instant,
    pub workers: BTreeSet<String>,
}
