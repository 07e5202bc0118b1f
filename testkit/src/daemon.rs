//! The daemon under test: a config written to a temp dir, the real binary run on it, its log captured.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::rig::{read_lossy, Guarded, TempDir};
use crate::wait::poll_until;

/// The path of the binary under test: `zk-supervise` in the directory of the test or benchmark executable
/// that runs (`target/<profile>/deps/<name>-<hash>` next to `target/<profile>/zk-supervise`). Cargo builds the
/// package's binaries before its integration tests and benchmarks; it tells only them where
/// (`CARGO_BIN_EXE_zk-supervise`), not a library such as this one, so the kit finds it the way that variable
/// would (tests/it/rig.rs checks that both agree).
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the path of the running test");
        let dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test runs from target/<profile>/deps");
        let bin = dir.join("zk-supervise");
        assert!(
            bin.exists(),
            "{} is missing: run the tests and benchmarks through cargo, which builds it",
            bin.display()
        );
        bin.into_os_string()
            .into_string()
            .expect("a UTF-8 path to the binary")
    })
}

/// One `[[worker]]` of a test config. `grace_period` defaults to "1s" (the daemon's 5 s default does not fit a
/// 2 s session); the other fields are left out unless set. `extra` lines go into the table as they are, e.g.
/// `max_restart_delay = "2s"` or `env = { A = "b" }`.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub name: String,
    pub command: Vec<String>,
    pub grace_period: Option<String>,
    pub restart_delay: Option<String>,
    pub handoff_after: Option<u32>,
    pub stop_signal: Option<String>,
    pub extra: Vec<String>,
}

impl WorkerSpec {
    pub fn new(name: &str, command: Vec<String>) -> WorkerSpec {
        WorkerSpec {
            name: name.to_owned(),
            command,
            grace_period: Some("1s".to_owned()),
            restart_delay: None,
            handoff_after: None,
            stop_signal: None,
            extra: Vec::new(),
        }
    }

    pub fn grace_period(mut self, grace: &str) -> WorkerSpec {
        self.grace_period = Some(grace.to_owned());
        self
    }

    pub fn restart_delay(mut self, delay: &str) -> WorkerSpec {
        self.restart_delay = Some(delay.to_owned());
        self
    }

    pub fn handoff_after(mut self, failures: u32) -> WorkerSpec {
        self.handoff_after = Some(failures);
        self
    }

    pub fn stop_signal(mut self, signal: &str) -> WorkerSpec {
        self.stop_signal = Some(signal.to_owned());
        self
    }

    pub fn extra(mut self, toml_line: &str) -> WorkerSpec {
        self.extra.push(toml_line.to_owned());
        self
    }
}

/// A TOML string (JSON strings are valid TOML basic strings).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// A config (SPEC §3) without a `[node]` table: [`Supervisor::start`] adds the node id. `session_timeout` is a
/// duration string such as "2s" (the test servers accept 400ms..4s); `server_tick` is the test servers'
/// `tickTime`, 200 ms.
pub fn config(connect: &str, root: &str, session_timeout: &str, workers: &[WorkerSpec]) -> String {
    let mut toml = format!(
        "[zookeeper]\nconnect = {}\nsession_timeout = {}\nserver_tick = \"200ms\"\nroot = {}\n",
        toml_str(connect),
        toml_str(session_timeout),
        toml_str(root)
    );
    for worker in workers {
        let command: Vec<String> = worker.command.iter().map(|arg| toml_str(arg)).collect();
        let _ = write!(
            toml,
            "\n[[worker]]\nname = {}\ncommand = [{}]\n",
            toml_str(&worker.name),
            command.join(", ")
        );
        let durations = [
            ("grace_period", &worker.grace_period),
            ("restart_delay", &worker.restart_delay),
            ("stop_signal", &worker.stop_signal),
        ];
        for (key, value) in durations {
            if let Some(value) = value {
                let _ = writeln!(toml, "{key} = {}", toml_str(value));
            }
        }
        if let Some(failures) = worker.handoff_after {
            let _ = writeln!(toml, "handoff_after = {failures}");
        }
        for line in &worker.extra {
            let _ = writeln!(toml, "{line}");
        }
    }
    toml
}

/// `config_toml`, with `[node] id = node_id` added unless it has a `[node]` table.
fn with_node_id(config_toml: &str, node_id: &str) -> String {
    let mut toml = config_toml.to_owned();
    if !toml.lines().any(|line| line.trim() == "[node]") {
        let _ = write!(toml, "\n[node]\nid = {}\n", toml_str(node_id));
    }
    toml
}

/// A running `zk-supervise run <config>`. Dropping it SIGKILLs and reaps it (printing its log if the test is
/// failing).
pub struct Supervisor {
    node_id: String,
    process: Guarded,
    dir: TempDir,
}

impl Supervisor {
    /// Writes `config_toml` (plus `[node] id = node_id` unless it has a `[node]` table) to a temp dir and runs
    /// `zk-supervise run` on it, stdout and stderr to a log file, `RUST_LOG` unset.
    pub fn start(config_toml: &str, node_id: &str) -> Supervisor {
        Supervisor::start_with_args(config_toml, node_id, &[])
    }

    /// Like [`Supervisor::start`] with global flags before `run`, e.g. `["--log-format", "json"]`.
    pub fn start_with_args(config_toml: &str, node_id: &str, global_args: &[&str]) -> Supervisor {
        Supervisor::start_with(config_toml, node_id, global_args, &[])
    }

