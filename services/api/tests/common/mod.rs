//! What the API's HTTP tests share: an app on a fresh database, tokens made
//! the way an operator makes them, and a request helper that checks every
//! error is a well-formed problem.

#![allow(dead_code, unused_imports, clippy::expect_used, clippy::unwrap_used)]

pub(crate) use reqwest::Method;
pub(crate) use serde_json::{Value, json};
use stockflow_api::commands::{TokenRequest, create_token};
use stockflow_api::{Application, Settings};
use stockflow_testkit::TestApp;

pub(crate) async fn spawn_app() -> TestApp {
    spawn_api(TestApp::builder()).await
}

/// The api with what `builder` adds (settings of its own).
pub(crate) async fn spawn_api(builder: stockflow_testkit::TestAppBuilder) -> TestApp {
    builder
        .spawn(|env, shutdown| async move {
            let app = Application::build(Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await
}

pub(crate) fn token(app: &TestApp, org: &str, role: &str) -> String {
    let request = TokenRequest {
        org: org.into(),
        role: role.into(),
        name: "test".into(),
        email: None,
        expires_in: None,
        operator: false,
    };
    create_token(&mut app.database.connect(), request).expect("create token").expose().to_owned()
}

pub(crate) async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let is_problem = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("application/problem+json"));
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("a JSON body") };
    if status >= 400 {
        assert!(is_problem, "{status} must be application/problem+json: {body}");
        assert_eq!(body["status"], status);
        assert!(body["code"].is_string() && body["type"].is_string() && body["title"].is_string(), "{body}");
    }
    (status, body)
}

/// Waits until the relay has published every job the test's requests wrote.
pub(crate) async fn wait_for_outbox(app: &TestApp) {
    use diesel::prelude::*;
    use stockflow_db::schema::outbox;
    stockflow_testkit::eventually("the outbox to drain", std::time::Duration::from_secs(15), || async {
        let left: i64 = outbox::table
            .filter(outbox::published_at.is_null())
            .count()
            .get_result(&mut app.database.connect())
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
}
