//! systemd integration (SPEC §8): `Type=notify` readiness, a one-line status, the watchdog.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is not set (not under systemd), so the daemon behaves the
//! same in a terminal.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::observe::{joined_and_leading, Observer, State};

/// Sends READY=1 once a session is up and every worker has joined its election, then keeps `STATUS=`
/// up to date ([`status_line`]: "running 2 of 5 workers; ...") until `stop`.
///
/// READY=1 means the daemon is up and takes part in every election, not that every worker runs: a
/// worker that cannot start is named in `STATUS=` (and in `status`). Holding READY=1 back for it
/// would leave `systemctl start` waiting for ever, as the unit sets no start timeout.
pub async fn report(observer: Arc<Observer>, stop: CancellationToken) {
    let mut ready = false;
    let mut last = String::new();
    let mut sessions = observer.sessions.clone();
    loop {
        // Register for the next change before looking, so no change falls in between.
        let changed = observer.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let session_up = observer.sessions.borrow().is_some();
        let workers = observer.workers();
        let mut summary = Summary {
            session_up,
            workers: workers.len(),
            ..Summary::default()
        };
        let mut joined = 0;
        for (name, shared) in &workers {
            let state = shared.state.borrow().clone();
            joined += usize::from(joined_and_leading(&state).0);
            summary.add(name, &state, shared.failing_to_start().map(|e| e.error));
        }
        if !ready && session_up && joined == workers.len() {
            ready = true;
            let _ = sd_notify::notify(&[NotifyState::Ready]);
            tracing::info!(workers = workers.len(), "ready: every election joined");
        }
        let status = status_line(&summary);
        if status != last {
            let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
            last = status;
        }
        tokio::select! {
            () = changed => {}
            r = sessions.changed() => if r.is_err() { return },
            () = stop.cancelled() => return,
        }
    }
}

/// The most worker names one part of the status line lists.
const NAMES: usize = 3;

/// What the status line is made of: this node's workers, by what they do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub session_up: bool,
    pub workers: usize,
    /// Their child runs here ([`State::Running`]).
    pub running: usize,
    /// Led here, not running, the last start failed: name and error, in name order.
    pub failing: Vec<(String, String)>,
    /// Led here, not running otherwise (takeover or restart delay, waiting for the lease, stopping).
    pub not_running: Vec<String>,
    /// Another node's candidate is ahead.
    pub elsewhere: usize,
    /// Not in the election yet ([`State::Connecting`]).
    pub joining: usize,
    /// Out of the election: the grace period does not fit the session ([`State::Refused`]).
    pub refused: usize,
}

impl Summary {
    /// Counts worker `name` in `state`; `start_error` is its last failed start, if any
    /// ([`crate::observe::Shared::failing_to_start`]).
    pub fn add(&mut self, name: &str, state: &State, start_error: Option<String>) {
        match (state, start_error) {
            (State::Running { .. }, _) => self.running += 1,
            (State::Leading, Some(error)) => self.failing.push((name.to_owned(), error)),
            (State::Leading | State::Stopping, _) => self.not_running.push(name.to_owned()),
            (State::Following { .. }, _) => self.elsewhere += 1,
            (State::Connecting, _) => self.joining += 1,
            (State::Refused { .. }, _) => self.refused += 1,
            (State::Stopped, _) => {}
        }
    }
}

/// The `STATUS=` line: how many workers run here, then those led here that do not run, named (at
/// most three per part, with the first one's error), then those led elsewhere, joining or refused.
///
/// `running 79 of 200 workers; 121 failing to start: w1, w2, w3 and 118 more (start guard: Too many
/// open files (os error 24))`
#[must_use]
pub fn status_line(s: &Summary) -> String {
    let mut parts = vec![format!("running {} of {} workers", s.running, s.workers)];
    if !s.session_up {
        parts.insert(0, "connecting to zookeeper".to_owned());
    }
    if let Some((_, error)) = s.failing.first() {
        let names: Vec<&str> = s.failing.iter().map(|(n, _)| n.as_str()).collect();
        parts.push(format!(
            "{} failing to start: {} ({})",
            names.len(),
            some_names(&names),
            one_line(error)
        ));
    }
    if !s.not_running.is_empty() {
        let names: Vec<&str> = s.not_running.iter().map(String::as_str).collect();
        parts.push(format!(
            "{} led here, not running: {}",
            names.len(),
            some_names(&names)
        ));
    }
    if s.elsewhere > 0 {
        parts.push(format!("{} led by other nodes", s.elsewhere));
    }
    if s.session_up && s.joining > 0 {
        parts.push(format!("{} joining their elections", s.joining));
    }
    if s.refused > 0 {
        parts.push(format!(
            "{} refused: grace period too long for the negotiated session timeout",
            s.refused
        ));
    }
    parts.join("; ")
}

