//! One ZooKeeper session at a time: connect with backoff, renew the lease, notice the end, start over.
//!
//! The daemon holds exactly one session. [`run`] publishes it on a watch channel once it is usable (the
//! negotiated timeout is known, the grace periods fit it, and the lease holds), and publishes `None`
//! when it ends. Every worker task follows that channel. After an expiry a new session is opened and
//! every worker rejoins its election at the back (its old candidate went with the old session).
//!
//! The lease ([`crate::lease`]) is renewed only by proofs that the quorum leader heard from the session:
//! a `sync` answered after another one that was sent a server tick after an earlier answer. The
//! heartbeat sends those syncs on the [`crate::lease::Cadence`] the lease needs — one per `S/10`, or
//! back-to-back pairs per `S/5` — and nothing else at idle. Every answered request is recorded as
//! activity the next proof can cover. After a lapse, a proof counts only once a write of the session
//! has succeeded (a `setData` on a small ephemeral znode of the session under the root).
//!
//! A session carries at most [`MAX_IN_FLIGHT`] requests of the workers at a time. ZooKeeper answers the
//! requests of one session in order, so a heartbeat waits behind every request sent before it: when a
//! thousand elections start at once, an unbounded queue would hold the heartbeat for seconds, the lease
//! would lapse, and children would be stopped on a healthy session. The heartbeat itself never waits
//! for a slot.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client as zk;

use crate::config::{Config, Credentials};
use crate::lease::{Lease, Renewal, Stamp};
use crate::tls::TlsError;

/// Requests of the workers (elections, publishing) in flight on one session at most. Enough to keep
/// the server busy (it pipelines them), few enough that a heartbeat sent behind them is answered
/// within milliseconds, and that three nodes stay far below the server's global limit of outstanding
/// requests (1000 by default; past it the server stops reading from every connection).
pub const MAX_IN_FLIGHT: usize = 32;

/// The longest pause between two attempts to open a session.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// A live session and its lease.
#[derive(Debug)]
pub struct Session {
    pub client: zk::Client,
    /// The session id, as `ephemeralOwner` shows it on this session's znodes.
    pub id: i64,
    /// A marker unique to this session, put in every candidate's name so that a create whose reply was
    /// lost can be found again (Curator's protected mode).
    pub marker: String,
    pub lease: Lease,
    ended: CancellationToken,
    /// Slots for the workers' requests ([`MAX_IN_FLIGHT`]).
    in_flight: tokio::sync::Semaphore,
    /// Whether the session carries credentials (and so creates znodes only its identity may change).
    authenticated: bool,
    /// `[zookeeper] root`: where the lease's proof of life is written after a lapse.
    root: String,
    /// The chroot of `[zookeeper] connect` ("" when none): every path of the session is under it.
    chroot: String,
    /// Whether this session has logged that the chroot is missing (once per session).
    chroot_missing_logged: std::sync::atomic::AtomicBool,
    /// One worker at a time watches for the chroot to come back; the others queue behind it and
    /// then find it at once (see [`Session::wait_for_chroot`]).
    chroot_watcher: tokio::sync::Mutex<()>,
}

/// With credentials: the authenticated identity may do anything, everyone else may only read (so
/// `status` works without credentials, and nobody else can delete a candidate).
static AUTHED_ALL_WORLD_READ: [zk::Acl; 2] = [
    zk::Acl::new_const(zk::Permission::ALL, "auth", ""),
    zk::Acl::new_const(zk::Permission::READ, "world", "anyone"),
];

