//! What the daemon publishes, to itself and to ZooKeeper: each worker's [`State`] and counters
//! ([`Shared`], written by its task in [`crate::worker`]), the [`Observer`] over all of them that
//! [`crate::metrics`], [`crate::systemd`] and tests read, and the worker's [`History`] as its leader
//! publishes it in its candidate's data for `status` ([`PublishedHistory`]).
//!
//! A leaf of the module graph for the daemon's parts: it names the session and the child's exit, and
//! nothing that reads or writes it. Whoever reads it never reaches back into the worker, the
//! supervisor or each other (no import loops).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::process::Exit;
use crate::session::Session;

/// What a worker is doing on this node, published on a watch channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Intermediate: no usable session yet (at start, or after one ended). Left when a session is up.
    Connecting,
    /// Intermediate: a candidate is in the election and `ahead` others are before it. Left when it is
    /// first, or when the session ends.
    Following { ahead: usize },
    /// Intermediate: first in the election; waiting for the takeover delay, the lease, or the restart
    /// delay before (re)starting the child. Left for `Running`, or when leadership is lost.
    Leading,
    /// Intermediate: the child runs. Left when it exits, is stopped, or leadership is lost.
    Running { pid: u32, token: i64 },
    /// Intermediate: the child is being stopped (grace period running).
    Stopping,
    /// Terminal: shut down; the child is stopped and the candidate deleted.
    Stopped,
    /// Intermediate: the session's negotiated timeout leaves no room for this worker's grace period
    /// (at most `max_grace`), so this node stays out of its election and leaves it to nodes whose
    /// sessions fit. Left when the session ends (the next may fit) or the worker is reloaded.
    Refused { max_grace: Duration },
}

/// What one worker publishes to the rest of the daemon (metrics, readiness, tests).
#[derive(Debug)]
pub struct Shared {
    pub state: watch::Sender<State>,
    /// Starts of the child after an exit or a failed start, within one leadership.
    pub restarts: AtomicU64,
    /// Times this node gave leadership up (failures, health checks).
    pub handoffs: AtomicU64,
    pub health_check_failures: AtomicU64,
    /// When this node last became the leader, in milliseconds since the Unix epoch; 0 if never.
    pub leader_since_ms: AtomicU64,
    /// Why the worker may not be running: how its child last ended, its last failed start, its
    /// consecutive failures (for `status` and the systemd status line).
    pub history: Mutex<History>,
    /// Why the task is being cancelled, as the stop of its child logs it (`why`): set by whoever
    /// cancels it before cancelling (a reload: "removed", "changed"); "shutdown" when not set.
    stop_reason: Mutex<Option<&'static str>>,
}

/// A worker's recent history on this node: what answers "why is it not running?".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// How the child last ended, if it ever ran here.
    pub last_exit: Option<LastExit>,
    /// The last start that failed; cleared when a start succeeds.
    pub start_error: Option<StartError>,
    /// Consecutive failures: exits within [`crate::worker::QUICK_FAILURE`] of the start, and failed starts. Back to 0
    /// after a longer run, and when this node gives leadership up.
    pub failures: u32,
}

/// How a child ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastExit {
    pub exit: Exit,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// How long it had run.
    pub ran: Duration,
}

/// A start that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartError {
    pub error: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A worker's [`History`] as its leader publishes it in its candidate's data (the keys `last_exit`,
/// `start_error` and `failures`, next to SPEC §4's), and as `status` reads it back. Every field may be
/// missing (a daemon of an older version, a candidate that never led): it then reads as empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PublishedHistory {
    pub last_exit: Option<PublishedExit>,
    pub start_error: Option<PublishedStartError>,
    pub failures: u32,
}

/// How the child last ended: its exit code or the signal that ended it (neither when its guard was
/// lost), when (milliseconds since the Unix epoch), and how long it had run.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PublishedExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub at: u64,
    pub ran_ms: u64,
}

/// The last failed start: the error as logged, and when (milliseconds since the Unix epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PublishedStartError {
    pub error: String,
    pub at: u64,
}

