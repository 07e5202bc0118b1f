//! The command line: parses arguments, installs logging, loads the config, runs, maps the result to an
//! exit code (SPEC §2: 0 clean, 1 fatal runtime error, 2 usage, 78 bad config; and for `status`, 3
//! when a worker of the config runs nowhere).
//!
//! `main` calls one [`run`], which returns the exit code or a [`Fatal`] error, and prints that error
//! once (ripgrep's `crates/core/main.rs`). The daemon writes to stderr only through the log writer of
//! [`logging`], which never blocks the event loop; its last error is printed after the log is written
//! out.

mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use logging::Format as LogFormat;
use zk_supervise::{config, Control};

const EXIT_FATAL: u8 = 1;
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "zk-supervise",
    version,
    about = "Runs background workers with high availability and without duplicates, elected through ZooKeeper",
    after_help = "Exit codes: 0 success; 1 fatal runtime error (status: ZooKeeper unreachable); 2 usage; 3 status: a worker of the config runs nowhere; 78 bad config"
)]
struct Cli {
    /// Log format
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground
    Run {
        /// The workers file (TOML)
        config: PathBuf,
    },
    /// Validate the config without touching ZooKeeper
    Check {
        /// The workers file (TOML)
        config: PathBuf,
    },
    /// Show, per election, the leader, the candidates waiting behind it, whether the child runs and
    /// why not
    ///
    /// Exit codes: 0 every worker of the config runs somewhere; 3 a worker of the config runs nowhere
    /// (so it serves as a health check); 1 ZooKeeper cannot be reached; 78 bad config.
    Status {
        /// The workers file (TOML)
        config: PathBuf,
        /// Print JSON (stable field names) instead of a table
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // The spawner of the guards (see src/process/spawner.rs) is this same binary; it starts no
    // runtime and no logging.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__guards") {
        return ExitCode::from(u8::try_from(zk_supervise::spawner_main()).unwrap_or(EXIT_FATAL));
    }
    let cli = Cli::parse();
    // The daemon writes to stderr through the log writer only, and so does its last error.
    let logs = matches!(cli.command, Command::Run { .. }).then(|| logging::init(cli.log_format));
    let (code, message) = match run(cli.command) {
        Ok(code) => (code, None),
        Err(fatal) => (ExitCode::from(fatal.exit_code()), fatal.message()),
    };
    match logs {
        Some(logs) => logs.close(message),
        None => {
            if let Some(message) = message {
                eprintln!("{message}");
            }
        }
    }
    code
}

/// Why a command failed: what `main` prints (once), and the exit code.
#[derive(Debug)]
enum Fatal {
    /// The file is invalid or cannot be read (78).
    Config(config::ConfigError),
    /// `check`: the credentials file it names is unusable (78).
    Credentials {
        config: PathBuf,
        problem: config::CredentialsError,
    },
    /// `check`: the file was not read within the deadline (78).
    NotRead { config: PathBuf },
    /// The runtime could not be built (1).
    Runtime(std::io::Error),
    /// The signal handlers could not be installed (1).
    Signals(std::io::Error),
    /// `status` could not read the elections (78 when the config is the cause, else 1).
    Status {
        config: PathBuf,
        error: Box<zk_supervise::status::StatusError>,
    },
    /// The daemon stopped without being asked to (78 when the config is the cause, else 1).
    Daemon(Box<zk_supervise::RunError>),
    /// The daemon panicked: the panic hook has logged it (1, not Rust's 101; the guards then kill
    /// the children, as they do whenever the supervisor dies).
    Panicked,
}

impl Fatal {
    fn exit_code(&self) -> u8 {
        match self {
            Fatal::Config(_) | Fatal::Credentials { .. } | Fatal::NotRead { .. } => EXIT_CONFIG,
            Fatal::Status { error, .. } if error.is_config() => EXIT_CONFIG,
            Fatal::Daemon(e) if e.is_config() => EXIT_CONFIG,
            Fatal::Runtime(_)
            | Fatal::Signals(_)
            | Fatal::Status { .. }
            | Fatal::Daemon(_)
            | Fatal::Panicked => EXIT_FATAL,
        }
    }

