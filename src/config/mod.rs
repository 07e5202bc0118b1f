//! The configuration file: parse it, validate it completely, and report every problem at once.
//!
//! # Where things are
//!
//! - Here: the validated types ([`Config`], [`WorkerConfig`]...), [`load`] and [`parse`], and what
//!   the rest of the daemon asks of a config (a reload's [`restart_keys_changed`], `check`'s
//!   [`Config::summary`], the lease check against the negotiated timeout).
//! - `walk`: the walker over the spanned TOML document, one table of keys per section and one
//!   small reader per kind of value (duration with bounds, integer, argv, signal, absolute path).
//!   Why a walker rather than serde: every problem at once, each with its line and column.
//! - `rules`: the rules that involve several values, and the `[defaults]` merge with its blame.
//! - `error`: [`ConfigError`], its problems and their `line:column`.
//! - `connect`: `[zookeeper] connect`, parsed once into its servers and chroot ([`Connect`]).
//! - `duration`: `90s` and `1.5s`, read and printed the same way.
//! - `exec`: what `execve` will take of a worker's command and environment.
//!
//! A TOML syntax error is reported on its own (every syntax error the parser recovers from, but
//! nothing else): the document recovered after a syntax error is a guess, and checking it would
//! report problems that are not really there.
//!
//! # Rules beyond SPEC §3
//!
//! - `[defaults]` may set every `[[worker]]` key except `name` and `command`. A worker inherits
//!   every key it does not set; `env` and `health_check` are merged key by key, the worker's keys
//!   winning. A worker cannot switch off a health check that `[defaults]` gives it.
//! - A check that involves two values (`max_restart_delay >= restart_delay`, the lease bound on
//!   `grace_period`, `timeout <= interval`) is reported where the offending value was written: in
//!   the worker when it set one of them, else once in `[defaults]`.
//! - Limits, chosen so that a typo (`"15m"` for `"15s"`) is caught rather than obeyed:
//!   `session_timeout` 1s..=10m; `takeover_delay` at most 1h; `restart_delay` 10ms..=1h;
//!   `max_restart_delay` at most 1h and at least `restart_delay`; health check `interval`
//!   100ms..=1h, `timeout` 10ms..=`interval` (checks never overlap), `failures` at least 1.
//! - `working_dir` must be absolute (the supervisor's own directory is `/` under systemd);
//!   `env` names must not start with `ZK_SUPERVISE_` (the supervisor sets those, and the
//!   fencing token must not be overridden); no string that reaches `exec` may contain NUL.
//! - `stop_signal` is a signal name with or without `SIG`, any case; STOP, TSTP, TTIN, TTOU and
//!   CONT are refused because they pause or resume a process rather than end it.
//! - `node.id` defaults to the host name; it is non-empty, at most 255 characters, and has no
//!   control characters.
//! - Users and groups are not looked up here: that happens when the child is spawned. A numeric
//!   `user` or `group` is an id (at most 4294967294), valid without a passwd or group entry.
//! - `connect` is `host:port,...[/chroot]`; a URL (`zk://...`) is refused with the form to write.
//! - Exec limits are the kernel's (`exec`): an argument or `NAME=value` of at most 131071
//!   bytes (`MAX_ARG_STRLEN` counts the NUL), and a command with the child's whole environment within
//!   `ARG_MAX`, counted as `execve` counts it.

mod connect;
mod duration;
mod error;
mod exec;
mod rules;
#[cfg(test)]
mod tests;
mod walk;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::de::DeTable;

pub use connect::Connect;
pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, Location, Problem};
pub(crate) use exec::{arg_max, MAX_ARG_STRLEN};

/// A validated configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it was loaded from.
    pub path: PathBuf,
    pub zookeeper: ZkConfig,
    pub node: NodeConfig,
    /// `[metrics]`, if present.
    pub metrics: Option<MetricsConfig>,
    /// In file order.
    pub workers: Vec<WorkerConfig>,
}

