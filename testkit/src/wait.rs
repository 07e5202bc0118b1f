//! Waits: every wait has a condition and a deadline, and says what it waited for when it gives up.

use std::future::Future;
use std::thread;
use std::time::{Duration, Instant};

/// How often polling waits look again.
const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` until it holds; panics after `timeout` naming `what` was awaited.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    if !poll_until(timeout, &mut cond) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Like [`wait_until`] for conditions that talk to ZooKeeper. Each evaluation is bounded by what is left of
/// `timeout`, so a request that hangs (a partition) fails the wait instead of hanging the test.
pub async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, cond()).await {
            Ok(true) => return,
            Ok(false) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            _ => panic!("timed out after {timeout:?} waiting for {what}"),
        }
    }
}

/// Polls `cond` until it holds (true) or `timeout` passes (false).
pub fn poll_until(timeout: Duration, cond: &mut dyn FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// Runs a future to completion on a runtime of its own (tests are synchronous; the ZooKeeper client is not).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}
