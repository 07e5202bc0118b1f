//! The set of workers on this node: one task each, one session for all, reload, and shutdown.
//!
//! Reload (SIGHUP, SPEC §7): the file is read and validated again; if it is invalid, the problems are
//! logged and nothing changes. Otherwise added workers join their elections, removed workers stop their
//! child and delete their candidate, changed workers do the same and then start again with the new
//! definition, and unchanged workers are not touched. `[zookeeper]`, `[node]` and `[metrics]` apply at
//! the next restart.
//!
//! Shutdown (SPEC §6, §7): every worker stops its child (stop signal, grace period, SIGKILL) in parallel,
//! then deletes its candidate so the next node starts within a round trip; then the session is closed,
//! and the daemon waits (at most `S`) for the server to confirm the close: a candidate whose delete
//! failed goes with the session at once, not a session timeout later. A second signal turns the
//! remaining grace periods into an immediate SIGKILL.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, WorkerConfig};
use crate::election::Reaper;
use crate::session::{self, Session, SessionError};
use crate::worker::{self, Context, Shared, State};

/// Why the daemon stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("metrics: listen on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Credentials(String),
}

impl RunError {
    /// Whether the cause is the configuration (exit 78, so systemd does not restart-loop).
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            RunError::Session(SessionError::GraceDoesNotFit(_) | SessionError::Tls(_))
                | RunError::Credentials(_)
        )
    }
}

/// Signals that drive the daemon from outside: `shutdown` asks for a clean stop; `kill` (a second
/// signal) skips the remaining grace periods; `reload` re-reads the config.
#[derive(Clone, Default)]
pub struct Control {
    pub shutdown: CancellationToken,
    pub kill: CancellationToken,
    pub reload: Arc<Notify>,
}

/// What metrics, readiness and tests can observe of a running daemon.
#[derive(Debug)]
pub struct Observer {
    pub sessions: watch::Receiver<Option<Arc<Session>>>,
    /// The workers that currently run on this node, by name.
    pub workers: Mutex<BTreeMap<String, Arc<Shared>>>,
    /// Woken on every worker state change.
    pub changed: Arc<Notify>,
}

impl Observer {
    /// The workers and their shared state, in name order.
    #[must_use]
    pub fn workers(&self) -> Vec<(String, Arc<Shared>)> {
        lock(&self.workers)
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }
}

/// A worker task and what it runs with.
struct Running {
    config: Arc<WorkerConfig>,
    cancel: CancellationToken,
}

/// How long shutdown waits for the reaper's deletes before it leaves them to the session's close.
const REAPER_AT_SHUTDOWN: Duration = Duration::from_millis(250);

