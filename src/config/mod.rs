//! The configuration file: parse it, validate it completely, and report every problem at once.
//!
//! # Approach
//!
//! Serde with `deny_unknown_fields` stops at the first problem, and an operator fixing a config
//! file one `check` run at a time is a poor experience. So the file is parsed into the `toml`
//! crate's spanned document ([`DeTable`]), where every key and value keeps its byte range, and a
//! small hand-written walker ([`Checker`]) visits every section and key. Each problem is recorded
//! with the byte offset of the key or value it is about; at the end, offsets become 1-based
//! `line:column` (columns count characters) and the problems are sorted by position.
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
//! - Exec limits are the kernel's ([`ExecRoom`]): an argument or `NAME=value` of at most 131071
//!   bytes (`MAX_ARG_STRLEN` counts the NUL), and a command with the child's whole environment within
//!   `ARG_MAX`, counted as `execve` counts it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

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
    /// `host:port,host:port/chroot`, as the client library takes it.
    pub connect: String,
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

/// Reads a credentials file: one line `user:password`. Like ssh with its keys, refuses a file that
/// its group or others may read or write. Error messages name the file, never its content.
///
/// # Errors
/// The file cannot be read, is not a regular file, is group- or world-accessible, or is not
/// `user:password`. It can block only on a hung file system: the daemon calls it off its event loop.
pub fn read_credentials(auth: &AuthConfig) -> Result<Credentials, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = auth.credentials_file.display();
    // The mode is the opened file's (`fstat`), not the path's: no window to swap the file between.
    let (meta, text) = crate::files::read_regular(&auth.credentials_file, MAX_CREDENTIALS_BYTES)
        .map_err(|e| format!("credentials file {path}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "credentials file {path} is accessible to its group or others (mode {mode:04o}); \
             chmod 600 it"
        ));
    }
    let text =
        String::from_utf8(text).map_err(|_| format!("credentials file {path}: not UTF-8"))?;
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
        _ => Err(format!(
            "credentials file {path}: expected one line user:password"
        )),
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

/// All the problems of one config file, each with its place.
///
/// Displayed one problem per line, `<path>:<line>:<column>: <message>`, or `<path>: <message>`
/// for a problem of the file as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    path: PathBuf,
    problems: Vec<Problem>,
}

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file; `None` when it is about the file as a whole.
    pub location: Option<Location>,
    /// Short and lowercase; names the worker when the problem is inside a `[[worker]]`.
    pub message: String,
}

