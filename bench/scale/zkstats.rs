//! ZooKeeper's own figures: four-letter words, requests per session, the queue of each election.

use std::collections::HashMap;
use std::thread;
use std::time::Duration;

use testkit::*;

/// Sends a four-letter word to the server at `addr`.
pub(crate) fn word(addr: &str, w: &str) -> String {
    four_letter_at(addr, w).unwrap_or_else(|e| panic!("{w} to {addr}: {e}"))
}

/// A numeric field of `mntr`.
pub(crate) fn mntr_field(mntr: &str, key: &str) -> f64 {
    mntr.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('\t'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in mntr"))
}

/// `cons`: received packets per session id ("0x...").
pub(crate) fn cons_received(cons: &str) -> HashMap<i64, u64> {
    let mut out = HashMap::new();
    for line in cons.lines() {
        let field = |key: &str| {
            let at = line.find(key)? + key.len();
            let rest = &line[at..];
            Some(rest[..rest.find([',', ')']).unwrap_or(rest.len())].to_owned())
        };
        let (Some(sid), Some(recved)) = (field("sid="), field("recved=")) else {
            continue;
        };
        let sid = i64::from_str_radix(sid.trim_start_matches("0x"), 16)
            .or_else(|_| u64::from_str_radix(sid.trim_start_matches("0x"), 16).map(|u| u as i64));
        if let (Ok(sid), Ok(recved)) = (sid, recved.parse()) {
            out.insert(sid, recved);
        }
    }
    out
}

/// Samples, every 100 ms until stopped, the server's outstanding requests (`mntr`) and the largest number of
/// requests queued on one connection (`cons`).
pub(crate) struct QueueSampler {
    pub(crate) stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(crate) thread: thread::JoinHandle<(u64, u64)>,
}

impl QueueSampler {
    pub(crate) fn start(addr: &str) -> QueueSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, addr) = (stop.clone(), addr.to_owned());
        let thread = thread::spawn(move || {
            let (mut outstanding, mut queued) = (0u64, 0u64);
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(m) = four_letter_at(&addr, "mntr") {
                    let v = m
                        .lines()
                        .find_map(|l| l.strip_prefix("zk_outstanding_requests\t"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    outstanding = outstanding.max(v);
                }
                if let Ok(c) = four_letter_at(&addr, "cons") {
                    for line in c.lines() {
                        if let Some(q) = line
                            .split_once("queued=")
                            .and_then(|(_, r)| r.split([',', ')']).next())
                            .and_then(|v| v.parse::<u64>().ok())
                        {
                            queued = queued.max(q);
                        }
                    }
                }
                thread::sleep(Duration::from_millis(100));
            }
            (outstanding, queued)
        });
        QueueSampler { stop, thread }
    }

    pub(crate) fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// `wchc` / `wchp` output: header lines (no leading tab) each followed by tab-indented lines.
pub(crate) fn indented_groups(text: &str) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(item) = line.strip_prefix('\t') {
            if let Some(last) = groups.last_mut() {
                last.1.push(item.trim().to_owned());
            }
        } else if !line.trim().is_empty() {
            groups.push((line.trim().to_owned(), Vec::new()));
        }
    }
    groups
}

pub(crate) fn session_id(hex: &str) -> Option<i64> {
    u64::from_str_radix(hex.trim_start_matches("0x"), 16)
        .ok()
        .map(|u| u as i64)
}
