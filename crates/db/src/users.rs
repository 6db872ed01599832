use crate::schema::users;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use stockflow_domain::{Email, Role};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// Case-insensitive, by PostgreSQL's `lower` on both sides, as the unique
/// index compares: Rust's lowercase differs from it for some letters
/// (`İ`), and a user just created was then not found again.
pub fn find_by_email(conn: &mut PgConnection, org_id: Uuid, email: &Email) -> QueryResult<Option<User>> {
    users::table
        .filter(users::org_id.eq(org_id))
        .filter(lower(users::email).eq(lower(email.as_str())))
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Returns the user with this email in the organization, creating it with
/// `role` if absent. An existing user keeps the role it has.
pub fn find_or_create(conn: &mut PgConnection, org_id: Uuid, email: &Email, role: Role) -> QueryResult<User> {
    if let Some(user) = find_by_email(conn, org_id, email)? {
        return Ok(user);
    }
    // A concurrent creator may win the race; the unique index makes that a
    // no-op here and the lookup below finds its row.
    diesel::insert_into(users::table)
        .values((users::org_id.eq(org_id), users::email.eq(email.as_str()), users::role.eq(role.as_str())))
        .on_conflict_do_nothing()
        .execute(conn)?;
    find_by_email(conn, org_id, email)?.ok_or(diesel::result::Error::NotFound)
}
