//! Sections 1 and 2, `kazoo` and `crash`: handoff and crash failover for either agent (the methods of
//! bench/handoff and bench/failover).

use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use testkit::bench::*;
use testkit::*;

use super::*;

/// Two nodes, one light worker; each round SIGTERMs the node that runs it: the old child's death -> the new
/// child's start. As bench/handoff.
pub(crate) fn handoff(zk: &ZkServer, agent: Agent, rounds: usize) -> Value {
    let witness = Witness::new();
    let root = unique_root("bench-handoff");
    let (command, _) = light(&witness);
    let toml = config(
        &zk.connect_string(),
        &root,
        S_CRASH,
        &[WorkerSpec::new("w", command)],
    );
    let mut nodes = [Some(agent.start(&toml, "a")), None];
    witness.wait_live("w", Some("a"), Duration::from_secs(30));
    nodes[1] = Some(agent.start(&toml, "b"));
    let path = format!("{root}/w");
    let runtime = runtime();
    let client = runtime.block_on(zk_client(&zk.connect_string()));
    let mut gaps = Vec::with_capacity(rounds);
    // zk-supervise only, from the logs: death -> the old leader logs `stopped`, -> the new leader logs
    // `leading` (candidate deleted, watch fired, queue listed), -> `started` (guard and child spawned).
    let (mut to_stopped, mut to_leading, mut to_started) = (Vec::new(), Vec::new(), Vec::new());
    let (ref_instant, ref_utc) = (Instant::now(), utc_secs_now());
    let utc_of = |t: Instant| ref_utc + t.duration_since(ref_instant).as_secs_f64();
    for _ in 0..rounds {
        runtime.block_on(wait_until_async(
            Duration::from_secs(30),
            "two candidates",
            || async { candidates(&client, &path).await.len() == 2 },
        ));
        let old = witness.live("w").pop().expect("the worker runs");
        let leader = usize::from(old.node == "b");
        let mut stopping = nodes[leader].take().expect("the leader runs");
        let signalled = utc_of(Instant::now());
        stopping.signal(Signal::SIGTERM);
        let next = if leader == 0 { "b" } else { "a" };
        let new = witness.wait_live("w", Some(next), Duration::from_secs(30));
        stopping.wait_exit(Duration::from_secs(30));
        witness.assert_no_overlap("w");
        let old = witness.again(&old);
        gaps.push(gap(&old, &new));
        if agent == Agent::ZkSupervise {
            let died = utc_of(old.closed.expect("closed"));
            let next_log = nodes[1 - leader].as_ref().expect("running").log();
            let stopped = log_times(&stopping.log(), "stopped", signalled)
                .get("w")
                .copied();
            let leading = log_times(&next_log, "leading", signalled).get("w").copied();
            let started = log_times(&next_log, "started", signalled).get("w").copied();
            if let (Some(st), Some(l), Some(sd)) = (stopped, leading, started) {
                to_stopped.push(st - died);
                to_leading.push(l - st);
                to_started.push(sd - l);
            }
        }
        nodes[leader] = Some(agent.start(&toml, &old.node));
    }
    let line = format!(
        "{} clean handoff gap over {rounds} rounds: median {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        agent.name(),
        ms(quantile(&gaps, 0.5)),
        ms(quantile(&gaps, 0.95)),
        ms(quantile(&gaps, 1.0))
    );
    println!("  {line}");
    let med = |v: &mut Vec<f64>| -> Option<f64> {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).map(|x| round3(x * 1e3))
    };
    let parts = json!({
        "death_to_stopped_logged_ms": med(&mut to_stopped),
        "stopped_to_leading_ms": med(&mut to_leading),
        "leading_to_started_ms": med(&mut to_started),
    });
    if !to_stopped.is_empty() {
        println!(
            "    medians from the logs: child's death -> old leader logs `stopped` {} ms -> new leader logs \
             `leading` {} ms -> `started` {} ms",
            parts["death_to_stopped_logged_ms"],
            parts["stopped_to_leading_ms"],
            parts["leading_to_started_ms"]
        );
    }
    json!({
        "rounds": rounds,
        "median_ms": ms(quantile(&gaps, 0.5)), "p95_ms": ms(quantile(&gaps, 0.95)),
        "max_ms": ms(quantile(&gaps, 1.0)),
        "gaps_ms": gaps.iter().map(|g| ms(*g)).collect::<Vec<_>>(),
        "from_logs": parts,
    })
}

