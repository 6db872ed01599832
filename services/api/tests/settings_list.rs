//! One list of settings: every variable a service or the container
//! entrypoint reads is listed in `.env.prod.example` and documented in
//! docs/configuration.md, and neither lists one that nothing reads.
//!
//! "What the services read" is the union of
//! - the names each service's settings look up through a recording
//!   [`Env`], over configurations that take every branch (local and s3
//!   storage, each download mode, encryption, alerts, separate backup
//!   credentials), for the service itself and for its admin commands;
//! - a scan of the sources for literal names read (`env.or("NAME"`,
//!   `std::env::var("NAME")`, ...), which also catches a read on a path the
//!   configurations above miss;
//! - the `${NAME` reads (and `ensure_dir NAME`) of deploy/docker-entrypoint.sh.
//!
//! This test lives in the api because its dev-dependencies already reach the
//! other services; the config crate must not depend on them.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use stockflow_config::Env;
use stockflow_worker::migrate_storage::{Backend, Direction, MigrateSettings};

/// Read by code in the repository but not settings of a service, so neither
/// file lists them. Names ending in `_` are prefixes.
const NOT_SETTINGS: &[(&str, &str)] = &[
    ("TEST_", "crates/testkit: where the test suite finds its PostgreSQL and RabbitMQ, its log level"),
    ("STOCKFLOW_TEST_", "test-only switches"),
    ("S3S_FS", "crates/testkit: the S3 server binary the storage tests start"),
    ("PATH", "crates/testkit: process plumbing when tests start binaries"),
    ("HOME", "crates/testkit: where cargo installed the S3 server"),
    ("CARGO_HOME", "crates/testkit: where cargo installed the S3 server"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn ignored(name: &str) -> bool {
    NOT_SETTINGS.iter().any(|(entry, _)| if entry.ends_with('_') { name.starts_with(entry) } else { name == *entry })
}

fn is_var_name(name: &str) -> bool {
    name.len() > 1
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

// ---------------------------------------------------------------------------
// What the services read: recorded.

/// A fresh age recipient, so the encryption settings parse.
fn recipient() -> String {
    age::x25519::Identity::generate().to_public().to_string()
}

/// Configurations that, between them, take every branch of the settings.
fn configurations() -> Vec<Vec<(&'static str, String)>> {
    let base = || -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", "postgres://u:p@127.0.0.1:5432/db".into()),
            ("AMQP_URL", "amqp://u:p@127.0.0.1:5672/%2f".into()),
        ]
    };
    let local = || -> Vec<(&'static str, String)> {
        [base(), vec![("MEDIA_ROOT", "/srv/media".into()), ("BACKUP_ROOT", "/srv/backups".into())]].concat()
    };
    let s3 = |delivery: &str| -> Vec<(&'static str, String)> {
        [
            base(),
            vec![
                ("STORAGE_BACKEND", "s3".into()),
                ("S3_BUCKET", "media".into()),
                ("AWS_ACCESS_KEY_ID", "k".into()),
                ("AWS_SECRET_ACCESS_KEY", "s".into()),
                ("BACKUP_STORAGE_BACKEND", "s3".into()),
                ("BACKUP_S3_BUCKET", "backups".into()),
                ("BACKUP_S3_ACCESS_KEY_ID", "bk".into()),
                ("BACKUP_S3_SECRET_ACCESS_KEY", "bs".into()),
                ("ATTACHMENT_DELIVERY", delivery.into()),
                // Both migrate-storage directions need a local root too.
                ("MEDIA_ROOT", "/srv/media".into()),
            ],
        ]
        .concat()
    };
    vec![
        local(),
        [local(), vec![("ATTACHMENT_DELIVERY", "x-accel".into())]].concat(),
        s3("redirect"),
        s3("stream"),
        [
            local(),
            vec![
                ("BACKUP_ENCRYPTION_RECIPIENT", recipient()),
                ("BACKUP_VERIFY_AFTER_RUN", "false".into()),
                ("ALERT_WEBHOOK_URL", "https://hooks.example.com/x".into()),
                ("ALERT_WEBHOOK_SECRET", "0123456789abcdef0123".into()),
                ("ALERT_SMTP_HOST", "127.0.0.1".into()),
                ("ALERT_EMAIL_FROM", "stockflow@example.com".into()),
                ("ALERT_EMAIL_TO", "ops@example.com".into()),
            ],
        ]
        .concat(),
    ]
}

/// Every name the four services and their admin commands look up.
fn recorded() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for pairs in configurations() {
        let env = Env::from_pairs(pairs.clone()).recording();
        let check = |what: &str, ok: bool| assert!(ok, "{what} refused the configuration {pairs:?}");
        check("api Settings", stockflow_api::Settings::from_env(&env).is_ok());
        check("api AdminSettings", stockflow_api::AdminSettings::from_env(&env).is_ok());
        check("worker Settings", stockflow_worker::Settings::from_env(&env).is_ok());
        check("worker ReconcileSettings", stockflow_worker::maintenance::ReconcileSettings::from_env(&env).is_ok());
        for (from, to) in [(Backend::Local, Backend::S3), (Backend::S3, Backend::Local)] {
            let direction = Direction::new(from, to).expect("two backends");
            let migrate = MigrateSettings::from_env(&env, direction);
            // Needs both stores; only the s3 configurations have both.
            if env.get("S3_BUCKET").is_some() {
                check("worker MigrateSettings", migrate.is_ok());
            }
        }
        check("scheduler Settings", stockflow_scheduler::Settings::from_env(&env).is_ok());
        check("scheduler AdminSettings", stockflow_scheduler::AdminSettings::from_env(&env).is_ok());
        check("backup Settings", stockflow_backup::Settings::from_env(&env).is_ok());
        names.extend(env.looked_up());
    }
    names
}

