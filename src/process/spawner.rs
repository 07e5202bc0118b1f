//! The spawner: one small process per supervisor that forks every guard ([`crate::process::guard`]).
//!
//! # Why
//!
//! A node that takes over hundreds of workers at once starts hundreds of guards. Forking them from the
//! supervisor itself copies the page tables and descriptor table of a large multi-threaded process for
//! each one (and a thousand running children mean three thousand descriptors), and each guard then
//! pays for an `exec` of this binary and the dynamic linker's relocations of it. Measured on 2 cores,
//! that was about 70 % of the CPU a node spent placing 1000 workers.
//!
//! So the supervisor starts, once, `zk-supervise __guards` (through `/proc/self/exe`, so a package
//! upgrade cannot pair the supervisor with a spawner of another version). It is single-threaded and
//! small, and forks each guard from itself without `exec`: the guard shares the spawner's pages
//! until it writes to them.
//!
//! # Protocol
//!
//! The spawner's stdin is one end of a `SOCK_SEQPACKET` socket pair. Each request is one message: a
//! [`Request`] in JSON, with descriptors as `SCM_RIGHTS`. [`Request::Guard`] carries the guard's
//! control socket, the write ends of the child's stdout and stderr pipes and, if there is one, the
//! session's deadline page. The forked guard puts them on fds 0, 1, 2 and 3, closes everything else,
//! takes a process group of its own and runs [`crate::process::guard::main`], which reads its spec
//! from the control socket as before. Nothing comes back on the request socket: the guard reports on
//! its control socket, and if the fork fails the spawner writes [`FromGuard::Failed`] there itself.
//! [`Request::Sweep`] carries one socket, on which the spawner answers when the sweep is done (see
//! below).
//!
//! The spawner ignores the signals the guard ignores (it is in its own process group anyway), reaps
//! the guards from a signalfd (the supervisor learns their end from the control socket), and exits
//! when the request socket reaches end-of-file, that is when the supervisor is gone. If the spawner
//! dies, the supervisor starts another at the next spawn: running guards do not depend on it.
//!
//! # Orphans of a dead guard
//!
//! The guard is a child subreaper: a process that leaves the child's process group (`setsid -f`, a
//! double fork) stays its descendant, and the guard kills it when the child stops. That protection
//! dies with the guard. SIGKILL a guard (the OOM killer, an operator tidying up) and its child dies
//! with it (parent-death signal), but a grandchild that left the group would be re-parented to init
//! and run on, beside the copy the restarted worker starts.
//!
//! So the spawner is a child subreaper too: a dead guard's orphans come back to it. It knows the
//! guards it forked, and every other child is a stranger that a dead guard left behind. At every
//! `SIGCHLD` it SIGKILLs every stranger with all its descendants, and looks again until none is left.
//! That alone has no order with a restart, so the supervisor, which learns of a guard's death from end
//! of file on its control socket without an `exited` report, asks the spawner that forked it for a
//! [`Request::Sweep`] and waits for the answer before the child counts as ended
//! ([`crate::process::Child::wait`]): nothing of the old child runs when the worker starts again, here
//! or, after a handoff, on another node. The spawner sweeps only once the guard is reaped: the kernel
//! hands a dying process's children on to the subreaper before it tells the parent, so by then every
//! orphan is the spawner's.
//!
//! Why not a cgroup v2 per child (`cgroup.kill`, then wait for `populated 0`), which would hold even
//! if the spawner died first? A daemon has a writable cgroup subtree only under systemd with
//! `Delegate=yes` (and must then move itself out of its unit's cgroup into a leaf), or as root on a
//! host whose cgroup v2 hierarchy it may change: not in most containers, not on hybrid hierarchies,
//! not as an unprivileged user without delegation. That is a second enforcement path, used on some
//! hosts and not others, and not exercised where the tests run. The subreaper chain needs nothing of
//! the host and is tested everywhere. What it leaves uncovered is in the README's safety model: the
//! spawner killed and then a guard (the guard's orphans go to init; the supervisor logs an error), a
//! frozen spawner (it sweeps when it thaws), and processes the child has another service start for
//! it. Under systemd, `KillMode=mixed` SIGKILLs whatever is left in the unit's cgroup when the unit
//! stops.

use std::collections::HashSet;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, kill, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, Interest};

use super::protocol::FromGuard;
use super::tree::{children_of, descendants_of};

/// The target of the spawner's log events, as it was before the module moved under `process`:
/// operators filter on it (`RUST_LOG=zk_supervise::spawner=debug`).
const LOG_TARGET: &str = "zk_supervise::spawner";

