//! The integration-test rig: real ZooKeeper servers, the real `zk-supervise` binary, real child processes.
//!
//! Every test file does `mod common;` and uses the part it needs:
//!
//! - [`ZkServer`] (one standalone server) and [`ZkEnsemble`] (a quorum on loopback whose members can be killed
//!   and restarted); [`shared_server`] is one standalone server per test binary, for tests that never kill it and
//!   keep to their own [`unique_root`].
//! - [`Witness`]: the worker command that tests hand to the daemon. Each running worker holds a TCP connection
//!   to the witness for exactly as long as it lives (the kernel closes it however the process dies), so the
//!   witness sees which node runs a worker, with which fencing token, and when it started and stopped.
//! - [`Proxy`]: a TCP forwarder in front of ZooKeeper that can [`Proxy::partition`] one supervisor away, cut one
//!   direction only ([`Proxy::cut`]) or hold every chunk for a while ([`Proxy::slow`]).
//! - [`history`]: an exact recorder of worker lives and the checker over a whole fault run (tests/nemesis.rs).
//! - [`Supervisor`]: the real binary with a config written to a temp dir and its log captured.
//! - [`zk_client`], [`candidates`]: read the elections as ZooKeeper stores them.
//! - [`wait_until`]: every wait has a condition, a deadline, and says what it waited for.
//!
//! Nothing leaks when a test process dies without running destructors (a panic in a static initializer, a
//! SIGKILL, `process::exit`): every JVM and supervisor is registered with one watchdog shell per test process
//! that SIGKILLs them and removes the temp dirs when the pipe from the test process closes. Worker processes
//! started through a [`Witness`] command exit by themselves when the witness goes away.
#![allow(dead_code)]

pub mod history;
pub mod quorum;

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How often polling waits look again.
const POLL: Duration = Duration::from_millis(10);

/// How long a ZooKeeper server (or a whole ensemble) gets to start serving.
const ZK_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_zk-supervise");

// ---------------------------------------------------------------------------------------------------------------
// Waiting

/// Polls `cond` until it holds; panics after `timeout` naming `what` was awaited.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    if !poll_until(timeout, &mut cond) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Like [`wait_until`] for conditions that talk to ZooKeeper. Each evaluation is bounded by what is left of
/// `timeout`, so a request that hangs (a partition) fails the wait instead of hanging the test.
pub async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, cond()).await {
            Ok(true) => return,
            Ok(false) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            _ => panic!("timed out after {timeout:?} waiting for {what}"),
        }
    }
}

/// Polls `cond` until it holds (true) or `timeout` passes (false).
pub fn poll_until(timeout: Duration, cond: &mut dyn FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Randomness, names, ports, temp dirs, the watchdog

/// A random number, without a dependency: std's hasher keys are seeded from the OS.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// A ZooKeeper path of its own for one test on a shared server: `/t-<name>-<random>`.
pub fn unique_root(name: &str) -> String {
    format!("/t-{name}-{:08x}", random_u64() as u32)
}

/// `n` distinct free TCP ports on 127.0.0.1: bind port 0, read it, release. All `n` listeners are held until
/// every port is chosen, and a port is never handed out twice in one test process. Another process can still
/// take a port before the server binds it; server starts detect that ("Address already in use") and retry with
/// fresh ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = lock(&HANDED_OUT);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        listeners.push(listener);
    }
    ports
}

/// Locks a mutex, ignoring poisoning: a panicking test must not take the rig down for the others.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// State shared by everything in one test process: the temp root and the watchdog.
struct Rig {
    /// `$TMPDIR/zk-supervise-tests-<pid>-<random>`; every [`TempDir`] lives inside.
    root: PathBuf,
    /// The watchdog's stdin. Lines `add <pid>` and `del <pid>` maintain the set of processes to kill; when this
    /// pipe closes (the test process exited, however) the watchdog SIGKILLs the set and removes `root`.
    watchdog: Mutex<ChildStdin>,
}

/// The watchdog: only shell builtins, and deaf to the terminal's Ctrl-C so it outlives the test process.
const WATCHDOG: &str = r#"trap '' INT TERM HUP
pids=
while read -r op pid; do
  case $op in
    add) pids="$pids $pid" ;;
    del) keep=; for p in $pids; do [ "$p" = "$pid" ] || keep="$keep $p"; done; pids=$keep ;;
  esac
done
[ -z "$pids" ] || kill -9 $pids 2>/dev/null
sleep 1
rm -rf -- "$1"
"#;

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let root = std::env::temp_dir().join(format!(
            "zk-supervise-tests-{}-{:08x}",
            std::process::id(),
            random_u64() as u32
        ));
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
        let mut child = Command::new("sh")
            .args(["-c", WATCHDOG, "sh"])
            .arg(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the watchdog shell: {e}"));
        let stdin = child.stdin.take().expect("watchdog stdin");
        // The watchdog is never waited for: it must outlive this process.
        std::mem::forget(child);
        Rig {
            root,
            watchdog: Mutex::new(stdin),
        }
    })
}

fn watchdog_line(line: &str) {
    let mut stdin = lock(&rig().watchdog);
    writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("tell the watchdog {line:?}: {e}"));
}

/// A directory under the rig's temp root, removed on drop (and by the watchdog if the process dies).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = rig().root.join(format!("{label}-{n}"));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A child process registered with the watchdog. Dropping it SIGKILLs and reaps it.
///
/// It is never reaped while registered (a reaped pid can be reused, and the watchdog would kill a stranger):
/// exit is observed with `waitid(WNOWAIT)`, and only then is it unregistered and reaped.
struct Guarded {
    child: Child,
    status: Option<ExitStatus>,
}

