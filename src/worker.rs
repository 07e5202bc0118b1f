//! One worker on this node: its election, its child, its restarts. One task per worker.
//!
//! The task follows the session channel. For each session it joins the worker's election, waits to be
//! first, confirms ownership, and runs the child while the lease holds; it gives leadership up after
//! `handoff_after` quick failures, and on shutdown it stops the child (grace applies) and then gives
//! its candidate to the daemon's [`Reaper`], which deletes it (until the delete is answered, whatever
//! happens to this task), so the next node takes over within a round trip rather than a session
//! timeout.
//!
//! # What the candidate's data says
//!
//! The leader publishes its child's state in its candidate's data for `zk-supervise status`
//! ([`crate::status`]): `running` with the child's pid once it has started; `stopping` before a stop
//! that this node decides (shutdown, removal or change by a reload, a failed health check, a lost
//! watch); `running: false` after the child has exited. The `stopping` state is published *before*
//! the child is signalled, and the stop waits for the server's answer, so `status` never shows as
//! running a child that is being stopped or is gone. With every state it publishes the worker's
//! [`History`] on this node ([`PublishedHistory`]: the last exit, the last failed start, consecutive
//! failures), so that `status` can say why a leader does not run its worker.
//!
//! While ZooKeeper cannot be reached, the wait for the answer to `stopping` lasts
//! as long as the lease still covers the grace period: past that the guard stops the child by itself,
//! and the data stays stale until the link comes back or the session expires (the candidate goes with
//! it): from the stop point `K - grace_period` to an expiry no later than `S` (plus the server's tick)
//! after the last request the server saw, itself at most `S/5` after `L` — so for at most about
//! `grace_period + margin + S/5`.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client as zk;

use crate::config::WorkerConfig;
use crate::election::{Candidate, Election, ElectionError, Leadership, Reaper};
use crate::observe::{lock, CandidateData, LastExit, PublishedHistory, Shared, StartError, State};
use crate::process::{Cause, Child, Ended, Exit, SpawnError};
use crate::session::Session;

/// A run that ends sooner than this after its start counts as a failure (SPEC §3 `handoff_after`).
pub const QUICK_FAILURE: Duration = Duration::from_secs(10);

/// Pause after an unexpected ZooKeeper error before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Pause between two attempts to publish that a child is stopping.
const SAY_STOPPING_PAUSE: Duration = Duration::from_millis(100);

/// What the candidate's data says of the child (see the module docs).
#[derive(Clone, Copy, Debug)]
enum Published {
    /// No child: between winning the election and a start, during the restart delay, after an exit.
    Idle,
    Running {
        pid: u32,
        since: u64,
    },
    /// Being stopped by this node's decision; published before the stop signal.
    Stopping {
        pid: u32,
        since: u64,
    },
}

/// What the worker task needs from the daemon.
#[derive(Clone)]
pub struct Context {
    pub node_id: String,
    /// `<root>/<worker>`'s parent, from the client's root.
    pub root: String,
    /// The chroot of the connect string ("" when none), to give the child a full path.
    pub chroot: String,
    /// The candidate's JSON (SPEC §4): `node`, `host`, `pid`, `version`.
    pub base: CandidateData,
    pub takeover_delay: Duration,
    /// Woken on every state change of every worker (readiness, the systemd status line).
    pub changed: Arc<tokio::sync::Notify>,
    /// Deletes the candidates this node gives up, beyond the life of the worker task.
    pub reaper: Arc<Reaper>,
}

/// Milliseconds since the Unix epoch.
fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs one worker until `cancel`; `kill` turns a graceful stop into SIGKILL.
pub async fn run(
    worker: Arc<WorkerConfig>,
    ctx: Arc<Context>,
    mut sessions: watch::Receiver<Option<Arc<Session>>>,
    cancel: CancellationToken,
    kill: CancellationToken,
    shared: Arc<Shared>,
) {
    let backoff = std::sync::Mutex::new(Backoff {
        delay: worker.restart_delay,
        not_before: None,
    });
    let job = Job {
        worker,
        ctx,
        cancel,
        kill,
        shared,
        backoff,
    };
    loop {
        job.set(State::Connecting);
        let session: Arc<Session> = tokio::select! {
            s = sessions.wait_for(Option::is_some) => match s {
                Ok(s) => s.clone().expect("waited for Some"),
                Err(_) => break, // the session manager is gone: the daemon is stopping
            },
            () = job.cancel.cancelled() => break,
        };
        let max_grace =
            crate::lease::max_grace_period(session.timeout(), session.lease.ping_wait());
        let served = if job.worker.grace_period > max_grace {
            job.refuse(&session, max_grace).await
        } else {
            job.serve(&session).await
        };
        match served {
            Served::Shutdown => break,
            Served::SessionEnded => {
                // Wait for the channel to move on from this session.
                let _ = sessions
                    .wait_for(|s| !s.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)))
                    .await;
            }
        }
    }
    job.set(State::Stopped);
}