/// The longest error the status line quotes, in characters.
const ERROR_CHARS: usize = 120;

/// `error` as the status line quotes it: on one line (the notification protocol separates its
/// assignments with newlines), and cut at [`ERROR_CHARS`].
fn one_line(error: &str) -> String {
    let mut out: String = error
        .chars()
        .take(ERROR_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if error.chars().nth(ERROR_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// `a, b, c and 4 more`.
fn some_names(names: &[&str]) -> String {
    let shown = names[..names.len().min(NAMES)].join(", ");
    match names.len().saturating_sub(NAMES) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// STOPPING=1.
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// WATCHDOG=1, sent from the loop that renews the lease: if that loop is stuck, systemd notices.
pub fn watchdog() {
    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half its timeout, if systemd set one for this process.
#[must_use]
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(n: usize) -> Vec<(String, String)> {
        (1..=n)
            .map(|i| {
                let error = "start guard: Too many open files (os error 24)".to_owned();
                (format!("w{i}"), error)
            })
            .collect()
    }

    #[test]
    fn workers_that_lead_and_do_not_start_are_counted_and_named() {
        let s = Summary {
            session_up: true,
            workers: 200,
            running: 79,
            failing: failing(121),
            ..Summary::default()
        };
        assert_eq!(
            status_line(&s),
            "running 79 of 200 workers; 121 failing to start: w1, w2, w3 and 118 more \
             (start guard: Too many open files (os error 24))"
        );
    }

    #[test]
    fn a_healthy_node_says_how_many_run_here_and_elsewhere() {
        let mut s = Summary {
            session_up: true,
            workers: 1,
            running: 1,
            ..Summary::default()
        };
        assert_eq!(status_line(&s), "running 1 of 1 workers");
        s.workers = 5;
        s.elsewhere = 4;
        assert_eq!(
            status_line(&s),
            "running 1 of 5 workers; 4 led by other nodes"
        );
    }

    #[test]
    fn few_names_are_listed_without_a_tail() {
        let s = Summary {
            session_up: true,
            workers: 4,
            running: 0,
            failing: failing(2),
            not_running: vec!["x".into()],
            refused: 1,
            ..Summary::default()
        };
        assert_eq!(
            status_line(&s),
            "running 0 of 4 workers; 2 failing to start: w1, w2 (start guard: Too many open files (os \
             error 24)); 1 led here, not running: x; 1 refused: grace period too long for the negotiated \
             session timeout"
        );
    }

    #[test]
    fn without_a_session_it_says_so_and_counts_no_joining() {
        let s = Summary {
            session_up: false,
            workers: 3,
            joining: 3,
            ..Summary::default()
        };
        assert_eq!(
            status_line(&s),
            "connecting to zookeeper; running 0 of 3 workers"
        );
        let s = Summary {
            session_up: true,
            ..s
        };
        assert_eq!(
            status_line(&s),
            "running 0 of 3 workers; 3 joining their elections"
        );
    }

    #[test]
    fn an_error_is_quoted_on_one_short_line() {
        let s = Summary {
            session_up: true,
            workers: 1,
            failing: vec![("w".into(), format!("spawn x:\n{}", "y".repeat(500)))],
            ..Summary::default()
        };
        let line = status_line(&s);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.ends_with("yyy…)"), "{line}");
        assert!(line.len() < 200, "{line}");
    }

    #[test]
    fn states_are_counted_where_they_belong() {
        let mut s = Summary::default();
        s.add("a", &State::Running { pid: 1, token: 1 }, None);
        s.add("b", &State::Leading, Some("spawn x: No such file".into()));
        s.add("c", &State::Leading, None);
        s.add("d", &State::Stopping, None);
        s.add("e", &State::Following { ahead: 1 }, None);
        s.add("f", &State::Connecting, None);
        s.add(
            "g",
            &State::Refused {
                max_grace: std::time::Duration::from_secs(1),
            },
            None,
        );
        // A failed start before this node gave the worker up does not make it "failing" here.
        s.add("h", &State::Following { ahead: 0 }, Some("old".into()));
        assert_eq!(s.running, 1);
        assert_eq!(
            s.failing,
            [("b".to_owned(), "spawn x: No such file".to_owned())]
        );
        assert_eq!(s.not_running, ["c", "d"]);
        assert_eq!((s.elsewhere, s.joining, s.refused), (2, 1, 1));
    }
}