impl Session {
    /// A session that `client` holds; `attempt_began` is when the connection attempt that created it
    /// began, the lease's first `L`.
    fn new(
        client: zk::Client,
        config: &Config,
        authenticated: bool,
        attempt_began: Stamp,
    ) -> Session {
        let lease = Lease::new(client.session_timeout(), config.zookeeper.server_tick);
        lease.started(attempt_began);
        Session {
            authenticated,
            id: client.session_id().0,
            marker: uuid::Uuid::new_v4().simple().to_string(),
            lease,
            client,
            ended: CancellationToken::new(),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            root: config.zookeeper.root.clone(),
            chroot: config
                .zookeeper
                .connect
                .chroot()
                .unwrap_or_default()
                .to_owned(),
            chroot_missing_logged: std::sync::atomic::AtomicBool::new(false),
            chroot_watcher: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the chroot of `[zookeeper] connect` exists (always, without one). One `exists` of "/"
    /// under it.
    ///
    /// # Errors
    /// The request's error.
    pub async fn chroot_exists(&self) -> Result<bool, zk::Error> {
        if self.chroot.is_empty() {
            return Ok(true);
        }
        Ok(self.call(|c| c.check_stat("/")).await?.is_some())
    }

    /// The chroot is missing on this session (deleted after the daemon started): logs it, once per
    /// session. The daemon does not exit: the chroot is every node's, and exiting would stop all of
    /// them at once; nor does it create it (see [`run`]).
    pub fn chroot_missing(&self) {
        use std::sync::atomic::Ordering;
        if !self.chroot_missing_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(
                chroot = %self.chroot,
                "the chroot of [zookeeper] connect does not exist: no worker can join its election until it is created again (zkCli.sh create {} \"\")",
                self.chroot
            );
        }
    }

    /// Waits, without polling, until the chroot exists again: a worker whose election found it
    /// missing calls this instead of retrying. Logs the first time in the session
    /// ([`Session::chroot_missing`]), and once when it is back. One worker at a time holds an
    /// `exists` watch on it; the others wait for that one, then look once each.
    ///
    /// # Errors
    /// A failed look ([`zk::Error::ConnectionLoss`]...), or the end of the session
    /// ([`zk::Error::SessionExpired`]).
    ///
    /// # Cancellation safety
    /// Cancel-safe: it only reads and watches.
    pub async fn wait_for_chroot(&self) -> Result<(), zk::Error> {
        self.chroot_missing();
        let _turn = tokio::select! {
            turn = self.chroot_watcher.lock() => turn,
            () = self.ended() => return Err(zk::Error::SessionExpired),
        };
        let mut waited = false;
        loop {
            let (stat, watch) = self.call(|c| c.check_and_watch_stat("/")).await?;
            if stat.is_some() {
                if waited {
                    // Said once, by the worker that watched; a later loss is logged again.
                    tracing::info!(chroot = %self.chroot, "the chroot exists again: joining the elections");
                    self.chroot_missing_logged
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                }
                return Ok(());
            }
            waited = true;
            tokio::select! {
                _ = watch.changed() => {}
                () = self.ended() => return Err(zk::Error::SessionExpired),
            }
        }
    }

    /// The ACL of every znode this session creates (election paths and candidates).
    #[must_use]
    pub fn acls(&self) -> zk::Acls<'static> {
        if self.authenticated {
            zk::Acls::new(&AUTHED_ALL_WORLD_READ)
        } else {
            zk::Acls::anyone_all()
        }
    }

