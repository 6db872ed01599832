//! pg_dump and pg_restore: found, and of the server's major version, before
//! anything starts; a newer or older pg_dump writes dumps the server's
//! pg_restore may not read, or refuses the server outright.

use crate::BackupError;
use diesel::prelude::*;
use diesel::sql_types::Text;
use std::process::Stdio;
use tokio::io::AsyncReadExt;

/// The server's major version (`SHOW server_version_num` / 10000).
pub(crate) fn server_major(conn: &mut PgConnection) -> Result<u32, BackupError> {
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        server_version_num: String,
    }
    let version: Version = diesel::sql_query("SHOW server_version_num").get_result(conn)?;
    let number: u32 = version
        .server_version_num
        .trim()
        .parse()
        .map_err(|_| BackupError::Tool(format!("unreadable server version {:?}", version.server_version_num)))?;
    Ok(number / 10_000)
}

/// Checks `program --version` names `server_major`; one clear error if not.
pub(crate) async fn check_major(program: &str, server_major: u32) -> Result<(), BackupError> {
    let output = tokio::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| BackupError::Tool(format!("cannot run {program}: {error}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let major = parse_major(&text)
        .ok_or_else(|| BackupError::Tool(format!("{program} --version printed no version: {:?}", text.trim())))?;
    if major != server_major {
        return Err(BackupError::Tool(format!(
            "{program} is PostgreSQL {major} but the server is PostgreSQL {server_major}: \
             install the client tools of version {server_major} or set BACKUP_PG_DUMP / BACKUP_PG_RESTORE"
        )));
    }
    Ok(())
}

/// "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)" -> 15; "9.6" -> 9.
fn parse_major(version: &str) -> Option<u32> {
    let number = version.split_whitespace().find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    number.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Reads a child's stderr to its end, keeping the last 4 KiB (what explains
/// a failure is at the end).
pub(crate) fn collect_stderr(stderr: Option<tokio::process::ChildStderr>) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let Some(mut stderr) = stderr else { return String::new() };
        let mut kept = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(read) = stderr.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            kept.extend_from_slice(&buffer[..read]);
            if kept.len() > 4096 {
                kept.drain(..kept.len() - 4096);
            }
        }
        String::from_utf8_lossy(&kept).trim().to_owned()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn majors_are_read_from_version_lines() {
        assert_eq!(super::parse_major("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n"), Some(15));
        assert_eq!(super::parse_major("pg_dump (PostgreSQL) 9.6"), Some(9));
        assert_eq!(super::parse_major("pg_restore (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(super::parse_major("nothing here"), None);
    }
}

/// A database URL for a PostgreSQL client tool, split so the password goes
/// in `PGPASSWORD`: anyone on the host can read a process's arguments.
pub(crate) struct ClientTarget {
    pub url: String,
    pub password: Option<String>,
}

impl ClientTarget {
    pub(crate) fn new(url: &str) -> Self {
        let Ok(mut parsed) = url::Url::parse(url) else {
            return Self { url: url.to_owned(), password: None };
        };
        let password = parsed.password().map(percent_decode);
        if password.is_some() && parsed.set_password(None).is_ok() {
            return Self { url: parsed.to_string(), password };
        }
        Self { url: url.to_owned(), password: None }
    }

    /// Points `command` at the target: `--dbname=<url without password>`.
    pub(crate) fn apply(&self, command: &mut tokio::process::Command) {
        command.arg(format!("--dbname={}", self.url));
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
    }
}

/// `%xx` escapes of a URL's password back to bytes.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| raw.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod target_tests {
    use super::ClientTarget;

    #[test]
    fn the_password_leaves_the_url_for_pgpassword() {
        let target = ClientTarget::new("postgres://stockflow:p%40ss%2Fw@db:5432/stockflow?sslmode=require");
        assert_eq!(target.url, "postgres://stockflow@db:5432/stockflow?sslmode=require");
        assert_eq!(target.password.as_deref(), Some("p@ss/w"));
        let plain = ClientTarget::new("postgres://stockflow@db/stockflow");
        assert_eq!((plain.url.as_str(), plain.password), ("postgres://stockflow@db/stockflow", None));
    }
}