enum Served {
    Shutdown,
    SessionEnded,
}

/// How a leadership ended.
enum Led {
    Shutdown,
    /// Give leadership up and rejoin at the back (too many failures).
    HandOff,
    /// The candidate is gone: rejoin.
    Lost,
    /// Leadership could not be confirmed (connection loss...): look at the queue again with the same
    /// candidate, which may well still be first.
    Retry,
    SessionEnded,
}

struct Job {
    worker: Arc<WorkerConfig>,
    ctx: Arc<Context>,
    cancel: CancellationToken,
    kill: CancellationToken,
    shared: Arc<Shared>,
    /// Kept across leaderships, so that giving leadership up and winning it back (a lone node) does not
    /// reset the restart delay.
    backoff: std::sync::Mutex<Backoff>,
}

/// The restart delay of SPEC §3: doubles after each exit up to `max_restart_delay`, back to
/// `restart_delay` once a child has run for `max_restart_delay`.
#[derive(Debug)]
struct Backoff {
    delay: Duration,
    /// No start before this.
    not_before: Option<tokio::time::Instant>,
}

impl Backoff {
    /// Records an exit after `ran`; returns how long to wait before the next start.
    fn exited(&mut self, worker: &WorkerConfig, ran: Duration) -> Duration {
        if ran >= worker.max_restart_delay {
            self.delay = worker.restart_delay;
        }
        let wait = self.delay;
        self.not_before = Some(tokio::time::Instant::now() + wait);
        self.delay = (self.delay * 2).min(worker.max_restart_delay);
        wait
    }

    /// How long is left of the current wait.
    fn remaining(&self) -> Duration {
        self.not_before.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(tokio::time::Instant::now())
        })
    }
}

/// What [`Job::ready`] found.
enum Ready {
    /// Leadership is confirmed, the restart delay over, the lease long enough: start.
    Start(Leadership, watch::Receiver<Option<crate::lease::Stamp>>),
    /// A wait is over: confirm again.
    Again,
    /// Leadership is over.
    Over(Led),
}

/// The starts and failures of one leadership (SPEC §3 `handoff_after`). A start after the first is a
/// restart; a failed start, or a run shorter than [`QUICK_FAILURE`], is a failure, and a longer run
/// clears them; `handoff_after` failures in a row give leadership up. A start the lease refused
/// (nothing was started) is not counted at all.
#[derive(Debug, Default)]
struct Tally {
    starts: u32,
    /// Consecutive failures.
    failures: u32,
}

impl Tally {
    /// A child started, or failed to: returns whether it was a restart.
    fn started(&mut self) -> bool {
        self.starts += 1;
        self.starts > 1
    }

    /// The child exited after `ran`.
    fn exited(&mut self, ran: Duration) {
        if ran < QUICK_FAILURE {
            self.failures += 1;
        } else {
            self.failures = 0;
        }
    }

    fn failed_to_start(&mut self) {
        self.failures += 1;
    }

    /// Whether it is time to give leadership up (never with `handoff_after = 0`).
    fn hand_off(&self, handoff_after: u32) -> bool {
        handoff_after > 0 && self.failures >= handoff_after
    }
}

impl Job {
    fn name(&self) -> &str {
        &self.worker.name
    }

    fn set(&self, state: State) {
        self.shared.state.send_replace(state);
        self.ctx.changed.notify_waiters();
    }