    /// The negotiated session timeout `S`.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.lease.session_timeout()
    }

    /// Sends a request (or a few, pipelined) once one of the [`MAX_IN_FLIGHT`] slots is free, and
    /// records it for the lease if the server answered it (an error reply such as `NoNode` is an answer
    /// too).
    ///
    /// The client library sends a request when the method is called, so `request` is called here,
    /// after the send time is taken.
    ///
    /// # Errors
    /// The request's own error; [`zk::Error::ClientClosed`] if the session is gone.
    pub async fn call<'a, T, Fut>(
        &'a self,
        request: impl FnOnce(&'a zk::Client) -> Fut,
    ) -> Result<T, zk::Error>
    where
        Fut: Future<Output = Result<T, zk::Error>> + 'a,
    {
        let _slot = self.slot().await?;
        self.send(request).await
    }

    /// One of the [`MAX_IN_FLIGHT`] slots, once free.
    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, zk::Error> {
        self.in_flight
            .acquire()
            .await
            .map_err(|_| zk::Error::ClientClosed)
    }

    /// Like [`Session::call`], with a `sync` of `path` pipelined before the request: the request is
    /// then read from a server that has caught up with the quorum leader as of the sync (a server
    /// answers one session's requests in order, and holds reads behind its pending sync). The sync
    /// counts for the lease.
    ///
    /// # Errors
    /// The sync's error if it failed, else the request's.
    pub async fn call_synced<'a, T, Fut>(
        &'a self,
        path: &str,
        request: impl FnOnce(&'a zk::Client) -> Fut,
    ) -> Result<T, zk::Error>
    where
        Fut: Future<Output = Result<T, zk::Error>> + 'a,
    {
        let _slot = self.slot().await?;
        let sent = Stamp::now();
        let sync = self.client.sync(path);
        let read = request(&self.client);
        let (synced, result) = tokio::join!(sync, read);
        let answered_at = Stamp::now();
        synced?;
        let _ = self.lease.synced(sent, answered_at);
        if answered(&result) {
            self.lease.answered(sent, answered_at);
        }
        result
    }

    /// One heartbeat: a `sync`, sent at once (it never waits for a slot). Returns when it was answered,
    /// or `None` if it failed.
    async fn beat(&self) -> Option<Stamp> {
        let sent = Stamp::now();
        let result = self.client.sync("/").await;
        let answered_at = Stamp::now();
        if let Err(e) = result {
            tracing::debug!(error = %e, "heartbeat sync failed");
            return None;
        }
        if self.lease.synced(sent, answered_at) == Renewal::NeedsWrite {
            self.prove_alive().await;
        }
        Some(answered_at)
    }

    /// After a lapse: a write of this session, which the leader accepts only while the session is not
    /// closing (see [`crate::lease`]). A small ephemeral znode of the session under the root.
    async fn prove_alive(&self) {
        let probe = format!("{}/.zk-supervise-lease-{}", self.root, self.marker);
        let sent = Stamp::now();
        let mut result = self.client.set_data(&probe, b"", None).await.map(|_| ());
        if matches!(result, Err(zk::Error::NoNode)) {
            let ephemeral = zk::CreateMode::Ephemeral.with_acls(self.acls());
            result = self
                .client
                .create(&probe, b"", &ephemeral)
                .await
                .map(|_| ());
            if matches!(result, Err(zk::Error::NoNode)) {
                let persistent = zk::CreateMode::Persistent.with_acls(self.acls());
                let _ = self.client.mkdir(&self.root, &persistent).await;
                result = self
                    .client
                    .create(&probe, b"", &ephemeral)
                    .await
                    .map(|_| ());
            }
        }
        match result {
            Ok(()) => {
                if let Renewal::Renewed(l) = self.lease.wrote(sent, Stamp::now()) {
                    tracing::info!(proven_at = ?l.since(sent), "lease renewed after a lapse: a write showed the session alive");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the lease lapsed and a write to prove the session alive failed");
            }
        }
    }

    async fn send<'a, T, Fut>(
        &'a self,
        request: impl FnOnce(&'a zk::Client) -> Fut,
    ) -> Result<T, zk::Error>
    where
        Fut: Future<Output = Result<T, zk::Error>> + 'a,
    {
        let sent = Stamp::now();
        let result = request(&self.client).await;
        if answered(&result) {
            self.lease.answered(sent, Stamp::now());
        }
        result
    }

    /// Resolves once this session has ended (expired, closed, or authentication failed).
    ///
    /// # Cancellation safety
    /// Cancel-safe.
    pub async fn ended(&self) {
        self.ended.cancelled().await;
    }

    #[must_use]
    pub fn has_ended(&self) -> bool {
        self.ended.is_cancelled()
    }
}

/// Whether a request's result came from the server.
fn answered<T>(result: &Result<T, zk::Error>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => is_server_error(e) || matches!(e, zk::Error::NoWatcher),
    }
}

/// The error codes a server gives for a request it received and handled; shared by the lease's
/// accounting and the election's "was it applied?" question, which each add their own.
pub(crate) fn is_server_error(e: &zk::Error) -> bool {
    use zk::Error as E;
    matches!(
        e,
        E::NoNode
            | E::NoAuth
            | E::BadVersion
            | E::NoChildrenForEphemerals
            | E::NodeExists
            | E::NotEmpty
            | E::InvalidAcl
            | E::QuotaExceeded
    )
}

