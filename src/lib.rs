//! zk-supervise
