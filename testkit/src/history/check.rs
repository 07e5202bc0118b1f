//! The checker: every rule over the whole history.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::witness::Conn;

use super::*;

/// One broken rule.
#[derive(Clone, Debug)]
pub struct Violation {
    /// "overlap", "token", "liveness", "stability", "anomaly".
    pub rule: &'static str,
    /// When it was seen.
    pub at: Instant,
    /// Where the story leading to it begins (a few seconds before `at`; a liveness violation's quiet window):
    /// the history and the logs are printed from there.
    pub since: Instant,
    /// The worker concerned, if one is.
    pub worker: Option<String>,
    /// The nodes concerned.
    pub nodes: Vec<String>,
    pub what: String,
}

/// What the checker needs.
pub struct Input<'a> {
    pub conns: &'a [Conn],
    pub faults: &'a [Fault],
    pub configured: &'a [Configured],
    /// Time 0: every configured worker ran once.
    pub started: Instant,
    /// The end of the run; nothing after it counts.
    pub ended: Instant,
    /// How long after every fault is healed each configured worker must run exactly once: S + 2 s.
    pub settle: Duration,
    /// Problems the run itself found (a shutdown that hung...).
    pub anomalies: &'a [Violation],
}

/// A window with no fault active, `[from, to)`.
#[derive(Clone, Debug)]
pub struct Quiet {
    pub from: Instant,
    pub to: Instant,
    /// The fault whose heal opened it (the last one healed), if any.
    pub opened_by: Option<usize>,
}

/// The verdict and the figures of a run.
#[derive(Debug, Default)]
pub struct Checked {
    pub violations: Vec<Violation>,
    pub quiet: Vec<Quiet>,
    /// Quiet windows long enough to check liveness in.
    pub windows_checked: usize,
    /// Overlapping pairs, and the time they overlapped in all.
    pub overlaps: usize,
    pub overlap_total: Duration,
    /// The longest time a configured worker had no copy within a quiet window, counted from the window's
    /// start: (how long, worker, window start).
    pub worst_no_copy: Option<(Duration, String, Instant)>,
    /// Per fault kind: faults injected.
    pub injected: BTreeMap<&'static str, usize>,
    /// Per fault kind: the recoveries measured (from the heal that opened a quiet window to the moment from
    /// which every configured worker ran exactly once until the window closed) and those not seen before it
    /// closed.
    pub recoveries: BTreeMap<&'static str, Vec<Duration>>,
    pub unrecovered: BTreeMap<&'static str, usize>,
    /// Processes started (connections), per worker.
    pub starts: usize,
}

/// How far before a violation its story is printed from (unless it says otherwise).
pub const LEAD: Duration = Duration::from_secs(3);

fn token_of(conn: &Conn) -> Option<u64> {
    conn.token.parse().ok()
}

/// How many processes of the worker whose connections are `conns` live at `t`.
fn live_at(conns: &[&Conn], t: Instant) -> usize {
    conns
        .iter()
        .filter(|c| c.opened <= t && c.closed.is_none_or(|closed| closed > t))
        .count()
}

/// Checks every rule over the whole history; see the module docs.
pub fn check(input: &Input<'_>) -> Checked {
    let mut out = Checked {
        violations: input.anomalies.to_vec(),
        ..Checked::default()
    };
    let mut by_worker: BTreeMap<&str, Vec<&Conn>> = BTreeMap::new();
    for conn in input.conns {
        by_worker.entry(&conn.worker).or_default().push(conn);
    }
    for conns in by_worker.values_mut() {
        conns.sort_by_key(|c| (c.opened, c.id));
    }
    out.starts = input.conns.len();
    for fault in input.faults {
        *out.injected.entry(fault.kind).or_insert(0) += 1;
    }
    for (worker, conns) in &by_worker {
        check_overlaps(worker, conns, input.ended, &mut out);
        check_tokens(worker, conns, &mut out);
    }
    out.quiet = quiet_windows(input);
    let mut ever: BTreeSet<String> = by_worker.keys().map(|w| (*w).to_owned()).collect();
    for configured in input.configured {
        ever.extend(configured.workers.iter().cloned());
    }
    let none: Vec<&Conn> = Vec::new();
    for window in out.quiet.clone() {
        let configured = configured_at(input.configured, window.from);
        check_window(
            input,
            &window,
            &configured,
            &ever,
            &by_worker,
            &none,
            &mut out,
        );
        measure_window(input, &window, &configured, &by_worker, &none, &mut out);
    }
    out.violations.sort_by_key(|v| v.at);
    out
}

