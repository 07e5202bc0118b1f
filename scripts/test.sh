#!/usr/bin/env bash
# The test suite: unit tests and the integration tests, which run real ZooKeeper servers, the real binary and
# real child processes. Installs ZooKeeper first if it is missing (see scripts/install-zookeeper.sh).
#
# Usage: scripts/test.sh [cargo test arguments]   e.g. scripts/test.sh --test it rig::
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-zookeeper.sh

# How many tests run at once. Every integration test is in one binary (tests/it), so this is the whole suite's
# parallelism, as it was when each test file was a binary of its own and the binaries ran one after another. A
# running test holds JVMs (one, or three for an ensemble; a starting JVM keeps a core busy for a second or two),
# supervisors and worker processes, and many tests assert timing against session timeouts of a couple of
# seconds: oversubscribed cores turn scheduling delays into failures. One test per core keeps the CPU from
# starving while most tests spend their time waiting on timeouts; capped at 4 so a big machine does not start a
# dozen ensembles at once (and the fault schedule runs beside no ensemble: testkit/src/heavy.rs). Set
# RUST_TEST_THREADS to override (libtest reads it; it leaves "-- <test args>" free for the caller).
if [[ -z "${RUST_TEST_THREADS:-}" ]]; then
    cores=$(nproc 2>/dev/null || echo 2)
    RUST_TEST_THREADS=$((cores < 4 ? cores : 4))
    export RUST_TEST_THREADS
fi
# By default: the library's and binary's unit tests and every integration test. Not the doc tests (there are
# none, and their empty "0 passed" would be the run's last word) and not bench/ (benchmarks print figures; they
# are run by hand, see README).
if [[ $# -eq 0 ]]; then
    set -- --lib --bins --tests
fi
echo "test.sh: cargo test --locked $* (RUST_TEST_THREADS=$RUST_TEST_THREADS)" >&2
exec cargo test --locked "$@"
