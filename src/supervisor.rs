//! The set of workers on this node: one task each, one session for all, and the shutdown sequence.
//!
//! Shutdown (SPEC §6, §7): every worker stops its child (stop signal, grace period, SIGKILL) in parallel,
//! then deletes its candidate so the next node starts within a round trip; then the session is closed.
//! A second signal turns the remaining grace periods into an immediate SIGKILL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::session::{self, Session, SessionError};
use crate::worker::{self, Context, State};

/// Why the daemon stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl RunError {
    /// Whether the cause is the configuration (exit 78, so systemd does not restart-loop).
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(self, RunError::Session(SessionError::GraceDoesNotFit(_)))
    }
}

/// Signals that drive the daemon from outside: `shutdown` asks for a clean stop; `kill` (a second
/// signal) skips the remaining grace periods.
#[derive(Clone, Default)]
pub struct Control {
    pub shutdown: CancellationToken,
    pub kill: CancellationToken,
}

/// What tests and metrics can observe of a running daemon.
#[derive(Clone)]
pub struct Observer {
    pub sessions: watch::Receiver<Option<Arc<Session>>>,
    pub workers: BTreeMap<String, watch::Receiver<State>>,
}

/// Runs the daemon until `control.shutdown` is cancelled (then returns `Ok` after a clean shutdown) or a
/// fatal error. `observe` is given the daemon's state channels once they exist.
///
/// # Errors
/// [`RunError`] when the daemon cannot go on (the server's session timeout does not fit the config).
pub async fn run(
    config: Config,
    control: Control,
    observe: impl FnOnce(Observer),
) -> Result<(), RunError> {
    let config = Arc::new(config);
    let (sessions_tx, sessions_rx) = watch::channel(None);
    let session_stop = CancellationToken::new();
    let mut session_task = tokio::spawn(session::run(
        config.clone(),
        sessions_tx,
        session_stop.clone(),
    ));

    let (chroot, _) = split_chroot(&config.zookeeper.connect);
    let data = serde_json::json!({
        "node": config.node.id,
        "host": hostname(),
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let ctx = Arc::new(Context {
        node_id: config.node.id.clone(),
        root: config.zookeeper.root.clone(),
        chroot,
        data: data.to_string().into_bytes(),
        takeover_delay: config.zookeeper.takeover_delay,
    });
    let workers_stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut states = BTreeMap::new();
    for w in &config.workers {
        let (tx, rx) = watch::channel(State::Connecting);
        states.insert(w.name.clone(), rx);
        tasks.spawn(worker::run(
            Arc::new(w.clone()),
            ctx.clone(),
            sessions_rx.clone(),
            workers_stop.child_token(),
            control.kill.clone(),
            tx,
        ));
    }
    observe(Observer {
        sessions: sessions_rx,
        workers: states,
    });

    let fatal = tokio::select! {
        () = control.shutdown.cancelled() => None,
        r = &mut session_task => Some(r),
    };
    if fatal.is_none() {
        tracing::info!(
            workers = config.workers.len(),
            "shutting down: stopping every child"
        );
    }
    workers_stop.cancel();
    drain(&mut tasks, &config, &control).await;
    session_stop.cancel();
    let result = match fatal {
        Some(r) => r,
        None => session_task.await,
    };
    match result {
        Ok(Ok(())) => {
            tracing::info!("shut down cleanly");
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Waits for every worker task. Past the largest grace period plus a margin, SIGKILLs the children
/// left; if tasks are still busy after that (deleting candidates from an unreachable ZooKeeper), aborts
/// them: their children are dead, and their candidates go with the session.
async fn drain(tasks: &mut JoinSet<()>, config: &Config, control: &Control) {
    let largest_grace = config
        .workers
        .iter()
        .map(|w| w.grace_period)
        .max()
        .unwrap_or_default();
    let margin = Duration::from_secs(5);
    let deadline = tokio::time::sleep(largest_grace + margin);
    tokio::pin!(deadline);
    let mut killed = false;
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                None => return,
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(_) => {}
            },
            () = &mut deadline => {
                if killed {
                    tracing::error!(left = tasks.len(), "workers still busy after their children were killed: abandoning them");
                    tasks.shutdown().await;
                    return;
                }
                tracing::warn!("children still running past the largest grace period: killing them");
                control.kill.cancel();
                killed = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + margin);
            }
        }
    }
}

/// Splits `h:p,h:p/chroot` into the chroot ("" when none) and the host list.
#[must_use]
pub fn split_chroot(connect: &str) -> (String, &str) {
    match connect.find('/') {
        Some(i) if &connect[i..] != "/" => {
            (connect[i..].trim_end_matches('/').to_owned(), &connect[..i])
        }
        Some(i) => (String::new(), &connect[..i]),
        None => (String::new(), connect),
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}