    /// This leader's state as its candidate's data, for `zk-supervise status`: the fields of SPEC §4
    /// plus `leader_since`, `running`, `stopping`, while there is a child `child_pid` and
    /// `child_since` (milliseconds since the Unix epoch), and the worker's [`PublishedHistory`].
    fn data(&self, child: Published) -> Vec<u8> {
        let (child_pid, child_since) = match child {
            Published::Running { pid, since } | Published::Stopping { pid, since } => {
                (Some(pid), Some(since))
            }
            Published::Idle => (None, None),
        };
        CandidateData {
            leader_since: Some(self.shared.leader_since_ms.load(Ordering::Relaxed)),
            running: Some(matches!(child, Published::Running { .. })),
            stopping: Some(matches!(child, Published::Stopping { .. })),
            child_pid,
            child_since,
            history: Some(PublishedHistory::from(&self.shared.history())),
            ..self.ctx.base.clone()
        }
        .to_bytes()
    }

    /// Publishes this leader's state (see [`Job::data`]). Best effort: a failure leaves `status`
    /// showing less than is true (a child that started, not yet shown), never more.
    async fn publish(&self, election: &Election<'_>, me: &Candidate, child: Published) {
        if let Err(e) = election.publish(me, &self.data(child)).await {
            tracing::debug!(worker = self.name(), error = %e, "cannot publish the leader's state");
        }
    }

