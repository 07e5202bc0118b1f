//! Leader election for one worker: the ZooKeeper recipe of SPEC §4.
//!
//! # Theory of operation
//!
//! Every node that runs a worker has one *candidate* under the worker's election path
//! `<root>/<worker>` (a persistent znode, created with its parents when missing). A candidate is an
//! ephemeral sequential znode named `_c_<marker>-n_<sequence>`:
//!
//! * **The marker** is unique to the session ([`Session::marker`]). If the connection drops while a
//!   candidate is being created, the reply is lost but the znode may exist; listing the children and
//!   looking for the marker finds it again, so it is adopted rather than left as a ghost that would one
//!   day lead while nobody runs the worker (Curator's protected mode).
//! * **The order** is by the sequence suffix alone, never by the whole name (the markers are random).
//!   The candidate with the lowest sequence number leads.
//! * **No herd**: a candidate that does not lead watches only its predecessor. When the predecessor
//!   goes, it lists the children again rather than assuming it now leads — the predecessor may have
//!   left while an earlier candidate is still there.
//! * **Deletion watches**: the watch on a candidate (the predecessor's, and the leader's own) is set
//!   with `getChildren2`, not `exists`. On an ephemeral znode, which cannot have children, it fires
//!   only when the znode is deleted (or the session ends), and the reply still carries the stat
//!   (`ephemeralOwner`, `czxid`). An `exists` watch would also fire whenever a leader publishes its
//!   state in its candidate's data, and cost a request to set again, on two nodes, at every start.
//! * **The leader watches its own candidate**: if it vanishes (deleted by an operator, or the session
//!   expired), the child is stopped at once.
//! * **Ownership is confirmed** before every start of the child: the candidate must exist and its
//!   `ephemeralOwner` must be the current session. A candidate left from an earlier session of this node
//!   never counts as leadership; it is someone else's until its session expires.
//! * **A candidate nobody wants is deleted until it is gone** ([`Reaper`]). A candidate this session no
//!   longer wants (its worker was removed, changed or shut down, it hands leadership off, a duplicate)
//!   is given to the daemon's reaper, which deletes it again and again — after any error, with
//!   backoff — until the delete is answered or the session ends. A candidate left behind would stay
//!   first in the queue as long as the session lives while no node runs the worker; the reaper
//!   outlives the worker task, so neither a cancelled task nor a reload can strand one. The worker
//!   task of the same name may join again meanwhile: the marker lookup skips what the reaper owns.
//! * **A vanished election path** (an operator deleted it while nobody led) is "our candidate is
//!   gone": the worker joins again, which creates the path. A vanished *chroot* cannot be created
//!   that way ([`ElectionError::NoChroot`]): the worker waits for it to come back
//!   ([`Session::wait_for_chroot`]).
//! * **Only candidates count.** A candidate is an ephemeral znode named `_c_<marker>-n_<10+ digits>`.
//!   Anything else in an election path — a znode named otherwise, or a persistent one named like a
//!   candidate (a restored snapshot, a copy tool, a hand-made node) — is left out of the order, with a
//!   warning once per election naming it and why ([`NotACandidate`]); `status` shows it too. Names are
//!   checked at every listing; persistence is seen when the znode is a predecessor: its deletion
//!   watch (`getChildren2`) returns its stat, `ephemeralOwner` 0 for a persistent znode, at no extra
//!   cost. Left in, such a znode would block the election for good: no session holds it, so it never
//!   goes. *Why this cannot make two leaders:* every real candidate, of any version of the daemon,
//!   is ephemeral and named this way, so every node counts every real candidate, and the one with
//!   the lowest sequence number is the same for all; leaving out what is not a candidate only lets
//!   the real first one lead (a node of an older version that still counts it waits behind it: fewer
//!   leaders, never more). An ephemeral znode with our naming counts whatever its data: some live
//!   session holds it, and it goes with that session.
//!
//! # The lease
//!
//! Winning the election is not enough to run the child: the session's lease ([`crate::lease`]) must
//! hold, and only answers that went through the quorum leader renew it. A position read from a server
//! that may be behind never counts on its own: the campaign's "first" cannot be stale (a server that
//! has our candidate has every earlier one, and can only show more of them ahead, never fewer), and a
//! confirmation before a restart reads behind a `sync`. The guard of each child ([`crate::process::guard`])
//! enforces the lease deadline on its own, so a leader that loses its session has stopped its child
//! before ZooKeeper can let another node lead.
//!
//! # Fencing token
//!
//! The token given to the child is the leader candidate's `czxid`, the zxid of the transaction that
//! created it. zxids increase cluster-wide, and a candidate can only lead after every candidate created
//! before it in the same election has gone, so each new leadership of a worker has a larger token than
//! every earlier one — even if the election znode is deleted and recreated, which resets sequence
//! numbers but not zxids. The same candidate leading again (after its lease lapsed and was renewed
//! within the same session) keeps its token: no other leader can have come between.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use zookeeper_client as zk;

