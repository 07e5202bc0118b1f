//! The spawner: one small process per supervisor that forks every guard ([`crate::guard`]).
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
//! The spawner's stdin is one end of a `SOCK_SEQPACKET` socket pair. Each request is one message of one
//! byte carrying, as `SCM_RIGHTS`, the guard's control socket, the write ends of the child's stdout
//! and stderr pipes and, if there is one, the session's deadline page. The forked guard puts them on
//! fds 0, 1, 2 and 3, closes everything else, takes a process group of its own and runs
//! [`crate::guard::main`], which reads its spec from the control socket as before. Nothing comes back
//! on the request socket: the guard reports on its control socket, and if the fork fails the spawner
//! writes `failed ...` there itself.
//!
//! The spawner ignores the signals the guard ignores (it is in its own process group anyway), lets the
//! kernel reap the guards (`SIGCHLD` ignored; the supervisor learns their end from the control socket),
//! and exits when the request socket reaches end-of-file, that is when the supervisor is gone. If the
//! spawner dies, the supervisor starts another at the next spawn: running guards do not depend on it.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::unistd::{fork, ForkResult};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The most descriptors one request carries.
const MAX_FDS: usize = 4;

/// The spawner's entry point: `zk-supervise __guards`, with the request socket on fd 0. Returns the
/// process exit code.
#[must_use]
pub fn main() -> i32 {
    // Started through /proc/self/exe, the kernel names it `exe` (in `top`, `ps -e`, `pgrep`); the guards
    // inherit the name.
    let _ = nix::sys::prctl::set_name(c"zk-supervise");
    for sig in crate::guard::IGNORED {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal::signal(sig, SigHandler::SigIgn) };
    }
    // SAFETY: as above. The kernel reaps the guards; nobody here waits for them.
    let _ = unsafe { signal::signal(Signal::SIGCHLD, SigHandler::SigIgn) };
    // Whatever the supervisor inherited from its own parent without close-on-exec is not the guards'.
    // SAFETY: nothing in this process owns a descriptor above 2 yet.
    unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    loop {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let fds: Vec<OwnedFd> =
            match recvmsg::<()>(0, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(msg) if msg.bytes == 0 => return 0, // the supervisor is gone
                Ok(msg) => msg
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
                    .collect(),
                Err(Errno::EINTR) => continue,
                Err(_) => return 1,
            };
        if fds.len() >= 3 {
            fork_guard(&fds);
        }
        // Dropping `fds` closes the spawner's copies.
    }
}

/// Forks one guard with `fds` = control socket, stdout, stderr and maybe the deadline page.
fn fork_guard(fds: &[OwnedFd]) {
    // SAFETY: the spawner is single-threaded, so the child may do anything a process may.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = become_guard(fds);
            // Skip destructors and atexit handlers: they belong to the spawner.
            // SAFETY: _exit ends the process at once.
            unsafe { nix::libc::_exit(code) }
        }
        Ok(ForkResult::Parent { .. }) => {}
        Err(e) => {
            let _ = nix::unistd::write(&fds[0], format!("failed fork a guard: {e}\n").as_bytes());
        }
    }
}

/// In the forked child: puts the descriptors in place and runs the guard.
fn become_guard(fds: &[OwnedFd]) -> i32 {
    // The guard waits for its child itself.
    // SAFETY: SIG_DFL installs no handler code.
    let _ = unsafe { signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) };
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
    crate::guard::main()
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
        tracing::debug!(pid = process.id(), "started the guard spawner");
        // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which alone owns it until it is dropped.
        let socket = unsafe { AsyncFd::register_with_interest(ours, Interest::WRITABLE) }
            .map_err(io::Error::from)?;
        Ok(Spawner {
            socket,
            _process: process,
        })
    }

    async fn send(&self, fds: &[RawFd]) -> io::Result<()> {
        loop {
            let mut ready = self.socket.writable().await?;
            let sent = ready.try_io(|socket| {
                sendmsg::<()>(
                    socket.get_ref().as_raw_fd(),
                    &[IoSlice::new(b"g")],
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
        tracing::warn!(error = %e, "cannot start the guard spawner yet");
    }
}

/// Asks the spawner for a guard with `fds` (control socket, stdout, stderr, and the deadline page if
/// any) on its fds 0 to 3. Starts a spawner if there is none or the last one is gone.
///
/// # Errors
/// The spawner cannot be started, or refuses the request twice.
pub async fn spawn_guard(fds: &[RawFd]) -> io::Result<()> {
    debug_assert!((3..=MAX_FDS).contains(&fds.len()));
    let mut last = None;
    for _ in 0..2 {
        let spawner = current().await?;
        match spawner.send(fds).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "the guard spawner is gone; starting another");
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
