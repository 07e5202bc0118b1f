//! The process tree, from `/proc`: what the guard and the spawner kill when they clean up.

use nix::unistd::Pid;

/// The children of `pid` (of all its threads), from `/proc/<pid>/task/*/children`, zombies included.
pub(crate) fn children_of(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(Pid::from_raw)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every descendant of `pid`, parents before their children. A snapshot: a process may fork or exit
/// while the tree is read, which is why callers look again until nothing is left.
pub(crate) fn descendants_of(pid: Pid) -> Vec<Pid> {
    let mut seen = std::collections::HashSet::from([pid]);
    let mut found: Vec<Pid> = Vec::new();
    let mut queue = vec![pid];
    // A bound against a tree that grows as fast as it is read (a fork bomb): the callers loop anyway.
    while let Some(parent) = queue.pop() {
        for child in children_of(parent) {
            if seen.insert(child) && found.len() < 100_000 {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}
