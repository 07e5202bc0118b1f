//! The safety deadline of SPEC §6, anchored at ZooKeeper's quorum leader.
//!
//! ZooKeeper deletes a session's ephemeral znodes only when the session expires, and only the ensemble's
//! **leader** expires sessions. The supervisor keeps its own lease: `L` is the send time of a request
//! whose answer *proves* that the leader had heard from this session at `L` or later, and the deadline is
//! `K = L + S - margin` with `margin = max(S/10, 200ms)` ([`margin`]). Every child of this node must be
//! dead by `K`; the guard process of each child ([`crate::process::guard`]) enforces it on its own.
//!
//! # Why an answer from the server we talk to is not enough
//!
//! A client talks to one server. If it is a follower (or observer), that server records the session's
//! activity in `LearnerSessionTracker.touchSession` (a `touchTable`, filled by
//! `ZooKeeperServer.submitRequestNow` for every request it receives) and tells the leader only when the
//! leader pings it: `Leader.lead` pings every learner every `tickTime / 2`, `Learner.ping` answers with a
//! snapshot of the touch table (`LearnerSessionTracker.snapshot`, which empties it), and the leader's
//! `LearnerHandler` (case `Leader.PING`) touches each session in its `SessionTrackerImpl`, which then
//! expires the session `S` after its last touch (`ExpiryQueue.update`: `roundToNextInterval(now + S)`).
//! A follower cut off from the quorum keeps answering reads from its own copy until its sync timeout
//! (`syncLimit * tickTime`) runs out, while the leader counts the session down: renewing on such answers
//! is how two copies happened.
//!
//! # The proof (ZooKeeper 3.8 source)
//!
//! A `sync` is answered only through the leader: the follower's `FollowerRequestProcessor` forwards it
//! (`Learner.request`, a `Leader.REQUEST` packet), the leader's `LearnerHandler` hands it to its pipeline,
//! `Leader.processSync` queues a `Leader.SYNC` packet back to the follower (after any outstanding
//! proposal commits), and only when the follower reads that packet (`Follower.processPacket` ->
//! `FollowerZooKeeperServer.sync`) does the client get its answer. Writes (`setData`, `create`) go the
//! same way, answered after the leader's commit. Two streams carry this, each in order (TCP, one reader
//! thread each side):
//!
//! - **follower -> leader**: ping replies and forwarded requests share `Learner.writePacket` (one
//!   `leaderOs`, or the one queue of `LearnerSender`); the leader's `LearnerHandler.run` reads them in
//!   order, touching sessions for a `PING` before it submits any request read after it.
//! - **leader -> follower**: pings and `SYNC` answers share `LearnerHandler.queuePacket`; the follower's
//!   main loop answers each `PING` (`Learner.ping`, written at once) before it reads the next packet.
//!
//! Now take three answered requests of this session, in this order on the client:
//!
//! 1. **X**, any request, sent at `s_X` and answered at `r_X`. Its server recorded the touch at some
//!    moment in `[s_X, r_X]`.
//! 2. **A**, a `sync` (or a write) sent at `s_A >= r_X + I`, where `I` is at least the leader's ping
//!    interval `tickTime / 2`. The leader handled A at some moment `P_A >= s_A`, and it sent a ping in
//!    the interval `(P_A - I, P_A]`, so after the touch of X. That ping went down the leader -> follower
//!    stream before A's answer, so the follower answered it — with X's touch in the snapshot — before
//!    answering A.
//! 3. **B**, a `sync` (or a write) sent at `s_B >= r_A`. The follower forwards it after it answered that
//!    ping, so the leader read the ping reply, and touched the session, before it read B; B's answer
//!    comes after that.
//!
//! So when B is answered, the leader has touched the session at a moment no earlier than `s_X`, and can
//! expire it no earlier than `s_X + S`: `L = s_X`. [`Lease::answered`] records every answered request
//! (candidates for X), [`Lease::synced`] every answered `sync` (candidates for A, and B itself), and
//! takes `L` = the latest `s_X` with `r_X <= s_A - I`, where A is the latest sync answered by `s_B`.
//!
//! **Reconnects** do not break it: the three need not share a connection. If B's answer came over a
//! later connection than X's, that connection was opened after the server answered X, and a learner
//! opens a connection for an existing session only after the leader revalidated it
//! (`LearnerZooKeeperServer.revalidateSession` -> `Leader.REVALIDATE` -> `LeaderZooKeeperServer.
//! checkIfValidGlobalSession`, which touches the session), which is a touch after `s_X` too. A client
//! talking to the leader itself touches it directly, and a standalone server is its own leader.
//!
//! **A touch that came too late does not count.** `SessionTrackerImpl.touchSession` ignores a session
//! already marked closing, so the argument needs the session alive when the touch arrives. It is, if
//! B's answer arrives while the previous lease still holds (the leader cannot have expired the session
//! before the old `K`); [`Lease::synced`] renews only then. After a lapse, a **write** of this session
//! must succeed first ([`Renewal::NeedsWrite`]): `PrepRequestProcessor` checks the session
//! (`SessionTrackerImpl.checkSession`) before it accepts a write, and fails it once the session is
//! closing, so a write that succeeds after the ping reply proves the touch landed on a live session.
//!
//! A new session starts with `L` = the moment the connection attempt began ([`Lease::started`]): the
//! leader creates the session (`PrepRequestProcessor`, `createSession` -> `SessionTrackerImpl.
//! trackSession`) after that, and the client learns of it only after the commit.
//!
//! # What it relies on
//!
//! - **`I`**: the leader's ping loop runs every `tickTime / 2`. The daemon does not know the servers'
//!   `tickTime`; `[zookeeper] server_tick` (default 2 s, the value of ZooKeeper's sample config and
//!   Debian's) states an upper bound, and `I` is a whole `server_tick`: twice the ping interval, so a
//!   leader whose ping loop runs up to a half tick late is still covered. A `server_tick` below the
//!   servers' real `tickTime / 2` voids the proof.
//! - Clocks that run at the same rate on the client and the leader (not synchronized clocks); the margin
//!   absorbs small differences.
//! - A touch lost in `LearnerSessionTracker`'s own race (a touch put into the table just as a ping
//!   reply swaps it out) is lost for the leader too; the next answered request touches again, so it can
//!   only matter if the cut comes within microseconds of that race.
//!
//! # Cost
//!
//! The heartbeat ([`Cadence`]) is one `sync` per `S/10` (one pair per `S/5`), or pairs of back-to-back
//! syncs when `I` is long next to `S/5`; the largest grace period shrinks by the age a proof can reach
//! ([`max_grace_period`]).
//!
//! Times are [`Stamp`]s on `CLOCK_BOOTTIME`: one clock shared by the supervisor and its guards (they
//! are separate processes), and unlike `CLOCK_MONOTONIC` it keeps counting while the host is suspended —
//! the ZooKeeper servers' clocks do too.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use nix::time::{clock_gettime, ClockId};
use tokio::sync::watch;

