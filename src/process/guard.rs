//! The guard: a small process between the supervisor and each child, which enforces the lease on its own.
//!
//! # Why a separate process
//!
//! SPEC §6 asks that every child be dead by the lease deadline `K` even when the supervisor cannot run
//! (frozen by SIGSTOP, a stalled VM, a runtime stuck on a lock) and that children die at once when the
//! supervisor dies. Enforcement therefore cannot live in the supervisor's event loop. Each child gets a
//! guard: a fork of the supervisor's spawner ([`crate::process::spawner`], the same binary started once as
//! `zk-supervise __guards` through `/proc/self/exe`, so a package upgrade that replaces the file on disk
//! cannot pair a supervisor with a guard of another version). The guard is single-threaded and does
//! almost nothing: it blocks in `poll(2)` on three file descriptors.
//!
//! * **fd 0** is one end of a Unix socket pair whose other end only the supervisor holds. On it the
//!   two speak the protocol of [`super::protocol`]: down come the child's spec, stop requests and
//!   (when there is no shared page) lease deadlines; up go the guard's own pid (first, so that the
//!   supervisor can have the spawner sweep after a guard that dies without reporting: see
//!   [`crate::process::spawner`]), whether the child started, failed or was refused (the lease no
//!   longer holds for the grace period), and at the end how it exited and why.
//!   When it reads end-of-file the supervisor is gone (killed, crashed, OOM): the guard SIGKILLs the
//!   child's process group, and every other descendant, at once.
//! * **fd 3**, mapped read-only and then closed, is the session's deadline page
//!   ([`crate::lease::SharedDeadline`]): the supervisor stores every renewal there, and the guard reads
//!   it whenever it wakes up. Renewals therefore cost the guard nothing: at idle it wakes about once per
//!   `S - margin - grace_period`, when its timer fires for the deadline it last read.
//! * a **signalfd** for SIGCHLD, so the guard reaps its child, and any orphan that comes back to it, the
//!   moment it dies.
//! * a **timerfd** on `CLOCK_BOOTTIME`, the clock the supervisor stamps `K` with, armed with the absolute
//!   time of the next lease action: the stop signal to the group at `K - grace_period`, SIGKILL at `K`.
//!   (A poll timeout would run on the monotonic clock, which stops while the host is suspended.)
//!
//! The child runs in its own process group with `PR_SET_PDEATHSIG(SIGKILL)` set from the guard's only
//! thread (so a SIGKILLed guard takes its direct child with it). The guard is a child subreaper: a
//! grandchild that double-forks out of the group is re-parented to the guard. The stop signal goes to
//! the group and to every descendant outside it (the child itself if it left its group, a program a
//! `setsid --wait` or `sudo` wrapper runs in a session of its own), so none of them waits for SIGKILL
//! without having had it; and the guard reports the exit only once the child, its group and every other
//! descendant are gone (SIGKILLed at the end of the grace period if need be).
//!
//! The lease is checked when the spec arrives and again in the forked child just before `exec`, after
//! the `user` and `group` lookups and the `chdir` ([`super::exec`]): a child starts only while `K` is
//! more than the grace period away. Where the guard is in ending the child is one [`State`].
//! The guard runs in a process group of its own and ignores SIGINT, SIGTERM, SIGHUP, SIGQUIT and the job
//! control signals: a Ctrl-C or Ctrl-Z in the supervisor's terminal must neither bypass the grace period
//! nor freeze enforcement.
//!
//! The guard never writes to its stdout or stderr: they belong to the child, whose output the
//! supervisor reads.

