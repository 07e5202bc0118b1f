//! The set of workers on this node: one task each, one session for all, reload, and shutdown.
//!
//! Reload (SIGHUP, SPEC §7): the file is read and validated again; if it is invalid, the problems are
//! logged and nothing changes. Otherwise added workers join their elections, removed workers stop their
//! child and delete their candidate, changed workers do the same and then start again with the new
//! definition, and unchanged workers are not touched. `[zookeeper]`, `[node]` and `[metrics]` apply at
//! the next restart.
//!
//! The set converges to the last file read, whatever the timing of the reloads: the daemon keeps the
//! workers the file wants (`wanted`) apart from the tasks that run (`running`, at most one per
//! name). A reload cancels the running tasks whose definition the file no longer has and starts the
//! wanted workers that have no task; a task that is still stopping is left to finish, and when it
//! ends its worker starts again if, and as, the file then in force wants it. So a worker removed and put back
//! while its child is still stopping starts again once the stop is over, A→B→A runs A, and a reload
//! that changes nothing (a storm of SIGHUPs) touches nothing.
//!
//! Shutdown (SPEC §6, §7): every worker stops its child (stop signal, grace period, SIGKILL) in parallel,
//! then deletes its candidate so the next node starts within a round trip; then the session is closed,
//! and the daemon waits (at most `S`) for the server to confirm the close: a candidate whose delete
//! failed goes with the session at once, not a session timeout later. A second signal turns the
//! remaining grace periods into an immediate SIGKILL.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, WorkerConfig};
use crate::election::Reaper;
use crate::observe::{lock, CandidateData, Observer, Shared};
use crate::session::{self, Session, SessionError};
use crate::worker::{self, Context};

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
    /// The credentials file of `[zookeeper] auth` is unusable: the message names it (never its
    /// content), as [`config::read_credentials`] gives it.
    #[error(transparent)]
    Credentials(#[from] config::CredentialsError),
    /// The credentials file, or the name service the workers' users need, did not answer within
    /// `deadline`: not the config's fault.
    #[error("the credentials file and the workers' users could not be read within {deadline:?} (a hung file system or name service?)")]
    Unreadable { deadline: Duration },
}

impl RunError {
    /// Whether the cause is the configuration (exit 78, so systemd does not restart-loop).
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            RunError::Session(SessionError::Tls(_) | SessionError::MissingChroot { .. })
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

/// A worker task and what it runs with. Stopping once `cancel` is cancelled.
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
    let credentials = read_credentials(&config).await?;
    // Ready before any election is won.
    crate::process::spawner::prepare().await;
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let config = config_rx.borrow().clone();
    let (sessions_tx, sessions_rx) = watch::channel(None);
    let session_stop = CancellationToken::new();
    // Owned by its handle: the loop below selects on it, and shutdown awaits it.
    let mut session_task = tokio::spawn(session::run(
        config_rx.clone(),
        credentials,
        sessions_tx,
        session_stop.clone(),
        session::Watchdog {
            feed: crate::systemd::watchdog,
            interval: crate::systemd::watchdog_interval(),
        },
    ));
    let observer = Arc::new(Observer {
        sessions: sessions_rx.clone(),
        workers: Mutex::new(BTreeMap::new()),
        changed: Arc::new(Notify::new()),
    });
    let reaper = Arc::new(Reaper::default());
    let mut set = WorkerSet::new(&config, &observer, &reaper, control.kill.clone());
    set.want(&config.workers);
    let background = Background::start(&config, &observer).await?;
    observe(observer.clone());

