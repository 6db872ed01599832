// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! The shipped nginx configurations in front of a real api: what the world
//! may not see, and the per-address limits of the production one.

mod common;

use common::{Value, spawn_app, token};
use futures_util::future::join_all;
use stockflow_testkit::{Nginx, TestApp};

fn media(app: &TestApp) -> std::path::PathBuf {
    app.storage_root.path().join("media")
}

#[tokio::test]
async fn neither_config_shows_metrics_or_readiness_to_the_world() {
    let app = spawn_app().await;
    let dev = Nginx::start(app.address.port(), &media(&app)).await;
    let prod = Nginx::start_prod(app.address.port(), &media(&app)).await;
    for nginx in [&dev, &prod] {
        for path in ["/metrics", "/readyz"] {
            let direct = app.get(path).await.status();
            assert!(direct == 200 || direct == 503, "the api itself serves {path}: {direct}");
            let via = app.http.get(nginx.url(path)).send().await.unwrap().status();
            assert_eq!(via, 404, "{path} through nginx");
        }
        assert_eq!(app.http.get(nginx.url("/healthz")).send().await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn the_production_proxy_limits_each_address_with_a_problem_and_retry_after() {
    let app = spawn_app().await;
    let viewer = token(&app, "acme", "viewer");
    let nginx = Nginx::start_prod(app.address.port(), &media(&app)).await;
    // 300 requests in waves of 30, below the 32 open requests an address
    // may have: the burst of 100 passes, and at 20 requests/s for however
    // long the waves take, the rest is refused.
    let mut passed = 0;
    let mut limited = Vec::new();
    for _ in 0..10 {
        let wave = join_all((0..30).map(|_| app.http.get(nginx.url("/v1/me")).bearer_auth(&viewer).send())).await;
        for response in wave {
            let response = response.unwrap();
            match response.status().as_u16() {
                200 => passed += 1,
                429 => limited.push(response),
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert!(passed >= 100, "the burst passes: {passed} of 300");
    assert!(limited.len() >= 50, "the rest is limited: {} of 300", limited.len());
    let refused = limited.pop().unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.headers()["content-type"].to_str().unwrap().starts_with("application/problem+json"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!((problem["status"].as_u64(), problem["code"].as_str()), (Some(429), Some("rate_limited")), "{problem}");
}