/// The `[zookeeper]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZkConfig {
    /// `host:port,host:port/chroot`: its servers and chroot, and the string the client library
    /// takes.
    pub connect: Connect,
    /// The requested session timeout (1s..=10m, default 15s); the server may negotiate another.
    pub session_timeout: Duration,
    /// How long a new leader waits before starting the child (at most 1h, default 0s).
    pub takeover_delay: Duration,
    /// An upper bound on the servers' `tickTime` (10ms..=1m, default 2s): the lease's proof waits
    /// this long between an answer and the `sync` that proves it (see [`crate::lease`]).
    pub server_tick: Duration,
    /// Parent of the per-worker election paths: absolute, no trailing slash, not `/`.
    pub root: String,
    /// `auth = { scheme = "digest", credentials_file = "..." }` (SPEC §9), if set.
    pub auth: Option<AuthConfig>,
    /// `tls = { ca = "...", cert = "...", key = "..." }` (SPEC §9), if set.
    pub tls: Option<TlsConfig>,
}

/// How the daemon connects to ZooKeeper with TLS. Holds where the certificates and key are; the
/// files are read when connecting, never here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificates of the CAs that sign the servers' certificates.
    pub ca: PathBuf,
    /// The client's PEM certificate chain, for servers that authenticate clients (with `key`).
    pub cert: Option<PathBuf>,
    /// The PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

/// How the daemon authenticates to ZooKeeper. Holds where the secret is, never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// Only `digest`.
    pub scheme: String,
    /// A file holding `user:password`, readable by its owner only.
    pub credentials_file: PathBuf,
}

/// The secret of a credentials file. Its `Debug` shows the user, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub scheme: String,
    pub user: String,
    /// `user:password`, as ZooKeeper's digest scheme takes it.
    secret: Vec<u8>,
}

impl Credentials {
    /// `user:password`, for the client library's auth packet. Never log it.
    #[must_use]
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("scheme", &self.scheme)
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a credentials file is unusable. The messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("credentials file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: crate::files::ReadError,
    },
    #[error("credentials file {} is accessible to its group or others (mode {mode:04o}); chmod 600 it", path.display())]
    Exposed { path: PathBuf, mode: u32 },
    #[error("credentials file {}: not UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("credentials file {}: expected one line user:password", path.display())]
    Malformed { path: PathBuf },
}

/// Reads a credentials file: one line `user:password`. Like ssh with its keys, refuses a file that
/// its group or others may read or write. Error messages name the file, never its content.
///
/// # Errors
/// The file cannot be read, is not a regular file, is group- or world-accessible, or is not
/// `user:password`. It can block only on a hung file system: the daemon calls it off its event loop.
pub fn read_credentials(auth: &AuthConfig) -> Result<Credentials, CredentialsError> {
    use std::os::unix::fs::PermissionsExt;
    let path = || auth.credentials_file.clone();
    // The mode is the opened file's (`fstat`), not the path's: no window to swap the file between.
    let (meta, text) = crate::files::read_regular(&auth.credentials_file, MAX_CREDENTIALS_BYTES)
        .map_err(|source| CredentialsError::Unreadable {
            path: path(),
            source,
        })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::Exposed { path: path(), mode });
    }
    let text = String::from_utf8(text).map_err(|_| CredentialsError::NotUtf8 { path: path() })?;
    let line = text.trim_end_matches(['\n', '\r']);
    match line.split_once(':') {
        Some((user, password))
            if !user.is_empty() && !password.is_empty() && !line.contains('\n') =>
        {
            Ok(Credentials {
                scheme: auth.scheme.clone(),
                user: user.to_owned(),
                secret: line.as_bytes().to_vec(),
            })
        }
        _ => Err(CredentialsError::Malformed { path: path() }),
    }
}

/// The `[metrics]` section (SPEC §8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `/metrics` and `/healthz` are served.
    pub listen: std::net::SocketAddr,
}

