//! What everything in one test process shares: the temp root, and the watchdog that cleans up after a test
//! process that died without running destructors (a panic in a static initializer, a SIGKILL,
//! `process::exit`): every JVM and supervisor is registered with one watchdog shell per test process that
//! SIGKILLs them and removes the temp dirs when the pipe from the test process closes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Locks a mutex, ignoring poisoning: a panicking test must not take the rig down for the others.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// State shared by everything in one test process: the temp root and the watchdog.
struct Rig {
    /// `$TMPDIR/zk-supervise-tests-<pid>-<random>`; every [`TempDir`] lives inside.
    root: PathBuf,
    /// The watchdog's stdin. Lines `add <pid>` and `del <pid>` maintain the set of processes to kill; when this
    /// pipe closes (the test process exited, however) the watchdog SIGKILLs the set and removes `root`.
    watchdog: Mutex<ChildStdin>,
}

/// The watchdog: only shell builtins, and deaf to the terminal's Ctrl-C so it outlives the test process.
const WATCHDOG: &str = r#"trap '' INT TERM HUP
pids=
while read -r op pid; do
  case $op in
    add) pids="$pids $pid" ;;
    del) keep=; for p in $pids; do [ "$p" = "$pid" ] || keep="$keep $p"; done; pids=$keep ;;
  esac
done
[ -z "$pids" ] || kill -9 $pids 2>/dev/null
sleep 1
rm -rf -- "$1"
"#;

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        // Kept: the watchdog removes it once this process is gone, whatever way it went.
        let root = tempfile::Builder::new()
            .prefix(&format!("zk-supervise-tests-{}-", std::process::id()))
            .tempdir()
            .unwrap_or_else(|e| panic!("create the rig's temp root: {e}"))
            .keep();
        let mut child = Command::new("sh")
            .args(["-c", WATCHDOG, "sh"])
            .arg(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the watchdog shell: {e}"));
        let stdin = child.stdin.take().expect("watchdog stdin");
        // The watchdog is never waited for: it must outlive this process.
        std::mem::forget(child);
        Rig {
            root,
            watchdog: Mutex::new(stdin),
        }
    })
}

fn watchdog_line(line: &str) {
    let mut stdin = lock(&rig().watchdog);
    writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("tell the watchdog {line:?}: {e}"));
}

/// A directory under the rig's temp root, `<label>-<random>`, removed on drop (and by the watchdog if the
/// process dies).
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{label}-"))
            .tempdir_in(&rig().root)
            .unwrap_or_else(|e| panic!("create a temp dir in {}: {e}", rig().root.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A child process registered with the watchdog. Dropping it SIGKILLs and reaps it.
///
/// It is never reaped while registered (a reaped pid can be reused, and the watchdog would kill a stranger):
/// exit is observed with `waitid(WNOWAIT)`, and only then is it unregistered and reaped.
pub(crate) struct Guarded {
    child: Child,
    status: Option<ExitStatus>,
}

impl Guarded {
    pub(crate) fn spawn(command: &mut Command, what: &str) -> Guarded {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        watchdog_line(&format!("add {}", child.id()));
        Guarded {
            child,
            status: None,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (or was reaped), without reaping it.
    pub(crate) fn has_exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let pid = Pid::from_raw(self.pid() as i32);
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) => false,
            Ok(_) => true,
            Err(e) => panic!("waitid({pid}): {e}"),
        }
    }

    /// Reaps an exited process (blocks if it has not exited).
    pub(crate) fn reap(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        watchdog_line(&format!("del {}", self.pid()));
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait for pid {}: {e}", self.pid()));
        self.status = Some(status);
        status
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        watchdog_line(&format!("del {}", self.pid()));
        let _ = self.child.kill();
        self.reap()
    }

    pub(crate) fn signal(&self, signal: Signal) {
        assert!(
            self.status.is_none(),
            "signal {signal:?} to pid {}: it has already exited",
            self.pid()
        );
        kill(Pid::from_raw(self.pid() as i32), signal)
            .unwrap_or_else(|e| panic!("kill({}, {signal:?}): {e}", self.pid()));
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
