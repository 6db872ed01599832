//! A private nginx per test, running a shipped configuration
//! (`deploy/nginx/dev.conf` or `prod.conf.template`) with only its addresses and
//! paths swapped for the test's, so tests exercise what operators get.

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
    /// `deploy/nginx/dev.conf` (what `make services` runs), proxying to the
    /// API at `api_port` and serving the `internal` media location from
    /// `media_root`.
    pub async fn start(api_port: u16, media_root: &Path) -> Self {
        let port = crate::free_port();
        let config = shipped(
            "dev.conf",
            &[
                ("daemon on;", "daemon off;".to_owned()),
                ("listen 127.0.0.1:8088;", format!("listen 127.0.0.1:{port};")),
                ("server 127.0.0.1:8000;", format!("server 127.0.0.1:{api_port};")),
                ("alias ../../media/;", format!("alias {}/;", media_root.display())),
            ],
        );
        Self::run(config, port).await
    }

    /// `deploy/nginx/prod.conf.template` (the compose stack's) rendered as
    /// `deploy/nginx/start.sh` renders it, without TLS, with
    /// `locations.conf` inlined: the same swaps.
    pub async fn start_prod(api_port: u16, media_root: &Path) -> Self {
        let port = crate::free_port();
        let locations = shipped(
            "locations.conf",
            &[
                ("set $stockflow_api http://api:8000;", format!("set $stockflow_api http://127.0.0.1:{api_port};")),
                ("alias /var/lib/stockflow/media/;", format!("alias {}/;", media_root.display())),
            ],
        );
        let swaps = [
            ("listen 8080;", format!("listen 127.0.0.1:{port};")),
            ("include /etc/nginx/stockflow/locations.conf;", locations),
            // start.sh: MAX_UPLOAD_BYTES' default plus the multipart envelope.
            ("@CLIENT_MAX_BODY_SIZE@", (52_428_800 + 1_048_576).to_string()),
            ("@TLS_SERVER@", String::new()),
            // The container runs it in the foreground with `-g`.
            ("worker_processes auto;", "worker_processes auto;\ndaemon off;".to_owned()),
            // A file, not stderr: nobody reads the test's pipe, and a full
            // pipe would stall nginx.
            ("error_log /dev/stderr warn;", "error_log logs/error.log warn;".to_owned()),
            ("pid /tmp/nginx/nginx.pid;", "pid nginx.pid;".to_owned()),
            ("client_body_temp_path /tmp/nginx/client_body;", "client_body_temp_path tmp/client_body;".to_owned()),
            ("proxy_temp_path /tmp/nginx/proxy;", "proxy_temp_path tmp/proxy;".to_owned()),
            ("fastcgi_temp_path /tmp/nginx/fastcgi;", "fastcgi_temp_path tmp/fastcgi;".to_owned()),
            ("uwsgi_temp_path /tmp/nginx/uwsgi;", "uwsgi_temp_path tmp/uwsgi;".to_owned()),
            ("scgi_temp_path /tmp/nginx/scgi;", "scgi_temp_path tmp/scgi;".to_owned()),
        ];

        Self::run(shipped("prod.conf.template", &swaps), port).await
    }

    async fn run(config: String, port: u16) -> Self {
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

/// A shipped config with the test's swaps. It must still contain each text
/// a test swaps, exactly once, or the test would silently run something else.
fn shipped(name: &str, swaps: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx").join(name);
    let mut config = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read deploy/nginx/{name}: {error}"));
    for (from, to) in swaps {
        assert_eq!(config.matches(from).count(), 1, "deploy/nginx/{name} should contain `{from}` exactly once");
        config = config.replacen(from, to, 1);
    }
    config
}
