//! What `execve` takes, as Linux counts it: the longest string, and the room for a child's argv
//! and environment together. A command that the kernel would refuse is a config problem, found by
//! `check` rather than at the first start.

use std::collections::{BTreeMap, HashMap};

use super::MAX_NODE_ID_LEN;

/// Linux's `MAX_ARG_STRLEN` (32 pages of 4 KiB): the longest argument or environment string
/// (`NAME=value`) `execve` takes, counting the terminating NUL.
pub(crate) const MAX_ARG_STRLEN: usize = 32 * 4096;
/// The longest argument or `NAME=value` a config may write (the NUL is not written).
pub(super) const MAX_ARG_BYTES: usize = MAX_ARG_STRLEN - 1;

/// The room `execve` gives a child's argv and environment, as Linux counts it (`fs/exec.c`,
/// `bprm_stack_limits`): every argv and envp string with its NUL, the program's path, and one pointer
/// per string, within a quarter of the stack limit (`ulimit -s`; children inherit the daemon's),
/// capped at 6 MiB and never under 128 KiB. This is `sysconf(_SC_ARG_MAX)` with the kernel's cap.
///
/// A child's environment is the daemon's own, the worker's `env` (which overrides it), the
/// `ZK_SUPERVISE_*` variables, and `HOME`, `USER` and `LOGNAME` when it runs as a `user`. The
/// daemon's environment is taken to be the one `check` or the daemon itself runs with: a `check` run
/// from another shell than the service's counts what it sees.
#[derive(Clone, Debug)]
pub(super) struct ExecRoom {
    pub(super) arg_max: usize,
    /// The daemon's own variables, each as `execve` counts it (`NAME=value`, its NUL and a pointer).
    inherited: HashMap<String, usize>,
    inherited_total: usize,
    /// `ZK_SUPERVISE_NODE` and the part of `ZK_SUPERVISE_ZNODE` that does not depend on the worker:
    /// known once `[zookeeper]` and `[node]` are read.
    node_and_root: usize,
}

/// A pointer in argv or envp.
const POINTER: usize = std::mem::size_of::<usize>();
/// The kernel's cap on the room for arguments, whatever the stack limit (`_STK_LIM / 4 * 3`).
const MAX_ARG_ROOM: usize = 6 * 1024 * 1024;
/// The kernel's floor (`ARG_MAX`, 32 pages).
const MIN_ARG_ROOM: usize = 32 * 4096;
/// Room kept for a candidate's name in `ZK_SUPERVISE_ZNODE` (`_c_<32 hex>-n_<10 digits>`), and for
/// the program's path as `execve` copies it (a command found on `PATH` gets a directory in front).
const CANDIDATE_NAME_ROOM: usize = 64;
const PATH_ROOM: usize = 4096;
/// `HOME=<dir>`, `USER=<name>`, `LOGNAME=<name>` for a worker with `user`: room for the longest.
const USER_VARS_ROOM: usize =
    "HOME=".len() + PATH_ROOM + "USER=".len() + 256 + "LOGNAME=".len() + 256 + 3 * (1 + POINTER);

/// The room `execve` gives the argv and environment of a child of this process (see [`ExecRoom`]).
#[must_use]
pub(crate) fn arg_max() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let stack = getrlimit(Resource::RLIMIT_STACK).map_or(8 * 1024 * 1024, |(soft, _)| soft);
    usize::try_from(stack / 4)
        .unwrap_or(usize::MAX)
        .clamp(MIN_ARG_ROOM, MAX_ARG_ROOM)
}

impl ExecRoom {
    pub(super) fn of_this_process() -> ExecRoom {
        let arg_max = arg_max();
        let inherited: HashMap<String, usize> = std::env::vars_os()
            .map(|(k, v)| {
                let bytes = k.len() + 1 + v.len() + 1 + POINTER;
                (k.to_string_lossy().into_owned(), bytes)
            })
            .collect();
        let inherited_total = inherited.values().sum();
        ExecRoom {
            arg_max,
            inherited,
            inherited_total,
            node_and_root: "ZK_SUPERVISE_NODE=".len() + 4 * MAX_NODE_ID_LEN + 1 + POINTER + 1024,
        }
    }

    /// Sets what `[zookeeper]` and `[node]` add to every child's environment.
    pub(super) fn know(&mut self, chroot: Option<&str>, root: &str, node_id: Option<&str>) {
        let chroot = chroot.map_or(0, str::len);
        let node = node_id.map_or(4 * MAX_NODE_ID_LEN, str::len);
        self.node_and_root = "ZK_SUPERVISE_NODE=".len() + node + 1 + POINTER + chroot + root.len();
    }

    /// The bytes `execve` will count for `argv` run as `worker` with `env` (the worker's merged
    /// `env`) and `user`, and a description of them.
    pub(super) fn count(
        &self,
        worker: &str,
        argv: &[String],
        env: &BTreeMap<String, String>,
        user: bool,
    ) -> (usize, String) {
        let args: usize = argv.iter().map(|a| a.len() + 1 + POINTER).sum::<usize>() + PATH_ROOM;
        let own: usize = env
            .iter()
            .map(|(k, v)| k.len() + 1 + v.len() + 1 + POINTER)
            .sum();
        let overridden: usize = env.keys().filter_map(|k| self.inherited.get(k)).sum();
        let inherited = self.inherited_total - overridden;
        let supervisor = self.node_and_root
            + "ZK_SUPERVISE_WORKER=".len()
            + worker.len()
            + 1
            + "ZK_SUPERVISE_ZNODE=".len()
            + 2
            + worker.len()
            + CANDIDATE_NAME_ROOM
            + 1
            + "ZK_SUPERVISE_FENCING_TOKEN=".len()
            + 20
            + 1
            + 3 * POINTER
            + if user { USER_VARS_ROOM } else { 0 };
        let total = args + own + inherited + supervisor;
        let detail = format!(
            "arguments {args} (with room for the program's path), env {own}, the inherited \
             environment (this process's) {inherited}, ZK_SUPERVISE_*{} {supervisor}; each string counted with its NUL \
             and a {POINTER}-byte pointer",
            if user { ", HOME, USER and LOGNAME" } else { "" }
        );
        (total, detail)
    }
}