use std::io::{self, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, kill, killpg, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timer::{Expiration, TimerSetTimeFlags};
use nix::sys::timerfd::{ClockId as TimerClock, TimerFd, TimerFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::exec::{spawn, LeaseAtExec, NotStarted};
use super::protocol::{Cause, Exit, FromGuard, Inbox, ToGuard};
use super::tree::{children_of, descendants_of};
use crate::lease::{DeadlineView, Stamp};

/// The guard's entry point, in a process forked by the spawner with the control socket on fd 0, the
/// child's stdout and stderr on fds 1 and 2, and the deadline page (if any) on fd 3. Returns the
/// process exit code.
#[must_use]
pub fn main() -> i32 {
    // SAFETY: fd 0 is the control socket the supervisor gave us; nothing else in this process owns it.
    let control = UnixStream::from(unsafe { OwnedFd::from_raw_fd(0) });
    match Guard::start(control) {
        Ok(mut guard) => guard.run(),
        // Reported on the control socket, if anyone listens: the guard writes nowhere else.
        Err(_) => 1,
    }
}

struct Guard {
    control: UnixStream,
    inbox: Inbox,
    sigchld: SignalFd,
    /// Fires at the next lease action, on `CLOCK_BOOTTIME`.
    timer: TimerFd,
    child: Pid,
    stop_signal: Signal,
    grace: Duration,
    /// `K`: stop signal at `K - grace`, SIGKILL at `K`.
    deadline: Stamp,
    /// The session's shared deadline page, read whenever the guard wakes up.
    view: Option<&'static DeadlineView>,
    /// Where the guard is in ending the child.
    state: State,
}

/// Where the guard is in ending its child, and the child's status once it is reaped.
///
/// A pure step function: each transition takes the time, the lease deadline `K` and the grace period
/// as arguments, and returns the signals the guard must now send ([`Signals`]); the guard sends them.
/// `K` is not part of the state: renewals move it, only forward, whatever the state. The guard's
/// loop leaves, and reports, once the child's status is known and its whole tree is gone, in
/// whichever state that happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Intermediate: the child runs and has been sent nothing. Left for [`State::Stopping`] by a stop
    /// request ([`Cause::Stop`]), by `K - grace` ([`Cause::Lease`]) or by the child's own exit
    /// ([`Cause::Itself`]: the rest of its tree gets the stop signal); for [`State::Killed`] by a kill
    /// request, or the supervisor's end.
    Running,
    /// Intermediate: the stop signal went to the child's tree because of `cause`; SIGKILL follows at
    /// `kill_at` (the grace period after the stop signal, never later than `K`), or at `K` if a
    /// renewal came since. `exit` is the child's status once it is reaped. Left for
    /// [`State::Killed`] at `kill_at`, at `K`, or by a kill request; a stop request only brings
    /// `kill_at` forward if that is sooner.
    Stopping {
        cause: Cause,
        kill_at: Stamp,
        exit: Option<WaitStatus>,
    },
    /// Terminal: SIGKILL went to the child's tree; `cause` is why the stop began ([`Cause::Stop`]
    /// for a kill request while running). Nothing leaves it: a new kill request only sends SIGKILL
    /// again, to whatever the tree has grown since. The guard reports once `exit` is known and the
    /// tree is gone.
    Killed {
        cause: Cause,
        exit: Option<WaitStatus>,
    },
}

/// What a transition of [`State`] asks the guard to send to the child's tree, in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Signals {
    /// The worker's stop signal.
    stop: bool,
    /// SIGKILL.
    kill: bool,
}

impl Signals {
    const NONE: Signals = Signals {
        stop: false,
        kill: false,
    };
    const STOP: Signals = Signals {
        stop: true,
        kill: false,
    };
    const KILL: Signals = Signals {
        stop: false,
        kill: true,
    };
}

impl State {
    /// The supervisor asked for a graceful stop at `now`.
    fn stop_requested(&mut self, now: Stamp, k: Stamp, grace: Duration) -> Signals {
        let at = now.plus(grace).min(k);
        match self {
            State::Running => {
                *self = State::Stopping {
                    cause: Cause::Stop,
                    kill_at: at,
                    exit: None,
                };
                Signals::STOP
            }
            State::Stopping { kill_at, .. } => {
                *kill_at = (*kill_at).min(at);
                Signals::NONE
            }
            State::Killed { .. } => Signals::NONE,
        }
    }

    /// The supervisor asked for SIGKILL now, or is gone.
    fn kill_requested(&mut self) -> Signals {
        let (cause, exit) = match *self {
            State::Running => (Cause::Stop, None),
            State::Stopping { cause, exit, .. } | State::Killed { cause, exit } => (cause, exit),
        };
        *self = State::Killed { cause, exit };
        Signals::KILL
    }

