//! The cluster the schedule is played against: three nodes, each reaching every server through proxies of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::run::catches_hup_and_term;
use super::schedule::*;
use super::*;
use crate::history::Recorder;
use crate::zk::quorum::{QuorumEnsemble, SERVERS};
use crate::*;

/// One node: its links to the servers (a proxy per server), its supervisor, the ones it had before.
pub(crate) struct Node {
    pub(crate) id: &'static str,
    pub(crate) links: Vec<Proxy>,
    pub(crate) supervisor: Option<Supervisor>,
    /// Earlier supervisors of this node, kept for their logs.
    pub(crate) retired: Vec<Supervisor>,
    pub(crate) workers: BTreeMap<String, WorkerDef>,
}

impl Node {
    pub(crate) fn connect_string(&self) -> String {
        self.links
            .iter()
            .map(Proxy::connect_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn config(&self, root: &str, recorder: &Recorder) -> String {
        let specs: Vec<WorkerSpec> = self.workers.values().map(|w| w.spec(recorder)).collect();
        config(&self.connect_string(), root, S_STR, &specs)
    }

    /// Starts the node's supervisor and waits until it catches SIGHUP and SIGTERM: a signal that came before
    /// would kill it (their default action), which is no fault of the daemon.
    pub(crate) fn start(&mut self, root: &str, recorder: &Recorder) {
        assert!(self.supervisor.is_none(), "node {} still runs", self.id);
        let supervisor = Supervisor::start(&self.config(root, recorder), self.id);
        wait_until(
            Duration::from_secs(10),
            "a new supervisor to install its signal handlers",
            || catches_hup_and_term(supervisor.pid()) || supervisor.has_exited(),
        );
        self.supervisor = Some(supervisor);
    }

    /// Takes the supervisor away (it has exited or is to be killed), keeping it for its log.
    pub(crate) fn retire(&mut self) -> Option<&mut Supervisor> {
        let supervisor = self.supervisor.take()?;
        self.retired.push(supervisor);
        self.retired.last_mut()
    }

    /// Writes the node's config and SIGHUPs its supervisor (if it has one; a stopped one gets the signal when
    /// it continues).
    pub(crate) fn reload(&mut self, root: &str, recorder: &Recorder) {
        let toml = self.config(root, recorder);
        if let Some(supervisor) = &self.supervisor {
            supervisor.write_config(&toml);
            supervisor.signal(Signal::SIGHUP);
        }
    }

    /// Every log of this node, oldest first: (pid, text).
    pub(crate) fn logs(&self) -> Vec<(u32, String)> {
        self.retired
            .iter()
            .chain(self.supervisor.as_ref())
            .map(|s| (s.pid(), s.log()))
            .collect()
    }
}

pub(crate) struct Cluster {
    // Dropped in this order: the supervisors (their guards kill the children), the recorder, the servers.
    pub(crate) nodes: Vec<Node>,
    pub(crate) recorder: Recorder,
    pub(crate) ensemble: QuorumEnsemble,
    pub(crate) root: String,
}

impl Cluster {
    pub(crate) fn start(workers: &BTreeMap<String, WorkerDef>, sync_limit: u32) -> Cluster {
        let ensemble = QuorumEnsemble::start(sync_limit);
        let recorder = Recorder::new();
        let root = unique_root("nemesis");
        let mut nodes: Vec<Node> = NODES
            .iter()
            .map(|&id| Node {
                id,
                links: (0..SERVERS)
                    .map(|i| Proxy::new(&ensemble.connect_string(&[i])))
                    .collect(),
                supervisor: None,
                retired: Vec::new(),
                workers: workers.clone(),
            })
            .collect();
        for node in &mut nodes {
            node.start(&root, &recorder);
        }
        let cluster = Cluster {
            nodes,
            recorder,
            ensemble,
            root,
        };
        let names: BTreeSet<String> = workers.keys().cloned().collect();
        let mut counts = BTreeMap::new();
        let ok = poll_until(Duration::from_secs(60), &mut || {
            counts = cluster.recorder.live_counts();
            counts.keys().cloned().collect::<BTreeSet<_>>() == names
                && counts.values().all(|&n| n == 1)
        });
        assert!(
            ok,
            "the cluster did not run every worker once within 60s: {counts:?}"
        );
        cluster
    }

    /// The server to cut off from the quorum, and why: a follower that a node is connected to (node `n` first,
    /// then the others), as in issue 11 item 1; else the server node `n` is connected to; else a follower.
    pub(crate) fn server_of(&self, n: usize) -> (usize, String) {
        let modes: Vec<Option<String>> = (0..SERVERS).map(|i| self.ensemble.mode(i)).collect();
        let follower = |i: usize| modes[i].as_deref() == Some("follower");
        let used = |node: &Node| -> Vec<usize> {
            (0..SERVERS)
                .filter(|&i| node.links[i].connections() > 0)
                .collect()
        };
        for k in 0..NODES.len() {
            let node = &self.nodes[(n + k) % NODES.len()];
            if let Some(i) = used(node).into_iter().find(|&i| follower(i)) {
                return (i, format!("follower, node {}'s server", node.id));
            }
        }
        let node = &self.nodes[n];
        if let Some(&i) = used(node).first() {
            let mode = modes[i].as_deref().unwrap_or("not serving");
            return (i, format!("{mode}, node {}'s server", node.id));
        }
        match (0..SERVERS).find(|&i| follower(i)) {
            Some(i) => (i, format!("follower; node {} has no server", node.id)),
            None => (n, "no follower found".to_owned()),
        }
    }
}
