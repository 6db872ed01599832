//! What every Stockflow service promises operators, as checks each service's
//! own tests run against itself.

use crate::{ProcessEnv, ServiceProcess, TestApp, assert_config_error};
use std::time::Duration;

/// A dependency that goes away must show on `/readyz` within this long...
const NOTICE_WITHIN: Duration = Duration::from_secs(10);
/// ...and the service must be ready again this long after it returns,
/// without a restart (reconnect backoff is capped at 5 s).
const RECOVER_WITHIN: Duration = Duration::from_secs(15);

/// `/healthz` answers 200, `/readyz` answers 200 with every check "ok",
/// and `/metrics` names the service, in OpenMetrics when asked for it.
pub async fn healthy_and_ready(app: &TestApp) {
    assert_eq!(app.get("/healthz").await.status(), 200);
    let body = app.wait_for_readyz(200, RECOVER_WITHIN).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["broker"], "ok");
    let metrics = app.http.get(app.url("/metrics")).header("accept", OPENMETRICS).send().await.expect("/metrics");
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"].to_str().unwrap_or_default().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = metrics.text().await.expect("a text body");
    assert!(text.lines().any(|line| line.starts_with("stockflow_build_info{service=")), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// What Prometheus sends.
const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Cutting the broker, then the database, turns `/readyz` into a 503 that
/// names what is down; restoring each brings 200 back with no restart.
pub async fn readiness_follows_dependencies(app: &TestApp) {
    healthy_and_ready(app).await;
    for (name, proxy) in [("broker", &app.broker_proxy), ("database", &app.database_proxy)] {
        proxy.sever();
        let body = app.wait_until_down(name, NOTICE_WITHIN).await;
        assert_eq!(body["status"], "not_ready", "{body}");
        // The reason, not the driver's error: that names hosts and ports.
        assert!(!body.to_string().contains(&format!(":{}", proxy.port())), "an address leaked: {body}");
        assert_eq!(app.get("/healthz").await.status(), 200, "liveness must not follow dependencies");
        proxy.restore();
        let body = app.wait_for_readyz(200, RECOVER_WITHIN).await;
        assert_eq!(body["checks"][name], "ok");
    }
}

/// A store whose root becomes unusable turns `/readyz` into a 503 naming
/// that store (`storage` or `backup_storage`); once the root is back, 200
/// returns with no restart. `dir` is the store's root under the test's
/// storage root (`media` or `backups`). The root is replaced by a plain file
/// rather than made read-only, because tests may run as root.
pub async fn readiness_follows_storage(app: &TestApp, name: &str, dir: &str) {
    healthy_and_ready(app).await;
    assert_eq!(app.readyz().await.1["checks"][name], "ok", "{name} should be on /readyz");
    let root = app.storage_root.path().join(dir);
    let aside = app.storage_root.path().join(format!("{dir}-aside"));
    std::fs::rename(&root, &aside).expect("move the store's root aside");
    std::fs::write(&root, b"not a directory").expect("put a file in its place");
    let body = app.wait_until_down(name, NOTICE_WITHIN).await;
    assert_eq!(body["status"], "not_ready", "{body}");
    let root_path = app.storage_root.path().display().to_string();
    assert!(!body.to_string().contains(&root_path), "a path leaked: {body}");
    std::fs::remove_file(&root).expect("remove the file");
    std::fs::rename(&aside, &root).expect("put the root back");
    let body = app.wait_for_readyz(200, RECOVER_WITHIN).await;
    assert_eq!(body["checks"][name], "ok");
}

/// Each bad variable stops the binary with exit 2 and one line naming it.
/// `None` means "unset".
pub fn config_errors(binary: &str, cases: &[(&str, Option<&str>)]) {
    let shared: [(&str, Option<&str>); 6] = [
        ("DATABASE_URL", None),
        ("DATABASE_URL", Some("mysql://root@127.0.0.1/stockflow")),
        ("AMQP_URL", Some("amqp://127.0.0.1:notaport")),
        ("DATABASE_POOL_SIZE", Some("ten")),
        ("AMQP_NAMESPACE", Some("Not Valid")),
        ("LOG_FORMAT", Some("xml")),
    ];
    for (var, value) in shared.iter().chain(cases) {
        assert_config_error(binary, var, *value);
    }
}

/// SIGTERM stops a ready service with exit code 0 well within 10 s.
pub async fn stops_on_sigterm(binary: &str, bind_var: &str) {
    let env = ProcessEnv::new();
    let mut service = ServiceProcess::spawn(&env, binary, bind_var);
    service.wait_ready(Duration::from_secs(30)).await;
    let (status, took) = service.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(took < Duration::from_secs(10), "took {took:?} to stop");
}
