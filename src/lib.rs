//! zk-supervise: runs background workers with high availability and without duplicates.
//!
//! Every node runs the daemon with the same list of workers. For each worker the nodes contend for
//! `<root>/<worker>` in ZooKeeper (`election`); only the leader runs the worker's process (`process`,
//! through a guard process that enforces the [`lease`] on its own, forked by the spawner); `session`
//! holds the one ZooKeeper session and renews the lease; `worker` is one worker's task and state
//! machine, and `observe` what it publishes; `supervisor` runs them all and shuts them down
//! ([`run`]). [`config`] parses and validates the file; [`files`] reads it, and every other file an
//! operator names, without letting one hang the daemon. [`limits`] fits the limit on open files to the
//! workers, `systemd` reports to systemd, [`metrics`] serves Prometheus, [`status`] reads the elections
//! for `zk-supervise status`. See ARCHITECTURE.md for the map.
//!
//! The public face is what the binary (`src/main.rs`) and the tests need; the rest is `pub(crate)`.

pub mod config;
pub(crate) mod election;
pub mod files;
pub mod lease;
pub mod limits;
pub mod metrics;
pub(crate) mod observe;
pub(crate) mod process;
pub(crate) mod session;
pub mod status;
pub(crate) mod supervisor;
pub(crate) mod systemd;
pub(crate) mod tls;
pub(crate) mod worker;

pub use observe::Observer;
pub use process::spawner_main;
pub use supervisor::{run, Control, RunError};
