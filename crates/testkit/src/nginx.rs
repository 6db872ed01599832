//! A private nginx per test, running the shipped `deploy/nginx/dev.conf`
//! with only its addresses and paths swapped for the test's, so tests
//! exercise the configuration operators get.

use crate::group::ProcessGroup;
use std::path::Path;
use std::process::{Command, Stdio};

/// Stopped on drop with SIGQUIT, nginx's graceful stop: the master waits
/// for its workers and exits; a worker left behind fails the test.
pub struct Nginx {
    process: ProcessGroup,
    port: u16,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    /// Proxies to the API at `api_port` and serves the `internal` media
    /// location from `media_root`.
    pub async fn start(api_port: u16, media_root: &Path) -> Self {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx/dev.conf");
        let config = std::fs::read_to_string(&shipped).expect("read deploy/nginx/dev.conf");
        let port = crate::free_port();
        let media = format!("{}/", media_root.display());
        let config = replace_once(&config, "daemon on;", "daemon off;");
        let config = replace_once(&config, "listen 127.0.0.1:8088;", &format!("listen 127.0.0.1:{port};"));
        let config = replace_once(&config, "server 127.0.0.1:8000;", &format!("server 127.0.0.1:{api_port};"));
        let config = replace_once(&config, "alias ../../media/;", &format!("alias {media};"));
        let prefix = tempfile::tempdir().expect("nginx prefix");
        for dir in ["logs", "tmp"] {
            std::fs::create_dir_all(prefix.path().join(dir)).expect("nginx directories");
        }
        let conf = prefix.path().join("nginx.conf");
        std::fs::write(&conf, config).expect("write nginx.conf");
        let binary = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "nginx"]
            .into_iter()
            .find(|candidate| Path::new(candidate).is_file())
            .unwrap_or("nginx");
        let mut command = Command::new(binary);
        command
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.path().join("logs/error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let process = ProcessGroup::spawn(command, &format!("nginx ({binary}; `make services` installs it)"), "QUIT");
        let mut nginx = Self { process, port, _prefix: prefix };
        crate::process::wait_until_listening(nginx.process.child_mut(), nginx.port, "nginx").await;
        nginx
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The shipped config must still contain what the test swaps, or the test
/// would silently run something else.
fn replace_once(config: &str, from: &str, to: &str) -> String {
    assert_eq!(config.matches(from).count(), 1, "deploy/nginx/dev.conf should contain `{from}` exactly once");
    config.replacen(from, to, 1)
}
