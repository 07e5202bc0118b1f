//! Starting the child, in the guard: `user` and `group`, the working directory, the limit on open
//! files, the parent-death signal, and the lease checked one last time just before `exec`.
//!
//! The lease is checked when the spec arrives ([`super::guard`]) and again here, in the forked child
//! just before `exec`, after the `user` and `group` lookups (NSS: LDAP or SSSD can block for seconds
//! while the network is down) and the `chdir`: a child starts only while `K` is more than the grace
//! period away. The child starts with an empty signal mask and default dispositions, and its
//! parent-death signal is set after its credentials change (a change of credentials clears it).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{self, SigHandler, SigSet, Signal};
use nix::unistd::{Pid, Uid};

use super::credentials::{credentials, needs_root, Credentials, Ids};
use super::protocol::Spec;
use crate::lease::{DeadlineView, Stamp};

/// The `errno` the forked child reports when it finds the lease over just before `exec`: one no
/// step of starting a command (`setgroups`, `setuid`, `setrlimit`, `chdir`, `execve`) can fail with.
const LEASE_OVER: i32 = nix::libc::ETIME;

/// The lease as the guard, and the forked child just before `exec`, check it: `K` from the spec, or
/// later if the shared page moved since. The child starts only if `K` is more than the grace
/// period away, as the supervisor checked before asking (SPEC §5); a child started later would get
/// its stop signal at once.
#[derive(Clone, Copy)]
pub(super) struct LeaseAtExec {
    pub deadline: Stamp,
    pub view: Option<&'static DeadlineView>,
    pub grace: Duration,
}

// SAFETY: the view is a read-only mapping that is never unmapped, read only through an atomic; the
// value is only used by the guard's one thread and, after `fork`, by the child's.
unsafe impl Send for LeaseAtExec {}
// SAFETY: as above.
unsafe impl Sync for LeaseAtExec {}

impl LeaseAtExec {
    fn deadline(&self) -> Stamp {
        self.view
            .map_or(self.deadline, |v| self.deadline.max(v.load()))
    }

    pub(super) fn holds(&self) -> bool {
        Stamp::now().plus(self.grace) < self.deadline()
    }

    /// What the guard answers ([`super::protocol::FromGuard::Refused`]) when the lease no longer
    /// holds for the grace period: not a failure of the command, and the supervisor waits for a
    /// renewal rather than counting it. It says what was seen, so that a slow start (a spec that
    /// took long to arrive, a slow user lookup) is not taken for a lease that ended on its own.
    pub(super) fn refusal(&self, spec_took: Duration) -> String {
        let (now, k) = (Stamp::now(), self.deadline());
        let left = if k > now {
            format!("it ends in {:?}", k.since(now))
        } else {
            format!("it ended {:?} ago", now.since(k))
        };
        format!(
            "the lease does not hold for the grace period ({:?}): {left}; the spec took \
             {spec_took:?} to arrive",
            self.grace
        )
    }
}

/// Why [`spawn`] started nothing.
pub(super) enum NotStarted {
    /// The lease no longer held for the grace period when the child was about to `exec`.
    Lease,
    /// A message for the log (`spawn /bin/x: No such file or directory`).
    Failed(String),
}

/// `close_range(2)`'s flag to mark descriptors close-on-exec rather than close them (Linux 5.11).
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

/// Starts the child, unless the lease no longer holds for the grace period just before `exec`.
pub(super) fn spawn(spec: &Spec, lease: LeaseAtExec) -> Result<Pid, NotStarted> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(NotStarted::Failed("empty command".into()));
    };
    let creds = identity(spec, program)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .process_group(0);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    if let Some((home, name)) = creds.as_ref().and_then(|c| c.home.as_ref()) {
        cmd.env("HOME", home).env("USER", name).env("LOGNAME", name);
    }
    let as_user = creds.is_some();
    let guard_pid = nix::unistd::getpid();
    let nofile = spec.nofile;
    // SAFETY: the guard is single-threaded, so between fork and exec the child may call anything; the
    // closure only makes system calls.
    unsafe {
        cmd.pre_exec(move || before_exec(creds.as_ref(), nofile, guard_pid, &lease));
    }
    match cmd.spawn() {
        #[allow(clippy::cast_possible_wrap)]
        Ok(child) => Ok(Pid::from_raw(child.id() as i32)),
        Err(e) if e.raw_os_error() == Some(LEASE_OVER) => Err(NotStarted::Lease),
        Err(e) if e.raw_os_error() == Some(nix::libc::E2BIG) => Err(NotStarted::Failed(format!(
            "spawn {program}: {}",
            too_big(spec, as_user)
        ))),
        Err(e) => Err(NotStarted::Failed(format!("spawn {program}: {e}"))),
    }
}

