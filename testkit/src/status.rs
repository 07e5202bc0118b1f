//! What `zk-supervise status` says while things change: sampled over and over in a thread, and checked
//! against what the witness saw.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::daemon::run_cli;
use crate::witness::Witness;

/// What one `zk-supervise status --json` said of one worker, and when it was asked.
#[derive(Clone, Debug)]
pub struct StatusSample {
    /// Just before the command started: whatever it says was read after this.
    pub asked: Instant,
    /// `(leader node, child pid)` when it says the child runs.
    pub running: Option<(String, u32)>,
}

/// Runs `zk-supervise status --json` on a config file over and over, in a thread, until stopped, and keeps
/// what it says of one worker.
pub struct StatusSampler {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Vec<StatusSample>>>,
}

/// One `zk-supervise status --json` on `config`: what it says of `worker`, or `None` if it failed.
pub fn status_sample(config: &Path, worker: &str) -> Option<StatusSample> {
    let asked = Instant::now();
    let path = config.to_str().expect("a UTF-8 path");
    let out = run_cli(&["status", path, "--json"], Duration::from_secs(15));
    // 3: read, and some worker runs nowhere (issue 12).
    if !matches!(out.status.code(), Some(0 | 3)) {
        return None; // unreachable for a moment: says nothing
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    let entry = json["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == worker))
        .cloned()
        .unwrap_or_default();
    let running = (entry["running"] == true).then(|| {
        (
            entry["leader"]["node"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            entry["child_pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0),
        )
    });
    Some(StatusSample { asked, running })
}

impl StatusSampler {
    pub fn start(config: &Path, worker: &str) -> StatusSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (config, worker, stopping) = (config.to_owned(), worker.to_owned(), stop.clone());
        let thread = thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                samples.extend(status_sample(&config, &worker));
            }
            samples
        });
        StatusSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns every sample, in order.
    pub fn finish(mut self) -> Vec<StatusSample> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the status sampler panicked")
    }
}

impl Drop for StatusSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Panics if a sample said `worker` ran as a process that the witness had seen close before the sample was
/// asked for (a child shown as running while dead), or as a process the witness never saw.
pub fn assert_status_never_showed_a_dead_child(
    witness: &Witness,
    worker: &str,
    samples: &[StatusSample],
) {
    for sample in samples {
        let Some((node, pid)) = &sample.running else {
            continue;
        };
        let conn = witness
            .history(worker)
            .into_iter()
            .find(|c| c.pid == *pid && c.node == *node)
            .unwrap_or_else(|| {
                panic!(
                    "status said {worker} runs on {node} as pid {pid}, which the witness never saw\n{}",
                    witness.timeline(worker)
                )
            });
        if let Some(closed) = conn.closed {
            assert!(
                closed >= sample.asked,
                "status, asked {:?} after pid {pid} on {node} had died, said it runs\n{}",
                sample.asked - closed,
                witness.timeline(worker)
            );
        }
    }
}
