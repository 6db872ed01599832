//! The conformance suite against a real S3-compatible server (s3s-fs, which
//! checks signatures and presigned-URL expiry), one private server per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use stockflow_config::{Env, StorageBackendKind, StorageSettings};
use stockflow_storage::conformance::Fixture;
use stockflow_storage::{S3, Storage};
use stockflow_testkit::S3Server;

struct S3Fixture {
    storage: Arc<S3>,
    server: S3Server,
}

fn s3_on(server: &S3Server, bucket: &str, part_size: Option<&str>) -> S3 {
    let mut env = Env::from_pairs(server.env("S3_", bucket)).with("STORAGE_BACKEND", "s3");
    if let Some(part_size) = part_size {
        env = env.with("S3_PART_SIZE_BYTES", part_size);
    }
    let StorageBackendKind::S3(settings) = StorageSettings::from_env(&env).unwrap().backend else {
        panic!("STORAGE_BACKEND=s3 did not select S3")
    };
    S3::new(&settings).unwrap()
}

async fn fixture() -> S3Fixture {
    let server = S3Server::start().await;
    server.create_bucket("media");
    // The smallest part S3 allows, so a few MiB already take the multipart path.
    let storage = Arc::new(s3_on(&server, "media", Some("5242880")));
    S3Fixture { storage, server }
}

#[async_trait::async_trait]
impl Fixture for S3Fixture {
    fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    async fn leftovers(&self) -> Vec<String> {
        self.server.unfinished_uploads()
    }

    async fn broken(&self) -> Arc<dyn Storage> {
        Arc::new(s3_on(&self.server, "no-such-bucket", None))
    }

    fn presigns(&self) -> bool {
        true
    }

    /// s3s-fs answers ListMultipartUploads with NotImplemented.
    fn finds_crashed_puts(&self) -> bool {
        false
    }
}

stockflow_storage::storage_conformance_tests!(fixture);

#[tokio::test]
async fn presigned_urls_name_the_public_endpoint() {
    let server = S3Server::start().await;
    server.create_bucket("media");
    let env = Env::from_pairs(server.env("S3_", "media"))
        .with("STORAGE_BACKEND", "s3")
        .with("S3_PUBLIC_ENDPOINT", "https://files.example.com");
    let StorageBackendKind::S3(settings) = StorageSettings::from_env(&env).unwrap().backend else { panic!() };
    let storage = S3::new(&settings).unwrap();
    let key = stockflow_storage::Key::parse("a/b").unwrap();
    let url = storage.presign_get(&key, std::time::Duration::from_secs(60), "b.txt").await.unwrap().unwrap();
    assert_eq!((url.scheme(), url.host_str()), ("https", Some("files.example.com")));
    assert_eq!(url.path(), "/media/a/b");
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query.get("X-Amz-Expires").map(String::as_str), Some("60"));
    assert_eq!(query.get("response-content-disposition").map(String::as_str), Some(r#"attachment; filename="b.txt""#));
}

#[tokio::test]
async fn a_store_that_is_down_fails_its_health_check() {
    let server = S3Server::start().await;
    server.create_bucket("media");
    let storage = s3_on(&server, "media", None);
    storage.health_check().await.unwrap();
    drop(server);
    let error = storage.health_check().await.expect_err("health check passed with the server gone");
    assert!(error.to_string().contains("health check"), "{error}");
}

#[tokio::test]
async fn a_store_that_accepts_connections_but_never_answers_fails_the_put_within_the_timeouts() {
    // Takes every connection and holds it, reading nothing, answering nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        loop {
            let (connection, _) = listener.accept().await.unwrap();
            connections.push(connection);
        }
    });
    let env = Env::from_pairs([
        ("STORAGE_BACKEND", "s3"),
        ("S3_BUCKET", "media"),
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("S3_READ_TIMEOUT_SECS", "1"),
        ("S3_OPERATION_TIMEOUT_SECS", "2"),
        ("AWS_ACCESS_KEY_ID", "stockflow"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ]);
    let StorageBackendKind::S3(settings) = StorageSettings::from_env(&env).unwrap().backend else { panic!() };
    let storage = S3::new(&settings).unwrap();
    let key = stockflow_storage::Key::parse("org/exports/hung.csv").unwrap();
    let body = futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"id\n1\n"))]);

    let started = std::time::Instant::now();
    let put = storage.put(&key, Box::pin(body), stockflow_storage::PutMode::Overwrite);
    // The outer limit only turns a hang into a failure of this test.
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), put).await;
    let took = started.elapsed();
    let error = outcome.expect("the put gave up by itself").expect_err("a store that never answers took the put");
    assert!(took < std::time::Duration::from_secs(5), "the put failed only after {took:?}");
    assert!(error.to_string().contains("timeout") || error.to_string().contains("timed out"), "{error}");
    held.abort();
}
