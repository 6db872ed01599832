// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use diesel::prelude::*;
use std::time::Duration;
use stockflow_testkit::{TcpProxy, TestDatabase, admin_database_url};

#[test]
fn each_test_database_is_migrated_separate_and_dropped_afterwards() {
    let first = TestDatabase::create();
    let second = TestDatabase::create();
    assert_ne!(first.name(), second.name());
    assert!(stockflow_db::pending_migrations(&mut first.connect()).expect("pending").is_empty());

    diesel::sql_query("INSERT INTO organizations (slug, name) VALUES ('only-in-first', 'x')")
        .execute(&mut first.connect())
        .expect("insert");
    let in_second: i64 =
        stockflow_db::schema::organizations::table.count().get_result(&mut second.connect()).expect("count");
    assert_eq!(in_second, 0);

    let name = first.name().to_owned();
    // An open connection must not keep the database alive.
    let _still_connected = first.connect();
    drop(first);
    assert!(!TestDatabase::exists(&name), "{name} was not dropped");
}

#[tokio::test]
async fn a_severed_proxy_cuts_connections_and_a_restored_one_lets_them_through() {
    let upstream = url::Url::parse(&admin_database_url()).expect("url");
    let target = format!("{}:{}", upstream.host_str().expect("host"), upstream.port().unwrap_or(5432));
    let proxy = TcpProxy::start(tokio::net::lookup_host(target).await.expect("resolve").next().expect("addr")).await;
    let mut via_proxy = upstream.clone();
    via_proxy.set_port(Some(proxy.port())).expect("port");
    let url = via_proxy.to_string();

    let query = move |url: String| {
        tokio::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&url).map_err(|e| e.to_string())?;
            diesel::sql_query("SELECT 1").execute(&mut conn).map_err(|e| e.to_string())
        })
    };
    assert_eq!(query(url.clone()).await.expect("join"), Ok(1));

    let open = tokio::task::spawn_blocking({
        let url = url.clone();
        move || PgConnection::establish(&url).expect("connect")
    })
    .await
    .expect("join");
    proxy.sever();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut open = open;
    assert!(diesel::sql_query("SELECT 1").execute(&mut open).is_err(), "an open connection survived sever");
    assert!(query(url.clone()).await.expect("join").is_err(), "a new connection got through a severed proxy");

    proxy.restore();
    assert_eq!(query(url).await.expect("join"), Ok(1));
}