/// Two nodes, one bash-witness worker, S = 2 s; each trial SIGKILLs the node that runs it: SIGKILL -> the new
/// child's start, and the old child's death -> the new child's start. As bench/failover's crash part, plus a
/// random pause of 0-1 s before each kill.
pub(crate) fn crash(zk: &ZkServer, agent: Agent, trials: usize) -> Value {
    let witness = Witness::new();
    let root = unique_root("bench-crash");
    let path = format!("{root}/w");
    let toml = config(
        &zk.connect_string(),
        &root,
        S_CRASH,
        &[WorkerSpec::new("w", witness.command())],
    );
    let ids = ["a", "b"];
    let mut nodes = vec![Some(agent.start(&toml, ids[0]))];
    witness.wait_live("w", Some(ids[0]), Duration::from_secs(30));
    nodes.push(Some(agent.start(&toml, ids[1])));
    wait_queue(&zk.connect_string(), &path, &ids, Duration::from_secs(30));
    let (mut fault_to_start, mut death_to_start, mut died) = (Vec::new(), Vec::new(), Vec::new());
    // From the server's log: SIGKILL -> "Expiring session", and the expiry -> the new child's start.
    let (mut to_expiry, mut expiry_to_start) = (Vec::new(), Vec::new());
    let (ref_instant, ref_utc) = (Instant::now(), utc_secs_now());
    let utc_of = |t: Instant| ref_utc + t.duration_since(ref_instant).as_secs_f64();
    let runtime = runtime();
    let client = runtime.block_on(zk_client(&zk.connect_string()));
    for _ in 0..trials {
        let old = witness.live("w").pop().expect("the worker runs");
        let leader = ids.iter().position(|n| *n == old.node).expect("known");
        let victim_session = runtime
            .block_on(candidate_list(&client, &path))
            .first()
            .map(|c| format!("Expiring session 0x{:x},", c.ephemeral_owner));
        let next = 1 - leader;
        let mut victim = nodes[leader].take().expect("the leader runs");
        // A random pause, so that the kill falls anywhere in the victim's heartbeat cycle: the loop's fixed
        // timing (restart, queue, kill) would otherwise kill at the same phase every time.
        let pause = Duration::from_millis(fastrand::u64(..1000));
        thread::sleep(pause);
        let zk_log_from = zk.log().len();
        let faulted = Instant::now();
        victim.signal(Signal::SIGKILL);
        let new = witness.wait_live("w", Some(ids[next]), Duration::from_secs(30));
        let (killed_at, opened_at) = (utc_of(faulted), utc_of(new.opened));
        let expired = zk.log().get(zk_log_from..).and_then(|text| {
            text.lines()
                .filter(|l| {
                    victim_session
                        .as_ref()
                        .is_some_and(|v| l.contains(v.as_str()))
                })
                .find_map(|l| {
                    // HH:mm:ss.SSS at the start of the line (the rig's server log format, UTC).
                    let h: f64 = l.get(0..2)?.parse().ok()?;
                    let m: f64 = l.get(3..5)?.parse().ok()?;
                    let s: f64 = l.get(6..12)?.parse().ok()?;
                    let t = h * 3600.0 + m * 60.0 + s;
                    let t = if t + 43_200.0 < killed_at {
                        t + 86_400.0
                    } else {
                        t
                    };
                    (t >= killed_at - 0.01).then_some(t)
                })
        });
        if let Some(t) = expired {
            to_expiry.push(t - killed_at);
            expiry_to_start.push(opened_at - t);
        }
        witness.assert_no_overlap("w");
        let old = witness.again(&old);
        fault_to_start.push(new.opened.duration_since(faulted));
        death_to_start.push(gap(&old, &new));
        died.push(old.closed.expect("closed").duration_since(faulted));
        victim.kill();
        nodes[leader] = Some(agent.start(&toml, ids[leader]));
        wait_queue(
            &zk.connect_string(),
            &path,
            &[ids[next], ids[leader]],
            Duration::from_secs(30),
        );
    }
    let med = |v: &mut Vec<f64>| -> Option<f64> {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).map(|x| round3(*x))
    };
    let (kill_to_expiry, expiry_to_child) = (med(&mut to_expiry), med(&mut expiry_to_start));
    println!(
        "  {} crash failover (S = {S_CRASH}, {trials} SIGKILLs): SIGKILL -> new child median {:.3} s, min {:.3} s, max \
         {:.3} s; old child died median {:.1} ms after the SIGKILL; from the server's log: SIGKILL -> session expired \
         median {kill_to_expiry:?} s, expired -> new child median {expiry_to_child:?} s",
        agent.name(),
        median(&fault_to_start).as_secs_f64(),
        quantile(&fault_to_start, 0.0).as_secs_f64(),
        quantile(&fault_to_start, 1.0).as_secs_f64(),
        ms(median(&died))
    );
    json!({
        "trials": trials, "session_timeout_s": 2.0,
        "median_s": round3(median(&fault_to_start).as_secs_f64()),
        "max_s": round3(quantile(&fault_to_start, 1.0).as_secs_f64()),
        "death_to_start_median_s": round3(median(&death_to_start).as_secs_f64()),
        "old_child_died_median_ms": ms(median(&died)),
        "min_s": round3(quantile(&fault_to_start, 0.0).as_secs_f64()),
        "kill_to_expiry_median_s": kill_to_expiry, "expiry_to_start_median_s": expiry_to_child,
        "fault_to_start_s": fault_to_start.iter().map(|d| round3(d.as_secs_f64())).collect::<Vec<_>>(),
    })
}
