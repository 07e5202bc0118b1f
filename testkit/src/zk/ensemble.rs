//! A ZooKeeper ensemble on loopback whose members can be killed and restarted.

use std::thread;
use std::time::Instant;

use super::node::{
    four_letter_at, kill_member, logs, restart_member, start_servers, StartError, ZkNode,
    ZK_START_TIMEOUT,
};
use crate::ports::free_ports;
use crate::rig::TempDir;
use crate::wait::poll_until;

/// A ZooKeeper ensemble on loopback; each member has its own data dir and `myid`. Indexes are 0-based (member
/// `i` has myid `i + 1`). Dropping it kills every member.
pub struct ZkEnsemble {
    nodes: Vec<ZkNode>,
    /// Removed once `drop` has killed the servers.
    _dir: TempDir,
}

impl ZkEnsemble {
    /// Starts `n` servers and waits (up to 30 s) until each serves as leader or follower.
    pub fn start(n: usize) -> ZkEnsemble {
        assert!(
            n >= 2,
            "an ensemble needs at least 2 servers; use ZkServer::standalone"
        );
        let dir = TempDir::new("ensemble");
        let (nodes, ()) = start_servers(
            || {
                let ports = free_ports(3 * n);
                let servers: String = (0..n)
                    .map(|i| {
                        format!(
                            "server.{}=127.0.0.1:{}:{}\n",
                            i + 1,
                            ports[3 * i + 1],
                            ports[3 * i + 2]
                        )
                    })
                    .collect();
                let nodes = (0..n)
                    .map(|i| {
                        let name = format!("zk{}", i + 1);
                        let node_dir = dir.path().join(&name);
                        ZkNode::new(name, node_dir, ports[3 * i], Some(i + 1), &servers, None)
                    })
                    .collect();
                (nodes, ())
            },
            |node, deadline| node.wait_serving(&["leader", "follower"], deadline),
        );
        ZkEnsemble { nodes, _dir: dir }
    }

    /// The ensemble's connect string: "127.0.0.1:a,127.0.0.1:b,127.0.0.1:c".
    pub fn connect_string(&self) -> String {
        self.nodes
            .iter()
            .map(ZkNode::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One member's connect string, "127.0.0.1:<port>".
    pub fn connect_string_of(&self, i: usize) -> String {
        self.nodes[i].addr()
    }

    /// Member `i`'s client port.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].client_port
    }

    /// How many members it has (at least 2).
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// SIGKILLs member `i` (and reaps it); its data stays for [`ZkEnsemble::restart`].
    pub fn kill(&mut self, i: usize) {
        kill_member(&mut self.nodes, i);
    }

    /// Starts member `i` again with the same data and ports; waits until it serves as leader or follower.
    pub fn restart(&mut self, i: usize) {
        restart_member(&mut self.nodes, i);
    }

    /// Starts every stopped member again at once (a quorum needs more than one), and waits until every member
    /// serves as leader or follower.
    pub fn restart_all(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| n.process.is_none()) {
            node.spawn();
        }
        let deadline = Instant::now() + ZK_START_TIMEOUT;
        let failure = self.nodes.iter().find_map(|node| {
            node.wait_serving(&["leader", "follower"], deadline)
                .err()
                .map(|e| (node.name.clone(), e))
        });
        if let Some((name, error)) = failure {
            let why = match error {
                StartError::AddrInUse => "its ports are taken".to_owned(),
                StartError::Failed(why) => why,
            };
            panic!("restart {name}: {why}\n{}", logs(&self.nodes, &name));
        }
    }

    /// The index of the current leader among the running members; waits (up to 30 s) for one to be elected.
    pub fn leader_index(&self) -> usize {
        let mut leader = None;
        let found = poll_until(ZK_START_TIMEOUT, &mut || {
            leader = (0..self.nodes.len()).find(|&i| {
                self.nodes[i].process.is_some() && self.nodes[i].mode().as_deref() == Some("leader")
            });
            leader.is_some()
        });
        assert!(
            found,
            "no member of the ensemble became leader within {ZK_START_TIMEOUT:?}\n{}",
            logs(&self.nodes, "")
        );
        leader.expect("found")
    }

    /// Member `i`'s answer to a four-letter word; panics if it does not answer.
    pub fn four_letter(&self, i: usize, word: &str) -> String {
        four_letter_at(&self.nodes[i].addr(), word)
            .unwrap_or_else(|e| panic!("{word} to {}: {e}", self.nodes[i].addr()))
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].log()
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "the test failed; the ensemble's logs:\n{}",
                logs(&self.nodes, "")
            );
        }
        for node in &mut self.nodes {
            node.kill();
        }
    }
}
