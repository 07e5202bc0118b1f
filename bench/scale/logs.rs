//! What the supervisors' logs say: warnings, lapses, restarts, and when each phase of a busy start ended.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::bench::*;
use testkit::*;

use super::*;

/// WARN and ERROR lines of supervisors' text logs, counted by message (fields left out).
pub(crate) fn warnings(logs: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in logs.iter().flat_map(|l| l.lines()) {
        if !(line.contains(" WARN ") || line.contains(" ERROR ")) {
            continue;
        }
        // `<time>  WARN zk_supervise::worker: <message> key=value ...`
        let message = line
            .split_once(": ")
            .map_or(line, |(_, m)| m)
            .split(" worker=")
            .next()
            .unwrap_or_default();
        let message: String = message.chars().take(120).collect();
        *out.entry(message).or_default() += 1;
    }
    out
}

/// The lease lapses in supervisors' logs (`exited ... cause="lease"`), per node: how many, and what they imply.
/// A guard stops its child at `K - grace = L + S - margin - grace`, so the lapse time minus `hold` (that
/// difference) is the last renewal `L` the guard saw; the child's start minus that `L` is how old the lease
/// already was when the child started. Times are seconds after `from` (seconds since midnight UTC).
pub(crate) fn lapse_analysis(logs: &[String], hold: f64, from: f64) -> Value {
    let time_of = |line: &str| -> Option<f64> {
        let hms = line.get(11..26)?;
        let h: f64 = hms.get(0..2)?.parse().ok()?;
        let m: f64 = hms.get(3..5)?.parse().ok()?;
        let s: f64 = hms.get(6..)?.parse().ok()?;
        let t = h * 3600.0 + m * 60.0 + s;
        Some(if t + 43_200.0 < from { t + 86_400.0 } else { t })
    };
    let worker_of = |line: &str| -> Option<String> {
        Some(
            line.split_once("worker=\"")?
                .1
                .split('"')
                .next()?
                .to_owned(),
        )
    };
    let mut nodes = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let mut started: HashMap<String, f64> = HashMap::new();
        let (mut ages, mut renewals) = (Vec::new(), Vec::new());
        for line in log.lines() {
            let (Some(t), Some(w)) = (time_of(line), worker_of(line)) else {
                continue;
            };
            if line.contains(": started worker=") {
                started.insert(w, t);
            } else if line.contains(": exited worker=") && line.contains("cause=\"lease\"") {
                let renewal = t - hold;
                renewals.push(renewal - from);
                if let Some(s) = started.get(&w) {
                    ages.push(s - renewal);
                }
            }
        }
        if renewals.is_empty() {
            continue;
        }
        renewals.sort_by(f64::total_cmp);
        ages.sort_by(f64::total_cmp);
        nodes.push(json!({
            "log": i, "lapses": renewals.len(),
            "implied_last_renewal_s": [round3(renewals[0]), round3(renewals[renewals.len() - 1])],
            "lease_age_at_start_median_s": ages.get(ages.len() / 2).map(|a| round3(*a)),
            "lease_age_at_start_max_s": ages.last().map(|a| round3(*a)),
        }));
    }
    Value::Array(nodes)
}

/// Prints the timelines, and the supervisors' log lines, of up to `max` workers that started more than once.
pub(crate) fn explain_restarts(witness: &Witness, logs: &[String], max: usize) {
    let mut starts: BTreeMap<String, usize> = BTreeMap::new();
    for c in witness.all() {
        *starts.entry(c.worker).or_default() += 1;
    }
    for (worker, _) in starts.iter().filter(|(_, n)| **n > 1).take(max) {
        print!("    {}", witness.timeline(worker));
        let needle = format!("worker=\"{worker}\"");
        for (i, log) in logs.iter().enumerate() {
            for line in log.lines().filter(|l| l.contains(&needle)) {
                println!("      [log {i}] {line}");
            }
        }
    }
}

/// Seconds since midnight UTC now (the supervisor's log timestamps are UTC).
pub(crate) fn utc_secs_now() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_nanos()) / 1e9
}

/// The times (seconds since midnight UTC) of `event` lines (`leading`, `started`, `stopped`...) in a supervisor's
/// text log, by worker, from `from` (seconds since midnight) on.
pub(crate) fn log_times(log: &str, event: &str, from: f64) -> HashMap<String, f64> {
    let needle = format!(": {event} worker=\"");
    let mut out = HashMap::new();
    for line in log.lines() {
        let Some(at) = line.find(&needle) else {
            continue;
        };
        let rest = &line[at + needle.len()..];
        let Some(name) = rest.split('"').next() else {
            continue;
        };
        // 2026-11-23T00:28:49.937838Z
        let Some(t) = line.get(11..26).and_then(|hms| {
            let h: f64 = hms.get(0..2)?.parse().ok()?;
            let m: f64 = hms.get(3..5)?.parse().ok()?;
            let s: f64 = hms.get(6..)?.parse().ok()?;
            Some(h * 3600.0 + m * 60.0 + s)
        }) else {
            continue;
        };
        // Across midnight: bring times before `from` forward a day.
        let t = if t + 43_200.0 < from { t + 86_400.0 } else { t };
        if t >= from {
            out.entry(name.to_owned()).or_insert(t);
        }
    }
    out
}

/// From the supervisors' logs: for `names`, when each first logged `leading` and `started` after `from`;
/// returns (last leading, last started, median leading -> started, max leading -> started) in seconds after
/// `from`.
pub(crate) fn phases(logs: &[String], names: &[String], from: f64) -> Option<(f64, f64, f64, f64)> {
    let (mut leading, mut started) = (HashMap::new(), HashMap::new());
    for log in logs {
        leading.extend(log_times(log, "leading", from));
        started.extend(log_times(log, "started", from));
    }
    let mut last_leading: f64 = 0.0;
    let mut last_started: f64 = 0.0;
    let mut lags = Vec::new();
    for name in names {
        let (l, s) = (leading.get(name)?, started.get(name)?);
        last_leading = last_leading.max(l - from);
        last_started = last_started.max(s - from);
        lags.push(Duration::from_secs_f64((s - l).max(0.0)));
    }
    Some((
        round3(last_leading),
        round3(last_started),
        round3(median(&lags).as_secs_f64()),
        round3(quantile(&lags, 1.0).as_secs_f64()),
    ))
}