/// A 1-based line and column (in characters) in a config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl ConfigError {
    /// The file the problems are in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The problems, in file order; never empty.
    #[must_use]
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    fn whole_file(path: &Path, message: String) -> Self {
        Self {
            path: path.to_path_buf(),
            problems: vec![Problem {
                location: None,
                message,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match problem.location {
                Some(Location { line, column }) => {
                    write!(f, "{path}:{line}:{column}: {}", problem.message)?;
                }
                None => write!(f, "{path}: {}", problem.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

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
                    location: Some(locate(&prefix, valid)),
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
    let mut checker = Checker::new(text);
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    let config = if syntax_errors.is_empty() {
        checker.document(doc.get_ref(), path)
    } else {
        for err in &syntax_errors {
            checker.syntax_error(err);
        }
        None
    };
    match config {
        Some(config) if checker.problems.is_empty() => Ok(config),
        _ => Err(checker.into_error(path)),
    }
}

/// Parses a duration with a unit: `500ms`, `10s`, `2m`, `1h`, `1.5s` (up to 9 decimals).
///
/// # Errors
///
/// A complete message, like `bad duration "5x": expected a number with a unit (ms, s, m, h)`,
/// for a missing or unknown unit, a negative or malformed number, or a value too large.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a number with a unit (ms, s, m, h)";
    let bad = |why: &str| format!("bad duration {s:?}: {why}");
    if s.starts_with('-') {
        return Err(bad("must not be negative"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        _ => return Err(bad(EXPECTED)),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (number.contains('.') && !digits(fraction)) {
        return Err(bad(EXPECTED));
    }
    if fraction.len() > 9 {
        return Err(bad("at most 9 decimal places"));
    }
    let too_large = || bad("too large");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let value: u128 = fraction.parse().map_err(|_| too_large())?;
        value * unit_nanos / 10u128.pow(u32::try_from(fraction.len()).unwrap_or(9))
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(too_large)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_large())?;
    // The remainder is below 10^9, so it fits.
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Ok(Duration::new(secs, subsec))
}

/// Formats a duration the way [`parse_duration`] reads it: `0s`, `500ms`, `10.5s`, `90s`, `2m`.
#[must_use]
pub fn format_duration(d: Duration) -> String {
    const MINUTE: u128 = 60 * NANOS_PER_SEC;
    const HOUR: u128 = 60 * MINUTE;
    let nanos = d.as_nanos();
    if nanos == 0 {
        "0s".to_owned()
    } else if nanos % HOUR == 0 {
        format!("{}h", nanos / HOUR)
    } else if nanos % MINUTE == 0 {
        format!("{}m", nanos / MINUTE)
    } else if nanos >= NANOS_PER_SEC {
        decimal(nanos, NANOS_PER_SEC, 9, "s")
    } else {
        decimal(nanos, 1_000_000, 6, "ms")
    }
}

/// `n / unit` with its fraction, trailing zeros trimmed.
fn decimal(n: u128, unit: u128, unit_digits: usize, suffix: &str) -> String {
    let (whole, fraction) = (n / unit, n % unit);
    if fraction == 0 {
        return format!("{whole}{suffix}");
    }
    let fraction = format!("{fraction:0unit_digits$}");
    format!("{whole}.{}{suffix}", fraction.trim_end_matches('0'))
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

const NANOS_PER_SEC: u128 = 1_000_000_000;
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(15);
/// ZooKeeper's sample configuration and Debian's set `tickTime=2000`.
const DEFAULT_SERVER_TICK: Duration = Duration::from_secs(2);
const MIN_SERVER_TICK: Duration = Duration::from_millis(10);
const MAX_SERVER_TICK: Duration = Duration::from_secs(60);
const MIN_SESSION_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(600);
/// The ceiling of every other duration: longer is a typo, not a plan.
const MAX_DELAY: Duration = Duration::from_secs(3_600);
const MIN_RESTART_DELAY: Duration = Duration::from_millis(10);
const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(100);
const MIN_HEALTH_TIMEOUT: Duration = Duration::from_millis(10);
const DEFAULT_ROOT: &str = "/workers";
const MAX_NAME_LEN: usize = 128;
const MAX_NODE_ID_LEN: usize = 255;

const TOP_KEYS: &[&str] = &["zookeeper", "node", "defaults", "worker", "metrics"];
const METRICS_KEYS: &[&str] = &["listen"];
/// Limits that keep a bad file from exhausting the host. `MAX_ARG_BYTES` is the longest argument or
/// environment string (`NAME=value`) `execve` takes: Linux's `MAX_ARG_STRLEN` (32 pages of 4 KiB)
/// counts the terminating NUL.
const MAX_FILE_BYTES: u64 = crate::files::MAX_FILE_BYTES;
/// A credentials file is one line; a larger one is a mistake (a key, a log), not read whole.
const MAX_CREDENTIALS_BYTES: u64 = 64 * 1024;
const MAX_WORKERS: usize = 10_000;
const MAX_ARGS: usize = 4096;
pub(crate) const MAX_ARG_STRLEN: usize = 32 * 4096;
const MAX_ARG_BYTES: usize = MAX_ARG_STRLEN - 1;
const MAX_ARGV_BYTES: usize = 1024 * 1024;
const MAX_ENV_VARS: usize = 1024;

const ZK_KEYS: &[&str] = &[
    "connect",
    "session_timeout",
    "takeover_delay",
    "server_tick",
    "root",
    "auth",
    "tls",
];
const AUTH_KEYS: &[&str] = &["scheme", "credentials_file"];
const TLS_KEYS: &[&str] = &["ca", "cert", "key"];
const NODE_KEYS: &[&str] = &["id"];
/// The keys a `[[worker]]` and `[defaults]` share.
const FIELD_KEYS: &[&str] = &[
    "working_dir",
    "env",
    "user",
    "group",
    "stop_signal",
    "grace_period",
    "restart_delay",
    "max_restart_delay",
    "handoff_after",
    "health_check",
];
const HEALTH_KEYS: &[&str] = &["command", "interval", "timeout", "failures"];

type Value<'i> = Spanned<DeValue<'i>>;

/// A value as read from one table: absent, present but invalid (already reported), or valid
/// with the byte offset where it was written.
#[derive(Default)]
enum Field<T> {
    #[default]
    Unset,
    Bad,
    Set(T, usize),
}

impl<T> Field<T> {
    fn from(value: Option<T>, at: usize) -> Self {
        match value {
            Some(v) => Field::Set(v, at),
            None => Field::Bad,
        }
    }

    fn at(&self) -> Option<usize> {
        match self {
            Field::Set(_, at) => Some(*at),
            _ => None,
        }
    }
}

impl<T: Copy> Field<T> {
    fn value(&self) -> Option<T> {
        match self {
            Field::Set(v, _) => Some(*v),
            _ => None,
        }
    }
}

/// What the lease bound on `grace_period` depends on, and where each was set (`None`: the default).
#[derive(Clone, Copy)]
struct LeaseSettings {
    session_timeout: Duration,
    session_timeout_at: Option<usize>,
    server_tick: Duration,
    server_tick_at: Option<usize>,
}

/// Which table an effective worker value came from.
#[derive(Clone, Copy)]
enum Origin {
    Worker(usize),
    Defaults(usize),
    Builtin,
}

/// The worker's own value, else the `[defaults]` one, else `builtin`; `None` if either is bad.
fn resolve<T: Clone>(worker: &Field<T>, defaults: &Field<T>, builtin: T) -> Option<(T, Origin)> {
    match (worker, defaults) {
        (Field::Bad, _) | (_, Field::Bad) => None,
        (Field::Set(v, at), _) => Some((v.clone(), Origin::Worker(*at))),
        (Field::Unset, Field::Set(v, at)) => Some((v.clone(), Origin::Defaults(*at))),
        (Field::Unset, Field::Unset) => Some((builtin, Origin::Builtin)),
    }
}

/// Like [`resolve`] for a key without a built-in default.
fn resolve_opt<T: Clone>(worker: &Field<T>, defaults: &Field<T>) -> Option<Option<T>> {
    let wrap = |f: &Field<T>| match f {
        Field::Unset => Field::Unset,
        Field::Bad => Field::Bad,
        Field::Set(v, at) => Field::Set(Some(v.clone()), *at),
    };
    resolve(&wrap(worker), &wrap(defaults), None).map(|(v, _)| v)
}

/// The keys a `[[worker]]` and `[defaults]` share, as read from one of them.
#[derive(Default)]
struct Fields {
    working_dir: Field<PathBuf>,
    env: Field<BTreeMap<String, String>>,
    user: Field<String>,
    group: Field<String>,
    stop_signal: Field<Signal>,
    grace_period: Field<Duration>,
    restart_delay: Field<Duration>,
    max_restart_delay: Field<Duration>,
    handoff_after: Field<u32>,
    health_check: Field<HealthFields>,
}

#[derive(Default)]
struct HealthFields {
    command: Field<Vec<String>>,
    interval: Field<Duration>,
    timeout: Field<Duration>,
    failures: Field<u32>,
}

/// What `[zookeeper]` said, before defaults.
struct ZkFields {
    connect: Option<String>,
    session_timeout: Field<Duration>,
    takeover_delay: Duration,
    server_tick: Field<Duration>,
    root: String,
    auth: Option<AuthConfig>,
    tls: Option<TlsConfig>,
}

/// Walks the spanned document and collects problems.
/// The room `execve` gives a child's argv and environment, as Linux counts it (`fs/exec.c`,
/// `bprm_stack_limits`): every argv and envp string with its NUL, the program's path, and one pointer
/// per string, within a quarter of the stack limit (`ulimit -s`; children inherit the daemon's),
/// capped at 6 MiB and never under 128 KiB. This is `sysconf(_SC_ARG_MAX)` with the kernel's cap.
///
/// A child's environment is the daemon's own, the worker's `env` (which overrides it), the
/// `ZK_SUPERVISE_*` variables, and `HOME`, `USER` and `LOGNAME` when it runs as a `user`. The
/// daemon's environment is taken to be the one `check` or the daemon itself runs with: a `check` run
/// from another shell than the service's counts what it sees.
#[derive(Clone, Debug)]
struct ExecRoom {
    arg_max: usize,
    /// The daemon's own variables, each as `execve` counts it (`NAME=value`, its NUL and a pointer).
    inherited: HashMap<String, usize>,
    inherited_total: usize,
    /// `ZK_SUPERVISE_NODE` and the part of `ZK_SUPERVISE_ZNODE` that does not depend on the worker:
    /// known once `[zookeeper]` and `[node]` are read.
    node_and_root: usize,
}

/// A pointer in argv or envp.
const POINTER: usize = std::mem::size_of::<usize>();
/// The kernel's cap on the room for arguments, whatever the stack limit (`_STK_LIM / 4 * 3`).
const MAX_ARG_ROOM: usize = 6 * 1024 * 1024;
/// The kernel's floor (`ARG_MAX`, 32 pages).
const MIN_ARG_ROOM: usize = 32 * 4096;
/// Room kept for a candidate's name in `ZK_SUPERVISE_ZNODE` (`_c_<32 hex>-n_<10 digits>`), and for
/// the program's path as `execve` copies it (a command found on `PATH` gets a directory in front).
const CANDIDATE_NAME_ROOM: usize = 64;
const PATH_ROOM: usize = 4096;
/// `HOME=<dir>`, `USER=<name>`, `LOGNAME=<name>` for a worker with `user`: room for the longest.
const USER_VARS_ROOM: usize =
    "HOME=".len() + PATH_ROOM + "USER=".len() + 256 + "LOGNAME=".len() + 256 + 3 * (1 + POINTER);

/// The room `execve` gives the argv and environment of a child of this process (see [`ExecRoom`]).
#[must_use]
pub(crate) fn arg_max() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let stack = getrlimit(Resource::RLIMIT_STACK).map_or(8 * 1024 * 1024, |(soft, _)| soft);
    usize::try_from(stack / 4)
        .unwrap_or(usize::MAX)
        .clamp(MIN_ARG_ROOM, MAX_ARG_ROOM)
}

impl ExecRoom {
    fn of_this_process() -> ExecRoom {
        let arg_max = arg_max();
        let inherited: HashMap<String, usize> = std::env::vars_os()
            .map(|(k, v)| {
                let bytes = k.len() + 1 + v.len() + 1 + POINTER;
                (k.to_string_lossy().into_owned(), bytes)
            })
            .collect();
        let inherited_total = inherited.values().sum();
        ExecRoom {
            arg_max,
            inherited,
            inherited_total,
            node_and_root: "ZK_SUPERVISE_NODE=".len() + 4 * MAX_NODE_ID_LEN + 1 + POINTER + 1024,
        }
    }

    /// Sets what `[zookeeper]` and `[node]` add to every child's environment.
    fn know(&mut self, connect: Option<&str>, root: &str, node_id: Option<&str>) {
        let chroot = connect
            .and_then(|c| c.find('/').map(|i| c.len() - i))
            .unwrap_or(0);
        let node = node_id.map_or(4 * MAX_NODE_ID_LEN, str::len);
        self.node_and_root = "ZK_SUPERVISE_NODE=".len() + node + 1 + POINTER + chroot + root.len();
    }

    /// The bytes `execve` will count for `argv` run as `worker` with `env` (the worker's merged
    /// `env`) and `user`, and a description of them.
    fn count(
        &self,
        worker: &str,
        argv: &[String],
        env: &BTreeMap<String, String>,
        user: bool,
    ) -> (usize, String) {
        let args: usize = argv.iter().map(|a| a.len() + 1 + POINTER).sum::<usize>() + PATH_ROOM;
        let own: usize = env
            .iter()
            .map(|(k, v)| k.len() + 1 + v.len() + 1 + POINTER)
            .sum();
        let overridden: usize = env.keys().filter_map(|k| self.inherited.get(k)).sum();
        let inherited = self.inherited_total - overridden;
        let supervisor = self.node_and_root
            + "ZK_SUPERVISE_WORKER=".len()
            + worker.len()
            + 1
            + "ZK_SUPERVISE_ZNODE=".len()
            + 2
            + worker.len()
            + CANDIDATE_NAME_ROOM
            + 1
            + "ZK_SUPERVISE_FENCING_TOKEN=".len()
            + 20
            + 1
            + 3 * POINTER
            + if user { USER_VARS_ROOM } else { 0 };
        let total = args + own + inherited + supervisor;
        let detail = format!(
            "arguments {args} (with room for the program's path), env {own}, the inherited \
             environment (this process's) {inherited}, ZK_SUPERVISE_*{} {supervisor}; each string counted with its NUL \
             and a {POINTER}-byte pointer",
            if user { ", HOME, USER and LOGNAME" } else { "" }
        );
        (total, detail)
    }
}

struct Checker<'t> {
    text: &'t str,
    /// Byte offset (if any) and message.
    problems: Vec<(Option<usize>, String)>,
    /// What `execve` will take of a worker's command and environment.
    exec: ExecRoom,
}

impl<'t> Checker<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            problems: Vec::new(),
            exec: ExecRoom::of_this_process(),
        }
    }

    fn problem(&mut self, at: usize, message: String) {
        self.problems.push((Some(at), message));
    }

    fn into_error(mut self, path: &Path) -> ConfigError {
        self.problems.sort();
        self.problems.dedup();
        let problems = self
            .problems
            .into_iter()
            .map(|(at, message)| Problem {
                location: at.map(|at| locate(self.text, at)),
                message,
            })
            .collect();
        ConfigError {
            path: path.to_path_buf(),
            problems,
        }
    }

    fn syntax_error(&mut self, err: &toml::de::Error) {
        let mut message = format!("syntax error: {}", err.message());
        let span = err.span();
        if message.ends_with("duplicate key") {
            let key = span.clone().and_then(|s| self.text.get(s));
            if let Some(key) = key.filter(|k| !k.is_empty() && !k.contains('\n')) {
                let _ = write!(message, " `{key}`");
            }
        }
        self.problems.push((span.map(|s| s.start), message));
    }

    /// Reports an unknown key, with a suggestion when one is near.
    fn unknown_key(
        &mut self,
        prefix: &str,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        known: &[&str],
    ) {
        let name = key.get_ref().as_ref();
        let at = key.span().start;
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}: ")
        };
        let mut message = format!("{prefix}unknown key `{name}`");
        let nearest = known
            .iter()
            .map(|k| (edit_distance(name, k), *k))
            .min()
            .filter(|(d, k)| *d <= (k.len() / 3).clamp(1, 3));
        let home = [
            ("zookeeper", ZK_KEYS),
            ("node", NODE_KEYS),
            ("worker", FIELD_KEYS),
        ]
        .into_iter()
        .find(|(_, keys)| keys.contains(&name) && !known.contains(&name));
        if let Some((_, k)) = nearest {
            let _ = write!(message, "; did you mean `{k}`?");
        } else if let Some((section, _)) = home {
            let section = if section == "worker" {
                "[[worker]] or [defaults]".to_owned()
            } else {
                format!("[{section}]")
            };
            let _ = write!(message, "; it belongs in {section}");
        } else {
            let _ = write!(message, "; expected one of: {}", known.join(", "));
        }
        self.problem(at, message);
    }

    fn wrong_type(&mut self, what: &str, expected: &str, value: &Value<'_>) {
        let found = kind(value.get_ref());
        self.problem(
            value.span().start,
            format!("{what}: expected {expected}, found {found}"),
        );
    }

    fn table<'v, 'i>(&mut self, what: &str, value: &'v Value<'i>) -> Option<&'v DeTable<'i>> {
        let DeValue::Table(t) = value.get_ref() else {
            self.wrong_type(what, "a table", value);
            return None;
        };
        Some(t)
    }

    fn string(&mut self, what: &str, value: &Value<'_>) -> Option<String> {
        let DeValue::String(s) = value.get_ref() else {
            self.wrong_type(what, "a string", value);
            return None;
        };
        if s.contains('\0') {
            self.problem(value.span().start, format!("{what}: must not contain NUL"));
            return None;
        }
        Some(s.to_string())
    }

    fn nonempty_string(&mut self, what: &str, value: &Value<'_>) -> Option<String> {
        let s = self.string(what, value)?;
        if s.is_empty() {
            self.problem(value.span().start, format!("{what}: must not be empty"));
            return None;
        }
        Some(s)
    }

    fn duration(
        &mut self,
        what: &str,
        value: &Value<'_>,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let at = value.span().start;
        let DeValue::String(s) = value.get_ref() else {
            self.wrong_type(what, "a duration string with a unit, like \"5s\"", value);
            return None;
        };
        let d = match parse_duration(s) {
            Ok(d) => d,
            Err(message) => {
                self.problem(at, format!("{what}: {message}"));
                return None;
            }
        };
        if d < min {
            self.problem(
                at,
                format!(
                    "{what}: {s} is too short, the least is {}",
                    format_duration(min)
                ),
            );
            return None;
        }
        if d > max {
            self.problem(
                at,
                format!(
                    "{what}: {s} is too long, the most is {}",
                    format_duration(max)
                ),
            );
            return None;
        }
        Some(d)
    }

    fn count(&mut self, what: &str, value: &Value<'_>, min: u32) -> Option<u32> {
        let at = value.span().start;
        let DeValue::Integer(i) = value.get_ref() else {
            self.wrong_type(what, "an integer", value);
            return None;
        };
        if i.as_str().starts_with('-') && i.as_str() != "-0" {
            self.problem(at, format!("{what}: must not be negative"));
            return None;
        }
        let Ok(n) = u32::from_str_radix(i.as_str().trim_start_matches(['+', '-']), i.radix())
        else {
            self.problem(at, format!("{what}: must be at most {}", u32::MAX));
            return None;
        };
        if n < min {
            self.problem(at, format!("{what}: must be at least {min}"));
            return None;
        }
        Some(n)
    }

    /// A command line: a non-empty array of strings whose first element is non-empty.
    fn argv(&mut self, what: &str, value: &Value<'_>) -> Option<Vec<String>> {
        let at = value.span().start;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(
                what,
                "an array of strings (the argv; no shell is involved)",
                value,
            );
            return None;
        };
        if items.is_empty() {
            self.problem(
                at,
                format!("{what}: must not be empty; give the program and its arguments"),
            );
            return None;
        }
        let before = self.problems.len();
        let argv: Vec<String> = items
            .iter()
            .filter_map(|item| self.string(what, item))
            .collect();
        if self.problems.len() > before {
            return None;
        }
        if argv[0].is_empty() {
            self.problem(
                at,
                format!("{what}: the program (first element) must not be empty"),
            );
            return None;
        }
        let total: usize = argv.iter().map(|a| a.len() + 1).sum();
        if let Some((i, a)) = argv
            .iter()
            .enumerate()
            .find(|(_, a)| a.len() > MAX_ARG_BYTES)
        {
            self.problem(
                at,
                format!(
                    "{what}: argument {} is {} bytes; execve takes at most {MAX_ARG_BYTES} \
                     (the kernel's MAX_ARG_STRLEN, {MAX_ARG_STRLEN} with the terminating NUL)",
                    i + 1,
                    a.len()
                ),
            );
            return None;
        }
        if argv.len() > MAX_ARGS || total > MAX_ARGV_BYTES {
            self.problem(
                at,
                format!(
                    "{what}: too large ({} arguments, {total} bytes; the limits are {MAX_ARGS} arguments \
                     and {MAX_ARGV_BYTES} bytes in all)",
                    argv.len()
                ),
            );
            return None;
        }
        Some(argv)
    }

    /// The whole document; `None` if something required is missing (already reported).
    fn document(&mut self, doc: &DeTable<'_>, path: &Path) -> Option<Config> {
        for (key, _) in doc {
            if !TOP_KEYS.contains(&key.get_ref().as_ref()) {
                self.unknown_key("", key, TOP_KEYS);
            }
        }
        let zk = self.zookeeper(doc.get("zookeeper"));
        let node = self.node(doc.get("node"));
        self.exec.know(
            zk.connect.as_deref(),
            &zk.root,
            node.as_ref().map(|n| n.id.as_str()),
        );
        let metrics = self.metrics(doc.get("metrics"));
        let defaults = match doc.get("defaults") {
            Some(v) => self.defaults(v),
            None => Fields::default(),
        };
        let mut workers = Vec::new();
        match doc.get("worker").map(|v| (v, v.get_ref())) {
            None => {}
            Some((v, DeValue::Array(items))) if items.len() > MAX_WORKERS => {
                self.problem(
                    v.span().start,
                    format!("{} workers; the limit is {MAX_WORKERS}", items.len()),
                );
            }
            Some((_, DeValue::Array(items))) => {
                let session_timeout = match (&zk.session_timeout, &zk.server_tick) {
                    (Field::Bad, _) | (_, Field::Bad) => None,
                    (s, t) => Some(LeaseSettings {
                        session_timeout: s.value().unwrap_or(DEFAULT_SESSION_TIMEOUT),
                        session_timeout_at: s.at(),
                        server_tick: t.value().unwrap_or(DEFAULT_SERVER_TICK),
                        server_tick_at: t.at(),
                    }),
                };
                let mut first_use: HashMap<String, usize> = HashMap::new();
                for (i, item) in items.iter().enumerate() {
                    let worker =
                        self.worker(i + 1, item, &defaults, session_timeout, &mut first_use);
                    workers.push(worker);
                }
            }
            Some((v, _)) => self.wrong_type("worker", "[[worker]] entries (an array of tables)", v),
        }
        let session_timeout = match zk.session_timeout {
            Field::Set(s, _) => s,
            _ => DEFAULT_SESSION_TIMEOUT,
        };
        let server_tick = match zk.server_tick {
            Field::Set(t, _) => t,
            _ => DEFAULT_SERVER_TICK,
        };
        Some(Config {
            path: path.to_path_buf(),
            zookeeper: ZkConfig {
                connect: zk.connect?,
                session_timeout,
                takeover_delay: zk.takeover_delay,
                server_tick,
                root: zk.root,
                auth: zk.auth,
                tls: zk.tls,
            },
            node: node?,
            metrics: metrics?,
            workers: workers.into_iter().collect::<Option<Vec<_>>>()?,
        })
    }

    /// `[metrics]`: `Some(None)` when absent, `None` when invalid.
    fn metrics(&mut self, value: Option<&Value<'_>>) -> Option<Option<MetricsConfig>> {
        let Some(value) = value else {
            return Some(None);
        };
        let table = self.table("metrics", value)?;
        let mut listen = None;
        let mut bad = false;
        for (key, v) in table {
            match key.get_ref().as_ref() {
                "listen" => match self.string("metrics: listen", v) {
                    Some(s) => match s.parse::<std::net::SocketAddr>() {
                        Ok(addr) => listen = Some(addr),
                        Err(_) => {
                            self.problem(
                                v.span().start,
                                format!("metrics: listen: {s:?} is not an address and port like \"127.0.0.1:9464\""),
                            );
                            bad = true;
                        }
                    },
                    None => bad = true,
                },
                _ => self.unknown_key("metrics", key, METRICS_KEYS),
            }
        }
        if bad {
            return None;
        }
        match listen {
            Some(listen) => Some(Some(MetricsConfig { listen })),
            None => {
                self.problem(
                    value.span().start,
                    "metrics: `listen` is required".to_owned(),
                );
                None
            }
        }
    }

    fn zookeeper(&mut self, value: Option<&Value<'_>>) -> ZkFields {
        let mut zk = ZkFields {
            connect: None,
            session_timeout: Field::Unset,
            takeover_delay: Duration::ZERO,
            server_tick: Field::Unset,
            root: DEFAULT_ROOT.to_owned(),
            auth: None,
            tls: None,
        };
        let Some(value) = value else {
            self.problem(
                0,
                "missing [zookeeper] section; it needs connect = \"host:port,...\"".to_owned(),
            );
            return zk;
        };
        let Some(table) = self.table("zookeeper", value) else {
            return zk;
        };
        let mut chroot = false;
        for (key, v) in table {
            let at = v.span().start;
            match key.get_ref().as_ref() {
                "connect" => {
                    if let Some(s) = self.nonempty_string("zookeeper: connect", v) {
                        match check_connect(&s) {
                            Ok(has_chroot) => {
                                chroot = has_chroot;
                                zk.connect = Some(s);
                            }
                            Err(why) => self.problem(at, format!("zookeeper: connect: {why}")),
                        }
                    }
                }
                "session_timeout" => {
                    let d = self.duration(
                        "zookeeper: session_timeout",
                        v,
                        MIN_SESSION_TIMEOUT,
                        MAX_SESSION_TIMEOUT,
                    );
                    zk.session_timeout = Field::from(d, at);
                }
                "takeover_delay" => {
                    let d =
                        self.duration("zookeeper: takeover_delay", v, Duration::ZERO, MAX_DELAY);
                    zk.takeover_delay = d.unwrap_or_default();
                }
                "server_tick" => {
                    let d = self.duration(
                        "zookeeper: server_tick",
                        v,
                        MIN_SERVER_TICK,
                        MAX_SERVER_TICK,
                    );
                    zk.server_tick = Field::from(d, at);
                }
                "root" => {
                    if let Some(s) = self.string("zookeeper: root", v) {
                        match check_root(&s) {
                            Ok(()) => zk.root = s,
                            Err(why) => self.problem(at, format!("zookeeper: root: {why}")),
                        }
                    }
                }
                "auth" => zk.auth = self.auth(v),
                "tls" => zk.tls = self.tls(v),
                _ => self.unknown_key("zookeeper", key, ZK_KEYS),
            }
        }
        let connect_given = table.get("connect").is_some();
        if !connect_given {
            self.problem(
                value.span().start,
                "zookeeper: connect is required, like connect = \"zk1:2181,zk2:2181,zk3:2181\""
                    .to_owned(),
            );
        }
        if !chroot && (zk.root == "/zookeeper" || zk.root.starts_with("/zookeeper/")) {
            if let Some(v) = table.get("root") {
                self.problem(
                    v.span().start,
                    "zookeeper: root: /zookeeper is reserved by ZooKeeper".to_owned(),
                );
            }
        }
        zk
    }

    /// `[zookeeper] auth = { scheme = "digest", credentials_file = "..." }`. The file itself is read
    /// by [`read_credentials`], not here.
    fn auth(&mut self, value: &Value<'_>) -> Option<AuthConfig> {
        let table = self.table("zookeeper: auth", value)?;
        let (mut scheme, mut file) = (None, None);
        for (key, v) in table {
            let at = v.span().start;
            match key.get_ref().as_ref() {
                "scheme" => match self.string("zookeeper: auth: scheme", v) {
                    Some(s) if s == "digest" => scheme = Some(s),
                    Some(s) => self.problem(
                        at,
                        format!("zookeeper: auth: scheme {s:?} is not supported; use \"digest\""),
                    ),
                    None => {}
                },
                "credentials_file" => {
                    if let Some(s) = self.nonempty_string("zookeeper: auth: credentials_file", v) {
                        if s.starts_with('/') {
                            file = Some(PathBuf::from(s));
                        } else {
                            self.problem(
                                at,
                                "zookeeper: auth: credentials_file must be an absolute path"
                                    .to_owned(),
                            );
                        }
                    }
                }
                _ => self.unknown_key("zookeeper: auth", key, AUTH_KEYS),
            }
        }
        if table.get("scheme").is_none() || table.get("credentials_file").is_none() {
            self.problem(
                value.span().start,
                "zookeeper: auth needs scheme = \"digest\" and credentials_file = \"/path\""
                    .to_owned(),
            );
        }
        Some(AuthConfig {
            scheme: scheme?,
            credentials_file: file?,
        })
    }

    /// `[zookeeper] tls = { ca = "...", cert = "...", key = "..." }`: absolute paths; `cert` and `key`
    /// both or neither. The files themselves are read when connecting, not here.
    fn tls(&mut self, value: &Value<'_>) -> Option<TlsConfig> {
        let table = self.table("zookeeper: tls", value)?;
        let (mut ca, mut cert, mut key) = (None, None, None);
        let mut bad = false;
        for (name, v) in table {
            let slot = match name.get_ref().as_ref() {
                "ca" => &mut ca,
                "cert" => &mut cert,
                "key" => &mut key,
                _ => {
                    self.unknown_key("zookeeper: tls", name, TLS_KEYS);
                    bad = true;
                    continue;
                }
            };
            let what = format!("zookeeper: tls: {}", name.get_ref());
            match self.nonempty_string(&what, v) {
                Some(s) if s.starts_with('/') => *slot = Some(PathBuf::from(s)),
                Some(_) => {
                    self.problem(v.span().start, format!("{what} must be an absolute path"));
                    bad = true;
                }
                None => bad = true,
            }
        }
        if table.get("ca").is_none() {
            self.problem(
                value.span().start,
                "zookeeper: tls needs ca = \"/path/ca.pem\" (the CA that signs the servers' certificates)"
                    .to_owned(),
            );
            bad = true;
        }
        if table.get("cert").is_some() != table.get("key").is_some() {
            self.problem(
                value.span().start,
                "zookeeper: tls: cert and key go together: give both for client authentication, or neither"
                    .to_owned(),
            );
            bad = true;
        }
        if bad {
            return None;
        }
        Some(TlsConfig { ca: ca?, cert, key })
    }

    fn node(&mut self, value: Option<&Value<'_>>) -> Option<NodeConfig> {
        let mut id = None;
        let mut bad = false;
        if let Some(table) = value.and_then(|v| self.table("node", v)) {
            for (key, v) in table {
                match key.get_ref().as_ref() {
                    "id" => match self.string("node: id", v) {
                        Some(s) => match check_node_id(&s) {
                            Ok(()) => id = Some(s),
                            Err(why) => {
                                self.problem(v.span().start, format!("node: id: {why}"));
                                bad = true;
                            }
                        },
                        None => bad = true,
                    },
                    _ => self.unknown_key("node", key, NODE_KEYS),
                }
            }
        }
        if bad {
            return None;
        }
        if let Some(id) = id {
            return Some(NodeConfig { id });
        }
        let host = nix::unistd::gethostname()
            .map_err(|e| e.to_string())
            .and_then(|h| h.into_string().map_err(|_| "not UTF-8".to_owned()))
            .and_then(|h| check_node_id(&h).map(|()| h));
        match host {
            Ok(id) => Some(NodeConfig { id }),
            Err(why) => {
                self.problems.push((
                    None,
                    format!(
                        "node: id is not set and the host name cannot serve: {why}; set [node] id"
                    ),
                ));
                None
            }
        }
    }

    fn defaults(&mut self, value: &Value<'_>) -> Fields {
        let mut fields = Fields::default();
        let Some(table) = self.table("defaults", value) else {
            return fields;
        };
        for (key, v) in table {
            let name = key.get_ref().as_ref();
            if name == "name" || name == "command" {
                self.problem(
                    key.span().start,
                    format!(
                        "defaults: `{name}` cannot be set in [defaults]; set it in each [[worker]]"
                    ),
                );
            } else if !self.field(&mut fields, "defaults", name, v) {
                self.unknown_key("defaults", key, FIELD_KEYS);
            }
        }
        fields
    }

    /// Reads one of the keys a `[[worker]]` and `[defaults]` share; false if `key` is not one.
    fn field(&mut self, fields: &mut Fields, prefix: &str, key: &str, value: &Value<'_>) -> bool {
        let what = format!("{prefix}: {key}");
        let at = value.span().start;
        match key {
            "working_dir" => {
                let dir = self.nonempty_string(&what, value).and_then(|s| {
                    if s.starts_with('/') {
                        Some(PathBuf::from(s))
                    } else {
                        self.problem(at, format!("{what}: must be an absolute path, not {s:?}"));
                        None
                    }
                });
                fields.working_dir = Field::from(dir, at);
            }
            "env" => fields.env = Field::from(self.env(&what, value), at),
            "user" | "group" => {
                let id = self
                    .nonempty_string(&what, value)
                    .and_then(|s| match check_id(&s) {
                        Ok(()) => Some(s),
                        Err(why) => {
                            self.problem(at, format!("{what}: {why}"));
                            None
                        }
                    });
                if key == "user" {
                    fields.user = Field::from(id, at);
                } else {
                    fields.group = Field::from(id, at);
                }
            }
            "stop_signal" => {
                let signal = self
                    .string(&what, value)
                    .and_then(|s| match parse_signal(&s) {
                        Ok(sig) => Some(sig),
                        Err(why) => {
                            self.problem(at, format!("{what}: {why}"));
                            None
                        }
                    });
                fields.stop_signal = Field::from(signal, at);
            }
            "grace_period" => {
                let d = self.duration(&what, value, Duration::ZERO, MAX_DELAY);
                fields.grace_period = Field::from(d, at);
            }
            "restart_delay" => {
                let d = self.duration(&what, value, MIN_RESTART_DELAY, MAX_DELAY);
                fields.restart_delay = Field::from(d, at);
            }
            "max_restart_delay" => {
                let d = self.duration(&what, value, MIN_RESTART_DELAY, MAX_DELAY);
                fields.max_restart_delay = Field::from(d, at);
            }
            "handoff_after" => fields.handoff_after = Field::from(self.count(&what, value, 0), at),
            "health_check" => fields.health_check = Field::from(self.health(&what, value), at),
            _ => return false,
        }
        true
    }

    fn env(&mut self, what: &str, value: &Value<'_>) -> Option<BTreeMap<String, String>> {
        let table = self.table(what, value)?;
        if table.len() > MAX_ENV_VARS {
            self.problem(
                value.span().start,
                format!(
                    "{what}: {} variables; the limit is {MAX_ENV_VARS}",
                    table.len()
                ),
            );
            return None;
        }
        let before = self.problems.len();
        let mut env = BTreeMap::new();
        for (key, v) in table {
            let name = key.get_ref().as_ref();
            let why = if name.is_empty() {
                Some("an empty variable name".to_owned())
            } else if name.contains(['=', '\0']) {
                Some(format!(
                    "variable name {name:?} must not contain \"=\" or NUL"
                ))
            } else if name.starts_with("ZK_SUPERVISE_") {
                Some(format!(
                    "{name} is set by the supervisor and cannot be overridden"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                self.problem(key.span().start, format!("{what}: {why}"));
            }
            if let Some(s) = self.string(&format!("{what}.{name}"), v) {
                let string = name.len() + 1 + s.len();
                if string > MAX_ARG_BYTES {
                    let shown: String = name.chars().take(64).collect();
                    self.problem(
                        v.span().start,
                        format!(
                            "{what}.{shown}: {shown}=<value> is {string} bytes; execve takes at most \
                             {MAX_ARG_BYTES} per NAME=value string (the kernel's MAX_ARG_STRLEN, \
                             {MAX_ARG_STRLEN} with the terminating NUL)"
                        ),
                    );
                } else {
                    env.insert(name.to_owned(), s);
                }
            }
        }
        (self.problems.len() == before).then_some(env)
    }

    fn health(&mut self, what: &str, value: &Value<'_>) -> Option<HealthFields> {
        let table = self.table(what, value)?;
        let mut h = HealthFields::default();
        for (key, v) in table {
            let at = v.span().start;
            let sub = format!("{what}.{}", key.get_ref());
            match key.get_ref().as_ref() {
                "command" => h.command = Field::from(self.argv(&sub, v), at),
                "interval" => {
                    let d = self.duration(&sub, v, MIN_HEALTH_INTERVAL, MAX_DELAY);
                    h.interval = Field::from(d, at);
                }
                "timeout" => {
                    let d = self.duration(&sub, v, MIN_HEALTH_TIMEOUT, MAX_DELAY);
                    h.timeout = Field::from(d, at);
                }
                "failures" => h.failures = Field::from(self.count(&sub, v, 1), at),
                _ => self.unknown_key(what, key, HEALTH_KEYS),
            }
        }
        Some(h)
    }

    /// One `[[worker]]`, merged with `[defaults]`; `None` if it has problems (reported).
    ///
    /// `session_timeout` is the requested timeout and where it was set, `None` if it is bad.
    /// `first_use` maps each name seen so far to the offset of its first use.
    fn worker(
        &mut self,
        number: usize,
        value: &Value<'_>,
        defaults: &Fields,
        session_timeout: Option<LeaseSettings>,
        first_use: &mut HashMap<String, usize>,
    ) -> Option<WorkerConfig> {
        let numbered = format!("worker #{number}");
        let table = self.table(&numbered, value)?;
        let header = value.span().start;
        let before = self.problems.len();

        let name_value = table.get("name");
        let label = match name_value.map(Spanned::get_ref) {
            Some(DeValue::String(s)) if !s.is_empty() => format!("worker {:?}", s.as_ref()),
            _ => numbered,
        };
        let mut name = None;
        match name_value {
            None => self.problem(header, format!("{label}: name is required")),
            Some(v) => {
                let at = v.span().start;
                if let Some(s) = self.string(&format!("{label}: name"), v) {
                    if let Err(why) = check_name(&s) {
                        self.problem(at, format!("{label}: name: {why}"));
                    } else if let Some(&first) = first_use.get(&s) {
                        let line = locate(self.text, first).line;
                        self.problem(
                            at,
                            format!("{label}: duplicate name, already used by the worker at line {line}"),
                        );
                    } else {
                        first_use.insert(s.clone(), at);
                        name = Some(s);
                    }
                }
            }
        }

        let mut command = None;
        let mut fields = Fields::default();
        for (key, v) in table {
            match key.get_ref().as_ref() {
                "name" => {}
                "command" => command = self.argv(&format!("{label}: command"), v),
                k => {
                    if !self.field(&mut fields, &label, k, v) {
                        let known: Vec<&str> = ["name", "command"]
                            .iter()
                            .chain(FIELD_KEYS)
                            .copied()
                            .collect();
                        self.unknown_key(&label, key, &known);
                    }
                }
            }
        }
        if table.get("command").is_none() {
            self.problem(header, format!("{label}: command is required"));
        }

        let d = defaults;
        let grace = resolve(
            &fields.grace_period,
            &d.grace_period,
            Duration::from_secs(5),
        );
        let restart = resolve(
            &fields.restart_delay,
            &d.restart_delay,
            Duration::from_secs(1),
        );
        let max_restart = resolve(
            &fields.max_restart_delay,
            &d.max_restart_delay,
            Duration::from_secs(30),
        );
        if let (Some((grace, origin)), Some(lease)) = (grace, session_timeout) {
            self.check_grace(&label, grace, origin, lease);
        }
        if let (Some((r, r_origin)), Some((m, m_origin))) = (restart, max_restart) {
            if m < r {
                if let Some((who, at)) = blame(&label, &[m_origin, r_origin]) {
                    self.problem(
                        at,
                        format!(
                            "{who}: max_restart_delay {} is shorter than restart_delay {}",
                            format_duration(m),
                            format_duration(r)
                        ),
                    );
                }
            }
        }
        let health = self.merged_health(&label, header, &fields.health_check, &d.health_check);

        let env = match (&d.env, &fields.env) {
            (Field::Bad, _) | (_, Field::Bad) => None,
            (base, over) => {
                let mut env = BTreeMap::new();
                for f in [base, over] {
                    if let Field::Set(vars, _) = f {
                        env.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                Some(env)
            }
        };

        if let (Some(name), Some(env)) = (&name, &env) {
            let user = resolve_opt(&fields.user, &d.user).flatten().is_some();
            let health_command = health.as_ref().and_then(|h| {
                h.as_ref()
                    .map(|h| (h.command.clone(), "health_check.command"))
            });
            let commands = command
                .clone()
                .map(|c| (c, "command"))
                .into_iter()
                .chain(health_command);
            for (argv, key) in commands {
                let (total, detail) = self.exec.count(name, &argv, env, user);
                if total > self.exec.arg_max {
                    self.problem(
                        header,
                        format!(
                            "{label}: {key} and environment come to {total} bytes as execve counts them, \
                             over the kernel's limit of {} (ARG_MAX: a quarter of the stack limit, at most \
                             6 MiB); {detail}",
                            self.exec.arg_max
                        ),
                    );
                }
            }
        }

        if self.problems.len() > before {
            return None;
        }
        Some(WorkerConfig {
            name: name?,
            command: command?,
            working_dir: resolve_opt(&fields.working_dir, &d.working_dir)?,
            env: env?,
            user: resolve_opt(&fields.user, &d.user)?,
            group: resolve_opt(&fields.group, &d.group)?,
            stop_signal: resolve(&fields.stop_signal, &d.stop_signal, Signal::SIGTERM)?.0,
            grace_period: grace?.0,
            restart_delay: restart?.0,
            max_restart_delay: max_restart?.0,
            handoff_after: resolve(&fields.handoff_after, &d.handoff_after, 5)?.0,
            health_check: health?,
        })
    }

    /// The lease bound of SPEC §3 on one worker's effective `grace_period`
    /// ([`crate::lease::max_grace_period`]).
    fn check_grace(&mut self, label: &str, grace: Duration, origin: Origin, lease: LeaseSettings) {
        let max = crate::lease::max_grace_period(lease.session_timeout, lease.server_tick);
        if grace <= max {
            return;
        }
        let (g, s, t, m) = (
            format_duration(grace),
            format_duration(lease.session_timeout),
            format_duration(lease.server_tick),
            format_duration(max),
        );
        let fix = "shorten grace_period or raise session_timeout (or lower server_tick if the \
                   servers' tickTime is shorter)";
        match (
            blame(label, &[origin]),
            lease.session_timeout_at.or(lease.server_tick_at),
        ) {
            (Some((who, at)), _) => self.problem(
                at,
                format!(
                    "{who}: grace_period {g} does not fit the lease: with session_timeout {s} and \
                     server_tick {t} it must be at most {m}; {fix}"
                ),
            ),
            // The built-in grace period only fails against an explicit session_timeout or tick.
            (None, Some(at)) => self.problem(
                at,
                format!(
                    "zookeeper: session_timeout {s} and server_tick {t} leave room for a \
                     grace_period of at most {m}, less than the default {g}; raise \
                     session_timeout, lower server_tick if the servers' tickTime is shorter, or \
                     set a shorter grace_period in [defaults]"
                ),
            ),
            (None, None) => {}
        }
    }

    /// The worker's health check merged over the `[defaults]` one; `None` if it has problems.
    fn merged_health(
        &mut self,
        label: &str,
        header: usize,
        worker: &Field<HealthFields>,
        defaults: &Field<HealthFields>,
    ) -> Option<Option<HealthCheck>> {
        let (w, d, table_origin) = match (worker, defaults) {
            (Field::Bad, _) | (_, Field::Bad) => return None,
            (Field::Unset, Field::Unset) => return Some(None),
            (Field::Set(w, at), Field::Set(d, _)) => (Some(w), Some(d), Origin::Worker(*at)),
            (Field::Set(w, at), Field::Unset) => (Some(w), None, Origin::Worker(*at)),
            (Field::Unset, Field::Set(d, at)) => (None, Some(d), Origin::Defaults(*at)),
        };
        let unset = HealthFields::default();
        let (w, d) = (w.unwrap_or(&unset), d.unwrap_or(&unset));
        let command = resolve_opt(&w.command, &d.command);
        let interval = resolve(&w.interval, &d.interval, Duration::from_secs(10));
        let timeout = resolve(&w.timeout, &d.timeout, Duration::from_secs(5));
        let failures = resolve(&w.failures, &d.failures, 3);
        if let Some(None) = command {
            let (who, at) = blame(label, &[table_origin]).unwrap_or((label.to_owned(), header));
            self.problem(at, format!("{who}: health_check: command is required"));
        }
        if let (Some((i, i_origin)), Some((t, t_origin))) = (interval, timeout) {
            if t > i {
                if let Some((who, at)) = blame(label, &[t_origin, i_origin]) {
                    self.problem(
                        at,
                        format!(
                            "{who}: health_check.timeout {} is longer than its interval {}",
                            format_duration(t),
                            format_duration(i)
                        ),
                    );
                }
            }
        }
        Some(Some(HealthCheck {
            command: command??,
            interval: interval?.0,
            timeout: timeout?.0,
            failures: failures?.0,
        }))
    }
}

/// Where to report a problem about values of these origins: the first one the worker wrote,
/// else the first one `[defaults]` wrote (reported once, however many workers inherit it).
fn blame(label: &str, origins: &[Origin]) -> Option<(String, usize)> {
    let worker = origins.iter().find_map(|o| match o {
        Origin::Worker(at) => Some((label.to_owned(), *at)),
        _ => None,
    });
    worker.or_else(|| {
        origins.iter().find_map(|o| match o {
            Origin::Defaults(at) => Some(("defaults".to_owned(), *at)),
            _ => None,
        })
    })
}

/// A 1-based line and column (in characters) for a byte offset into `text`.
fn locate(text: &str, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`: the name is a znode name and appears in logs and paths.
fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let Some(first) = name.chars().next() else {
        return Err("must not be empty".to_owned());
    };
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "must start with a letter or a digit, not \"{}\"",
            first.escape_debug()
        ));
    }
    if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "may contain only letters, digits, \".\", \"_\" and \"-\", not \"{}\"",
            c.escape_debug()
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} characters long, at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    Ok(())
}

fn check_node_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        Err("must not be empty".to_owned())
    } else if id.chars().count() > MAX_NODE_ID_LEN {
        Err(format!("must be at most {MAX_NODE_ID_LEN} characters long"))
    } else if id.chars().any(char::is_control) {
        Err(format!("{id:?} must not contain control characters"))
    } else {
        Ok(())
    }
}

/// A `user` or `group`: a name (looked up when the child starts), or a number, taken as an id even
/// when no passwd or group entry has it.
fn check_id(id: &str) -> Result<(), String> {
    if id.bytes().all(|b| b.is_ascii_digit()) {
        match id.parse::<u32>() {
            Ok(n) if n != u32::MAX => Ok(()),
            _ => Err(format!(
                "{id} is not a valid id (a number up to {})",
                u32::MAX - 1
            )),
        }
    } else if id.chars().any(|c| c.is_control() || c == ':') {
        Err(format!("{id:?} is not a user or group name"))
    } else {
        Ok(())
    }
}

/// `host[:port],...[/chroot]` as the client library reads it; `Ok(true)` if it has a chroot.
fn check_connect(connect: &str) -> Result<bool, String> {
    // `zk://host:2181`, `tcp://...`: a URL is not the client library's connect string.
    if let Some((scheme, rest)) = connect.split_once("://") {
        if !scheme.is_empty() && !scheme.contains([',', '/']) {
            return Err(format!(
                "{connect:?} is a URL, not host:port; write it without the scheme: {rest:?} \
                 (the form is host:port,host:port[/chroot])"
            ));
        }
    }
    let (hosts, chroot) = match connect.find('/') {
        Some(i) => (&connect[..i], Some(&connect[i..])),
        None => (connect, None),
    };
    if let Some(chroot) = chroot {
        if chroot != "/" {
            check_zk_path(chroot).map_err(|why| format!("chroot {chroot:?}: {why}"))?;
        }
    }
    for server in hosts.split(',') {
        let (host, port) = if let Some(rest) = server.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{server:?}: missing \"]\" after an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{server:?}: expected \":port\" after \"]\""))?,
                ),
            };
            (host, port)
        } else {
            match server.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (server, None),
            }
        };
        if server.is_empty() || host.is_empty() {
            return Err(format!(
                "empty host in {connect:?}; expected host:port,host:port[/chroot]"
            ));
        }
        let host_ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'));
        if !host_ok {
            return Err(format!("bad host {host:?}"));
        }
        if let Some(port) = port {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(format!("bad port {port:?} for {host}")),
            }
        }
    }
    Ok(chroot.is_some())
}

