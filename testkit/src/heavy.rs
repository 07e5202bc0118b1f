//! The tests that run whole clusters (ensembles, the quorum rig, the fault schedule) in one test process.
//!
//! When each test file was a binary of its own, binaries ran one after another: an ensemble test only ever ran
//! beside other tests of its file, and the fault schedule, whose rules are timed against a 2 s session, ran
//! with nothing heavier than its checker's own tests. In one binary, tests of every file run side by side. The
//! tests that start ensembles take [`shared`], as many at once as the test threads allow, as before; the fault
//! schedule takes [`alone`], so no ensemble starts while it runs.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static CLUSTERS: RwLock<()> = RwLock::new(());

/// Held for the length of a test that runs an ensemble: it may run beside others like it.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    CLUSTERS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Held for the length of the fault schedule: no ensemble test runs beside it.
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    CLUSTERS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
