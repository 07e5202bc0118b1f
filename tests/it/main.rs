//! The integration tests: real ZooKeeper servers, the real `zk-supervise` binary, real child processes. One
//! binary, so the rig (testkit/) and the tests are compiled and linked once; one module per area, each test
//! named `<module>::<test>` (`cargo test --test it faults::` runs one area, `scripts/test.sh` all of them).
//!
//! Tests of every module run side by side (`RUST_TEST_THREADS` at a time, see scripts/test.sh); those that run
//! whole clusters hold one of the locks of `testkit::heavy`.

mod check_cli;
mod daemon;
mod ensemble;
mod faults;
mod inputs;
mod limits;
mod logpipe;
mod nemesis;
mod operations;
mod packaging;
mod processes;
mod quorum;
mod regression;
mod rig;
mod security;
mod stranding;
mod tls;
mod truth;
