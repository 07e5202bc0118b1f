//! The rules that involve more than one value, and the `[defaults]` merge with its blame.
//!
//! A worker's effective value is its own, else the `[defaults]` one, else the built-in default
//! ([`resolve`]); `env` and `health_check` are merged key by key, the worker's keys winning, and a
//! worker cannot switch off a health check that `[defaults]` gives it.
//!
//! A check that involves two values (`max_restart_delay >= restart_delay`, the lease bound on
//! `grace_period`, `timeout <= interval`, the room `execve` gives a command and its environment) is
//! reported where the offending value was written ([`blame`]): in the worker when it set one of
//! them, else once in `[defaults]`, however many workers inherit it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::duration::format_duration;
use super::error::Problems;
use super::exec::ExecRoom;
use super::{HealthCheck, WorkerConfig};

/// Built-in defaults of a worker's keys (SPEC §3).
const GRACE_PERIOD: Duration = Duration::from_secs(5);
const RESTART_DELAY: Duration = Duration::from_secs(1);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
const HANDOFF_AFTER: u32 = 5;
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
const HEALTH_FAILURES: u32 = 3;

/// A value as read from one table: absent, present but invalid (already reported), or valid
/// with the byte offset where it was written.
#[derive(Default)]
pub(super) enum Field<T> {
    #[default]
    Unset,
    Bad,
    Set(T, usize),
}

impl<T> Field<T> {
    pub(super) fn get(&self) -> Option<&T> {
        match self {
            Field::Set(v, _) => Some(v),
            _ => None,
        }
    }

    pub(super) fn at(&self) -> Option<usize> {
        match self {
            Field::Set(_, at) => Some(*at),
            _ => None,
        }
    }

    pub(super) fn into_option(self) -> Option<T> {
        match self {
            Field::Set(v, _) => Some(v),
            _ => None,
        }
    }
}

/// The keys of a `[[worker]]` or `[defaults]`, as read from one of them.
#[derive(Default)]
pub(super) struct Fields {
    /// Only a worker's: `[defaults]` may not set it.
    pub(super) command: Field<Vec<String>>,
    pub(super) working_dir: Field<PathBuf>,
    pub(super) env: Field<BTreeMap<String, String>>,
    pub(super) user: Field<String>,
    pub(super) group: Field<String>,
    pub(super) stop_signal: Field<Signal>,
    pub(super) grace_period: Field<Duration>,
    pub(super) restart_delay: Field<Duration>,
    pub(super) max_restart_delay: Field<Duration>,
    pub(super) handoff_after: Field<u32>,
    pub(super) health_check: Field<HealthFields>,
}

#[derive(Default)]
pub(super) struct HealthFields {
    pub(super) command: Field<Vec<String>>,
    pub(super) interval: Field<Duration>,
    pub(super) timeout: Field<Duration>,
    pub(super) failures: Field<u32>,
}

/// What the lease bound on `grace_period` depends on, and where each was set (`None`: the default).
#[derive(Clone, Copy)]
pub(super) struct LeaseSettings {
    pub(super) session_timeout: Duration,
    pub(super) session_timeout_at: Option<usize>,
    pub(super) server_tick: Duration,
    pub(super) server_tick_at: Option<usize>,
}

/// Which table an effective worker value came from.
#[derive(Clone, Copy)]
enum Origin {
    Worker(usize),
    Defaults(usize),
    Builtin,
}

/// One `[[worker]]` as the walker read it: where it is and how it is named in messages.
pub(super) struct ReadWorker<'a> {
    /// `worker "name"`, or `worker #3` when it has no usable name.
    pub(super) label: &'a str,
    /// The offset of its `[[worker]]` header.
    pub(super) header: usize,
    /// Its name, if valid and not a duplicate.
    pub(super) name: Option<String>,
    pub(super) fields: &'a Fields,
}

