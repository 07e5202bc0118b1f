//! Security (issue: security): digest auth and ACLs against a real ZooKeeper, the credentials file's
//! permissions, and secrets hygiene. One standalone server is shared by the tests of this file; each test has
//! its own root path.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::*;

const S: &str = "2s";
const PASSWORD: &str = "Pw-9c1f-not-for-logs";

/// A credentials file `user:password` with `mode`, in a temp dir of its own.
fn credentials(dir: &Path, password: &str, mode: u32) -> PathBuf {
    std::fs::create_dir_all(dir).expect("a temp dir");
    let file = dir.join("zk.auth");
    std::fs::write(&file, format!("zks:{password}\n")).expect("write the credentials");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    file
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("zk-supervise-{name}-{}", std::process::id()))
}

fn with_auth(toml: &str, file: &Path) -> String {
    toml.replacen(
        "[zookeeper]\n",
        &format!(
            "[zookeeper]\nauth = {{ scheme = \"digest\", credentials_file = \"{}\" }}\n",
            file.display()
        ),
        1,
    )
}

#[test]
fn with_credentials_nobody_else_can_change_a_candidate_and_status_still_reads() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("acl");
    let dir = temp_dir("acl");
    let file = credentials(&dir, PASSWORD, 0o600);
    let toml = with_auth(
        &config(
            &zk.connect_string(),
            &root,
            S,
            &[WorkerSpec::new("w", witness.command())],
        ),
        &file,
    );
    let a = Supervisor::start(&toml, "a");
    let child = witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let path = format!("{root}/w");
    wait_queue(&zk.connect_string(), &path, &["a"], Duration::from_secs(10));
    block_on(async {
        let stranger = zk_client(&zk.connect_string()).await;
        let (name, _) = candidates(&stranger, &path).await.remove(0);
        let candidate = format!("{path}/{name}");
        assert_eq!(
            stranger.delete(&candidate, None).await,
            Err(zookeeper_client::Error::NoAuth)
        );
        assert_eq!(
            stranger.set_data(&candidate, b"x", None).await.map(|_| ()),
            Err(zookeeper_client::Error::NoAuth)
        );
        assert_eq!(
            stranger.delete(&path, None).await,
            Err(zookeeper_client::Error::NoAuth)
        );
        let (acl, _) = stranger.get_acl(&candidate).await.expect("read the ACL");
        assert_eq!(acl.len(), 2, "{acl:?}");
        assert!(
            acl.iter()
                .any(|a| a.auth_id().scheme() == "digest" && a.auth_id().id().starts_with("zks:")),
            "{acl:?}"
        );
    });
    // status needs no credentials: it only reads.
    let plain = dir.join("plain.toml");
    std::fs::write(
        &plain,
        config(
            &zk.connect_string(),
            &root,
            S,
            &[WorkerSpec::new("w", vec!["/bin/true".into()])],
        ),
    )
    .expect("write a config without auth");
    let out = run_cli(
        &["status", plain.to_str().expect("UTF-8"), "--json"],
        Duration::from_secs(15),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["workers"][0]["leader"]["node"], "a");
    assert_eq!(status["workers"][0]["child_pid"], u64::from(child.pid));
    // Secrets hygiene: the password appears in no output, argv or environment.
    let check = run_cli(
        &["check", a.config_path().to_str().expect("UTF-8")],
        Duration::from_secs(15),
    );
    assert_eq!(check.status.code(), Some(0));
    let mut seen = vec![a.log(), String::from_utf8_lossy(&out.stdout).into_owned()];
    seen.push(String::from_utf8_lossy(&check.stdout).into_owned());
    seen.push(String::from_utf8_lossy(&check.stderr).into_owned());
    for pid in [a.pid(), child.pid] {
        for what in ["cmdline", "environ"] {
            seen.push(
                String::from_utf8_lossy(
                    &std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default(),
                )
                .into_owned(),
            );
        }
    }
    for text in &seen {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
    drop(a);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_wrong_password_fails_clearly_instead_of_running_unauthenticated() {
    let zk = shared_server();
    let witness = Witness::new();
    let root = unique_root("wrong-password");
    let dir = temp_dir("wrong-password");
    let right = credentials(&dir.join("right"), PASSWORD, 0o600);
    let workers = [WorkerSpec::new("w", witness.command())];
    let a = Supervisor::start(
        &with_auth(&config(&zk.connect_string(), &root, S, &workers), &right),
        "a",
    );
    witness.wait_live("w", Some("a"), Duration::from_secs(20));
    let wrong_password = "Wrong-7d2e-password";
    let wrong = credentials(&dir.join("wrong"), wrong_password, 0o600);
    let mut b = Supervisor::start(
        &with_auth(&config(&zk.connect_string(), &root, S, &workers), &wrong),
        "b",
    );
    let status = b.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{}", b.log());
    let log = b.log();
    assert!(log.contains("zookeeper refused user \"zks\""), "{log}");
    assert!(
        !log.contains(wrong_password) && !log.contains(PASSWORD),
        "the password leaked: {log}"
    );
    assert_eq!(witness.history("w").len(), 1, "{}", witness.timeline("w"));
    drop(a);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_credentials_file_others_can_read_is_refused() {
    let zk = shared_server();
    let root = unique_root("loose-file");
    let dir = temp_dir("loose-file");
    let file = credentials(&dir, PASSWORD, 0o644);
    let toml = with_auth(
        &config(
            &zk.connect_string(),
            &root,
            S,
            &[WorkerSpec::new("w", vec!["/bin/true".into()])],
        ),
        &file,
    );
    let conf = dir.join("w.toml");
    std::fs::write(&conf, format!("{toml}\n[node]\nid = \"a\"\n")).expect("write the config");
    let conf = conf.to_str().expect("UTF-8");
    let check = run_cli(&["check", conf], Duration::from_secs(15));
    assert_eq!(check.status.code(), Some(78));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("mode 0644") && err.contains("chmod 600") && !err.contains(PASSWORD),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let run = run_cli(&["run", conf], Duration::from_secs(15));
    assert_eq!(
        run.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_worker_run_as_another_user_gets_its_groups_and_home() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("this test switches users: run the suite as root (CI does)");
    }
    let zk = shared_server();
    let root = unique_root("user");
    let command = [
        "/bin/sh",
        "-c",
        "echo \"ids $(id -u) $(id -g) [$(id -G)] $HOME $USER $LOGNAME\"; exec sleep 1000",
    ];
    let worker =
        WorkerSpec::new("w", command.map(String::from).to_vec()).extra("user = \"nobody\"");
    let a = Supervisor::start(&config(&zk.connect_string(), &root, S, &[worker]), "a");
    a.wait_log("ids ", Duration::from_secs(20));
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("look up nobody")
        .expect("a nobody user");
    let line = a
        .log()
        .lines()
        .find(|l| l.contains("ids "))
        .expect("the line")
        .to_owned();
    let expected = format!(
        "ids {} {} [{}] {} nobody nobody",
        nobody.uid,
        nobody.gid,
        nobody.gid,
        nobody.dir.display()
    );
    // Root's own supplementary groups are gone: only nobody's.
    assert!(
        line.contains(&expected),
        "expected {expected:?} in {line:?}"
    );
}