/// The most descriptors one request carries.
const MAX_FDS: usize = 4;

/// The longest request message.
const MAX_REQUEST: usize = 256;

/// How long a sweep keeps killing before it answers with what is left.
const SWEEP_LIMIT: Duration = Duration::from_secs(5);

/// One message on the request socket, in JSON, with descriptors as `SCM_RIGHTS`.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Fork a guard with the descriptors on its fds 0 to 3: control socket, stdout, stderr and maybe
    /// the deadline page.
    Guard,
    /// The guard `pid` ended without reporting its child's end: wait until it is reaped, kill every
    /// process that came back to the spawner, and answer a [`Swept`] line on the one descriptor sent
    /// along.
    Sweep { guard: i32 },
}

/// The answer to [`Request::Sweep`].
#[derive(Debug, Serialize, Deserialize)]
struct Swept {
    /// Processes that were still there when the sweep gave up (0: none).
    left: usize,
}

/// The spawner's entry point: `zk-supervise __guards`, with the request socket on fd 0. Returns the
/// process exit code.
#[must_use]
pub fn main() -> i32 {
    // Started through /proc/self/exe, the kernel names it `exe` (in `top`, `ps -e`, `pgrep`); the guards
    // inherit the name.
    let _ = nix::sys::prctl::set_name(c"zk-supervise");
    for sig in super::guard::IGNORED {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal::signal(sig, SigHandler::SigIgn) };
    }
    // Whatever the supervisor inherited from its own parent without close-on-exec is not the guards'.
    // SAFETY: nothing in this process owns a descriptor above 2 yet.
    unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    // Orphans of a dead guard come back here rather than to init (see the module docs). Available
    // since Linux 3.4; the guards need it too, and report when they cannot have it.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // The guards' ends come from a signalfd, and so do the orphans'; nothing is reaped behind our back.
    // SAFETY: SIG_DFL installs no handler code.
    let _ = unsafe { signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) };
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let Ok(sigchld) = mask
        .thread_block()
        .and_then(|()| SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC))
    else {
        return 1;
    };
    serve(&sigchld)
}

/// The spawner's loop: forks a guard per request, sweeps after dead guards, until the supervisor is
/// gone. Returns the process exit code.
fn serve(sigchld: &SignalFd) -> i32 {
    let mut spawner = Children::default();
    loop {
        let mut fds = [
            PollFd::new(
                // SAFETY: fd 0 is the request socket, open for the life of the process.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(0) },
                PollFlags::POLLIN,
            ),
            PollFd::new(sigchld.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return 1,
        }
        let request_ready = fds[0].any().unwrap_or(false);
        if fds[1].any().unwrap_or(false) {
            while let Ok(Some(_)) = sigchld.read_signal() {}
            // A guard that ended, or an orphan that did: whatever a dead guard left behind goes now.
            spawner.sweep();
        }
        if request_ready {
            match receive() {
                Received::Request(Request::Guard, fds) if fds.len() >= 3 => {
                    if let Some(pid) = fork_guard(&fds) {
                        spawner.guards.insert(pid);
                    }
                }
                Received::Request(Request::Sweep { guard }, fds) => {
                    let left = spawner.sweep_after(Pid::from_raw(guard));
                    if let Some(reply) = fds.first() {
                        let line = serde_json::to_string(&Swept { left }).unwrap_or_default();
                        let _ = nix::unistd::write(reply, format!("{line}\n").as_bytes());
                    }
                }
                Received::Request(..) | Received::Nothing => {}
                Received::End => {
                    // The supervisor is gone. Running guards see that on their own control sockets.
                    spawner.sweep();
                    return 0;
                }
            }
            // Dropping the received descriptors closes the spawner's copies.
        }
    }
}

/// What one read of the request socket gave.
enum Received {
    Request(Request, Vec<OwnedFd>),
    /// Interrupted, or a message this spawner does not understand (its descriptors are closed).
    Nothing,
    /// End of file or an error: the supervisor is gone.
    End,
}

fn receive() -> Received {
    let mut payload = [0u8; MAX_REQUEST];
    let mut iov = [IoSliceMut::new(&mut payload)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (bytes, truncated, fds) =
        match recvmsg::<()>(0, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                let fds: Vec<OwnedFd> = msg
                    .cmsgs()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| match c {
                        ControlMessageOwned::ScmRights(fds) => Some(fds),
                        _ => None,
                    })
                    .flatten()
                    // SAFETY: descriptors received with SCM_RIGHTS are new in this process, and ours.
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                    .collect();
                (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC), fds)
            }
            Err(Errno::EINTR | Errno::EAGAIN) => return Received::Nothing,
            Err(_) => return Received::End,
        };
    if bytes == 0 {
        return Received::End;
    }
    match serde_json::from_slice(&payload[..bytes]) {
        Ok(request) if !truncated => Received::Request(request, fds),
        _ => Received::Nothing,
    }
}

