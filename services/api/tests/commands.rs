// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! `stockflow-api migrate` and `stockflow-api token create`, run as the
//! binary an operator runs, against a real database.

use diesel::prelude::*;
use sha2::{Digest, Sha256};
use stockflow_db::schema::{api_tokens, organizations, users};
use stockflow_testkit::ProcessEnv;

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-api");

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

#[test]
fn migrate_is_idempotent_and_prints_nothing_on_stdout() {
    let env = ProcessEnv::new();
    // The per-test database is already migrated: a second run applies nothing.
    for _ in 0..2 {
        assert_eq!(stdout(&env.run(BINARY, &["migrate"])), "");
    }
    let mut conn = env.database.connect();
    assert!(stockflow_db::pending_migrations(&mut conn).expect("list pending").is_empty());
}

#[test]
fn migrate_applies_everything_to_an_empty_database() {
    let env = ProcessEnv::new();
    stockflow_db::revert_all(&mut env.database.connect()).expect("revert");
    let output = env.run(BINARY, &["migrate"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stockflow_db::pending_migrations(&mut env.database.connect()).expect("list pending").is_empty());
}

#[test]
fn token_create_prints_only_the_token_and_stores_only_its_digest() {
    let env = ProcessEnv::new();
    let token = stdout(&env.run(BINARY, &["token", "create", "--org", "demo", "--role", "admin", "--name", "ci"]));
    let token = token.strip_suffix('\n').expect("one line");
    assert!(token.starts_with("sf_") && token.len() >= 35, "{token:?}");
    assert!(token[3..].chars().all(|c| c.is_ascii_alphanumeric()), "{token:?}");

    let mut conn = env.database.connect();
    let (slug, role, name, digest, expires_at): (
        String,
        String,
        String,
        Vec<u8>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = api_tokens::table
        .inner_join(users::table.inner_join(organizations::table))
        .select((organizations::slug, users::role, api_tokens::name, api_tokens::token_sha256, api_tokens::expires_at))
        .first(&mut conn)
        .expect("the token row");
    assert_eq!((slug.as_str(), role.as_str(), name.as_str()), ("demo", "admin", "ci"));
    assert_eq!(digest, Sha256::digest(token.as_bytes()).to_vec());
    assert_eq!(expires_at, None);
}

#[test]
fn token_create_reuses_the_organization_and_honours_expiry() {
    let env = ProcessEnv::new();
    let first = stdout(&env.run(BINARY, &["token", "create", "--org", "acme", "--role", "viewer"]));
    let second =
        stdout(&env.run(BINARY, &["token", "create", "--org", "acme", "--role", "member", "--expires-in", "30d"]));
    assert_ne!(first, second);

    let mut conn = env.database.connect();
    let orgs: i64 = organizations::table.count().get_result(&mut conn).expect("count orgs");
    assert_eq!(orgs, 1);
    let mut roles: Vec<String> = users::table.select(users::role).load(&mut conn).expect("roles");
    roles.sort();
    assert_eq!(roles, ["member", "viewer"]);
    let expiry: Option<chrono::DateTime<chrono::Utc>> = api_tokens::table
        .inner_join(users::table)
        .filter(users::role.eq("member"))
        .select(api_tokens::expires_at)
        .first(&mut conn)
        .expect("member token");
    let days = (expiry.expect("an expiry") - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.0).contains(&days), "expires in {days} days");
}

#[test]
fn token_create_rejects_bad_input_without_writing() {
    let env = ProcessEnv::new();
    let cases: [&[&str]; 7] = [
        &["--org", "Bad Slug", "--role", "admin"],
        &["--org", "demo", "--role", "root"],
        &["--org", "demo", "--role", "admin", "--expires-in", "forever"],
        &["--org", "demo", "--role", "admin", "--expires-in", "1é"],
        &["--org", "demo", "--role", "admin", "--expires-in", "€"],
        &["--org", "demo", "--role", "admin", "--email", "not-an-email"],
        &["--org", "demo", "--role", "admin", "--name", "a\u{1b}[2Jb"],
    ];
    for args in cases {
        let output = env.run(BINARY, &[&["token", "create"], args].concat());
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?} printed a token");
        assert!(String::from_utf8_lossy(&output.stderr).contains("error: invalid"), "{args:?}");
    }
    let orgs: i64 = organizations::table.count().get_result(&mut env.database.connect()).expect("count");
    assert_eq!(orgs, 0);
}

#[test]
fn a_user_keeps_its_role() {
    let env = ProcessEnv::new();
    let email = ["--email", "ann@example.com"];
    stdout(&env.run(BINARY, &[&["token", "create", "--org", "demo", "--role", "viewer"][..], &email].concat()));
    let output = env.run(BINARY, &[&["token", "create", "--org", "demo", "--role", "admin"][..], &email].concat());
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists with role viewer"));
    let tokens: i64 = api_tokens::table.count().get_result(&mut env.database.connect()).expect("count");
    assert_eq!(tokens, 1);
}

#[test]
fn token_list_shows_tokens_without_secrets_and_revoke_ends_them() {
    let env = ProcessEnv::new();
    let admin = stdout(&env.run(BINARY, &["token", "create", "--org", "demo", "--role", "admin", "--name", "ops"]));
    stdout(&env.run(BINARY, &["token", "create", "--org", "demo", "--role", "viewer", "--name", "dash"]));
    stdout(&env.run(BINARY, &["token", "create", "--org", "other", "--role", "admin", "--name", "theirs"]));

    let listing = stdout(&env.run(BINARY, &["token", "list", "--org", "demo"]));
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines[0], "ID\tNAME\tEMAIL\tROLE\tCREATED\tLAST_USED\tEXPIRES\tREVOKED");
    assert_eq!(lines.len(), 3, "two tokens of demo, none of other: {listing}");
    assert!(lines[1].contains("\tdash\tviewer@demo.stockflow.invalid\tviewer\t"), "{listing}");
    assert!(!listing.contains(admin.trim()), "a listing never shows a secret");
    assert!(lines[2].ends_with("\t-"), "not revoked yet: {}", lines[2]);

    let ops_id = lines[2].split('\t').next().unwrap();
    stdout(&env.run(BINARY, &["token", "revoke", ops_id]));
    let listing = stdout(&env.run(BINARY, &["token", "list", "--org", "demo"]));
    let ops = listing.lines().find(|line| line.starts_with(ops_id)).unwrap();
    assert!(!ops.ends_with("\t-"), "revoked now: {ops}");

    let unknown = env.run(BINARY, &["token", "revoke", &uuid::Uuid::new_v4().to_string()]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no token"));
    assert_eq!(env.run(BINARY, &["token", "list", "--org", "nobody"]).status.code(), Some(1));
}
