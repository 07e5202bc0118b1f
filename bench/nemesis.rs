//! `cargo bench --bench nemesis`: the long form of the fault-schedule test (tests/it/nemesis.rs). 30 minutes of
//! seeded faults against three nodes and a three-server ensemble (`NEMESIS_SECS` changes it, `NEMESIS_SEED`
//! replays a schedule), then the figures: faults injected by kind, overlaps, the worst time with no copy after
//! healing, the worst recovery per fault kind, and every violation with its history and the supervisors' logs.
//! Also written to target/bench-report/nemesis.txt. Exits 1 if the history broke a rule. The schedule, the
//! cluster and the checker are testkit's (`testkit::nemesis`), shared with the test.

use std::process::ExitCode;

fn main() -> ExitCode {
    if testkit::nemesis::long_form() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
