//! Admin commands: what is scheduled, and when it fires next, in each
//! schedule's own zone.

use chrono::Utc;
use diesel::PgConnection;
use stockflow_db::schedules::{self, ScheduleRow};
use stockflow_db::{DbError, organizations};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("no schedule named {0:?}{1}")]
    NotFound(String, String),
    #[error("no organization {0:?}")]
    UnknownOrganization(String),
    #[error("the schedule cannot be read: {0}")]
    Unreadable(String),
}

impl From<diesel::result::Error> for CommandError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(DbError::from(error))
    }
}

/// One line per schedule, tab-separated, with a header: name, owner
/// (`system` or the organization's slug), pattern, zone, state, next slot
/// in the schedule's zone, last run and its status.
pub fn list(conn: &mut PgConnection) -> Result<Vec<String>, CommandError> {
    let mut lines = vec!["NAME\tOWNER\tCRON\tTIMEZONE\tSTATE\tNEXT RUN\tLAST RUN\tLAST STATUS".to_owned()];
    for (row, slug) in schedules::list_all(conn)? {
        let zone = row.timing().map(|timing| timing.zone.tz()).unwrap_or(chrono_tz::Tz::UTC);
        let state = if !row.enabled {
            "off".to_owned()
        } else if row.paused {
            format!("paused: {}", row.pause_note.as_deref().unwrap_or("-"))
        } else {
            "active".to_owned()
        };
        let last = row.last_run_at.map(|at| local(&at.with_timezone(&zone))).unwrap_or_else(|| "-".to_owned());
        lines.push(format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            row.name,
            slug.as_deref().unwrap_or("system"),
            row.cron,
            row.timezone,
            state,
            local(&row.next_run_at.with_timezone(&zone)),
            last,
            row.last_status.as_deref().unwrap_or("-"),
        ));
    }
    Ok(lines)
}

/// The next `count` slots of a schedule, from now, in its zone.
pub fn next(conn: &mut PgConnection, name: &str, org: Option<&str>, count: usize) -> Result<Vec<String>, CommandError> {
    let row = find(conn, name, org)?;
    let timing = row.timing().map_err(|error| CommandError::Unreadable(error.to_string()))?;
    let now = schedules::now(conn)?.max(Utc::now());
    Ok(timing.upcoming(now, count).iter().map(local).collect())
}

fn find(conn: &mut PgConnection, name: &str, org: Option<&str>) -> Result<ScheduleRow, CommandError> {
    let org_id = match org {
        Some(slug) => {
            let unknown = || CommandError::UnknownOrganization(slug.to_owned());
            let parsed = stockflow_domain::OrgSlug::parse(slug).map_err(|_| unknown())?;
            Some(organizations::find_by_slug(conn, &parsed)?.map(|org| org.id).ok_or_else(unknown)?)
        }
        None => None,
    };
    let owner = org
        .map(|slug| format!(" in organization {slug:?}"))
        .unwrap_or_else(|| " among system schedules (add --org <slug> for an organization's)".to_owned());
    schedules::find_by_name(conn, org_id, name)?.ok_or_else(|| CommandError::NotFound(name.to_owned(), owner))
}

/// `2026-03-29 03:00:00 CEST (+02:00)`: the wall clock people read, with
/// the offset that makes it exact.
fn local(at: &chrono::DateTime<chrono_tz::Tz>) -> String {
    at.format("%Y-%m-%d %H:%M:%S %Z (%:z)").to_string()
}
