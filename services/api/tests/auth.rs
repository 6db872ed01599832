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

/// The order a client relies on (docs/api.md): token, then role, then
/// input, then records.
#[tokio::test]
async fn the_token_is_checked_before_the_role_and_the_role_before_the_input() {
    let app = spawn_app().await;
    let viewer = token(&app, "acme", "viewer");
    let member = token(&app, "acme", "member");
    let unknown = format!("sf_{}", "Z".repeat(40));
    let bad_list = "/v1/batches?limit=0&status=nope&produced_from=yesterday";
    let bad_product = serde_json::json!({"sku": "", "name": "", "unit": ""});
    let status = |response: reqwest::Response| response.status().as_u16();

    let get = |token: &str, path: &str| app.http.get(app.url(path)).bearer_auth(token.to_owned()).send();
    let post =
        |token: &str| app.http.post(app.url("/v1/products")).bearer_auth(token.to_owned()).json(&bad_product).send();

    let unknown_list = get(&unknown, bad_list).await.unwrap();
    assert_eq!(unknown_list.status(), 401);
    assert!(unknown_list.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer "));
    assert_eq!(status(post(&unknown).await.unwrap()), 401, "an unknown token with a bad body");
    assert_eq!(status(post(&viewer).await.unwrap()), 403, "a viewer with a bad body");
    assert_eq!(status(post(&member).await.unwrap()), 422, "a member with a bad body");
    assert_eq!(status(get(&viewer, bad_list).await.unwrap()), 422, "a viewer with bad filters");
    let missing = format!("/v1/batches/{}", uuid::Uuid::new_v4());
    assert_eq!(status(get(&viewer, &missing).await.unwrap()), 404);

    app.database_proxy.sever();
    assert_eq!(status(get(&viewer, "/v1/batches").await.unwrap()), 503, "an outage is not a 401");
    app.database_proxy.restore();
}
