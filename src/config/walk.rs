//! The walker: visits every section and key of the spanned document and reads each value with a
//! small reader of its kind, recording every problem where it was written.
//!
//! Serde with `deny_unknown_fields` stops at the first problem, and an operator fixing a config
//! file one `check` run at a time is a poor experience. So the file is parsed into the `toml`
//! crate's spanned document ([`DeTable`]), where every key and value keeps its byte range, and the
//! [`Walker`] goes through it. Each section has one table of its keys ([`Key`]: a name and how its
//! value is read), so the keys a section accepts are written once: the same table reads them and
//! lists them when an unknown key needs a suggestion. A value is read into a [`Field`] (unset,
//! bad, or set at an offset), and [`super::rules`] merges a worker's fields with `[defaults]`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::connect::{check_zk_path, Connect};
use super::duration::{format_duration, parse_duration};
use super::error::Problems;
use super::exec::{ExecRoom, MAX_ARG_BYTES, MAX_ARG_STRLEN};
use super::rules::{self, Field, Fields, HealthFields, LeaseSettings, ReadWorker};
use super::{
    AuthConfig, Config, MetricsConfig, NodeConfig, TlsConfig, WorkerConfig, ZkConfig,
    MAX_NODE_ID_LEN,
};

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
/// Limits that keep a bad file from exhausting the host.
const MAX_WORKERS: usize = 10_000;
const MAX_ARGS: usize = 4096;
const MAX_ARGV_BYTES: usize = 1024 * 1024;
const MAX_ENV_VARS: usize = 1024;

/// The sections. Each is read by its own function, in an order of their own (`[[worker]]` last:
/// its checks need `[zookeeper]`), so this list is the one place they are named as keys.
const TOP: &[&str] = &["zookeeper", "node", "defaults", "worker", "metrics"];

/// `[zookeeper]`.
const ZOOKEEPER: &[Key<ZkFields>] = &[
    key("connect", |w, zk, what, v| {
        let connect = w
            .nonempty_string(what, v)
            .and_then(|s| w.check(what, v, Connect::parse(&s)));
        zk.connect = set(v, connect);
    }),
    key("session_timeout", |w, zk, what, v| {
        let d = w.duration(what, v, MIN_SESSION_TIMEOUT, MAX_SESSION_TIMEOUT);
        zk.session_timeout = set(v, d);
    }),
    key("takeover_delay", |w, zk, what, v| {
        zk.takeover_delay = set(v, w.duration(what, v, Duration::ZERO, MAX_DELAY));
    }),
    key("server_tick", |w, zk, what, v| {
        let d = w.duration(what, v, MIN_SERVER_TICK, MAX_SERVER_TICK);
        zk.server_tick = set(v, d);
    }),
    key("root", |w, zk, what, v| {
        let root = w
            .string(what, v)
            .and_then(|s| w.check(what, v, check_root(&s).map(|()| s)));
        zk.root = set(v, root);
    }),
    key("auth", |w, zk, what, v| zk.auth = set(v, w.auth(what, v))),
    key("tls", |w, zk, what, v| zk.tls = set(v, w.tls(what, v))),
];

/// `[zookeeper] auth = { ... }`.
const AUTH: &[Key<AuthFields>] = &[
    key("scheme", |w, auth, what, v| {
        let scheme = w.string(what, v).and_then(|s| {
            if s == "digest" {
                Some(s)
            } else {
                let message = format!("{what} {s:?} is not supported; use \"digest\"");
                w.problems.at(v.span().start, message);
                None
            }
        });
        auth.scheme = set(v, scheme);
    }),
    key("credentials_file", |w, auth, what, v| {
        auth.credentials_file = set(v, w.file_path(what, v));
    }),
];

/// `[zookeeper] tls = { ... }`.
const TLS: &[Key<TlsFields>] = &[
    key("ca", |w, tls, what, v| {
        tls.ca = set(v, w.file_path(what, v))
    }),
    key("cert", |w, tls, what, v| {
        tls.cert = set(v, w.file_path(what, v))
    }),
    key("key", |w, tls, what, v| {
        tls.key = set(v, w.file_path(what, v))
    }),
];

