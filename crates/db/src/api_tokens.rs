use crate::schema::api_tokens;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use stockflow_domain::TokenDigest;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// May see installation-wide operations (backups); only the CLI sets it.
    pub operator: bool,
}

pub struct NewApiToken<'a> {
    pub user_id: Uuid,
    pub name: &'a str,
    pub digest: TokenDigest,
    pub expires_at: Option<DateTime<Utc>>,
    pub operator: bool,
}

pub fn insert(conn: &mut PgConnection, token: &NewApiToken<'_>) -> QueryResult<ApiToken> {
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::user_id.eq(token.user_id),
            api_tokens::name.eq(token.name),
            api_tokens::token_sha256.eq(token.digest.as_bytes()),
            api_tokens::expires_at.eq(token.expires_at),
            api_tokens::operator.eq(token.operator),
        ))
        .returning(ApiToken::as_returning())
        .get_result(conn)
}

/// Who presents a token: the token, its user and the user's organization.
pub type Holder = (ApiToken, crate::users::User, crate::organizations::Organization);

/// The holder of the live token with this digest, if any.
pub fn find_holder(conn: &mut PgConnection, digest: &TokenDigest, now: DateTime<Utc>) -> QueryResult<Option<Holder>> {
    use crate::schema::{organizations, users};
    api_tokens::table
        .inner_join(users::table.inner_join(organizations::table))
        .filter(api_tokens::token_sha256.eq(digest.as_bytes()))
        .filter(api_tokens::revoked_at.is_null())
        .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now)))
        .select((
            ApiToken::as_select(),
            crate::users::User::as_select(),
            crate::organizations::Organization::as_select(),
        ))
        .first(conn)
        .optional()
}

/// The tokens of an organization with the user each acts as, newest first.
pub fn list_for_org(conn: &mut PgConnection, org_id: Uuid) -> QueryResult<Vec<(ApiToken, crate::users::User)>> {
    use crate::schema::users;
    api_tokens::table
        .inner_join(users::table)
        .filter(users::org_id.eq(org_id))
        .order((api_tokens::created_at.desc(), api_tokens::id.desc()))
        .select((ApiToken::as_select(), crate::users::User::as_select()))
        .load(conn)
}

/// The organization a token belongs to, through its user.
pub fn org_of(conn: &mut PgConnection, token_id: Uuid) -> QueryResult<Option<Uuid>> {
    use crate::schema::users;
    api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::id.eq(token_id))
        .select(users::org_id)
        .first(conn)
        .optional()
}

/// Revokes a token of `org_id`; revoking twice keeps the first time.
/// `Ok(false)` when the organization has no such token.
pub fn revoke(conn: &mut PgConnection, org_id: Uuid, token_id: Uuid, now: DateTime<Utc>) -> QueryResult<bool> {
    if org_of(conn, token_id)? != Some(org_id) {
        return Ok(false);
    }
    diesel::update(api_tokens::table.filter(api_tokens::id.eq(token_id)).filter(api_tokens::revoked_at.is_null()))
        .set(api_tokens::revoked_at.eq(now))
        .execute(conn)?;
    Ok(true)
}

/// Records a use of the token, unless one was recorded less than `every`
/// ago: several processes may call this for the same token at once, and
/// the condition keeps it to one write per interval whichever wins.
pub fn touch_last_used(
    conn: &mut PgConnection,
    token_id: Uuid,
    now: DateTime<Utc>,
    every: chrono::Duration,
) -> QueryResult<bool> {
    let updated = diesel::update(
        api_tokens::table
            .filter(api_tokens::id.eq(token_id))
            .filter(api_tokens::last_used_at.is_null().or(api_tokens::last_used_at.le(now - every))),
    )
    .set(api_tokens::last_used_at.eq(now))
    .execute(conn)?;
    Ok(updated > 0)
}