/// What the guard checks before it forks: the working directory is one, and the worker's `user` and
/// `group` exist and may be taken by this process. Returns the credentials to take, if any.
fn identity(spec: &Spec, program: &str) -> Result<Option<Credentials>, NotStarted> {
    if let Some(dir) = &spec.working_dir {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(NotStarted::Failed(format!(
                    "working_dir {dir}: not a directory"
                )))
            }
            Err(e) => return Err(NotStarted::Failed(format!("working_dir {dir}: {e}"))),
        }
    }
    let creds = credentials(spec.user.as_deref(), spec.group.as_deref())
        .map_err(|e| NotStarted::Failed(e.to_string()))?;
    if let Some(why) = creds.as_ref().and_then(|c| {
        needs_root(
            c,
            Ids::current(),
            spec.user.as_deref(),
            spec.group.as_deref(),
        )
    }) {
        return Err(NotStarted::Failed(format!("spawn {program}: {why}")));
    }
    Ok(creds)
}

/// In the forked child, between `fork` and `exec`: takes `creds` and the limit on open files, sets
/// the parent-death signal, checks the lease one last time, and leaves the command nothing of the
/// guard's (descriptors, signal mask, dispositions). An error stops the `exec`, and the guard's
/// `spawn` returns it (`LEASE_OVER` for the lease).
///
/// Only system calls: it runs in a forked copy of the guard, which is single-threaded.
fn before_exec(
    creds: Option<&Credentials>,
    nofile: Option<u64>,
    guard_pid: Pid,
    lease: &LeaseAtExec,
) -> io::Result<()> {
    if let Some(c) = creds {
        if Uid::effective().is_root() {
            nix::unistd::setgroups(&c.groups)?;
        }
        nix::unistd::setgid(c.gid)?;
        nix::unistd::setuid(c.uid)?;
    }
    if let Some(soft) = nofile {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
        setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard)?;
    }
    // After the credentials: changing them clears the parent-death signal.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid() != guard_pid {
        // The guard died before PR_SET_PDEATHSIG was in place.
        return Err(io::Error::other("guard exited"));
    }
    // The last moment before the command runs: the lookups above, a `chdir` on a hung
    // network file system or a busy host may have taken the time the lease had left.
    if !lease.holds() {
        return Err(io::Error::from_raw_os_error(LEASE_OVER));
    }
    // No descriptor but stdin, stdout and stderr reaches the worker: whatever the supervisor
    // inherited from its own parent without close-on-exec gets it now. (Marked, not closed:
    // the pipe that reports a failed exec back to the guard must stay open until the exec.)
    // SAFETY: marks descriptors close-on-exec; frees nothing and touches no memory.
    let marked = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3u32,
            u32::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked != 0 {
        for fd in 3..1024 {
            // SAFETY: as above, one descriptor at a time (before Linux 5.11).
            unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC) };
        }
    }
    // The child starts as a fresh process would: no blocked signals (the guard blocks SIGCHLD for
    // its signalfd) and default dispositions (the guard ignores job-control and stop signals).
    SigSet::empty().thread_set_mask()?;
    for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: SIG_DFL installs no handler code.
        unsafe { signal::signal(sig, SigHandler::SigDfl) }?;
    }
    Ok(())
}

/// Why `execve` said E2BIG ("Argument list too long"), in the kernel's terms: one string over
/// `MAX_ARG_STRLEN`, or the whole over `ARG_MAX` (the config is checked against both, but the
/// daemon's own environment, or its stack limit, may have changed since).
fn too_big(spec: &Spec, user: bool) -> String {
    let max_string = crate::config::MAX_ARG_STRLEN;
    let pointer = std::mem::size_of::<usize>();
    let inherited = std::env::vars_os().filter(|(k, _)| {
        !spec
            .env
            .iter()
            .any(|(name, _)| k.as_os_str() == name.as_str())
    });
    let env: Vec<usize> = spec
        .env
        .iter()
        .map(|(k, v)| k.len() + 1 + v.len() + 1)
        .chain(inherited.map(|(k, v)| k.len() + 1 + v.len() + 1))
        .collect();
    let args: Vec<usize> = spec.argv.iter().map(|a| a.len() + 1).collect();
    if args.iter().chain(&env).any(|&n| n > max_string) {
        return format!(
            "an argument or environment string is longer than the kernel's limit of {} bytes \
             (MAX_ARG_STRLEN, {max_string} with its NUL); execve: Argument list too long",
            max_string - 1
        );
    }
    let strings = args.len() + env.len() + if user { 3 } else { 0 };
    let total = args.iter().chain(&env).sum::<usize>() + strings * pointer;
    format!(
        "arguments and environment come to about {total} bytes ({} arguments, {} environment strings \
         including the daemon's own, each with its NUL and a pointer), over the kernel's limit of {} \
         (ARG_MAX: a quarter of the stack limit); execve: Argument list too long",
        args.len(),
        env.len(),
        crate::config::arg_max()
    )
}

