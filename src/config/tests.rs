//! The parser as a whole: a text in, a [`Config`] or every problem with its place out. The exact
//! messages are part of the interface (`check` prints them; tests/check_cli.rs and tests/inputs.rs
//! pin some of them too).

use super::exec::ExecRoom;
use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

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
    assert_eq!(config.zookeeper.connect.as_str(), "zk1:2181,zk2:2181/apps");
    assert_eq!(config.zookeeper.connect.hosts(), ["zk1:2181", "zk2:2181"]);
    assert_eq!(config.zookeeper.connect.chroot(), Some("/apps"));
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

/// `/zookeeper` is ZooKeeper's own unless a chroot moves the root elsewhere; a bare "/" after the
/// servers is no chroot (the daemon and `status` always read it so; the check now does too).
#[test]
fn zookeeper_root_is_reserved_without_a_chroot() {
    let with =
        |connect: &str| format!("[zookeeper]\nconnect = \"{connect}\"\nroot = \"/zookeeper/w\"\n");
    ok(&with("zk:2181/apps"));
    for connect in ["zk:2181", "zk:2181/"] {
        assert_eq!(
            problem(&with(connect)),
            "w.toml:3:8: zookeeper: root: /zookeeper is reserved by ZooKeeper"
        );
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
    let text = format!("{ZK}server_tick = \"5ms\"\n[[worker]]\nname = \"x\"\ncommand = [\"x\"]\n");
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
    let text = worker(
        "name = \"w\"\ncommand = [\"x\"]\nrestart_delay = \"10s\"\nmax_restart_delay = \"5s\"\n",
    );
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
    let text = format!(
        "# \u{e9}t\u{e9}\n{ZK}[[worker]]\nname = \"w\" # \u{1f600}\ncommand = [\"x\"] ; x = 1\n"
    );
    let all = problems(&text);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(all[0].starts_with("w.toml:6:17: syntax error"), "{all:#?}");
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

/// The parser against arbitrary input: it reports problems, it never panics.
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
            let _ = super::super::parse(&text, Path::new("fuzz.toml"));
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
            let _ = super::super::parse(&text, Path::new("fuzz.toml"));
        }

        #[test]
        fn durations_never_panic(s in "\\PC{0,30}") {
            let _ = super::super::parse_duration(&s);
        }
    }
}
