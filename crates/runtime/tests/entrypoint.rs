// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! deploy/docker-entrypoint.sh, run as the images run it, with stand-in
//! service binaries that print what they were given: which command each
//! role runs, which directories each role checks, and the bounded wait.
//! `make test-deploy` runs it for real inside the images.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ENTRYPOINT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/docker-entrypoint.sh");

struct Image {
    bin: tempfile::TempDir,
}

impl Image {
    /// A PATH holding `stockflow-<role>` stand-ins that print their arguments.
    fn new() -> Self {
        let bin = tempfile::tempdir().unwrap();
        for role in ["api", "worker", "scheduler", "backup"] {
            let path = bin.path().join(format!("stockflow-{role}"));
            std::fs::write(&path, format!("#!/bin/sh\necho \"ran stockflow-{role} $*\"\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { bin }
    }

    fn run(&self, role: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        let path = format!("{}:/usr/bin:/bin", self.bin.path().display());
        Command::new("bash")
            .arg(ENTRYPOINT)
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("STOCKFLOW_ROLE", role)
            // Tests may run as root; the refusal has a test of its own.
            .env("ALLOW_ROOT", "true")
            .env("STARTUP_WAIT_SECS", "0")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

fn writable_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    (dir, media)
}

/// A path no user can create: its parent is a regular file.
fn impossible_dir(parent: &Path) -> String {
    let file = parent.join("a-file");
    std::fs::write(&file, "").unwrap();
    format!("{}/media", file.display())
}

#[test]
fn each_role_serves_by_default_and_passes_subcommands_to_its_binary() {
    let image = Image::new();
    for role in ["api", "worker", "scheduler", "backup"] {
        let output = image.run(role, &[], &[]);
        assert!(output.status.success(), "{role}: {}", stderr(&output));
        assert_eq!(stdout(&output), format!("ran stockflow-{role} serve"));
    }
    let migrate = image.run("api", &[], &["migrate"]);
    assert_eq!(stdout(&migrate), "ran stockflow-api migrate", "{}", stderr(&migrate));
    let token = image.run("api", &[], &["token", "create", "--org", "acme"]);
    assert_eq!(stdout(&token), "ran stockflow-api token create --org acme");
    // A command on PATH runs as given.
    let other = image.run("api", &[], &["stockflow-backup", "list"]);
    assert_eq!(stdout(&other), "ran stockflow-backup list");
}

#[test]
fn an_unknown_role_is_a_config_error() {
    let output = Image::new().run("cron", &[], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).starts_with("config error: STOCKFLOW_ROLE:"), "{}", stderr(&output));
}

#[test]
fn only_the_roles_that_write_a_directory_check_it() {
    let image = Image::new();
    let scratch = tempfile::tempdir().unwrap();
    let impossible = impossible_dir(scratch.path());
    let roots = [("MEDIA_ROOT", impossible.as_str()), ("BACKUP_ROOT", impossible.as_str())];

    // The scheduler writes neither; api and worker never BACKUP_ROOT.
    let scheduler = image.run("scheduler", &roots, &[]);
    assert!(scheduler.status.success(), "{}", stderr(&scheduler));
    for role in ["api", "worker"] {
        let output = image.run(role, &[("BACKUP_ROOT", impossible.as_str())], &[]);
        assert!(output.status.success(), "{role}: {}", stderr(&output));
    }
    // With S3 media, MEDIA_ROOT is not theirs to check either.
    let s3 = image.run("api", &[("STORAGE_BACKEND", "s3"), ("MEDIA_ROOT", impossible.as_str())], &[]);
    assert!(s3.status.success(), "{}", stderr(&s3));

    for (role, var) in
        [("api", "MEDIA_ROOT"), ("worker", "MEDIA_ROOT"), ("backup", "MEDIA_ROOT"), ("backup", "BACKUP_ROOT")]
    {
        // The other root exists already, so the error is all there is to say.
        let dir = tempfile::tempdir().unwrap();
        let fine = dir.path().to_str().unwrap();
        let env: Vec<(&str, &str)> = [("MEDIA_ROOT", fine), ("BACKUP_ROOT", fine)]
            .into_iter()
            .map(|(k, v)| if k == var { (k, impossible.as_str()) } else { (k, v) })
            .collect();
        let output = image.run(role, &env, &[]);
        assert_eq!(output.status.code(), Some(2), "{role} with a bad {var}: {}", stderr(&output));
        let lines: Vec<_> = stderr(&output).lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with(&format!("config error: {var}: expected a directory")), "{lines:?}");
        assert_eq!(stdout(&output), "", "{role} must not start");
        drop(dir);
    }

    let (dir, media) = writable_dir();
    let created = image.run("worker", &[("MEDIA_ROOT", media.to_str().unwrap())], &[]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(media.is_dir(), "the entrypoint creates a missing MEDIA_ROOT");
    assert_eq!(std::fs::metadata(&media).unwrap().permissions().mode() & 0o777, 0o750);
    drop(dir);
}

#[test]
fn it_waits_a_bounded_time_for_the_database_and_never_prints_the_url() {
    let image = Image::new();
    // A port that refuses connections.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://stockflow:s3cret-password@127.0.0.1:{port}/stockflow");
    let output = image.run("api", &[("DATABASE_URL", &url), ("STARTUP_WAIT_SECS", "1")], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("database at 127.0.0.1:{port} not reachable after 1 s (STARTUP_WAIT_SECS)")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "the password leaked: {err}");
    assert_eq!(stdout(&output), "", "the service must not start");

    // Reachable: it goes on at once.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = format!("postgres://u:p@127.0.0.1:{}/db", listener.local_addr().unwrap().port());
    let output = image.run("api", &[("DATABASE_URL", &open), ("STARTUP_WAIT_SECS", "5")], &[]);
    assert_eq!(stdout(&output), "ran stockflow-api serve", "{}", stderr(&output));

    let bad = image.run("api", &[("STARTUP_WAIT_SECS", "soon")], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).starts_with("config error: STARTUP_WAIT_SECS:"), "{}", stderr(&bad));
}

#[test]
fn for_a_cluster_any_node_of_amqp_url_will_do() {
    let image = Image::new();
    let down = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let nodes = format!(
        "amqp://u:s3cret@127.0.0.1:{down}/%2f, amqp://u:s3cret@127.0.0.1:{}/%2f",
        up.local_addr().unwrap().port()
    );
    let output = image.run("worker", &[("AMQP_URL", &nodes), ("STARTUP_WAIT_SECS", "5")], &[]);
    assert_eq!(stdout(&output), "ran stockflow-worker serve", "{}", stderr(&output));

    let other_down = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nodes = format!("amqp://u:s3cret@127.0.0.1:{down}/%2f,amqp://u:s3cret@127.0.0.1:{other_down}/%2f");
    let output = image.run("worker", &[("AMQP_URL", &nodes), ("STARTUP_WAIT_SECS", "1")], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("broker at 127.0.0.1:{down}, 127.0.0.1:{other_down} not reachable after 1 s")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "the password leaked: {err}");
}

#[test]
fn health_checks_skip_every_check_and_wait() {
    let image = Image::new();
    let scratch = tempfile::tempdir().unwrap();
    let impossible = impossible_dir(scratch.path());
    let output = image.run(
        "worker",
        &[("MEDIA_ROOT", &impossible), ("DATABASE_URL", "postgres://u:p@127.0.0.1:1/db"), ("STARTUP_WAIT_SECS", "60")],
        &["healthcheck", "--ready"],
    );
    assert_eq!(stdout(&output), "ran stockflow-worker healthcheck --ready", "{}", stderr(&output));
}

#[test]
fn root_is_refused_unless_allowed() {
    let image = Image::new();
    let output = image.run("api", &[("ALLOW_ROOT", "false")], &[]);
    // Whether the refusal applies: `id -u`, as the entrypoint asks.
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    if uid.trim() == "0" {
        assert_eq!(output.status.code(), Some(2));
        assert!(stderr(&output).contains("refusing to run as root"), "{}", stderr(&output));
    } else {
        assert_eq!(stdout(&output), "ran stockflow-api serve", "{}", stderr(&output));
    }
}
