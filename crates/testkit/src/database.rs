use diesel::{Connection, PgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::OnceLock;

/// Where tests create and drop their databases (any database of the server
/// that the test role can connect to).
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| crate::DEFAULT_DATABASE_URL.to_owned())
}

/// A database of its own for one test, cloned from the migrated template and
/// dropped (with any connections still open) when the value goes away.
pub struct TestDatabase {
    name: String,
    url: url::Url,
}

impl TestDatabase {
    pub fn create() -> Self {
        let template = template();
        let name = format!("stockflow_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection();
        diesel::sql_query(format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#))
            .execute(&mut admin)
            .unwrap_or_else(|e| panic!("cannot create test database {name} from {template}: {e}"));
        Self { url: with_database(&admin_url(), &name), name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The same database reached through another host:port (a proxy).
    pub fn url_via(&self, port: u16) -> String {
        let mut url = self.url.clone();
        url.set_host(Some("127.0.0.1")).expect("database URL has a host");
        url.set_port(Some(port)).expect("database URL takes a port");
        url.to_string()
    }

    pub fn connect(&self) -> PgConnection {
        PgConnection::establish(self.url()).unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }

    /// True while the database exists on the server.
    pub fn exists(name: &str) -> bool {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let count: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(name)
            .get_result(&mut admin_connection())
            .expect("query pg_database");
        count.n > 0
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let result = diesel::sql_query(format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name))
            .execute(&mut admin_connection());
        if let Err(error) = result {
            eprintln!("warning: could not drop test database {}: {error}", self.name);
        }
    }
}

fn admin_url() -> url::Url {
    url::Url::parse(&admin_database_url()).expect("TEST_DATABASE_URL is a valid URL")
}

fn with_database(base: &url::Url, name: &str) -> url::Url {
    let mut url = base.clone();
    url.set_path(&format!("/{name}"));
    url
}

fn admin_connection() -> PgConnection {
    let url = admin_database_url();
    PgConnection::establish(&url).unwrap_or_else(|e| {
        panic!("cannot reach PostgreSQL for tests ({e}); run `make services` or set TEST_DATABASE_URL")
    })
}

/// Name of the migrated template for the current migrations, built on first
/// use. nextest runs each test in its own process, so "once per run" is
/// enforced by the server: an advisory lock serializes builders, and the
/// template's name carries a hash of the migrations, so an existing one is
/// always current.
fn template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let name = format!("stockflow_tpl_{}", migrations_hash());
        let mut admin = admin_connection();
        diesel::sql_query("SELECT pg_advisory_lock(7281946)").execute(&mut admin).expect("take template lock");
        if !TestDatabase::exists(&name) {
            build_template(&mut admin, &name);
        }
        diesel::sql_query("SELECT pg_advisory_unlock(7281946)").execute(&mut admin).expect("release template lock");
        name
    })
}

fn build_template(admin: &mut PgConnection, name: &str) {
    // Built under a temporary name and renamed when complete, so a builder
    // killed midway never leaves a half-migrated template behind.
    let building = format!("{name}_building");
    for sql in
        [format!(r#"DROP DATABASE IF EXISTS "{building}" WITH (FORCE)"#), format!(r#"CREATE DATABASE "{building}""#)]
    {
        diesel::sql_query(sql).execute(admin).expect("create template database");
    }
    {
        let mut conn =
            PgConnection::establish(with_database(&admin_url(), &building).as_str()).expect("connect to template");
        stockflow_db::run_pending(&mut conn).expect("migrate template");
    }
    diesel::sql_query(format!(r#"ALTER DATABASE "{building}" RENAME TO "{name}""#))
        .execute(admin)
        .expect("rename template");
    // When it was built, for `drop_stale_templates`.
    diesel::sql_query(format!(r#"COMMENT ON DATABASE "{name}" IS 'stockflow test template built {}'"#, unix_now()))
        .execute(admin)
        .expect("date the template");
    drop_stale_templates(admin, name);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A template of other migrations may still be in use by a run of another
/// checkout on this machine (a branch with one more migration, a CI clone):
/// only templates built more than a day ago are dropped, and templates
/// without a date are left to `make clean-test-dbs`.
const TEMPLATE_KEPT_SECS: u64 = 24 * 3600;

/// Templates of older migrations are dead weight once they are old.
fn drop_stale_templates(admin: &mut PgConnection, current: &str) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let built_before = unix_now().saturating_sub(TEMPLATE_KEPT_SECS).to_string();
    let stale: Vec<Name> = diesel::sql_query(
        "SELECT datname FROM pg_database d \
         JOIN pg_shdescription s ON s.objoid = d.oid AND s.classoid = 'pg_database'::regclass \
         WHERE datname LIKE 'stockflow\\_tpl\\_%' AND datname NOT LIKE '%\\_building' AND datname <> $1 \
         AND s.description ~ '^stockflow test template built [0-9]+$' \
         AND split_part(s.description, ' ', 5)::bigint < $2::bigint",
    )
    .bind::<diesel::sql_types::Text, _>(current)
    .bind::<diesel::sql_types::Text, _>(built_before)
    .load(admin)
    .unwrap_or_default();
    for Name { datname } in stale {
        let _ = diesel::sql_query(format!(r#"DROP DATABASE IF EXISTS "{datname}""#)).execute(admin);
    }
}

fn migrations_hash() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files: Vec<_> = walk(&root);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.strip_prefix(&root).unwrap_or(&file).to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).expect("read migration file"));
    }
    hasher.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    entries
        .flat_map(|entry| {
            let path = entry.expect("read migrations entry").path();
            if path.is_dir() { walk(&path) } else { vec![path] }
        })
        .collect()
}
