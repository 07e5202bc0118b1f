//! Health checks: a worker's check command, run under a guard as its child runs.

use std::os::fd::OwnedFd;
use std::time::Duration;

use super::protocol::Spec;
use super::{spec_for, Child, Exit, SpawnError};
use crate::config::{HealthCheck, WorkerConfig};

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("open /dev/null: {0}")]
    DevNull(std::io::Error),
    /// The check's command, or its guard, could not be started.
    #[error("{0}")]
    Spawn(SpawnError),
    /// It was still running at the check's `timeout` (then its whole tree was SIGKILLed).
    #[error("{program}: no answer within {timeout:?}")]
    Timeout { program: String, timeout: Duration },
    /// It exited non-zero, or of a signal.
    #[error("{program}: {exit}")]
    Failed { program: String, exit: Exit },
}

/// Runs `worker`'s health check under a guard, as the child runs: with the worker's `user`, `group`,
/// `working_dir` and environment (plus `extra_env`), in a process group of its own, stdin and output
/// to /dev/null, killed at the lease deadline or when the supervisor dies. `Err` with the reason when
/// it exits non-zero, cannot start, or outlives `check.timeout` (then its whole tree is SIGKILLed).
/// Whatever it leaves running when it exits is SIGKILLed too: nothing of a check outlives it.
///
/// A check the lease no longer leaves room for is not run, and counts as passed: the lease's end
/// stops the child anyway.
///
/// # Errors
/// Why the check failed ([`CheckError`]).
///
/// # Cancellation safety
/// Dropping the future kills the check and everything it started (the guard sees its control socket
/// close).
pub async fn run_check(
    worker: &WorkerConfig,
    check: &HealthCheck,
    extra_env: &[(&str, String)],
    lease: &crate::lease::Lease,
) -> Result<(), CheckError> {
    let program = check.command.first().map_or("", String::as_str);
    let devnull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(CheckError::DevNull)?;
    let devnull = OwnedFd::from(devnull);
    let spec = Spec {
        // No grace: a check that is stopped has failed, and what it leaves behind goes at once.
        stop_signal: nix::sys::signal::Signal::SIGKILL as i32,
        grace_ms: 0,
        ..spec_for(worker, check.command.clone(), extra_env)
    };
    let until = tokio::time::Instant::now() + check.timeout;
    let timed_out = || CheckError::Timeout {
        program: program.to_owned(),
        timeout: check.timeout,
    };
    let mut child =
        match tokio::time::timeout_at(until, Child::start(spec, &devnull, &devnull, lease)).await {
            Ok(Ok(child)) => child,
            Ok(Err(SpawnError::Lease)) => return Ok(()),
            Ok(Err(e)) => return Err(CheckError::Spawn(e)),
            // Dropped half-started: the guard kills whatever it started.
            Err(_) => return Err(timed_out()),
        };
    drop(devnull);
    let ended = match tokio::time::timeout_at(until, child.wait()).await {
        Ok(ended) => ended,
        Err(_) => {
            child.kill().await;
            // The guard answers once the tree is gone; if it cannot, dropping `child` leaves it to
            // the guard all the same.
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            return Err(timed_out());
        }
    };
    match ended.exit {
        Exit::Code(0) => Ok(()),
        exit => Err(CheckError::Failed {
            program: program.to_owned(),
            exit,
        }),
    }
}