    // A reload in progress: the file is read and parsed on a thread of its own, never on this loop
    // (whose runtime renews the lease). SIGHUPs meanwhile are kept (one permit) for after it.
    let mut loading: Option<Loading> = None;
    let fatal = loop {
        tokio::select! {
            () = control.shutdown.cancelled() => break None,
            r = &mut session_task => break Some(r),
            () = control.reload.notified(), if loading.is_none() => {
                tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
                loading = Some(load_off_loop(path.clone()));
            }
            loaded = async { loading.as_mut().expect("a reload in progress").await }, if loading.is_some() => {
                loading = None;
                let current = config_tx.borrow().clone();
                if let Some(new) = set.reload(loaded, &current) {
                    crate::limits::fit(new.workers.len());
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
    set.wanted.clear();
    set.drain(&control).await;
    background.stop().await;
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

/// The credentials file of `[zookeeper] auth`, read, and the warnings about the workers' users
/// logged: off the event loop and under a deadline, like every file the daemon reads (the user
/// lookups go through NSS, which LDAP or SSSD can block).
async fn read_credentials(config: &Config) -> Result<Option<Arc<config::Credentials>>, RunError> {
    let (auth, config) = (config.zookeeper.auth.clone(), config.clone());
    let start = crate::files::off_loop(crate::files::READ_DEADLINE, move || {
        let credentials = auth.as_ref().map(config::read_credentials).transpose();
        (credentials, crate::process::user_switch_warnings(&config))
    })
    .await;
    let Some((credentials, warnings)) = start else {
        return Err(RunError::Unreadable {
            deadline: crate::files::READ_DEADLINE,
        });
    };
    let credentials = credentials?.map(Arc::new);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok(credentials)
}

/// How long shutdown waits for the metrics server and the systemd reporter once told to stop: a
/// scrape in flight may finish, a client that holds its connection open may not hold the daemon.
const BACKGROUND_AT_SHUTDOWN: Duration = Duration::from_secs(1);

/// The tasks beside the workers: the metrics server (with `[metrics]`) and the systemd reporter.
/// They end when `stop` is cancelled; shutdown waits for them ([`Background::stop`]).
struct Background {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Background {
    /// Binds the metrics address, if any, and starts the tasks.
    ///
    /// # Errors
    /// [`RunError::Metrics`] when the address cannot be bound.
    async fn start(config: &Config, observer: &Arc<Observer>) -> Result<Background, RunError> {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        if let Some(metrics) = &config.metrics {
            let listener = tokio::net::TcpListener::bind(metrics.listen)
                .await
                .map_err(|source| RunError::Metrics {
                    addr: metrics.listen,
                    source,
                })?;
            tracing::info!(listen = %metrics.listen, "serving /metrics and /healthz");
            tasks.spawn(crate::metrics::serve(
                listener,
                observer.clone(),
                stop.clone(),
            ));
        }
        tasks.spawn(crate::systemd::report(observer.clone(), stop.clone()));
        Ok(Background { stop, tasks })
    }

    /// Tells the tasks to stop and waits for them, at most [`BACKGROUND_AT_SHUTDOWN`]; then aborts
    /// those left.
    async fn stop(mut self) {
        self.stop.cancel();
        let tasks = &mut self.tasks;
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(BACKGROUND_AT_SHUTDOWN, all)
            .await
            .is_err()
        {
            tracing::debug!(
                left = self.tasks.len(),
                "background tasks still busy at shutdown: aborting them"
            );
            self.tasks.shutdown().await;
        }
    }
}

/// A config file read for a reload, with the warnings about its workers' users.
type Loaded = (Result<Config, config::ConfigError>, Vec<String>);

/// A reload's read: `None` if it did not finish within [`crate::files::READ_DEADLINE`].
type Loading = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Loaded>> + Send>>;

/// Reads and validates the file at `path` for a reload, on a thread of its own: a FIFO or a device is
/// refused at once, a regular file is read up to 16 MiB, and a read that hangs (a dead network file
/// system) is abandoned after [`crate::files::READ_DEADLINE`].
fn load_off_loop(path: std::path::PathBuf) -> Loading {
    Box::pin(crate::files::off_loop(
        crate::files::READ_DEADLINE,
        move || {
            let loaded = config::load(&path);
            let warnings = loaded
                .as_ref()
                .map(crate::process::user_switch_warnings)
                .unwrap_or_default();
            (loaded, warnings)
        },
    ))
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
    /// The tasks, by worker name: at most one per worker, running or stopping.
    running: BTreeMap<String, Running>,
    /// The workers of the file in force: what `running` converges to. A stopping task's worker starts
    /// again, as defined here, when the task ends.
    wanted: BTreeMap<String, Arc<WorkerConfig>>,
}

impl WorkerSet {
    /// No worker yet; what each worker task of `config` needs from the daemon.
    fn new(
        config: &Config,
        observer: &Arc<Observer>,
        reaper: &Arc<Reaper>,
        kill: CancellationToken,
    ) -> WorkerSet {
        let chroot = config
            .zookeeper
            .connect
            .chroot()
            .unwrap_or_default()
            .to_owned();
        let base = CandidateData {
            node: config.node.id.clone(),
            host: Some(hostname()),
            pid: Some(std::process::id()),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            ..CandidateData::default()
        };
        let ctx = Arc::new(Context {
            node_id: config.node.id.clone(),
            root: config.zookeeper.root.clone(),
            chroot,
            base,
            takeover_delay: config.zookeeper.takeover_delay,
            changed: observer.changed.clone(),
            reaper: reaper.clone(),
        });
        WorkerSet {
            ctx,
            sessions: observer.sessions.clone(),
            observer: observer.clone(),
            kill,
            stop: CancellationToken::new(),
            tasks: JoinSet::new(),
            running: BTreeMap::new(),
            wanted: BTreeMap::new(),
        }
    }

    /// Makes `workers` the wanted set, and starts those that have no task.
    fn want(&mut self, workers: &[WorkerConfig]) {
        self.wanted = workers
            .iter()
            .map(|w| (w.name.clone(), Arc::new(w.clone())))
            .collect();
        let idle: Vec<Arc<WorkerConfig>> = self
            .wanted
            .values()
            .filter(|w| !self.running.contains_key(&w.name))
            .cloned()
            .collect();
        for w in idle {
            self.spawn(w);
        }
    }

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
        if let Some(config) = self.wanted.get(&name).cloned() {
            tracing::info!(worker = %name, "its old task has stopped: starting it as the config now defines it");
            self.spawn(config);
        }
        self.observer.changed.notify_waiters();
    }

    /// Applies a new version of the file, as read by [`load_off_loop`] (`None`: not within its
    /// deadline); returns the config now in force, or `None` if the file could not be read or is
    /// invalid (nothing changed).
    fn reload(&mut self, loaded: Option<Loaded>, current: &Config) -> Option<Config> {
        let Some((loaded, warnings)) = loaded else {
            tracing::error!(
                config = %current.path.display(),
                "reload: the config could not be read within {:?} (a hung file system?); nothing changed",
                crate::files::READ_DEADLINE
            );
            return None;
        };
        let mut new = match loaded {
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
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        let changed = config::restart_keys_changed(current, &new);
        if !changed.is_empty() {
            tracing::warn!(
                "reload: {} changed; changes to [zookeeper], [node] and [metrics] take effect at the next restart",
                changed.join(", ")
            );
            new.zookeeper = current.zookeeper.clone();
            new.node = current.node.clone();
            new.metrics = current.metrics.clone();
        }
        let tasks = self
            .running
            .iter()
            .map(|(name, r)| (name.as_str(), &*r.config, r.cancel.is_cancelled()));
        let plan = Plan::new(tasks, &new.workers);
        for name in &plan.removed {
            tracing::info!(worker = %name, "reload: removed; stopping it and leaving its election");
        }
        for name in &plan.changed {
            tracing::info!(worker = %name, "reload: changed; stopping it to start it with the new definition");
        }
        for name in &plan.waiting {
            tracing::info!(worker = %name, "reload: still stopping; it starts again, as now defined, once stopped");
        }
        for name in &plan.added {
            tracing::info!(worker = %name, "reload: added; joining its election");
        }
        for name in plan.removed.iter().chain(&plan.changed) {
            if let Some(running) = self.running.get(name) {
                let why = if plan.removed.contains(name) {
                    "removed"
                } else {
                    "changed"
                };
                if let Some(shared) = lock(&self.observer.workers).get(name) {
                    shared.stop_because(why);
                }
                running.cancel.cancel();
            }
        }
        self.want(&new.workers);
        tracing::info!(
            added = plan.added.len(),
            removed = plan.removed.len(),
            changed = plan.changed.len(),
            unchanged = plan.unchanged,
            waiting = plan.waiting.len(),
            "reloaded"
        );
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

/// What a reload does, decided from the worker tasks and the new file alone. The rules that make the
/// set converge to the last file (see the module docs): a running task whose worker the file removes
/// or changes is cancelled; a worker with no task starts; a task already stopping is left alone, and
/// its worker starts again when it ends if the file then in force wants it ([`WorkerSet::finished`]).
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Running tasks to cancel: their worker is not in the file.
    removed: Vec<String>,
    /// Running tasks to cancel: their worker is defined otherwise.
    changed: Vec<String>,
    /// Workers with no task: start them.
    added: Vec<String>,
    /// Workers whose task is still stopping: they start again, as now defined, once it ends.
    waiting: Vec<String>,
    /// Workers left alone.
    unchanged: usize,
}

impl Plan {
    /// `tasks`: each task's worker name, definition, and whether it is stopping.
    fn new<'a>(
        tasks: impl IntoIterator<Item = (&'a str, &'a WorkerConfig, bool)>,
        file: &[WorkerConfig],
    ) -> Plan {
        let wanted: BTreeMap<&str, &WorkerConfig> =
            file.iter().map(|w| (w.name.as_str(), w)).collect();
        let mut plan = Plan::default();
        let mut with_task = std::collections::BTreeSet::new();
        for (name, config, stopping) in tasks {
            with_task.insert(name);
            match (wanted.get(name), stopping) {
                (Some(_), true) => plan.waiting.push(name.to_owned()),
                (None, true) => {}
                (None, false) => plan.removed.push(name.to_owned()),
                (Some(w), false) if **w != *config => plan.changed.push(name.to_owned()),
                (Some(_), false) => plan.unchanged += 1,
            }
        }
        plan.added = wanted
            .keys()
            .filter(|name| !with_task.contains(*name))
            .map(|name| (*name).to_owned())
            .collect();
        plan
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Worker `name` defined as version `v` (its command differs from one version to the next).
    fn worker(name: &str, v: u32) -> WorkerConfig {
        let text = format!(
            "[zookeeper]\nconnect = \"zk:2181\"\n[[worker]]\nname = \"{name}\"\ncommand = [\"/bin/v{v}\"]\n"
        );
        config::parse(&text, Path::new("w.toml"))
            .expect("a valid config")
            .workers
            .remove(0)
    }

    /// The tasks of a [`WorkerSet`], as its two rules move them: a reload applies a [`Plan`], and a
    /// stopping task that ends starts its worker again if the file in force wants it.
    #[derive(Default)]
    struct Model {
        /// Name → (definition, stopping).
        tasks: BTreeMap<String, (WorkerConfig, bool)>,
        wanted: Vec<WorkerConfig>,
        starts: usize,
    }

    impl Model {
        fn reload(&mut self, file: &[WorkerConfig]) -> Plan {
            let plan = Plan::new(
                self.tasks.iter().map(|(n, (w, s))| (n.as_str(), w, *s)),
                file,
            );
            for name in plan.removed.iter().chain(&plan.changed) {
                self.tasks.get_mut(name).expect("a task").1 = true;
            }
            for w in file.iter().filter(|w| plan.added.contains(&w.name)) {
                self.start(w.clone());
            }
            self.wanted = file.to_vec();
            plan
        }

        fn start(&mut self, w: WorkerConfig) {
            assert!(
                !self.tasks.contains_key(&w.name),
                "two tasks for {}",
                w.name
            );
            self.starts += 1;
            self.tasks.insert(w.name.clone(), (w, false));
        }

        /// The stopping task of `name` ends.
        fn finished(&mut self, name: &str) {
            let (_, stopping) = self.tasks.remove(name).expect("a task");
            assert!(stopping, "only a cancelled task ends");
            if let Some(w) = self.wanted.iter().find(|w| w.name == name) {
                self.start(w.clone());
            }
        }

        fn stopping(&self) -> Vec<String> {
            self.tasks
                .iter()
                .filter(|(_, (_, s))| *s)
                .map(|(n, _)| n.clone())
                .collect()
        }

        /// Every stopping task ends, until none is left; then the tasks must be exactly the file.
        fn settle_and_check(&mut self) {
            while let Some(name) = self.stopping().first().cloned() {
                self.finished(&name);
            }
            let tasks: Vec<&WorkerConfig> = self.tasks.values().map(|(w, _)| w).collect();
            let mut wanted: Vec<&WorkerConfig> = self.wanted.iter().collect();
            wanted.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(tasks, wanted);
        }
    }

    #[test]
    fn removed_then_put_back_while_stopping_starts_again() {
        let mut m = Model::default();
        m.reload(&[worker("x", 1), worker("u", 1)]);
        let plan = m.reload(&[worker("u", 1)]);
        assert_eq!(plan.removed, ["x"]);
        let plan = m.reload(&[worker("x", 1), worker("u", 1)]);
        assert_eq!(plan.waiting, ["x"]);
        assert_eq!(plan.unchanged, 1);
        m.settle_and_check();
        assert_eq!(m.starts, 3, "u started once, x twice");
    }

    #[test]
    fn a_to_b_to_a_while_stopping_runs_a() {
        let mut m = Model::default();
        m.reload(&[worker("x", 1)]);
        assert_eq!(m.reload(&[worker("x", 2)]).changed, ["x"]);
        assert_eq!(m.reload(&[worker("x", 1)]).waiting, ["x"]);
        m.settle_and_check();
        assert_eq!(m.tasks["x"].0, worker("x", 1));
    }

    #[test]
    fn the_same_file_again_touches_nothing() {
        let mut m = Model::default();
        let file = [worker("x", 1), worker("y", 1)];
        m.reload(&file);
        for _ in 0..50 {
            let plan = m.reload(&file);
            assert_eq!(
                plan,
                Plan {
                    unchanged: 2,
                    ..Plan::default()
                }
            );
        }
        assert_eq!(m.starts, 2);
    }

    /// Any sequence of reloads, with tasks ending at any moment in between, ends with the tasks the last
    /// file defines: a small seeded random walk over files of three workers with two versions each.
    #[test]
    fn any_sequence_of_reloads_converges_to_the_last_file() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..500 {
            let mut m = Model::default();
            for _ in 0..next(12) + 1 {
                if next(2) == 0 {
                    let file: Vec<WorkerConfig> = ["x", "y", "z"]
                        .iter()
                        .filter_map(|name| match next(3) {
                            0 => None,
                            v => Some(worker(name, u32::try_from(v).expect("small"))),
                        })
                        .collect();
                    m.reload(&file);
                } else {
                    let stopping = m.stopping();
                    if !stopping.is_empty() {
                        let i = usize::try_from(next(stopping.len() as u64)).expect("small");
                        m.finished(&stopping[i]);
                    }
                }
            }
            m.settle_and_check();
        }
    }
}