fn check_overlaps(worker: &str, conns: &[&Conn], ended: Instant, out: &mut Checked) {
    for (i, later) in conns.iter().enumerate() {
        for earlier in &conns[..i] {
            let alive = earlier.closed.is_none_or(|closed| closed > later.opened);
            if !alive {
                continue;
            }
            let until = [earlier.closed, later.closed]
                .into_iter()
                .map(|c| c.unwrap_or(ended))
                .min()
                .unwrap_or(ended);
            let overlap = until.saturating_duration_since(later.opened);
            out.overlaps += 1;
            out.overlap_total += overlap;
            out.violations.push(Violation {
                rule: "overlap",
                at: later.opened,
                since: earlier.opened.max(later.opened - LEAD).min(later.opened),
                worker: Some(worker.to_owned()),
                nodes: vec![earlier.node.clone(), later.node.clone()],
                what: format!(
                    "two copies of {worker} for {:.3}s: #{} (node {}, token {}, pid {}) was alive when #{} \
                     (node {}, token {}, pid {}) started",
                    overlap.as_secs_f64(),
                    earlier.id,
                    earlier.node,
                    earlier.token,
                    earlier.pid,
                    later.id,
                    later.node,
                    later.token,
                    later.pid
                ),
            });
        }
    }
}

fn check_tokens(worker: &str, conns: &[&Conn], out: &mut Checked) {
    let mut previous: Option<&Conn> = None;
    let mut highest: Option<(u64, usize)> = None;
    let mut leaderships: BTreeSet<&str> = BTreeSet::new();
    for conn in conns {
        let violation = |what: String| Violation {
            rule: "token",
            at: conn.opened,
            since: conn.opened - LEAD,
            worker: Some(worker.to_owned()),
            nodes: vec![conn.node.clone()],
            what,
        };
        let Some(token) = token_of(conn) else {
            out.violations.push(violation(format!(
                "#{} on {} got the fencing token {:?}, not a number",
                conn.id, conn.node, conn.token
            )));
            continue;
        };
        match previous {
            Some(prev) if prev.znode == conn.znode => {
                if token_of(prev) != Some(token) {
                    out.violations.push(violation(format!(
                        "#{} on {} restarted within the leadership of {} with token {token}, #{} had {}",
                        conn.id, conn.node, conn.znode, prev.id, prev.token
                    )));
                }
            }
            _ => {
                if leaderships.contains(conn.znode.as_str()) {
                    out.violations.push(violation(format!(
                        "#{} on {}: the leadership of {} came back after a newer one",
                        conn.id, conn.node, conn.znode
                    )));
                }
                if let Some((high, id)) = highest.filter(|&(high, _)| token <= high) {
                    out.violations.push(violation(format!(
                        "#{} on {} leads as {} with token {token}, not greater than token {high} of #{id}",
                        conn.id, conn.node, conn.znode
                    )));
                }
            }
        }
        if highest.is_none_or(|(high, _)| token > high) {
            highest = Some((token, conn.id));
        }
        leaderships.insert(&conn.znode);
        previous = Some(conn);
    }
}

/// The windows in which no fault is active, from time 0 to the end.
fn quiet_windows(input: &Input<'_>) -> Vec<Quiet> {
    let mut intervals: Vec<(Instant, Instant, usize)> = input
        .faults
        .iter()
        .map(|f| (f.began, f.healed.unwrap_or(input.ended), f.id))
        .collect();
    intervals.sort_by_key(|&(began, _, _)| began);
    let mut windows = Vec::new();
    let mut from = input.started;
    let mut opened_by = None;
    for (began, healed, id) in intervals {
        if began > from {
            windows.push(Quiet {
                from,
                to: began.min(input.ended),
                opened_by,
            });
        }
        if healed >= from {
            from = healed;
            opened_by = Some(id);
        }
    }
    if input.ended > from {
        windows.push(Quiet {
            from,
            to: input.ended,
            opened_by,
        });
    }
    windows
}

fn configured_at(configured: &[Configured], t: Instant) -> BTreeSet<String> {
    configured
        .iter()
        .filter(|c| c.from <= t)
        .max_by_key(|c| c.from)
        .map(|c| c.workers.clone())
        .unwrap_or_default()
}

