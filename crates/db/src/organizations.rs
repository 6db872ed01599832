use crate::schema::organizations;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use stockflow_domain::OrgSlug;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = organizations)]
pub struct Organization {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

pub fn find_by_slug(conn: &mut PgConnection, slug: &OrgSlug) -> QueryResult<Option<Organization>> {
    organizations::table
        .filter(organizations::slug.eq(slug.as_str()))
        .select(Organization::as_select())
        .first(conn)
        .optional()
}

/// Returns the organization with this slug, creating it (named after the
/// slug) if it does not exist yet. Safe against a concurrent creator.
pub fn find_or_create(conn: &mut PgConnection, slug: &OrgSlug) -> QueryResult<Organization> {
    diesel::insert_into(organizations::table)
        .values((organizations::slug.eq(slug.as_str()), organizations::name.eq(slug.as_str())))
        .on_conflict(organizations::slug)
        .do_nothing()
        .execute(conn)?;
    organizations::table.filter(organizations::slug.eq(slug.as_str())).select(Organization::as_select()).first(conn)
}

/// Every organization's id, for work that goes through them one by one.
pub fn ids(conn: &mut PgConnection) -> QueryResult<Vec<Uuid>> {
    organizations::table.select(organizations::id).order(organizations::id).load(conn)
}