    /// The guard woke up at `now`: the stop signal at `K - grace`, SIGKILL at `kill_at` or `K`.
    /// Both at once if the guard wakes past both (a host resumed from suspend).
    fn tick(&mut self, now: Stamp, k: Stamp, grace: Duration) -> Signals {
        let mut signals = Signals::NONE;
        if *self == State::Running && now >= k.minus(grace) {
            *self = State::Stopping {
                cause: Cause::Lease,
                kill_at: now.plus(grace).min(k),
                exit: None,
            };
            signals.stop = true;
        }
        if let State::Stopping {
            cause,
            kill_at,
            exit,
        } = *self
        {
            if now >= k || now >= kill_at {
                *self = State::Killed { cause, exit };
                signals.kill = true;
            }
        }
        signals
    }

    /// The child was reaped at `now` with `status`. If nothing had stopped it, the rest of its group
    /// and whatever left the group follow it (SPEC §5: no process of the group outlives the child),
    /// with the same grace.
    fn child_exited(
        &mut self,
        status: WaitStatus,
        now: Stamp,
        k: Stamp,
        grace: Duration,
    ) -> Signals {
        match self {
            State::Running => {
                *self = State::Stopping {
                    cause: Cause::Itself,
                    kill_at: now.plus(grace).min(k),
                    exit: Some(status),
                };
                Signals::STOP
            }
            State::Stopping { exit, .. } | State::Killed { exit, .. } => {
                *exit = Some(status);
                Signals::NONE
            }
        }
    }

    /// When [`State::tick`] has something to do next; `None` once SIGKILL went out.
    fn next_action(&self, k: Stamp, grace: Duration) -> Option<Stamp> {
        match *self {
            State::Running => Some(k.minus(grace)),
            State::Stopping { kill_at, .. } => Some(kill_at.min(k)),
            State::Killed { .. } => None,
        }
    }

    /// The child's status, once it is reaped.
    fn exit(&self) -> Option<WaitStatus> {
        match *self {
            State::Running => None,
            State::Stopping { exit, .. } | State::Killed { exit, .. } => exit,
        }
    }

    /// Why the child ended, as reported.
    fn cause(&self) -> Cause {
        match *self {
            State::Running => Cause::Itself,
            State::Stopping { cause, .. } | State::Killed { cause, .. } => cause,
        }
    }
}

/// Why a guard started no child.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// The control socket closed, or its first line was no spec: nobody to tell.
    #[error("no spec on the control socket")]
    NoSpec,
    /// The lease no longer holds for the grace period: not a failure of the command. Says what the
    /// guard saw ([`LeaseAtExec::refusal`]).
    #[error("{0}")]
    Refused(String),
    /// The command could not be started, or the guard could not prepare to watch it.
    #[error("{0}")]
    Failed(String),
}

impl StartError {
    /// What the supervisor is told, if anyone is listening.
    fn report(&self) -> Option<FromGuard> {
        match self {
            StartError::NoSpec => None,
            StartError::Refused(why) => Some(FromGuard::Refused { why: why.clone() }),
            // One line in the supervisor's log, whatever the message holds.
            StartError::Failed(why) => Some(FromGuard::Failed {
                why: why.replace('\n', " "),
            }),
        }
    }
}

/// What [`Guard::start`] prepared, besides the control socket and what was read from it.
struct Started {
    sigchld: SignalFd,
    timer: TimerFd,
    child: Pid,
    stop_signal: Signal,
    grace: Duration,
    deadline: Stamp,
    view: Option<&'static DeadlineView>,
}

impl Guard {
    /// Reads the spec and starts the child.
    ///
    /// # Errors
    /// Why no child runs, after reporting it on the control socket ([`FromGuard::Failed`], or
    /// [`FromGuard::Refused`] when the lease no longer holds for the grace period).
    fn start(mut control: UnixStream) -> Result<Guard, StartError> {
        // First of all, who we are: should this guard be killed before it reports the child's end,
        // the supervisor asks the spawner to sweep what came back to it from this pid (see
        // `crate::process::spawner`).
        #[allow(clippy::cast_possible_wrap)]
        let pid = std::process::id() as i32;
        let _ = control.write_all(&FromGuard::Guard { pid }.line());
        let mut inbox = Inbox::default();
        match Guard::start_child(&mut control, &mut inbox) {
            Ok(started) => Ok(Guard {
                control,
                inbox,
                sigchld: started.sigchld,
                timer: started.timer,
                child: started.child,
                stop_signal: started.stop_signal,
                grace: started.grace,
                deadline: started.deadline,
                view: started.view,
                state: State::Running,
            }),
            Err(e) => {
                if let Some(report) = e.report() {
                    let _ = control.write_all(&report.line());
                }
                Err(e)
            }
        }
    }

