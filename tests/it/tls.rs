//! TLS to ZooKeeper (issue: security, item 2; SPEC §9) against a real server with a `secureClientPort`.
//!
//! The test makes a throwaway CA, a server and a client certificate signed by it, and a second CA that signed
//! nothing, with `openssl`. The server is the rig's standalone server with a TLS client port
//! ([`ZkServer::standalone_tls`]: Netty connection factory; here `ssl.clientAuth=need`); its plaintext port is
//! for the readiness check only. It is shared by the tests of this file and, like every server of the rig,
//! killed when the test process exits, however it exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use testkit::*;

const S: &str = "2s";
const STORE_PASSWORD: &str = "test-store-pass";

/// Runs a command of the certificate tools; panics with its output when it fails, and with what to install
/// when the tool is missing.
fn tool(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| match program {
            "openssl" => panic!(
                "the TLS tests need openssl to make throwaway certificates ({e}): apt-get install openssl"
            ),
            _ => panic!("run {program}: {e}"),
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The throwaway PKI, in one directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn make(dir: &Path) -> Pki {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "wrong-ca"] {
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            let (key, pem, subject) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN=zk-supervise test {ca}"),
            );
            args.extend([
                "-keyout",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            tool(dir, "openssl", &args);
        }
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("write leaf.ext");
        for (n, leaf) in ["server", "client"].into_iter().enumerate() {
            let (key, csr, pem, subject) = (
                format!("{leaf}.key"),
                format!("{leaf}.csr"),
                format!("{leaf}.pem"),
                format!("/CN={leaf}"),
            );
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
            tool(dir, "openssl", &args);
            let serial = format!("{}", 1000 + n);
            tool(
                dir,
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    &serial,
                    "-days",
                    "2",
                    "-extfile",
                    "leaf.ext",
                    "-out",
                    &pem,
                ],
            );
        }
        // The server's keystore (PKCS12, as ZooKeeper 3.8 reads it); its truststore is the CA in PEM.
        let pass = format!("pass:{STORE_PASSWORD}");
        tool(
            dir,
            "openssl",
            &[
                "pkcs12",
                "-export",
                "-in",
                "server.pem",
                "-inkey",
                "server.key",
                "-certfile",
                "ca.pem",
                "-name",
                "server",
                "-out",
                "server.p12",
                "-passout",
                &pass,
            ],
        );
        Pki {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `tls = { ... }` for the config: the CA file `ca`, and the client's certificate and key if `identity`.
    fn tls_line(&self, ca: &str, identity: bool) -> String {
        let mut line = format!(
            "tls = {{ ca = {}",
            toml_str(&self.path(ca).display().to_string())
        );
        if identity {
            line += &format!(
                ", cert = {}, key = {}",
                toml_str(&self.path("client.pem").display().to_string()),
                toml_str(&self.path("client.key").display().to_string())
            );
        }
        line + " }"
    }
}

/// The ZooKeeper server with a TLS client port, and the PKI it uses. It is shared by the tests of this file and
/// never dropped.
struct TlsServer {
    /// Holds the certificates; removed when the test process exits.
    _dir: TempDir,
    pki: Pki,
    zk: ZkServer,
}

fn shared_tls_server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(TlsServer::start)
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir = TempDir::new("zk-tls");
        let pki = Pki::make(dir.path());
        // The server's keystore is PKCS12, as ZooKeeper 3.8 reads it; its truststore is the CA in PEM.
        let zk = ZkServer::standalone_tls(&format!(
            "ssl.keyStore.location={keystore}\n\
             ssl.keyStore.password={STORE_PASSWORD}\n\
             ssl.keyStore.type=PKCS12\n\
             ssl.trustStore.location={truststore}\n\
             ssl.trustStore.type=PEM\n\
             ssl.clientAuth=need\n",
            keystore = pki.path("server.p12").display(),
            truststore = pki.path("ca.pem").display(),
        ));
        TlsServer { _dir: dir, pki, zk }
    }

    fn connect_string(&self) -> String {
        self.zk.secure_connect_string()
    }

    fn log(&self) -> String {
        self.zk.log()
    }
}

/// A config with one witness worker, connecting to the TLS port with `tls_line`.
fn tls_config(server: &TlsServer, root: &str, witness: &Witness, tls_line: &str) -> String {
    config(
        &server.connect_string(),
        root,
        S,
        &[WorkerSpec::new("w", witness.command())],
    )
    .replacen("[zookeeper]\n", &format!("[zookeeper]\n{tls_line}\n"), 1)
}

/// A line of the client's private key, to look for in outputs.
fn key_material(pki: &Pki) -> String {
    let key = std::fs::read_to_string(pki.path("client.key")).expect("read the client key");
    key.lines()
        .find(|l| !l.starts_with("-----") && l.len() > 20)
        .expect("a base64 line")
        .to_owned()
}