impl Guarded {
    fn spawn(command: &mut Command, what: &str) -> Guarded {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        watchdog_line(&format!("add {}", child.id()));
        Guarded {
            child,
            status: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (or was reaped), without reaping it.
    fn has_exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let pid = Pid::from_raw(self.pid() as i32);
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) => false,
            Ok(_) => true,
            Err(e) => panic!("waitid({pid}): {e}"),
        }
    }

    /// Reaps an exited process (blocks if it has not exited).
    fn reap(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        watchdog_line(&format!("del {}", self.pid()));
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait for pid {}: {e}", self.pid()));
        self.status = Some(status);
        status
    }

    /// SIGKILL and reap.
    fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        watchdog_line(&format!("del {}", self.pid()));
        let _ = self.child.kill();
        self.reap()
    }

    fn signal(&self, signal: Signal) {
        assert!(
            self.status.is_none(),
            "signal {signal:?} to pid {}: it has already exited",
            self.pid()
        );
        kill(Pid::from_raw(self.pid() as i32), signal)
            .unwrap_or_else(|e| panic!("kill({}, {signal:?}): {e}", self.pid()));
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------------
// ZooKeeper servers

/// The classpath of the ZooKeeper server; panics with what to do when it is not installed.
fn zk_classpath() -> String {
    if let Some(classpath) = std::env::var("ZOOKEEPER_CLASSPATH")
        .ok()
        .filter(|c| !c.is_empty())
    {
        let missing: Vec<&str> = classpath
            .split(':')
            .filter(|entry| !entry.contains('*') && !Path::new(entry).exists())
            .collect();
        assert!(
            missing.is_empty(),
            "ZOOKEEPER_CLASSPATH names missing files: {missing:?}. Point it at an existing ZooKeeper 3.8 \
             installation, or unset it and run scripts/install-zookeeper.sh (or `apt-get install zookeeper`)"
        );
        return classpath;
    }
    let jar = "/usr/share/java/zookeeper.jar";
    assert!(
        Path::new(jar).exists(),
        "ZooKeeper is not installed: {jar} is missing. The integration tests run a real ZooKeeper server: \
         run scripts/install-zookeeper.sh (or `apt-get install zookeeper`), or set ZOOKEEPER_CLASSPATH to the \
         classpath of a ZooKeeper 3.8 server"
    );
    let mut classpath = format!("/etc/zookeeper/conf:{jar}");
    // Debian's ZooKeeper logs nothing without an SLF4J binding; this one (from libslf4j-java, a dependency of
    // the package) writes the server's log to stderr, which goes to the server's log file.
    let simple = "/usr/share/java/slf4j-simple.jar";
    if Path::new(simple).exists() {
        classpath.push(':');
        classpath.push_str(simple);
    }
    classpath
}

/// Sends a four-letter word to a ZooKeeper server and returns its answer.
///
/// # Errors
/// Connection or I/O errors (the server is down or not listening yet).
pub fn four_letter_at(addr: &str, word: &str) -> io::Result<String> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(word.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Why a server did not come up.
enum StartError {
    /// A port chosen by [`free_ports`] was taken before the server bound it: try again with other ports.
    AddrInUse,
    Failed(String),
}

/// The Netty connection factory: the one that serves TLS.
const NETTY: &str = "org.apache.zookeeper.server.NettyServerCnxnFactory";

/// One ZooKeeper server process and its files.
struct ZkNode {
    /// "zk" or "zk2" (myid 2): names it in messages.
    name: String,
    dir: PathBuf,
    client_port: u16,
    /// The TLS client port (`secureClientPort`), if the server has one.
    secure_port: Option<u16>,
    process: Option<Guarded>,
}

impl ZkNode {
    /// Writes the config (and myid) into `dir`, replacing any earlier attempt's files. `tls` is a TLS client port
    /// and the `ssl.*` lines of zoo.cfg that configure it.
    fn new(
        name: String,
        dir: PathBuf,
        client_port: u16,
        myid: Option<usize>,
        servers: &str,
        tls: Option<(u16, &str)>,
    ) -> ZkNode {
        let _ = fs::remove_dir_all(&dir);
        let data = dir.join("data");
        fs::create_dir_all(&data).unwrap_or_else(|e| panic!("create {}: {e}", data.display()));
        if let Some(myid) = myid {
            fs::write(data.join("myid"), format!("{myid}\n")).expect("write myid");
        }
        // tickTime 200 ms makes the server accept session timeouts from 2 to 20 ticks, stated explicitly.
        let mut config = format!(
            "tickTime=200\n\
             minSessionTimeout=400\n\
             maxSessionTimeout=4000\n\
             initLimit=10\n\
             syncLimit=5\n\
             dataDir={}\n\
             clientPort={client_port}\n\
             clientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n\
             4lw.commands.whitelist=*\n\
             {servers}",
            data.display()
        );
        if let Some((port, ssl)) = tls {
            let _ = write!(
                config,
                "secureClientPort={port}\n\
                 secureClientPortAddress=127.0.0.1\n\
                 serverCnxnFactory={NETTY}\n\
                 {ssl}"
            );
        }
        fs::write(dir.join("zoo.cfg"), config).expect("write zoo.cfg");
        ZkNode {
            name,
            dir,
            client_port,
            secure_port: tls.map(|(port, _)| port),
            process: None,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    fn spawn(&mut self) {
        assert!(self.process.is_none(), "{} is already running", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the server log");
        let mut classpath = zk_classpath();
        let mut netty = None;
        if self.secure_port.is_some() {
            // TLS needs netty's codec, which the manifest of Debian's zookeeper.jar does not name.
            let codec = "/usr/share/java/netty-codec.jar";
            if Path::new(codec).exists() {
                classpath.push(':');
                classpath.push_str(codec);
            }
            netty = Some(format!("-Dzookeeper.serverCnxnFactory={NETTY}"));
        }
        let mut command = Command::new("java");
        command
            .args([
                "-Xmx128m",
                "-XX:+UseSerialGC",
                // C1 only: starts faster and spends less CPU on the 2 cores the tests share.
                "-XX:TieredStopAtLevel=1",
                "-Djava.net.preferIPv4Stack=true",
                // Tests do not survive power loss: skip fsync and the 64 MB log preallocation.
                "-Dzookeeper.forceSync=no",
                "-Dzookeeper.preAllocSize=1024",
                // A member killed right after joining may have logs but no snapshot yet; let it restart.
                "-Dzookeeper.snapshot.trust.empty=true",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
                "-cp",
                &classpath,
            ])
            .args(netty)
            // Extra JVM options, after the defaults so they win (benchmarks use full JIT compilation).
            .args(
                std::env::var("ZK_JAVA_OPTS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(self.dir.join("zoo.cfg"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log);
        self.process = Some(Guarded::spawn(
            &mut command,
            "java (ZooKeeper; install a JRE, e.g. with scripts/install-zookeeper.sh)",
        ));
    }

    fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(|p| !p.has_exited())
    }

    /// The server's mode from `srvr` ("standalone", "leader", "follower"), if it is serving.
    fn mode(&self) -> Option<String> {
        let srvr = four_letter_at(&self.addr(), "srvr").ok()?;
        srvr.lines()
            .find_map(|line| line.strip_prefix("Mode: "))
            .map(|mode| mode.trim().to_owned())
    }

    /// Waits until the server answers `ruok` with `imok` and `srvr` reports one of `modes`.
    fn wait_serving(&self, modes: &[&str], deadline: Instant) -> Result<(), StartError> {
        loop {
            let process = self.process.as_ref().expect("the server was started");
            if process.has_exited() {
                let log = self.log();
                if log.contains("Address already in use") {
                    return Err(StartError::AddrInUse);
                }
                return Err(StartError::Failed(format!(
                    "ZooKeeper server {} (pid {}) exited while starting",
                    self.name,
                    process.pid()
                )));
            }
            let imok = four_letter_at(&self.addr(), "ruok").is_ok_and(|answer| answer == "imok");
            let secure = self
                .secure_port
                .is_none_or(|port| TcpStream::connect(("127.0.0.1", port)).is_ok());
            if imok
                && secure
                && self
                    .mode()
                    .is_some_and(|mode| modes.contains(&mode.as_str()))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let srvr = four_letter_at(&self.addr(), "srvr").unwrap_or_else(|e| e.to_string());
                return Err(StartError::Failed(format!(
                    "ZooKeeper server {} on {} did not serve as {} within {ZK_START_TIMEOUT:?}; srvr: {}",
                    self.name,
                    self.addr(),
                    modes.join("|"),
                    srvr.trim()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn failure(&self, why: &str) -> String {
        format!(
            "{why}\n----- last lines of {} -----\n{}",
            self.log_path().display(),
            tail(&self.log(), 80)
        )
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}

/// A standalone ZooKeeper server on 127.0.0.1, in a temp dir of its own. Dropping it kills it.
pub struct ZkServer {
    node: ZkNode,
    dir: TempDir,
}

impl ZkServer {
    /// Starts a server and waits (up to 30 s) until it serves.
    pub fn standalone() -> ZkServer {
        ZkServer::start(None)
    }

    /// Like [`ZkServer::standalone`], with a TLS client port as well (served by Netty), which
    /// [`ZkServer::secure_connect_string`] names: `ssl` is the `ssl.*` lines of its zoo.cfg (key and trust
    /// stores, client authentication). The plaintext port stays, for the readiness check and four-letter words.
    pub fn standalone_tls(ssl: &str) -> ZkServer {
        ZkServer::start(Some(ssl))
    }

    fn start(ssl: Option<&str>) -> ZkServer {
        let dir = TempDir::new("zk");
        for attempt in 1..=3 {
            let ports = free_ports(1 + usize::from(ssl.is_some()));
            let tls = ssl.map(|ssl| (ports[1], ssl));
            let mut node = ZkNode::new("zk".into(), dir.path().to_owned(), ports[0], None, "", tls);
            node.spawn();
            match node.wait_serving(&["standalone"], Instant::now() + ZK_START_TIMEOUT) {
                Ok(()) => return ZkServer { node, dir },
                Err(StartError::AddrInUse) if attempt < 3 => node.kill(),
                Err(StartError::AddrInUse) => panic!("{}", node.failure("port taken three times")),
                Err(StartError::Failed(why)) => panic!("{}", node.failure(&why)),
            }
        }
        unreachable!()
    }

    /// "127.0.0.1:<port>".
    pub fn connect_string(&self) -> String {
        self.node.addr()
    }

    pub fn port(&self) -> u16 {
        self.node.client_port
    }

    /// "127.0.0.1:<port>" of the TLS client port of a server from [`ZkServer::standalone_tls`].
    pub fn secure_connect_string(&self) -> String {
        let port = self
            .node
            .secure_port
            .expect("a server started by ZkServer::standalone_tls");
        format!("127.0.0.1:{port}")
    }

    /// The answer to a four-letter word (`ruok`, `srvr`, `cons`, `dump`, ...); panics if the server does not
    /// answer.
    pub fn four_letter(&self, word: &str) -> String {
        four_letter_at(&self.node.addr(), word)
            .unwrap_or_else(|e| panic!("{word} to {}: {e}", self.node.addr()))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.node.log()
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "{}",
                self.node
                    .failure("the test failed; the ZooKeeper server's log:")
            );
        }
        self.node.kill();
    }
}

/// One standalone server per test process, for tests that do not kill or partition it. Each test keeps to its
/// own [`unique_root`]. It is never dropped; the watchdog kills it when the process exits.
pub fn shared_server() -> &'static ZkServer {
    static SHARED: OnceLock<ZkServer> = OnceLock::new();
    SHARED.get_or_init(ZkServer::standalone)
}

/// A ZooKeeper ensemble on loopback; each member has its own data dir and `myid`. Indexes are 0-based (member
/// `i` has myid `i + 1`). Dropping it kills every member.
pub struct ZkEnsemble {
    nodes: Vec<ZkNode>,
    dir: TempDir,
}

impl ZkEnsemble {
    /// Starts `n` servers and waits (up to 30 s) until each serves as leader or follower.
    pub fn start(n: usize) -> ZkEnsemble {
        assert!(
            n >= 2,
            "an ensemble needs at least 2 servers; use ZkServer::standalone"
        );
        let dir = TempDir::new("ensemble");
        for attempt in 1..=3 {
            let ports = free_ports(3 * n);
            let servers: String = (0..n)
                .map(|i| {
                    format!(
                        "server.{}=127.0.0.1:{}:{}\n",
                        i + 1,
                        ports[3 * i + 1],
                        ports[3 * i + 2]
                    )
                })
                .collect();
            let mut nodes: Vec<ZkNode> = (0..n)
                .map(|i| {
                    let name = format!("zk{}", i + 1);
                    let node_dir = dir.path().join(&name);
                    ZkNode::new(name, node_dir, ports[3 * i], Some(i + 1), &servers, None)
                })
                .collect();
            for node in &mut nodes {
                node.spawn();
            }
            let deadline = Instant::now() + ZK_START_TIMEOUT;
            let failure = nodes.iter().find_map(|node| {
                node.wait_serving(&["leader", "follower"], deadline)
                    .err()
                    .map(|error| (node.name.clone(), error))
            });
            match failure {
                None => return ZkEnsemble { nodes, dir },
                Some((_, StartError::AddrInUse)) if attempt < 3 => {
                    for node in &mut nodes {
                        node.kill();
                    }
                }
                Some((name, error)) => {
                    let why = match error {
                        StartError::AddrInUse => "ports taken three times".to_owned(),
                        StartError::Failed(why) => why,
                    };
                    let logs = logs(&nodes, &name);
                    for node in &mut nodes {
                        node.kill();
                    }
                    panic!("{why}\n{logs}");
                }
            }
        }
        unreachable!()
    }

    /// The ensemble's connect string: "127.0.0.1:a,127.0.0.1:b,127.0.0.1:c".
    pub fn connect_string(&self) -> String {
        self.nodes
            .iter()
            .map(ZkNode::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One member's connect string, "127.0.0.1:<port>".
    pub fn connect_string_of(&self, i: usize) -> String {
        self.nodes[i].addr()
    }

    /// Member `i`'s client port.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].client_port
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// SIGKILLs member `i` (and reaps it); its data stays for [`ZkEnsemble::restart`].
    pub fn kill(&mut self, i: usize) {
        assert!(
            self.nodes[i].process.is_some(),
            "{} is not running",
            self.nodes[i].name
        );
        self.nodes[i].kill();
    }

    /// Starts member `i` again with the same data and ports; waits until it serves as leader or follower.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].spawn();
        let deadline = Instant::now() + ZK_START_TIMEOUT;
        if let Err(error) = self.nodes[i].wait_serving(&["leader", "follower"], deadline) {
            let why = match error {
                StartError::AddrInUse => "its ports are taken".to_owned(),
                StartError::Failed(why) => why,
            };
            panic!(
                "restart {}: {why}\n{}",
                self.nodes[i].name,
                logs(&self.nodes, "")
            );
        }
    }

    /// Starts every stopped member again at once (a quorum needs more than one), and waits until every member
    /// serves as leader or follower.
    pub fn restart_all(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| n.process.is_none()) {
            node.spawn();
        }
        let deadline = Instant::now() + ZK_START_TIMEOUT;
        let failure = self.nodes.iter().find_map(|node| {
            node.wait_serving(&["leader", "follower"], deadline)
                .err()
                .map(|e| (node.name.clone(), e))
        });
        if let Some((name, error)) = failure {
            let why = match error {
                StartError::AddrInUse => "its ports are taken".to_owned(),
                StartError::Failed(why) => why,
            };
            panic!("restart {name}: {why}\n{}", logs(&self.nodes, &name));
        }
    }

    /// The index of the current leader among the running members; waits (up to 30 s) for one to be elected.
    pub fn leader_index(&self) -> usize {
        let mut leader = None;
        let found = poll_until(ZK_START_TIMEOUT, &mut || {
            leader = (0..self.nodes.len()).find(|&i| {
                self.nodes[i].process.is_some() && self.nodes[i].mode().as_deref() == Some("leader")
            });
            leader.is_some()
        });
        assert!(
            found,
            "no member of the ensemble became leader within {ZK_START_TIMEOUT:?}\n{}",
            logs(&self.nodes, "")
        );
        leader.expect("found")
    }

    /// Member `i`'s answer to a four-letter word; panics if it does not answer.
    pub fn four_letter(&self, i: usize, word: &str) -> String {
        four_letter_at(&self.nodes[i].addr(), word)
            .unwrap_or_else(|e| panic!("{word} to {}: {e}", self.nodes[i].addr()))
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].log()
    }
}

/// The tails of the members' logs, the named one first.
fn logs(nodes: &[ZkNode], first: &str) -> String {
    let mut out = String::new();
    let order = nodes
        .iter()
        .filter(|n| n.name == first)
        .chain(nodes.iter().filter(|n| n.name != first));
    for node in order {
        let _ = writeln!(out, "{}", node.failure(&format!("== {} ==", node.name)));
    }
    out
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "the test failed; the ensemble's logs:\n{}",
                logs(&self.nodes, "")
            );
        }
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Witness

/// One worker process as the witness saw it: from its connection to the close of that connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Order of arrival at the witness, from 0.
    pub id: usize,
    /// `$ZK_SUPERVISE_WORKER`.
    pub worker: String,
    /// `$ZK_SUPERVISE_NODE`.
    pub node: String,
    /// `$ZK_SUPERVISE_FENCING_TOKEN`, as given; see [`Conn::token`].
    pub token: String,
    /// `$ZK_SUPERVISE_ZNODE`.
    pub znode: String,
    /// The worker's pid (the shell's `$$`).
    pub pid: u32,
    /// When the witness accepted the connection.
    pub opened: Instant,
    /// When the witness read end-of-file or an error: no process holds the connection any more.
    pub closed: Option<Instant>,
}

impl Conn {
    /// The fencing token as a number; panics if the worker was not given one.
    pub fn token(&self) -> u64 {
        self.token.parse().unwrap_or_else(|_| {
            panic!(
                "worker {} on {} got ZK_SUPERVISE_FENCING_TOKEN={:?}, not a number",
                self.worker, self.node, self.token
            )
        })
    }

    pub fn is_live(&self) -> bool {
        self.closed.is_none()
    }
}

/// How long after `prev` closed `next` opened; panics if they overlapped.
pub fn gap(prev: &Conn, next: &Conn) -> Duration {
    let closed = prev.closed.unwrap_or_else(|| {
        panic!(
            "#{} ({} on {}) is still live",
            prev.id, prev.worker, prev.node
        )
    });
    next.opened
        .checked_duration_since(closed)
        .unwrap_or_else(|| {
            panic!(
                "#{} ({} on {}) opened {:?} before #{} ({} on {}) closed",
                next.id,
                next.worker,
                next.node,
                closed - next.opened,
                prev.id,
                prev.worker,
                prev.node
            )
        })
}

struct WitnessShared {
    conns: Mutex<Vec<Conn>>,
    /// Every accepted stream, to close them all when the witness goes away.
    streams: Mutex<Vec<TcpStream>>,
    closing: AtomicBool,
}

/// A TCP listener that the worker commands of a test connect to. See the module docs.
pub struct Witness {
    addr: SocketAddr,
    started: Instant,
    shared: Arc<WitnessShared>,
}

impl Witness {
    pub fn new() -> Witness {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the witness");
        let addr = listener.local_addr().expect("witness address");
        let shared = Arc::new(WitnessShared {
            conns: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        thread::Builder::new()
            .name("witness".into())
            .spawn(move || Witness::accept(&listener, &accepting))
            .expect("spawn the witness thread");
        Witness {
            addr,
            started: Instant::now(),
            shared,
        }
    }

    fn accept(listener: &TcpListener, shared: &Arc<WitnessShared>) {
        let next_id = AtomicUsize::new(0);
        for stream in listener.incoming() {
            let opened = Instant::now();
            if shared.closing.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            if let Ok(clone) = stream.try_clone() {
                lock(&shared.streams).push(clone);
            }
            let id = next_id.fetch_add(1, Ordering::SeqCst);
            let shared = shared.clone();
            thread::spawn(move || Witness::follow(id, opened, stream, &shared));
        }
    }

    /// Reads the worker's line, then waits for the connection to close.
    fn follow(id: usize, opened: Instant, stream: TcpStream, shared: &WitnessShared) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || !line.ends_with('\n') {
            return; // not a worker
        }
        let mut fields = line.trim_end_matches('\n').splitn(5, ' ');
        let mut field = || fields.next().unwrap_or_default().to_owned();
        let (worker, node, token, pid, znode) = (field(), field(), field(), field(), field());
        lock(&shared.conns).push(Conn {
            id,
            worker,
            node,
            token,
            znode,
            pid: pid.parse().unwrap_or(0),
            opened,
            closed: None,
        });
        let mut buf = [0u8; 256];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
        let closed = Instant::now();
        if let Some(conn) = lock(&shared.conns).iter_mut().find(|c| c.id == id) {
            conn.closed = Some(closed);
        }
    }

    /// The worker argv: connects to the witness, reports who it is, and holds the connection until it dies or
    /// the witness goes away.
    pub fn command(&self) -> Vec<String> {
        self.command_with("")
    }

    /// Like [`Witness::command`], with `shell` run (by bash) after reporting and before waiting. Examples:
    /// `trap '' TERM` (the worker ignores SIGTERM), `exit 3` (it fails right after starting),
    /// `sleep infinity &` (a grandchild that also holds the connection, so the connection closes only when the
    /// whole process group is gone; prefer `read -r _ <&3 &`, which also exits when the witness goes away).
    pub fn command_with(&self, shell: &str) -> Vec<String> {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} || exit 111\n\
             printf '%s %s %s %s %s\\n' \"$ZK_SUPERVISE_WORKER\" \"$ZK_SUPERVISE_NODE\" \
             \"$ZK_SUPERVISE_FENCING_TOKEN\" \"$$\" \"$ZK_SUPERVISE_ZNODE\" >&3\n\
             {shell}\n\
             read -r _ <&3\n",
            port = self.addr.port()
        );
        vec!["/bin/bash".into(), "-c".into(), script]
    }

    /// The witness's port on 127.0.0.1, for worker commands of one's own (see bench/witness_client.c).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every connection so far, in order of arrival.
    pub fn all(&self) -> Vec<Conn> {
        let mut conns = lock(&self.shared.conns).clone();
        conns.sort_by_key(|c| c.opened);
        conns
    }

    /// Every connection of `worker` so far, in order of arrival.
    pub fn history(&self, worker: &str) -> Vec<Conn> {
        self.all()
            .into_iter()
            .filter(|c| c.worker == worker)
            .collect()
    }

    /// `conn` as the witness knows it now: with the time it closed, once it has.
    pub fn again(&self, conn: &Conn) -> Conn {
        lock(&self.shared.conns)
            .iter()
            .find(|c| c.id == conn.id)
            .cloned()
            .unwrap_or_else(|| panic!("connection #{} is not the witness's", conn.id))
    }

    /// The connections of `worker` that are open now.
    pub fn live(&self, worker: &str) -> Vec<Conn> {
        self.history(worker)
            .into_iter()
            .filter(Conn::is_live)
            .collect()
    }

    /// Waits until `worker` runs (on `node`, if given) and returns that connection.
    pub fn wait_live(&self, worker: &str, node: Option<&str>, timeout: Duration) -> Conn {
        let mut found = None;
        let ok = poll_until(timeout, &mut || {
            found = self
                .live(worker)
                .into_iter()
                .find(|c| node.is_none_or(|node| c.node == node));
            found.is_some()
        });
        assert!(
            ok,
            "timed out after {timeout:?} waiting for worker {worker} to run{}\n{}",
            node.map(|n| format!(" on {n}")).unwrap_or_default(),
            self.timeline(worker)
        );
        found.expect("found")
    }

    /// Waits until no process of `worker` holds a connection.
    pub fn wait_none_live(&self, worker: &str, timeout: Duration) {
        let ok = poll_until(timeout, &mut || self.live(worker).is_empty());
        assert!(
            ok,
            "timed out after {timeout:?} waiting for worker {worker} to stop\n{}",
            self.timeline(worker)
        );
    }

    /// Waits until `worker` has connected at least `n` times; returns its history.
    pub fn wait_count(&self, worker: &str, n: usize, timeout: Duration) -> Vec<Conn> {
        let ok = poll_until(timeout, &mut || self.history(worker).len() >= n);
        assert!(
            ok,
            "timed out after {timeout:?} waiting for worker {worker} to have started {n} times\n{}",
            self.timeline(worker)
        );
        self.history(worker)
    }

    /// Panics (printing the timeline) if two processes of `worker` were ever alive at the same time.
    pub fn assert_no_overlap(&self, worker: &str) {
        let history = self.history(worker);
        // The latest close among the earlier connections; None while one of them is still live.
        let mut latest_close = Some(self.started);
        let mut latest_id = None;
        for conn in &history {
            match latest_close {
                Some(closed) if closed <= conn.opened => {}
                _ => panic!(
                    "worker {worker} ran twice at once: #{} opened while #{} was alive\n{}",
                    conn.id,
                    latest_id.unwrap_or_default(),
                    self.timeline(worker)
                ),
            }
            if conn
                .closed
                .is_none_or(|c| latest_close.is_some_and(|l| c > l))
            {
                latest_close = conn.closed;
                latest_id = Some(conn.id);
            }
        }
    }

    /// `worker`'s connections, one a line, with times relative to the witness's start.
    pub fn timeline(&self, worker: &str) -> String {
        let at = |t: Instant| format!("+{:.3}s", t.duration_since(self.started).as_secs_f64());
        let mut out = format!("timeline of worker {worker}:\n");
        for c in self.history(worker) {
            let _ = writeln!(
                out,
                "  #{} node={} token={} pid={} znode={} open {} close {}",
                c.id,
                c.node,
                c.token,
                c.pid,
                c.znode,
                at(c.opened),
                c.closed.map_or_else(|| "(live)".to_owned(), at)
            );
        }
        out
    }
}

impl Default for Witness {
    fn default() -> Witness {
        Witness::new()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        // Workers still running read end-of-file and exit.
        for stream in lock(&self.shared.streams).iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so it sees `closing` and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Proxy

/// One direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: the connect request, requests, pings. Cut, the server hears nothing from the client.
    ToServer,
    /// Server to client: replies and watch events. Cut, the server still hears the client (and keeps its
    /// session alive) while the client hears nothing back.
    ToClient,
}

/// A chunk on its way: no earlier than this, these bytes.
type Chunk = (Instant, Vec<u8>);

struct ProxyConn {
    client: TcpStream,
    upstream: Option<TcpStream>,
    /// Lived through a cut (bytes were, or may have been, dropped): its streams are garbage, heal closes it.
    tainted: AtomicBool,
    /// Replies from the server are no longer forwarded (a request's reply is being lost).
    mute: AtomicBool,
    done: AtomicBool,
}

impl ProxyConn {
    fn close(&self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(upstream) = &self.upstream {
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

struct ProxyShared {
    upstream: SocketAddr,
    /// Guards changes of the cuts together with the connection list.
    conns: Mutex<Vec<Arc<ProxyConn>>>,
    /// Bytes from the client to the server are discarded.
    cut_to_server: AtomicBool,
    /// Bytes from the server to the client are discarded.
    cut_to_client: AtomicBool,
    /// Each chunk is held a random time in `[delay_min_ms, delay_max_ms]` before it is forwarded (in order);
    /// both 0: forwarded at once.
    delay_min_ms: AtomicU64,
    delay_max_ms: AtomicU64,
    /// Armed by [`Proxy::lose_next_candidate_create_reply`].
    cut_on_create: AtomicBool,
    closing: AtomicBool,
}

impl ProxyShared {
    fn is_cut(&self, direction: Direction) -> bool {
        match direction {
            Direction::ToServer => self.cut_to_server.load(Ordering::SeqCst),
            Direction::ToClient => self.cut_to_client.load(Ordering::SeqCst),
        }
    }

    fn any_cut(&self) -> bool {
        self.is_cut(Direction::ToServer) || self.is_cut(Direction::ToClient)
    }

    /// How long to hold the chunk read now.
    fn hold(&self) -> Duration {
        let min = self.delay_min_ms.load(Ordering::SeqCst);
        let max = self.delay_max_ms.load(Ordering::SeqCst).max(min);
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(min + random_u64() % (max - min + 1))
    }

    /// When a chunk read now in a direction whose last chunk was due at `last` is due: after its hold, and
    /// never before the chunk ahead of it.
    fn due(&self, last: &mut Instant) -> Instant {
        let due = (Instant::now() + self.hold()).max(*last);
        *last = due;
        due
    }
}

/// A TCP forwarder from 127.0.0.1:<port> to one ZooKeeper server. It can black-hole all traffic
/// ([`Proxy::partition`]), one direction only ([`Proxy::cut`]), or hold every chunk for a while before
/// forwarding it ([`Proxy::slow`]); [`Proxy::heal`] ends all of these.
///
/// Each direction of each connection has a reader thread and a writer thread: the reader decides what is dropped
/// and when each chunk is due, the writer forwards chunks in order once due (at once unless the link is slow).
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
}

impl Proxy {
    /// A proxy to `upstream` ("127.0.0.1:<port>").
    pub fn new(upstream: &str) -> Proxy {
        let upstream: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|e| panic!("proxy upstream {upstream:?}: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(ProxyShared {
            upstream,
            conns: Mutex::new(Vec::new()),
            cut_to_server: AtomicBool::new(false),
            cut_to_client: AtomicBool::new(false),
            delay_min_ms: AtomicU64::new(0),
            delay_max_ms: AtomicU64::new(0),
            cut_on_create: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        thread::Builder::new()
            .name("proxy".into())
            .spawn(move || Proxy::accept(&listener, &accepting))
            .expect("spawn the proxy thread");
        Proxy { addr, shared }
    }

    fn accept(listener: &TcpListener, shared: &Arc<ProxyShared>) {
        for client in listener.incoming() {
            if shared.closing.load(Ordering::SeqCst) {
                return;
            }
            let Ok(client) = client else { continue };
            // Connect upstream unless requests are cut; then the client talks into the void. With only replies
            // cut, the server gets the connection and its requests, the client none of the answers.
            let upstream = if shared.is_cut(Direction::ToServer) {
                None
            } else {
                match TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(2)) {
                    Ok(upstream) => Some(upstream),
                    Err(_) => continue, // drops the client: like a refused connection
                }
            };
            let _ = client.set_nodelay(true);
            if let Some(upstream) = &upstream {
                let _ = upstream.set_nodelay(true);
            }
            let mut conns = lock(&shared.conns);
            conns.retain(|c| !c.done.load(Ordering::SeqCst));
            let conn = Arc::new(ProxyConn {
                client,
                upstream,
                tainted: AtomicBool::new(shared.any_cut()),
                mute: AtomicBool::new(false),
                done: AtomicBool::new(false),
            });
            conns.push(conn.clone());
            drop(conns);
            if Proxy::pumps(&conn, shared).is_err() {
                conn.close();
            }
        }
    }

    /// Starts the threads that move one connection's bytes.
    fn pumps(conn: &Arc<ProxyConn>, shared: &Arc<ProxyShared>) -> io::Result<()> {
        let from_client = conn.client.try_clone()?;
        match &conn.upstream {
            Some(upstream) => {
                let (to_upstream, from_upstream) = (upstream.try_clone()?, upstream.try_clone()?);
                let to_client = conn.client.try_clone()?;
                let requests = Proxy::writer(Some(to_upstream), Direction::ToServer, conn, shared);
                Proxy::pump_requests(from_client, requests, conn.clone(), shared.clone());
                let replies = Proxy::writer(Some(to_client), Direction::ToClient, conn, shared);
                Proxy::pump_replies(from_upstream, replies, conn.clone(), shared.clone());
            }
            None => {
                let void = Proxy::writer(None, Direction::ToServer, conn, shared);
                Proxy::pump_requests(from_client, void, conn.clone(), shared.clone());
            }
        }
        Ok(())
    }

    /// The writing half of one direction: forwards chunks in order, each once due. A chunk due while its
    /// direction is cut is discarded; a connection that lived through a cut is closed at its first chunk after
    /// the heal (heal closes it anyway); a connection whose reader ended is closed once its chunks are out.
    fn writer(
        mut to: Option<TcpStream>,
        direction: Direction,
        conn: &Arc<ProxyConn>,
        shared: &Arc<ProxyShared>,
    ) -> mpsc::Sender<Chunk> {
        let (sender, chunks) = mpsc::channel::<Chunk>();
        let (conn, shared) = (conn.clone(), shared.clone());
        thread::spawn(move || {
            for (due, chunk) in chunks {
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                if shared.is_cut(direction) {
                    conn.tainted.store(true, Ordering::SeqCst);
                    continue;
                }
                if conn.tainted.load(Ordering::SeqCst) && !shared.any_cut() {
                    break;
                }
                let Some(to) = to.as_mut() else {
                    // Accepted during a cut of requests, and the cut is over: like a refused connection.
                    break;
                };
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            conn.close();
        });
        sender
    }

    /// Server to client: hands every chunk to `to` with its due time, unless replies are cut or muted.
    fn pump_replies(
        mut from: TcpStream,
        to: mpsc::Sender<Chunk>,
        conn: Arc<ProxyConn>,
        shared: Arc<ProxyShared>,
    ) {
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut last = Instant::now();
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if shared.is_cut(Direction::ToClient) {
                    conn.tainted.store(true, Ordering::SeqCst);
                    continue;
                }
                if conn.mute.load(Ordering::SeqCst) {
                    continue;
                }
                if to.send((shared.due(&mut last), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
            // Dropping `to` lets the writer deliver what it holds, then close.
        });
    }

    /// Client to server: like [`Proxy::pump_replies`], but whole ZooKeeper frames at a time (each is
    /// length-prefixed), so that a create of a candidate (`/_c_` in its path) can be let through while its reply
    /// is lost.
    fn pump_requests(
        mut from: TcpStream,
        to: mpsc::Sender<Chunk>,
        conn: Arc<ProxyConn>,
        shared: Arc<ProxyShared>,
    ) {
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = Vec::new();
            let mut frames = 0usize;
            let mut last = Instant::now();
            'read: loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if shared.is_cut(Direction::ToServer) {
                    conn.tainted.store(true, Ordering::SeqCst);
                    pending.clear();
                    continue;
                }
                pending.extend_from_slice(&buf[..n]);
                while pending.len() >= 4 {
                    let len = i32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]);
                    let end = 4 + usize::try_from(len).unwrap_or(0);
                    if pending.len() < end {
                        break;
                    }
                    let frame: Vec<u8> = pending.drain(..end).collect();
                    frames += 1;
                    // Every frame after the connect request: xid, op code, then the body; a create's body starts
                    // with its path.
                    let cut = frames > 1
                        && is_candidate_create(&frame)
                        && shared.cut_on_create.swap(false, Ordering::SeqCst);
                    if cut {
                        conn.mute.store(true, Ordering::SeqCst);
                    }
                    if to.send((shared.due(&mut last), frame)).is_err() {
                        break 'read;
                    }
                    if cut {
                        // Let the server apply it, then drop the connection before the reply goes back. (On a
                        // slow link the frame may not have been forwarded yet: do not combine the two.)
                        thread::sleep(Duration::from_millis(100));
                        conn.close();
                        break 'read;
                    }
                }
            }
        });
    }

    /// Lets the next create of a candidate znode (a path with `/_c_`) reach the server, and cuts the connection
    /// before its reply reaches the client: a create whose reply is lost.
    pub fn lose_next_candidate_create_reply(&self) {
        self.shared.cut_on_create.store(true, Ordering::SeqCst);
    }

    /// "127.0.0.1:<port>".
    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    /// From now on every byte in both directions, on existing and new connections, is read and discarded;
    /// nothing is closed.
    pub fn partition(&self) {
        let conns = lock(&self.shared.conns);
        self.shared.cut_to_server.store(true, Ordering::SeqCst);
        self.shared.cut_to_client.store(true, Ordering::SeqCst);
        for conn in conns.iter() {
            conn.tainted.store(true, Ordering::SeqCst);
        }
    }

    /// From now on every byte in `direction`, on existing and new connections, is read and discarded; the other
    /// direction still flows. Nothing is closed. [`Proxy::heal`] ends it.
    pub fn cut(&self, direction: Direction) {
        let _conns = lock(&self.shared.conns);
        match direction {
            Direction::ToServer => self.shared.cut_to_server.store(true, Ordering::SeqCst),
            Direction::ToClient => self.shared.cut_to_client.store(true, Ordering::SeqCst),
        }
    }

    /// From now on every chunk, in both directions, is held a random time between `min` and `max` before it is
    /// forwarded; order is kept. [`Proxy::heal`] ends it (chunks held by then are still delivered, in order).
    pub fn slow(&self, min: Duration, max: Duration) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_min_ms.store(ms(min), Ordering::SeqCst);
        self.shared
            .delay_max_ms
            .store(ms(max.max(min)), Ordering::SeqCst);
    }

    /// Ends partitions, cuts and slowness: connections that lived through a cut are closed, new ones are
    /// forwarded at once.
    pub fn heal(&self) {
        let mut conns = lock(&self.shared.conns);
        for conn in conns.iter().filter(|c| c.tainted.load(Ordering::SeqCst)) {
            conn.close();
        }
        conns.retain(|c| !c.done.load(Ordering::SeqCst));
        self.shared.cut_to_server.store(false, Ordering::SeqCst);
        self.shared.cut_to_client.store(false, Ordering::SeqCst);
        self.shared.delay_min_ms.store(0, Ordering::SeqCst);
        self.shared.delay_max_ms.store(0, Ordering::SeqCst);
    }

    /// Whether both directions are cut (a [`Proxy::partition`]).
    pub fn is_partitioned(&self) -> bool {
        self.shared.is_cut(Direction::ToServer) && self.shared.is_cut(Direction::ToClient)
    }

    /// Whether `direction` is cut.
    pub fn is_cut(&self, direction: Direction) -> bool {
        self.shared.is_cut(direction)
    }

    /// How many connections it forwards now (closed ones excluded).
    pub fn connections(&self) -> usize {
        lock(&self.shared.conns)
            .iter()
            .filter(|c| !c.done.load(Ordering::SeqCst))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        for conn in lock(&self.shared.conns).iter() {
            conn.close();
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Whether a ZooKeeper request frame (length prefix included) creates a candidate: op code create (1) or
/// create2 (15), and a path containing `/_c_`.
fn is_candidate_create(frame: &[u8]) -> bool {
    let int = |at: usize| {
        frame
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(op), Some(path_len)) = (int(8), int(12)) else {
        return false;
    };
    let path_len = usize::try_from(path_len).unwrap_or(0);
    matches!(op, 1 | 15)
        && frame
            .get(16..16 + path_len)
            .is_some_and(|path| path.windows(4).any(|w| w == b"/_c_"))
}

// ---------------------------------------------------------------------------------------------------------------
// The daemon

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
        let mut command = Command::new(BIN);
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
        let mut command = Command::new(BIN);
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
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("create stdout file"))
        .stderr(fs::File::create(&err).expect("create stderr file"));
    let mut process = Guarded::spawn(&mut command, BIN);
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

// ---------------------------------------------------------------------------------------------------------------
// Reading ZooKeeper

/// A client with a 4 s session (the test servers' maximum); panics if it cannot connect within 15 s.
pub async fn zk_client(connect: &str) -> zookeeper_client::Client {
    let connecting = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .connect(connect);
    match tokio::time::timeout(Duration::from_secs(15), connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => panic!("connect to ZooKeeper at {connect}: {e}"),
        Err(_) => panic!("connect to ZooKeeper at {connect}: no session within 15s"),
    }
}

/// One candidate znode of an election (SPEC §4).
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The child's name under the election path.
    pub name: String,
    /// Its 10-digit sequence suffix.
    pub sequence: u64,
    pub node: String,
    pub host: String,
    pub pid: u64,
    pub version: String,
    /// The session that owns it.
    pub ephemeral_owner: i64,
}

/// The candidates of the election at `path` in election order (by sequence suffix); empty if the path does not
/// exist. Panics if a candidate's name or data does not follow SPEC §4.
pub async fn candidate_list(client: &zookeeper_client::Client, path: &str) -> Vec<Candidate> {
    let children = match client.list_children(path).await {
        Ok(children) => children,
        Err(zookeeper_client::Error::NoNode) => return Vec::new(),
        Err(e) => panic!("list {path}: {e}"),
    };
    let mut candidates = Vec::new();
    for name in children {
        let child = format!("{path}/{name}");
        let (data, stat) = match client.get_data(&child).await {
            Ok(found) => found,
            Err(zookeeper_client::Error::NoNode) => continue, // went away meanwhile
            Err(e) => panic!("get {child}: {e}"),
        };
        let suffix = name.len().checked_sub(10).map(|at| &name[at..]);
        let sequence = suffix
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("candidate {child} has no 10-digit sequence suffix"));
        let json: serde_json::Value = serde_json::from_slice(&data).unwrap_or_else(|e| {
            panic!(
                "candidate {child} data is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&data)
            )
        });
        let text = |key: &str| {
            json[key]
                .as_str()
                .unwrap_or_else(|| panic!("candidate {child}: no string {key:?} in {json}"))
                .to_owned()
        };
        candidates.push(Candidate {
            sequence,
            node: text("node"),
            host: text("host"),
            version: text("version"),
            pid: json["pid"]
                .as_u64()
                .unwrap_or_else(|| panic!("candidate {child}: no numeric \"pid\" in {json}")),
            ephemeral_owner: stat.ephemeral_owner,
            name,
        });
    }
    candidates.sort_by_key(|c| c.sequence);
    candidates
}

/// `(znode name, node id)` of each candidate at `path`, in election order.
pub async fn candidates(client: &zookeeper_client::Client, path: &str) -> Vec<(String, String)> {
    candidate_list(client, path)
        .await
        .into_iter()
        .map(|c| (c.name, c.node))
        .collect()
}

/// The node id of the first candidate at `path`, if any.
pub async fn leader_node(client: &zookeeper_client::Client, path: &str) -> Option<String> {
    candidate_list(client, path)
        .await
        .into_iter()
        .next()
        .map(|c| c.node)
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers shared by the test files

/// Runs a future to completion on a runtime of its own (tests are synchronous; the ZooKeeper client is not).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// Waits until the election at `path` on the server at `connect` holds exactly `nodes`, in that order.
pub fn wait_queue(connect: &str, path: &str, nodes: &[&str], timeout: Duration) {
    block_on(async {
        let client = zk_client(connect).await;
        wait_queue_async(&client, path, nodes, timeout).await;
    });
}

/// Like [`wait_queue`], through a client of the caller's.
pub async fn wait_queue_async(
    client: &zookeeper_client::Client,
    path: &str,
    nodes: &[&str],
    timeout: Duration,
) {
    let what = format!("the queue of {path} to be {nodes:?}");
    wait_until_async(timeout, &what, || async {
        let queue: Vec<String> = candidates(client, path)
            .await
            .into_iter()
            .map(|(_, node)| node)
            .collect();
        queue == nodes
    })
    .await;
}

/// Samples for `how_long` that `worker` has exactly one live process, always the same one (and on `node`, if
/// given).
pub fn assert_stable(witness: &Witness, worker: &str, node: Option<&str>, how_long: Duration) {
    let first = witness.live(worker);
    assert_eq!(first.len(), 1, "{}", witness.timeline(worker));
    let until = Instant::now() + how_long;
    loop {
        let live = witness.live(worker);
        assert!(
            live.len() == 1 && live[0].id == first[0].id && node.is_none_or(|n| live[0].node == n),
            "worker {worker} did not stay put{}\n{}",
            node.map(|n| format!(" on {n}")).unwrap_or_default(),
            witness.timeline(worker)
        );
        if Instant::now() >= until {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes the first candidate of the election at `path`, as an operator (or a bug elsewhere) might;
/// returns when the deletion was done.
pub fn delete_leader_candidate(connect: &str, path: &str) -> Instant {
    block_on(async {
        let client = zk_client(connect).await;
        let (name, _) = candidates(&client, path).await.remove(0);
        client
            .delete(&format!("{path}/{name}"), None)
            .await
            .expect("delete the leader's candidate");
        Instant::now()
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Benchmarks: other programs in the place of the daemon

/// Like [`Supervisor::start`], but runs `program` (argv, e.g. `["python3", "bench/kazoo_agent.py"]`) with the
/// config file's path appended instead of `zk-supervise run`: a baseline agent that reads the same config,
/// handled like the daemon (log captured, signals, exit, killed on drop).
pub fn start_program(program: &[&str], config_toml: &str, node_id: &str) -> Supervisor {
    let (first, rest) = program.split_first().expect("a program");
    let mut command = Command::new(first);
    command.args(rest);
    Supervisor::spawn(command, config_toml, node_id, "program")
}

// ---------------------------------------------------------------------------------------------------------------
// Stranding (tests/stranding.rs): reloads in quick succession, what `status` says meanwhile, and a proxy
// that loses the delete of a candidate

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

/// What one `zk-supervise status --json` said of one worker, and when it was asked.
#[derive(Clone, Debug)]
pub struct StatusSample {
    /// Just before the command started: whatever it says was read after this.
    pub asked: Instant,
    /// `(leader node, child pid)` when it says the child runs.
    pub running: Option<(String, u32)>,
}

/// Runs `zk-supervise status --json` on a config file over and over, in a thread, until stopped, and keeps
/// what it says of one worker.
pub struct StatusSampler {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Vec<StatusSample>>>,
}

/// One `zk-supervise status --json` on `config`: what it says of `worker`, or `None` if it failed.
pub fn status_sample(config: &Path, worker: &str) -> Option<StatusSample> {
    let asked = Instant::now();
    let path = config.to_str().expect("a UTF-8 path");
    let out = run_cli(&["status", path, "--json"], Duration::from_secs(15));
    // 3: read, and some worker runs nowhere (issue 12).
    if !matches!(out.status.code(), Some(0 | 3)) {
        return None; // unreachable for a moment: says nothing
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    let entry = json["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == worker))
        .cloned()
        .unwrap_or_default();
    let running = (entry["running"] == true).then(|| {
        (
            entry["leader"]["node"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            entry["child_pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0),
        )
    });
    Some(StatusSample { asked, running })
}

impl StatusSampler {
    pub fn start(config: &Path, worker: &str) -> StatusSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (config, worker, stopping) = (config.to_owned(), worker.to_owned(), stop.clone());
        let thread = thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                samples.extend(status_sample(&config, &worker));
            }
            samples
        });
        StatusSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns every sample, in order.
    pub fn finish(mut self) -> Vec<StatusSample> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the status sampler panicked")
    }
}

impl Drop for StatusSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Panics if a sample said `worker` ran as a process that the witness had seen close before the sample was
/// asked for (a child shown as running while dead), or as a process the witness never saw.
pub fn assert_status_never_showed_a_dead_child(
    witness: &Witness,
    worker: &str,
    samples: &[StatusSample],
) {
    for sample in samples {
        let Some((node, pid)) = &sample.running else {
            continue;
        };
        let conn = witness
            .history(worker)
            .into_iter()
            .find(|c| c.pid == *pid && c.node == *node)
            .unwrap_or_else(|| {
                panic!(
                    "status said {worker} runs on {node} as pid {pid}, which the witness never saw\n{}",
                    witness.timeline(worker)
                )
            });
        if let Some(closed) = conn.closed {
            assert!(
                closed >= sample.asked,
                "status, asked {:?} after pid {pid} on {node} had died, said it runs\n{}",
                sample.asked - closed,
                witness.timeline(worker)
            );
        }
    }
}

/// A TCP forwarder to one ZooKeeper server that can lose a delete of a candidate on its way to the server:
/// the request never arrives, the connection it came on drops (so the client sees the delete fail), and the
/// connections that follow are black-holed until [`LossyProxy::heal`] (so it cannot simply try again), while
/// the session lives on the server.
pub struct LossyProxy {
    addr: SocketAddr,
    shared: Arc<LossyShared>,
}

struct LossyShared {
    upstream: SocketAddr,
    /// Armed by [`LossyProxy::drop_next_candidate_delete`].
    drop_delete: AtomicBool,
    /// New connections are black-holed.
    dark: AtomicBool,
    dropped: AtomicUsize,
    /// The client side of every connection, to close them all (heal, drop).
    clients: Mutex<Vec<TcpStream>>,
    closing: AtomicBool,
}

impl LossyProxy {
    /// A proxy to `upstream` ("127.0.0.1:<port>").
    pub fn new(upstream: &str) -> LossyProxy {
        let upstream: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|e| panic!("proxy upstream {upstream:?}: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(LossyShared {
            upstream,
            drop_delete: AtomicBool::new(false),
            dark: AtomicBool::new(false),
            dropped: AtomicUsize::new(0),
            clients: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        thread::Builder::new()
            .name("lossy-proxy".into())
            .spawn(move || LossyProxy::accept(&listener, &accepting))
            .expect("spawn the proxy thread");
        LossyProxy { addr, shared }
    }

    fn accept(listener: &TcpListener, shared: &Arc<LossyShared>) {
        for client in listener.incoming() {
            if shared.closing.load(Ordering::SeqCst) {
                return;
            }
            let Ok(client) = client else { continue };
            let _ = client.set_nodelay(true);
            if let Ok(clone) = client.try_clone() {
                lock(&shared.clients).push(clone);
            }
            let upstream = if shared.dark.load(Ordering::SeqCst) {
                None
            } else {
                TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(2)).ok()
            };
            let Some(upstream) = upstream else {
                // Black-holed: read and discard until heal closes it.
                let mut client = client;
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
                });
                continue;
            };
            let _ = upstream.set_nodelay(true);
            let (Ok(to_client), Ok(from_upstream), Ok(to_upstream)) = (
                client.try_clone(),
                upstream.try_clone(),
                upstream.try_clone(),
            ) else {
                continue;
            };
            thread::spawn(move || {
                let (mut from, mut to) = (from_upstream, to_client);
                let _ = io::copy(&mut from, &mut to);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
            });
            let shared = shared.clone();
            thread::spawn(move || LossyProxy::pump_requests(client, to_upstream, &shared));
        }
    }

    /// Client to server, a whole frame at a time, so that a delete of a candidate can be left out.
    fn pump_requests(mut from: TcpStream, mut to: TcpStream, shared: &LossyShared) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending = Vec::new();
        let mut frames = 0usize;
        'read: loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while pending.len() >= 4 {
                let len = i32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]);
                let end = 4 + usize::try_from(len).unwrap_or(0);
                if pending.len() < end {
                    break;
                }
                let frame: Vec<u8> = pending.drain(..end).collect();
                frames += 1;
                let lose = frames > 1
                    && is_candidate_delete(&frame)
                    && shared.drop_delete.swap(false, Ordering::SeqCst);
                if lose {
                    shared.dark.store(true, Ordering::SeqCst);
                    shared.dropped.fetch_add(1, Ordering::SeqCst);
                    break 'read;
                }
                if to.write_all(&frame).is_err() {
                    break 'read;
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }

    /// "127.0.0.1:<port>".
    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    /// Loses the next delete of a candidate (a path with `/_c_`) as the type's docs say.
    pub fn drop_next_candidate_delete(&self) {
        self.shared.drop_delete.store(true, Ordering::SeqCst);
    }

    /// Waits until a delete has been lost.
    pub fn wait_dropped(&self, timeout: Duration) {
        wait_until(timeout, "a delete of a candidate to be lost", || {
            self.shared.dropped.load(Ordering::SeqCst) > 0
        });
    }

    /// New connections reach the server again; the black-holed ones are closed, so the client tries anew.
    pub fn heal(&self) {
        // Since the loss, every connection was black-holed (or is the one that lost the delete).
        let mut clients = lock(&self.shared.clients);
        self.shared.dark.store(false, Ordering::SeqCst);
        for client in clients.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        for client in lock(&self.shared.clients).iter() {
            let _ = client.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Whether a ZooKeeper request frame (length prefix included) deletes a candidate: op code delete (2) and a
/// path containing `/_c_`.
fn is_candidate_delete(frame: &[u8]) -> bool {
    let int = |at: usize| {
        frame
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(op), Some(path_len)) = (int(8), int(12)) else {
        return false;
    };
    let path_len = usize::try_from(path_len).unwrap_or(0);
    op == 2
        && frame
            .get(16..16 + path_len)
            .is_some_and(|path| path.windows(4).any(|w| w == b"/_c_"))
}
