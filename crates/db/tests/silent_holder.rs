// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! The worker holds an export's row lock for the whole export; a second
//! delivery waits on it. Here the holder's link goes silent for real: the
//! server's packets to it are dropped (nftables, so root), nothing is
//! closed. The server must end the holder's session on its own and the
//! waiter must get the lock, instead of waiting the system's two hours.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer};
use std::process::Command;
use std::time::{Duration, Instant};
use stockflow_testkit::{TcpProxy, TestDatabase};
use uuid::Uuid;

#[derive(QueryableByName)]
struct Ids {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    org_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

#[derive(QueryableByName)]
struct Backend {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Integer)]
    server_port: i32,
}

#[derive(QueryableByName)]
struct Port {
    #[diesel(sql_type = Integer)]
    client_port: i32,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Drops every packet from the server's port to one client port while it
/// lives: the link is silent both ways for that connection only.
struct DroppedLink {
    table: String,
}

impl DroppedLink {
    fn drop_packets(server_port: i32, client_port: i32) -> Self {
        let table = format!("stockflow_test_{}_{client_port}", std::process::id());
        let rules = format!(
            "add table inet {table}\n\
             add chain inet {table} out {{ type filter hook output priority 0; }}\n\
             add rule inet {table} out tcp sport {server_port} tcp dport {client_port} drop\n"
        );
        let applied =
            Command::new("nft").args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn().and_then(|mut nft| {
                use std::io::Write;
                nft.stdin.take().expect("nft stdin").write_all(rules.as_bytes())?;
                nft.wait()
            });
        let status = applied.expect("run nft (make services installs nftables; the test needs root)");
        assert!(status.success(), "nft refused the rule: {status}");
        Self { table }
    }
}

impl Drop for DroppedLink {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.table]).status();
    }
}

#[test]
fn a_silent_lock_holder_is_ended_by_the_server_and_the_waiter_goes_on() {
    let database = TestDatabase::create();
    let mut waiter = database.connect();
    let export = diesel::sql_query(
        "WITH org AS (INSERT INTO organizations (slug, name) VALUES ('acme', 'Acme') RETURNING id) \
         INSERT INTO exports (org_id, kind, format, status) SELECT id, 'batches', 'csv', 'running' FROM org \
         RETURNING org_id, id",
    )
    .get_result::<Ids>(&mut waiter)
    .unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = waiter_server_address(&mut waiter);
    let proxy = runtime.block_on(TcpProxy::start(server));
    let holder_url = database.url_via(proxy.port());
    let (locked, holder_locked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut conn = PgConnection::establish(&holder_url).expect("connect through the proxy");
        let _ = conn.transaction::<_, diesel::result::Error, _>(|conn| {
            stockflow_db::exports::lock(conn, export.org_id, export.id)?.expect("the export exists");
            let backend = diesel::sql_query("SELECT pg_backend_pid() AS pid, inet_server_port() AS server_port")
                .get_result::<Backend>(conn)?;
            locked.send(backend).expect("the test waits");
            // Holds the lock, quietly, until the test is done.
            let _ = released.recv();
            Ok(())
        });
    });
    let backend = holder_locked.recv_timeout(Duration::from_secs(30)).expect("the holder took the lock");
    let client_port = diesel::sql_query("SELECT client_port FROM pg_stat_activity WHERE pid = $1")
        .bind::<Integer, _>(backend.pid)
        .get_result::<Port>(&mut waiter)
        .unwrap()
        .client_port;
    let silence = DroppedLink::drop_packets(backend.server_port, client_port);

    let started = Instant::now();
    let got = waiter
        .transaction::<_, diesel::result::Error, _>(|conn| {
            // Bounds the test, far past what the holder's settings allow.
            diesel::sql_query("SET LOCAL lock_timeout = '90s'").execute(conn)?;
            stockflow_db::exports::lock(conn, export.org_id, export.id)
        })
        .expect("the waiter gets the lock once the server has ended the silent holder");
    let waited = started.elapsed();
    assert!(got.is_some());
    let alive = diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1")
        .bind::<Integer, _>(backend.pid)
        .get_result::<Count>(&mut waiter)
        .unwrap()
        .n;
    assert_eq!(alive, 0, "the server ended the holder's session");
    // Keepalive probes from 10 s idle, 5 s apart; given up after 30 s.
    assert!(
        waited >= Duration::from_secs(20),
        "the lock was held until the probes ran out, not freed early: {waited:?}"
    );

    drop(silence);
    // Severs the holder's side too, so its thread ends at once.
    drop(proxy);
    release.send(()).unwrap();
    holder.join().expect("the holder thread ends");
    eprintln!("the waiter had the lock after {waited:?}");
}

fn waiter_server_address(conn: &mut PgConnection) -> std::net::SocketAddr {
    #[derive(QueryableByName)]
    struct Address {
        #[diesel(sql_type = Integer)]
        port: i32,
    }
    let port = diesel::sql_query("SELECT inet_server_port() AS port").get_result::<Address>(conn).unwrap().port;
    std::net::SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap()))
}
