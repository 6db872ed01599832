use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP forwarder between a service under test and a real PostgreSQL or
/// RabbitMQ. `sever` cuts every open connection and refuses new ones, as a
/// crashed or unreachable server would; `freeze` keeps every connection
/// open but silent, new ones included, as a link that drops packets
/// without closing anything; `restore` lets traffic through again (a
/// connection that was frozen is closed then: what it was sending is
/// lost). Only the service behind this proxy is affected, so tests that
/// run in parallel keep their own connections.
pub struct TcpProxy {
    address: SocketAddr,
    state: Arc<watch::Sender<Link>>,
    accept_loop: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Open,
    Severed,
    Frozen,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy listener");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(watch::Sender::new(Link::Open));
        let accept_loop = tokio::spawn(accept(listener, upstream, state.clone()));
        Self { address, state, accept_loop }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn sever(&self) {
        self.state.send_replace(Link::Severed);
    }

    pub fn freeze(&self) {
        self.state.send_replace(Link::Frozen);
    }

    pub fn restore(&self) {
        self.state.send_replace(Link::Open);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.sever();
        self.accept_loop.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, state: Arc<watch::Sender<Link>>) {
    while let Ok((client, _)) = listener.accept().await {
        let link = *state.borrow();
        match link {
            Link::Severed => drop(client),
            Link::Frozen => {
                tokio::spawn(hold(client, state.subscribe()));
            }
            Link::Open => {
                tokio::spawn(forward(client, upstream, state.subscribe()));
            }
        }
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<Link>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        _ = state.wait_for(|link| *link != Link::Open) => {}
    }
    if *state.borrow() == Link::Frozen {
        // Both sockets stay open and nothing moves until the link changes.
        let _ = state.wait_for(|link| *link != Link::Frozen).await;
    }
    // Dropping both sockets closes them: the service sees its peer vanish.
}

/// A connection accepted while frozen: open, and never an answer.
async fn hold(client: TcpStream, mut state: watch::Receiver<Link>) {
    let _ = state.wait_for(|link| *link != Link::Frozen).await;
    drop(client);
}