use crate::session::Session;

/// Pause between two looks for our candidate after a create whose outcome is unknown.
const LOOKUP_PAUSE: Duration = Duration::from_millis(200);

/// This node's candidate in one election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Full path, from the client's root (the chroot is not included).
    pub path: String,
    pub sequence: i64,
}

/// Why an election step did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The session expired or closed: rejoin with the next one.
    #[error("session ended")]
    SessionEnded,
    /// Our candidate is gone or is not ours: rejoin at the back.
    #[error("candidate {0} is gone")]
    CandidateGone(String),
    /// The chroot of the connect string does not exist: nothing can be created under it, and it is
    /// not ours to create. Wait for it ([`Session::wait_for_chroot`]).
    #[error("the chroot does not exist")]
    NoChroot,
    /// Any other failure (connection loss...): retry after a pause.
    #[error("zookeeper: {0}")]
    Zk(zk::Error),
}

/// Why a child of an election path is not counted as a candidate (see "Only candidates count").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotACandidate {
    /// Its name is not `_c_<marker>-n_<10+ digits>`.
    Name,
    /// It is persistent (`ephemeralOwner` 0): no session holds it, so it would never go.
    Persistent,
}

impl NotACandidate {
    /// Why, in words, for the log and `status`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            NotACandidate::Name => "not named like a candidate (_c_<marker>-n_<sequence>)",
            NotACandidate::Persistent => "not ephemeral: no session holds it, so it would never go",
        }
    }
}

impl From<zk::Error> for ElectionError {
    fn from(e: zk::Error) -> Self {
        if ends_session(&e) {
            ElectionError::SessionEnded
        } else {
            ElectionError::Zk(e)
        }
    }
}

/// Whether `e` means the session is over (its ephemeral znodes go, or went, with it).
fn ends_session(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed
    )
}

/// Whether `e` is the server's answer to the request, which then certainly was (or was not) applied as
/// answered. Anything else — `ConnectionLoss`, a timeout, a connection dropped with requests in flight
/// (which the client library reports as `Error::Custom`), an unexpected reply — leaves the outcome
/// unknown: the request may have been applied and its answer lost.
fn is_answer(e: &zk::Error) -> bool {
    use zk::Error as E;
    crate::session::is_server_error(e)
        || matches!(
            e,
            E::BadArguments(_) | E::Unimplemented | E::NotReadOnly | E::Throttled
        )
}

/// What a confirmed leader gets: its fencing token and a watch on its own candidate.
pub struct Leadership {
    pub token: i64,
    pub watch: zk::OneshotWatcher,
}

/// One worker's election within one session.
pub struct Election<'a> {
    session: &'a Arc<Session>,
    reaper: &'a Arc<Reaper>,
    dir: String,
    data: Vec<u8>,
    /// The children of the election path left out of the order, by name, and why (each was logged
    /// once).
    ignored: Mutex<HashMap<String, NotACandidate>>,
}