/// A problem that stops the daemon.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// ZooKeeper does not let this identity create znodes under the root.
    #[error("zookeeper refused user {user:?} (scheme {scheme}) under {root}: {error}; check the password in {file} and the ACL of {root}")]
    Refused {
        scheme: String,
        user: String,
        root: String,
        file: String,
        error: zk::Error,
    },
    /// A file named by `[zookeeper] tls` cannot be read or is not what it should be.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The chroot of `[zookeeper] connect` does not exist at the first session. The daemon does not
    /// create it: the chroot is the namespace every node shares, and a node that created a mistyped
    /// one would hold its elections apart from the others' — a second copy of every worker.
    #[error("{file}: [zookeeper] connect {connect:?}: the chroot {chroot} does not exist in zookeeper; create it first (zkCli.sh create {chroot} \"\"), or fix connect")]
    MissingChroot {
        file: String,
        connect: String,
        chroot: String,
    },
}

/// The watchdog that the loop renewing the lease feeds (systemd's, in the daemon): if that loop is
/// stuck, the watchdog fires. Given by the caller, so that the session knows nothing of who watches.
#[derive(Clone, Copy, Debug)]
pub struct Watchdog {
    /// Feeds it (a no-op when nobody watches).
    pub feed: fn(),
    /// How often it must be fed, if at all.
    pub interval: Option<Duration>,
}

/// Keeps a session open until `stop` is cancelled, publishing each one on `sessions`, and feeds
/// `watchdog` while it connects and while it renews the lease.
///
/// # Errors
/// [`SessionError`] when the server's negotiated timeout does not fit the configuration.
pub async fn run(
    configs: watch::Receiver<Arc<Config>>,
    credentials: Option<Arc<Credentials>>,
    sessions: watch::Sender<Option<Arc<Session>>>,
    stop: CancellationToken,
    watchdog: Watchdog,
) -> Result<(), SessionError> {
    let mut first = true;
    loop {
        let config = configs.borrow().clone();
        let Some((client, attempt_began)) =
            connect(&config, credentials.as_deref(), &stop, watchdog).await?
        else {
            return Ok(());
        };
        // The workers as they are now (a reload may have changed them while connecting).
        let config = configs.borrow().clone();
        let session = Arc::new(Session::new(
            client,
            &config,
            credentials.is_some(),
            attempt_began,
        ));
        check_chroot(&session, &config, std::mem::take(&mut first)).await?;
        if let (Some(creds), Some(auth)) = (&credentials, &config.zookeeper.auth) {
            check_access(&session, &config.zookeeper.root, creds, auth).await?;
        }
        let timeout = session.timeout();
        // Workers that do not fit stay out of their elections for this session (see
        // `observe::State::Refused`); the others run. Exiting would leave them all down for good under
        // systemd's RestartPreventExitStatus=78.
        if let Err(e) = config.check_grace_against(timeout) {
            tracing::error!(timeout = ?timeout, "the server negotiated a session timeout too short for some grace periods; those workers stay out of their elections on this node: {e}");
        }
        tracing::info!(session = %format!("{:#x}", session.id), timeout = ?timeout, "zookeeper session established");
        sessions.send_replace(Some(session.clone()));
        let end = keep_alive(&session, &stop, watchdog).await;
        session.ended.cancel();
        sessions.send_replace(None);
        match end {
            None => return Ok(()),
            Some(state) => {
                tracing::warn!(session = %format!("{:#x}", session.id), %state, "zookeeper session ended; opening a new one");
            }
        }
    }
}