/// The `[node]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's name in elections and `status`; defaults to the host name.
    pub id: String,
}

/// One `[[worker]]`, with `[defaults]` and the built-in defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`, unique in the file.
    pub name: String,
    /// The argv: non-empty, its first element non-empty. No shell is involved.
    pub command: Vec<String>,
    /// An absolute directory.
    pub working_dir: Option<PathBuf>,
    /// Added to the supervisor's environment.
    pub env: BTreeMap<String, String>,
    pub user: Option<String>,
    pub group: Option<String>,
    /// Default SIGTERM.
    pub stop_signal: Signal,
    /// From `stop_signal` to SIGKILL; default 5s; must fit the lease (see [`crate::lease::max_grace_period`]).
    pub grace_period: Duration,
    /// Default 1s; doubles after each failure up to `max_restart_delay`.
    pub restart_delay: Duration,
    /// Default 30s; at least `restart_delay`.
    pub max_restart_delay: Duration,
    /// Consecutive failures after which this node gives leadership up; default 5; 0 = never.
    pub handoff_after: u32,
    pub health_check: Option<HealthCheck>,
}

/// `[worker.health_check]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The argv, with the same rules as a worker's `command`.
    pub command: Vec<String>,
    /// Default 10s.
    pub interval: Duration,
    /// Default 5s; at most `interval`.
    pub timeout: Duration,
    /// Consecutive failures before the child is stopped; default 3, at least 1.
    pub failures: u32,
}

/// Reads and validates the config file at `path`.
///
/// # Errors
///
/// The file cannot be read (missing, no permission), is not a regular file (a FIFO, a device, a
/// directory: see [`crate::files::read_regular`]), is larger than 16 MiB, is not UTF-8, or [`parse`]
/// finds problems in it.
///
/// It can block only on a hung file system: the daemon calls it off its event loop.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    // Configuration management tools make symlinks: a good one is followed, a dangling one named.
    if let (Ok(link), Err(_)) = (std::fs::symlink_metadata(path), std::fs::metadata(path)) {
        if link.file_type().is_symlink() {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            return Err(ConfigError::whole_file(
                path,
                format!("is a symbolic link to {target}, which does not exist"),
            ));
        }
    }
    let bytes = match crate::files::read_regular(path, MAX_FILE_BYTES) {
        Ok((_, bytes)) => bytes,
        Err(crate::files::ReadError::NotRegular("a directory")) => {
            return Err(ConfigError::whole_file(
                path,
                "is a directory, not a config file".to_owned(),
            ))
        }
        Err(err) => return Err(ConfigError::whole_file(path, err.to_string())),
    };
    match String::from_utf8(bytes) {
        Ok(text) if text.trim().is_empty() => Err(ConfigError::whole_file(
            path,
            "is empty; it needs at least [zookeeper] connect = \"host:port\"".to_owned(),
        )),
        Ok(text) => parse(&text, path),
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&err.as_bytes()[..valid]);
            Err(ConfigError {
                path: path.to_path_buf(),
                problems: vec![Problem {
                    location: Some(error::locate(&prefix, valid)),
                    message: "not valid UTF-8".to_owned(),
                }],
            })
        }
    }
}