    /// The one message printed for it, if any.
    fn message(&self) -> Option<String> {
        Some(match self {
            Fatal::Config(e) => e.to_string(),
            Fatal::Credentials { config, problem } => format!("{}: {problem}", config.display()),
            Fatal::NotRead { config } => format!(
                "{}: not read within {:?} (a hung file system?)",
                config.display(),
                zk_supervise::files::READ_DEADLINE
            ),
            Fatal::Runtime(e) => format!("zk-supervise: cannot start the runtime: {e}"),
            Fatal::Signals(e) => format!("zk-supervise: cannot install signal handlers: {e}"),
            Fatal::Status { config, error } if error.is_config() => {
                format!("{}: {error}", config.display())
            }
            Fatal::Status { error, .. } => format!("zk-supervise: {error}"),
            Fatal::Daemon(e) if e.is_config() => e.to_string(),
            Fatal::Daemon(e) => format!("zk-supervise: {e}"),
            Fatal::Panicked => return None,
        })
    }
}

/// Runs one command; its exit code, or why it failed.
fn run(command: Command) -> Result<ExitCode, Fatal> {
    match command {
        Command::Check { config } => check(config),
        Command::Status { config, json } => status(&load(&config)?, json),
        Command::Run { config } => daemon(load(&config)?),
    }
}

fn load(path: &std::path::Path) -> Result<config::Config, Fatal> {
    config::load(path).map_err(Fatal::Config)
}

/// `check`: validates the file and reads the credentials file it names, on a thread given
/// [`zk_supervise::files::READ_DEADLINE`] (only a hung file system can make a read wait: a FIFO or a
/// device is refused at once).
fn check(path: PathBuf) -> Result<ExitCode, Fatal> {
    let shown = path.clone();
    let checked =
        zk_supervise::files::with_deadline(zk_supervise::files::READ_DEADLINE, move || {
            let cfg = load(&path)?;
            if let Some(auth) = &cfg.zookeeper.auth {
                // The message names the file, never its content.
                config::read_credentials(auth).map_err(|problem| Fatal::Credentials {
                    config: cfg.path.clone(),
                    problem,
                })?;
            }
            Ok(cfg.summary())
        });
    for line in checked.ok_or(Fatal::NotRead { config: shown })?? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The single-threaded runtime the daemon and `status` run on (the work is waiting on ZooKeeper and
/// on children, never on the CPU).
fn runtime() -> Result<tokio::runtime::Runtime, Fatal> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Fatal::Runtime)
}

fn status(cfg: &config::Config, json: bool) -> Result<ExitCode, Fatal> {
    use zk_supervise::status;
    let workers = runtime()?
        .block_on(status::collect(cfg))
        .map_err(|error| Fatal::Status {
            config: cfg.path.clone(),
            error: Box::new(error),
        })?;
    if json {
        println!("{}", status::to_json(&workers));
    } else {
        print!("{}", status::to_table(&workers));
    }
    Ok(if status::not_running(&workers).is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(status::EXIT_NOT_RUNNING)
    })
}

/// Runs the daemon until a clean shutdown. Its last error is printed by `main` once the event loop
/// is gone, so that a stderr nobody reads cannot hold it.
fn daemon(cfg: config::Config) -> Result<ExitCode, Fatal> {
    tracing::info!(
        "zk-supervise {} starting: config={} node={} workers={}",
        env!("CARGO_PKG_VERSION"),
        std::path::absolute(&cfg.path)
            .unwrap_or_else(|_| cfg.path.clone())
            .display(),
        cfg.node.id,
        cfg.workers.len()
    );
    // Before the spawner starts: it inherits the limit, and so do the guards it forks.
    zk_supervise::limits::fit(cfg.workers.len());
    let runtime = runtime()?;
    // A panic anywhere is a fatal runtime error (exit 1), not Rust's 101 (the panic hook has logged it).
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(serve(cfg))
    }));
    outcome.unwrap_or(Err(Fatal::Panicked))
}

async fn serve(cfg: config::Config) -> Result<ExitCode, Fatal> {
    let control = Control::default();
    handle_signals(control.clone()).map_err(Fatal::Signals)?;
    zk_supervise::run(cfg, control, |_| {})
        .await
        .map_err(|e| Fatal::Daemon(Box::new(e)))?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or SIGINT: clean shutdown; a second one: SIGKILL the children now. SIGHUP: reload.
fn handle_signals(control: Control) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    // Detached on purpose: it must hear a second signal until the very end of shutdown, and it ends
    // with the runtime, once `serve` has returned.
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    control.reload.notify_one();
                    continue;
                }
            };
            seen += 1;
            if seen == 1 {
                tracing::info!(signal = name, "shutdown requested");
                control.shutdown.cancel();
            } else {
                tracing::warn!(signal = name, "second signal: killing the children now");
                control.kill.cancel();
            }
        }
    });
    Ok(())
}