/// Runs the daemon until `control.shutdown` is cancelled (then returns `Ok` after a clean shutdown) or a
/// fatal error. `observe` is given the daemon's observer once it exists.
///
/// # Errors
/// [`RunError`] when the daemon cannot go on: the server's session timeout does not fit the config, or
/// the metrics address cannot be bound.
pub async fn run(
    config: Config,
    control: Control,
    observe: impl FnOnce(Arc<Observer>),
) -> Result<(), RunError> {
    let path = config.path.clone();
    let credentials = match &config.zookeeper.auth {
        Some(auth) => Some(Arc::new(
            config::read_credentials(auth).map_err(RunError::Credentials)?,
        )),
        None => None,
    };
    // Ready before any election is won.
    crate::spawner::prepare().await;
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let config = config_rx.borrow().clone();
    let (sessions_tx, sessions_rx) = watch::channel(None);
    let session_stop = CancellationToken::new();
    let mut session_task = tokio::spawn(session::run(
        config_rx.clone(),
        credentials,
        sessions_tx,
        session_stop.clone(),
    ));

    let (chroot, _) = split_chroot(&config.zookeeper.connect);
    let mut base = serde_json::Map::new();
    base.insert("node".into(), config.node.id.clone().into());
    base.insert("host".into(), hostname().into());
    base.insert("pid".into(), std::process::id().into());
    base.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    let observer = Arc::new(Observer {
        sessions: sessions_rx.clone(),
        workers: Mutex::new(BTreeMap::new()),
        changed: Arc::new(Notify::new()),
    });
    let reaper = Arc::new(Reaper::default());
    let ctx = Arc::new(Context {
        node_id: config.node.id.clone(),
        root: config.zookeeper.root.clone(),
        chroot,
        base,
        takeover_delay: config.zookeeper.takeover_delay,
        changed: observer.changed.clone(),
        reaper: reaper.clone(),
    });
    let mut set = WorkerSet {
        ctx,
        sessions: sessions_rx,
        observer: observer.clone(),
        kill: control.kill.clone(),
        stop: CancellationToken::new(),
        tasks: JoinSet::new(),
        running: BTreeMap::new(),
        pending: BTreeMap::new(),
    };
    for w in &config.workers {
        set.spawn(Arc::new(w.clone()));
    }
    let background = CancellationToken::new();
    if let Some(metrics) = &config.metrics {
        let listener = tokio::net::TcpListener::bind(metrics.listen)
            .await
            .map_err(|source| RunError::Metrics {
                addr: metrics.listen,
                source,
            })?;
        tracing::info!(listen = %metrics.listen, "serving /metrics and /healthz");
        tokio::spawn(crate::metrics::serve(
            listener,
            observer.clone(),
            background.clone(),
        ));
    }
    tokio::spawn(crate::systemd::report(observer.clone(), background.clone()));
    observe(observer.clone());

    let fatal = loop {
        tokio::select! {
            () = control.shutdown.cancelled() => break None,
            r = &mut session_task => break Some(r),
            () = control.reload.notified() => {
                let current = config_tx.borrow().clone();
                if let Some(new) = set.reload(&path, &current) {
                    config_tx.send_replace(Arc::new(new));
                }
            }
            Some(done) = set.tasks.join_next() => set.finished(done),
        }
    };
    crate::systemd::stopping();
    let workers = set.running.len();
    if fatal.is_none() {
        tracing::info!(workers, "shutting down: stopping every child");
    }
    set.stop.cancel();
    set.pending.clear();
    set.drain(&control).await;
    background.cancel();
    // What is left to delete goes with the session; no reaper task may keep it open.
    reaper.shutdown(REAPER_AT_SHUTDOWN).await;
    let closing = set
        .sessions
        .borrow()
        .as_ref()
        .map(|s| (s.client.state_watcher(), s.timeout()));
    session_stop.cancel();
    let result = match fatal {
        Some(r) => r,
        None => session_task.await,
    };
    if let Some((watcher, timeout)) = closing {
        wait_closed(watcher, timeout).await;
    }
    match result {
        Ok(Ok(())) => {
            tracing::info!("shut down cleanly");
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Waits until the client library has closed the session (the server answered its close), at most
/// `timeout`: past `S` the server expires it anyway. The library sends the close once the last handle
/// on the client is dropped; returning earlier would end the process with the close unsent, and a
/// candidate whose delete failed would keep the next node waiting for the expiry.
async fn wait_closed(mut watcher: zookeeper_client::StateWatcher, timeout: Duration) {
    let closed = async {
        let mut state = watcher.state();
        while !state.is_terminated() {
            state = watcher.changed().await;
        }
    };
    if tokio::time::timeout(timeout, closed).await.is_err() {
        tracing::warn!(timeout = ?timeout, "the zookeeper session could not be closed; the server expires it");
    }
}

/// The worker tasks of this node.
struct WorkerSet {
    ctx: Arc<Context>,
    sessions: watch::Receiver<Option<Arc<Session>>>,
    observer: Arc<Observer>,
    kill: CancellationToken,
    /// Cancelled at shutdown; every worker's token is a child of it.
    stop: CancellationToken,
    /// Each task returns its worker's name.
    tasks: JoinSet<String>,
    running: BTreeMap<String, Running>,
    /// Changed workers waiting for their old task to finish before they start again.
    pending: BTreeMap<String, Arc<WorkerConfig>>,
}

impl WorkerSet {
    fn spawn(&mut self, config: Arc<WorkerConfig>) {
        let shared = Arc::new(Shared::new());
        let cancel = self.stop.child_token();
        lock(&self.observer.workers).insert(config.name.clone(), shared.clone());
        self.running.insert(
            config.name.clone(),
            Running {
                config: config.clone(),
                cancel: cancel.clone(),
            },
        );
        let (sessions, kill, ctx) = (self.sessions.clone(), self.kill.clone(), self.ctx.clone());
        self.tasks.spawn(async move {
            let name = config.name.clone();
            worker::run(config, ctx, sessions, cancel, kill, shared).await;
            name
        });
        self.observer.changed.notify_waiters();
    }

    /// A worker task ended: it was removed, or changed and waits to start again.
    fn finished(&mut self, done: Result<String, tokio::task::JoinError>) {
        let name = match done {
            Ok(name) => name,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return,
        };
        self.running.remove(&name);
        lock(&self.observer.workers).remove(&name);
        if let Some(config) = self.pending.remove(&name) {
            tracing::info!(worker = %name, "starting again with its new definition");
            self.spawn(config);
        }
        self.observer.changed.notify_waiters();
    }

    /// Applies a new version of the file at `path`; returns the config now in force, or `None` if the
    /// file is invalid (nothing changed).
    fn reload(&mut self, path: &Path, current: &Config) -> Option<Config> {
        tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
        let mut new = match config::load(path) {
            Ok(new) => new,
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!("{line}");
                }
                tracing::error!("reload: the config is invalid; nothing changed");
                return None;
            }
        };
        if let Some(session) = self.sessions.borrow().as_ref() {
            if let Err(e) = new.check_grace_against(session.timeout()) {
                for line in e.to_string().lines() {
                    tracing::error!("{line}");
                }
                tracing::error!("reload: a grace period does not fit the session; nothing changed");
                return None;
            }
        }
        if new.zookeeper != current.zookeeper
            || new.node != current.node
            || new.metrics != current.metrics
        {
            tracing::warn!("reload: changes to [zookeeper], [node] and [metrics] take effect at the next restart");
            new.zookeeper = current.zookeeper.clone();
            new.node = current.node.clone();
            new.metrics = current.metrics.clone();
        }
        let wanted: BTreeMap<&str, &WorkerConfig> =
            new.workers.iter().map(|w| (w.name.as_str(), w)).collect();
        let (mut added, mut removed, mut changed) = (0, 0, 0);
        for (name, running) in &self.running {
            match wanted.get(name.as_str()) {
                None => {
                    tracing::info!(worker = %name, "reload: removed; stopping it and leaving its election");
                    running.cancel.cancel();
                    self.pending.remove(name);
                    removed += 1;
                }
                Some(w)
                    if **w != *running.config
                        && self.pending.get(name).is_none_or(|p| **p != **w) =>
                {
                    tracing::info!(worker = %name, "reload: changed; stopping it to start it with the new definition");
                    running.cancel.cancel();
                    self.pending.insert(name.clone(), Arc::new((*w).clone()));
                    changed += 1;
                }
                Some(_) => {}
            }
        }
        for w in &new.workers {
            if !self.running.contains_key(&w.name) {
                tracing::info!(worker = %w.name, "reload: added; joining its election");
                self.spawn(Arc::new(w.clone()));
                added += 1;
            }
        }
        let unchanged = new.workers.len() - added - changed;
        tracing::info!(added, removed, changed, unchanged, "reloaded");
        Some(new)
    }

    /// Waits for every worker task. Past the largest grace period plus a margin, SIGKILLs the children
    /// left; if tasks are still busy after that (deleting candidates from an unreachable ZooKeeper),
    /// aborts them: their children are dead, and their candidates go with the session.
    async fn drain(&mut self, control: &Control) {
        let largest_grace = self
            .running
            .values()
            .map(|r| r.config.grace_period)
            .max()
            .unwrap_or_default();
        let margin = Duration::from_secs(5);
        let deadline = tokio::time::sleep(largest_grace + margin);
        tokio::pin!(deadline);
        let mut killed = false;
        loop {
            tokio::select! {
                next = self.tasks.join_next() => match next {
                    None => return,
                    Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Some(_) => {}
                },
                () = &mut deadline => {
                    if killed {
                        tracing::error!(left = self.tasks.len(), "workers still busy after their children were killed: abandoning them");
                        self.tasks.shutdown().await;
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
}

/// What a worker's state says for readiness and the summary: whether it joined its election, and
/// whether this node leads it.
#[must_use]
pub fn joined_and_leading(state: &State) -> (bool, bool) {
    match state {
        State::Connecting | State::Stopped => (false, false),
        State::Following { .. } => (true, false),
        State::Leading | State::Running { .. } | State::Stopping => (true, true),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
