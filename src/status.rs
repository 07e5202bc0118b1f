//! `zk-supervise status`: what the elections say, read from ZooKeeper. It only reads: it never joins
//! an election, and needs no credentials beyond read access.
//!
//! For every election under `root` — each worker of the config, then any other (`in_config` false: a
//! node with an older config may still run it) — the leader (the first candidate by sequence number:
//! its node id, host, supervisor pid, and since when it leads), the candidates waiting behind it in
//! queue order, and whether the child actually runs. The last two come from the leader's candidate
//! data, which the leader updates when its child starts and stops (`running`, `stopping`,
//! `child_pid`, `child_since`, `leader_since`: `observe::CandidateData`): between winning an election and
//! starting the child, during the restart delay, and after a failed start, a leader is not running its
//! worker. With it the leader publishes its worker's history (`observe::PublishedHistory`: the
//! last exit, the last failed start, consecutive failures), so that for a worker that runs nowhere
//! `status` says why: which candidate blocks it and what that leader says, or that there is no
//! candidate at all (`why_not_running`).
//!
//! What is not a candidate (`election.rs`, "Only candidates count") is shown apart
//! (`ignored`): a child of an election path not named `_c_<marker>-n_<sequence>`, or a persistent one.
//! An ephemeral candidate whose data is not a zk-supervise candidate's is still a candidate (a live
//! session holds it, and elections count it): it shows with `node` null and a `note`. Two live
//! candidates of one node id from different sessions (two daemons given the same `[node] id`, or a
//! restarted daemon whose old session has not expired yet) are flagged (`duplicate_nodes`).
//!
//! `RUNNING` is only ever what the first candidate's owner says, and it says `stopping` before it
//! signals its child (and waits for the answer), so a child being stopped or gone is never shown as
//! running. A candidate its node no longer wants (a removed worker, a handoff) is deleted by that
//! node's reaper until it is gone; until then it shows as `stopping` or `no`, never as running.
//!
//! The exit code makes it a health check: [`EXIT_NOT_RUNNING`] when a worker of the config runs
//! nowhere (elections not in the config do not count), 0 when every one runs.
//!
//! `--json` prints one object, with these stable fields (fields are added, never renamed):
//!
//! ```json
//! {"workers": [{"name": "mailer", "path": "/workers/mailer", "in_config": true,
//!   "running": true, "stopping": false, "child_pid": 4242, "child_since": "2026-11-22T23:01:02.345Z",
//!   "why_not_running": null,
//!   "last_exit": {"code": 3, "signal": null, "text": "exit code 3",
//!                 "at": "2026-11-22T23:01:00.100Z", "ran_ms": 120},
//!   "start_error": null, "failures": 1,
//!   "leader": {"node": "db-1", "host": "db-1.example", "pid": 1234, "version": "0.1.0",
//!              "since": "2026-11-22T23:01:02.300Z", "znode": "_c_…-n_0000000003", "sequence": 3,
//!              "session": "0x100000a2b3c0001", "note": null},
//!   "waiting": [{"node": "db-2", "host": "…", "pid": 999, "version": "0.1.0", "since": null,
//!                "znode": "_c_…-n_0000000004", "sequence": 4, "session": "0x…", "note": null}],
//!   "ignored": [{"znode": "_c_x-n_0000000000", "reason": "not ephemeral: …"}],
//!   "duplicate_nodes": []}]}
//! ```
//!
//! `leader` is `null` when no node is a candidate; times are UTC, RFC 3339, or `null` when unknown.
//! `stopping` is true while the leader stops its child (`running` is false then, and `child_pid` is
//! the child being stopped). `last_exit`, `start_error` and `failures` are the leader's (`null`, `null`
//! and 0 when it published none); `start_error` is `{"error", "at"}`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use zookeeper_client as zk;

use crate::config::Config;
use crate::election::{sequence_of, NotACandidate};
use crate::observe::{CandidateData, PublishedHistory};

/// How long `status` waits for ZooKeeper before it gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The exit code of `status` when a worker of the config runs nowhere.
pub const EXIT_NOT_RUNNING: u8 = 3;