/// `root`: an absolute ZooKeeper path other than `/`.
fn check_root(root: &str) -> Result<(), String> {
    if root == "/" {
        return Err("must not be \"/\"; use a path of its own, like \"/workers\"".to_owned());
    }
    check_zk_path(root).map_err(|why| format!("{root:?}: {why}"))
}

/// An absolute ZooKeeper path, checked the way the client library checks paths.
fn check_zk_path(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must start with \"/\"".to_owned());
    };
    if rest.is_empty() || rest.ends_with('/') {
        return Err("must not end with \"/\"".to_owned());
    }
    for part in rest.split('/') {
        if part.is_empty() {
            return Err("must not contain \"//\"".to_owned());
        }
        if part == "." || part == ".." {
            return Err("must not contain \".\" or \"..\" components".to_owned());
        }
    }
    let unsupported = |c: char| {
        let u = u32::from(c);
        [0x0..=0x1f, 0x7f..=0x9f, 0xd800..=0xf8ff, 0xfff0..=0xffff]
            .iter()
            .any(|r| r.contains(&u))
    };
    if let Some(c) = path.chars().find(|c| unsupported(*c)) {
        return Err(format!("ZooKeeper does not allow {c:?} in a path"));
    }
    Ok(())
}

/// `TERM`, `SIGTERM`, `term`...; signals that pause or resume a process are refused.
fn parse_signal(name: &str) -> Result<Signal, String> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    let signal = Signal::from_str(&full).map_err(|_| {
        format!("unknown signal {name:?}; expected a name like TERM, INT, QUIT or HUP")
    })?;
    match signal {
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU | Signal::SIGCONT => {
            Err(format!(
                "{name} pauses or resumes a process instead of ending it; use TERM, INT or QUIT"
            ))
        }
        s => Ok(s),
    }
}