/// `worker` merged with `[defaults]` and the built-in defaults, and checked against the rules that
/// involve several values, each problem reported where it was written. `None` if a value it needs
/// is missing or bad; the caller refuses the worker when anything at all was reported about it.
///
/// `lease` is `None` when `session_timeout` or `server_tick` is bad (already reported).
pub(super) fn worker(
    problems: &mut Problems<'_>,
    exec: &ExecRoom,
    worker: ReadWorker<'_>,
    defaults: &Fields,
    lease: Option<LeaseSettings>,
) -> Option<WorkerConfig> {
    let ReadWorker {
        label,
        header,
        name,
        fields: w,
    } = worker;
    let d = defaults;
    let grace = resolve(&w.grace_period, &d.grace_period, GRACE_PERIOD);
    if let (Some((grace, origin)), Some(lease)) = (grace, lease) {
        check_grace(problems, label, grace, origin, lease);
    }
    let restart = restart_delays(problems, label, w, d);
    let health = merged_health(problems, label, header, &w.health_check, &d.health_check);
    let env = merged_env(&w.env, &d.env);
    let user = resolve_opt(&w.user, &d.user);
    let command = w.command.get().cloned();
    if let (Some(name), Some(env)) = (&name, &env) {
        let as_user = matches!(user, Some(Some(_)));
        let health_command = health
            .as_ref()
            .and_then(|h| h.as_ref().map(|h| (&h.command, "health_check.command")));
        let commands = command.as_ref().map(|c| (c, "command")).into_iter();
        for (argv, key) in commands.chain(health_command) {
            check_exec_room(
                problems,
                exec,
                (label, header),
                (name, argv, key),
                env,
                as_user,
            );
        }
    }
    let (restart_delay, max_restart_delay) = restart?;
    Some(WorkerConfig {
        name: name?,
        command: command?,
        working_dir: resolve_opt(&w.working_dir, &d.working_dir)?,
        env: env?,
        user: user?,
        group: resolve_opt(&w.group, &d.group)?,
        stop_signal: resolve(&w.stop_signal, &d.stop_signal, Signal::SIGTERM)?.0,
        grace_period: grace?.0,
        restart_delay,
        max_restart_delay,
        handoff_after: resolve(&w.handoff_after, &d.handoff_after, HANDOFF_AFTER)?.0,
        health_check: health?,
    })
}

/// `restart_delay` and `max_restart_delay`, the second no shorter than the first.
fn restart_delays(
    problems: &mut Problems<'_>,
    label: &str,
    w: &Fields,
    d: &Fields,
) -> Option<(Duration, Duration)> {
    let (r, r_origin) = resolve(&w.restart_delay, &d.restart_delay, RESTART_DELAY)?;
    let (m, m_origin) = resolve(
        &w.max_restart_delay,
        &d.max_restart_delay,
        MAX_RESTART_DELAY,
    )?;
    if m < r {
        if let Some((who, at)) = blame(label, &[m_origin, r_origin]) {
            problems.at(
                at,
                format!(
                    "{who}: max_restart_delay {} is shorter than restart_delay {}",
                    format_duration(m),
                    format_duration(r)
                ),
            );
        }
    }
    Some((r, m))
}

/// The `[defaults]` env with the worker's over it; `None` if either is bad.
fn merged_env(
    worker: &Field<BTreeMap<String, String>>,
    defaults: &Field<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for f in [defaults, worker] {
        match f {
            Field::Bad => return None,
            Field::Set(vars, _) => env.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone()))),
            Field::Unset => {}
        }
    }
    Some(env)
}

/// The whole of `argv` (the worker's `key`) with the child's environment must fit the room
/// `execve` gives ([`ExecRoom`]); reported at the worker's header, since no one value is at fault.
fn check_exec_room(
    problems: &mut Problems<'_>,
    exec: &ExecRoom,
    (label, header): (&str, usize),
    (name, argv, key): (&str, &[String], &str),
    env: &BTreeMap<String, String>,
    user: bool,
) {
    let (total, detail) = exec.count(name, argv, env, user);
    if total > exec.arg_max {
        problems.at(
            header,
            format!(
                "{label}: {key} and environment come to {total} bytes as execve counts them, \
                 over the kernel's limit of {} (ARG_MAX: a quarter of the stack limit, at most \
                 6 MiB); {detail}",
                exec.arg_max
            ),
        );
    }
}

/// The lease bound of SPEC §3 on one worker's effective `grace_period`
/// ([`crate::lease::max_grace_period`]).
fn check_grace(
    problems: &mut Problems<'_>,
    label: &str,
    grace: Duration,
    origin: Origin,
    lease: LeaseSettings,
) {
    let max = crate::lease::max_grace_period(lease.session_timeout, lease.server_tick);
    if grace <= max {
        return;
    }
    let (g, s, t, m) = (
        format_duration(grace),
        format_duration(lease.session_timeout),
        format_duration(lease.server_tick),
        format_duration(max),
    );
    let fix = "shorten grace_period or raise session_timeout (or lower server_tick if the \
               servers' tickTime is shorter)";
    match (
        blame(label, &[origin]),
        lease.session_timeout_at.or(lease.server_tick_at),
    ) {
        (Some((who, at)), _) => problems.at(
            at,
            format!(
                "{who}: grace_period {g} does not fit the lease: with session_timeout {s} and \
                 server_tick {t} it must be at most {m}; {fix}"
            ),
        ),
        // The built-in grace period only fails against an explicit session_timeout or tick.
        (None, Some(at)) => problems.at(
            at,
            format!(
                "zookeeper: session_timeout {s} and server_tick {t} leave room for a \
                 grace_period of at most {m}, less than the default {g}; raise \
                 session_timeout, lower server_tick if the servers' tickTime is shorter, or \
                 set a shorter grace_period in [defaults]"
            ),
        ),
        (None, None) => {}
    }
}

