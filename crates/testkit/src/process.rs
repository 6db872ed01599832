//! Service binaries run as real processes, for what only a process shows:
//! exit codes, what reaches stdout and stderr, and how it meets SIGTERM.

use crate::group::{Leftovers, ProcessGroup};
use crate::{TestDatabase, amqp_url, service_env, unique_namespace};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use stockflow_config::Env;

/// A free TCP port on 127.0.0.1 (free when asked; fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind port 0").port()
}

/// A working environment for a binary: its own database and namespace.
pub struct ProcessEnv {
    pub env: Env,
    pub database: TestDatabase,
    pub storage_root: tempfile::TempDir,
}

impl ProcessEnv {
    pub fn new() -> Self {
        let database = TestDatabase::create();
        let storage_root = tempfile::tempdir().expect("create storage root");
        let env =
            service_env(database.url(), &amqp_url(), &unique_namespace(), &storage_root.path().display().to_string());
        Self { env, database, storage_root }
    }

    pub fn with(mut self, var: &str, value: &str) -> Self {
        self.env = std::mem::take(&mut self.env).with(var, value);
        self
    }

    pub fn command(&self, binary: &str) -> Command {
        let mut command = Command::new(binary);
        // Only what we pass: a developer's shell variables must not leak in.
        command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        command.envs(self.env.iter());
        command
    }

    pub fn run(&self, binary: &str, args: &[&str]) -> Output {
        self.command(binary).args(args).stdin(Stdio::null()).output().expect("run service binary")
    }
}

impl Drop for ProcessEnv {
    fn drop(&mut self) {
        if let Some(namespace) = self.env.get("AMQP_NAMESPACE") {
            crate::broker::delete_namespace(namespace);
        }
    }
}

impl Default for ProcessEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `binary` with one variable set to a bad value and checks that it
/// stops at once with exit code 2 and one stderr line naming the variable.
pub fn assert_config_error(binary: &str, var: &str, bad_value: Option<&str>) {
    let base = ProcessEnv::new();
    let mut command = base.command(binary);
    match bad_value {
        Some(value) => command.env(var, value),
        None => command.env_remove(var),
    };
    let output = command.stdin(Stdio::null()).output().expect("run service binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{var}={bad_value:?}: status {:?}, stderr {stderr}", output.status);
    assert_eq!(stderr.lines().count(), 1, "one line expected for {var}, got: {stderr}");
    assert!(stderr.starts_with(&format!("config error: {var}: ")), "{stderr}");
    if let Some(value) = bad_value.filter(|_| !var.ends_with("_URL")) {
        assert!(stderr.contains(&format!("got \"{value}\"")), "{stderr}");
    }
}

/// A running service binary in a process group of its own: SIGTERM if the
/// test forgets to stop it, and a test that leaves any of its processes
/// running fails.
pub struct ServiceProcess {
    process: ProcessGroup,
    pub port: u16,
}

impl ServiceProcess {
    /// Starts `binary` with its HTTP (or health) endpoint on a free port set
    /// through `bind_var`.
    pub fn spawn(env: &ProcessEnv, binary: &str, bind_var: &str) -> Self {
        let port = free_port();
        let mut command = env.command(binary);
        command
            .env(bind_var, format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        Self { process: ProcessGroup::spawn(command, binary, "TERM"), port }
    }

    pub async fn wait_ready(&self, within: Duration) {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let client = crate::http_client();
        crate::eventually(&format!("{url} to answer 200"), within, || async {
            let response = client.get(&url).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await
    }

    /// SIGKILL: the process gets no chance to clean up, as in a crash or
    /// an out-of-memory kill.
    pub fn kill(&mut self) -> ExitStatus {
        self.process.signal_leader("KILL");
        self.process.child_mut().wait().expect("reap the service")
    }

    /// Sends SIGTERM and waits up to `limit` for the process, and anything
    /// it started, to exit.
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        match self.process.stop_with("TERM", limit) {
            Ok(status) => (status, started.elapsed()),
            Err(Leftovers(left)) => panic!("still running {limit:?} after SIGTERM: {left:?}"),
        }
    }
}

/// Waits until `child`, a server a test started, accepts connections on
/// `port`; fails the test if it exits first (with its stderr, when piped) or
/// takes longer than 10 s.
pub(crate) async fn wait_until_listening(child: &mut std::process::Child, port: u16, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("{name} exited at start with {status}: {stderr}");
        }
        assert!(std::time::Instant::now() < deadline, "{name} did not listen on port {port} within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