/// Why `status` could not read the elections.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot reach zookeeper at {connect}: {source}")]
    Unreachable { connect: String, source: zk::Error },
    /// No session within [`CONNECT_TIMEOUT`].
    #[error("cannot reach zookeeper at {connect}: no session within {CONNECT_TIMEOUT:?}")]
    TimedOut { connect: String },
    #[error("zookeeper: {path}: {source}")]
    Read { path: String, source: zk::Error },
    /// A file named by `[zookeeper] tls` cannot be read or used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The chroot of `[zookeeper] connect` does not exist: no election can be there.
    #[error("[zookeeper] connect {connect:?}: the chroot {chroot} does not exist in zookeeper; create it first (zkCli.sh create {chroot} \"\"), or fix connect")]
    MissingChroot { connect: String, chroot: String },
}

impl StatusError {
    /// Whether the cause is the configuration (exit 78).
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(self, StatusError::MissingChroot { .. })
    }
}

/// One worker's election, as read.
#[derive(Debug, Serialize)]
pub struct WorkerStatus {
    pub name: String,
    pub path: String,
    /// Whether the worker is in the config `status` read (else: an election found under `root`).
    pub in_config: bool,
    pub running: bool,
    pub stopping: bool,
    pub child_pid: Option<u64>,
    pub child_since: Option<String>,
    /// For a worker that does not run: which candidate blocks it and why, or that there is none.
    pub why_not_running: Option<String>,
    /// How the leader's child last ended.
    pub last_exit: Option<ExitStatus>,
    /// The leader's last failed start (cleared when a start succeeds).
    pub start_error: Option<StartErrorStatus>,
    /// The leader's consecutive failures (quick exits and failed starts).
    pub failures: u32,
    pub leader: Option<CandidateStatus>,
    pub waiting: Vec<CandidateStatus>,
    /// Children of the election path that are not candidates, left out of the order.
    pub ignored: Vec<IgnoredZnode>,
    /// Node ids with live candidates of more than one session in this election.
    pub duplicate_nodes: Vec<String>,
}

/// One candidate.
#[derive(Debug, Serialize)]
pub struct CandidateStatus {
    pub node: Option<String>,
    pub host: Option<String>,
    pub pid: Option<u64>,
    pub version: Option<String>,
    /// Since when it leads (the leader only).
    pub since: Option<String>,
    pub znode: String,
    pub sequence: i64,
    /// The session that holds it (`ephemeralOwner`), in hex.
    pub session: String,
    /// Set when its data is not a zk-supervise candidate's.
    pub note: Option<String>,
}

/// How a child ended.
#[derive(Debug, Serialize)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// As the log says it: `exit code 3`, `signal 9 (SIGKILL)`.
    pub text: String,
    pub at: Option<String>,
    pub ran_ms: u64,
}

/// A start that failed.
#[derive(Debug, Serialize)]
pub struct StartErrorStatus {
    pub error: String,
    pub at: Option<String>,
}

/// A child of an election path that is not a candidate.
#[derive(Debug, Serialize)]
pub struct IgnoredZnode {
    pub znode: String,
    pub reason: String,
}

/// The note on a candidate whose data is not a zk-supervise candidate's.
const FOREIGN_DATA: &str = "its data is not a zk-supervise candidate's";

