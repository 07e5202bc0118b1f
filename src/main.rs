//! The command line: parses arguments, installs logging, loads the config, runs, maps the result to an
//! exit code (SPEC §2: 0 clean, 1 fatal runtime error, 2 usage, 78 bad config).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use zk_supervise::{config, Control};

const EXIT_FATAL: u8 = 1;
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "zk-supervise",
    version,
    about = "Runs background workers with high availability and without duplicates, elected through ZooKeeper"
)]
struct Cli {
    /// Log format
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Show, per worker, the leader, the candidates waiting behind it, and whether the child runs
    Status {
        /// The workers file (TOML)
        config: PathBuf,
        /// Print JSON (stable field names) instead of a table
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // The spawner of the guards (see src/spawner.rs) is this same binary; it starts no runtime and
    // no logging.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__guards") {
        return ExitCode::from(u8::try_from(zk_supervise::spawner::main()).unwrap_or(EXIT_FATAL));
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(cfg) if cfg.zookeeper.auth.is_some() && credentials_problem(&cfg).is_some() => {
                eprintln!("{}", credentials_problem(&cfg).unwrap_or_default());
                ExitCode::from(EXIT_CONFIG)
            }
            Ok(cfg) => {
                for line in cfg.summary() {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
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
            init_logging(cli.log_format);
            let cfg = match config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            run(cfg)
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
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("zk-supervise: cannot start the runtime: {e}");
            ExitCode::from(EXIT_FATAL)
        })
}

fn status(cfg: &config::Config, json: bool) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(zk_supervise::status::collect(cfg)) {
        Ok(workers) if json => {
            println!("{}", zk_supervise::status::to_json(&workers));
            ExitCode::SUCCESS
        }
        Ok(workers) => {
            print!("{}", zk_supervise::status::to_table(&workers));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zk-supervise: {e}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

fn run(cfg: config::Config) -> ExitCode {
    zk_supervise::process::raise_open_file_limit();
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // A panic anywhere is a fatal runtime error (exit 1), not Rust's 101; the guards then kill the
    // children, as they do whenever the supervisor dies.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(serve(cfg))
    }));
    outcome.unwrap_or_else(|_| ExitCode::from(EXIT_FATAL))
}

async fn serve(cfg: config::Config) -> ExitCode {
    let control = Control::default();
    if let Err(e) = handle_signals(control.clone()) {
        eprintln!("zk-supervise: cannot install signal handlers: {e}");
        return ExitCode::from(EXIT_FATAL);
    }
    match zk_supervise::run(cfg, control, |_| {}).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_config() => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("zk-supervise: {e}");
            ExitCode::from(EXIT_FATAL)
        }
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

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,zookeeper_client=warn"));
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match (format, journald) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
}