// ---------------------------------------------------------------------------
// What the services read: scanned.

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The literal names read in `text`: `env.required("NAME")`, `env.or::<T>("NAME", ..)`,
/// `env.get("NAME")`, `std::env::var("NAME")`, `env::var_os("NAME")`.
fn literal_reads(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices("env.").chain(text.match_indices("env::")) {
        let rest = &text[start..];
        let rest = rest.strip_prefix("env.").or_else(|| rest.strip_prefix("env::")).unwrap_or(rest);
        let Some(rest) =
            ["required", "optional", "or", "get", "var_os", "var"].iter().find_map(|method| rest.strip_prefix(method))
        else {
            continue;
        };
        // An optional turbofish: ::<T>, perhaps nested.
        let rest = match rest.strip_prefix("::<") {
            Some(generic) => {
                let mut depth = 1;
                let end = generic.char_indices().find_map(|(i, c)| {
                    depth += match c {
                        '<' => 1,
                        '>' => -1,
                        _ => 0,
                    };
                    (depth == 0).then_some(i + 1)
                });
                &generic[end.unwrap_or(generic.len())..]
            }
            None => rest,
        };
        if let Some(name) = rest.strip_prefix("(\"").and_then(|r| r.split('"').next())
            && is_var_name(name)
        {
            names.insert(name.to_owned());
        }
    }
    names
}

/// Literal reads in every crate's non-test sources (a file's `#[cfg(test)]`
/// module onwards is left out).
fn scanned() -> BTreeSet<String> {
    let mut files = Vec::new();
    for group in ["crates", "services"] {
        rust_sources(&repo().join(group), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let in_src = file.components().any(|c| c.as_os_str() == "src");
        if !in_src {
            continue; // tests/, examples/, benches/
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        names.extend(literal_reads(code));
    }
    names
}

/// What deploy/docker-entrypoint.sh reads: `${NAME...}` and `ensure_dir NAME`.
fn entrypoint_reads() -> BTreeSet<String> {
    let text = read("deploy/docker-entrypoint.sh");
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|line| !line.trim_start().starts_with('#')) {
        for piece in line.split("${").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if is_var_name(&name) {
                names.insert(name);
            }
        }
        if let Some(name) = line.trim().strip_prefix("ensure_dir ").map(str::trim)
            && is_var_name(name)
        {
            names.insert(name.to_owned());
        }
    }
    names
}

fn read_by_something() -> BTreeSet<String> {
    let mut names = recorded();
    names.extend(scanned());
    names.extend(entrypoint_reads());
    names.retain(|name| !ignored(name));
    names
}

// ---------------------------------------------------------------------------
// What the two files list.

/// Every variable-like word of .env.prod.example: `NAME=` lines, set or
/// commented out, and names mentioned in its comments.
fn listed_in_env_example() -> BTreeSet<String> {
    read(".env.prod.example")
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| is_var_name(word) && word.contains('_') && !word.ends_with('_'))
        .map(str::to_owned)
        .collect()
}

/// The backticked names in the first column of docs/configuration.md's
/// `| Name |` tables, but for the compose stack's (read by docker compose
/// to create PostgreSQL, RabbitMQ and MinIO, never by a service).
fn listed_in_configuration_md() -> BTreeSet<String> {
    let text = read("docs/configuration.md");
    let mut names = BTreeSet::new();
    let mut in_table = false;
    let mut compose_section = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            compose_section = line.contains("compose stack");
        }
        if line.starts_with("| Name |") {
            in_table = !compose_section;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if in_table {
            let first = line.split('|').nth(1).unwrap_or_default();
            for piece in first.split('`').skip(1).step_by(2) {
                if is_var_name(piece) {
                    names.insert(piece.to_owned());
                }
            }
        }
    }
    names
}

fn compare(file: &str, listed: &BTreeSet<String>, read: &BTreeSet<String>) -> Vec<String> {
    let mut problems: Vec<String> = read
        .difference(listed)
        .map(|name| format!("{file}: missing {name} (a service or the entrypoint reads it)"))
        .collect();
    problems.extend(
        listed
            .difference(read)
            .map(|name| format!("{file}: lists {name}, which nothing reads (or add it to NOT_SETTINGS)")),
    );
    problems
}

#[test]
fn env_prod_example_and_configuration_md_list_exactly_what_the_services_read() {
    let read = read_by_something();
    // Sanity: the recording and the scans see something of each source.
    for name in ["DATABASE_URL", "BACKUP_S3_BUCKET", "BACKUP_S3_SESSION_TOKEN", "S3_PUBLIC_ENDPOINT", "ALLOW_ROOT"] {
        assert!(read.contains(name), "{name} not found among what the services read: the test is broken");
    }
    let mut problems = compare(".env.prod.example", &listed_in_env_example(), &read);
    problems.extend(compare("docs/configuration.md", &listed_in_configuration_md(), &read));
    assert!(problems.is_empty(), "settings out of step:\n  {}", problems.join("\n  "));
}

#[test]
fn the_scanners_find_what_they_should() {
    let code = r#"env.or("A_B", 1)?; env.required::<Vec<u8>>("C_D")?; std::env::var("E_F"); env.get(&var); env.or(x, "lower")"#;
    let names: Vec<_> = literal_reads(code).into_iter().collect();
    assert_eq!(names, ["A_B", "C_D", "E_F"]);
    assert!(ignored("TEST_DATABASE_URL") && ignored("PATH") && !ignored("PATHS"));
}