/// Reads every election under `root`: the config's workers first, in its order, then the others by
/// name.
///
/// # Errors
/// [`StatusError::Unreachable`] or [`StatusError::TimedOut`] when no session can be had within
/// [`CONNECT_TIMEOUT`];
/// [`StatusError::Read`] when a read fails; [`StatusError::Tls`] when a TLS file is unusable;
/// [`StatusError::MissingChroot`] when the chroot does not exist.
pub async fn collect(config: &Config) -> Result<Vec<WorkerStatus>, StatusError> {
    let connect = config.zookeeper.connect.as_str();
    let unreachable = |source| StatusError::Unreachable {
        connect: connect.to_owned(),
        source,
    };
    let connector = zk::Client::connector()
        .with_session_timeout(config.zookeeper.session_timeout)
        .with_fail_eagerly();
    let attempt = async {
        match &config.zookeeper.tls {
            Some(tls) => {
                let options = crate::tls::tls_options(tls)?;
                connector.with_tls(options).secure_connect(connect).await
            }
            None => connector.connect(connect).await,
        }
        .map_err(unreachable)
    };
    let client = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(StatusError::TimedOut {
                connect: connect.to_owned(),
            })
        }
    };
    let read = |path: &str, source| StatusError::Read {
        path: path.to_owned(),
        source,
    };
    let root = &config.zookeeper.root;
    let mut names: Vec<(String, bool)> = config
        .workers
        .iter()
        .map(|w| (w.name.clone(), true))
        .collect();
    let mut others = match client.list_children(root).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => {
            if let Some(chroot) = config.zookeeper.connect.chroot() {
                if client.check_stat("/").await.ok() == Some(None) {
                    return Err(StatusError::MissingChroot {
                        connect: connect.to_owned(),
                        chroot: chroot.to_owned(),
                    });
                }
            }
            Vec::new()
        }
        Err(e) => return Err(read(root, e)),
    };
    // Elections only: worker names start with a letter or digit (the daemon's probes start with '.').
    others.retain(|n| {
        n.starts_with(|c: char| c.is_ascii_alphanumeric()) && !names.iter().any(|(w, _)| w == n)
    });
    others.sort();
    names.extend(others.into_iter().map(|n| (n, false)));
    let mut out = Vec::new();
    for (name, in_config) in names {
        let path = format!("{root}/{name}");
        let children = match client.list_children(&path).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => return Err(read(&path, e)),
        };
        let mut candidates = Vec::new();
        let mut ignored = Vec::new();
        for child in children {
            let Some(sequence) = sequence_of(&child) else {
                ignored.push((child, NotACandidate::Name));
                continue;
            };
            let (data, stat) = match client.get_data(&format!("{path}/{child}")).await {
                Ok(found) => found,
                Err(zk::Error::NoNode) => continue, // left meanwhile
                Err(e) => return Err(read(&path, e)),
            };
            if stat.ephemeral_owner == 0 {
                ignored.push((child, NotACandidate::Persistent));
                continue;
            }
            candidates.push(Read {
                znode: child,
                sequence,
                session: stat.ephemeral_owner,
                data: CandidateData::from_bytes(&data),
            });
        }
        candidates.sort_by_key(|c| c.sequence);
        ignored.sort_by(|a, b| a.0.cmp(&b.0));
        out.push(election(name, path, in_config, candidates, ignored));
    }
    Ok(out)
}

/// One candidate as read.
struct Read {
    znode: String,
    sequence: i64,
    session: i64,
    /// Its data, if it is a zk-supervise candidate's ([`CandidateData::from_bytes`]).
    data: Option<CandidateData>,
}

impl Read {
    fn ours(&self) -> Option<&CandidateData> {
        self.data.as_ref()
    }

    fn status(&self, leader: bool) -> CandidateStatus {
        let data = self.ours();
        CandidateStatus {
            node: data.map(|d| d.node.clone()),
            host: data.and_then(|d| d.host.clone()),
            pid: data.and_then(|d| d.pid).map(u64::from),
            version: data.and_then(|d| d.version.clone()),
            since: data
                .filter(|_| leader)
                .and_then(|d| d.leader_since)
                .filter(|&t| t > 0)
                .map(rfc3339),
            znode: self.znode.clone(),
            sequence: self.sequence,
            session: session_hex(self.session),
            note: data.is_none().then(|| FOREIGN_DATA.to_owned()),
        }
    }
}

fn session_hex(id: i64) -> String {
    format!("{id:#x}")
}

