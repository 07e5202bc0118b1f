//! Children as the supervisor sees them: spawned through a guard, told every new lease deadline,
//! stopped with grace, their output logged line by line. The one tree of the crate that forks
//! processes or sends them signals.
//!
//! - this module: [`Child`], the supervisor's handle on a running child, and how a child ends
//!   ([`Ended`], [`Exit`], [`Cause`]);
//! - [`guard`]: the process between the supervisor and each child, which enforces the lease deadline
//!   on its own (signals, grace, SIGKILL, reaping);
//! - [`spawner`]: the one process per supervisor that forks the guards, and sweeps after a guard that
//!   died without reporting;
//! - `protocol`: what the supervisor and a guard say to each other;
//! - `exec`, `credentials`: how the guard starts the child (as its `user` and `group`, the lease
//!   checked one last time just before `exec`);
//! - `tree`: the process tree from `/proc`, which the guard and the spawner clean up;
//! - `output`: the child's stdout and stderr, logged line by line;
//! - `health`: health checks ([`run_check`]), run under a guard as the child is.
//!
//! The guard does the process-group work; this side only talks to it over the control socket, so
//! nothing here can leave a child running if the supervisor stops running. A guard that dies
//! without reporting leaves its child's tree to the spawner that forked it, and [`Child::wait`]
//! returns only once that spawner has killed it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{pipe, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::config::WorkerConfig;
use crate::lease::Stamp;
use protocol::{FromGuard, Spec, ToGuard};

mod credentials;
mod exec;
mod guard;
mod health;
mod output;
mod protocol;
pub(crate) mod spawner;
mod tree;

pub use health::{run_check, CheckError};
pub use protocol::{Cause, Exit};

/// The spawner's entry point: `zk-supervise __guards` runs it (see [`spawner`]) instead of the
/// daemon. Returns the process exit code.
#[must_use]
pub fn spawner_main() -> i32 {
    spawner::main()
}

/// One line per worker whose `user` or `group` this daemon cannot switch to because it is not root
/// (the guard would refuse to start its child, and its health check). Empty when the daemon runs as
/// root. Looks users and groups up (NSS: may block): call it off the event loop.
#[must_use]
pub fn user_switch_warnings(config: &crate::config::Config) -> Vec<String> {
    switch_warnings_for(config, credentials::Ids::current())
}

/// [`user_switch_warnings`] for a daemon running with `ids`.
fn switch_warnings_for(config: &crate::config::Config, ids: credentials::Ids) -> Vec<String> {
    if ids.root {
        return Vec::new();
    }
    // One lookup per distinct pair: a name service can be slow, and many workers share a user.
    let mut seen: std::collections::HashMap<(Option<&str>, Option<&str>), Option<String>> =
        std::collections::HashMap::new();
    config
        .workers
        .iter()
        .filter_map(|w| {
            let (user, group) = (w.user.as_deref(), w.group.as_deref());
            if user.is_none() && group.is_none() {
                return None;
            }
            let why = seen.entry((user, group)).or_insert_with(|| {
                let creds = credentials::credentials(user, group).ok()??;
                credentials::needs_root(&creds, ids, user, group)
            });
            Some(format!(
                "worker \"{}\": {}; its child cannot start on this node",
                w.name,
                why.as_ref()?
            ))
        })
        .collect()
}