/// Checks once per session that the chroot of `[zookeeper] connect` exists (one `exists` of "/"
/// under it; the client library adds the chroot to every path on its side, so with a missing chroot
/// every create answers `NoNode`, and its `mkdir` cannot make it either). At the first session a
/// missing chroot is fatal ([`SessionError::MissingChroot`], exit 78). At a later one it was deleted
/// while the daemon ran: it is logged ([`Session::chroot_missing`]) and the daemon goes on, since
/// exiting would stop every node at once; the workers wait for it without polling
/// ([`Session::wait_for_chroot`]). A check that gets no answer is not retried: the workers find out
/// the same way.
async fn check_chroot(session: &Session, config: &Config, first: bool) -> Result<(), SessionError> {
    match session.chroot_exists().await {
        Ok(true) => Ok(()),
        Ok(false) if first => Err(SessionError::MissingChroot {
            file: config.path.display().to_string(),
            connect: config.zookeeper.connect.to_string(),
            chroot: session.chroot.clone(),
        }),
        Ok(false) => {
            session.chroot_missing();
            Ok(())
        }
        Err(e) => {
            tracing::debug!(chroot = %session.chroot, error = %e, "cannot check that the chroot exists");
            Ok(())
        }
    }
}

/// Digest authentication never fails by itself: a wrong password is merely another identity. So the
/// daemon checks, once per session, that its identity may create znodes under the root (creating the
/// root with its ACL if missing), with an ephemeral probe it deletes at once. A refusal is fatal: the
/// daemon must not run with an identity that cannot hold its own candidates.
async fn check_access(
    session: &Session,
    root: &str,
    creds: &Credentials,
    auth: &crate::config::AuthConfig,
) -> Result<(), SessionError> {
    let refused = |error| SessionError::Refused {
        scheme: creds.scheme.clone(),
        user: creds.user.clone(),
        root: root.to_owned(),
        file: auth.credentials_file.display().to_string(),
        error,
    };
    let persistent = zk::CreateMode::Persistent.with_acls(session.acls());
    match session.call(|c| c.mkdir(root, &persistent)).await {
        Ok(()) => {}
        Err(e @ zk::Error::NoAuth) => return Err(refused(e)),
        Err(e) => tracing::warn!(root, error = %e, "cannot check the root; going on"),
    }
    let probe = format!("{root}/.zk-supervise-access-{}", session.marker);
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(session.acls());
    match session.call(|c| c.create(&probe, b"", &ephemeral)).await {
        Ok(_) | Err(zk::Error::NodeExists) => {
            let _ = session.call(|c| c.delete(&probe, None)).await;
            tracing::info!(user = %creds.user, scheme = %creds.scheme, "authenticated to zookeeper");
            Ok(())
        }
        Err(e @ zk::Error::NoAuth) => Err(refused(e)),
        Err(e) => {
            tracing::warn!(root, error = %e, "cannot check access under the root; going on");
            Ok(())
        }
    }
}

