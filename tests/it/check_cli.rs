//! `zk-supervise check <config>` through the real binary (SPEC §2, §3): exit 0 and one summary
//! line per worker on stdout for a valid file; exit 78 and every problem on stderr, one per line
//! as `<path>:<line>:<column>: <message>`, for an invalid one. No ZooKeeper is involved.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXIT_CONFIG: i32 = 78;

/// A directory of its own in the rig's temp root, removed on drop.
struct TempDir(testkit::TempDir);

impl TempDir {
    fn new() -> Self {
        Self(testkit::TempDir::new("check"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `text` to `name` in this directory and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write the config");
        path
    }
}

fn check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zk-supervise"))
        .arg("check")
        .arg(path)
        .env_remove("RUST_LOG")
        .output()
        .expect("run zk-supervise check")
}

/// Runs `check` on `text` and asserts it is refused with exactly these problems, in order:
/// each `(place, fragment)` is a line that starts with `<path>:<place>: ` and contains `fragment`.
fn assert_refused(text: &str, expected: &[(&str, &str)]) {
    let dir = TempDir::new();
    let path = dir.file("workers.toml", text);
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(EXIT_CONFIG),
        "expected exit 78; stderr:\n{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing must go to stdout, got:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        expected.len(),
        "expected {} problem lines, got:\n{stderr}",
        expected.len()
    );
    for (line, (place, fragment)) in lines.iter().zip(expected) {
        let prefix = format!("{}:{place}: ", path.display());
        assert!(
            line.starts_with(&prefix),
            "expected a line starting with {prefix:?}, got {line:?}"
        );
        assert!(line.contains(fragment), "expected {fragment:?} in {line:?}");
    }
}

const ZK: &str = "[zookeeper]\nconnect = \"zk1:2181,zk2:2181,zk3:2181/apps\"\n";

#[test]
fn toml_syntax_error() {
    assert_refused(
        "[zookeeper]\nconnect = \"zk1:2181\n",
        &[("2:20", "syntax error: invalid basic string")],
    );
}

#[test]
fn unknown_key_grace_priod() {
    let text = format!(
        "{ZK}\n[[worker]]\nname = \"mailer\"\ncommand = [\"/usr/bin/mailer\"]\ngrace_priod = \"5s\"\n"
    );
    assert_refused(
        &text,
        &[(
            "7:1",
            "worker \"mailer\": unknown key `grace_priod`; did you mean `grace_period`?",
        )],
    );
}

#[test]
fn missing_connect() {
    let text = "[zookeeper]\nsession_timeout = \"15s\"\n\n[[worker]]\nname = \"a\"\ncommand = [\"/bin/a\"]\n";
    assert_refused(text, &[("1:1", "zookeeper: connect is required")]);
}

#[test]
fn duplicate_worker_names() {
    let text = format!(
        "{ZK}\n[[worker]]\nname = \"mailer\"\ncommand = [\"/bin/a\"]\n\n[[worker]]\nname = \"mailer\"\ncommand = [\"/bin/b\"]\n"
    );
    assert_refused(
        &text,
        &[(
            "9:8",
            "worker \"mailer\": duplicate name, already used by the worker at line 5",
        )],
    );
}

#[test]
fn empty_command() {
    let text = format!("{ZK}\n[[worker]]\nname = \"mailer\"\ncommand = []\n");
    assert_refused(
        &text,
        &[("6:11", "worker \"mailer\": command: must not be empty")],
    );
}

#[test]
fn bad_duration() {
    let text = format!(
        "{ZK}\n[[worker]]\nname = \"mailer\"\ncommand = [\"/bin/a\"]\ngrace_period = \"5x\"\n"
    );
    assert_refused(
        &text,
        &[(
            "7:16",
            "worker \"mailer\": grace_period: bad duration \"5x\": expected a number with a unit (ms, s, m, h)",
        )],
    );
}

#[test]
fn name_with_a_slash() {
    let text = format!("{ZK}\n[[worker]]\nname = \"mail/er\"\ncommand = [\"/bin/a\"]\n");
    assert_refused(
        &text,
        &[(
            "5:8",
            "worker \"mail/er\": name: may contain only letters, digits",
        )],
    );
}

#[test]
fn name_with_a_leading_dot() {
    let text = format!("{ZK}\n[[worker]]\nname = \".mailer\"\ncommand = [\"/bin/a\"]\n");
    assert_refused(
        &text,
        &[(
            "5:8",
            "worker \".mailer\": name: must start with a letter or a digit",
        )],
    );
}

#[test]
fn grace_period_that_does_not_fit_the_lease() {
    let text =
        format!("{ZK}\n[[worker]]\nname = \"x\"\ncommand = [\"/bin/x\"]\ngrace_period = \"12s\"\n");
    assert_refused(
        &text,
        &[(
            "7:16",
            "worker \"x\": grace_period 12s does not fit the lease: with session_timeout 15s and server_tick 2s it must be at most 6s; shorten grace_period or raise session_timeout (or lower server_tick if the servers' tickTime is shorter)",
        )],
    );
}

#[test]
fn several_problems_are_all_reported() {
    let text = r#"[zookeeper]
session_timeout = "fifteen"

[[worker]]
name = "a/b"
command = []
grace_priod = "5s"

[[worker]]
name = "ok"
command = ["/bin/ok"]
handoff_after = "x"

[[worker]]
name = "ok"
command = ["/bin/ok"]
"#;
    assert_refused(
        text,
        &[
            ("1:1", "zookeeper: connect is required"),
            (
                "2:19",
                "zookeeper: session_timeout: bad duration \"fifteen\"",
            ),
            ("5:8", "worker \"a/b\": name:"),
            ("6:11", "worker \"a/b\": command: must not be empty"),
            ("7:1", "worker \"a/b\": unknown key `grace_priod`"),
            (
                "12:17",
                "worker \"ok\": handoff_after: expected an integer, found a string",
            ),
            (
                "15:8",
                "worker \"ok\": duplicate name, already used by the worker at line 10",
            ),
        ],
    );
}