/// Rule 3 in one quiet window.
fn check_window(
    input: &Input<'_>,
    window: &Quiet,
    configured: &BTreeSet<String>,
    ever: &BTreeSet<String>,
    by_worker: &BTreeMap<&str, Vec<&Conn>>,
    none: &Vec<&Conn>,
    out: &mut Checked,
) {
    let settled = window.from + input.settle;
    if settled >= window.to {
        return;
    }
    out.windows_checked += 1;
    for worker in ever {
        let conns = by_worker.get(worker.as_str()).unwrap_or(none);
        let want = usize::from(configured.contains(worker));
        let live = live_at(conns, settled);
        let nodes = |at: Instant| -> Vec<String> {
            conns
                .iter()
                .filter(|c| c.opened <= at && c.closed.is_none_or(|closed| closed > at))
                .map(|c| c.node.clone())
                .collect()
        };
        if live != want {
            out.violations.push(Violation {
                rule: "liveness",
                at: settled,
                since: window.from,
                worker: Some(worker.clone()),
                nodes: nodes(settled),
                what: format!(
                    "{worker} {} ran {live} times {:.3}s after every fault was healed, not {want}",
                    if want == 1 {
                        "(configured)"
                    } else {
                        "(configured nowhere)"
                    },
                    input.settle.as_secs_f64()
                ),
            });
            continue;
        }
        let change = conns.iter().find_map(|c| {
            if c.opened > settled && c.opened < window.to {
                Some((c.opened, format!("#{} started on {}", c.id, c.node)))
            } else {
                c.closed
                    .filter(|&closed| closed > settled && closed < window.to)
                    .map(|closed| (closed, format!("#{} on {} ended", c.id, c.node)))
            }
        });
        if let Some((at, what)) = change {
            out.violations.push(Violation {
                rule: "stability",
                at,
                since: at - LEAD,
                worker: Some(worker.clone()),
                nodes: nodes(at),
                what: format!(
                    "{worker} did not stay put in a quiet window ({} after it began, no fault active): {what}",
                    format_args!("{:.3}s", at.duration_since(window.from).as_secs_f64())
                ),
            });
        }
    }
}

/// The figures of one quiet window: how long each configured worker had no copy, and the recovery of the
/// fault whose heal opened it.
fn measure_window(
    input: &Input<'_>,
    window: &Quiet,
    configured: &BTreeSet<String>,
    by_worker: &BTreeMap<&str, Vec<&Conn>>,
    none: &Vec<&Conn>,
    out: &mut Checked,
) {
    for worker in configured {
        let conns = by_worker.get(worker.as_str()).unwrap_or(none);
        // Walk the events in the window, tracking the longest stretch with no copy.
        let mut events: Vec<Instant> = conns
            .iter()
            .flat_map(|c| [Some(c.opened), c.closed])
            .flatten()
            .filter(|&t| t > window.from && t < window.to)
            .collect();
        events.push(window.to);
        events.sort();
        let mut empty_since = (live_at(conns, window.from) == 0).then_some(window.from);
        let mut worst = Duration::ZERO;
        for t in events {
            let live = live_at(conns, t);
            match (empty_since, live) {
                (Some(since), n) if n > 0 || t == window.to => {
                    worst = worst.max(t - since);
                    empty_since = None;
                }
                (None, 0) => empty_since = Some(t),
                _ => {}
            }
        }
        if out
            .worst_no_copy
            .as_ref()
            .is_none_or(|(longest, _, _)| worst > *longest)
            && !worst.is_zero()
        {
            out.worst_no_copy = Some((worst, worker.clone(), window.from));
        }
    }
    let Some(fault) = window
        .opened_by
        .and_then(|id| input.faults.iter().find(|f| f.id == id))
    else {
        return;
    };
    let mut moments: Vec<Instant> = configured
        .iter()
        .filter_map(|w| by_worker.get(w.as_str()))
        .flat_map(|conns| conns.iter().flat_map(|c| [Some(c.opened), c.closed]))
        .flatten()
        .filter(|&t| t > window.from && t < window.to)
        .collect();
    moments.push(window.from);
    moments.sort();
    // Recovered from the moment every configured worker runs exactly once for the rest of the window (a child
    // killed at the window's start still counts as alive at that instant: its end comes just after).
    let mut recovered = None;
    for t in moments {
        let settled = configured
            .iter()
            .all(|w| live_at(by_worker.get(w.as_str()).unwrap_or(none), t) == 1);
        recovered = if settled { recovered.or(Some(t)) } else { None };
    }
    match recovered {
        Some(t) => out
            .recoveries
            .entry(fault.kind)
            .or_default()
            .push(t - window.from),
        None => *out.unrecovered.entry(fault.kind).or_insert(0) += 1,
    }
}
