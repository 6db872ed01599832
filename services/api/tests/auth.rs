// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! Bearer tokens against `GET /v1/me`, with tokens made the way an operator
//! makes them.

use diesel::prelude::*;
use stockflow_api::commands::{TokenRequest, create_token};
use stockflow_api::{Application, Settings};
use stockflow_db::schema::api_tokens;
use stockflow_testkit::TestApp;

async fn spawn_app() -> TestApp {
    TestApp::builder()
        .spawn(|env, shutdown| async move {
            let app = Application::build(Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await
}

fn token(app: &TestApp, org: &str, role: &str) -> String {
    let request =
        TokenRequest { org: org.into(), role: role.into(), name: "test".into(), email: None, expires_in: None };
    create_token(&mut app.database.connect(), request).expect("create token").expose().to_owned()
}

async fn me(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.url("/v1/me"));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.expect("GET /v1/me")
}

#[tokio::test]
async fn a_valid_token_identifies_its_organization_user_and_role() {
    let app = spawn_app().await;
    let token = token(&app, "acme", "member");
    let response = me(&app, Some(&format!("Bearer {token}"))).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["organization"]["slug"], "acme");
    assert_eq!(body["user"]["role"], "member");
    assert_eq!(body["token"]["name"], "test");
    assert!(!body.to_string().contains(&token), "the token must never be echoed");
}

#[tokio::test]
async fn missing_malformed_unknown_revoked_and_expired_tokens_get_401_problems() {
    let app = spawn_app().await;
    let revoked = token(&app, "acme", "admin");
    let expired = token(&app, "acme", "viewer");
    let mut conn = app.database.connect();
    let ids: Vec<uuid::Uuid> =
        api_tokens::table.select(api_tokens::id).order(api_tokens::created_at.asc()).load(&mut conn).unwrap();
    let [revoked_id, expired_id] = ids[..] else { panic!("two tokens expected, got {ids:?}") };
    diesel::update(api_tokens::table.find(revoked_id))
        .set(api_tokens::revoked_at.eq(diesel::dsl::now))
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query(
        "UPDATE api_tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day' WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(expired_id)
    .execute(&mut conn)
    .unwrap();
    let unknown = format!("sf_{}", "Z".repeat(40));

    let cases = [
        (None, "send Authorization"),
        (Some("Basic dXNlcjpwYXNz".to_owned()), "only the Bearer scheme"),
        (Some("Bearer not-a-token".to_owned()), "malformed"),
        (Some(format!("Bearer {unknown}")), "unknown, revoked or expired"),
        (Some(format!("Bearer {revoked}")), "unknown, revoked or expired"),
        (Some(format!("Bearer {expired}")), "unknown, revoked or expired"),
    ];
    for (authorization, detail) in cases {
        let response = me(&app, authorization.as_deref()).await;
        assert_eq!(response.status(), 401, "{authorization:?}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer "));
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "unauthorized");
        assert_eq!(problem["status"], 401);
        assert!(problem["detail"].as_str().unwrap().contains(detail), "{authorization:?}: {problem}");
    }
}

#[tokio::test]
async fn a_database_outage_is_a_503_problem_not_a_401() {
    let app = spawn_app().await;
    let token = token(&app, "acme", "admin");
    app.database_proxy.sever();
    let response = me(&app, Some(&format!("Bearer {token}"))).await;
    assert_eq!(response.status(), 503);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "service_unavailable");
    app.database_proxy.restore();
}
