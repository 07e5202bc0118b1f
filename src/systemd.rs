//! systemd integration (SPEC §8): `Type=notify` readiness, a one-line status, the watchdog.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is not set (not under systemd), so the daemon behaves the
//! same in a terminal.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::supervisor::{joined_and_leading, Observer};

/// Sends READY=1 once a session is up and every worker has joined its election, then keeps `STATUS=`
/// up to date ("leading 2 of 5 workers") until `stop`.
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
        let (mut joined, mut leading, mut refused) = (0, 0, 0);
        for (_, shared) in &workers {
            let state = shared.state.borrow();
            let (j, l) = joined_and_leading(&state);
            joined += usize::from(j);
            leading += usize::from(l);
            refused += usize::from(matches!(*state, crate::worker::State::Refused { .. }));
        }
        if !ready && session_up && joined == workers.len() {
            ready = true;
            let _ = sd_notify::notify(&[NotifyState::Ready]);
            tracing::info!(workers = workers.len(), "ready: every election joined");
        }
        let status = if session_up && refused > 0 {
            format!(
                "leading {leading} of {} workers; {refused} refused: grace period too long for the negotiated session timeout",
                workers.len()
            )
        } else if session_up {
            format!("leading {leading} of {} workers", workers.len())
        } else {
            format!(
                "connecting to zookeeper; leading {leading} of {} workers",
                workers.len()
            )
        };
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
