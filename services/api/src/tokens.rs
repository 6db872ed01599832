//! `/v1/tokens`: admins issue, list and revoke their organization's tokens.

use crate::auth::Caller;
use crate::commands::{self, CommandError};
use crate::openapi::problems;
use crate::problem::ApiError;
use crate::routes::Endpoint;
use crate::validation::Fields;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stockflow_db::api_tokens::{self, ApiToken};
use stockflow_db::users::User;
use stockflow_db::{Database, DbError};
use stockflow_domain::{OrgSlug, Role, TokenLifetime, TokenName};
use uuid::Uuid;

pub(crate) fn endpoints() -> [Endpoint; 2] {
    [Endpoint::new("/v1/tokens").get(list).post(create), Endpoint::new("/v1/tokens/{id}").delete(revoke)]
}

/// A token as listed: never its secret, which exists only in the answer
/// that created it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Token)]
pub(crate) struct TokenView {
    id: Uuid,
    name: String,
    /// The user the token acts as.
    email: String,
    #[schema(schema_with = crate::openapi::role)]
    role: String,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::optional")]
    last_used_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::rfc3339::optional")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::rfc3339::optional")]
    revoked_at: Option<DateTime<Utc>>,
}

impl TokenView {
    fn new(token: ApiToken, user: &User) -> Self {
        Self {
            id: token.id,
            name: token.name,
            email: user.email.clone(),
            role: user.role.clone(),
            created_at: token.created_at,
            last_used_at: token.last_used_at,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct IssuedToken {
    /// Shown once: only its sha256 is stored.
    #[schema(example = "sf_0123456789abcdefghijABCDEFGHIJ0123456789")]
    token: String,
    #[serde(flatten)]
    view: TokenView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TokenList {
    items: Vec<TokenView>,
}

/// Unknown fields are rejected (422).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    #[schema(schema_with = crate::openapi::token_name)]
    name: String,
    /// The role of the user the token acts as.
    #[schema(schema_with = crate::openapi::role)]
    role: String,
    #[schema(schema_with = crate::openapi::email, required = false)]
    email: Option<String>,
    #[schema(schema_with = crate::openapi::expires_in, required = false)]
    expires_in: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    operation_id = "create_token",
    description = "Needs the admin role. The answer is the only time the token is shown.",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Issued", body = IssuedToken,
            headers(("Location" = String, description = "The token's path"))),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 409, response = problems::RoleMismatch),
        (status = 413, response = problems::PayloadTooLarge),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn create(
    caller: Caller,
    database: web::Data<Database>,
    body: web::Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let body = body.into_inner();
    let mut fields = Fields::default();
    let name = fields.take(TokenName::parse(&body.name));
    let role = fields.take(Role::parse(&body.role));
    let lifetime = body.expires_in.as_deref().and_then(|raw| fields.take(TokenLifetime::parse(raw)));
    let slug =
        OrgSlug::parse(&caller.org.slug).map_err(|_| ApiError::invalid("org", "the organization's slug is invalid"))?;
    let email = role.and_then(|role| fields.take(commands::default_email(body.email.as_deref(), role, &slug)));
    fields.finish()?;
    let (Some(name), Some(role), Some(email)) = (name, role, email) else {
        return Err(ApiError::invalid("body", "invalid fields"));
    };
    let org = caller.org.id;
    let (token, secret, user) = database
        .run(move |conn| {
            use diesel::Connection;
            conn.transaction(|conn| {
                let (token, secret) = commands::issue_token(conn, org, &email, role, &name, lifetime, false)?;
                let user =
                    stockflow_db::users::find_by_email(conn, org, &email)?.ok_or(diesel::result::Error::NotFound)?;
                Ok::<_, CommandError>((token, secret, user))
            })
            .map_err(issue_error)
        })
        .await?;
    let view = TokenView::new(token, &user);
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/tokens/{}", view.id)))
        .json(IssuedToken { token: secret.expose().to_owned(), view }))
}

fn issue_error(error: CommandError) -> ApiError {
    match error {
        CommandError::RoleMismatch { existing, .. } => {
            ApiError::RoleMismatch(format!("this user already has the role {existing}"))
        }
        CommandError::Invalid(error) => ApiError::Validation(vec![error.into()]),
        CommandError::Database(error) => error.into(),
        other => ApiError::BadRequest(other.to_string()),
    }
}

#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "tokens",
    operation_id = "list_tokens",
    description = "Needs the admin role. Every token of the organization, revoked and expired ones included.",
    responses(
        (status = 200, description = "The organization's tokens", body = TokenList),
        (status = 403, response = problems::Forbidden),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn list(caller: Caller, database: web::Data<Database>) -> Result<web::Json<TokenList>, ApiError> {
    caller.require(Role::Admin)?;
    let org = caller.org.id;
    let rows = database.run(move |conn| api_tokens::list_for_org(conn, org).map_err(DbError::from)).await?;
    let items = rows.into_iter().map(|(token, user)| TokenView::new(token, &user)).collect();
    Ok(web::Json(TokenList { items }))
}

#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    tag = "tokens",
    operation_id = "revoke_token",
    description = "Needs the admin role. The token stops working at once.",
    params(("id" = Uuid, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, token = %id), err(level = "info"))]
pub(crate) async fn revoke(
    caller: Caller,
    database: web::Data<Database>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let (org, id) = (caller.org.id, id.into_inner());
    let revoked =
        database.run(move |conn| api_tokens::revoke(conn, org, id, Utc::now()).map_err(DbError::from)).await?;
    if revoked { Ok(HttpResponse::NoContent().finish()) } else { Err(ApiError::NotFound("token")) }
}