/// `[node]`.
const NODE: &[Key<Field<String>>] = &[key("id", |w, id, what, v| {
    *id = set(
        v,
        w.string(what, v)
            .and_then(|s| w.check(what, v, check_node_id(&s).map(|()| s))),
    );
})];

/// `[metrics]`.
const METRICS: &[Key<Field<std::net::SocketAddr>>] = &[key("listen", |w, listen, what, v| {
    let addr = w.string(what, v).and_then(|s| {
        let addr = s.parse().ok();
        if addr.is_none() {
            let message =
                format!("{what}: {s:?} is not an address and port like \"127.0.0.1:9464\"");
            w.problems.at(v.span().start, message);
        }
        addr
    });
    *listen = set(v, addr);
})];

/// The keys of a `[[worker]]`; `[defaults]` takes them all but `name` and `command`.
const WORKER: &[Key<Fields>] = &[
    // Read before the others, to name the worker in their messages (see `Walker::worker`).
    key("name", |_, _, _, _| {}),
    key("command", |w, f, what, v| {
        f.command = set(v, w.argv(what, v))
    }),
    key("working_dir", |w, f, what, v| {
        f.working_dir = set(v, w.directory(what, v));
    }),
    key("env", |w, f, what, v| f.env = set(v, w.env(what, v))),
    key("user", |w, f, what, v| {
        f.user = set(v, w.user_or_group(what, v))
    }),
    key("group", |w, f, what, v| {
        f.group = set(v, w.user_or_group(what, v))
    }),
    key("stop_signal", |w, f, what, v| {
        f.stop_signal = set(v, w.signal(what, v))
    }),
    key("grace_period", |w, f, what, v| {
        f.grace_period = set(v, w.duration(what, v, Duration::ZERO, MAX_DELAY));
    }),
    key("restart_delay", |w, f, what, v| {
        f.restart_delay = set(v, w.duration(what, v, MIN_RESTART_DELAY, MAX_DELAY));
    }),
    key("max_restart_delay", |w, f, what, v| {
        f.max_restart_delay = set(v, w.duration(what, v, MIN_RESTART_DELAY, MAX_DELAY));
    }),
    key("handoff_after", |w, f, what, v| {
        f.handoff_after = set(v, w.integer(what, v, 0));
    }),
    key("health_check", |w, f, what, v| {
        f.health_check = set(v, w.health(what, v))
    }),
];

/// The keys of a `[[worker]]` that `[defaults]` may not set.
const WORKER_ONLY: &[&str] = &["name", "command"];

/// `[worker.health_check]` (and `[defaults.health_check]`).
const HEALTH_CHECK: &[Key<HealthFields>] = &[
    key("command", |w, h, what, v| {
        h.command = set(v, w.argv(what, v))
    }),
    key("interval", |w, h, what, v| {
        h.interval = set(v, w.duration(what, v, MIN_HEALTH_INTERVAL, MAX_DELAY));
    }),
    key("timeout", |w, h, what, v| {
        h.timeout = set(v, w.duration(what, v, MIN_HEALTH_TIMEOUT, MAX_DELAY));
    }),
    key("failures", |w, h, what, v| {
        h.failures = set(v, w.integer(what, v, 1))
    }),
];

type Value<'i> = Spanned<DeValue<'i>>;

/// Reads one key's value into the fields of its section; the `&str` names the key in messages.
type Read<T> = fn(&mut Walker<'_>, &mut T, &str, &Value<'_>);

/// One key of a section: its name and how its value is read.
struct Key<T: 'static> {
    name: &'static str,
    read: Read<T>,
}

const fn key<T>(name: &'static str, read: Read<T>) -> Key<T> {
    Key { name, read }
}

/// What a reader gave for `value`: set at its offset, or bad.
fn set<T>(value: &Value<'_>, read: Option<T>) -> Field<T> {
    match read {
        Some(v) => Field::Set(v, value.span().start),
        None => Field::Bad,
    }
}

