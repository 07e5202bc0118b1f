//! A standalone ZooKeeper server, and the one a whole test process shares.

use std::sync::OnceLock;
use std::thread;

use super::node::{four_letter_at, start_servers, ZkNode};
use crate::ports::free_ports;
use crate::rig::TempDir;

/// A standalone ZooKeeper server on 127.0.0.1, in a temp dir of its own. Dropping it kills it.
pub struct ZkServer {
    node: ZkNode,
    /// Removed once `drop` has killed the servers.
    _dir: TempDir,
}

impl ZkServer {
    /// Starts a server and waits (up to 30 s) until it serves.
    pub fn standalone() -> ZkServer {
        ZkServer::start(None)
    }

    /// Like [`ZkServer::standalone`], with a TLS client port as well (served by Netty), which
    /// [`ZkServer::secure_connect_string`] names: `ssl` is the `ssl.*` lines of its zoo.cfg (key and trust
    /// stores, client authentication). The plaintext port stays, for the readiness check and four-letter words.
    pub fn standalone_tls(ssl: &str) -> ZkServer {
        ZkServer::start(Some(ssl))
    }

    fn start(ssl: Option<&str>) -> ZkServer {
        let dir = TempDir::new("zk");
        let (mut nodes, ()) = start_servers(
            || {
                let ports = free_ports(1 + usize::from(ssl.is_some()));
                let tls = ssl.map(|ssl| (ports[1], ssl));
                let node = ZkNode::new("zk".into(), dir.path().to_owned(), ports[0], None, "", tls);
                (vec![node], ())
            },
            |node, deadline| node.wait_serving(&["standalone"], deadline),
        );
        let node = nodes.pop().expect("one server");
        ZkServer { node, _dir: dir }
    }

    /// "127.0.0.1:<port>".
    pub fn connect_string(&self) -> String {
        self.node.addr()
    }

    pub fn port(&self) -> u16 {
        self.node.client_port
    }

    /// "127.0.0.1:<port>" of the TLS client port of a server from [`ZkServer::standalone_tls`].
    pub fn secure_connect_string(&self) -> String {
        let port = self
            .node
            .secure_port
            .expect("a server started by ZkServer::standalone_tls");
        format!("127.0.0.1:{port}")
    }

    /// The answer to a four-letter word (`ruok`, `srvr`, `cons`, `dump`, ...); panics if the server does not
    /// answer.
    pub fn four_letter(&self, word: &str) -> String {
        four_letter_at(&self.node.addr(), word)
            .unwrap_or_else(|e| panic!("{word} to {}: {e}", self.node.addr()))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.node.log()
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "{}",
                self.node
                    .failure("the test failed; the ZooKeeper server's log:")
            );
        }
        self.node.kill();
    }
}

/// One standalone server per test process, for tests that do not kill or partition it. Each test keeps to its
/// own [`unique_root`]. It is never dropped; the watchdog kills it when the process exits.
pub fn shared_server() -> &'static ZkServer {
    static SHARED: OnceLock<ZkServer> = OnceLock::new();
    SHARED.get_or_init(ZkServer::standalone)
}