#[cfg(test)]
mod tests {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::User;

    use super::*;

    fn spec(argv: &[&str]) -> Spec {
        // A user to look up, as a worker with `user` has: the lookups come before the last check.
        let me = User::from_uid(Uid::current())
            .expect("look up the current user")
            .expect("a user");
        Spec {
            worker: "w".into(),
            argv: argv.iter().map(|&a| a.to_owned()).collect(),
            env: Vec::new(),
            working_dir: None,
            user: Some(me.name),
            group: None,
            stop_signal: Signal::SIGTERM as i32,
            grace_ms: 1000,
            deadline_ns: 0,
            nofile: None,
            shared_deadline: false,
        }
    }

    /// Issue 12, 5: when `execve` says E2BIG, the failure names the kernel's limit that was passed,
    /// not a lease or a bare "Argument list too long".
    #[test]
    fn an_argument_list_too_long_names_the_limit() {
        let lease = LeaseAtExec {
            deadline: Stamp::now().plus(Duration::from_secs(600)),
            view: None,
            grace: Duration::from_secs(1),
        };
        let long = "a".repeat(crate::config::MAX_ARG_STRLEN);
        let Err(NotStarted::Failed(why)) = spawn(&spec(&["/bin/true", &long]), lease) else {
            panic!("started with an argument of MAX_ARG_STRLEN bytes");
        };
        assert!(
            why.starts_with("spawn /bin/true: an argument or environment string is longer than the kernel's limit of 131071 bytes (MAX_ARG_STRLEN"),
            "{why}"
        );
        let piece = "b".repeat(100_000);
        let many: Vec<&str> = std::iter::once("/bin/true")
            .chain(std::iter::repeat_n(
                piece.as_str(),
                crate::config::arg_max() / 100_000 + 2,
            ))
            .collect();
        let Err(NotStarted::Failed(why)) = spawn(&spec(&many), lease) else {
            panic!("started with arguments over ARG_MAX");
        };
        assert!(
            why.contains(&format!(
                "over the kernel's limit of {} (ARG_MAX",
                crate::config::arg_max()
            )),
            "{why}"
        );
    }

    /// Issue 12, 5: a refusal says what the guard saw: how far the lease's end is, the grace period,
    /// and how long the spec took to arrive.
    #[test]
    fn a_refusal_says_what_was_seen() {
        let lease = LeaseAtExec {
            deadline: Stamp::now().minus(Duration::from_secs(2)),
            view: None,
            grace: Duration::from_secs(1),
        };
        let why = lease.refusal(Duration::from_millis(1500));
        assert!(
            why.starts_with("the lease does not hold for the grace period (1s): it ended ")
                && why.ends_with(" ago; the spec took 1.5s to arrive"),
            "{why}"
        );
    }

    /// Issue 11, 5a: the guard checks the lease when the spec arrives, but resolving `user` and `group`
    /// (NSS: LDAP, SSSD) can block for seconds after that. `spawn` checks it again in the forked child,
    /// after those lookups and just before `exec`, and starts nothing once it no longer holds for the
    /// grace period; a renewal on the shared page since the spec was sent counts.
    #[test]
    fn the_lease_is_checked_again_just_before_exec() {
        let true_spec = spec(&["/bin/true"]);
        let grace = Duration::from_secs(1);
        let lapsed = LeaseAtExec {
            deadline: Stamp::now(),
            view: None,
            grace,
        };
        assert!(matches!(spawn(&true_spec, lapsed), Err(NotStarted::Lease)));
        let within_grace = LeaseAtExec {
            deadline: Stamp::now().plus(grace / 2),
            view: None,
            grace,
        };
        assert!(matches!(
            spawn(&true_spec, within_grace),
            Err(NotStarted::Lease)
        ));
        let lease = crate::lease::Lease::new(Duration::from_secs(10), Duration::from_millis(200));
        lease.started(Stamp::now());
        let page = lease.shared().expect("a shared page");
        let view = DeadlineView::map(page.fd()).expect("map the page");
        let renewed = LeaseAtExec {
            deadline: Stamp::now(),
            view: Some(Box::leak(Box::new(view))),
            grace,
        };
        let child = match spawn(&true_spec, renewed) {
            Ok(pid) => pid,
            Err(NotStarted::Lease) => panic!("refused under a renewed lease"),
            Err(NotStarted::Failed(why)) => panic!("{why}"),
        };
        assert_eq!(waitpid(child, None), Ok(WaitStatus::Exited(child, 0)));
        // A command that cannot start is still reported as such, not as the lease.
        let missing = LeaseAtExec {
            deadline: Stamp::now().plus(Duration::from_secs(60)),
            view: None,
            grace,
        };
        assert!(matches!(
            spawn(&spec(&["/nonexistent/x"]), missing),
            Err(NotStarted::Failed(why)) if why.contains("No such file")
        ));
    }
}