/// What `[zookeeper]` said, before defaults.
#[derive(Default)]
struct ZkFields {
    connect: Field<Connect>,
    session_timeout: Field<Duration>,
    takeover_delay: Field<Duration>,
    server_tick: Field<Duration>,
    root: Field<String>,
    auth: Field<AuthConfig>,
    tls: Field<TlsConfig>,
}

#[derive(Default)]
struct AuthFields {
    scheme: Field<String>,
    credentials_file: Field<PathBuf>,
}

#[derive(Default)]
struct TlsFields {
    ca: Field<PathBuf>,
    cert: Field<PathBuf>,
    key: Field<PathBuf>,
}

/// Walks the spanned document and collects problems.
pub(super) struct Walker<'t> {
    pub(super) problems: Problems<'t>,
    /// What `execve` will take of a worker's command and environment.
    exec: ExecRoom,
}

impl<'t> Walker<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        Self {
            problems: Problems::new(text),
            exec: ExecRoom::of_this_process(),
        }
    }

    /// The whole document; `None` if something required is missing or bad (reported).
    pub(super) fn document(&mut self, doc: &DeTable<'_>, path: &Path) -> Option<Config> {
        for (key, _) in doc {
            if !TOP.contains(&key.get_ref().as_ref()) {
                self.unknown_key("", key, TOP);
            }
        }
        let zk = self.zookeeper(doc.get("zookeeper"));
        let node = self.node(doc.get("node"));
        self.exec.know(
            zk.connect.get().and_then(Connect::chroot),
            zk.root.get().map_or(DEFAULT_ROOT, String::as_str),
            node.as_ref().map(|n| n.id.as_str()),
        );
        let metrics = self.metrics(doc.get("metrics"));
        let defaults = match doc.get("defaults") {
            Some(v) => self.defaults(v),
            None => Fields::default(),
        };
        let lease = match (&zk.session_timeout, &zk.server_tick) {
            (Field::Bad, _) | (_, Field::Bad) => None,
            (s, t) => Some(LeaseSettings {
                session_timeout: s.get().copied().unwrap_or(DEFAULT_SESSION_TIMEOUT),
                session_timeout_at: s.at(),
                server_tick: t.get().copied().unwrap_or(DEFAULT_SERVER_TICK),
                server_tick_at: t.at(),
            }),
        };
        let workers = self.workers(doc.get("worker"), &defaults, lease);
        Some(Config {
            path: path.to_path_buf(),
            zookeeper: ZkConfig {
                connect: zk.connect.into_option()?,
                session_timeout: zk
                    .session_timeout
                    .into_option()
                    .unwrap_or(DEFAULT_SESSION_TIMEOUT),
                takeover_delay: zk.takeover_delay.into_option().unwrap_or_default(),
                server_tick: zk.server_tick.into_option().unwrap_or(DEFAULT_SERVER_TICK),
                root: zk
                    .root
                    .into_option()
                    .unwrap_or_else(|| DEFAULT_ROOT.to_owned()),
                auth: zk.auth.into_option(),
                tls: zk.tls.into_option(),
            },
            node: node?,
            metrics: metrics?,
            workers: workers?,
        })
    }

    /// `[[worker]]`, each merged with `[defaults]`; `None` if any has problems (reported).
    fn workers(
        &mut self,
        value: Option<&Value<'_>>,
        defaults: &Fields,
        lease: Option<LeaseSettings>,
    ) -> Option<Vec<WorkerConfig>> {
        let Some(value) = value else {
            return Some(Vec::new());
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type("worker", "[[worker]] entries (an array of tables)", value);
            return None;
        };
        if items.len() > MAX_WORKERS {
            self.problems.at(
                value.span().start,
                format!("{} workers; the limit is {MAX_WORKERS}", items.len()),
            );
            return None;
        }
        let mut first_use: HashMap<String, usize> = HashMap::new();
        let workers: Vec<Option<WorkerConfig>> = items
            .iter()
            .enumerate()
            .map(|(i, item)| self.worker(i + 1, item, defaults, lease, &mut first_use))
            .collect();
        workers.into_iter().collect()
    }

    /// `[metrics]`: `Some(None)` when absent, `None` when invalid.
    fn metrics(&mut self, value: Option<&Value<'_>>) -> Option<Option<MetricsConfig>> {
        let Some(value) = value else {
            return Some(None);
        };
        let table = self.table("metrics", value)?;
        let mut listen = Field::Unset;
        self.keys("metrics", ": ", table, METRICS, &[], &mut listen);
        match listen {
            Field::Set(listen, _) => Some(Some(MetricsConfig { listen })),
            Field::Bad => None,
            Field::Unset => {
                let message = "metrics: `listen` is required".to_owned();
                self.problems.at(value.span().start, message);
                None
            }
        }
    }

    fn zookeeper(&mut self, value: Option<&Value<'_>>) -> ZkFields {
        let mut zk = ZkFields::default();
        let Some(value) = value else {
            self.problems.at(
                0,
                "missing [zookeeper] section; it needs connect = \"host:port,...\"".to_owned(),
            );
            return zk;
        };
        let Some(table) = self.table("zookeeper", value) else {
            return zk;
        };
        self.keys("zookeeper", ": ", table, ZOOKEEPER, &[], &mut zk);
        if table.get("connect").is_none() {
            self.problems.at(
                value.span().start,
                "zookeeper: connect is required, like connect = \"zk1:2181,zk2:2181,zk3:2181\""
                    .to_owned(),
            );
        }
        if let Field::Set(root, at) = &zk.root {
            let chroot = zk.connect.get().and_then(Connect::chroot);
            rules::check_reserved_root(&mut self.problems, chroot, root, *at);
        }
        zk
    }

    /// `[zookeeper] auth = { scheme = "digest", credentials_file = "..." }`. The file itself is read
    /// by [`super::read_credentials`], not here.
    fn auth(&mut self, what: &str, value: &Value<'_>) -> Option<AuthConfig> {
        let table = self.table(what, value)?;
        let mut auth = AuthFields::default();
        self.keys(what, ": ", table, AUTH, &[], &mut auth);
        if table.get("scheme").is_none() || table.get("credentials_file").is_none() {
            self.problems.at(
                value.span().start,
                format!("{what} needs scheme = \"digest\" and credentials_file = \"/path\""),
            );
        }
        Some(AuthConfig {
            scheme: auth.scheme.into_option()?,
            credentials_file: auth.credentials_file.into_option()?,
        })
    }

    /// `[zookeeper] tls = { ca = "...", cert = "...", key = "..." }`: absolute paths; `cert` and `key`
    /// both or neither. The files themselves are read when connecting, not here.
    fn tls(&mut self, what: &str, value: &Value<'_>) -> Option<TlsConfig> {
        let table = self.table(what, value)?;
        let before = self.problems.count();
        let mut tls = TlsFields::default();
        self.keys(what, ": ", table, TLS, &[], &mut tls);
        if table.get("ca").is_none() {
            self.problems.at(
                value.span().start,
                format!(
                    "{what} needs ca = \"/path/ca.pem\" (the CA that signs the servers' certificates)"
                ),
            );
        }
        if table.get("cert").is_some() != table.get("key").is_some() {
            self.problems.at(
                value.span().start,
                format!(
                    "{what}: cert and key go together: give both for client authentication, or neither"
                ),
            );
        }
        if self.problems.count() > before {
            return None;
        }
        Some(TlsConfig {
            ca: tls.ca.into_option()?,
            cert: tls.cert.into_option(),
            key: tls.key.into_option(),
        })
    }

    /// `[node]`; `id` defaults to the host name.
    fn node(&mut self, value: Option<&Value<'_>>) -> Option<NodeConfig> {
        let mut id = Field::Unset;
        if let Some(table) = value.and_then(|v| self.table("node", v)) {
            self.keys("node", ": ", table, NODE, &[], &mut id);
        }
        match id {
            Field::Set(id, _) => return Some(NodeConfig { id }),
            Field::Bad => return None,
            Field::Unset => {}
        }
        let host = nix::unistd::gethostname()
            .map_err(|e| e.to_string())
            .and_then(|h| h.into_string().map_err(|_| "not UTF-8".to_owned()))
            .and_then(|h| check_node_id(&h).map(|()| h));
        match host {
            Ok(id) => Some(NodeConfig { id }),
            Err(why) => {
                self.problems.whole(format!(
                    "node: id is not set and the host name cannot serve: {why}; set [node] id"
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
        for (key, _) in table {
            let name = key.get_ref().as_ref();
            if WORKER_ONLY.contains(&name) {
                self.problems.at(
                    key.span().start,
                    format!(
                        "defaults: `{name}` cannot be set in [defaults]; set it in each [[worker]]"
                    ),
                );
            }
        }
        self.keys("defaults", ": ", table, WORKER, WORKER_ONLY, &mut fields);
        fields
    }

    /// One `[[worker]]`, merged with `[defaults]`; `None` if it has problems (reported).
    ///
    /// `first_use` maps each name seen so far to the offset of its first use.
    fn worker(
        &mut self,
        number: usize,
        value: &Value<'_>,
        defaults: &Fields,
        lease: Option<LeaseSettings>,
        first_use: &mut HashMap<String, usize>,
    ) -> Option<WorkerConfig> {
        let numbered = format!("worker #{number}");
        let table = self.table(&numbered, value)?;
        let header = value.span().start;
        let before = self.problems.count();
        let label = match table.get("name").map(Spanned::get_ref) {
            Some(DeValue::String(s)) if !s.is_empty() => format!("worker {:?}", s.as_ref()),
            _ => numbered,
        };
        let name = self.worker_name(&label, header, table.get("name"), first_use);
        let mut fields = Fields::default();
        self.keys(&label, ": ", table, WORKER, &[], &mut fields);
        if table.get("command").is_none() {
            self.problems
                .at(header, format!("{label}: command is required"));
        }
        let read = ReadWorker {
            label: &label,
            header,
            name,
            fields: &fields,
        };
        let worker = rules::worker(&mut self.problems, &self.exec, read, defaults, lease);
        if self.problems.count() > before {
            return None;
        }
        worker
    }

    /// A worker's `name`: valid, and not the name of an earlier worker.
    fn worker_name(
        &mut self,
        label: &str,
        header: usize,
        value: Option<&Value<'_>>,
        first_use: &mut HashMap<String, usize>,
    ) -> Option<String> {
        let Some(value) = value else {
            self.problems
                .at(header, format!("{label}: name is required"));
            return None;
        };
        let at = value.span().start;
        let name = self.string(&format!("{label}: name"), value)?;
        if let Err(why) = check_name(&name) {
            self.problems.at(at, format!("{label}: name: {why}"));
            return None;
        }
        if let Some(&first) = first_use.get(&name) {
            let line = self.problems.line_of(first);
            self.problems.at(
                at,
                format!("{label}: duplicate name, already used by the worker at line {line}"),
            );
            return None;
        }
        first_use.insert(name.clone(), at);
        Some(name)
    }

    /// Reads every key of `table` with `keys`, and reports the others as unknown. A key is named
    /// `{prefix}{sep}{key}` in messages; `skip` are keys the caller handles itself.
    fn keys<T>(
        &mut self,
        prefix: &str,
        sep: &str,
        table: &DeTable<'_>,
        keys: &[Key<T>],
        skip: &[&str],
        into: &mut T,
    ) {
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            if skip.contains(&name) {
                continue;
            }
            match keys.iter().find(|k| k.name == name) {
                Some(k) => (k.read)(self, into, &format!("{prefix}{sep}{name}"), value),
                None => {
                    let known: Vec<&str> = names(keys).filter(|k| !skip.contains(k)).collect();
                    self.unknown_key(prefix, key, &known);
                }
            }
        }
    }

    /// Reports an unknown key, with a suggestion when one is near, or the section it belongs in.
    fn unknown_key(
        &mut self,
        prefix: &str,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        known: &[&str],
    ) {
        let name = key.get_ref().as_ref();
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}: ")
        };
        let nearest = known
            .iter()
            .map(|k| (strsim::levenshtein(name, k), *k))
            .min()
            .filter(|(d, k)| *d <= (k.len() / 3).clamp(1, 3));
        let belongs = |keys: Vec<&str>| keys.contains(&name) && !known.contains(&name);
        let home = if belongs(names(ZOOKEEPER).collect()) {
            Some("[zookeeper]")
        } else if belongs(names(NODE).collect()) {
            Some("[node]")
        } else if belongs(names(WORKER).filter(|k| !WORKER_ONLY.contains(k)).collect()) {
            Some("[[worker]] or [defaults]")
        } else {
            None
        };
        let hint = match (nearest, home) {
            (Some((_, k)), _) => format!("did you mean `{k}`?"),
            (None, Some(section)) => format!("it belongs in {section}"),
            (None, None) => format!("expected one of: {}", known.join(", ")),
        };
        self.problems.at(
            key.span().start,
            format!("{prefix}unknown key `{name}`; {hint}"),
        );
    }

    fn wrong_type(&mut self, what: &str, expected: &str, value: &Value<'_>) {
        let found = kind(value.get_ref());
        self.problems.at(
            value.span().start,
            format!("{what}: expected {expected}, found {found}"),
        );
    }

    /// `result`, or its error reported as `{what}: {why}` at `value`.
    fn check<T>(&mut self, what: &str, value: &Value<'_>, result: Result<T, String>) -> Option<T> {
        result
            .map_err(|why| {
                self.problems
                    .at(value.span().start, format!("{what}: {why}"))
            })
            .ok()
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
            self.problems
                .at(value.span().start, format!("{what}: must not contain NUL"));
            return None;
        }
        Some(s.to_string())
    }

    fn nonempty_string(&mut self, what: &str, value: &Value<'_>) -> Option<String> {
        let s = self.string(what, value)?;
        if s.is_empty() {
            self.problems
                .at(value.span().start, format!("{what}: must not be empty"));
            return None;
        }
        Some(s)
    }

    /// A file the daemon reads: an absolute path.
    fn file_path(&mut self, what: &str, value: &Value<'_>) -> Option<PathBuf> {
        let s = self.nonempty_string(what, value)?;
        if !s.starts_with('/') {
            self.problems.at(
                value.span().start,
                format!("{what} must be an absolute path"),
            );
            return None;
        }
        Some(PathBuf::from(s))
    }

    /// A worker's directory: an absolute path (the daemon's own directory is `/` under systemd).
    fn directory(&mut self, what: &str, value: &Value<'_>) -> Option<PathBuf> {
        let s = self.nonempty_string(what, value)?;
        if !s.starts_with('/') {
            let message = format!("{what}: must be an absolute path, not {s:?}");
            self.problems.at(value.span().start, message);
            return None;
        }
        Some(PathBuf::from(s))
    }

    fn user_or_group(&mut self, what: &str, value: &Value<'_>) -> Option<String> {
        let s = self.nonempty_string(what, value)?;
        self.check(what, value, check_id(&s).map(|()| s))
    }

    fn signal(&mut self, what: &str, value: &Value<'_>) -> Option<Signal> {
        let s = self.string(what, value)?;
        self.check(what, value, parse_signal(&s))
    }

    /// A duration string within `min..=max`.
    fn duration(
        &mut self,
        what: &str,
        value: &Value<'_>,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let DeValue::String(s) = value.get_ref() else {
            self.wrong_type(what, "a duration string with a unit, like \"5s\"", value);
            return None;
        };
        let d = self.check(what, value, parse_duration(s))?;
        let bound = if d < min {
            format!("{s} is too short, the least is {}", format_duration(min))
        } else if d > max {
            format!("{s} is too long, the most is {}", format_duration(max))
        } else {
            return Some(d);
        };
        self.problems
            .at(value.span().start, format!("{what}: {bound}"));
        None
    }

    /// A TOML integer that fits a `u32`, at least `min`.
    fn integer(&mut self, what: &str, value: &Value<'_>, min: u32) -> Option<u32> {
        let at = value.span().start;
        let DeValue::Integer(i) = value.get_ref() else {
            self.wrong_type(what, "an integer", value);
            return None;
        };
        if i.as_str().starts_with('-') && i.as_str() != "-0" {
            self.problems
                .at(at, format!("{what}: must not be negative"));
            return None;
        }
        let Ok(n) = u32::from_str_radix(i.as_str().trim_start_matches(['+', '-']), i.radix())
        else {
            self.problems
                .at(at, format!("{what}: must be at most {}", u32::MAX));
            return None;
        };
        if n < min {
            self.problems
                .at(at, format!("{what}: must be at least {min}"));
            return None;
        }
        Some(n)
    }

    /// A command line: a non-empty array of strings whose first element is non-empty, each
    /// argument short enough for `execve`.
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
            self.problems.at(
                at,
                format!("{what}: must not be empty; give the program and its arguments"),
            );
            return None;
        }
        let before = self.problems.count();
        let argv: Vec<String> = items
            .iter()
            .filter_map(|item| self.string(what, item))
            .collect();
        if self.problems.count() > before {
            return None;
        }
        let too_large = if argv[0].is_empty() {
            format!("{what}: the program (first element) must not be empty")
        } else if let Some((i, a)) = argv
            .iter()
            .enumerate()
            .find(|(_, a)| a.len() > MAX_ARG_BYTES)
        {
            format!(
                "{what}: argument {} is {} bytes; execve takes at most {MAX_ARG_BYTES} \
                 (the kernel's MAX_ARG_STRLEN, {MAX_ARG_STRLEN} with the terminating NUL)",
                i + 1,
                a.len()
            )
        } else {
            let total: usize = argv.iter().map(|a| a.len() + 1).sum();
            if argv.len() <= MAX_ARGS && total <= MAX_ARGV_BYTES {
                return Some(argv);
            }
            format!(
                "{what}: too large ({} arguments, {total} bytes; the limits are {MAX_ARGS} arguments \
                 and {MAX_ARGV_BYTES} bytes in all)",
                argv.len()
            )
        };
        self.problems.at(at, too_large);
        None
    }

    /// `env = { NAME = "value" }`: names the supervisor does not set, each `NAME=value` short
    /// enough for `execve`.
    fn env(&mut self, what: &str, value: &Value<'_>) -> Option<BTreeMap<String, String>> {
        let table = self.table(what, value)?;
        if table.len() > MAX_ENV_VARS {
            self.problems.at(
                value.span().start,
                format!(
                    "{what}: {} variables; the limit is {MAX_ENV_VARS}",
                    table.len()
                ),
            );
            return None;
        }
        let before = self.problems.count();
        let mut env = BTreeMap::new();
        for (key, v) in table {
            let name = key.get_ref().as_ref();
            if let Err(why) = check_env_name(name) {
                self.problems.at(key.span().start, format!("{what}: {why}"));
            }
            let Some(s) = self.string(&format!("{what}.{name}"), v) else {
                continue;
            };
            let string = name.len() + 1 + s.len();
            if string > MAX_ARG_BYTES {
                let shown: String = name.chars().take(64).collect();
                self.problems.at(
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
        (self.problems.count() == before).then_some(env)
    }

    fn health(&mut self, what: &str, value: &Value<'_>) -> Option<HealthFields> {
        let table = self.table(what, value)?;
        let mut h = HealthFields::default();
        self.keys(what, ".", table, HEALTH_CHECK, &[], &mut h);
        Some(h)
    }
}

fn names<T>(keys: &[Key<T>]) -> impl Iterator<Item = &'static str> + '_ {
    keys.iter().map(|k| k.name)
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

/// `root`: an absolute ZooKeeper path other than `/`.
fn check_root(root: &str) -> Result<(), String> {
    if root == "/" {
        return Err("must not be \"/\"; use a path of its own, like \"/workers\"".to_owned());
    }
    check_zk_path(root).map_err(|why| format!("{root:?}: {why}"))
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

/// A name for `env`: not empty, no `=` or NUL, and none of the supervisor's own (the fencing token
/// among them must not be overridden).
fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("an empty variable name".to_owned())
    } else if name.contains(['=', '\0']) {
        Err(format!(
            "variable name {name:?} must not contain \"=\" or NUL"
        ))
    } else if name.starts_with("ZK_SUPERVISE_") {
        Err(format!(
            "{name} is set by the supervisor and cannot be overridden"
        ))
    } else {
        Ok(())
    }
}