    /// Before a stop this node decides: publishes that the child is stopping and waits for the answer
    /// (see the module docs), so that `status` never shows a child as running once it is signalled.
    /// Gives up waiting when the session ends (the candidate goes with it), on `kill` (the operator
    /// wants it now), or once the lease no longer covers the grace period (the guard is about to stop
    /// the child by itself). Returns true if the candidate turned out to be gone: the next node may
    /// lead already, so the child must be killed at once, not given its grace period.
    async fn say_stopping(
        &self,
        session: &Session,
        election: &Election<'_>,
        me: &Candidate,
        child: &Child,
        since: u64,
    ) -> bool {
        let data = self.data(Published::Stopping {
            pid: child.pid(),
            since,
        });
        let mut failures = 0u32;
        loop {
            // The guard's stop point: past it, waiting keeps nothing running.
            let Some(stop_point) = session
                .lease
                .deadline()
                .map(|k| k.minus(self.worker.grace_period))
            else {
                return false;
            };
            let left = stop_point.remaining();
            if left.is_zero() || session.has_ended() || self.kill.is_cancelled() {
                if !session.has_ended() {
                    tracing::warn!(
                        worker = self.name(),
                        "stopping without having said so in zookeeper: it cannot be reached"
                    );
                }
                return false;
            }
            let answer = tokio::select! {
                r = election.publish(me, &data) => Some(r),
                () = tokio::time::sleep(left) => None, // look at the lease again
                () = self.kill.cancelled() => return false,
                () = session.ended() => return false,
            };
            match answer {
                None => {}
                Some(Ok(())) => return false,
                Some(Err(ElectionError::Zk(zk::Error::NoNode))) => return true,
                Some(Err(ElectionError::SessionEnded)) => return false,
                Some(Err(e)) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(worker = self.name(), error = %e, "cannot say in zookeeper that the child is stopping; retrying before stopping it");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(SAY_STOPPING_PAUSE) => {}
                        () = self.kill.cancelled() => return false,
                        () = session.ended() => return false,
                    }
                }
            }
        }
    }

    /// Sleeps `d`, unless the worker is cancelled or the session ends first (returns false then).
    async fn pause(&self, session: &Session, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.cancel.cancelled() => false,
            () = session.ended() => false,
        }
    }

    /// Everything this worker does within one session.
    /// Stays out of the election for this session: the worker's grace period does not fit the lease
    /// of the timeout the server negotiated. Joining would let this node lead a worker it can never
    /// start. Exiting (78) would leave the node's other workers down for good under systemd.
    async fn refuse(&self, session: &Session, max_grace: Duration) -> Served {
        self.set(State::Refused { max_grace });
        tracing::error!(
            worker = self.name(),
            grace_period = ?self.worker.grace_period,
            max_grace = ?max_grace,
            session_timeout = ?session.timeout(),
            "not joining the election: the negotiated session timeout is too short for this worker's grace period; other nodes run it (shorten grace_period or raise maxSessionTimeout on the ZooKeeper servers)"
        );
        tokio::select! {
            () = session.ended() => Served::SessionEnded,
            () = self.cancel.cancelled() => Served::Shutdown,
        }
    }

    async fn serve(&self, session: &Arc<Session>) -> Served {
        let dir = format!("{}/{}", self.ctx.root, self.worker.name);
        let data = self.ctx.base.to_bytes();
        let election = Election::new(session, &self.ctx.reaper, dir, data);
        let mut me = None::<Candidate>;
        loop {
            if self.cancel.is_cancelled() {
                if let Some(me) = &me {
                    // The reaper deletes it, however long ZooKeeper takes to answer: this task ends
                    // now, and a candidate left behind would lead while nobody runs the worker.
                    let _ = election.abandon(me);
                }
                return Served::Shutdown;
            }
            if session.has_ended() {
                return Served::SessionEnded;
            }
            let candidate = match &me {
                Some(c) => c.clone(),
                None => {
                    let joined = tokio::select! {
                        r = election.join() => r,
                        () = session.ended() => Err(ElectionError::SessionEnded),
                    };
                    match joined {
                        Ok(c) => {
                            tracing::info!(worker = self.name(), candidate = %c.path, "joined the election");
                            me = Some(c.clone());
                            c
                        }
                        Err(ElectionError::SessionEnded) => return Served::SessionEnded,
                        Err(ElectionError::NoChroot) => {
                            // Logged once per session by the session; retrying would only repeat
                            // it, for every worker, twice a second.
                            self.set(State::Connecting);
                            let waited = tokio::select! {
                                r = session.wait_for_chroot() => r,
                                () = self.cancel.cancelled() => continue,
                            };
                            if let Err(e) = waited {
                                tracing::debug!(worker = self.name(), error = %e, "cannot watch for the chroot; retrying");
                            }
                            // Also when it was there at once (a race with its creation): never spin.
                            self.pause(session, RETRY_PAUSE).await;
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(worker = self.name(), error = %e, "cannot join the election; retrying");
                            self.pause(session, RETRY_PAUSE).await;
                            continue;
                        }
                    }
                }
            };
            let waited = tokio::select! {
                r = election.campaign(&candidate, |ahead, predecessor| {
                    self.set(State::Following { ahead });
                    tracing::debug!(worker = self.name(), ahead, predecessor, "following");
                }) => r,
                () = self.cancel.cancelled() => continue, // the loop's top leaves the election
            };
            let leadership = match waited {
                Ok(l) => l,
                Err(ElectionError::SessionEnded) => return Served::SessionEnded,
                Err(ElectionError::CandidateGone(path)) => {
                    tracing::warn!(worker = self.name(), candidate = %path, "our candidate is gone; rejoining");
                    me = None;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(worker = self.name(), error = %e, "election error; retrying");
                    self.pause(session, RETRY_PAUSE).await;
                    continue;
                }
            };
            match self.lead(session, &election, &candidate, leadership).await {
                Led::Shutdown => {}
                Led::SessionEnded => return Served::SessionEnded,
                Led::Lost => me = None,
                Led::Retry => {
                    self.pause(session, RETRY_PAUSE).await;
                }
                Led::HandOff => {
                    self.shared.handoffs.fetch_add(1, Ordering::Relaxed);
                    // Joining again before the candidate is gone would only queue behind it. The
                    // reaper deletes it whatever happens to this task (a cancelled handoff must not
                    // leave it first in the queue).
                    let gone = election.abandon(&candidate);
                    tokio::select! {
                        () = gone.cancelled() => {}
                        () = self.cancel.cancelled() => {}
                        () = session.ended() => {}
                    }
                    me = None;
                }
            }
        }
    }

    /// Leads: runs the child, restarting it, until leadership ends. `first` is the leadership the
    /// campaign confirmed; every restart confirms it again.
    async fn lead(
        &self,
        session: &Session,
        election: &Election<'_>,
        me: &Candidate,
        first: Leadership,
    ) -> Led {
        self.set(State::Leading);
        self.shared
            .leader_since_ms
            .store(epoch_ms(), Ordering::Relaxed);
        tracing::info!(worker = self.name(), candidate = %me.path, "leading");
        if !self.ctx.takeover_delay.is_zero() && !self.pause(session, self.ctx.takeover_delay).await
        {
            return self.why_stopped(session);
        }
        let mut tally = Tally::default();
        lock(&self.shared.history).failures = 0;
        // After a takeover delay the campaign's confirmation is stale: confirm again.
        let mut confirmed = self.ctx.takeover_delay.is_zero().then_some(first);
        loop {
            let (leadership, lease) =
                match self.ready(session, election, me, confirmed.take()).await {
                    Ready::Start(leadership, lease) => (leadership, lease),
                    Ready::Again => continue,
                    Ready::Over(led) => return led,
                };
            let Some(outcome) = self
                .start(session, election, me, leadership, lease, &mut tally)
                .await
            else {
                continue; // the lease lapsed as it started: wait for a renewal
            };
            self.set(State::Leading);
            if let Some(led) = self.after(session, election, me, outcome, &mut tally).await {
                return led;
            }
        }
    }

    /// Before a start: confirms leadership (unless `confirmed` just did), waits out what is left of
    /// the restart delay, and waits until the lease covers the grace period. Each wait ends in
    /// [`Ready::Again`], to confirm again after it.
    async fn ready(
        &self,
        session: &Session,
        election: &Election<'_>,
        me: &Candidate,
        confirmed: Option<Leadership>,
    ) -> Ready {
        let confirmation = match confirmed {
            Some(l) => Ok(l),
            None => election.confirm(me).await,
        };
        let leadership = match confirmation {
            Ok(l) => l,
            Err(ElectionError::CandidateGone(path)) => {
                tracing::warn!(worker = self.name(), candidate = %path, "our candidate is gone; rejoining");
                return Ready::Over(Led::Lost);
            }
            Err(ElectionError::SessionEnded) => return Ready::Over(Led::SessionEnded),
            Err(e) => {
                tracing::warn!(worker = self.name(), error = %e, "cannot confirm leadership; retrying");
                if !self.pause(session, RETRY_PAUSE).await {
                    return Ready::Over(self.why_stopped(session));
                }
                return Ready::Again;
            }
        };
        // The restart delay left from an earlier exit, possibly of an earlier leadership.
        let wait = lock(&self.backoff).remaining();
        if !wait.is_zero() {
            tracing::info!(worker = self.name(), delay = ?wait, "waiting out the restart delay");
            if !self.pause(session, wait).await {
                return Ready::Over(self.why_stopped(session));
            }
            return Ready::Again;
        }
        // Subscribe before reading the deadline, so no renewal falls between the two.
        let mut lease = session.lease.subscribe();
        // Never start a child whose grace period would not fit in what is left of the lease, nor
        // one the guard would stop before the next renewal can come (a session whose connection
        // took long starts with little lease left: wait for its first proof).
        if !session
            .lease
            .holds_for(self.worker.grace_period + session.lease.start_room())
        {
            tokio::select! {
                _ = lease.changed() => return Ready::Again,
                () = self.cancel.cancelled() => return Ready::Over(Led::Shutdown),
                () = session.ended() => return Ready::Over(Led::SessionEnded),
            }
        }
        lease.borrow_and_update();
        if self.cancel.is_cancelled() {
            return Ready::Over(Led::Shutdown);
        }
        Ready::Start(leadership, lease)
    }

    /// Starts the child and supervises it until it ends or leadership does; `None` if the lease
    /// lapsed as it started (nothing started: that is not a start).
    async fn start(
        &self,
        session: &Session,
        election: &Election<'_>,
        me: &Candidate,
        leadership: Leadership,
        mut lease: watch::Receiver<Option<crate::lease::Stamp>>,
        tally: &mut Tally,
    ) -> Option<Supervised> {
        let w = &self.worker;
        let env = [
            ("ZK_SUPERVISE_WORKER", w.name.clone()),
            ("ZK_SUPERVISE_NODE", self.ctx.node_id.clone()),
            (
                "ZK_SUPERVISE_ZNODE",
                format!("{}{}", self.ctx.chroot, me.path),
            ),
            ("ZK_SUPERVISE_FENCING_TOKEN", leadership.token.to_string()),
        ];
        let spawned = Child::spawn(w, &env, &session.lease).await;
        if matches!(spawned, Err(SpawnError::Lease)) {
            return None;
        }
        if tally.started() {
            self.shared.restarts.fetch_add(1, Ordering::Relaxed);
        }
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(worker = self.name(), error = %e, "cannot start the command");
                lock(&self.shared.history).start_error = Some(StartError {
                    error: e.to_string(),
                    at_ms: epoch_ms(),
                });
                return Some(Supervised::Failed);
            }
        };
        lock(&self.shared.history).start_error = None;
        // Renewals that came while it started: the guard must have the latest deadline (it reads
        // the shared page by itself, if there is one).
        let latest = *lease.borrow_and_update();
        if let (Some(k), None) = (latest, session.lease.shared()) {
            child.renew(k).await;
        }
        tracing::info!(
            worker = self.name(),
            pid = child.pid(),
            token = leadership.token,
            "started"
        );
        self.set(State::Running {
            pid: child.pid(),
            token: leadership.token,
        });
        let since = epoch_ms();
        let running = Published::Running {
            pid: child.pid(),
            since,
        };
        self.publish(election, me, running).await;
        let run = Run {
            child,
            since,
            watch: leadership.watch,
            lease,
            env: &env,
        };
        Some(self.supervise(session, election, me, run).await)
    }

    /// After a run or a failed start, still leading: counts it, publishes that the child is not
    /// running and why, and waits out the restart delay; `Some` when leadership ends instead (too
    /// many failures in a row: a handoff).
    async fn after(
        &self,
        session: &Session,
        election: &Election<'_>,
        me: &Candidate,
        outcome: Supervised,
        tally: &mut Tally,
    ) -> Option<Led> {
        let w = &self.worker;
        let ran = match outcome {
            // When leadership ends, the stop was published before it, or the candidate is gone.
            Supervised::Led(led) => return Some(led),
            Supervised::LeaseLapsed => {
                self.publish(election, me, Published::Idle).await;
                return None; // the top of the loop waits for a renewal
            }
            Supervised::Exited(ended) => {
                tally.exited(ended.ran);
                lock(&self.shared.history).last_exit = Some(LastExit {
                    exit: ended.exit,
                    at_ms: epoch_ms(),
                    ran: ended.ran,
                });
                ended.ran
            }
            Supervised::Failed => {
                tally.failed_to_start();
                Duration::ZERO
            }
        };
        let failures = tally.failures;
        lock(&self.shared.history).failures = failures;
        // Still leading, the child not running: say so, and why.
        self.publish(election, me, Published::Idle).await;
        let delay = lock(&self.backoff).exited(w, ran);
        if tally.hand_off(w.handoff_after) {
            tracing::warn!(
                worker = self.name(),
                failures,
                "handing off: too many consecutive failures"
            );
            return Some(Led::HandOff);
        }
        tracing::info!(worker = self.name(), delay = ?delay, failures, "restarting after a delay");
        if !self.pause(session, delay).await {
            return Some(self.why_stopped(session));
        }
        None
    }

    fn why_stopped(&self, session: &Session) -> Led {
        if self.cancel.is_cancelled() || !session.has_ended() {
            Led::Shutdown
        } else {
            Led::SessionEnded
        }
    }

    /// Watches a running child until it ends or leadership does.
    async fn supervise(
        &self,
        session: &Session,
        election: &Election<'_>,
        me: &Candidate,
        run: Run<'_>,
    ) -> Supervised {
        let Run {
            mut child,
            since,
            watch,
            mut lease,
            env,
        } = run;
        let mut own: BoxFuture<'static, zk::WatchedEvent> = Box::pin(watch.changed());
        let health = self.worker.health_check.as_ref();
        let mut next_check =
            tokio::time::Instant::now() + health.map_or(Duration::ZERO, |h| h.interval);
        let mut check: Option<BoxFuture<'_, Result<(), crate::process::CheckError>>> = None;
        let mut check_failures = 0u32;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next_check), if health.is_some() && check.is_none() => {
                    let h = health.expect("checked");
                    check = Some(Box::pin(crate::process::run_check(&self.worker, h, env, &session.lease)));
                }
                result = async { check.as_mut().expect("checked").await }, if check.is_some() => {
                    check = None;
                    let h = health.expect("checked");
                    next_check = tokio::time::Instant::now() + h.interval;
                    match result {
                        Ok(()) => check_failures = 0,
                        Err(why) => {
                            check_failures += 1;
                            self.shared.health_check_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(worker = self.name(), failures = check_failures, of = h.failures, error = %why, "health check failed");
                            if check_failures >= h.failures {
                                if self.say_stopping(session, election, me, &child, since).await {
                                    self.kill_now(&mut child, "our candidate is gone").await;
                                    return Supervised::Led(Led::Lost);
                                }
                                self.stop(&mut child, "health check failed").await;
                                tracing::warn!(worker = self.name(), "handing off: the health check failed {} times in a row", check_failures);
                                return Supervised::Led(Led::HandOff);
                            }
                        }
                    }
                }
                ended = child.wait() => {
                    tracing::info!(worker = self.name(), exit = %ended.exit, ran = ?ended.ran, cause = ended.cause.as_str(), "exited");
                    return match ended.cause {
                        Cause::Lease => {
                            tracing::warn!(worker = self.name(), "lease lapsed: the child was stopped by its guard");
                            Supervised::LeaseLapsed
                        }
                        _ => Supervised::Exited(ended),
                    };
                }
                // Without the shared deadline page, each renewal goes to the guard as a message.
                _ = lease.changed(), if session.lease.shared().is_none() => {
                    let deadline = *lease.borrow_and_update();
                    if let Some(k) = deadline {
                        child.renew(k).await;
                    }
                }
                event = &mut own => {
                    if event.event_type == zk::EventType::Session {
                        self.stop(&mut child, "session ended").await;
                        return Supervised::Led(Led::SessionEnded);
                    }
                    if event.event_type == zk::EventType::NodeDeleted {
                        // The next candidate leads as of now: no grace period, or both would run.
                        self.kill_now(&mut child, "our candidate was deleted").await;
                        return Supervised::Led(Led::Lost);
                    }
                    // Some other event (a deletion watch on an ephemeral znode has no other): watch
                    // again.
                    match election.confirm(me).await {
                        Ok(l) => own = Box::pin(l.watch.changed()),
                        Err(ElectionError::SessionEnded) => {
                            self.stop(&mut child, "session ended").await;
                            return Supervised::Led(Led::SessionEnded);
                        }
                        Err(ElectionError::CandidateGone(_)) => {
                            self.kill_now(&mut child, "our candidate is gone").await;
                            return Supervised::Led(Led::Lost);
                        }
                        Err(_) => {
                            if self.say_stopping(session, election, me, &child, since).await {
                                self.kill_now(&mut child, "our candidate is gone").await;
                                return Supervised::Led(Led::Lost);
                            }
                            self.stop(&mut child, "cannot watch our candidate").await;
                            return Supervised::Led(Led::Retry);
                        }
                    }
                }
                () = session.ended() => {
                    self.stop(&mut child, "session ended").await;
                    return Supervised::Led(Led::SessionEnded);
                }
                () = self.cancel.cancelled() => {
                    self.set(State::Stopping);
                    if self.say_stopping(session, election, me, &child, since).await {
                        self.kill_now(&mut child, "our candidate is gone").await;
                    } else {
                        self.stop(&mut child, self.shared.stop_reason()).await;
                    }
                    return Supervised::Led(Led::Shutdown);
                }
            }
        }
    }

    /// SIGKILLs the child at once and waits until it and its group are gone.
    async fn kill_now(&self, child: &mut Child, why: &str) -> Ended {
        self.set(State::Stopping);
        tracing::warn!(worker = self.name(), pid = child.pid(), why, "killing");
        child.kill().await;
        let ended = child.wait().await;
        tracing::info!(worker = self.name(), exit = %ended.exit, "stopped");
        ended
    }

    /// Stops the child with its grace period, or at once once `kill` is cancelled. The guard SIGKILLs
    /// the child when the grace period runs out; this side says so when it does.
    async fn stop(&self, child: &mut Child, why: &str) -> Ended {
        self.set(State::Stopping);
        tracing::info!(worker = self.name(), pid = child.pid(), why, "stopping");
        let asked = tokio::time::Instant::now();
        child.stop().await;
        let grace = self.worker.grace_period;
        let over = tokio::time::sleep(grace);
        tokio::pin!(over);
        let (mut said, mut killed) = (false, false);
        let pid = child.pid();
        let say = || tracing::warn!(worker = self.name(), pid, grace = ?grace, "grace period over: killing");
        let ended = loop {
            tokio::select! {
                ended = child.wait() => break ended,
                () = &mut over, if !said && !killed => {
                    said = true;
                    say();
                }
                () = self.kill.cancelled(), if !killed => {
                    killed = true;
                    child.kill().await;
                }
            }
        };
        // The guard's SIGKILL at the end of the grace period (its timer starts when it reads the stop,
        // after ours) can still be reported before our timer fires.
        let guard_killed = ended.exit == Exit::Signal(nix::sys::signal::Signal::SIGKILL as i32)
            && ended.cause == Cause::Stop
            && asked.elapsed() >= grace;
        if guard_killed && !said && !killed {
            say();
        }
        tracing::info!(worker = self.name(), exit = %ended.exit, "stopped");
        ended
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A child just started, and what watching it takes.
struct Run<'e> {
    child: Child,
    /// When it started, in milliseconds since the Unix epoch (as published).
    since: u64,
    /// The watch on our own candidate.
    watch: zk::OneshotWatcher,
    lease: watch::Receiver<Option<crate::lease::Stamp>>,
    /// The `ZK_SUPERVISE_*` variables, for health checks.
    env: &'e [(&'e str, String)],
}