    /// [`Guard::start`] up to its report: reads the spec, checks the lease, prepares the guard's
    /// descriptors and starts the child, and says [`FromGuard::Started`].
    fn start_child(control: &mut UnixStream, inbox: &mut Inbox) -> Result<Started, StartError> {
        let asked = std::time::Instant::now();
        let Ok(Some(Some(ToGuard::Spec(spec)))) = inbox.recv(control) else {
            return Err(StartError::NoSpec);
        };
        let view = if spec.shared_deadline {
            // SAFETY: the supervisor put the session's deadline page on fd 3; it is ours alone.
            let fd = unsafe { OwnedFd::from_raw_fd(3) };
            let view = DeadlineView::map(fd.as_fd());
            drop(fd); // the mapping stays; the child must not inherit the descriptor
            let view = view.map_err(|e| StartError::Failed(format!("map the lease page: {e}")))?;
            // Never unmapped: the forked child reads it too, just before `exec`.
            Some(&*Box::leak(Box::new(view)))
        } else {
            None
        };
        let lease = LeaseAtExec {
            deadline: Stamp(spec.deadline_ns),
            view,
            grace: Duration::from_millis(spec.grace_ms),
        };
        let spec_took = asked.elapsed();
        if !lease.holds() {
            return Err(StartError::Refused(lease.refusal(spec_took)));
        }
        let stop_signal = Signal::try_from(spec.stop_signal).unwrap_or(Signal::SIGTERM);
        let (sigchld, timer) = prepare_to_watch()?;
        let child = spawn(&spec, lease).map_err(|e| match e {
            NotStarted::Lease => StartError::Refused(lease.refusal(spec_took)),
            NotStarted::Failed(why) => StartError::Failed(why),
        })?;
        #[allow(clippy::cast_sign_loss)]
        let pid = child.as_raw() as u32;
        let _ = control.write_all(&FromGuard::Started { pid }.line());
        if let Err(e) = control.set_nonblocking(true) {
            let _ = killpg(child, Signal::SIGKILL);
            return Err(StartError::Failed(format!("control socket: {e}")));
        }
        Ok(Started {
            sigchld,
            timer,
            child,
            stop_signal,
            grace: Duration::from_millis(spec.grace_ms),
            deadline: lease.deadline,
            view,
        })
    }