/// Levenshtein distance, for "did you mean" (keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + cost);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZK: &str = "[zookeeper]\nconnect = \"zk1:2181,zk2:2181/apps\"\n";

    fn ok(text: &str) -> Config {
        match parse(text, Path::new("w.toml")) {
            Ok(config) => config,
            Err(err) => panic!("expected a valid config, got:\n{err}"),
        }
    }

    /// The Display lines of the error.
    fn problems(text: &str) -> Vec<String> {
        match parse(text, Path::new("w.toml")) {
            Ok(config) => panic!("expected problems, got {config:?}"),
            Err(err) => err.to_string().lines().map(str::to_owned).collect(),
        }
    }

    /// The one problem of the text.
    fn problem(text: &str) -> String {
        let mut all = problems(text);
        assert_eq!(all.len(), 1, "expected one problem, got {all:#?}");
        all.remove(0)
    }

    fn worker(body: &str) -> String {
        format!("{ZK}[[worker]]\n{body}")
    }

    #[test]
    fn minimal_config_gets_every_default() {
        let config = ok(&worker("name = \"w\"\ncommand = [\"/bin/w\"]\n"));
        assert_eq!(config.path, Path::new("w.toml"));
        assert_eq!(config.zookeeper.connect, "zk1:2181,zk2:2181/apps");
        assert_eq!(config.zookeeper.session_timeout, Duration::from_secs(15));
        assert_eq!(config.zookeeper.takeover_delay, Duration::ZERO);
        assert_eq!(config.zookeeper.root, "/workers");
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        assert_eq!(config.node.id, host);
        assert_eq!(
            config.workers,
            vec![WorkerConfig {
                name: "w".into(),
                command: vec!["/bin/w".into()],
                working_dir: None,
                env: BTreeMap::new(),
                user: None,
                group: None,
                stop_signal: Signal::SIGTERM,
                grace_period: Duration::from_secs(5),
                restart_delay: Duration::from_secs(1),
                max_restart_delay: Duration::from_secs(30),
                handoff_after: 5,
                health_check: None,
            }]
        );
    }

    #[test]
    fn every_key_is_read() {
        let config = ok(r#"
[zookeeper]
connect = "zk1:2181"
session_timeout = "20s"
takeover_delay = "1.5s"
root = "/apps/workers"

[node]
id = "db-1"

[[worker]]
name = "email-sender"
command = ["/usr/bin/mailer", "--queue", "emails"]
working_dir = "/srv/mailer"
env = { QUEUE = "emails" }
user = "mailer"
group = "mail"
stop_signal = "SIGINT"
grace_period = "7s"
restart_delay = "500ms"
max_restart_delay = "2m"
handoff_after = 0

[worker.health_check]
command = ["/usr/bin/mysql", "-e", "SELECT 1"]
interval = "20s"
timeout = "2s"
failures = 1
"#);
        assert_eq!(config.zookeeper.session_timeout, Duration::from_secs(20));
        assert_eq!(config.zookeeper.takeover_delay, Duration::from_millis(1500));
        assert_eq!(config.zookeeper.root, "/apps/workers");
        assert_eq!(config.node.id, "db-1");
        let w = &config.workers[0];
        assert_eq!(w.working_dir.as_deref(), Some(Path::new("/srv/mailer")));
        assert_eq!(w.env.get("QUEUE").map(String::as_str), Some("emails"));
        assert_eq!(w.user.as_deref(), Some("mailer"));
        assert_eq!(w.group.as_deref(), Some("mail"));
        assert_eq!(w.stop_signal, Signal::SIGINT);
        assert_eq!(w.grace_period, Duration::from_secs(7));
        assert_eq!(w.restart_delay, Duration::from_millis(500));
        assert_eq!(w.max_restart_delay, Duration::from_secs(120));
        assert_eq!(w.handoff_after, 0);
        assert_eq!(
            w.health_check,
            Some(HealthCheck {
                command: vec!["/usr/bin/mysql".into(), "-e".into(), "SELECT 1".into()],
                interval: Duration::from_secs(20),
                timeout: Duration::from_secs(2),
                failures: 1,
            })
        );
    }

    #[test]
    fn workers_keep_file_order() {
        let config = ok(&format!(
            "{ZK}[[worker]]\nname = \"zeta\"\ncommand = [\"z\"]\n[[worker]]\nname = \"alpha\"\ncommand = [\"a\"]\n"
        ));
        let names: Vec<_> = config.workers.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"]);
    }

    #[test]
    fn no_workers_is_valid() {
        assert!(ok(ZK).workers.is_empty());
    }

    #[test]
    fn defaults_apply_and_workers_override_them() {
        let config = ok(&format!(
            r#"{ZK}
[defaults]
grace_period = "3s"
stop_signal = "QUIT"
user = "nobody"
env = {{ A = "from-defaults", B = "from-defaults" }}
[defaults.health_check]
command = ["/bin/check"]
interval = "30s"

[[worker]]
name = "plain"
command = ["/bin/plain"]

[[worker]]
name = "custom"
command = ["/bin/custom"]
grace_period = "1s"
user = "custom"
env = {{ B = "from-worker", C = "from-worker" }}
[worker.health_check]
interval = "20s"
failures = 2
"#
        ));
        let plain = &config.workers[0];
        assert_eq!(plain.grace_period, Duration::from_secs(3));
        assert_eq!(plain.stop_signal, Signal::SIGQUIT);
        assert_eq!(plain.user.as_deref(), Some("nobody"));
        assert_eq!(plain.env.len(), 2);
        let check = plain.health_check.as_ref().unwrap();
        assert_eq!(check.command, ["/bin/check"]);
        assert_eq!(check.interval, Duration::from_secs(30));
        assert_eq!(check.failures, 3);

        let custom = &config.workers[1];
        assert_eq!(custom.grace_period, Duration::from_secs(1));
        assert_eq!(custom.stop_signal, Signal::SIGQUIT);
        assert_eq!(custom.user.as_deref(), Some("custom"));
        let env: Vec<_> = custom.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["A=from-defaults", "B=from-worker", "C=from-worker"]);
        let check = custom.health_check.as_ref().unwrap();
        assert_eq!(check.command, ["/bin/check"]);
        assert_eq!(check.interval, Duration::from_secs(20));
        assert_eq!(check.timeout, Duration::from_secs(5));
        assert_eq!(check.failures, 2);
    }

    #[test]
    fn defaults_may_not_set_name_or_command() {
        let all = problems(&format!(
            "{ZK}[defaults]\nname = \"x\"\ncommand = [\"x\"]\n"
        ));
        assert_eq!(
            all,
            [
                "w.toml:4:1: defaults: `name` cannot be set in [defaults]; set it in each [[worker]]",
                "w.toml:5:1: defaults: `command` cannot be set in [defaults]; set it in each [[worker]]",
            ]
        );
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let text = "[zookeeper]\nconnect = \"zk:2181\n[[worker]]\nname = 1 2\n";
        let all = problems(text);
        assert_eq!(all.len(), 2, "{all:#?}");
        assert!(
            all[0].starts_with("w.toml:2:19: syntax error: "),
            "{all:#?}"
        );
        assert!(all[1].starts_with("w.toml:4:8: syntax error: "), "{all:#?}");
    }

    #[test]
    fn duplicate_keys_are_syntax_errors_naming_the_key() {
        let text = worker("name = \"a\"\nname = \"b\"\ncommand = [\"x\"]\n");
        assert_eq!(
            problem(&text),
            "w.toml:5:1: syntax error: duplicate key `name`"
        );
    }

    #[test]
    fn unknown_keys_are_reported_with_a_suggestion() {
        let text = worker("name = \"mailer\"\ncommand = [\"x\"]\ngrace_priod = \"5s\"\n");
        assert_eq!(
            problem(&text),
            "w.toml:6:1: worker \"mailer\": unknown key `grace_priod`; did you mean `grace_period`?"
        );
    }

    #[test]
    fn unknown_keys_everywhere() {
        let text = r#"
colour = 1
[zookeeper]
connect = "zk:2181"
sesion_timeout = "10s"
[node]
name = "n"
[defaults]
session_timeout = "5s"
[[worker]]
name = "w"
command = ["x"]
[worker.health_check]
command = ["y"]
intervall = "5s"
"#;
        assert_eq!(
            problems(text),
            [
                "w.toml:2:1: unknown key `colour`; expected one of: zookeeper, node, defaults, worker, metrics",
                "w.toml:5:1: zookeeper: unknown key `sesion_timeout`; did you mean `session_timeout`?",
                "w.toml:7:1: node: unknown key `name`; expected one of: id",
                "w.toml:9:1: defaults: unknown key `session_timeout`; it belongs in [zookeeper]",
                "w.toml:15:1: worker \"w\": health_check: unknown key `intervall`; did you mean `interval`?",
            ]
        );
    }

    #[test]
    fn tls_takes_a_ca_and_optionally_a_client_certificate_and_key() {
        let text = format!("{ZK}tls = {{ ca = \"/etc/zk/ca.pem\" }}\n");
        assert_eq!(
            ok(&text).zookeeper.tls,
            Some(TlsConfig {
                ca: PathBuf::from("/etc/zk/ca.pem"),
                cert: None,
                key: None,
            })
        );
        let text = format!(
            "{ZK}tls = {{ ca = \"/etc/zk/ca.pem\", cert = \"/etc/zk/c.pem\", key = \"/etc/zk/c.key\" }}\n"
        );
        assert_eq!(
            ok(&text).zookeeper.tls,
            Some(TlsConfig {
                ca: PathBuf::from("/etc/zk/ca.pem"),
                cert: Some(PathBuf::from("/etc/zk/c.pem")),
                key: Some(PathBuf::from("/etc/zk/c.key")),
            })
        );
        assert_eq!(ok(ZK).zookeeper.tls, None);
    }

    #[test]
    fn tls_problems_are_named() {
        let tls = |inner: &str| problems(&format!("{ZK}tls = {{ {inner} }}\n"));
        assert_eq!(
            tls("ca = \"ca.pem\""),
            ["w.toml:3:14: zookeeper: tls: ca must be an absolute path"]
        );
        assert_eq!(
            tls("cert = \"/c.pem\", key = \"/c.key\""),
            ["w.toml:3:7: zookeeper: tls needs ca = \"/path/ca.pem\" (the CA that signs the servers' certificates)"]
        );
        assert_eq!(
            tls("ca = \"/ca.pem\", cert = \"/c.pem\""),
            ["w.toml:3:7: zookeeper: tls: cert and key go together: give both for client authentication, or neither"]
        );
        assert_eq!(
            tls("ca = \"/ca.pem\", key = \"/c.key\""),
            ["w.toml:3:7: zookeeper: tls: cert and key go together: give both for client authentication, or neither"]
        );
        assert_eq!(
            tls("ca = \"/ca.pem\", crt = \"/c.pem\""),
            ["w.toml:3:25: zookeeper: tls: unknown key `crt`; did you mean `cert`?"]
        );
        assert_eq!(
            tls("ca = \"\""),
            ["w.toml:3:14: zookeeper: tls: ca: must not be empty"]
        );
        assert_eq!(
            problems(&format!("{ZK}tls = \"/ca.pem\"\n")).len(),
            1,
            "tls must be a table"
        );
    }

    #[test]
    fn metrics_listen_is_an_address() {
        let text = format!("{ZK}[metrics]\nlisten = \"127.0.0.1:9464\"\n");
        assert_eq!(ok(&text).metrics.map(|m| m.listen.port()), Some(9464));
        let text = format!("{ZK}[metrics]\nlisten = \"localhost\"\n");
        assert!(
            problem(&text).contains("metrics: listen"),
            "{}",
            problem(&text)
        );
        let text = format!("{ZK}[metrics]\nlistne = \"127.0.0.1:1\"\n");
        assert!(
            problems(&text)
                .iter()
                .any(|p| p.contains("did you mean `listen`")),
            "{:?}",
            problems(&text)
        );
    }

    #[test]
    fn missing_zookeeper_section_or_connect() {
        assert_eq!(
            problem("[node]\nid = \"n\"\n"),
            "w.toml:1:1: missing [zookeeper] section; it needs connect = \"host:port,...\""
        );
        assert_eq!(
            problem("[node]\nid = \"n\"\n\n[zookeeper]\nroot = \"/w\"\n"),
            "w.toml:4:1: zookeeper: connect is required, like connect = \"zk1:2181,zk2:2181,zk3:2181\""
        );
    }

    #[test]
    fn bad_connect_strings() {
        for (connect, why) in [
            ("", "must not be empty"),
            ("zk1:2181,,zk2", "empty host"),
            ("zk1:port", "bad port \"port\""),
            ("zk1:0", "bad port \"0\""),
            (
                "zk1:2181/apps/",
                "chroot \"/apps/\": must not end with \"/\"",
            ),
            ("zk 1:2181", "bad host \"zk 1\""),
            ("[::1:2181", "missing \"]\""),
        ] {
            let text = format!("[zookeeper]\nconnect = \"{connect}\"\n");
            let message = problem(&text);
            assert!(
                message.starts_with("w.toml:2:11: zookeeper: connect: "),
                "{message}"
            );
            assert!(message.contains(why), "{connect:?}: {message}");
        }
        for connect in [
            "zk1",
            "zk1:2181,zk2:2181/",
            "[::1]:2181,10.0.0.1:2181/a/b",
            "zk-1.example.com:2181",
        ] {
            ok(&format!("[zookeeper]\nconnect = \"{connect}\"\n"));
        }
    }

    #[test]
    fn a_url_is_not_host_port() {
        for (connect, form) in [
            ("zk://zk1:2181", "\"zk1:2181\""),
            (
                "zookeeper://zk1:2181,zk2:2181/apps",
                "\"zk1:2181,zk2:2181/apps\"",
            ),
        ] {
            let message = problem(&format!("[zookeeper]\nconnect = \"{connect}\"\n"));
            assert_eq!(
                message,
                format!(
                    "w.toml:2:11: zookeeper: connect: {connect:?} is a URL, not host:port; write it \
                     without the scheme: {form} (the form is host:port,host:port[/chroot])"
                )
            );
        }
    }

    #[test]
    fn numeric_user_and_group_ids_are_taken_as_ids() {
        let with = |keys: &str| worker(&format!("name = \"mailer\"\ncommand = [\"x\"]\n{keys}\n"));
        let config = ok(&with("user = \"1000\"\ngroup = \"1000\""));
        assert_eq!(config.workers[0].user.as_deref(), Some("1000"));
        assert_eq!(config.workers[0].group.as_deref(), Some("1000"));
        ok(&with("user = \"0\"\ngroup = \"4294967294\""));
        ok(&with("user = \"mailer\"\ngroup = \"mail-2\""));
        assert_eq!(
            problem(&with("user = \"4294967295\"")),
            "w.toml:6:8: worker \"mailer\": user: 4294967295 is not a valid id (a number up to 4294967294)"
        );
        assert!(problem(&with("group = \"99999999999\"")).contains("is not a valid id"));
        assert!(problem(&with("user = \"a:b\"")).contains("is not a user or group name"));
    }

    #[test]
    fn a_reload_names_the_restart_keys_that_changed_and_only_those() {
        let base = ok(&format!("{ZK}[node]\nid = \"n1\"\n"));
        assert!(restart_keys_changed(&base, &base).is_empty());
        let other = ok(
            "[zookeeper]\nconnect = \"zk3:2181\"\nsession_timeout = \"20s\"\n\
                        auth = { scheme = \"digest\", credentials_file = \"/etc/zk.cred\" }\n\
                        [node]\nid = \"n2\"\n[metrics]\nlisten = \"127.0.0.1:9100\"\n",
        );
        assert_eq!(
            restart_keys_changed(&base, &other),
            [
                "zookeeper.connect",
                "zookeeper.session_timeout",
                "zookeeper.auth",
                "node.id",
                "metrics.listen"
            ]
        );
    }

    /// Issue 12, 5: `execve` refuses a string of 131072 bytes with its NUL (`MAX_ARG_STRLEN`
    /// counts it), and for the environment the string is the whole `NAME=value`.
    #[test]
    fn one_string_is_limited_as_execve_limits_it() {
        let with_arg = |n: usize| {
            worker(&format!(
                "name = \"w\"\ncommand = [\"/bin/x\", \"{}\"]\n",
                "a".repeat(n)
            ))
        };
        ok(&with_arg(131_071));
        assert_eq!(
            problem(&with_arg(131_072)),
            "w.toml:5:11: worker \"w\": command: argument 2 is 131072 bytes; execve takes at most \
             131071 (the kernel's MAX_ARG_STRLEN, 131072 with the terminating NUL)"
        );
        // "K=" and the value: 131071 bytes in all is the most.
        let with_env = |n: usize| {
            worker(&format!(
                "name = \"w\"\ncommand = [\"/bin/x\"]\nenv = {{ K = \"{}\" }}\n",
                "v".repeat(n - 2)
            ))
        };
        ok(&with_env(131_071));
        assert_eq!(
            problem(&with_env(131_072)),
            "w.toml:6:13: worker \"w\": env.K: K=<value> is 131072 bytes; execve takes at most 131071 \
             per NAME=value string (the kernel's MAX_ARG_STRLEN, 131072 with the terminating NUL)"
        );
    }

    /// Issue 12, 5: the whole of argv and the environment must fit `ARG_MAX` as the kernel counts it,
    /// the daemon's own environment and the `ZK_SUPERVISE_*` variables included.
    #[test]
    fn argv_and_environment_together_must_fit_arg_max() {
        let room = ExecRoom::of_this_process();
        let vars = room.arg_max / 100_000 + 2;
        let env: Vec<String> = (0..vars)
            .map(|i| format!("V{i} = \"{}\"", "x".repeat(100_000)))
            .collect();
        let text = worker(&format!(
            "name = \"w\"\ncommand = [\"/bin/x\"]\nenv = {{ {} }}\n",
            env.join(", ")
        ));
        let message = problem(&text);
        assert!(
            message.starts_with("w.toml:3:1: worker \"w\": command and environment come to ")
                && message.contains(&format!(
                    "over the kernel's limit of {} (ARG_MAX",
                    room.arg_max
                ))
                && message.contains("the inherited environment (this process's)"),
            "{message}"
        );
        // The same through a health check's command: it runs with the worker's environment.
        let small: Vec<String> = (0..room.arg_max.saturating_sub(900_000) / 100_000 + 2)
            .map(|i| format!("V{i} = \"{}\"", "x".repeat(100_000)))
            .collect();
        let big_check = format!("\"{}\"", "y".repeat(100_000));
        let checks = vec![big_check; 9].join(", ");
        let text = worker(&format!(
            "name = \"w\"\ncommand = [\"/bin/x\"]\nenv = {{ {} }}\nhealth_check = {{ command = [\"/bin/c\", {checks}] }}\n",
            small.join(", ")
        ));
        let message = problem(&text);
        assert!(
            message.contains("health_check.command and environment come to"),
            "{message}"
        );
    }

    #[test]
    fn bad_roots() {
        for (root, why) in [
            ("/", "must not be \"/\""),
            ("workers", "must start with \"/\""),
            ("/workers/", "must not end with \"/\""),
            ("/a//b", "must not contain \"//\""),
            ("/a/../b", "\"..\""),
            ("/zookeeper/x", "reserved"),
        ] {
            let message = problem(&format!("{ZK}root = \"{root}\"\n").replace("/apps", ""));
            assert!(
                message.starts_with("w.toml:3:8: zookeeper: root: "),
                "{message}"
            );
            assert!(message.contains(why), "{root:?}: {message}");
        }
    }

    #[test]
    fn duplicate_worker_names_point_at_the_second_and_name_the_first() {
        let text = worker(
            "name = \"dup\"\ncommand = [\"x\"]\n\n[[worker]]\nname = \"dup\"\ncommand = [\"y\"]\n",
        );
        assert_eq!(
            problem(&text),
            "w.toml:8:8: worker \"dup\": duplicate name, already used by the worker at line 4"
        );
    }

    #[test]
    fn bad_commands() {
        let cases = [
            ("command = []", "w.toml:5:11: worker \"w\": command: must not be empty; give the program and its arguments"),
            ("command = [\"\", \"x\"]", "w.toml:5:11: worker \"w\": command: the program (first element) must not be empty"),
            ("command = \"/bin/x --y\"", "w.toml:5:11: worker \"w\": command: expected an array of strings (the argv; no shell is involved), found a string"),
            ("command = [\"/bin/x\", 2]", "w.toml:5:22: worker \"w\": command: expected a string, found an integer"),
            ("command = [\"/bin/x\\u0000\"]", "w.toml:5:12: worker \"w\": command: must not contain NUL"),
        ];
        for (line, expected) in cases {
            assert_eq!(
                problem(&worker(&format!("name = \"w\"\n{line}\n"))),
                expected
            );
        }
    }

    #[test]
    fn missing_name_and_command() {
        assert_eq!(
            problems(&worker("user = \"u\"\n")),
            [
                "w.toml:3:1: worker #1: command is required",
                "w.toml:3:1: worker #1: name is required",
            ]
        );
    }

    #[test]
    fn bad_names() {
        let long = "a".repeat(129);
        let cases = [
            ("a/b", "w.toml:4:8: worker \"a/b\": name: may contain only letters, digits, \".\", \"_\" and \"-\", not \"/\""),
            (".hidden", "w.toml:4:8: worker \".hidden\": name: must start with a letter or a digit, not \".\""),
            ("", "w.toml:4:8: worker #1: name: must not be empty"),
            ("-x", "w.toml:4:8: worker \"-x\": name: must start with a letter or a digit, not \"-\""),
            ("caf\u{e9}", "w.toml:4:8: worker \"caf\u{e9}\": name: may contain only letters, digits, \".\", \"_\" and \"-\", not \"\u{e9}\""),
        ];
        for (name, expected) in cases {
            assert_eq!(
                problem(&worker(&format!("name = \"{name}\"\ncommand = [\"x\"]\n"))),
                expected
            );
        }
        let message = problem(&worker(&format!("name = \"{long}\"\ncommand = [\"x\"]\n")));
        assert!(
            message.ends_with("name: is 129 characters long, at most 128 are allowed"),
            "{message}"
        );
        ok(&worker(&format!(
            "name = \"{}\"\ncommand = [\"x\"]\n",
            "a".repeat(128)
        )));
        ok(&worker("name = \"0a._-Z\"\ncommand = [\"x\"]\n"));
    }

    #[test]
    fn bad_durations() {
        let text = worker("name = \"mailer\"\ncommand = [\"x\"]\ngrace_period = \"5x\"\n");
        assert_eq!(
            problem(&text),
            "w.toml:6:16: worker \"mailer\": grace_period: bad duration \"5x\": expected a number with a unit (ms, s, m, h)"
        );
        let text = worker("name = \"w\"\ncommand = [\"x\"]\nrestart_delay = 5\n");
        assert_eq!(
            problem(&text),
            "w.toml:6:17: worker \"w\": restart_delay: expected a duration string with a unit, like \"5s\", found an integer"
        );
        let text = format!("{ZK}takeover_delay = \"-1s\"\n");
        assert_eq!(
            problem(&text),
            "w.toml:3:18: zookeeper: takeover_delay: bad duration \"-1s\": must not be negative"
        );
    }

    #[test]
    fn duration_limits() {
        let cases = [
            (
                "session_timeout = \"500ms\"",
                "zookeeper: session_timeout: 500ms is too short, the least is 1s",
            ),
            (
                "session_timeout = \"15m\"",
                "zookeeper: session_timeout: 15m is too long, the most is 10m",
            ),
            (
                "takeover_delay = \"2h\"",
                "zookeeper: takeover_delay: 2h is too long, the most is 1h",
            ),
        ];
        for (line, expected) in cases {
            let message = problem(&format!("{ZK}{line}\n"));
            assert!(message.ends_with(expected), "{message}");
        }
        let message = problem(&worker(
            "name = \"w\"\ncommand = [\"x\"]\nrestart_delay = \"0s\"\n",
        ));
        assert!(
            message.ends_with("restart_delay: 0s is too short, the least is 10ms"),
            "{message}"
        );
    }

    #[test]
    fn wrong_types_have_places() {
        let text = format!(
            "{ZK}[[worker]]\nname = \"w\"\ncommand = [\"x\"]\nhandoff_after = \"x\"\nuser = 1\nenv = [\"A=b\"]\n"
        );
        assert_eq!(
            problems(&text),
            [
                "w.toml:6:17: worker \"w\": handoff_after: expected an integer, found a string",
                "w.toml:7:8: worker \"w\": user: expected a string, found an integer",
                "w.toml:8:7: worker \"w\": env: expected a table, found an array",
            ]
        );
        assert_eq!(
            problem("zookeeper = 1\n"),
            "w.toml:1:13: zookeeper: expected a table, found an integer"
        );
        assert_eq!(
            problem(&format!("{ZK}[worker]\nname = \"w\"\n")),
            "w.toml:3:1: worker: expected [[worker]] entries (an array of tables), found a table"
        );
    }

    #[test]
    fn bad_counts() {
        let cases = [
            ("handoff_after = -1", "handoff_after: must not be negative"),
            (
                "handoff_after = 4294967296",
                "handoff_after: must be at most 4294967295",
            ),
            (
                "handoff_after = 1.5",
                "handoff_after: expected an integer, found a float",
            ),
        ];
        for (line, expected) in cases {
            let message = problem(&worker(&format!(
                "name = \"w\"\ncommand = [\"x\"]\n{line}\n"
            )));
            assert!(message.ends_with(expected), "{message}");
        }
        let config = ok(&worker(
            "name = \"w\"\ncommand = [\"x\"]\nhandoff_after = 0x10\n",
        ));
        assert_eq!(config.workers[0].handoff_after, 16);
    }

    #[test]
    fn grace_period_must_fit_the_lease() {
        let text = worker("name = \"x\"\ncommand = [\"x\"]\ngrace_period = \"12s\"\n");
        assert_eq!(
            problem(&text),
            "w.toml:6:16: worker \"x\": grace_period 12s does not fit the lease: with session_timeout 15s and server_tick 2s it must be at most 6s; shorten grace_period or raise session_timeout (or lower server_tick if the servers' tickTime is shorter)"
        );
        // Exactly at the bound fits.
        ok(&worker(
            "name = \"x\"\ncommand = [\"x\"]\ngrace_period = \"6s\"\n",
        ));
    }

    #[test]
    fn grace_period_from_defaults_is_reported_once_in_defaults() {
        let text = format!(
            "{ZK}session_timeout = \"5s\"\nserver_tick = \"500ms\"\n[defaults]\ngrace_period = \"4s\"\n[[worker]]\nname = \"a\"\ncommand = [\"a\"]\n[[worker]]\nname = \"b\"\ncommand = [\"b\"]\n[[worker]]\nname = \"c\"\ncommand = [\"c\"]\ngrace_period = \"1s\"\n"
        );
        assert_eq!(
            problem(&text),
            "w.toml:6:16: defaults: grace_period 4s does not fit the lease: with session_timeout 5s and server_tick 500ms it must be at most 2.5s; shorten grace_period or raise session_timeout (or lower server_tick if the servers' tickTime is shorter)"
        );
    }

    #[test]
    fn default_grace_period_against_a_short_session_timeout() {
        let text = format!("{ZK}session_timeout = \"4s\"\nserver_tick = \"200ms\"\n[[worker]]\nname = \"a\"\ncommand = [\"a\"]\n[[worker]]\nname = \"b\"\ncommand = [\"b\"]\n");
        assert_eq!(
            problem(&text),
            "w.toml:3:19: zookeeper: session_timeout 4s and server_tick 200ms leave room for a grace_period of at most 2s, less than the default 5s; raise session_timeout, lower server_tick if the servers' tickTime is shorter, or set a shorter grace_period in [defaults]"
        );
    }

    #[test]
    fn server_tick_defaults_to_two_seconds_and_has_bounds() {
        let config = ok(&worker("name = \"x\"\ncommand = [\"x\"]\n"));
        assert_eq!(config.zookeeper.server_tick, Duration::from_secs(2));
        let config = ok(&format!(
            "{ZK}server_tick = \"200ms\"\n[[worker]]\nname = \"x\"\ncommand = [\"x\"]\n"
        ));
        assert_eq!(config.zookeeper.server_tick, Duration::from_millis(200));
        let text =
            format!("{ZK}server_tick = \"5ms\"\n[[worker]]\nname = \"x\"\ncommand = [\"x\"]\n");
        assert!(
            problem(&text).starts_with("w.toml:3:15: zookeeper: server_tick: "),
            "{}",
            problem(&text)
        );
        // A tick as long as the session leaves no room for any grace period.
        let text = format!("{ZK}session_timeout = \"4s\"\nserver_tick = \"2s\"\n[[worker]]\nname = \"x\"\ncommand = [\"x\"]\ngrace_period = \"100ms\"\n");
        assert!(
            problem(&text).contains("it must be at most 0s"),
            "{}",
            problem(&text)
        );
    }

    #[test]
    fn max_restart_delay_must_not_be_shorter_than_restart_delay() {
        let text = worker("name = \"w\"\ncommand = [\"x\"]\nrestart_delay = \"10s\"\nmax_restart_delay = \"5s\"\n");
        assert_eq!(
            problem(&text),
            "w.toml:7:21: worker \"w\": max_restart_delay 5s is shorter than restart_delay 10s"
        );
        // The worker's value against the defaults' value is the worker's problem.
        let text = format!(
            "{ZK}[defaults]\nrestart_delay = \"10s\"\n[[worker]]\nname = \"w\"\ncommand = [\"x\"]\nmax_restart_delay = \"5s\"\n"
        );
        assert_eq!(
            problem(&text),
            "w.toml:8:21: worker \"w\": max_restart_delay 5s is shorter than restart_delay 10s"
        );
    }

    #[test]
    fn health_check_problems() {
        let text = worker(
            "name = \"w\"\ncommand = [\"x\"]\n[worker.health_check]\ninterval = \"1s\"\ntimeout = \"2s\"\nfailures = 0\n",
        );
        assert_eq!(
            problems(&text),
            [
                "w.toml:6:1: worker \"w\": health_check: command is required",
                "w.toml:8:11: worker \"w\": health_check.timeout 2s is longer than its interval 1s",
                "w.toml:9:12: worker \"w\": health_check.failures: must be at least 1",
            ]
        );
    }

    #[test]
    fn stop_signals() {
        for (name, signal) in [
            ("TERM", Signal::SIGTERM),
            ("SIGTERM", Signal::SIGTERM),
            ("int", Signal::SIGINT),
            ("HUP", Signal::SIGHUP),
            ("QUIT", Signal::SIGQUIT),
            ("USR1", Signal::SIGUSR1),
            ("USR2", Signal::SIGUSR2),
            ("KILL", Signal::SIGKILL),
            ("WINCH", Signal::SIGWINCH),
        ] {
            let config = ok(&worker(&format!(
                "name = \"w\"\ncommand = [\"x\"]\nstop_signal = \"{name}\"\n"
            )));
            assert_eq!(config.workers[0].stop_signal, signal, "{name}");
        }
        for (name, why) in [
            ("TREM", "unknown signal \"TREM\""),
            ("STOP", "pauses or resumes"),
            ("", "unknown signal"),
        ] {
            let message = problem(&worker(&format!(
                "name = \"w\"\ncommand = [\"x\"]\nstop_signal = \"{name}\"\n"
            )));
            assert!(
                message.starts_with("w.toml:6:15: worker \"w\": stop_signal: "),
                "{message}"
            );
            assert!(message.contains(why), "{message}");
        }
    }

    #[test]
    fn env_working_dir_user_node_problems() {
        let text = format!(
            "{ZK}[node]\nid = \"\"\n[[worker]]\nname = \"w\"\ncommand = [\"x\"]\nworking_dir = \"srv\"\nenv = {{ ZK_SUPERVISE_NODE = \"x\", \"A=B\" = \"y\" }}\ngroup = \"\"\n"
        );
        assert_eq!(
            problems(&text),
            [
                "w.toml:4:6: node: id: must not be empty",
                "w.toml:8:15: worker \"w\": working_dir: must be an absolute path, not \"srv\"",
                "w.toml:9:9: worker \"w\": env: ZK_SUPERVISE_NODE is set by the supervisor and cannot be overridden",
                "w.toml:9:34: worker \"w\": env: variable name \"A=B\" must not contain \"=\" or NUL",
                "w.toml:10:9: worker \"w\": group: must not be empty",
            ]
        );
    }

    #[test]
    fn several_problems_are_reported_at_once_in_file_order() {
        let text = r#"[zookeeper]
session_timeout = "3x"

[[worker]]
name = "a/b"
command = []
grace_priod = "5s"

[[worker]]
name = ".x"
command = ["x"]
restart_delay = "soon"
"#;
        assert_eq!(
            problems(text),
            [
                "w.toml:1:1: zookeeper: connect is required, like connect = \"zk1:2181,zk2:2181,zk3:2181\"",
                "w.toml:2:19: zookeeper: session_timeout: bad duration \"3x\": expected a number with a unit (ms, s, m, h)",
                "w.toml:5:8: worker \"a/b\": name: may contain only letters, digits, \".\", \"_\" and \"-\", not \"/\"",
                "w.toml:6:11: worker \"a/b\": command: must not be empty; give the program and its arguments",
                "w.toml:7:1: worker \"a/b\": unknown key `grace_priod`; did you mean `grace_period`?",
                "w.toml:10:8: worker \".x\": name: must start with a letter or a digit, not \".\"",
                "w.toml:12:17: worker \".x\": restart_delay: bad duration \"soon\": expected a number with a unit (ms, s, m, h)",
            ]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = format!("# \u{e9}t\u{e9}\n{ZK}[[worker]]\nname = \"w\" # \u{1f600}\ncommand = [\"x\"] ; x = 1\n");
        let all = problems(&text);
        assert_eq!(all.len(), 1, "{all:#?}");
        assert!(all[0].starts_with("w.toml:6:17: syntax error"), "{all:#?}");
        let location = |offset| locate("ab\n\u{e9}\u{e9}x\n", offset);
        assert_eq!(location(0), Location { line: 1, column: 1 });
        assert_eq!(location(2), Location { line: 1, column: 3 });
        assert_eq!(location(3), Location { line: 2, column: 1 });
        assert_eq!(location(7), Location { line: 2, column: 3 });
        // Inside a character, or past the end: still a place, never a panic.
        assert_eq!(location(4), Location { line: 2, column: 1 });
        assert_eq!(location(99), Location { line: 3, column: 1 });
    }

    #[test]
    fn durations_parse() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse_duration("0.25m"), Ok(ms(15_000)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
        let expected = "expected a number with a unit (ms, s, m, h)";
        for bad in [
            "5", "5x", "", "s", ".5s", "5.s", "1.2.3s", "5 s", " 5s", "5S", "+5s", "1e3s", "五s",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(format!("bad duration {bad:?}: {expected}"))
            );
        }
        assert_eq!(
            parse_duration("-1s"),
            Err("bad duration \"-1s\": must not be negative".into())
        );
        assert!(parse_duration("0.0000000001s")
            .unwrap_err()
            .contains("at most 9 decimal places"));
        assert!(parse_duration("99999999999999999999999999999999999999999h")
            .unwrap_err()
            .ends_with("too large"));
        assert!(parse_duration("18446744073709551616s")
            .unwrap_err()
            .ends_with("too large"));
    }

    #[test]
    fn durations_format_the_way_they_parse() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_millis(10_500), "10.5s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(7_200), "2h"),
            (Duration::new(1, 1), "1.000000001s"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Ok(d));
        }
    }

    #[test]
    fn check_grace_against_the_negotiated_timeout() {
        let config = ok(&worker(
            "name = \"w\"\ncommand = [\"x\"]\ngrace_period = \"6s\"\n",
        ));
        assert!(config.check_grace_against(Duration::from_secs(15)).is_ok());
        let err = config
            .check_grace_against(Duration::from_secs(6))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "w.toml: worker \"w\": grace_period 6s does not fit the lease: with the negotiated session_timeout 6s (15s requested) and server_tick 2s it must be at most 800ms; shorten grace_period or raise maxSessionTimeout on the ZooKeeper servers"
        );
        assert_eq!(err.problems()[0].location, None);
    }

    #[test]
    fn summary_has_a_line_per_worker() {
        let config = ok(&format!(
            "{ZK}[[worker]]\nname = \"email-sender\"\ncommand = [\"/usr/bin/mailer\", \"--queue\", \"emails\"]\n\
             [[worker]]\nname = \"db\"\ncommand = [\"/bin/sh\", \"-c\", \"exec db\"]\nhandoff_after = 0\n\
             restart_delay = \"500ms\"\nmax_restart_delay = \"1m\"\n[worker.health_check]\ncommand = [\"true\"]\n"
        ));
        assert_eq!(
            config.summary(),
            [
                "email-sender: /usr/bin/mailer --queue emails (grace 5s, restart 1s..30s, handoff after 5)",
                "db: /bin/sh -c \"exec db\" (grace 5s, restart 500ms..1m, handoff never, health check every 10s)",
            ]
        );
    }

    #[test]
    fn load_reports_unreadable_files_by_name() {
        let dir = std::env::temp_dir().join(format!("zk-supervise-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        assert_eq!(
            load(&missing).unwrap_err().to_string(),
            format!("{}: no such file", missing.display())
        );
        assert_eq!(
            load(&dir).unwrap_err().to_string(),
            format!("{}: is a directory, not a config file", dir.display())
        );
        let latin1 = dir.join("latin1.toml");
        std::fs::write(&latin1, b"[zookeeper]\nconnect = \"caf\xe9\"\n").unwrap();
        assert_eq!(
            load(&latin1).unwrap_err().to_string(),
            format!("{}:2:15: not valid UTF-8", latin1.display())
        );
        let good = dir.join("good.toml");
        std::fs::write(&good, ZK).unwrap();
        assert_eq!(load(&good).unwrap().path, good);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn odd_inputs_never_panic() {
        let inputs = [
            "",
            "\u{feff}",
            "[",
            "[[",
            "]]]",
            "worker = []",
            "worker = [1, \"x\", [], {}]",
            "worker = [{ name = \"a\", command = [\"x\"] }]",
            "[zookeeper]\nconnect = 1",
            "[zookeeper]\nconnect = \"\"\nsession_timeout = 15",
            "[[worker]]\n[worker.health_check]\n[worker.health_check.deeper]",
            "[defaults]\nhealth_check = 1\nenv = 1",
            "[defaults.health_check]\ncommand = []",
            "a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
            "\0\0\0",
            "x = 1979-05-27T07:32:00Z",
            "[node]\nid = \"a\\nb\"",
        ];
        for input in inputs {
            let _ = parse(input, Path::new("w.toml"));
        }
        let err = parse(
            "worker = [{ name = \"a\", command = [\"x\"] }]",
            Path::new("w.toml"),
        );
        assert!(err.is_err());
        let config = ok(&format!(
            "worker = [{{ name = \"a\", command = [\"x\"] }}]\n{ZK}"
        ));
        assert_eq!(config.workers[0].name, "a");
    }
}

/// The parser against arbitrary input: it reports problems, it never panics.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use std::path::Path;

    const VALID: &str = "[zookeeper]\nconnect = \"zk1:2181/apps\"\nsession_timeout = \"15s\"\n\
        [defaults]\ngrace_period = \"5s\"\n[[worker]]\nname = \"mailer\"\ncommand = [\"/bin/m\", \"-q\"]\n\
        env = { A = \"b\" }\n[worker.health_check]\ncommand = [\"/bin/c\"]\ninterval = \"10s\"\n";

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = super::parse(&text, Path::new("fuzz.toml"));
        }

        #[test]
        fn mutations_of_a_valid_file_never_panic(
            at in 0usize..VALID.len(),
            cut in 0usize..40,
            insert in "[\\[\\]{}=\",.#0-9a-z_ \\n\\\\\u{0}-\u{1f}\u{80}-\u{10ffff}]{0,12}",
        ) {
            let mut text = VALID.to_owned();
            let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            let end = (at + cut).min(text.len());
            let end = (end..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
            text.replace_range(at..end, &insert);
            let _ = super::parse(&text, Path::new("fuzz.toml"));
        }

        #[test]
        fn durations_never_panic(s in "\\PC{0,30}") {
            let _ = super::parse_duration(&s);
        }
    }
}
