//! `/v1/tokens`: admins issue, list and revoke their organization's tokens.

use crate::auth::Caller;
use crate::commands::{self, CommandError};
use crate::problem::ApiError;
use crate::products::Fields;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stockflow_db::api_tokens::{self, ApiToken};
use stockflow_db::users::User;
use stockflow_db::{Database, DbError};
use stockflow_domain::{OrgSlug, Role, TokenLifetime};
use uuid::Uuid;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tokens")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(web::to(crate::routes::method_not_allowed)),
    )
    .service(
        web::resource("/tokens/{id}")
            .route(web::delete().to(revoke))
            .default_service(web::to(crate::routes::method_not_allowed)),
    );
}

/// A token as listed: never its secret, which exists only in the answer
/// that created it.
#[derive(Debug, Serialize)]
struct TokenView {
    id: Uuid,
    name: String,
    email: String,
    role: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
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

#[derive(Debug, Serialize)]
struct IssuedToken {
    /// Shown once: only its sha256 is stored.
    token: String,
    #[serde(flatten)]
    view: TokenView,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: String,
    email: Option<String>,
    /// Such as 30d, 12h or 90m; without it the token does not expire.
    expires_in: Option<String>,
}

#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
async fn create(
    caller: Caller,
    database: web::Data<Database>,
    body: web::Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let body = body.into_inner();
    let mut fields = Fields::default();
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        fields.push("name", "1 to 100 characters, no control characters");
    }
    let role = fields.take(Role::parse(&body.role));
    let lifetime = body.expires_in.as_deref().and_then(|raw| fields.take(TokenLifetime::parse(raw)));
    let slug =
        OrgSlug::parse(&caller.org.slug).map_err(|_| ApiError::invalid("org", "the organization's slug is invalid"))?;
    let email = role.and_then(|role| fields.take(commands::default_email(body.email.as_deref(), role, &slug)));
    fields.finish()?;
    let (Some(role), Some(email)) = (role, email) else { return Err(ApiError::invalid("body", "invalid fields")) };
    let org = caller.org.id;
    let (token, secret, user) = database
        .run(move |conn| {
            use diesel::Connection;
            conn.transaction(|conn| {
                let (token, secret) = commands::issue_token(conn, org, &email, role, &name, lifetime)?;
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
            ApiError::invalid("role", format!("this user already has the role {existing}"))
        }
        CommandError::Invalid(error) => ApiError::Validation(vec![error.into()]),
        CommandError::Database(error) => error.into(),
        other => ApiError::BadRequest(other.to_string()),
    }
}

#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
async fn list(caller: Caller, database: web::Data<Database>) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let org = caller.org.id;
    let rows = database.run(move |conn| api_tokens::list_for_org(conn, org).map_err(DbError::from)).await?;
    let items: Vec<TokenView> = rows.into_iter().map(|(token, user)| TokenView::new(token, &user)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

#[tracing::instrument(skip_all, fields(org = %caller.org.slug, token = %id), err(level = "info"))]
async fn revoke(caller: Caller, database: web::Data<Database>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let (org, id) = (caller.org.id, id.into_inner());
    let revoked =
        database.run(move |conn| api_tokens::revoke(conn, org, id, Utc::now()).map_err(DbError::from)).await?;
    if revoked { Ok(HttpResponse::NoContent().finish()) } else { Err(ApiError::NotFound("token")) }
}
