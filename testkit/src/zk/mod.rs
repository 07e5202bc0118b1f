//! ZooKeeper servers for the tests: one standalone server ([`ZkServer`], and [`shared_server`] for a whole test
//! process), an ensemble whose members can be killed and restarted ([`ZkEnsemble`]), and an ensemble whose
//! servers can be cut off from each other ([`quorum::QuorumEnsemble`]). All three start their servers the same
//! way ([`node`]).

mod ensemble;
mod node;
pub mod quorum;
mod server;

pub use ensemble::ZkEnsemble;
pub use node::four_letter_at;
pub use server::{shared_server, ZkServer};