#[test]
fn valid_file_prints_a_summary_line_per_worker() {
    let dir = TempDir::new();
    let text = format!(
        "{ZK}\n[[worker]]\nname = \"email-sender\"\ncommand = [\"/usr/bin/mailer\", \"--queue\", \"emails\"]\n\n\
         [[worker]]\nname = \"report\"\ncommand = [\"/usr/bin/report\"]\nrestart_delay = \"500ms\"\nhandoff_after = 0\n"
    );
    let out = check(&dir.file("workers.toml", &text));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "email-sender: /usr/bin/mailer --queue emails (grace 5s, restart 1s..30s, handoff after 5)\n\
         report: /usr/bin/report (grace 5s, restart 500ms..30s, handoff never)\n"
    );
}

#[test]
fn missing_file() {
    let dir = TempDir::new();
    let path = dir.path().join("nowhere.toml");
    let out = check(&path);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{}: no such file\n", path.display())
    );
}

/// The sample of SPEC §3, as an operator would start from it.
#[test]
fn example_config_from_the_spec() {
    let text = r#"
[zookeeper]
connect = "zk1:2181,zk2:2181,zk3:2181/apps"   # required; host:port list, optional /chroot suffix
session_timeout = "15s"                        # requested; the server's negotiated value is the one used
takeover_delay = "0s"                           # a new leader waits this long before starting the child
root = "/workers"                               # parent of the per-worker election paths

[node]
id = "db-1"                                     # default: the host name; shown by status, given to the child

[defaults]                                      # optional: any [[worker]] field except name and command
grace_period = "5s"

[[worker]]
name = "email-sender"                           # required, unique, [A-Za-z0-9][A-Za-z0-9._-]{0,127}
command = ["/usr/bin/mailer", "--queue", "emails"]   # required, non-empty argv; no shell is involved
working_dir = "/srv/mailer"                     # optional
env = { QUEUE = "emails" }                      # optional, added to the supervisor's environment
user = "mailer"                                 # optional, with group; needs root
group = "mailer"
stop_signal = "TERM"                            # default TERM
grace_period = "5s"                             # stop_signal -> SIGKILL; default 5s
restart_delay = "1s"                            # after the child exits; doubles up to max_restart_delay
max_restart_delay = "30s"                       # the delay resets once the child has run for max_restart_delay
handoff_after = 5                               # consecutive failures (exit within 10s of start) after which
                                                # this node gives leadership up and rejoins at the back; 0 = never

[worker.health_check]                           # optional
command = ["/usr/bin/mysql", "-e", "SELECT 1"]
interval = "10s"
timeout = "5s"
failures = 3                                    # consecutive; then stop the child and give leadership up
"#;
    let dir = TempDir::new();
    let out = check(&dir.file("workers.toml", text));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "email-sender: /usr/bin/mailer --queue emails (grace 5s, restart 1s..30s, handoff after 5, health check every 10s)\n"
    );
}

/// Runs `check` on `path` and returns its single stderr line (exit 78 asserted).
fn one_line_refusal(path: &Path) -> String {
    let out = check(path);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn a_directory_an_empty_file_and_a_dangling_symlink_are_one_line_each() {
    let dir = TempDir::new();
    assert!(one_line_refusal(dir.path()).contains("is a directory"));
    let empty = dir.file("empty.toml", "");
    assert!(one_line_refusal(&empty).contains("is empty"));
    let dangling = dir.path().join("dangling.toml");
    std::os::unix::fs::symlink(dir.path().join("gone.toml"), &dangling).expect("symlink");
    let line = one_line_refusal(&dangling);
    assert!(
        line.contains("symbolic link") && line.contains("gone.toml"),
        "{line}"
    );
}

#[test]
fn a_symlink_to_a_good_file_works() {
    let dir = TempDir::new();
    let good = dir.file(
        "real.toml",
        &format!("{ZK}[[worker]]\nname = \"w\"\ncommand = [\"/bin/true\"]\n"),
    );
    let link = dir.path().join("workers.toml");
    std::os::unix::fs::symlink(&good, &link).expect("symlink");
    let out = check(&link);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nul_bytes_in_argv_or_env_are_refused() {
    let text = format!(
        "{ZK}[[worker]]\nname = \"w\"\ncommand = [\"/bin/echo\", \"a\\u0000b\"]\nenv = {{ A = \"x\\u0000y\" }}\n"
    );
    let dir = TempDir::new();
    let out = check(&dir.file("w.toml", &text));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr.lines().all(|l| l.contains("NUL")), "{stderr}");
}

#[test]
fn limits_keep_a_huge_file_from_exhausting_the_host() {
    let many_args: Vec<String> = (0..5000).map(|i| format!("\"{i}\"")).collect();
    let text = format!(
        "{ZK}[[worker]]\nname = \"w\"\ncommand = [\"/bin/echo\", {}]\n",
        many_args.join(", ")
    );
    let dir = TempDir::new();
    let line = one_line_refusal(&dir.file("args.toml", &text));
    assert!(
        line.contains("too large") && line.contains("4096 arguments"),
        "{line}"
    );
    let mut workers = String::from(ZK);
    for i in 0..10_001 {
        workers.push_str(&format!(
            "[[worker]]\nname = \"w{i}\"\ncommand = [\"/bin/true\"]\n"
        ));
    }
    let line = one_line_refusal(&dir.file("workers.toml", &workers));
    assert!(line.contains("10001 workers; the limit is 10000"), "{line}");
}
