//! `GET /v1/me`: who the token belongs to, a cheap way for a client to
//! check its token.

use crate::auth::Caller;
use actix_web::web;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    organization: OrganizationView,
    user: UserView,
    token: TokenSummary,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct OrganizationView {
    id: Uuid,
    slug: String,
    name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct UserView {
    id: Uuid,
    email: String,
    #[schema(schema_with = crate::openapi::role)]
    role: stockflow_domain::Role,
}

/// The token itself is never returned, only which one it is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TokenSummary {
    id: Uuid,
    name: String,
    #[serde(serialize_with = "crate::rfc3339::optional")]
    expires_at: Option<DateTime<Utc>>,
}

#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "tokens",
    operation_id = "me",
    responses((status = 200, description = "The caller's organization, user and token", body = Me)),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, user = %caller.user.id))]
pub(crate) async fn me(caller: Caller) -> web::Json<Me> {
    web::Json(Me {
        organization: OrganizationView { id: caller.org.id, slug: caller.org.slug, name: caller.org.name },
        user: UserView { id: caller.user.id, email: caller.user.email, role: caller.role },
        token: TokenSummary { id: caller.token.id, name: caller.token.name, expires_at: caller.token.expires_at },
    })
}
