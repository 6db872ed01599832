//! The `/v1` routes.

use crate::auth::Caller;
use actix_web::{HttpResponse, web};
use serde_json::json;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/v1").route("/me", web::get().to(me)));
}

/// Who the token belongs to: a cheap way for a client to check its token.
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, user = %caller.user.id))]
async fn me(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "organization": { "id": caller.org.id, "slug": caller.org.slug, "name": caller.org.name },
        "user": { "id": caller.user.id, "email": caller.user.email, "role": caller.role },
        "token": { "id": caller.token.id, "name": caller.token.name, "expires_at": caller.token.expires_at },
    }))
}
