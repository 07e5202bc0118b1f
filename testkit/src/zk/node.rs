//! One ZooKeeper server process and its files: what a standalone server, an ensemble and a quorum rig share,
//! down to starting a set of them with retries when a port was taken meanwhile.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::rig::{read_lossy, tail, Guarded};

/// How long a ZooKeeper server (or a whole ensemble) gets to start serving.
pub(crate) const ZK_START_TIMEOUT: Duration = Duration::from_secs(30);

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
pub(crate) enum StartError {
    /// A port chosen by [`free_ports`] was taken before the server bound it: try again with other ports.
    AddrInUse,
    Failed(String),
}

/// The Netty connection factory: the one that serves TLS.
const NETTY: &str = "org.apache.zookeeper.server.NettyServerCnxnFactory";

/// One ZooKeeper server process and its files.
pub(crate) struct ZkNode {
    /// "zk" or "zk2" (myid 2): names it in messages.
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) client_port: u16,
    /// The TLS client port (`secureClientPort`), if the server has one.
    pub(crate) secure_port: Option<u16>,
    pub(crate) process: Option<Guarded>,
}

impl ZkNode {
    /// Writes the config (and myid) into `dir`, replacing any earlier attempt's files. `tls` is a TLS client port
    /// and the `ssl.*` lines of zoo.cfg that configure it.
    pub(crate) fn new(
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

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub(crate) fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    pub(crate) fn spawn(&mut self) {
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

    pub(crate) fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(|p| !p.has_exited())
    }

    /// The server's mode from `srvr` ("standalone", "leader", "follower"), if it is serving.
    pub(crate) fn mode(&self) -> Option<String> {
        let srvr = four_letter_at(&self.addr(), "srvr").ok()?;
        srvr.lines()
            .find_map(|line| line.strip_prefix("Mode: "))
            .map(|mode| mode.trim().to_owned())
    }

    /// Waits until the server answers `ruok` with `imok` and `srvr` reports one of `modes`.
    pub(crate) fn wait_serving(&self, modes: &[&str], deadline: Instant) -> Result<(), StartError> {
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

    pub(crate) fn failure(&self, why: &str) -> String {
        format!(
            "{why}\n----- last lines of {} -----\n{}",
            self.log_path().display(),
            tail(&self.log(), 80)
        )
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}

/// SIGKILLs member `i` of an ensemble (and reaps it); its data stays for [`restart_member`].
pub(crate) fn kill_member(nodes: &mut [ZkNode], i: usize) {
    assert!(
        nodes[i].process.is_some(),
        "{} is not running",
        nodes[i].name
    );
    nodes[i].kill();
}

/// Starts member `i` of an ensemble again with the same data and ports; waits (up to
/// [`ZK_START_TIMEOUT`]) until it serves as leader or follower.
pub(crate) fn restart_member(nodes: &mut [ZkNode], i: usize) {
    nodes[i].spawn();
    let deadline = Instant::now() + ZK_START_TIMEOUT;
    if let Err(error) = nodes[i].wait_serving(&["leader", "follower"], deadline) {
        let why = match error {
            StartError::AddrInUse => "its ports are taken".to_owned(),
            StartError::Failed(why) => why,
        };
        panic!("restart {}: {why}\n{}", nodes[i].name, logs(nodes, ""));
    }
}

/// The tails of the members' logs, the named one first.
pub(crate) fn logs(nodes: &[ZkNode], first: &str) -> String {
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

/// Starts the servers that `setup` writes (choosing fresh ports at each attempt) and waits until `ready` says
/// each one serves (`ready` gets the deadline, 30 s from the start). Another process can take a chosen port
/// before the server binds it: that attempt is killed and another made, three in all. Any other failure panics
/// with the servers' logs, the failed one first.
pub(crate) fn start_servers<T>(
    mut setup: impl FnMut() -> (Vec<ZkNode>, T),
    ready: impl Fn(&ZkNode, Instant) -> Result<(), StartError>,
) -> (Vec<ZkNode>, T) {
    for attempt in 1..=3 {
        let (mut nodes, rest) = setup();
        for node in &mut nodes {
            node.spawn();
        }
        let deadline = Instant::now() + ZK_START_TIMEOUT;
        let failure = nodes
            .iter()
            .find_map(|node| ready(node, deadline).err().map(|e| (node.name.clone(), e)));
        match failure {
            None => return (nodes, rest),
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