impl<'a> Election<'a> {
    /// `dir` is the election path `<root>/<worker>`; `data` is the candidate's JSON. Candidates this
    /// election gives up go to `reaper`.
    #[must_use]
    pub fn new(
        session: &'a Arc<Session>,
        reaper: &'a Arc<Reaper>,
        dir: String,
        data: Vec<u8>,
    ) -> Election<'a> {
        Election {
            session,
            reaper,
            dir,
            data,
            ignored: Mutex::new(HashMap::new()),
        }
    }

    fn prefix(&self) -> String {
        format!("_c_{}-n_", self.session.marker)
    }

    /// Creates this node's candidate at the back of the queue.
    ///
    /// # Errors
    /// [`ElectionError::SessionEnded`] if the session ends; [`ElectionError::Zk`] on an answer that
    /// says the create was not applied (`NoAuth`...).
    ///
    /// # Connection errors
    /// After any error that is not the server's answer (`ConnectionLoss`, or a connection that dropped
    /// with the create in flight, which the client library reports as `Error::Custom`), the create may
    /// have been applied: the candidate is looked up by its marker, until the listing is answered,
    /// before anything is created again. Giving up there would leave a ghost that one day leads while
    /// nobody runs the worker.
    ///
    /// # Cancellation safety
    /// Not cancel-safe: a cancelled call may leave a candidate that [`Election::find_own`] finds again.
    pub async fn join(&self) -> Result<Candidate, ElectionError> {
        let options = zk::CreateMode::EphemeralSequential.with_acls(self.session.acls());
        let path = format!("{}/{}", self.dir, self.prefix());
        loop {
            match self
                .session
                .call(|c| c.create(&path, &self.data, &options))
                .await
            {
                Ok((_, sequence)) => {
                    return Ok(Candidate {
                        path: format!("{path}{sequence}"),
                        sequence: sequence.into_i64(),
                    });
                }
                Err(zk::Error::NoNode) => {
                    // No election path yet (a new worker or a new root): make it, with its parents, and
                    // create again. (Creating first saves a request per worker in the common case.)
                    let persistent = zk::CreateMode::Persistent.with_acls(self.session.acls());
                    match self.session.call(|c| c.mkdir(&self.dir, &persistent)).await {
                        Ok(()) => {}
                        // The library answers so only when the first level cannot be created: the
                        // chroot is missing.
                        Err(zk::Error::NoNode) => return Err(ElectionError::NoChroot),
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) if ends_session(&e) => return Err(ElectionError::SessionEnded),
                Err(e) if is_answer(&e) => return Err(e.into()),
                Err(e) => {
                    tracing::debug!(dir = %self.dir, error = %e, "create of a candidate without an answer; looking for it");
                    loop {
                        match self.find_own().await {
                            Ok(Some(found)) => return Ok(found),
                            Ok(None) => break, // it was not applied: create again
                            Err(ElectionError::Zk(_)) => {
                                tokio::select! {
                                    () = tokio::time::sleep(LOOKUP_PAUSE) => {}
                                    () = self.session.ended() => return Err(ElectionError::SessionEnded),
                                }
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
    }

    /// Finds this session's candidate, if any (after a create whose reply was lost). Candidates the
    /// reaper is deleting are not ours any more: a worker removed and added again must not adopt the
    /// old one.
    ///
    /// # Errors
    /// As [`Election::join`].
    pub async fn find_own(&self) -> Result<Option<Candidate>, ElectionError> {
        let prefix = self.prefix();
        let mine = |name: &str| {
            name.starts_with(&prefix)
                && !self
                    .reaper
                    .owns(self.session.id, &format!("{}/{name}", self.dir))
        };
        let children = match self.list().await {
            Ok(children) => children,
            // No election path: no candidate either (the create that was lost answered NoNode).
            Err(ElectionError::Zk(zk::Error::NoNode)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(children
            .into_iter()
            .find(|(name, _)| mine(name))
            .map(|(name, sequence)| Candidate {
                path: format!("{}/{name}", self.dir),
                sequence,
            }))
    }

    /// The candidates in queue order: `(name, sequence)`, sorted by sequence.
    async fn list(&self) -> Result<Vec<(String, i64)>, ElectionError> {
        let children = self.session.call(|c| c.list_children(&self.dir)).await?;
        Ok(self.in_order(children))
    }

    /// `children` in queue order, without what is not a candidate (see "Only candidates count").
    fn in_order(&self, children: Vec<String>) -> Vec<(String, i64)> {
        let mut ordered = Vec::with_capacity(children.len());
        for name in children {
            if let Some(sequence) = sequence_of(&name) {
                if !lock(&self.ignored).contains_key(&name) {
                    ordered.push((name, sequence));
                }
            } else {
                self.ignore(name, NotACandidate::Name);
            }
        }
        ordered.sort_by_key(|(_, s)| *s);
        ordered
    }

    /// Leaves the child `name` out of the order from now on; the first time, says so.
    fn ignore(&self, name: String, why: NotACandidate) {
        if let std::collections::hash_map::Entry::Vacant(entry) = lock(&self.ignored).entry(name) {
            tracing::warn!(
                election = %self.dir,
                znode = %format!("{}/{}", self.dir, entry.key()),
                why = why.as_str(),
                "ignoring a znode in the election: it is not a candidate (delete it if nothing of yours needs it)"
            );
            entry.insert(why);
        }
    }

    /// Waits until `me` is the first candidate, and returns the confirmed leadership.
    ///
    /// Each look at the queue pipelines two requests in one round trip: the list of candidates, and
    /// the stat of `me` with a deletion watch (its `ephemeralOwner` must be this session). So a node whose
    /// predecessor just left starts its child one round trip after the notification. `on_position` is
    /// told the number of candidates ahead and the predecessor each time it waits.
    ///
    /// # Errors
    /// [`ElectionError::CandidateGone`] if `me` disappears or is not this session's, or the election
    /// path itself is gone (deleted while nobody led: joining again creates it);
    /// [`ElectionError::SessionEnded`]; [`ElectionError::Zk`] on other failures.
    ///
    /// # Cancellation safety
    /// Cancel-safe: nothing changes in ZooKeeper while waiting (a duplicate found goes to the reaper,
    /// which deletes it whether or not the campaign goes on).
    pub async fn campaign(
        &self,
        me: &Candidate,
        mut on_position: impl FnMut(usize, &str),
    ) -> Result<Leadership, ElectionError> {
        loop {
            let looked = self
                .session
                .call(|c| {
                    let list = c.list_children(&self.dir);
                    let own = watch_deletion(c, &me.path);
                    async move {
                        let (list, own) = tokio::join!(list, own);
                        Ok((list?, own?))
                    }
                })
                .await;
            let (children, own) = match looked {
                Ok(found) => found,
                // The election path is gone, and our candidate with it (and whatever was ignored:
                // names may come back, as candidates, in a new path).
                Err(zk::Error::NoNode) => {
                    lock(&self.ignored).clear();
                    return Err(ElectionError::CandidateGone(me.path.clone()));
                }
                Err(e) => return Err(e.into()),
            };
            let owned = own.filter(|(s, _)| s.ephemeral_owner == self.session.id);
            let Some((stat, watch)) = owned else {
                return Err(ElectionError::CandidateGone(me.path.clone()));
            };
            let ordered = self.in_order(children);
            self.delete_duplicates(me, &ordered);
            let Some(position) = ordered.iter().position(|(_, s)| *s == me.sequence) else {
                return Err(ElectionError::CandidateGone(me.path.clone()));
            };
            if position == 0 {
                return Ok(Leadership {
                    token: stat.czxid,
                    watch,
                });
            }
            drop(watch);
            let name = &ordered[position - 1].0;
            let predecessor = format!("{}/{name}", self.dir);
            on_position(position, &predecessor);
            if !self.wait_gone(&predecessor).await? {
                self.ignore(name.clone(), NotACandidate::Persistent);
            }
        }
    }

    /// Waits until `predecessor` is gone, or something else happens that calls for a new look at the
    /// queue (a connection event). Returns false at once if it is not ephemeral: not a candidate.
    async fn wait_gone(&self, predecessor: &str) -> Result<bool, ElectionError> {
        loop {
            let Some((stat, watch)) = self
                .session
                .call(|c| watch_deletion(c, predecessor))
                .await?
            else {
                return Ok(true); // already gone
            };
            if stat.ephemeral_owner == 0 {
                return Ok(false);
            }
            let event = tokio::select! {
                event = watch.changed() => event,
                () = self.session.ended() => return Err(ElectionError::SessionEnded),
            };
            match event.event_type {
                zk::EventType::Session if event.session_state.is_terminated() => {
                    return Err(ElectionError::SessionEnded);
                }
                // Children of an ephemeral znode: cannot happen; watch again.
                zk::EventType::NodeChildrenChanged => {}
                _ => return Ok(true),
            }
        }
    }

    /// Hands any other candidate of this session to the reaper: a create whose reply was lost and
    /// that the server applied after it was looked for. Left alone, it would lead once `me` is gone.
    fn delete_duplicates(&self, me: &Candidate, ordered: &[(String, i64)]) {
        let prefix = self.prefix();
        for (name, sequence) in ordered {
            if *sequence != me.sequence && name.starts_with(&prefix) {
                let path = format!("{}/{name}", self.dir);
                if !self.reaper.owns(self.session.id, &path) {
                    tracing::warn!(candidate = %path, "deleting a duplicate candidate of this session");
                    self.reaper.reap(self.session, path);
                }
            }
        }
    }

    /// Confirms that `me` exists and is owned by the current session, and watches it, before a restart
    /// of the child. Call it after [`Election::campaign`]: a candidate that was first stays first while it exists, since every
    /// later candidate gets a larger sequence number.
    ///
    /// The read goes behind a pipelined `sync`, so it reflects the quorum leader's state: after a lapse
    /// or a reconnect, the server may be behind (a follower cut off from the quorum still shows a
    /// candidate whose session the leader has expired), and its word alone must not restart a child.
    ///
    /// # Errors
    /// [`ElectionError::CandidateGone`] if it is missing or owned by another session;
    /// [`ElectionError::SessionEnded`]; [`ElectionError::Zk`].
    pub async fn confirm(&self, me: &Candidate) -> Result<Leadership, ElectionError> {
        match self
            .session
            .call_synced(&self.dir, |c| watch_deletion(c, &me.path))
            .await?
        {
            Some((stat, watch)) if stat.ephemeral_owner == self.session.id => Ok(Leadership {
                token: stat.czxid,
                watch,
            }),
            _ => Err(ElectionError::CandidateGone(me.path.clone())),
        }
    }

    /// Replaces `me`'s data (the leader's published state).
    ///
    /// # Errors
    /// As [`Election::join`].
    pub async fn publish(&self, me: &Candidate, data: &[u8]) -> Result<(), ElectionError> {
        self.session
            .call(|c| c.set_data(&me.path, data, None))
            .await?;
        Ok(())
    }

    /// Leaves the election: hands `me` to the reaper, which deletes it until the delete is answered or
    /// the session ends. The returned token is cancelled once it is gone (or the session ended).
    #[must_use]
    pub fn abandon(&self, me: &Candidate) -> CancellationToken {
        self.reaper.reap(self.session, me.path.clone())
    }
}

/// Deletes the candidates this daemon no longer wants, each until the delete is answered (the
/// candidate is gone) or its session ends (it goes with the session). One per daemon; each candidate
/// is deleted by a task of its own, which holds the session and outlives the worker task that gave the
/// candidate up. Any error but the end of the session is retried, with backoff, as long as the session
/// lives: a candidate left behind would lead while nobody runs its worker.
///
/// At shutdown, [`Reaper::shutdown`] gives up what is left: closing the session deletes it.
#[derive(Debug, Default)]
pub struct Reaper {
    inner: Mutex<ReaperInner>,
}

#[derive(Debug, Default)]
struct ReaperInner {
    tasks: JoinSet<()>,
    /// `(session id, path)` of each candidate being deleted, and the token its task cancels when done.
    pending: HashMap<(i64, String), CancellationToken>,
    /// Set by [`Reaper::shutdown`]: candidates given up after it are left to the session's close.
    closed: bool,
}

/// The first and the largest pause between two attempts to delete a candidate.
const REAP_PAUSE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

impl Reaper {
    /// Deletes the candidate at `path` of `session` until it is gone or the session ends; returns a
    /// token cancelled then. Giving the same candidate twice returns the same token.
    pub fn reap(self: &Arc<Self>, session: &Arc<Session>, path: String) -> CancellationToken {
        let mut inner = lock(&self.inner);
        while inner.tasks.try_join_next().is_some() {}
        let key = (session.id, path);
        if let Some(done) = inner.pending.get(&key) {
            return done.clone();
        }
        let done = CancellationToken::new();
        if inner.closed {
            done.cancel();
            return done;
        }
        inner.pending.insert(key.clone(), done.clone());
        let (reaper, session, finished) = (self.clone(), session.clone(), done.clone());
        inner.tasks.spawn(async move {
            delete_until_gone(&session, &key.1).await;
            lock(&reaper.inner).pending.remove(&key);
            finished.cancel();
        });
        done
    }

    /// Whether the reaper is deleting the candidate at `path` of session `session_id`.
    #[must_use]
    pub fn owns(&self, session_id: i64, path: &str) -> bool {
        lock(&self.inner)
            .pending
            .contains_key(&(session_id, path.to_owned()))
    }

    /// Waits until every candidate given so far is gone, or `timeout` passes; then stops deleting (and
    /// refuses new candidates), and returns once no task holds a session any more, so that the last
    /// handle on the session can close it: a closed session takes its candidates with it.
    pub async fn shutdown(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let tokens: Vec<CancellationToken> =
                lock(&self.inner).pending.values().cloned().collect();
            let Some(first) = tokens.first() else { break };
            if tokio::time::timeout_at(deadline, first.cancelled())
                .await
                .is_err()
            {
                break;
            }
        }
        let mut tasks = {
            let mut inner = lock(&self.inner);
            inner.closed = true;
            let left = inner.pending.len();
            if left > 0 {
                tracing::info!(
                    left,
                    "candidates not deleted yet at shutdown: closing the session deletes them"
                );
            }
            for (_, done) in inner.pending.drain() {
                done.cancel();
            }
            std::mem::take(&mut inner.tasks)
        };
        tasks.shutdown().await;
    }
}

/// Deletes `path` until the delete is answered or the session ends.
async fn delete_until_gone(session: &Session, path: &str) {
    let mut pause = REAP_PAUSE.0;
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            // An answer that never comes on a connection that stays up (no server does this, but a
            // middlebox might) must not stop the retries either.
            r = tokio::time::timeout(session.timeout(), session.call(|c| c.delete(path, None))) => {
                r.unwrap_or(Err(zk::Error::Timeout))
            }
            () = session.ended() => return,
        };
        match result {
            Ok(()) | Err(zk::Error::NoNode) => {
                if failures > 0 {
                    tracing::info!(
                        candidate = path,
                        failures,
                        "deleted a candidate after failed attempts"
                    );
                }
                return;
            }
            Err(e) if ends_session(&e) => return,
            Err(e) => {
                failures += 1;
                // Every failure is worth a line at first; then one line in ten, so that a long partition
                // does not flood the log.
                if failures <= 3 || failures % 10 == 0 {
                    tracing::warn!(candidate = path, error = %e, failures, retry_in = ?pause, "cannot delete a candidate this node no longer wants; retrying");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = session.ended() => return,
        }
        pause = (pause * 2).min(REAP_PAUSE.1);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The stat of the candidate at `path` and a watch that fires when it is deleted (see "Deletion
/// watches" above); `None` if there is no such znode.
async fn watch_deletion(
    client: &zk::Client,
    path: &str,
) -> Result<Option<(zk::Stat, zk::OneshotWatcher)>, zk::Error> {
    match client.get_and_watch_children(path).await {
        Ok((_, stat, watch)) => Ok(Some((stat, watch))),
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The sequence number of a candidate's name `_c_<marker>-n_<sequence>`: its trailing digits (10, or
/// 19 past `i32::MAX`). `None` for any other name: not a candidate. The marker may be anything but
/// empty (every version's is hexadecimal).
#[must_use]
pub fn sequence_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("_c_")?;
    let (marker, digits) = rest.rsplit_once("-n_")?;
    if marker.is_empty() || digits.len() < 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_is_the_trailing_digits_only() {
        assert_eq!(sequence_of("_c_0123456789abcdef-n_0000000042"), Some(42));
        assert_eq!(sequence_of("_c_99999999999-n_0000000001"), Some(1));
        assert_eq!(
            sequence_of("_c_abc-n_2147483648000"),
            Some(2_147_483_648_000)
        );
        assert_eq!(sequence_of("lock"), None);
        assert_eq!(sequence_of("x-123"), None);
    }

    #[test]
    fn only_our_naming_is_a_candidate() {
        assert_eq!(sequence_of("_c_x-n_0000000000"), Some(0));
        assert_eq!(sequence_of("_c_a-b-n_0000000005"), Some(5));
        for name in [
            "lock-0000000001",
            "_c_-n_0000000001",
            "_c_x-n_000000001",
            "_c_x-n_00000000x1",
            "c_x-n_0000000001",
            "_c_x_0000000001",
            "_c_x-n_0000000001 ",
            "_c_x-n_",
            "",
        ] {
            assert_eq!(sequence_of(name), None, "{name:?}");
        }
    }

    #[test]
    fn order_ignores_the_marker() {
        let mut names = [
            "_c_ffff-n_0000000003",
            "_c_0000-n_0000000007",
            "_c_aaaa-n_0000000001",
        ];
        names.sort_by_key(|n| sequence_of(n));
        assert_eq!(
            names,
            [
                "_c_aaaa-n_0000000001",
                "_c_ffff-n_0000000003",
                "_c_0000-n_0000000007"
            ]
        );
    }
}
