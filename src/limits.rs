//! The daemon's limit on open files, and what its workers need of it.
//!
//! # What a worker costs
//!
//! Measured by `tests/limits.rs` (`each_running_worker_costs_three_descriptors`), counting
//! `/proc/<pid>/fd` of the daemon and of its spawner with 0, 1 and 10 workers running: the daemon
//! held 19, 22 and 49, the spawner 4 each time. So:
//!
//! - the daemon holds about [`BASE_MEASURED`] descriptors of its own: 18 in the test (stdio and the
//!   log's own copy of stderr, the runtime's epolls, eventfds and timerfd, the signal socket pair, the
//!   ZooKeeper connection, the spawner's socket and pidfd, the lease's shared page), plus whatever its
//!   parent lets it inherit (one pipe there), plus the `/metrics` listener and its connections;
//! - each **running** worker costs the daemon [`PER_RUNNING_WORKER`] = 3 more: its guard's control
//!   socket and the read ends of its stdout and stderr pipes. While it starts it holds three more for a
//!   moment (the write ends of the pipes and the guard's end of the socket, until the guard has its
//!   copies);
//! - a worker that only takes part in its election costs nothing: one ZooKeeper session serves them all;
//! - the spawner holds none per worker (it closes what it hands to each guard), and guards and children
//!   are processes of their own, each with its own limit.
//!
//! So `n` workers need at most [`need`]`(n)` = [`BASE`] + 3 × `n`, where [`BASE`] leaves room over the
//! measured figure for starts in flight and `/metrics` connections.
//!
//! # What the daemon does
//!
//! At start (`main.rs`) and after each reload that applies ([`crate::supervisor`]), [`fit`]
//! raises the soft limit on open files to the hard limit (an unprivileged process may; the hard limit
//! is the operator's, set by `LimitNOFILE=` in the unit or `ulimit -Hn`, and is never raised here), and
//! if that cannot hold every worker, logs one warning that names the limit, the need and the fix. A
//! worker past the limit then fails to start with `Too many open files`, which the systemd status line
//! and `status` show; the others run. A reload also picks up a hard limit the operator raised on the
//! running daemon (`prlimit --pid`).
//!
//! Children get the soft limit the daemon started with back ([`child_nofile`]): programs that use
//! `select(2)` rely on a soft limit of 1024.

use std::sync::OnceLock;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors the daemon holds per running worker: the guard's control socket and the two output pipes.
pub const PER_RUNNING_WORKER: u64 = 3;

/// About the descriptors the daemon held with no worker running, as measured (see the module docs).
pub const BASE_MEASURED: u64 = 20;

/// Descriptors reserved for the daemon itself in [`need`]: [`BASE_MEASURED`] with room for starts in
/// flight, `/metrics` connections and a reconnection to ZooKeeper.
pub const BASE: u64 = 64;

/// The soft limit the daemon started with, which children get back.
static CHILD_NOFILE: OnceLock<u64> = OnceLock::new();

/// The descriptors `workers` running workers need in the daemon.
#[must_use]
pub fn need(workers: usize) -> u64 {
    let workers = u64::try_from(workers).unwrap_or(u64::MAX);
    BASE.saturating_add(PER_RUNNING_WORKER.saturating_mul(workers))
}

/// Raises this process's soft limit on open files to its hard limit; returns the limit now in force
/// (`None` if it cannot be read). The first call remembers the soft limit found, for the children.
pub fn raise_open_file_limit() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let _ = CHILD_NOFILE.set(soft);
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// The soft limit on open files to give children: the one the daemon started with (`None` if
/// [`raise_open_file_limit`] never ran, then children inherit the daemon's).
#[must_use]
pub fn child_nofile() -> Option<u64> {
    CHILD_NOFILE.get().copied()
}

/// Makes room for `workers` workers: raises the soft limit ([`raise_open_file_limit`]) and, if the
/// limit still cannot hold them all, logs one warning (see [`shortfall`]). Called at start and after
/// every reload that applied, with the number of workers now configured.
pub fn fit(workers: usize) {
    if let Some(limit) = raise_open_file_limit() {
        if let Some(message) = shortfall(limit, workers) {
            tracing::warn!("{message}");
        }
    }
}

/// The warning for a limit on open files of `limit` with `workers` workers, if it cannot hold them
/// all: it names the limit, the need and the fix.
#[must_use]
pub fn shortfall(limit: u64, workers: usize) -> Option<String> {
    let need = need(workers);
    if limit >= need {
        return None;
    }
    let fit = limit.saturating_sub(BASE_MEASURED) / PER_RUNNING_WORKER;
    Some(format!(
        "the limit on open files is {limit}, and {workers} workers need {need} ({BASE} + {PER_RUNNING_WORKER} per running \
         worker): only about {fit} can run here, the others fail to start with \"Too many open files\"; raise \
         LimitNOFILE= in the unit (systemctl edit zk-supervise), or `ulimit -Hn` where the daemon is started, to at \
         least {need}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_need_is_a_base_and_three_per_worker() {
        assert_eq!(need(0), BASE);
        assert_eq!(need(200), BASE + 600);
        assert_eq!(need(10_000), BASE + 30_000);
        assert_eq!(need(usize::MAX), u64::MAX);
    }

    #[test]
    fn a_limit_that_holds_every_worker_says_nothing() {
        assert_eq!(shortfall(need(200), 200), None);
        assert_eq!(shortfall(65_536, 10_000), None);
        assert_eq!(shortfall(1024, 0), None);
    }

    #[test]
    fn a_short_limit_is_named_with_the_need_and_the_fix() {
        let message = shortfall(256, 200).expect("256 is short for 200 workers");
        assert!(
            message.starts_with("the limit on open files is 256, and 200 workers need 664 "),
            "{message}"
        );
        assert!(message.contains("only about 78 can run here"), "{message}");
        assert!(message.contains("LimitNOFILE="), "{message}");
        assert!(message.ends_with("to at least 664"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        // A limit below the daemon's own share.
        assert!(shortfall(16, 1)
            .expect("short")
            .contains("only about 0 can run"));
    }

    #[test]
    fn the_unit_fits_the_most_workers_a_config_may_have() {
        let unit = include_str!("../packaging/zk-supervise.service");
        let line = unit
            .lines()
            .find(|l| l.starts_with("LimitNOFILE="))
            .expect("the unit sets LimitNOFILE=");
        let value = line.trim_start_matches("LimitNOFILE=");
        let hard = value.rsplit(':').next().expect("a value");
        let hard: u64 = hard.parse().expect("a number");
        // 10,000: the most workers a config may have (src/config.rs).
        assert!(hard >= need(10_000), "{line}");
    }
}
