//! A private S3-compatible server per test: the same s3s-fs that `make
//! services` runs on :9000, started on a free port with its own data
//! directory, so a test can see exactly which unfinished uploads are its own.

use crate::group::ProcessGroup;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The development credentials of `make services`.
pub const S3_ACCESS_KEY: &str = "stockflow";
pub const S3_SECRET_KEY: &str = "stockflow-dev-secret";

/// Stopped with SIGTERM on drop; a process left behind fails the test.
pub struct S3Server {
    process: ProcessGroup,
    port: u16,
    data: tempfile::TempDir,
}

impl S3Server {
    /// Fails the test when s3s-fs is missing: a conformance run without a
    /// real server would prove nothing. `make services` installs it.
    pub async fn start() -> Self {
        let binary = binary();
        assert!(binary.is_file(), "s3s-fs not found ({}): run `make services`, which installs it", binary.display());
        let data = tempfile::tempdir().expect("create the S3 data directory");
        let port = crate::free_port();
        let mut command = Command::new(&binary);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = ProcessGroup::spawn(command, &binary.display().to_string(), "TERM");
        let mut server = Self { process, port, data };
        crate::process::wait_until_listening(server.process.child_mut(), server.port, "s3s-fs").await;
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// s3s-fs keeps each bucket as a directory of its root.
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.data.path().join(name)).expect("create bucket directory");
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The parts of multipart uploads that were neither completed nor
    /// aborted. Read from the data directory because s3s-fs does not
    /// implement ListMultipartUploads; this server serves one test, so every
    /// upload here is that test's.
    pub fn unfinished_uploads(&self) -> Vec<String> {
        std::fs::read_dir(self.data.path())
            .expect("read the S3 data directory")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with(".upload"))
            .collect()
    }

    /// Settings for a storage instance on `bucket`, as a service would read
    /// them (`prefix` is `S3_` or `BACKUP_S3_`).
    pub fn env(&self, prefix: &str, bucket: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}BUCKET"), bucket.to_owned()),
            (format!("{prefix}ENDPOINT"), self.endpoint()),
            (format!("{prefix}FORCE_PATH_STYLE"), "true".to_owned()),
            ("AWS_ACCESS_KEY_ID".to_owned(), S3_ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), S3_SECRET_KEY.to_owned()),
        ]
    }
}

/// `S3S_FS` names another binary; otherwise the one on `PATH` or in cargo's
/// bin directory, where `make services` installs it.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("S3S_FS") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    on_path.or_else(|| cargo_home.map(|home| home.join("bin/s3s-fs"))).unwrap_or_else(|| PathBuf::from("s3s-fs"))
}