    fn run(&mut self) -> i32 {
        loop {
            if let Some(view) = &self.view {
                // Renewals since the last look; the deadline only moves forward.
                self.deadline = self.deadline.max(view.load());
            }
            self.act_on_deadlines();
            self.reap();
            if self.state.exit().is_some() && group_is_gone(self.child) && own_children().is_empty()
            {
                // The child, its group and every process that left the group are gone.
                return self.report();
            }
            let timeout = self.arm_timer();
            let control_fd = self.control.as_fd();
            let mut fds = [
                PollFd::new(control_fd, PollFlags::POLLIN),
                PollFd::new(self.sigchld.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.timer.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            let control_ready = fds[0].any().unwrap_or(false);
            if fds[1].any().unwrap_or(false) {
                while let Ok(Some(_)) = self.sigchld.read_signal() {}
            }
            if fds[2].any().unwrap_or(false) {
                let mut expirations = [0u8; 8];
                let _ = nix::unistd::read(&self.timer, &mut expirations);
            }
            if control_ready && !self.read_control() {
                // The supervisor is gone: nobody will renew the lease or read our report.
                let signals = self.state.kill_requested();
                self.send(signals);
                self.wait_group_gone();
                self.kill_descendants();
                return 0;
            }
        }
    }

    /// Handles what the supervisor sent; returns false once the socket is closed.
    fn read_control(&mut self) -> bool {
        loop {
            match self.inbox.recv(&mut self.control) {
                Ok(Some(Some(message))) => self.command(message),
                // A line this guard does not know: skipped.
                Ok(Some(None)) => {}
                Ok(None) => return false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    fn command(&mut self, message: ToGuard) {
        match message {
            ToGuard::Lease { deadline_ns } => {
                // A deadline only moves forward: an old message can never extend a lapsed lease
                // by arriving late, because the supervisor stamps K from the request's send time.
                self.deadline = self.deadline.max(Stamp(deadline_ns));
            }
            ToGuard::Stop => {
                let signals = self
                    .state
                    .stop_requested(Stamp::now(), self.deadline, self.grace);
                self.send(signals);
            }
            ToGuard::Kill => {
                let signals = self.state.kill_requested();
                self.send(signals);
            }
            // Only the first message is a spec.
            ToGuard::Spec(_) => {}
        }
    }

    fn act_on_deadlines(&mut self) {
        let signals = self.state.tick(Stamp::now(), self.deadline, self.grace);
        self.send(signals);
    }

    /// Sends what a transition asked for.
    fn send(&mut self, signals: Signals) {
        if signals.stop {
            self.signal_tree(self.stop_signal);
        }
        if signals.kill {
            let _ = killpg(self.child, Signal::SIGKILL);
            self.kill_descendants();
        }
    }

    /// Sets the timer to the next action's time on `CLOCK_BOOTTIME` (absolute, so a suspended host that
    /// resumes past the deadline acts at once); returns a poll timeout for the one case the timer cannot
    /// serve (waiting for the rest of a group, polled every 20 ms).
    fn arm_timer(&self) -> PollTimeout {
        let next = self.state.next_action(self.deadline, self.grace);
        let armed = match next {
            None => self.timer.unset(),
            Some(at) => {
                #[allow(clippy::cast_possible_wrap)]
                let ts =
                    TimeSpec::new((at.0 / 1_000_000_000) as i64, (at.0 % 1_000_000_000) as i64);
                self.timer.set(
                    Expiration::OneShot(ts),
                    TimerSetTimeFlags::TFD_TIMER_ABSTIME,
                )
            }
        };
        if armed.is_err() {
            // Without a timer, fall back on poll's own timeout (monotonic: late across a suspend).
            return next.map_or(PollTimeout::NONE, |at| {
                PollTimeout::try_from(at.remaining().as_micros().div_ceil(1000))
                    .unwrap_or(PollTimeout::MAX)
            });
        }
        if self.state.exit().is_some() {
            PollTimeout::from(20u8)
        } else {
            PollTimeout::NONE
        }
    }

    /// Sends `sig` to the child's process group, and to every descendant that is not in it: the child
    /// itself if it left its group, and whatever a `setsid()` or `setpgid()` took out of it (a
    /// `setsid --wait` wrapper's command, `sudo`'s with a pty, a daemonized grandchild). Without that,
    /// those would get no stop signal at all, only SIGKILL at the end of the grace period. As systemd
    /// does for a unit's cgroup, every process of the child's tree gets the stop signal.
    fn signal_tree(&self, sig: Signal) {
        // Read the tree before signalling the group: a process of the group that dies of the signal
        // hands its children on to the guard, and one in the middle of that move would be missed.
        let outside: Vec<Pid> = descendants_of(Pid::this())
            .into_iter()
            .filter(|&pid| nix::unistd::getpgid(Some(pid)).is_ok_and(|g| g != self.child))
            .collect();
        let _ = killpg(self.child, sig);
        for pid in outside {
            let _ = kill(pid, sig);
        }
    }

    /// Reaps every child that has ended: the main child (recording its status) and re-parented orphans.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if status.pid() == Some(self.child) {
                        let signals = self.state.child_exited(
                            status,
                            Stamp::now(),
                            self.deadline,
                            self.grace,
                        );
                        self.send(signals);
                    }
                }
            }
        }
    }

