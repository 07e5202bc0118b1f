//! zk-supervise: runs background workers with high availability and without duplicates.
//!
//! Every node runs the daemon with the same list of workers. For each worker the nodes contend for
//! `<root>/<worker>` in ZooKeeper ([`election`]); only the leader runs the worker's process
//! ([`process`], through a [`guard`] process that enforces the [`lease`] on its own, forked by the
//! [`spawner`]); [`session`] holds
//! the one ZooKeeper session and renews the lease; [`worker`] is one worker's task and state machine;
//! [`supervisor`] runs them all and shuts them down. [`config`] parses and validates the file;
//! [`files`] reads it, and every other file an operator names, without letting one hang the daemon.
//! [`limits`] fits the limit on open files to the workers, [`systemd`] reports to systemd.

pub mod config;
pub mod election;
pub mod files;
pub mod lease;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod process;
pub mod session;
pub mod status;
pub mod supervisor;
pub mod systemd;
pub mod tls;
pub mod worker;

pub use observe::Observer;
pub use supervisor::{run, Control, RunError};
