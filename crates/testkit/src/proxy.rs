use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP forwarder between a service under test and a real PostgreSQL or
/// RabbitMQ. `sever` cuts every open connection and refuses new ones, as a
/// crashed or unreachable server would; `restore` lets traffic through
/// again. Only the service behind this proxy is affected, so tests that run
/// in parallel keep their own connections.
pub struct TcpProxy {
    address: SocketAddr,
    open: Arc<watch::Sender<bool>>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy listener");
        let address = listener.local_addr().expect("proxy address");
        let open = Arc::new(watch::Sender::new(true));
        let accept_loop = tokio::spawn(accept(listener, upstream, open.clone()));
        Self { address, open, accept_loop }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn sever(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.sever();
        self.accept_loop.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, open: Arc<watch::Sender<bool>>) {
    while let Ok((client, _)) = listener.accept().await {
        if !*open.borrow() {
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, upstream, open.subscribe()));
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut open: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = open.wait_for(|open| !*open) => {}
    }
    // Dropping both sockets closes them: the service sees its peer vanish.
}