    /// Like [`Supervisor::start_with_args`], with extra environment variables (`NOTIFY_SOCKET`,
    /// `JOURNAL_STREAM`...).
    pub fn start_with(
        config_toml: &str,
        node_id: &str,
        global_args: &[&str],
        env: &[(&str, &str)],
    ) -> Supervisor {
        let mut command = Command::new(bin());
        command
            .args(global_args)
            .arg("run")
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied());
        Supervisor::spawn(command, config_toml, node_id, "supervisor")
    }

    /// Like [`Supervisor::start`], with stderr (where the daemon logs) to `stderr` instead of the log file, e.g.
    /// the write end of a pipe the test does not read.
    pub fn start_with_stderr(config_toml: &str, node_id: &str, stderr: Stdio) -> Supervisor {
        let mut command = Command::new(bin());
        command
            .arg("run")
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM");
        Supervisor::spawn_with(command, config_toml, node_id, "supervisor", Some(stderr))
    }

    /// Runs `command` with one more argument: the path of `config_toml` (with `[node] id = node_id` added as in
    /// `start`), written to a temp dir `<label>-<node_id>`; stdout and stderr go to a log file.
    fn spawn(command: Command, config_toml: &str, node_id: &str, label: &str) -> Supervisor {
        Supervisor::spawn_with(command, config_toml, node_id, label, None)
    }

    /// Like [`Supervisor::spawn`], with stderr to `stderr` if given.
    fn spawn_with(
        mut command: Command,
        config_toml: &str,
        node_id: &str,
        label: &str,
        stderr: Option<Stdio>,
    ) -> Supervisor {
        let dir = TempDir::new(&format!("{label}-{node_id}"));
        let config_path = dir.path().join("workers.toml");
        fs::write(&config_path, with_node_id(config_toml, node_id)).expect("write the config");
        let log = fs::File::create(dir.path().join("supervisor.log")).expect("create the log");
        command
            // Its own process group, so a test can signal the group (a Ctrl-Z) without stopping itself.
            .process_group(0)
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log"))
            .stderr(stderr.unwrap_or_else(|| log.into()));
        let what = command.get_program().to_string_lossy().into_owned();
        Supervisor {
            node_id: node_id.to_owned(),
            process: Guarded::spawn(&mut command, &what),
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("workers.toml")
    }

    /// Rewrites the config file (for SIGHUP reload tests); the `[node]` table is added as in `start`.
    pub fn write_config(&self, config_toml: &str) {
        fs::write(self.config_path(), with_node_id(config_toml, &self.node_id))
            .expect("write the config");
    }

    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) -> ExitStatus {
        self.process.kill()
    }

    /// Whether the process has exited (without reaping it).
    pub fn has_exited(&self) -> bool {
        self.process.has_exited()
    }

    /// Waits for the process to exit by itself and reaps it.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let exited = poll_until(timeout, &mut || self.process.has_exited());
        assert!(
            exited,
            "supervisor {} (pid {}) did not exit within {timeout:?}\n{}",
            self.node_id,
            self.pid(),
            self.log_section()
        );
        self.process.reap()
    }

    /// Its stdout and stderr so far.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("supervisor.log"))
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let found = poll_until(timeout, &mut || self.log().contains(needle));
        assert!(
            found,
            "timed out after {timeout:?} waiting for {needle:?} in the log of supervisor {}\n{}",
            self.node_id,
            self.log_section()
        );
    }

    fn log_section(&self) -> String {
        format!(
            "----- log of supervisor {} (pid {}) -----\n{}\n----- end of log -----",
            self.node_id,
            self.pid(),
            self.log()
        )
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.log_section());
        }
        self.process.kill();
    }
}

/// Runs `zk-supervise <args>` to completion (for `check`, `status`, `--version`); panics if it takes longer
/// than `timeout`. `RUST_LOG` is unset.
pub fn run_cli(args: &[&str], timeout: Duration) -> Output {
    let dir = TempDir::new("cli");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut command = Command::new(bin());
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("create stdout file"))
        .stderr(fs::File::create(&err).expect("create stderr file"));
    let mut process = Guarded::spawn(&mut command, bin());
    let exited = poll_until(timeout, &mut || process.has_exited());
    let status = if exited {
        process.reap()
    } else {
        process.kill();
        ExitStatus::from_raw(-1)
    };
    let output = Output {
        status,
        stdout: fs::read(&out).unwrap_or_default(),
        stderr: fs::read(&err).unwrap_or_default(),
    };
    assert!(
        exited,
        "zk-supervise {args:?} did not finish within {timeout:?}; stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Like [`Supervisor::start`], but runs `program` (argv, e.g. `["python3", "bench/kazoo_agent.py"]`) with the
/// config file's path appended instead of `zk-supervise run`: a baseline agent that reads the same config,
/// handled like the daemon (log captured, signals, exit, killed on drop).
pub fn start_program(program: &[&str], config_toml: &str, node_id: &str) -> Supervisor {
    let (first, rest) = program.split_first().expect("a program");
    let mut command = Command::new(first);
    command.args(rest);
    Supervisor::spawn(command, config_toml, node_id, "program")
}

impl Supervisor {
    /// Like [`Supervisor::write_config`], but the file is replaced in one step (written aside, then renamed
    /// over it), so that a reload that reads it at any moment reads a whole file, old or new.
    pub fn replace_config(&self, config_toml: &str) {
        let path = self.config_path();
        let aside = path.with_extension("toml.new");
        fs::write(&aside, with_node_id(config_toml, &self.node_id)).expect("write the config");
        fs::rename(&aside, &path).expect("replace the config");
    }
}
