//! `stockflow-<service> healthcheck [--ready]`: the container health check,
//! built into every binary so the images need no curl. It asks the running
//! service's own `/healthz` (or `/readyz`) on the address the service binds,
//! taken from the same variable the service reads, and exits 0 only on 200.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;
use stockflow_config::{ConfigError, Env};

/// Well under the 3 s a HEALTHCHECK or probe waits, so a hung service is
/// reported by this command's own message, not by the runtime's timeout.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Which endpoint to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/healthz`: the process serves requests.
    Live,
    /// `/readyz`: its database, broker and stores answer too.
    Ready,
}

impl Probe {
    pub fn from_ready_flag(ready: bool) -> Self {
        if ready { Self::Ready } else { Self::Live }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Live => "/healthz",
            Self::Ready => "/readyz",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("config error: {0}")]
    Config(#[from] ConfigError),
    #[error("{address}: {source}")]
    Unreachable { address: SocketAddr, source: std::io::Error },
    #[error("{address}{path} answered \"{status_line}\"")]
    Unhealthy { address: SocketAddr, path: &'static str, status_line: String },
}

/// Runs the check for the service that binds `bind_var` (default `default`)
/// and turns the outcome into the exit status, with one line on failure.
pub fn run(bind_var: &str, default: SocketAddr, probe: Probe) -> ExitCode {
    match check(&Env::from_process(), bind_var, default, probe) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("healthcheck: {error}");
            ExitCode::FAILURE
        }
    }
}

pub fn check(env: &Env, bind_var: &str, default: SocketAddr, probe: Probe) -> Result<(), HealthcheckError> {
    let address = reachable(env.or(bind_var, default)?);
    let path = probe.path();
    let status_line = status_line(address, path).map_err(|source| HealthcheckError::Unreachable { address, source })?;
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(HealthcheckError::Unhealthy { address, path, status_line })
    }
}

/// A service bound to every interface is asked on loopback.
fn reachable(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bind.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bind.port()),
        _ => bind,
    }
}

fn status_line(address: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    // One write: `write!` would send each piece of the format on its own.
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())?;
    // The status line fits in the first read of any sane answer; reading
    // no more keeps a large /readyz body from mattering.
    let mut head = [0u8; 256];
    let read = stream.read(&mut head)?;
    let text = String::from_utf8_lossy(&head[..read]);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// Answers every connection with `response`, for the life of the test
    /// process: not just the first, in case another test process probes
    /// this port (one it had from its own `free_port` moments ago).
    fn answering(response: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                // The whole request before the answer: closing with bytes
                // unread would reset the connection under the client.
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&chunk[..read]),
                    }
                }
                let _ = stream.write_all(response.as_bytes());
            }
        });
        address
    }

    fn env_binding(address: SocketAddr) -> Env {
        Env::from_pairs([("TEST_BIND", format!("0.0.0.0:{}", address.port()))])
    }

    #[test]
    fn a_200_is_healthy_and_the_unspecified_address_is_asked_on_loopback() {
        let address = answering("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        check(&env_binding(address), "TEST_BIND", address, Probe::Live).expect("healthy");
    }

    #[test]
    fn a_503_is_unhealthy_and_names_the_status() {
        let address = answering("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let error = check(&env_binding(address), "TEST_BIND", address, Probe::Ready).expect_err("unhealthy");
        assert!(
            matches!(&error, HealthcheckError::Unhealthy { path: "/readyz", status_line, .. } if status_line == "HTTP/1.1 503 Service Unavailable"),
            "{error}"
        );
    }

    #[test]
    fn nothing_listening_is_unreachable() {
        let address = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
        // The listener is dropped: the port is closed.
        let error = check(&env_binding(address), "TEST_BIND", address, Probe::Live).expect_err("unreachable");
        assert!(matches!(error, HealthcheckError::Unreachable { .. }), "{error}");
    }

    #[test]
    fn a_malformed_bind_variable_is_a_config_error_naming_it() {
        let env = Env::from_pairs([("TEST_BIND", "not-an-address")]);
        let error = check(&env, "TEST_BIND", SocketAddr::from(([127, 0, 0, 1], 1)), Probe::Live).expect_err("bad");
        assert!(error.to_string().starts_with("config error: TEST_BIND:"), "{error}");
    }
}