enum Supervised {
    Exited(Ended),
    Failed,
    LeaseLapsed,
    Led(Led),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker with these restart delays (SPEC §3).
    fn worker(restart_delay: &str, max_restart_delay: &str) -> WorkerConfig {
        let text = format!(
            "[zookeeper]\nconnect = \"zk:2181\"\n[[worker]]\nname = \"w\"\ncommand = [\"/bin/true\"]\n\
             restart_delay = \"{restart_delay}\"\nmax_restart_delay = \"{max_restart_delay}\"\n"
        );
        crate::config::parse(&text, std::path::Path::new("w.toml"))
            .expect("a valid config")
            .workers
            .remove(0)
    }

    fn backoff(w: &WorkerConfig) -> Backoff {
        Backoff {
            delay: w.restart_delay,
            not_before: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_restart_delay_doubles_up_to_its_maximum_and_runs_out() {
        let w = worker("1s", "5s");
        let mut b = backoff(&w);
        assert_eq!(
            b.remaining(),
            Duration::ZERO,
            "no wait before the first start"
        );
        let quick = Duration::from_millis(100);
        let waits: Vec<Duration> = (0..5).map(|_| b.exited(&w, quick)).collect();
        let secs = |s: &[u64]| {
            s.iter()
                .map(|&s| Duration::from_secs(s))
                .collect::<Vec<_>>()
        };
        assert_eq!(waits, secs(&[1, 2, 4, 5, 5]));
        assert_eq!(b.remaining(), Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(b.remaining(), Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            b.remaining(),
            Duration::ZERO,
            "the wait is over, not negative"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_as_long_as_the_maximum_resets_the_delay() {
        let w = worker("1s", "8s");
        let mut b = backoff(&w);
        for _ in 0..3 {
            b.exited(&w, Duration::ZERO);
        }
        assert_eq!(b.exited(&w, Duration::from_secs(7)), Duration::from_secs(8));
        assert_eq!(b.exited(&w, Duration::from_secs(8)), Duration::from_secs(1));
        assert_eq!(b.exited(&w, Duration::ZERO), Duration::from_secs(2));
    }

    /// The delay is kept across leaderships (a lone node that hands off and wins again): what is
    /// left of it is what is left of the time, not a fresh delay.
    #[tokio::test(start_paused = true)]
    async fn what_is_left_of_the_delay_follows_the_clock() {
        let w = worker("2s", "60s");
        let mut b = backoff(&w);
        b.exited(&w, Duration::ZERO);
        b.exited(&w, Duration::ZERO);
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(b.remaining(), Duration::from_millis(2_500));
    }

    #[test]
    fn restarts_are_starts_after_the_first() {
        let mut t = Tally::default();
        assert!(!t.started(), "the first start is not a restart");
        assert!(t.started());
        assert!(t.started());
    }

    #[test]
    fn quick_failures_in_a_row_hand_off_and_a_long_run_clears_them() {
        let mut t = Tally::default();
        let quick = QUICK_FAILURE - Duration::from_millis(1);
        t.exited(quick);
        t.failed_to_start();
        assert!(!t.hand_off(3));
        t.exited(quick);
        assert!(t.hand_off(3));
        assert!(!t.hand_off(0), "handoff_after = 0: never");
        t.exited(QUICK_FAILURE);
        assert_eq!(t.failures, 0);
        assert!(!t.hand_off(1));
    }
}
