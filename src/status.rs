//! `zk-supervise status`: what the elections say, read from ZooKeeper. It only reads: it never joins
//! an election, and needs no credentials beyond read access.
//!
//! For each worker of the config: the leader (the first candidate by sequence number: its node id,
//! host, supervisor pid, and since when it leads), the candidates waiting behind it in queue order, and
//! whether the child actually runs. The last two come from the leader's candidate data, which the
//! leader updates when its child starts and stops (`running`, `stopping`, `child_pid`, `child_since`,
//! `leader_since`; see [`crate::worker`]): between winning an election and starting the child, during
//! the restart delay, and after a failed start, a leader is not running its worker.
//!
//! `RUNNING` is only ever what the first candidate's owner says, and it says `stopping` before it
//! signals its child (and waits for the answer), so a child being stopped or gone is never shown as
//! running. A candidate its node no longer wants (a removed worker, a handoff) is deleted by that
//! node's reaper until it is gone; until then it shows as `stopping` or `no`, never as running.
//!
//! `--json` prints one object, with these stable fields:
//!
//! ```json
//! {"workers": [{"name": "mailer", "path": "/workers/mailer", "running": true, "stopping": false,
//!   "child_pid": 4242, "child_since": "2026-11-22T23:01:02.345Z",
//!   "leader": {"node": "db-1", "host": "db-1.example", "pid": 1234, "version": "0.1.0",
//!              "since": "2026-11-22T23:01:02.300Z", "znode": "_c_…-n_0000000003", "sequence": 3},
//!   "waiting": [{"node": "db-2", "host": "…", "pid": 999, "version": "0.1.0", "since": null,
//!                "znode": "_c_…-n_0000000004", "sequence": 4}]}]}
//! ```
//!
//! `leader` is `null` when no node is a candidate; times are UTC, RFC 3339, or `null` when unknown.
//! `stopping` is true while the leader stops its child (`running` is false then, and `child_pid` is
//! the child being stopped).

use std::time::Duration;

use serde::Serialize;
use zookeeper_client as zk;

use crate::config::Config;
use crate::election::sequence_of;

/// How long `status` waits for ZooKeeper before it gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `status` could not read the elections.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot reach zookeeper at {connect}: {reason}")]
    Unreachable { connect: String, reason: String },
    #[error("zookeeper: {path}: {source}")]
    Read { path: String, source: zk::Error },
    /// A file named by `[zookeeper] tls` cannot be read or used.
    #[error("{0}")]
    Tls(String),
}

/// One worker's election, as read.
#[derive(Debug, Serialize)]
pub struct WorkerStatus {
    pub name: String,
    pub path: String,
    pub running: bool,
    pub stopping: bool,
    pub child_pid: Option<u64>,
    pub child_since: Option<String>,
    pub leader: Option<CandidateStatus>,
    pub waiting: Vec<CandidateStatus>,
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
}

/// Reads every worker's election.
///
/// # Errors
/// [`StatusError::Unreachable`] when no session can be had within [`CONNECT_TIMEOUT`];
/// [`StatusError::Read`] when a read fails; [`StatusError::Tls`] when a TLS file is unusable.
pub async fn collect(config: &Config) -> Result<Vec<WorkerStatus>, StatusError> {
    let connect = &config.zookeeper.connect;
    let unreachable = |reason: String| StatusError::Unreachable {
        connect: connect.clone(),
        reason,
    };
    let connector = zk::Client::connector()
        .with_session_timeout(config.zookeeper.session_timeout)
        .with_fail_eagerly();
    let attempt = async {
        match &config.zookeeper.tls {
            Some(tls) => {
                let options = crate::session::tls_options(tls).map_err(StatusError::Tls)?;
                connector.with_tls(options).secure_connect(connect).await
            }
            None => connector.connect(connect).await,
        }
        .map_err(|e| unreachable(e.to_string()))
    };
    let client = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(unreachable(format!(
                "no session within {CONNECT_TIMEOUT:?}"
            )))
        }
    };
    let read = |path: &str, source| StatusError::Read {
        path: path.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for worker in &config.workers {
        let path = format!("{}/{}", config.zookeeper.root, worker.name);
        let children = match client.list_children(&path).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => return Err(read(&path, e)),
        };
        let mut ordered: Vec<(String, i64)> = children
            .into_iter()
            .filter_map(|n| sequence_of(&n).map(|s| (n, s)))
            .collect();
        ordered.sort_by_key(|(_, s)| *s);
        let mut candidates = Vec::new();
        for (name, sequence) in ordered {
            let data = match client.get_data(&format!("{path}/{name}")).await {
                Ok((data, _)) => data,
                Err(zk::Error::NoNode) => continue, // left meanwhile
                Err(e) => return Err(read(&path, e)),
            };
            let json: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
            candidates.push((name, sequence, json));
        }
        let mut iter = candidates.into_iter();
        let first = iter.next();
        let flag = |key: &str| {
            first
                .as_ref()
                .is_some_and(|(_, _, j)| j[key].as_bool() == Some(true))
        };
        let running = flag("running");
        let stopping = !running && flag("stopping");
        let child_pid = first
            .as_ref()
            .and_then(|(_, _, j)| j["child_pid"].as_u64())
            .filter(|_| running || stopping);
        let child_since = first
            .as_ref()
            .and_then(|(_, _, j)| j["child_since"].as_u64())
            .filter(|_| running || stopping)
            .map(rfc3339);
        let candidate = |(znode, sequence, j): (String, i64, serde_json::Value), leader: bool| {
            let text = |k: &str| j[k].as_str().map(str::to_owned);
            CandidateStatus {
                node: text("node"),
                host: text("host"),
                pid: j["pid"].as_u64(),
                version: text("version"),
                since: if leader {
                    j["leader_since"].as_u64().filter(|&t| t > 0).map(rfc3339)
                } else {
                    None
                },
                znode,
                sequence,
            }
        };
        out.push(WorkerStatus {
            name: worker.name.clone(),
            path,
            running,
            stopping,
            child_pid,
            child_since,
            leader: first.map(|c| candidate(c, true)),
            waiting: iter.map(|c| candidate(c, false)).collect(),
        });
    }
    Ok(out)
}

/// The `--json` output.
#[must_use]
pub fn to_json(workers: &[WorkerStatus]) -> String {
    serde_json::json!({ "workers": workers }).to_string()
}

/// The human output: an aligned table, one line per worker.
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
            field(|c| c.node.clone()),
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
    out
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

    #[test]
    fn the_table_is_aligned() {
        let w = WorkerStatus {
            name: "mailer".into(),
            path: "/workers/mailer".into(),
            running: true,
            stopping: false,
            child_pid: Some(42),
            child_since: None,
            leader: Some(CandidateStatus {
                node: Some("db-1".into()),
                host: Some("h1".into()),
                pid: Some(7),
                version: Some("0.1.0".into()),
                since: Some("2026-11-22T23:01:02.345Z".into()),
                znode: "_c_x-n_0000000001".into(),
                sequence: 1,
            }),
            waiting: vec![],
        };
        let table = to_table(&[w]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].find("LEADER"), lines[1].find("db-1"));
        assert!(lines[1].contains("yes (pid 42)"), "{table}");
    }
}