/// The longest start error published (a candidate's data must stay small): the start of it.
const MAX_PUBLISHED_ERROR: usize = 1024;

impl From<&History> for PublishedHistory {
    fn from(h: &History) -> PublishedHistory {
        PublishedHistory {
            last_exit: h.last_exit.as_ref().map(|e| PublishedExit {
                code: match e.exit {
                    Exit::Code(c) => Some(c),
                    _ => None,
                },
                signal: match e.exit {
                    Exit::Signal(s) => Some(s),
                    _ => None,
                },
                at: e.at_ms,
                ran_ms: u64::try_from(e.ran.as_millis()).unwrap_or(u64::MAX),
            }),
            start_error: h.start_error.as_ref().map(|e| {
                let mut error = e.error.clone();
                if error.len() > MAX_PUBLISHED_ERROR {
                    let mut end = MAX_PUBLISHED_ERROR;
                    while !error.is_char_boundary(end) {
                        end -= 1;
                    }
                    error.truncate(end);
                    error.push('…');
                }
                PublishedStartError { error, at: e.at_ms }
            }),
            failures: h.failures,
        }
    }
}

impl PublishedExit {
    /// The exit as [`Exit`] shows it: `exit code 3`, `signal 9 (SIGKILL)`.
    #[must_use]
    pub fn exit(&self) -> Exit {
        match (self.code, self.signal) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::Unknown,
        }
    }
}

impl Shared {
    /// A copy of the worker's history.
    #[must_use]
    pub fn history(&self) -> History {
        lock(&self.history).clone()
    }

    /// Says why the worker task is about to be cancelled (see `stop_reason`); call it before
    /// cancelling.
    pub fn stop_because(&self, why: &'static str) {
        *lock(&self.stop_reason) = Some(why);
    }

    /// Why the worker task was cancelled: what [`Shared::stop_because`] said, else "shutdown".
    #[must_use]
    pub fn stop_reason(&self) -> &'static str {
        lock(&self.stop_reason).unwrap_or("shutdown")
    }

    /// Whether this node leads the worker but cannot start it: its last start failed.
    #[must_use]
    pub fn failing_to_start(&self) -> Option<StartError> {
        lock(&self.history).start_error.clone()
    }
}

impl Shared {
    #[must_use]
    pub fn new() -> Shared {
        Shared {
            state: watch::channel(State::Connecting).0,
            restarts: AtomicU64::new(0),
            handoffs: AtomicU64::new(0),
            health_check_failures: AtomicU64::new(0),
            leader_since_ms: AtomicU64::new(0),
            history: Mutex::new(History::default()),
            stop_reason: Mutex::new(None),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// A candidate's data (SPEC §4), as its node writes it ([`crate::worker`]) and `status` reads it
/// ([`crate::status`]): the node's identity, written when it joins; and once it leads, its child's
/// state and the worker's history (see [`crate::worker`], "What the candidate's data says").
///
/// The field names are an interface: `status` of other versions reads them; fields are added, never
/// renamed. Every field but `node` may be missing when read (a daemon of an older version, a
/// candidate that has not led); a candidate's data without a string `node` is not a zk-supervise
/// candidate's. Unknown fields (a newer version's) are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CandidateData {
    /// `[node] id`.
    pub node: String,
    pub host: Option<String>,
    /// The daemon's pid.
    pub pid: Option<u32>,
    /// The daemon's version.
    pub version: Option<String>,
    /// When this node became the leader, in milliseconds since the Unix epoch (0: unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_since: Option<u64>,
    /// Whether its child runs. Missing: the leader has published nothing yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// Whether it is stopping its child (published before the stop signal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopping: Option<bool>,
    /// The child running or being stopped, and since when (milliseconds since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_since: Option<u64>,
    /// The worker's history on the leader (`last_exit`, `start_error`, `failures`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub history: Option<PublishedHistory>,
}

impl CandidateData {
    /// The data as written to the candidate's znode.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a candidate's data serializes")
    }

    /// The data of a candidate's znode, if it is a zk-supervise candidate's.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<CandidateData> {
        serde_json::from_slice(bytes).ok()
    }
}

