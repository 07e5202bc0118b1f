//! The rig of zk-supervise's integration tests (tests/it) and benchmarks (bench/): real ZooKeeper servers, the
//! real `zk-supervise` binary, real child processes. One file per job:
//!
//! - [`zk`]: [`ZkServer`] (one standalone server) and [`ZkEnsemble`] (a quorum on loopback whose members can be
//!   killed and restarted), [`zk::quorum::QuorumEnsemble`] (servers that can be cut off from each other);
//!   [`shared_server`] is one standalone server per test process, for tests that never kill it and keep to their
//!   own [`unique_root`].
//! - [`witness`]: the worker command that tests hand to the daemon. Each running worker holds a TCP connection
//!   to the [`Witness`] for exactly as long as it lives, so the witness sees which node runs a worker, with
//!   which fencing token, and when it started and stopped.
//! - [`proxy`]: a TCP forwarder in front of ZooKeeper that can [`Proxy::partition`] one supervisor away, cut one
//!   direction only ([`Proxy::cut`]), hold every chunk for a while ([`Proxy::slow`]), or lose one request or
//!   reply of an election.
//! - [`daemon`]: [`Supervisor`], the real binary with a config written to a temp dir and its log captured;
//!   [`run_cli`] for the one-shot commands.
//! - [`elections`]: [`zk_client`], [`candidates`]: read the elections as ZooKeeper stores them.
//! - [`status`]: what `zk-supervise status` says while things change.
//! - [`wait`]: every wait has a condition, a deadline, and says what it waited for.
//! - [`history`] and [`nemesis`]: the exact recorder of worker lives, the checker over a whole fault run, and
//!   the seeded fault schedule that tests/it/nemesis.rs and bench/nemesis.rs play.
//! - [`heavy`]: keeps the fault schedule from running beside other tests that run whole clusters.
//! - [`bench`]: what only the benchmarks use: statistics, `/proc`, the light worker, rolling restarts.
//! - [`ports`], [`rig`]: names, ports and temp dirs of their own, and the watchdog.
//!
//! Nothing leaks when a test process dies without running destructors: see [`rig`].

pub mod bench;
pub mod daemon;
pub mod elections;
pub mod heavy;
pub mod history;
pub mod nemesis;
pub mod ports;
pub mod proxy;
pub mod rig;
pub mod status;
pub mod wait;
pub mod witness;
pub mod zk;

pub use daemon::{bin, config, run_cli, start_program, toml_str, Supervisor, WorkerSpec};
pub use elections::{
    candidate_list, candidates, delete_leader_candidate, leader_node, wait_queue, wait_queue_async,
    zk_client, Candidate,
};
pub use ports::{free_ports, unique_root};
pub use proxy::{Direction, Proxy};
pub use rig::TempDir;
pub use status::{
    assert_status_never_showed_a_dead_child, status_sample, StatusSample, StatusSampler,
};
pub use wait::{block_on, poll_until, wait_until, wait_until_async};
pub use witness::{assert_stable, gap, Conn, Witness};
pub use zk::{four_letter_at, shared_server, ZkEnsemble, ZkServer};