    fn wait_group_gone(&mut self) {
        let until = Stamp::now().plus(Duration::from_secs(5));
        while !(self.state.exit().is_some() && group_is_gone(self.child)) && Stamp::now() < until {
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs every descendant left (the child's tree, and orphans that left the group and came back
    /// to us), until none is left; gives up after 5 s (a process stuck in the kernel cannot die sooner).
    fn kill_descendants(&mut self) {
        let until = Stamp::now().plus(Duration::from_secs(5));
        loop {
            self.reap();
            let left = descendants_of(Pid::this());
            if left.is_empty() || Stamp::now() >= until {
                return;
            }
            for pid in left {
                let _ = kill(pid, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn report(&mut self) -> i32 {
        let exit = match self.state.exit() {
            Some(WaitStatus::Exited(_, code)) => Exit::Code(code),
            Some(WaitStatus::Signaled(_, sig, _)) => Exit::Signal(sig as i32),
            _ => Exit::Unknown,
        };
        let cause = self.state.cause();
        let _ = self.control.set_nonblocking(false);
        let _ = self
            .control
            .write_all(&FromGuard::Exited { exit, cause }.line());
        0
    }
}

/// What the guard needs before it starts the child: the signals it ignores ignored, SIGCHLD on a
/// signalfd, a timer on `CLOCK_BOOTTIME`, and the right to reap orphans (a child subreaper).
fn prepare_to_watch() -> Result<(SignalFd, TimerFd), StartError> {
    for sig in IGNORED {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal::signal(sig, SigHandler::SigIgn) };
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let sigchld = mask
        .thread_block()
        .and_then(|()| SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC))
        .map_err(|e| StartError::Failed(format!("signalfd: {e}")))?;
    let timer_flags = TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK;
    let timer = TimerFd::new(TimerClock::CLOCK_BOOTTIME, timer_flags)
        .map_err(|e| StartError::Failed(format!("timerfd: {e}")))?;
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| StartError::Failed(format!("PR_SET_CHILD_SUBREAPER: {e}")))?;
    Ok((sigchld, timer))
}

/// Signals the guard ignores: it answers only to its control socket. A Ctrl-C or Ctrl-Z in the
/// supervisor's terminal, or a signal to the supervisor's process group, must neither skip the grace
/// period nor freeze enforcement. (The guard also runs in a process group of its own.)
pub(crate) const IGNORED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

/// Whether no process of the group `pgid` is left.
fn group_is_gone(pgid: Pid) -> bool {
    killpg(pgid, None::<Signal>) == Err(Errno::ESRCH)
}

/// The guard's own children, from `/proc`.
fn own_children() -> Vec<Pid> {
    children_of(Pid::this())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `secs` seconds on the lease's clock.
    fn at(secs: u64) -> Stamp {
        Stamp(secs * 1_000_000_000)
    }

    const GRACE: Duration = Duration::from_secs(5);

    fn exited(code: i32) -> WaitStatus {
        WaitStatus::Exited(Pid::from_raw(42), code)
    }

    /// A stop request sends the stop signal once, and SIGKILL when the grace period is over; a
    /// second request neither signals again nor postpones the SIGKILL.
    #[test]
    fn a_stop_request_signals_once_and_kills_after_the_grace_period() {
        let k = at(100);
        let mut state = State::Running;
        assert_eq!(state.next_action(k, GRACE), Some(at(95)));
        assert_eq!(state.stop_requested(at(10), k, GRACE), Signals::STOP);
        assert_eq!(
            state,
            State::Stopping {
                cause: Cause::Stop,
                kill_at: at(15),
                exit: None
            }
        );
        assert_eq!(state.next_action(k, GRACE), Some(at(15)));
        assert_eq!(state.stop_requested(at(12), k, GRACE), Signals::NONE);
        assert_eq!(state.next_action(k, GRACE), Some(at(15)));
        assert_eq!(state.tick(at(14), k, GRACE), Signals::NONE);
        assert_eq!(state.tick(at(15), k, GRACE), Signals::KILL);
        assert_eq!(
            state,
            State::Killed {
                cause: Cause::Stop,
                exit: None
            }
        );
        assert_eq!(state.next_action(k, GRACE), None);
        assert_eq!(state.tick(at(200), k, GRACE), Signals::NONE);
        assert_eq!(state.stop_requested(at(20), k, GRACE), Signals::NONE);
        assert_eq!(state.exit(), None);
        assert_eq!(
            state.child_exited(exited(0), at(16), k, GRACE),
            Signals::NONE
        );
        assert_eq!(state.exit(), Some(exited(0)));
        assert_eq!(state.cause(), Cause::Stop);
    }

    /// A stop request near the end of the lease gets less than the grace period: SIGKILL at `K`.
    #[test]
    fn a_stop_never_outlasts_the_lease() {
        let mut state = State::Running;
        assert_eq!(state.stop_requested(at(10), at(12), GRACE), Signals::STOP);
        assert_eq!(state.next_action(at(12), GRACE), Some(at(12)));
        assert_eq!(state.tick(at(12), at(12), GRACE), Signals::KILL);
    }

    /// Without renewals, the stop signal goes at `K - grace` and SIGKILL at `K`; a renewal that
    /// comes after the stop signal does not take the SIGKILL back.
    #[test]
    fn the_lease_stops_at_k_minus_grace_and_kills_at_k() {
        let mut state = State::Running;
        assert_eq!(state.tick(at(94), at(100), GRACE), Signals::NONE);
        // A renewal before K - grace moves everything.
        assert_eq!(state.next_action(at(110), GRACE), Some(at(105)));
        assert_eq!(state.tick(at(100), at(110), GRACE), Signals::NONE);
        assert_eq!(state.tick(at(105), at(110), GRACE), Signals::STOP);
        assert_eq!(
            state,
            State::Stopping {
                cause: Cause::Lease,
                kill_at: at(110),
                exit: None
            }
        );
        // Renewed too late: the child is already stopping, and its grace period ends as it would.
        assert_eq!(state.next_action(at(200), GRACE), Some(at(110)));
        assert_eq!(state.tick(at(109), at(200), GRACE), Signals::NONE);
        assert_eq!(state.tick(at(110), at(200), GRACE), Signals::KILL);
        assert_eq!(state.cause(), Cause::Lease);
    }

    /// A guard that wakes past `K` (a host resumed from suspend) sends both at once: the stop
    /// signal, then SIGKILL.
    #[test]
    fn waking_past_k_sends_the_stop_signal_and_sigkill() {
        let mut state = State::Running;
        assert_eq!(
            state.tick(at(101), at(100), GRACE),
            Signals {
                stop: true,
                kill: true
            }
        );
        assert_eq!(
            state,
            State::Killed {
                cause: Cause::Lease,
                exit: None
            }
        );
    }

    /// The child's own exit stops the rest of its tree with the same grace (never past `K`), and is
    /// reported as `self`.
    #[test]
    fn the_childs_own_exit_stops_the_rest_of_its_tree() {
        let mut state = State::Running;
        assert_eq!(
            state.child_exited(exited(3), at(10), at(100), GRACE),
            Signals::STOP
        );
        assert_eq!(
            state,
            State::Stopping {
                cause: Cause::Itself,
                kill_at: at(15),
                exit: Some(exited(3))
            }
        );
        // A stop request now changes neither the cause nor the end of the grace period.
        assert_eq!(state.stop_requested(at(11), at(100), GRACE), Signals::NONE);
        assert_eq!(state.cause(), Cause::Itself);
        assert_eq!(state.tick(at(15), at(100), GRACE), Signals::KILL);
        assert_eq!(state.exit(), Some(exited(3)));

        let mut late = State::Running;
        late.child_exited(exited(0), at(98), at(100), GRACE);
        assert_eq!(late.next_action(at(100), GRACE), Some(at(100)));
    }

    /// A kill request sends SIGKILL in every state, keeps why the stop began and what is known of
    /// the exit, and is reported as `stop` when nothing else had stopped the child.
    #[test]
    fn a_kill_request_kills_now_in_every_state() {
        let mut running = State::Running;
        assert_eq!(running.kill_requested(), Signals::KILL);
        assert_eq!(
            running,
            State::Killed {
                cause: Cause::Stop,
                exit: None
            }
        );
        let mut stopping = State::Stopping {
            cause: Cause::Lease,
            kill_at: at(15),
            exit: Some(exited(1)),
        };
        assert_eq!(stopping.kill_requested(), Signals::KILL);
        assert_eq!(
            stopping,
            State::Killed {
                cause: Cause::Lease,
                exit: Some(exited(1))
            }
        );
        // Again: SIGKILL once more, to whatever the tree has grown since.
        assert_eq!(stopping.kill_requested(), Signals::KILL);
        assert_eq!(stopping.cause(), Cause::Lease);
    }
}
