//! The safety deadline of SPEC §6.
//!
//! ZooKeeper deletes a session's ephemeral znodes only when the session expires, and that happens no
//! earlier than the negotiated session timeout `S` after the server last heard from the client. So the
//! supervisor keeps its own lease: `L` is the moment a request was *sent* that the server then answered,
//! and the deadline is `K = L + S - margin` with `margin = max(S/10, 200ms)`. Every child of this node must
//! be dead by `K`; the guard process of each child ([`crate::guard`]) enforces it on its own.
//!
//! Times are [`Stamp`]s on `CLOCK_BOOTTIME`: one clock shared by the supervisor and its guards (they
//! are separate processes), and unlike `CLOCK_MONOTONIC` it keeps counting while the host is suspended —
//! the ZooKeeper servers' clocks do too.

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

/// The lease of one ZooKeeper session.
///
/// Renewed by [`Lease::renew`] with the send time of every answered request; the deadline `K` is
/// published on a watch channel so each running child's guard can be told about it.
#[derive(Debug)]
pub struct Lease {
    session_timeout: Duration,
    margin: Duration,
    last_sent: Mutex<Option<Stamp>>,
    deadline: watch::Sender<Option<Stamp>>,
    shared: Option<SharedDeadline>,
}

impl Lease {
    /// A lease for a session whose negotiated timeout is `session_timeout`; it holds nothing until the
    /// first renewal.
    #[must_use]
    pub fn new(session_timeout: Duration) -> Lease {
        Lease {
            session_timeout,
            margin: crate::config::lease_margin(session_timeout),
            last_sent: Mutex::new(None),
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

    /// Records that a request sent at `sent_at` was answered by the server.
    pub fn renew(&self, sent_at: Stamp) {
        let mut last = self
            .last_sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|l| l >= sent_at) {
            return;
        }
        *last = Some(sent_at);
        let k = sent_at.plus(self.session_timeout).minus(self.margin);
        if let Some(shared) = &self.shared {
            shared.store(k);
        }
        self.deadline.send_replace(Some(k));
    }

    /// `L`: the send time of the latest answered request, if any.
    #[must_use]
    pub fn last_renewal(&self) -> Option<Stamp> {
        *self
            .last_sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    #[test]
    fn deadline_is_send_time_plus_timeout_minus_margin() {
        let lease = Lease::new(Duration::from_secs(15));
        assert_eq!(lease.deadline(), None);
        lease.renew(Stamp(1_000_000_000));
        // margin = max(1.5s, 200ms) = 1.5s
        assert_eq!(lease.deadline(), Some(Stamp(14_500_000_000)));
    }

    #[test]
    fn an_older_answer_never_moves_the_deadline_back() {
        let lease = Lease::new(Duration::from_secs(2));
        lease.renew(Stamp(5_000_000_000));
        lease.renew(Stamp(4_000_000_000));
        // margin = max(200ms, 200ms)
        assert_eq!(lease.deadline(), Some(Stamp(6_800_000_000)));
    }

    #[test]
    fn guards_see_renewals_through_the_shared_page() {
        let lease = Lease::new(Duration::from_secs(2));
        let view = DeadlineView::map(lease.shared().expect("a memfd").fd()).expect("map");
        assert_eq!(view.load(), Stamp(0));
        lease.renew(Stamp(5_000_000_000));
        assert_eq!(view.load(), Stamp(6_800_000_000));
    }

    #[test]
    fn holds_for_compares_with_now() {
        let lease = Lease::new(Duration::from_secs(2));
        assert!(!lease.holds_for(Duration::ZERO));
        lease.renew(Stamp::now());
        assert!(lease.holds_for(Duration::from_secs(1)));
        assert!(!lease.holds_for(Duration::from_secs(2)));
    }
}