/// One election from its candidates (in queue order) and what was left out.
fn election(
    name: String,
    path: String,
    in_config: bool,
    candidates: Vec<Read>,
    ignored: Vec<(String, NotACandidate)>,
) -> WorkerStatus {
    let first = candidates.first();
    let data = first.and_then(Read::ours);
    let running = data.is_some_and(|d| d.running == Some(true));
    let stopping = !running && data.is_some_and(|d| d.stopping == Some(true));
    let child = data.filter(|_| running || stopping);
    let history: PublishedHistory = data.and_then(|d| d.history.clone()).unwrap_or_default();
    let mut sessions: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for c in &candidates {
        if let Some(node) = c.ours().map(|d| d.node.as_str()) {
            let seen = sessions.entry(node).or_default();
            if !seen.contains(&c.session) {
                seen.push(c.session);
            }
        }
    }
    let duplicate_nodes = sessions
        .into_iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(n, _)| n.to_owned())
        .collect();
    let why_not_running = (!running).then(|| why_not_running(first, &history, stopping, &ignored));
    WorkerStatus {
        name,
        path,
        in_config,
        running,
        stopping,
        child_pid: child.and_then(|d| d.child_pid).map(u64::from),
        child_since: child.and_then(|d| d.child_since).map(rfc3339),
        why_not_running,
        last_exit: history.last_exit.as_ref().map(|e| ExitStatus {
            code: e.code,
            signal: e.signal,
            text: e.exit().to_string(),
            at: (e.at > 0).then(|| rfc3339(e.at)),
            ran_ms: e.ran_ms,
        }),
        start_error: history.start_error.as_ref().map(|e| StartErrorStatus {
            error: e.error.clone(),
            at: (e.at > 0).then(|| rfc3339(e.at)),
        }),
        failures: history.failures,
        leader: first.map(|c| c.status(true)),
        waiting: candidates.iter().skip(1).map(|c| c.status(false)).collect(),
        ignored: ignored
            .into_iter()
            .map(|(znode, why)| IgnoredZnode {
                znode,
                reason: why.as_str().to_owned(),
            })
            .collect(),
        duplicate_nodes,
    }
}

/// Why a worker does not run, from its first candidate and what it published.
fn why_not_running(
    first: Option<&Read>,
    history: &PublishedHistory,
    stopping: bool,
    ignored: &[(String, NotACandidate)],
) -> String {
    let Some(first) = first else {
        return if ignored.is_empty() {
            "no candidate: no node that has it in its config is connected".to_owned()
        } else {
            "no candidate (the znodes of its election path are not candidates: see ignored)"
                .to_owned()
        };
    };
    let Some(data) = first.ours() else {
        return format!(
            "the first candidate {} is not a zk-supervise candidate ({FOREIGN_DATA}); it blocks the election while session {} lives",
            first.znode,
            session_hex(first.session)
        );
    };
    let node = &data.node;
    let failures = match history.failures {
        0 => String::new(),
        1 => "; 1 failure in a row".to_owned(),
        n => format!("; {n} failures in a row"),
    };
    if stopping {
        return format!("leader {node} is stopping it");
    }
    if let Some(e) = &history.start_error {
        return format!(
            "leader {node} cannot start it: {} (at {}{failures})",
            e.error,
            rfc3339(e.at)
        );
    }
    if data.running.is_none() {
        return format!("leader {node} has not started it yet");
    }
    if let Some(e) = &history.last_exit {
        return format!(
            "leader {node} restarts it after a delay: it ended with {} (at {}, after {:?}{failures})",
            e.exit(),
            rfc3339(e.at),
            Duration::from_millis(e.ran_ms)
        );
    }
    format!("leader {node} has not started it yet (takeover delay, or waiting for its lease)")
}

/// The workers of the config that run nowhere (empty when every one runs).
#[must_use]
pub fn not_running(workers: &[WorkerStatus]) -> Vec<&str> {
    workers
        .iter()
        .filter(|w| w.in_config && !w.running)
        .map(|w| w.name.as_str())
        .collect()
}

/// The `--json` output.
#[must_use]
pub fn to_json(workers: &[WorkerStatus]) -> String {
    serde_json::json!({ "workers": workers }).to_string()
}

