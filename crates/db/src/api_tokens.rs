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
}

pub struct NewApiToken<'a> {
    pub user_id: Uuid,
    pub name: &'a str,
    pub digest: TokenDigest,
    pub expires_at: Option<DateTime<Utc>>,
}

pub fn insert(conn: &mut PgConnection, token: &NewApiToken<'_>) -> QueryResult<ApiToken> {
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::user_id.eq(token.user_id),
            api_tokens::name.eq(token.name),
            api_tokens::token_sha256.eq(token.digest.as_bytes()),
            api_tokens::expires_at.eq(token.expires_at),
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