/// The spawner's children: the guards it forked, and strangers, which came back from a dead guard.
#[derive(Default)]
struct Children {
    /// Guards forked and not yet reaped.
    guards: HashSet<Pid>,
}

impl Children {
    /// Reaps every child that has ended.
    fn reap(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.guards.remove(&pid);
                    }
                }
            }
        }
    }

    /// Kills every child that is not a guard, with all its descendants, until none is left (or
    /// [`SWEEP_LIMIT`] has passed); returns how many processes were still there then.
    fn sweep(&mut self) -> usize {
        let until = Instant::now() + SWEEP_LIMIT;
        loop {
            self.reap();
            let strangers: Vec<Pid> = children_of(Pid::this())
                .into_iter()
                .filter(|pid| !self.guards.contains(pid))
                .collect();
            if strangers.is_empty() {
                return 0;
            }
            let mut all = Vec::new();
            for pid in strangers {
                all.push(pid);
                all.extend(descendants_of(pid));
            }
            if Instant::now() >= until {
                return all.len();
            }
            for pid in all {
                let _ = kill(pid, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// [`Children::sweep`] once `guard` is reaped: its orphans are ours by then (the kernel hands a
    /// dying process's children on before it tells the parent). The supervisor asks only after the
    /// guard's control socket closed, that is once the guard is exiting, so this wait is short; it is
    /// bounded all the same.
    fn sweep_after(&mut self, guard: Pid) -> usize {
        let until = Instant::now() + SWEEP_LIMIT;
        self.reap();
        while self.guards.contains(&guard) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
            self.reap();
        }
        self.sweep()
    }
}

/// Forks one guard with `fds` = control socket, stdout, stderr and maybe the deadline page; returns
/// its pid.
fn fork_guard(fds: &[OwnedFd]) -> Option<Pid> {
    // SAFETY: the spawner is single-threaded, so the child may do anything a process may.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = become_guard(fds);
            // Skip destructors and atexit handlers: they belong to the spawner.
            // SAFETY: _exit ends the process at once.
            unsafe { nix::libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => Some(child),
        Err(e) => {
            let why = format!("fork a guard: {e}");
            let _ = nix::unistd::write(&fds[0], &FromGuard::Failed { why }.line());
            None
        }
    }
}

/// In the forked child: puts the descriptors in place and runs the guard.
fn become_guard(fds: &[OwnedFd]) -> i32 {
    // The spawner's SIGCHLD stays blocked: the guard reads it from a signalfd of its own too.
    // A group of its own: a signal to the supervisor's group (Ctrl-Z) must not reach it.
    if nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0)).is_err() {
        return 1;
    }
    // The received descriptors are all above 2 (the spawner holds 0, 1 and 2), so nothing is
    // overwritten before it is copied; fd 3 may be one of them, and is copied before it is replaced.
    for (target, fd) in fds.iter().take(MAX_FDS).enumerate() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let target = target as RawFd;
        if fd.as_raw_fd() != target {
            // SAFETY: dup2 onto a number this process owns or that is free.
            if unsafe { nix::libc::dup2(fd.as_raw_fd(), target) } < 0 {
                return 1;
            }
        }
    }
    let first_free: u32 = if fds.len() > 3 { 4 } else { 3 };
    // SAFETY: closes only descriptors above the ones just put in place; the `OwnedFd`s among them are
    // never used or dropped again (this process ends with _exit).
    unsafe { nix::libc::syscall(nix::libc::SYS_close_range, first_free, u32::MAX, 0u32) };
    crate::process::guard::main()
}

/// The supervisor's handle on its spawner.
struct Spawner {
    socket: AsyncFd<OwnedFd>,
    /// Held so that tokio reaps it once it is dropped.
    _process: tokio::process::Child,
}

/// The current spawner, started at the first spawn and again after it died.
static SPAWNER: tokio::sync::Mutex<Option<Arc<Spawner>>> = tokio::sync::Mutex::const_new(None);

