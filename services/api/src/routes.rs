//! The `/v1` routes.

use crate::auth::Caller;
use crate::problem::ApiError;
use actix_web::{HttpResponse, web};
use serde_json::json;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .service(web::resource("/me").route(web::get().to(me)).default_service(web::to(method_not_allowed)))
            .configure(crate::products::configure)
            .configure(crate::batches::configure)
            .configure(crate::tokens::configure)
            .configure(crate::attachments::configure),
    );
}

/// A known path with a method it does not serve.
pub(crate) async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// Any path no route serves.
pub(crate) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("resource"))
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
