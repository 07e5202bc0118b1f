//! The history and the figures of a run, as text.

use std::fmt::Write as _;
use std::time::Instant;

use crate::witness::Conn;

use super::*;

/// The figures of a run, one a line.
pub fn figures(checked: &Checked, clock: &Clock) -> String {
    let mut out = String::new();
    let total: usize = checked.injected.values().sum();
    let _ = writeln!(out, "faults injected: {total}");
    for (kind, n) in &checked.injected {
        let recoveries = checked.recoveries.get(kind).cloned().unwrap_or_default();
        let worst = recoveries.iter().max().copied();
        let _ = writeln!(
            out,
            "  {kind:<22} {n:>4}   worst recovery {}   (measured {}, not recovered in its window {})",
            worst.map_or_else(|| "-".to_owned(), |d| format!("{:.3}s", d.as_secs_f64())),
            recoveries.len(),
            checked.unrecovered.get(kind).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        out,
        "overlaps: {} (in all {:.3}s)",
        checked.overlaps,
        checked.overlap_total.as_secs_f64()
    );
    match &checked.worst_no_copy {
        Some((d, worker, from)) => {
            let _ = writeln!(
                out,
                "worst time with no copy after healing: {:.3}s ({worker}, in the quiet window from {})",
                d.as_secs_f64(),
                clock.at(*from)
            );
        }
        None => {
            let _ = writeln!(out, "worst time with no copy after healing: 0");
        }
    }
    let _ = writeln!(
        out,
        "quiet windows: {} ({} long enough to check liveness); worker starts: {}; violations: {}",
        checked.quiet.len(),
        checked.windows_checked,
        checked.starts,
        checked.violations.len()
    );
    out
}

/// The faults, one a line, with their times.
pub fn schedule(faults: &[Fault], clock: &Clock) -> String {
    let mut out = String::new();
    for f in faults {
        let _ = writeln!(
            out,
            "  #{:<3} {} .. {}  {:<22} {:<28} {}",
            f.id,
            clock.at(f.began),
            f.healed
                .map_or_else(|| "(active)".to_owned(), |h| clock.at(h)),
            f.kind,
            f.target,
            f.detail
        );
    }
    out
}

/// The connections of `worker` that were alive at some time in `[from, to]`, one a line.
pub fn timeline(conns: &[Conn], worker: &str, from: Instant, to: Instant, clock: &Clock) -> String {
    let mut out = String::new();
    for c in conns.iter().filter(|c| {
        c.worker == worker && c.opened <= to && c.closed.is_none_or(|closed| closed >= from)
    }) {
        let _ = writeln!(
            out,
            "  #{:<4} node={} token={} pid={} open {} close {}  {}",
            c.id,
            c.node,
            c.token,
            c.pid,
            clock.at(c.opened),
            c.closed
                .map_or_else(|| "(live)".to_owned(), |t| clock.at(t)),
            c.znode
        );
    }
    if out.is_empty() {
        out.push_str("  (no process)\n");
    }
    out
}

/// The faults active at some time in `[from, to]`.
pub fn faults_around(faults: &[Fault], from: Instant, to: Instant) -> Vec<Fault> {
    faults
        .iter()
        .filter(|f| f.began <= to && f.healed.is_none_or(|h| h >= from))
        .cloned()
        .collect()
}
