//! The command line: parses arguments, installs logging, loads the config, runs, maps the result to an
//! exit code (SPEC §2: 0 clean, 1 fatal runtime error, 2 usage, 78 bad config; and for `status`, 3
//! when a worker of the config runs nowhere).
//!
//! `run` writes to stderr only through the log writer of [`logging`], which never blocks the event
//! loop; its last error is printed after the log is written out.

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
        return ExitCode::from(
            u8::try_from(zk_supervise::process::spawner_main()).unwrap_or(EXIT_FATAL),
        );
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(config),
        Command::Status { config, json } => {
            let cfg = match config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            status(&cfg, json)
        }
        Command::Run { config } => {
            let logs = logging::init(cli.log_format);
            let (code, message) = match config::load(&config) {
                Ok(cfg) => run(cfg),
                Err(e) => (ExitCode::from(EXIT_CONFIG), Some(e.to_string())),
            };
            logs.close(message);
            code
        }
    }
}

/// `check`: validates the file and reads the credentials file it names, on a thread given
/// [`zk_supervise::files::READ_DEADLINE`] (only a hung file system can make a read wait: a FIFO or a
/// device is refused at once).
fn check(path: PathBuf) -> ExitCode {
    let shown = path.display().to_string();
    let checked =
        zk_supervise::files::with_deadline(zk_supervise::files::READ_DEADLINE, move || {
            match config::load(&path) {
                Ok(cfg) => match credentials_problem(&cfg) {
                    Some(problem) => Err(problem),
                    None => Ok(cfg.summary()),
                },
                Err(e) => Err(e.to_string()),
            }
        });
    match checked {
        Some(Ok(summary)) => {
            for line in summary {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Some(Err(problem)) => {
            eprintln!("{problem}");
            ExitCode::from(EXIT_CONFIG)
        }
        None => {
            eprintln!(
                "{shown}: not read within {:?} (a hung file system?)",
                zk_supervise::files::READ_DEADLINE
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Whether the credentials file named by the config is unusable, as a one-line message that names
/// the file and never its content.
fn credentials_problem(cfg: &config::Config) -> Option<String> {
    let auth = cfg.zookeeper.auth.as_ref()?;
    config::read_credentials(auth)
        .err()
        .map(|e| format!("{}: {e}", cfg.path.display()))
}

/// The single-threaded runtime the daemon and `status` run on (the work is waiting on ZooKeeper and
/// on children, never on the CPU).
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("zk-supervise: cannot start the runtime: {e}"))
}

fn status(cfg: &config::Config, json: bool) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    use zk_supervise::status;
    match runtime.block_on(status::collect(cfg)) {
        Ok(workers) => {
            if json {
                println!("{}", status::to_json(&workers));
            } else {
                print!("{}", status::to_table(&workers));
            }
            if status::not_running(&workers).is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(status::EXIT_NOT_RUNNING)
            }
        }
        Err(e) if e.is_config() => {
            eprintln!("{}: {e}", cfg.path.display());
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("zk-supervise: {e}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

/// Runs the daemon; returns its exit code and the error to print, if any (printed by the caller once
/// the event loop is gone, so that a stderr nobody reads cannot hold it).
fn run(cfg: config::Config) -> (ExitCode, Option<String>) {
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
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(message) => return (ExitCode::from(EXIT_FATAL), Some(message)),
    };
    // A panic anywhere is a fatal runtime error (exit 1), not Rust's 101 (the panic hook has logged it);
    // the guards then kill the children, as they do whenever the supervisor dies.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(serve(cfg))
    }));
    outcome.unwrap_or_else(|_| (ExitCode::from(EXIT_FATAL), None))
}

async fn serve(cfg: config::Config) -> (ExitCode, Option<String>) {
    let control = Control::default();
    if let Err(e) = handle_signals(control.clone()) {
        let message = format!("zk-supervise: cannot install signal handlers: {e}");
        return (ExitCode::from(EXIT_FATAL), Some(message));
    }
    match zk_supervise::run(cfg, control, |_| {}).await {
        Ok(()) => (ExitCode::SUCCESS, None),
        Err(e) if e.is_config() => (ExitCode::from(EXIT_CONFIG), Some(e.to_string())),
        Err(e) => (
            ExitCode::from(EXIT_FATAL),
            Some(format!("zk-supervise: {e}")),
        ),
    }
}

/// SIGTERM or SIGINT: clean shutdown; a second one: SIGKILL the children now. SIGHUP: reload.
fn handle_signals(control: Control) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
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