/// Connects, retrying with backoff until it works (`Some`, with the moment the successful attempt
/// began) or `stop` is cancelled (`None`). With `[zookeeper] tls`, its files are read once per call, so
/// a new session uses renewed certificates.
///
/// # Errors
/// [`SessionError::Tls`] when a TLS file cannot be read or used: the daemon does not fall back to
/// plaintext.
async fn connect(
    config: &Config,
    credentials: Option<&Credentials>,
    stop: &CancellationToken,
    watchdog: Watchdog,
) -> Result<Option<(zk::Client, Stamp)>, SessionError> {
    let zk = &config.zookeeper;
    let tls = match &zk.tls {
        Some(tls) => loop {
            // Off the event loop that renews the lease, with a deadline: a file on a hung file
            // system is waited for (and said so), not fatal, and never holds the loop.
            let owned = tls.clone();
            let deadline = crate::files::READ_DEADLINE;
            match crate::files::off_loop(deadline, move || crate::tls::tls_options(&owned)).await {
                Some(options) => break Some(options.map_err(SessionError::Tls)?),
                None => tracing::error!(
                    ca = %tls.ca.display(),
                    "zookeeper tls: the files were not read within {deadline:?} (a hung file system?); trying again"
                ),
            }
            tokio::select! {
                () = tokio::time::sleep(MAX_RECONNECT_DELAY) => {}
                () = stop.cancelled() => return Ok(None),
            }
        },
        None => None,
    };
    let mut delay = Duration::from_millis(250);
    loop {
        // The client library pings after 3/8 of its connection timeout without a send (3/20 S by
        // default), which would double the idle request rate next to our heartbeat every S/5. With a
        // connection timeout of 11/20 S its ping threshold is 0.206 S: our heartbeat always comes first,
        // and an idle node sends one request per S/5. (A connection that stays silent that long is
        // still given up well within the lease.)
        let mut connector = zk::Client::connector()
            .with_session_timeout(zk.session_timeout)
            .with_connection_timeout(zk.session_timeout * 11 / 20)
            .with_fail_eagerly();
        if let Some(creds) = credentials {
            connector = connector.with_auth(&creds.scheme, creds.secret());
        }
        let attempt = async {
            match &tls {
                Some(tls) => {
                    connector
                        .with_tls(tls.clone())
                        .secure_connect(zk.connect.as_str())
                        .await
                }
                None => connector.connect(zk.connect.as_str()).await,
            }
        };
        let began = Stamp::now();
        let result = tokio::select! {
            r = tokio::time::timeout(zk.session_timeout + Duration::from_secs(1), attempt) => r,
            () = stop.cancelled() => return Ok(None),
        };
        match result {
            Ok(Ok(client)) => return Ok(Some((client, began))),
            Ok(Err(e)) => {
                tracing::warn!(connect = %zk.connect, error = %e, retry_in = ?delay, "cannot reach zookeeper");
            }
            Err(_) => {
                tracing::warn!(connect = %zk.connect, error = "timed out", retry_in = ?delay, "cannot reach zookeeper");
            }
        }
        // Unreachable ZooKeeper is not a stuck daemon: keep the systemd watchdog fed while retrying.
        (watchdog.feed)();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return Ok(None),
        }
        // At most 2 s between attempts: after an outage of the ensemble every worker of the node waits
        // for this reconnect, and an attempt every 2 s costs a server nothing.
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

/// Renews the lease until the session ends (returns its final state) or `stop` is cancelled (returns
/// `None`; the session is closed when the last client handle is dropped).
///
/// One heartbeat `sync` is in flight at a time, sent on the session's [`crate::lease::Cadence`]
/// counted from the previous answer: a server cut off from the quorum never answers it, and then no
/// renewal comes, which is the point. A failed one is sent again after `S/50`.
async fn keep_alive(
    session: &Arc<Session>,
    stop: &CancellationToken,
    watchdog: Watchdog,
) -> Option<zk::SessionState> {
    let cadence = session.lease.cadence();
    let mut states = session.client.state_watcher();
    let initial = session.client.state();
    if initial.is_terminated() {
        return Some(initial);
    }
    let Watchdog {
        feed,
        interval: watchdog,
    } = watchdog;
    let beat = async {
        let mut last_answer: Option<Stamp> = None;
        // Pairs: whether the next sync is the second of its pair (sent at once).
        let mut second = false;
        loop {
            // The systemd watchdog is fed from this loop: if the event loop is stuck, systemd notices.
            feed();
            let gap = cadence.gap(second);
            let due = last_answer.map_or_else(Stamp::now, |r| r.plus(gap));
            if due > Stamp::now() {
                let wait = due.remaining();
                tokio::time::sleep(watchdog.map_or(wait, |w| wait.min(w))).await;
                continue;
            }
            let beat = session.beat();
            tokio::pin!(beat);
            let answered_at = loop {
                tokio::select! {
                    r = &mut beat => break r,
                    () = tokio::time::sleep(watchdog.unwrap_or(Duration::from_secs(3_600))) => {
                        feed();
                    }
                }
            };
            if let Some(r) = answered_at {
                last_answer = Some(r);
                second = !second;
            } else {
                second = false;
                tokio::time::sleep(session.timeout() / 50).await;
            }
        }
    };
    let terminal = async {
        loop {
            let state = states.changed().await;
            match state {
                zk::SessionState::Disconnected => {
                    tracing::warn!("disconnected from zookeeper; reconnecting")
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    tracing::info!(%state, "reconnected to zookeeper");
                }
                s if s.is_terminated() => return s,
                _ => {}
            }
        }
    };
    tokio::select! {
        () = beat => None,
        state = terminal => Some(state),
        () = stop.cancelled() => None,
    }
}