/// The human output: an aligned table, one line per worker, then a line for each thing worth
/// knowing: why a worker does not run, how a running one last ended, elections not in the config,
/// znodes left out, node ids used by two sessions.
#[must_use]
pub fn to_table(workers: &[WorkerStatus]) -> String {
    let dash = || "-".to_owned();
    let mut rows = vec![[
        "WORKER", "LEADER", "HOST", "PID", "SINCE", "RUNNING", "WAITING",
    ]
    .map(str::to_owned)];
    for w in workers {
        let leader = w.leader.as_ref();
        let field =
            |f: fn(&CandidateStatus) -> Option<String>| leader.and_then(f).unwrap_or_else(dash);
        let running = match (w.running, w.stopping, w.child_pid) {
            (true, _, Some(pid)) => format!("yes (pid {pid})"),
            (true, _, None) => "yes".to_owned(),
            (false, true, Some(pid)) => format!("stopping (pid {pid})"),
            (false, true, None) => "stopping".to_owned(),
            (false, false, _) if leader.is_some() => "no".to_owned(),
            (false, false, _) => dash(),
        };
        let waiting: Vec<String> = w
            .waiting
            .iter()
            .map(|c| c.node.clone().unwrap_or_else(|| c.znode.clone()))
            .collect();
        rows.push([
            w.name.clone(),
            leader
                .map(|c| c.node.clone().unwrap_or_else(|| c.znode.clone()))
                .unwrap_or_else(dash),
            field(|c| c.host.clone()),
            field(|c| c.pid.map(|p| p.to_string())),
            field(|c| c.since.clone()),
            running,
            if waiting.is_empty() {
                dash()
            } else {
                waiting.join(", ")
            },
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let notes: Vec<String> = workers.iter().flat_map(notes).collect();
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            out.push_str(&note);
            out.push('\n');
        }
    }
    out
}

/// The lines under the table about one worker.
fn notes(w: &WorkerStatus) -> Vec<String> {
    let mut lines = Vec::new();
    let name = &w.name;
    if !w.in_config {
        lines.push(format!(
            "{name}: not in this config (a node with another config may still run it)"
        ));
    }
    if let Some(why) = &w.why_not_running {
        lines.push(format!("{name}: not running: {why}"));
    } else if let Some(e) = &w.last_exit {
        lines.push(format!(
            "{name}: last exit: {} at {} after {:?} ({} failures in a row)",
            e.text,
            e.at.as_deref().unwrap_or("?"),
            Duration::from_millis(e.ran_ms),
            w.failures
        ));
    }
    for c in w.leader.iter().chain(&w.waiting) {
        if let Some(note) = &c.note {
            lines.push(format!(
                "{name}: candidate {} (session {}): {note}",
                c.znode, c.session
            ));
        }
    }
    for i in &w.ignored {
        lines.push(format!(
            "{name}: ignored {}/{}: {}",
            w.path, i.znode, i.reason
        ));
    }
    for node in &w.duplicate_nodes {
        lines.push(format!(
            "{name}: node id {node:?} has live candidates of two sessions: two daemons share this [node] id (give each its own), or an old session of it has not expired yet"
        ));
    }
    lines
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds: `2026-11-22T23:01:02.345Z`.
#[must_use]
pub fn rfc3339(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    // Civil date from days since 1970-01-01 (the algorithm of H. Hinnant's date library).
    #[allow(clippy::cast_possible_wrap)]
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_388_462_345), "2026-11-22T23:01:02.345Z");
    }

    fn read(znode: &str, session: i64, json: &str) -> Read {
        Read {
            znode: znode.to_owned(),
            sequence: sequence_of(znode).expect("a candidate's name"),
            session,
            data: CandidateData::from_bytes(json.as_bytes()),
        }
    }

    fn why(candidates: Vec<Read>, ignored: Vec<(String, NotACandidate)>) -> WorkerStatus {
        election("w".into(), "/r/w".into(), true, candidates, ignored)
    }

    #[test]
    fn why_a_worker_does_not_run() {
        let none = why(vec![], vec![]);
        assert!(!none.running);
        assert!(none
            .why_not_running
            .as_deref()
            .unwrap()
            .starts_with("no candidate:"));
        let only_foreign = why(vec![], vec![("lock".into(), NotACandidate::Name)]);
        assert!(only_foreign
            .why_not_running
            .unwrap()
            .contains("see ignored"));

        let start_error = r#"{"node": "a", "running": false, "failures": 2,
            "start_error": {"error": "spawn /x: No such file or directory", "at": 1000}}"#;
        let w = why(vec![read("_c_m-n_0000000001", 7, start_error)], vec![]);
        assert_eq!(
            w.why_not_running.as_deref(),
            Some("leader a cannot start it: spawn /x: No such file or directory (at 1970-01-01T00:00:01.000Z; 2 failures in a row)")
        );
        assert_eq!(w.failures, 2);
        assert_eq!(
            w.start_error.unwrap().at.as_deref(),
            Some("1970-01-01T00:00:01.000Z")
        );

        let exited = r#"{"node": "a", "running": false, "failures": 1,
            "last_exit": {"code": null, "signal": 9, "at": 2000, "ran_ms": 1500}}"#;
        let w = why(vec![read("_c_m-n_0000000001", 7, exited)], vec![]);
        let text = w.why_not_running.unwrap();
        assert!(
            text.contains("restarts it after a delay")
                && text.contains("signal 9 (SIGKILL)")
                && text.contains("1.5s")
                && text.contains("1 failure in a row"),
            "{text}"
        );
        assert_eq!(w.last_exit.unwrap().signal, Some(9));

        let new_leader = why(
            vec![read("_c_m-n_0000000001", 7, r#"{"node": "a"}"#)],
            vec![],
        );
        assert_eq!(
            new_leader.why_not_running.as_deref(),
            Some("leader a has not started it yet")
        );

        let stopping = r#"{"node": "a", "running": false, "stopping": true, "child_pid": 5}"#;
        let w = why(vec![read("_c_m-n_0000000001", 7, stopping)], vec![]);
        assert_eq!(
            w.why_not_running.as_deref(),
            Some("leader a is stopping it")
        );
        assert_eq!(w.child_pid, Some(5));

        let foreign = why(vec![read("_c_m-n_0000000001", 0x1f, "garbage")], vec![]);
        let text = foreign.why_not_running.unwrap();
        assert!(
            text.contains("_c_m-n_0000000001") && text.contains("0x1f"),
            "{text}"
        );
        let leader = foreign.leader.unwrap();
        assert_eq!(leader.node, None);
        assert_eq!(leader.note.as_deref(), Some(FOREIGN_DATA));

        let running = r#"{"node": "a", "running": true, "child_pid": 5, "failures": 0,
            "last_exit": {"code": 3, "at": 2000, "ran_ms": 20}}"#;
        let w = why(vec![read("_c_m-n_0000000001", 7, running)], vec![]);
        assert!(w.running && w.why_not_running.is_none());
        assert!(notes(&w)[0].starts_with("w: last exit: exit code 3 at 1970-01-01T00:00:02.000Z"));
        assert!(not_running(&[w]).is_empty());
    }

    #[test]
    fn a_node_id_held_by_two_sessions_is_flagged() {
        let a = r#"{"node": "a"}"#;
        let w = why(
            vec![
                read("_c_m-n_0000000001", 7, a),
                read("_c_n-n_0000000002", 7, a),
                read("_c_o-n_0000000003", 8, r#"{"node": "b"}"#),
            ],
            vec![],
        );
        assert!(
            w.duplicate_nodes.is_empty(),
            "one session's two candidates are not two daemons"
        );
        let w = why(
            vec![
                read("_c_m-n_0000000001", 7, a),
                read("_c_n-n_0000000002", 9, a),
            ],
            vec![],
        );
        assert_eq!(w.duplicate_nodes, ["a"]);
        assert!(notes(&w)
            .iter()
            .any(|l| l.contains("node id \"a\" has live candidates of two sessions")));
    }

    #[test]
    fn only_workers_of_the_config_count_for_the_exit_code() {
        let mut w = why(vec![], vec![]);
        assert_eq!(not_running(std::slice::from_ref(&w)), ["w"]);
        w.in_config = false;
        assert!(not_running(std::slice::from_ref(&w)).is_empty());
        assert!(notes(&w)[0].contains("not in this config"));
    }

    #[test]
    fn the_table_is_aligned() {
        let w = WorkerStatus {
            name: "mailer".into(),
            path: "/workers/mailer".into(),
            in_config: true,
            running: true,
            stopping: false,
            child_pid: Some(42),
            child_since: None,
            why_not_running: None,
            last_exit: None,
            start_error: None,
            failures: 0,
            ignored: vec![],
            duplicate_nodes: vec![],
            leader: Some(CandidateStatus {
                node: Some("db-1".into()),
                host: Some("h1".into()),
                pid: Some(7),
                version: Some("0.1.0".into()),
                since: Some("2026-11-22T23:01:02.345Z".into()),
                znode: "_c_x-n_0000000001".into(),
                sequence: 1,
                session: "0x1".into(),
                note: None,
            }),
            waiting: vec![],
        };
        let table = to_table(&[w]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].find("LEADER"), lines[1].find("db-1"));
        assert!(lines[1].contains("yes (pid 42)"), "{table}");
    }
}
