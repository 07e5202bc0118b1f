//! The elections as ZooKeeper stores them (SPEC §4): read them, wait for a queue, delete a leader's candidate.

use std::time::{Duration, Instant};

use crate::wait::{block_on, wait_until_async};

/// A client with a 4 s session (the test servers' maximum); panics if it cannot connect within 15 s.
pub async fn zk_client(connect: &str) -> zookeeper_client::Client {
    let connecting = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .connect(connect);
    match tokio::time::timeout(Duration::from_secs(15), connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => panic!("connect to ZooKeeper at {connect}: {e}"),
        Err(_) => panic!("connect to ZooKeeper at {connect}: no session within 15s"),
    }
}

/// One candidate znode of an election (SPEC §4).
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The child's name under the election path.
    pub name: String,
    /// Its 10-digit sequence suffix.
    pub sequence: u64,
    pub node: String,
    pub host: String,
    pub pid: u64,
    pub version: String,
    /// The session that owns it.
    pub ephemeral_owner: i64,
}

/// The candidates of the election at `path` in election order (by sequence suffix); empty if the path does not
/// exist. Panics if a candidate's name or data does not follow SPEC §4.
pub async fn candidate_list(client: &zookeeper_client::Client, path: &str) -> Vec<Candidate> {
    let children = match client.list_children(path).await {
        Ok(children) => children,
        Err(zookeeper_client::Error::NoNode) => return Vec::new(),
        Err(e) => panic!("list {path}: {e}"),
    };
    let mut candidates = Vec::new();
    for name in children {
        let child = format!("{path}/{name}");
        let (data, stat) = match client.get_data(&child).await {
            Ok(found) => found,
            Err(zookeeper_client::Error::NoNode) => continue, // went away meanwhile
            Err(e) => panic!("get {child}: {e}"),
        };
        let suffix = name.len().checked_sub(10).map(|at| &name[at..]);
        let sequence = suffix
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("candidate {child} has no 10-digit sequence suffix"));
        let json: serde_json::Value = serde_json::from_slice(&data).unwrap_or_else(|e| {
            panic!(
                "candidate {child} data is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&data)
            )
        });
        let text = |key: &str| {
            json[key]
                .as_str()
                .unwrap_or_else(|| panic!("candidate {child}: no string {key:?} in {json}"))
                .to_owned()
        };
        candidates.push(Candidate {
            sequence,
            node: text("node"),
            host: text("host"),
            version: text("version"),
            pid: json["pid"]
                .as_u64()
                .unwrap_or_else(|| panic!("candidate {child}: no numeric \"pid\" in {json}")),
            ephemeral_owner: stat.ephemeral_owner,
            name,
        });
    }
    candidates.sort_by_key(|c| c.sequence);
    candidates
}

/// `(znode name, node id)` of each candidate at `path`, in election order.
pub async fn candidates(client: &zookeeper_client::Client, path: &str) -> Vec<(String, String)> {
    candidate_list(client, path)
        .await
        .into_iter()
        .map(|c| (c.name, c.node))
        .collect()
}

/// The node id of the first candidate at `path`, if any.
pub async fn leader_node(client: &zookeeper_client::Client, path: &str) -> Option<String> {
    candidate_list(client, path)
        .await
        .into_iter()
        .next()
        .map(|c| c.node)
}

/// Waits until the election at `path` on the server at `connect` holds exactly `nodes`, in that order.
pub fn wait_queue(connect: &str, path: &str, nodes: &[&str], timeout: Duration) {
    block_on(async {
        let client = zk_client(connect).await;
        wait_queue_async(&client, path, nodes, timeout).await;
    });
}

/// Like [`wait_queue`], through a client of the caller's.
pub async fn wait_queue_async(
    client: &zookeeper_client::Client,
    path: &str,
    nodes: &[&str],
    timeout: Duration,
) {
    let what = format!("the queue of {path} to be {nodes:?}");
    wait_until_async(timeout, &what, || async {
        let queue: Vec<String> = candidates(client, path)
            .await
            .into_iter()
            .map(|(_, node)| node)
            .collect();
        queue == nodes
    })
    .await;
}

/// Deletes the first candidate of the election at `path`, as an operator (or a bug elsewhere) might;
/// returns when the deletion was done.
pub fn delete_leader_candidate(connect: &str, path: &str) -> Instant {
    block_on(async {
        let client = zk_client(connect).await;
        let (name, _) = candidates(&client, path).await.remove(0);
        client
            .delete(&format!("{path}/{name}"), None)
            .await
            .expect("delete the leader's candidate");
        Instant::now()
    })
}