/// A child's end: its status, why it ended, and how long it ran.
#[derive(Clone, Copy, Debug)]
pub struct Ended {
    pub exit: Exit,
    pub cause: Cause,
    pub ran: Duration,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The guard ran but could not start the command (not found, bad working_dir, unknown user...).
    #[error("{0}")]
    Command(String),
    /// The guard itself could not be started.
    #[error("start guard: {0}")]
    Guard(#[from] std::io::Error),
    /// The lease no longer holds for the grace period: not started (not a failure of the command).
    #[error("the lease is too short to start the child")]
    Lease,
}

/// A running child and its guard.
///
/// Dropping it without [`Child::wait`] closes the control socket, which makes the guard SIGKILL the
/// child: never drop a running child unless that is what you mean.
pub struct Child {
    pid: u32,
    started: Instant,
    control: OwnedWriteHalf,
    events: mpsc::UnboundedReceiver<FromGuard>,
    ended: Option<Ended>,
    /// The guard, and the spawner it came from: if the guard dies without reporting, that spawner
    /// kills what came back to it (see [`crate::process::spawner`]) before the child counts as ended.
    guard: Guard,
}

/// A guard as the supervisor knows it.
struct Guard {
    pid: Option<i32>,
    forked_by: crate::process::spawner::Forked,
}

impl Child {
    /// Starts `worker`'s command under a guard, with `extra_env` on top of the worker's environment.
    /// The guard refuses to start it if `deadline` has passed.
    ///
    /// # Errors
    /// [`SpawnError::Command`] when the command cannot be started (the message names what failed), and
    /// [`SpawnError::Guard`] when the guard cannot be.
    pub async fn spawn(
        worker: &WorkerConfig,
        extra_env: &[(&str, String)],
        lease: &crate::lease::Lease,
    ) -> Result<Child, SpawnError> {
        let (stdout, stdout_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let (stderr, stderr_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        if !lease.holds_for(worker.grace_period) {
            return Err(SpawnError::Lease);
        }
        let spec = spec_for(worker, worker.command.clone(), extra_env);
        let stdout = pipe::Receiver::from_owned_fd(stdout)?;
        let stderr = pipe::Receiver::from_owned_fd(stderr)?;
        let started = Child::start(spec, &stdout_w, &stderr_w, lease).await;
        // The guard has its copies of the write ends (or there is no guard): the readers see end of
        // file when the child's whole tree is gone.
        drop((stdout_w, stderr_w));
        tokio::spawn(output::log_output(worker.name.clone(), "stdout", stdout));
        tokio::spawn(output::log_output(worker.name.clone(), "stderr", stderr));
        started
    }

    /// Asks the spawner for a guard with `stdout` and `stderr`, sends it `spec` (with the lease's
    /// deadline and page filled in) and waits for its answer.
    pub(super) async fn start(
        mut spec: Spec,
        stdout: &OwnedFd,
        stderr: &OwnedFd,
        lease: &crate::lease::Lease,
    ) -> Result<Child, SpawnError> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let mut fds = vec![theirs.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
        if let Some(shared) = lease.shared() {
            fds.push(shared.fd().as_raw_fd());
        }
        let forked_by = spawner::spawn_guard(&fds).await?;
        // The guard has its copy now.
        drop(theirs);
        ours.set_nonblocking(true)?;
        let (read, mut control) = tokio::net::UnixStream::from_std(ours)?.into_split();
        spec.deadline_ns = lease.deadline().map_or(0, |k| k.0);
        spec.shared_deadline = lease.shared().is_some();
        let spec_worker = spec.worker.clone();
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn(read_events(read, tx));
        let mut guard = Guard {
            pid: None,
            forked_by,
        };
        // A guard that dies before it answers may be gone before it reads the spec: its end shows as
        // the end of `events`, not as a failed write.
        let _ = control.write_all(&ToGuard::Spec(spec).line()).await;
        let failure = loop {
            match events.recv().await {
                Some(FromGuard::Guard { pid }) => guard.pid = Some(pid),
                Some(FromGuard::Started { pid }) => {
                    return Ok(Child {
                        pid,
                        started: Instant::now(),
                        control,
                        events,
                        ended: None,
                        guard,
                    })
                }
                Some(FromGuard::Failed { why }) => break SpawnError::Command(why),
                Some(FromGuard::Refused { why }) => {
                    tracing::warn!(worker = %spec_worker, "the guard did not start the command: {why}");
                    break SpawnError::Lease;
                }
                Some(FromGuard::Exited { .. }) | None => {
                    // Killed before it said whether the command started: whatever it started may have
                    // left processes behind.
                    guard.sweep().await;
                    break SpawnError::Command(
                        "the guard exited before starting the command".into(),
                    );
                }
            }
        };
        Err(failure)
    }

    /// The child's process id (also its process group id).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Tells the guard the lease now lasts until `deadline`.
    pub async fn renew(&mut self, deadline: Stamp) {
        self.send(&ToGuard::Lease {
            deadline_ns: deadline.0,
        })
        .await;
    }

    /// Asks for a graceful stop: the stop signal to the group now, SIGKILL after the grace period (or at
    /// the lease deadline if that comes first). Returns at once; [`Child::wait`] tells when it is over.
    pub async fn stop(&mut self) {
        self.send(&ToGuard::Stop).await;
    }

    /// SIGKILL to the group now.
    pub async fn kill(&mut self) {
        self.send(&ToGuard::Kill).await;
    }

    async fn send(&mut self, message: &ToGuard) {
        if self.ended.is_none() {
            // A failed write means the guard is gone; wait() will report it.
            let _ = self.control.write_all(&message.line()).await;
        }
    }

    /// Waits until the child and every process of its group are gone, and reaps the guard.
    ///
    /// # Cancellation safety
    /// Cancel-safe: the end is kept, and a later call returns it at once.
    pub async fn wait(&mut self) -> Ended {
        if let Some(ended) = self.ended {
            return ended;
        }
        let (exit, cause) = loop {
            match self.events.recv().await {
                Some(FromGuard::Exited { exit, cause }) => break (exit, cause),
                Some(_) => {}
                None => {
                    // The guard died without reporting (killed by hand, OOM): its direct child died with it
                    // (parent-death signal), but the rest of its tree did not: the rest of the group, and
                    // whatever left the group, came back to the spawner. Finish the job before anything
                    // can start this worker again.
                    self.guard.sweep().await;
                    kill_group(self.pid).await;
                    break (Exit::Unknown, Cause::Itself);
                }
            }
        };
        let ended = Ended {
            exit,
            cause,
            ran: self.started.elapsed(),
        };
        self.ended = Some(ended);
        // The child and its group are gone once the guard says so; the guard exits right after, and
        // tokio reaps it in the background when `self.guard` is dropped. Waiting for that here would
        // only delay the handoff.
        ended
    }
}

/// What a guard needs to run `argv` as `worker` runs: its user, group, working directory and
/// environment with `extra_env` on top, its stop signal and grace period.
pub(super) fn spec_for(
    worker: &WorkerConfig,
    argv: Vec<String>,
    extra_env: &[(&str, String)],
) -> Spec {
    Spec {
        worker: worker.name.clone(),
        argv,
        env: worker
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(extra_env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))
            .collect(),
        working_dir: worker
            .working_dir
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        user: worker.user.clone(),
        group: worker.group.clone(),
        stop_signal: worker.stop_signal as i32,
        grace_ms: u64::try_from(worker.grace_period.as_millis()).unwrap_or(u64::MAX),
        deadline_ns: 0,
        nofile: crate::limits::child_nofile(),
        shared_deadline: false,
    }
}

/// SIGKILLs the process group `pgid` and waits (up to 5 s) until it is gone.
async fn kill_group(pgid: u32) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    let pgid = nix::unistd::Pid::from_raw(raw);
    tracing::warn!(
        pgid = raw,
        "the guard is gone: killing what is left of its child's process group"
    );
    for _ in 0..500 {
        if nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).is_err() {
            return; // ESRCH: nothing left
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::error!(
        pgid = raw,
        "processes of the group survived SIGKILL for 5 s"
    );
}

impl Guard {
    /// After the guard died without reporting: has its spawner kill every process that came back to
    /// it, and waits for that. Logged, not returned: nothing better can be done than go on.
    async fn sweep(&self) {
        let Some(pid) = self.pid else {
            tracing::error!(
                "a guard died before it said who it was: processes of its child may survive"
            );
            return;
        };
        match self.forked_by.sweep(pid).await {
            Ok(0) => {}
            Ok(left) => tracing::error!(
                guard = pid,
                left,
                "processes that came back from a dead guard survived SIGKILL for 5 s"
            ),
            Err(e) => tracing::error!(
                guard = pid,
                error = %e,
                "the guard is gone and so is its spawner: processes that left the child's process group may survive"
            ),
        }
    }
}

/// Passes on what the guard says, until it closes its end. A line this binary does not know is
/// skipped (both ends are the same binary: there is none).
async fn read_events(read: tokio::net::unix::OwnedReadHalf, tx: mpsc::UnboundedSender<FromGuard>) {
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(message) = FromGuard::parse(&line) {
            if tx.send(message).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, 7: a daemon that is not root warns, once per worker, about each worker whose
    /// `user` or `group` it cannot switch to; as root it has nothing to say.
    #[test]
    fn a_daemon_that_is_not_root_warns_about_workers_that_switch_users() {
        let text = "[zookeeper]\nconnect = \"zk:2181\"\n\
                    [[worker]]\nname = \"a\"\ncommand = [\"/bin/a\"]\nuser = \"0\"\n\
                    [[worker]]\nname = \"b\"\ncommand = [\"/bin/b\"]\n\
                    [[worker]]\nname = \"c\"\ncommand = [\"/bin/c\"]\nuser = \"0\"\n\
                    [[worker]]\nname = \"d\"\ncommand = [\"/bin/d\"]\nuser = \"1000\"\ngroup = \"1000\"\n";
        let config = crate::config::parse(text, std::path::Path::new("w.toml")).expect("valid");
        let ids = credentials::Ids {
            root: false,
            uids: [nix::unistd::Uid::from_raw(1000); 2],
            gids: [nix::unistd::Gid::from_raw(1000); 2],
        };
        let warnings = switch_warnings_for(&config, ids);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0]
                .starts_with("worker \"a\": switching to user \"0\" (uid 0, gid 0) needs root")
                && warnings[0].ends_with("; its child cannot start on this node"),
            "{}",
            warnings[0]
        );
        assert!(warnings[1].starts_with("worker \"c\": "));
        let root = credentials::Ids { root: true, ..ids };
        assert!(switch_warnings_for(&config, root).is_empty());
    }
}