/// The keys of `[zookeeper]`, `[node]` and `[metrics]` that differ between `old` and `new`, as
/// `section.key`: a reload names them (never their values: `auth` is only a path, but the rule is
/// simple) and applies them at the next restart.
#[must_use]
pub fn restart_keys_changed(old: &Config, new: &Config) -> Vec<&'static str> {
    // Taken apart field by field, so that a new key cannot be left out of the list.
    let ZkConfig {
        connect,
        session_timeout,
        takeover_delay,
        server_tick,
        root,
        auth,
        tls,
    } = &old.zookeeper;
    let b = &new.zookeeper;
    let NodeConfig { id } = &old.node;
    [
        ("zookeeper.connect", *connect != b.connect),
        (
            "zookeeper.session_timeout",
            *session_timeout != b.session_timeout,
        ),
        (
            "zookeeper.takeover_delay",
            *takeover_delay != b.takeover_delay,
        ),
        ("zookeeper.server_tick", *server_tick != b.server_tick),
        ("zookeeper.root", *root != b.root),
        ("zookeeper.auth", *auth != b.auth),
        ("zookeeper.tls", *tls != b.tls),
        ("node.id", *id != new.node.id),
        ("metrics.listen", old.metrics != new.metrics),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// Validates the config text; `path` is recorded in the [`Config`] and names the file in errors.
///
/// # Errors
///
/// Every problem in the text, each with its line and column.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut walker = walk::Walker::new(text);
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    let config = if syntax_errors.is_empty() {
        walker.document(doc.get_ref(), path)
    } else {
        for err in &syntax_errors {
            walker.problems.syntax(err);
        }
        None
    };
    match config {
        Some(config) if walker.problems.is_empty() => Ok(config),
        _ => Err(walker.problems.into_error(path)),
    }
}

impl Config {
    /// Re-checks every worker's `grace_period` against the session timeout the server
    /// negotiated (SPEC §3: `run` checks again).
    ///
    /// # Errors
    ///
    /// One problem per worker that does not fit; the problems have no line, since the file
    /// may have changed since it was loaded.
    pub fn check_grace_against(&self, session_timeout: Duration) -> Result<(), ConfigError> {
        let max = crate::lease::max_grace_period(session_timeout, self.zookeeper.server_tick);
        let problems: Vec<Problem> = self
            .workers
            .iter()
            .filter(|w| w.grace_period > max)
            .map(|w| Problem {
                location: None,
                message: format!(
                    "worker {:?}: grace_period {} does not fit the lease: with the negotiated \
                     session_timeout {} ({} requested) and server_tick {} it must be at most {}; \
                     shorten grace_period or raise maxSessionTimeout on the ZooKeeper servers",
                    w.name,
                    format_duration(w.grace_period),
                    format_duration(session_timeout),
                    format_duration(self.zookeeper.session_timeout),
                    format_duration(self.zookeeper.server_tick),
                    format_duration(max),
                ),
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                path: self.path.clone(),
                problems,
            })
        }
    }

    /// One line per worker for `zk-supervise check`, like
    /// `email-sender: /usr/bin/mailer --queue emails (grace 5s, restart 1s..30s, handoff after 5)`.
    #[must_use]
    pub fn summary(&self) -> Vec<String> {
        self.workers
            .iter()
            .map(|w| {
                let handoff = match w.handoff_after {
                    0 => "handoff never".to_owned(),
                    n => format!("handoff after {n}"),
                };
                let health = match &w.health_check {
                    Some(h) => format!(", health check every {}", format_duration(h.interval)),
                    None => String::new(),
                };
                format!(
                    "{}: {} (grace {}, restart {}..{}, {handoff}{health})",
                    w.name,
                    show_argv(&w.command),
                    format_duration(w.grace_period),
                    format_duration(w.restart_delay),
                    format_duration(w.max_restart_delay),
                )
            })
            .collect()
    }
}

/// The argv on one line; arguments that would read ambiguously are quoted.
fn show_argv(argv: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '"' | '\'' | '\\'))
    };
    argv.iter()
        .map(|a| {
            if plain(a) {
                a.clone()
            } else {
                format!("{a:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The longest `[node] id`, in characters.
const MAX_NODE_ID_LEN: usize = 255;
/// The largest config file read (see [`crate::files::read_regular`]).
const MAX_FILE_BYTES: u64 = crate::files::MAX_FILE_BYTES;
/// A credentials file is one line; a larger one is a mistake (a key, a log), not read whole.
const MAX_CREDENTIALS_BYTES: u64 = 64 * 1024;
