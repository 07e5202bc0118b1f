//! Names and ports of their own for each test, in a process where many tests run at once.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

use crate::rig::lock;

/// A ZooKeeper path of its own for one test on a shared server: `/t-<name>-<random>`.
pub fn unique_root(name: &str) -> String {
    format!("/t-{name}-{:08x}", fastrand::u32(..))
}

/// `n` distinct free TCP ports on 127.0.0.1: bind port 0, read it, release. All `n` listeners are held until
/// every port is chosen, and a port is never handed out twice in one test process. Another process can still
/// take a port before the server binds it; server starts detect that ("Address already in use") and retry with
/// fresh ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = lock(&HANDED_OUT);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        listeners.push(listener);
    }
    ports
}
