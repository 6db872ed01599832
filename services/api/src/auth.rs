//! Bearer-token authentication: who is calling, for which organization,
//! with which role.

use crate::problem::ApiError;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::future::LocalBoxFuture;
use stockflow_db::api_tokens::{self, Holder};
use stockflow_db::{Database, DbError};
use stockflow_domain::{ApiTokenSecret, Role};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) token: api_tokens::ApiToken,
    pub(crate) user: stockflow_db::users::User,
    pub(crate) org: stockflow_db::organizations::Organization,
    pub(crate) role: Role,
}

impl Caller {
    /// Viewers read, members write, admins manage: a weaker role gets 403.
    pub(crate) fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role.allows(role) { Ok(()) } else { Err(ApiError::Forbidden(role)) }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = bearer_token(request);
        let database = request.app_data::<web::Data<Database>>().cloned();
        Box::pin(async move {
            let secret = presented?;
            let database = database.ok_or(ApiError::Unauthorized("authentication is not configured"))?;
            let digest = secret.digest();
            let lookup = database.clone();
            let holder = lookup
                .run(move |conn| api_tokens::find_holder(conn, &digest, chrono::Utc::now()).map_err(DbError::from))
                .await?;
            let caller =
                holder.ok_or(ApiError::Unauthorized("the token is unknown, revoked or expired")).and_then(caller)?;
            crate::last_used::record(&database, caller.token.id);
            Ok(caller)
        })
    }
}

fn bearer_token(request: &HttpRequest) -> Result<ApiTokenSecret, ApiError> {
    let header = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("send Authorization: Bearer <token>"))?;
    let value = header.to_str().map_err(|_| ApiError::Unauthorized("the Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized("send Authorization: Bearer <token>"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized("only the Bearer scheme is accepted"));
    }
    ApiTokenSecret::parse(token.trim()).map_err(|_| ApiError::Unauthorized("the token is malformed"))
}

fn caller((token, user, org): Holder) -> Result<Caller, ApiError> {
    // The database only holds valid roles (CHECK constraint); anything else
    // is treated as no access rather than guessed at.
    let role = Role::parse(&user.role).map_err(|_| ApiError::Unauthorized("the token's user has no valid role"))?;
    Ok(Caller { token, user, org, role })
}