/// The worker's health check merged over the `[defaults]` one; `None` if it has problems.
fn merged_health(
    problems: &mut Problems<'_>,
    label: &str,
    header: usize,
    worker: &Field<HealthFields>,
    defaults: &Field<HealthFields>,
) -> Option<Option<HealthCheck>> {
    let (w, d, table_origin) = match (worker, defaults) {
        (Field::Bad, _) | (_, Field::Bad) => return None,
        (Field::Unset, Field::Unset) => return Some(None),
        (Field::Set(w, at), Field::Set(d, _)) => (Some(w), Some(d), Origin::Worker(*at)),
        (Field::Set(w, at), Field::Unset) => (Some(w), None, Origin::Worker(*at)),
        (Field::Unset, Field::Set(d, at)) => (None, Some(d), Origin::Defaults(*at)),
    };
    let unset = HealthFields::default();
    let (w, d) = (w.unwrap_or(&unset), d.unwrap_or(&unset));
    let command = resolve_opt(&w.command, &d.command);
    let interval = resolve(&w.interval, &d.interval, HEALTH_INTERVAL);
    let timeout = resolve(&w.timeout, &d.timeout, HEALTH_TIMEOUT);
    let failures = resolve(&w.failures, &d.failures, HEALTH_FAILURES);
    if let Some(None) = command {
        let (who, at) = blame(label, &[table_origin]).unwrap_or((label.to_owned(), header));
        problems.at(at, format!("{who}: health_check: command is required"));
    }
    if let (Some((i, i_origin)), Some((t, t_origin))) = (interval, timeout) {
        if t > i {
            if let Some((who, at)) = blame(label, &[t_origin, i_origin]) {
                problems.at(
                    at,
                    format!(
                        "{who}: health_check.timeout {} is longer than its interval {}",
                        format_duration(t),
                        format_duration(i)
                    ),
                );
            }
        }
    }
    Some(Some(HealthCheck {
        command: command??,
        interval: interval?.0,
        timeout: timeout?.0,
        failures: failures?.0,
    }))
}

/// `root` under `/zookeeper` is ZooKeeper's own, unless a chroot puts it elsewhere.
pub(super) fn check_reserved_root(
    problems: &mut Problems<'_>,
    chroot: Option<&str>,
    root: &str,
    root_at: usize,
) {
    if chroot.is_none() && (root == "/zookeeper" || root.starts_with("/zookeeper/")) {
        problems.at(
            root_at,
            "zookeeper: root: /zookeeper is reserved by ZooKeeper".to_owned(),
        );
    }
}

/// The worker's own value, else the `[defaults]` one, else `builtin`; `None` if either is bad.
fn resolve<T: Clone>(worker: &Field<T>, defaults: &Field<T>, builtin: T) -> Option<(T, Origin)> {
    match (worker, defaults) {
        (Field::Bad, _) | (_, Field::Bad) => None,
        (Field::Set(v, at), _) => Some((v.clone(), Origin::Worker(*at))),
        (Field::Unset, Field::Set(v, at)) => Some((v.clone(), Origin::Defaults(*at))),
        (Field::Unset, Field::Unset) => Some((builtin, Origin::Builtin)),
    }
}

/// Like [`resolve`] for a key without a built-in default.
fn resolve_opt<T: Clone>(worker: &Field<T>, defaults: &Field<T>) -> Option<Option<T>> {
    let wrap = |f: &Field<T>| match f {
        Field::Unset => Field::Unset,
        Field::Bad => Field::Bad,
        Field::Set(v, at) => Field::Set(Some(v.clone()), *at),
    };
    resolve(&wrap(worker), &wrap(defaults), None).map(|(v, _)| v)
}

/// Where to report a problem about values of these origins: the first one the worker wrote,
/// else the first one `[defaults]` wrote (reported once, however many workers inherit it).
fn blame(label: &str, origins: &[Origin]) -> Option<(String, usize)> {
    let worker = origins.iter().find_map(|o| match o {
        Origin::Worker(at) => Some((label.to_owned(), *at)),
        _ => None,
    });
    worker.or_else(|| {
        origins.iter().find_map(|o| match o {
            Origin::Defaults(at) => Some(("defaults".to_owned(), *at)),
            _ => None,
        })
    })
}
