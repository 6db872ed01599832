// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! `/v1/tokens`, and `last_used_at` kept without a write per request.

mod common;

use common::{Method, call, json, spawn_app, token};
use diesel::prelude::*;
use stockflow_db::schema::api_tokens;

#[tokio::test]
async fn admins_issue_tokens_that_work_once_shown_and_revoke_them() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    let body = json!({"name": "dashboard", "role": "viewer", "expires_in": "30d"});
    let (status, issued) = call(&app, &admin, Method::POST, "/v1/tokens", Some(body)).await;
    assert_eq!(status, 201, "{issued}");
    let secret = issued["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sf_"));
    assert_eq!(
        (issued["role"].as_str(), issued["email"].as_str()),
        (Some("viewer"), Some("viewer@acme.stockflow.invalid"))
    );
    assert!(issued["expires_at"].is_string());

    let (status, me) = call(&app, &secret, Method::GET, "/v1/me", None).await;
    assert_eq!((status, me["user"]["role"].as_str()), (200, Some("viewer")));

    let (status, listing) = call(&app, &admin, Method::GET, "/v1/tokens", None).await;
    assert_eq!(status, 200);
    assert_eq!(listing["items"].as_array().unwrap().len(), 2);
    assert!(!listing.to_string().contains(&secret), "a listing never shows a secret");
    assert!(listing["items"].as_array().unwrap().iter().all(|t| t.get("token").is_none()));

    let path = format!("/v1/tokens/{}", issued["id"].as_str().unwrap());
    assert_eq!(call(&app, &admin, Method::DELETE, &path, None).await.0, 204);
    assert_eq!(call(&app, &admin, Method::DELETE, &path, None).await.0, 204, "revoking twice is harmless");
    let (status, problem) = call(&app, &secret, Method::GET, "/v1/me", None).await;
    assert_eq!((status, problem["code"].as_str()), (401, Some("unauthorized")));
}

#[tokio::test]
async fn only_admins_manage_tokens_and_only_their_orgs() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    for (method, path, body) in [
        (Method::GET, "/v1/tokens".to_owned(), None),
        (Method::POST, "/v1/tokens".to_owned(), Some(json!({"name": "x", "role": "viewer"}))),
        (Method::DELETE, format!("/v1/tokens/{}", uuid::Uuid::new_v4()), None),
    ] {
        let (status, problem) = call(&app, &member, method.clone(), &path, body).await;
        assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")), "{method} {path}");
    }
    let acme = token(&app, "acme", "admin");
    let globex = token(&app, "globex", "admin");
    let (_, theirs) = call(&app, &globex, Method::GET, "/v1/tokens", None).await;
    let their_id = theirs["items"][0]["id"].as_str().unwrap();
    let (status, problem) = call(&app, &acme, Method::DELETE, &format!("/v1/tokens/{their_id}"), None).await;
    assert_eq!((status, problem["detail"].as_str()), (404, Some("no such token")));
    assert_eq!(call(&app, &globex, Method::GET, "/v1/me", None).await.0, 200, "their token still works");

    let bad = json!({"name": "", "role": "owner", "expires_in": "forever"});
    let (status, problem) = call(&app, &acme, Method::POST, "/v1/tokens", Some(bad)).await;
    assert_eq!(status, 422, "{problem}");
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "role", "expires_in"]);
}

#[tokio::test]
async fn last_use_is_recorded_without_a_write_per_request() {
    let app = spawn_app().await;
    let viewer = token(&app, "acme", "viewer");
    let last_used = || -> Option<chrono::DateTime<chrono::Utc>> {
        api_tokens::table.select(api_tokens::last_used_at).first(&mut app.database.connect()).unwrap()
    };
    assert_eq!(last_used(), None);
    assert_eq!(call(&app, &viewer, Method::GET, "/v1/me", None).await.0, 200);
    let first =
        stockflow_testkit::eventually("last_used_at to be recorded", std::time::Duration::from_secs(5), || async {
            last_used()
        })
        .await;
    for _ in 0..5 {
        assert_eq!(call(&app, &viewer, Method::GET, "/v1/products", None).await.0, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(last_used(), Some(first), "uses within a minute do not write again");
}

/// An `expires_in` ending in a multi-byte character once panicked and
/// dropped the connection; every bad value is a 422 on its field.
#[tokio::test]
async fn bad_lifetimes_and_names_are_field_errors_not_dropped_connections() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    for expires_in in ["1é", "€", "é", "1😀", "0d", "+1d", "30s"] {
        let body = json!({"name": "ci", "role": "viewer", "expires_in": expires_in});
        let (status, problem) = call(&app, &admin, Method::POST, "/v1/tokens", Some(body)).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("expires_in")), "{expires_in}");
    }
    for name in ["", "  ", "ci\u{0}", "c\u{1b}[31mi", "\u{85}"] {
        let body = json!({"name": name, "role": "viewer"});
        let (status, problem) = call(&app, &admin, Method::POST, "/v1/tokens", Some(body)).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("name")), "{name:?}");
    }
    let tokens: i64 = api_tokens::table.count().get_result(&mut app.database.connect()).unwrap();
    assert_eq!(tokens, 1, "only the admin's own token");
}

/// A well-formed request the organization's records refuse is a conflict
/// with them (409), not an invalid field.
#[tokio::test]
async fn a_token_for_a_user_with_another_role_is_a_conflict() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    let body = json!({"name": "ci", "role": "member", "email": "ann@example.com"});
    assert_eq!(call(&app, &admin, Method::POST, "/v1/tokens", Some(body)).await.0, 201);
    let body = json!({"name": "ci", "role": "viewer", "email": "ann@example.com"});
    let (status, problem) = call(&app, &admin, Method::POST, "/v1/tokens", Some(body)).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("role_mismatch")), "{problem}");
}

/// Emails are matched as the database's unique index compares them: a
/// user whose address lowercases differently in Rust and in PostgreSQL
/// (`İ`) was created, then not found again (500).
#[tokio::test]
async fn users_are_found_by_email_as_the_database_compares_them() {
    let app = spawn_app().await;
    let admin = token(&app, "acme", "admin");
    let mut users = Vec::new();
    for email in ["İnci@Örnek.com", "İnci@Örnek.com", "Ünal.ı@example.com"] {
        let body = json!({"name": "ci", "role": "member", "email": email});
        let (status, issued) = call(&app, &admin, Method::POST, "/v1/tokens", Some(body)).await;
        assert_eq!((status, issued["email"].as_str()), (201, Some(email)), "{issued}");
        let (_, me) = call(&app, issued["token"].as_str().unwrap(), Method::GET, "/v1/me", None).await;
        users.push(me["user"]["id"].clone());
    }
    assert_eq!(users[0], users[1], "the same user both times");
    assert_ne!(users[0], users[2]);
}