#[test]
fn with_the_right_ca_and_a_client_certificate_the_worker_runs_over_tls() {
    let server = shared_tls_server();
    let witness = Witness::new();
    let root = unique_root("tls");
    let toml = tls_config(
        server,
        &root,
        &witness,
        &server.pki.tls_line("ca.pem", true),
    );
    let a = Supervisor::start(&toml, "a");
    let child = witness.wait_live("w", Some("a"), Duration::from_secs(30));
    a.wait_log("zookeeper session established", Duration::from_secs(5));
    // status reads over TLS too.
    let out = run_cli(
        &["status", a.config_path().to_str().expect("UTF-8"), "--json"],
        Duration::from_secs(15),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n----- the server's log -----\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["workers"][0]["leader"]["node"], "a");
    assert_eq!(status["workers"][0]["child_pid"], u64::from(child.pid));
    let key = key_material(&server.pki);
    for text in [
        a.log(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ] {
        assert!(!text.contains(&key), "key material leaked: {text}");
    }
}

#[test]
fn a_wrong_ca_or_no_client_certificate_fails_closed() {
    let server = shared_tls_server();
    for (case, tls_line) in [
        ("wrong CA", server.pki.tls_line("wrong-ca.pem", true)),
        (
            "no client certificate",
            server.pki.tls_line("ca.pem", false),
        ),
    ] {
        let witness = Witness::new();
        let root = unique_root("tls-wrong");
        let toml = tls_config(server, &root, &witness, &tls_line);
        let a = Supervisor::start(&toml, "a");
        // Several attempts, each refused.
        wait_until(
            Duration::from_secs(20),
            &format!("{case}: three failed connection attempts in the log"),
            || a.log().matches("cannot reach zookeeper").count() >= 3,
        );
        assert!(
            !a.has_exited(),
            "{case}: the daemon keeps trying\n{}",
            a.log()
        );
        assert!(
            !a.log().contains("session established"),
            "{case}: a session over TLS that should have been refused\n{}\n----- the server's log -----\n{}",
            a.log(),
            server.log()
        );
        assert!(
            witness.history("w").is_empty(),
            "{case}: a child ran\n{}",
            witness.timeline("w")
        );
        // check does not touch ZooKeeper; status cannot reach it either.
        let path = a.config_path();
        let path = path.to_str().expect("UTF-8");
        let check = run_cli(&["check", path], Duration::from_secs(15));
        assert_eq!(
            check.status.code(),
            Some(0),
            "{case}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let status = run_cli(&["status", path], Duration::from_secs(15));
        assert_ne!(
            status.status.code(),
            Some(0),
            "{case}: status over a refused TLS"
        );
        assert!(
            String::from_utf8_lossy(&status.stderr).contains("cannot reach zookeeper"),
            "{case}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
}

#[test]
fn unusable_tls_files_are_one_line_errors_that_name_the_file_and_not_the_key() {
    let server = shared_tls_server();
    let pki = &server.pki;
    let key = key_material(pki);
    let witness = Witness::new();
    let root = unique_root("tls-files");
    let path = |name: &str| toml_str(&pki.path(name).display().to_string());
    let cases = [
        // A key file that does not exist.
        (
            format!(
                "tls = {{ ca = {}, cert = {}, key = {} }}",
                path("ca.pem"),
                path("client.pem"),
                path("missing.key")
            ),
            pki.path("missing.key"),
        ),
        // A certificate where the key should be.
        (
            format!(
                "tls = {{ ca = {}, cert = {}, key = {} }}",
                path("ca.pem"),
                path("client.pem"),
                path("client.pem")
            ),
            pki.path("client.pem"),
        ),
        // The key where the CA should be.
        (
            format!("tls = {{ ca = {} }}", path("client.key")),
            pki.path("client.key"),
        ),
        // The key where the client certificate should be.
        (
            format!(
                "tls = {{ ca = {}, cert = {}, key = {} }}",
                path("ca.pem"),
                path("client.key"),
                path("client.key")
            ),
            pki.path("client.key"),
        ),
    ];
    for (tls_line, named) in cases {
        let toml = tls_config(server, &root, &witness, &tls_line);
        let mut a = Supervisor::start(&toml, "a");
        let status = a.wait_exit(Duration::from_secs(15));
        let log = a.log();
        assert_eq!(status.code(), Some(78), "{tls_line}\n{log}");
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("zookeeper tls"))
            .collect();
        assert_eq!(errors.len(), 1, "{tls_line}: one line\n{log}");
        assert!(
            errors[0].contains(&named.display().to_string()),
            "{tls_line}: names {}\n{log}",
            named.display()
        );
        assert!(
            !log.contains(&key),
            "{tls_line}: key material leaked\n{log}"
        );
        assert!(!log.contains("session established"), "{log}");
        let check = run_cli(
            &["check", a.config_path().to_str().expect("UTF-8")],
            Duration::from_secs(15),
        );
        assert_eq!(check.status.code(), Some(0));
    }
    assert!(witness.history("w").is_empty(), "{}", witness.timeline("w"));
}