impl Spawner {
    fn start() -> io::Result<Spawner> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let flags = nix::fcntl::fcntl(&ours, nix::fcntl::FcntlArg::F_GETFL)?;
        nix::fcntl::fcntl(
            &ours,
            nix::fcntl::FcntlArg::F_SETFL(
                nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK,
            ),
        )?;
        let process = tokio::process::Command::new("/proc/self/exe")
            .arg0("zk-supervise")
            .arg("__guards")
            .process_group(0)
            .stdin(Stdio::from(theirs))
            // Not the supervisor's stderr: a write there, when nobody reads it, would block the spawner
            // and with it every start of a child. The spawner writes nothing; each guard gets the child's
            // pipes as its stdout and stderr.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // systemd's notification socket and watchdog are the supervisor's, not the workers'.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .spawn()?;
        tracing::debug!(target: LOG_TARGET, pid = process.id(), "started the guard spawner");
        // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which alone owns it until it is dropped.
        let socket = unsafe { AsyncFd::register_with_interest(ours, Interest::WRITABLE) }
            .map_err(io::Error::from)?;
        Ok(Spawner {
            socket,
            _process: process,
        })
    }

    async fn send(&self, request: &Request, fds: &[RawFd]) -> io::Result<()> {
        let payload = serde_json::to_vec(request).map_err(io::Error::other)?;
        debug_assert!(payload.len() <= MAX_REQUEST);
        loop {
            let mut ready = self.socket.writable().await?;
            let sent = ready.try_io(|socket| {
                sendmsg::<()>(
                    socket.get_ref().as_raw_fd(),
                    &[IoSlice::new(&payload)],
                    &[ControlMessage::ScmRights(fds)],
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(io::Error::from)
            });
            if let Ok(result) = sent {
                return result.map(|_| ());
            }
        }
    }
}

/// The current spawner, started if there is none.
async fn current() -> io::Result<Arc<Spawner>> {
    let mut current = SPAWNER.lock().await;
    Ok(match current.as_ref() {
        Some(s) => s.clone(),
        None => current.insert(Arc::new(Spawner::start()?)).clone(),
    })
}

/// Starts the spawner ahead of the first child, so that the first takeover does not wait for it. A
/// failure is only logged: the first spawn tries again, and reports its own error.
pub async fn prepare() {
    if let Err(e) = current().await {
        tracing::warn!(target: LOG_TARGET, error = %e, "cannot start the guard spawner yet");
    }
}

/// Asks the spawner for a guard with `fds` (control socket, stdout, stderr, and the deadline page if
/// any) on its fds 0 to 3. Starts a spawner if there is none or the last one is gone. Returns the
/// spawner that forked it, which alone can sweep after it ([`Forked::sweep`]).
///
/// # Errors
/// The spawner cannot be started, or refuses the request twice.
pub async fn spawn_guard(fds: &[RawFd]) -> io::Result<Forked> {
    debug_assert!((3..=MAX_FDS).contains(&fds.len()));
    let mut last = None;
    for _ in 0..2 {
        let spawner = current().await?;
        match spawner.send(&Request::Guard, fds).await {
            Ok(()) => return Ok(Forked(spawner)),
            Err(e) => {
                tracing::warn!(target: LOG_TARGET, error = %e, "the guard spawner is gone; starting another");
                let mut current = SPAWNER.lock().await;
                if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, &spawner)) {
                    *current = None;
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no guard spawner")))
}

/// The spawner that forked a guard: the parent its orphans go back to when it dies.
pub struct Forked(Arc<Spawner>);

impl Forked {
    /// After the guard `pid` died without reporting its child's end: has the spawner wait until the
    /// guard is reaped, then kill every process that came back to it, and returns how many processes
    /// survived that for 5 s (0 normally).
    ///
    /// # Errors
    /// That spawner is gone (then the orphans went to init, and nothing here can find them) or does
    /// not answer within 10 s.
    ///
    /// # Cancellation safety
    /// Cancelling stops the wait, not the sweep.
    pub async fn sweep(&self, pid: i32) -> io::Result<usize> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        self.0
            .send(&Request::Sweep { guard: pid }, &[theirs.as_raw_fd()])
            .await?;
        drop(theirs);
        ours.set_nonblocking(true)?;
        let mut reply = tokio::io::BufReader::new(tokio::net::UnixStream::from_std(ours)?);
        let mut line = String::new();
        tokio::time::timeout(2 * SWEEP_LIMIT, reply.read_line(&mut line))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer from the spawner"))??;
        let swept: Swept = serde_json::from_str(&line)
            .map_err(|_| io::Error::other("the spawner ended before it answered"))?;
        Ok(swept.left)
    }
}