/// A point in time on `CLOCK_BOOTTIME`, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(pub u64);

impl Stamp {
    /// Now, on `CLOCK_BOOTTIME`.
    #[must_use]
    pub fn now() -> Stamp {
        let ts =
            clock_gettime(ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME is available on Linux");
        #[allow(clippy::cast_sign_loss)]
        Stamp(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
    }

    #[must_use]
    pub fn plus(self, d: Duration) -> Stamp {
        Stamp(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    #[must_use]
    pub fn minus(self, d: Duration) -> Stamp {
        Stamp(
            self.0
                .saturating_sub(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// How long from `earlier` to `self`; zero if `earlier` is later.
    #[must_use]
    pub fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// How long from now until `self`; zero if it has passed.
    #[must_use]
    pub fn remaining(self) -> Duration {
        self.since(Stamp::now())
    }
}

/// `max(S/10, 200ms)`: what the deadline keeps back from `L + S` for clock rates and scheduling.
#[must_use]
pub fn margin(session_timeout: Duration) -> Duration {
    (session_timeout / 10).max(Duration::from_millis(200))
}

/// Room kept for the four round trips between two proofs, and for a loaded server: `S/10`.
#[must_use]
pub fn slack(session_timeout: Duration) -> Duration {
    session_timeout / 10
}

/// When the heartbeat sends its `sync`s; see the module docs for why a proof needs a gap of `I`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// One `sync` every `d` after the previous answer (`d >= I`): each answer proves the send time of
    /// the sync two before it. A proof is at most `3d` (plus round trips) old when the next arrives.
    Even(Duration),
    /// Two `sync`s back to back every `p` (`p >= I`): the second proves the send time of the previous
    /// pair's second. A proof is at most `2p` old when the next arrives. Better when `I` is long.
    Pairs(Duration),
}

impl Cadence {
    /// The cadence for a session timeout `S` and a server tick bound: one request per `S/10` at
    /// most, whichever of the two ages its proofs less.
    #[must_use]
    pub fn new(session_timeout: Duration, server_tick: Duration) -> Cadence {
        let even = server_tick.max(session_timeout / 10);
        let pairs = server_tick.max(session_timeout / 5);
        if even * 3 <= pairs * 2 {
            Cadence::Even(even)
        } else {
            Cadence::Pairs(pairs)
        }
    }

    /// How long the heartbeat waits after an answer before its next `sync`: `d`, or for pairs `p`
    /// before the first of a pair and nothing before the second. A bucket more than `I`, so an answer
    /// merged with a later one is still `I` behind ([`ANSWER_BUCKET`]).
    #[must_use]
    pub fn gap(self, second_of_pair: bool) -> Duration {
        match self {
            Cadence::Even(d) => d + ANSWER_BUCKET,
            Cadence::Pairs(_) if second_of_pair => Duration::ZERO,
            Cadence::Pairs(p) => p + ANSWER_BUCKET,
        }
    }

    /// How often proofs arrive (round trips aside).
    #[must_use]
    pub fn interval(self) -> Duration {
        match self {
            Cadence::Even(d) => d,
            Cadence::Pairs(p) => p,
        }
    }

    /// How old `L` can be, at most, just before the next proof arrives (round trips aside).
    #[must_use]
    pub fn worst_age(self) -> Duration {
        match self {
            Cadence::Even(d) => d * 3,
            Cadence::Pairs(p) => p * 2,
        }
    }
}

/// The longest `grace_period` that fits the lease, or zero: `S - margin - slack - worst age of a proof`.
///
/// After the last proof, a child's stop point `K - grace` must come after the next proof is due, so a
/// healthy session never stops a child: `L + S - margin - grace > L + worst_age + round trips`. With
/// `S = 15s` and `server_tick = 2s` that is 6 s; with `S = 2s` and `server_tick = 200ms`, 1 s.
#[must_use]
pub fn max_grace_period(session_timeout: Duration, server_tick: Duration) -> Duration {
    session_timeout
        .saturating_sub(margin(session_timeout))
        .saturating_sub(slack(session_timeout))
        .saturating_sub(Cadence::new(session_timeout, server_tick).worst_age())
}

/// What an answered `sync` did to the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// `K` moved to `L + S - margin`.
    Renewed(Stamp),
    /// Nothing proven yet (too few answers, or none far enough apart).
    NoProof,
    /// A proof, but the lease had lapsed when it came: a write must succeed before it counts
    /// ([`Lease::wrote`]).
    NeedsWrite,
}

/// How finely answer times are kept: answers within one aligned millisecond share an entry, whose
/// answer time is the latest of them. A lookup may so miss an answer by less than this, never find
/// one that came later; the heartbeat waits this much more than `I` ([`Cadence::gap`]).
pub const ANSWER_BUCKET: Duration = Duration::from_millis(1);

/// Answered requests, as `(answered at, latest send time of any request answered by then)`, in the
/// order they were answered: [`Answers::latest_sent_by`] is then one binary search.
#[derive(Debug, Default)]
struct Answers(VecDeque<(Stamp, Stamp)>);

impl Answers {
    /// Entries kept, at most one per [`ANSWER_BUCKET`]: over 8 s of answers at the busiest, more than
    /// a proof ever looks back (`2 max(server_tick, S/5)` plus round trips) for any tick up to 2 s.
    const KEEP: usize = 8192;

    fn record(&mut self, sent: Stamp, answered: Stamp, bucket: Duration) {
        let (answered, latest) = match self.0.back() {
            Some(&(r, s)) => (answered.max(r), sent.max(s)),
            None => (answered, sent),
        };
        match self.0.back_mut() {
            // Nothing new: an earlier entry already answers every lookup this one would.
            Some(&mut (_, s)) if s == latest => {}
            // Merged with the last entry, in the same aligned bucket: its answer time moves later
            // (by less than a bucket), which only ever makes a lookup return less.
            Some(last) if same_bucket(last.0, answered, bucket) => *last = (answered, latest),
            _ => {
                self.0.push_back((answered, latest));
                if self.0.len() > Self::KEEP {
                    self.0.pop_front();
                }
            }
        }
    }

    /// The latest send time of a request answered at or before `by`.
    fn latest_sent_by(&self, by: Stamp) -> Option<Stamp> {
        let n = self.0.partition_point(|&(r, _)| r <= by);
        n.checked_sub(1).map(|i| self.0[i].1)
    }
}

fn same_bucket(a: Stamp, b: Stamp, bucket: Duration) -> bool {
    let width = u64::try_from(bucket.as_nanos()).unwrap_or(u64::MAX).max(1);
    a.0 / width == b.0 / width
}

#[derive(Debug, Default)]
struct Proofs {
    /// Every answered request: candidates for X.
    any: Answers,
    /// Answered syncs and writes: candidates for A.
    synced: Answers,
    /// `L` of the current deadline.
    last: Option<Stamp>,
    /// Whether a sync chain has proven anything yet (rather than only the session's creation).
    chained: bool,
}

/// The lease of one ZooKeeper session.
///
/// Renewed by proofs ([`Lease::synced`], [`Lease::wrote`]); the deadline `K` is published on a watch
/// channel and in the page the guards read.
#[derive(Debug)]
pub struct Lease {
    session_timeout: Duration,
    margin: Duration,
    /// `I`: the gap between X's answer and A's send (a whole `server_tick`).
    ping_wait: Duration,
    cadence: Cadence,
    proofs: Mutex<Proofs>,
    deadline: watch::Sender<Option<Stamp>>,
    shared: Option<SharedDeadline>,
}

impl Lease {
    /// A lease for a session whose negotiated timeout is `session_timeout`, with servers whose
    /// `tickTime` is at most `server_tick`; it holds nothing until [`Lease::started`] or a proof.
    #[must_use]
    pub fn new(session_timeout: Duration, server_tick: Duration) -> Lease {
        Lease {
            session_timeout,
            margin: margin(session_timeout),
            ping_wait: server_tick,
            cadence: Cadence::new(session_timeout, server_tick),
            proofs: Mutex::new(Proofs::default()),
            deadline: watch::channel(None).0,
            shared: match SharedDeadline::new() {
                Ok(shared) => Some(shared),
                Err(e) => {
                    tracing::warn!(error = %e, "no shared memory for the lease: renewals go to each guard by message");
                    None
                }
            },
        }
    }

    /// The deadline as the guards of this session read it, if shared memory could be had.
    #[must_use]
    pub fn shared(&self) -> Option<&SharedDeadline> {
        self.shared.as_ref()
    }

    fn proofs(&self) -> std::sync::MutexGuard<'_, Proofs> {
        self.proofs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The session was created by a connection attempt that began at `attempt_began`: the leader
    /// created it after that (see the module docs).
    pub fn started(&self, attempt_began: Stamp) {
        let mut proofs = self.proofs();
        self.renew(&mut proofs, attempt_began);
    }

    /// Records that the server answered a request sent at `sent` (an error reply such as `NoNode` is an
    /// answer too): its server recorded the session's activity by `answered`.
    pub fn answered(&self, sent: Stamp, answered: Stamp) {
        self.proofs().any.record(sent, answered, ANSWER_BUCKET);
    }

    /// Records an answered `sync`, and renews the lease if it completes a proof while the lease holds.
    pub fn synced(&self, sent: Stamp, answered: Stamp) -> Renewal {
        let mut proofs = self.proofs();
        let proven = self.proven(&proofs, sent);
        proofs.any.record(sent, answered, ANSWER_BUCKET);
        proofs.synced.record(sent, answered, ANSWER_BUCKET);
        let Some(l) = proven else {
            return Renewal::NoProof;
        };
        proofs.chained = true;
        if proofs.last.is_some_and(|last| last >= l) {
            return Renewal::NoProof;
        }
        // The session was alive at the leader when the touch came only if the previous lease still
        // held when this answer came.
        if self.deadline().is_some_and(|k| answered < k) {
            self.renew(&mut proofs, l);
            Renewal::Renewed(l)
        } else {
            Renewal::NeedsWrite
        }
    }

    /// Records a write of this session, sent at `sent`, that succeeded: it proves the session was not
    /// closing when the leader handled it, so a proof renews the lease even after a lapse.
    pub fn wrote(&self, sent: Stamp, answered: Stamp) -> Renewal {
        let mut proofs = self.proofs();
        let proven = self.proven(&proofs, sent);
        proofs.any.record(sent, answered, ANSWER_BUCKET);
        proofs.synced.record(sent, answered, ANSWER_BUCKET);
        match proven {
            Some(l) if proofs.last.is_none_or(|last| l > last) => {
                self.renew(&mut proofs, l);
                Renewal::Renewed(l)
            }
            _ => Renewal::NoProof,
        }
    }

    /// `L` proven by a sync or write B sent at `b_sent`, from what was answered before it.
    fn proven(&self, proofs: &Proofs, b_sent: Stamp) -> Option<Stamp> {
        let a_sent = proofs.synced.latest_sent_by(b_sent)?;
        proofs.any.latest_sent_by(a_sent.minus(self.ping_wait))
    }

    fn renew(&self, proofs: &mut Proofs, l: Stamp) {
        if proofs.last.is_some_and(|last| last >= l) {
            return;
        }
        proofs.last = Some(l);
        let k = l.plus(self.session_timeout).minus(self.margin);
        if let Some(shared) = &self.shared {
            shared.store(k);
        }
        self.deadline.send_replace(Some(k));
    }

    /// `L`: the send time proven last, if any.
    #[must_use]
    pub fn last_renewal(&self) -> Option<Stamp> {
        self.proofs().last
    }

    /// The deadline `K`, if the lease was ever renewed.
    #[must_use]
    pub fn deadline(&self) -> Option<Stamp> {
        *self.deadline.borrow()
    }

    /// Whether the lease will still hold `for_at_least` from now.
    #[must_use]
    pub fn holds_for(&self, for_at_least: Duration) -> bool {
        self.deadline()
            .is_some_and(|k| k > Stamp::now().plus(for_at_least))
    }

    /// Follows the deadline as it moves.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Option<Stamp>> {
        self.deadline.subscribe()
    }

    #[must_use]
    pub fn session_timeout(&self) -> Duration {
        self.session_timeout
    }

    /// `I`, the wait between an answer and the sync that can prove it.
    #[must_use]
    pub fn ping_wait(&self) -> Duration {
        self.ping_wait
    }

    /// The heartbeat's cadence for this session.
    #[must_use]
    pub fn cadence(&self) -> Cadence {
        self.cadence
    }

    /// What a child needs left of the lease, beyond its grace period, to be worth starting: until the
    /// next proof can arrive (one proof interval and half the slack; two intervals while the
    /// session's first chain is still being built). Less, and the guard would stop it before the
    /// renewal. Right after a proof a child at the largest grace period has `slack - round trips`
    /// more than it needs: half the slack keeps it startable.
    #[must_use]
    pub fn start_room(&self) -> Duration {
        let intervals = if self.proofs().chained { 1 } else { 2 };
        self.cadence.interval() * intervals + slack(self.session_timeout) / 2
    }
}

/// The lease deadline `K` in a page shared with the guards of one session.
///
/// A renewal is one store here, and no guard wakes up for it: a guard's timer is set for the
/// deadline it last read, minus the grace period; when it fires, the guard reads the page again and
/// only acts if the deadline did not move. So at idle a guard wakes about once per
/// `S - margin - grace_period`, not at every renewal. Each session has its own page: a guard started
/// under one session never sees a deadline renewed by the next.
///
/// The page is a `memfd` the supervisor maps read-write and passes to each guard as fd 3, which the
/// guard maps read-only.
#[derive(Debug)]
pub struct SharedDeadline {
    fd: OwnedFd,
    word: NonNull<AtomicU64>,
}

// SAFETY: the mapping lives as long as the value and is only accessed through an atomic.
unsafe impl Send for SharedDeadline {}
// SAFETY: as above.
unsafe impl Sync for SharedDeadline {}

const PAGE: usize = 4096;

impl SharedDeadline {
    fn new() -> std::io::Result<SharedDeadline> {
        let fd = memfd_create(c"zk-supervise-lease", MFdFlags::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, PAGE as i64)?;
        // SAFETY: a fresh shared mapping of a file we own, of the file's size.
        let ptr = unsafe {
            mmap(
                None,
                NonZeroUsize::new(PAGE).expect("non-zero"),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )?
        };
        Ok(SharedDeadline {
            fd,
            word: ptr.cast(),
        })
    }

    fn store(&self, k: Stamp) {
        // SAFETY: `word` points into our mapping, which lives as long as `self`.
        unsafe { self.word.as_ref() }.store(k.0, Ordering::Release);
    }

    /// The memfd, to hand to a guard.
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedDeadline {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping, once.
        let _ = unsafe { munmap(self.word.cast(), PAGE) };
    }
}

/// A guard's read-only view of a [`SharedDeadline`].
#[derive(Debug)]
pub struct DeadlineView {
    word: NonNull<AtomicU64>,
}

impl DeadlineView {
    /// Maps the page behind `fd` read-only.
    ///
    /// # Errors
    /// When `fd` cannot be mapped.
    pub fn map(fd: BorrowedFd<'_>) -> std::io::Result<DeadlineView> {
        // SAFETY: a read-only shared mapping of the page; only read through an atomic.
        let ptr = unsafe {
            mmap(
                None,
                NonZeroUsize::new(PAGE).expect("non-zero"),
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )?
        };
        Ok(DeadlineView { word: ptr.cast() })
    }

    /// The deadline the supervisor last stored (0 before the first renewal).
    #[must_use]
    pub fn load(&self) -> Stamp {
        // SAFETY: the mapping lives as long as the process (never unmapped).
        Stamp(unsafe { self.word.as_ref() }.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn at(ms: u64) -> Stamp {
        Stamp(ms * MS)
    }

    /// S = 2 s, I = 200 ms: margin 200 ms.
    fn lease() -> Lease {
        Lease::new(Duration::from_secs(2), Duration::from_millis(200))
    }

    #[test]
    fn a_new_session_holds_from_the_start_of_its_connection_attempt() {
        let lease = lease();
        assert_eq!(lease.deadline(), None);
        lease.started(at(1_000));
        assert_eq!(lease.deadline(), Some(at(2_800)));
    }

    #[test]
    fn an_answer_alone_proves_nothing() {
        let lease = lease();
        lease.started(at(0));
        lease.answered(at(100), at(101));
        assert_eq!(lease.deadline(), Some(at(1_800)));
        // A sync right after: no sync was answered before it was sent.
        assert_eq!(lease.synced(at(102), at(103)), Renewal::NoProof);
    }

    #[test]
    fn three_answers_a_ping_interval_apart_prove_the_first() {
        let lease = lease();
        lease.started(at(0));
        lease.synced(at(100), at(101)); // X
        lease.synced(at(301), at(302)); // A: sent I after X's answer
        assert_eq!(lease.synced(at(302), at(303)), Renewal::Renewed(at(100))); // B
        assert_eq!(lease.deadline(), Some(at(1_900)));
        assert_eq!(lease.last_renewal(), Some(at(100)));
    }

    #[test]
    fn a_sync_sent_too_soon_after_the_answer_proves_nothing() {
        let lease = lease();
        lease.started(at(0));
        lease.synced(at(100), at(101));
        lease.synced(at(200), at(201)); // only 99 ms after X's answer
        assert_eq!(lease.synced(at(202), at(203)), Renewal::NoProof);
    }

    #[test]
    fn b_must_be_sent_after_a_was_answered() {
        let lease = lease();
        lease.started(at(0));
        lease.synced(at(100), at(101));
        // A and B pipelined: B was sent before A's answer.
        lease.synced(at(301), at(310));
        assert_eq!(lease.synced(at(305), at(311)), Renewal::NoProof);
    }

    #[test]
    fn any_answered_request_can_be_x() {
        let lease = lease();
        lease.started(at(0));
        lease.answered(at(50), at(60));
        lease.synced(at(260), at(261));
        assert_eq!(lease.synced(at(262), at(263)), Renewal::Renewed(at(50)));
    }

    #[test]
    fn a_proof_after_a_lapse_needs_a_write() {
        let lease = lease();
        lease.started(at(0)); // K = 1800
        lease.synced(at(100), at(101));
        lease.synced(at(1_000), at(1_001));
        // Answered after K: the touch may have come to a session already closing.
        assert_eq!(lease.synced(at(1_700), at(1_900)), Renewal::NeedsWrite);
        assert_eq!(lease.deadline(), Some(at(1_800)));
        // A write sent after that answer, and succeeded: the session was alive.
        // It proves the send time of the sync answered an I before the last one.
        assert_eq!(
            lease.wrote(at(1_901), at(1_902)),
            Renewal::Renewed(at(1_000))
        );
        assert_eq!(lease.deadline(), Some(at(2_800)));
    }

    #[test]
    fn an_older_proof_never_moves_the_deadline_back() {
        let lease = lease();
        lease.started(at(500));
        lease.synced(at(100), at(101));
        lease.synced(at(301), at(302));
        assert_eq!(lease.synced(at(302), at(303)), Renewal::NoProof);
        assert_eq!(lease.deadline(), Some(at(2_300)));
    }

    #[test]
    fn answers_out_of_order_keep_the_latest_send_time() {
        let mut answers = Answers::default();
        answers.record(at(100), at(500), Duration::ZERO);
        answers.record(at(50), at(400), Duration::ZERO); // answered "earlier": kept after, as 500
        answers.record(at(450), at(600), Duration::ZERO);
        assert_eq!(answers.latest_sent_by(at(499)), None);
        assert_eq!(answers.latest_sent_by(at(500)), Some(at(100)));
        assert_eq!(answers.latest_sent_by(at(600)), Some(at(450)));
    }

    #[test]
    fn merged_answers_only_ever_prove_less() {
        let mut answers = Answers::default();
        answers.record(at(100), at(101), Duration::from_millis(10));
        answers.record(at(102), at(105), Duration::from_millis(10)); // same bucket: (105, 102)
        assert_eq!(answers.latest_sent_by(at(104)), None);
        assert_eq!(answers.latest_sent_by(at(105)), Some(at(102)));
        answers.record(at(106), at(111), Duration::from_millis(10)); // next bucket: kept apart
        assert_eq!(answers.latest_sent_by(at(110)), Some(at(102)));
        for i in 0..2 * Answers::KEEP as u64 {
            answers.record(
                at(200 + i * 20),
                at(201 + i * 20),
                Duration::from_millis(10),
            );
        }
        assert_eq!(answers.0.len(), Answers::KEEP);
    }

    #[test]
    fn cadence_and_the_largest_grace_period() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // Test servers: tickTime 200 ms.
        assert_eq!(Cadence::new(s(2), ms(200)), Cadence::Even(ms(200)));
        assert_eq!(max_grace_period(s(2), ms(200)), ms(1_000));
        assert_eq!(max_grace_period(s(4), ms(200)), ms(2_000));
        // The defaults: S = 15 s, tickTime 2 s.
        assert_eq!(Cadence::new(s(15), s(2)), Cadence::Even(s(2)));
        assert_eq!(max_grace_period(s(15), s(2)), ms(6_000));
        // A long tick next to S: pairs.
        assert_eq!(Cadence::new(s(10), s(2)), Cadence::Pairs(s(2)));
        assert_eq!(max_grace_period(s(10), s(2)), ms(4_000));
        assert_eq!(max_grace_period(s(2), s(2)), Duration::ZERO);
        assert_eq!(margin(s(15)), ms(1_500));
        assert_eq!(margin(s(1)), ms(200));
    }

    #[test]
    fn a_child_needs_room_for_the_next_proof_and_two_before_the_first_chain() {
        let lease = lease(); // Even(200ms), slack 200 ms
        assert_eq!(lease.start_room(), Duration::from_millis(500));
        lease.started(at(0));
        lease.synced(at(100), at(101));
        lease.synced(at(302), at(303));
        assert_eq!(lease.synced(at(304), at(305)), Renewal::Renewed(at(100)));
        assert_eq!(lease.start_room(), Duration::from_millis(300));
    }

    #[test]
    fn an_answer_merged_into_a_later_one_is_still_found_a_gap_later() {
        let lease = lease();
        lease.started(at(0));
        lease.synced(at(100), Stamp(101 * MS + 100)); // X, the heartbeat
        lease.answered(at(100), Stamp(101 * MS + 900)); // a worker's answer, same millisecond
        let gap = Cadence::new(Duration::from_secs(2), Duration::from_millis(200)).gap(false);
        let a_sent = Stamp(101 * MS + 100).plus(gap);
        lease.synced(a_sent, a_sent.plus(Duration::from_millis(1)));
        let b_sent = a_sent.plus(Duration::from_millis(2));
        assert_eq!(
            lease.synced(b_sent, b_sent.plus(Duration::from_millis(1))),
            Renewal::Renewed(at(100))
        );
    }

    #[test]
    fn guards_see_renewals_through_the_shared_page() {
        let lease = lease();
        let view = DeadlineView::map(lease.shared().expect("a memfd").fd()).expect("map");
        assert_eq!(view.load(), Stamp(0));
        lease.started(at(5_000));
        assert_eq!(view.load(), at(6_800));
    }

    #[test]
    fn holds_for_compares_with_now() {
        let lease = lease();
        assert!(!lease.holds_for(Duration::ZERO));
        lease.started(Stamp::now());
        assert!(lease.holds_for(Duration::from_secs(1)));
        assert!(!lease.holds_for(Duration::from_secs(2)));
    }
}