/// What metrics, readiness and tests can observe of a running daemon.
#[derive(Debug)]
pub struct Observer {
    pub sessions: watch::Receiver<Option<Arc<Session>>>,
    /// The workers that currently run on this node, by name.
    pub workers: Mutex<BTreeMap<String, Arc<Shared>>>,
    /// Woken on every worker state change.
    pub changed: Arc<Notify>,
}

impl Observer {
    /// The workers and their shared state, in name order.
    #[must_use]
    pub fn workers(&self) -> Vec<(String, Arc<Shared>)> {
        lock(&self.workers)
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }
}

/// What a worker's state says for readiness and the summary: whether it joined its election, and
/// whether this node leads it.
#[must_use]
pub fn joined_and_leading(state: &State) -> (bool, bool) {
    match state {
        State::Connecting | State::Stopped => (false, false),
        // Settled for this session: readiness does not wait for it.
        State::Following { .. } | State::Refused { .. } => (true, false),
        State::Leading | State::Running { .. } | State::Stopping => (true, true),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_history_reads_back_and_stays_small() {
        let history = History {
            last_exit: Some(LastExit {
                exit: Exit::Signal(9),
                at_ms: 1_000,
                ran: Duration::from_millis(1_500),
            }),
            start_error: Some(StartError {
                error: "é".repeat(MAX_PUBLISHED_ERROR),
                at_ms: 2_000,
            }),
            failures: 3,
        };
        let published = PublishedHistory::from(&history);
        let json = serde_json::to_string(&published).expect("serializes");
        let back: PublishedHistory = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, published);
        let exit = back.last_exit.expect("an exit");
        assert_eq!(
            (exit.code, exit.signal, exit.ran_ms),
            (None, Some(9), 1_500)
        );
        assert_eq!(exit.exit(), Exit::Signal(9));
        let error = back.start_error.expect("an error").error;
        assert!(error.len() <= MAX_PUBLISHED_ERROR + '…'.len_utf8() && error.ends_with('…'));
        // A candidate of an older version, or one that never led: empty.
        let old: PublishedHistory =
            serde_json::from_str(r#"{"node": "a", "running": true}"#).expect("reads");
        assert_eq!(old, PublishedHistory::default());
    }

    /// The join writes SPEC §4's four fields and nothing else; the leader's data reads back whole;
    /// data without a string `node` is not ours.
    #[test]
    fn a_candidates_data_keeps_its_field_names() {
        let joined = CandidateData {
            node: "a".into(),
            host: Some("h".into()),
            pid: Some(7),
            version: Some("1.2.3".into()),
            ..CandidateData::default()
        };
        let json: serde_json::Value = serde_json::from_slice(&joined.to_bytes()).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({"node": "a", "host": "h", "pid": 7, "version": "1.2.3"})
        );
        let leading = CandidateData {
            leader_since: Some(5),
            running: Some(false),
            stopping: Some(true),
            child_pid: Some(9),
            child_since: Some(6),
            history: Some(PublishedHistory {
                failures: 2,
                ..PublishedHistory::default()
            }),
            ..joined
        };
        let json: serde_json::Value = serde_json::from_slice(&leading.to_bytes()).expect("JSON");
        for key in [
            "leader_since",
            "running",
            "stopping",
            "child_pid",
            "child_since",
            "last_exit",
            "start_error",
            "failures",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        assert_eq!(
            CandidateData::from_bytes(&leading.to_bytes()),
            Some(leading)
        );
        assert_eq!(CandidateData::from_bytes(br#"{"pid": 7}"#), None);
        assert_eq!(CandidateData::from_bytes(b"garbage"), None);
        let newer = CandidateData::from_bytes(br#"{"node": "b", "zone": "x"}"#).expect("ours");
        assert_eq!((newer.node.as_str(), newer.running), ("b", None));
    }

    #[test]
    fn a_stop_says_why_it_was_asked_for() {
        let shared = Shared::new();
        assert_eq!(shared.stop_reason(), "shutdown");
        shared.stop_because("removed");
        assert_eq!(shared.stop_reason(), "removed");
    }
}
