//! Admin commands: `stockflow-api migrate` and `stockflow-api token create`.

use chrono::Utc;
use rand::RngCore;
use stockflow_db::{DbError, PgConnection, api_tokens, organizations, users};
use stockflow_domain::{ApiTokenSecret, Email, OrgSlug, ParseError, Role, TokenLifetime};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("invalid {0}")]
    Invalid(#[from] ParseError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("user {email} already exists with role {existing}, not {requested}")]
    RoleMismatch { email: String, existing: String, requested: Role },
}

impl From<diesel::result::Error> for CommandError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

/// Applies pending migrations; returns the versions it applied (none when
/// the schema is current, so running it twice is harmless).
pub fn migrate(conn: &mut PgConnection) -> Result<Vec<String>, CommandError> {
    Ok(stockflow_db::run_pending(conn)?)
}

pub struct TokenRequest {
    pub org: String,
    pub role: String,
    pub name: String,
    pub email: Option<String>,
    pub expires_in: Option<String>,
}

/// Creates a token for a user of the organization, creating the
/// organization and the user if needed, and returns the token: the only
/// time it exists outside the client's hands.
pub fn create_token(conn: &mut PgConnection, request: TokenRequest) -> Result<ApiTokenSecret, CommandError> {
    let slug = OrgSlug::parse(&request.org)?;
    let role = Role::parse(&request.role)?;
    // A user per role by default, so `--role viewer` gives a viewer token
    // even when an admin token was made for the organization before.
    let email = Email::parse(&request.email.unwrap_or_else(|| format!("{role}@{slug}.stockflow.invalid")))?;
    let lifetime = request.expires_in.as_deref().map(TokenLifetime::parse).transpose()?;
    let secret = generate_secret();
    create_token_rows(conn, &slug, &email, role, &request.name, lifetime, secret.digest())?;
    Ok(secret)
}

fn create_token_rows(
    conn: &mut PgConnection,
    slug: &OrgSlug,
    email: &Email,
    role: Role,
    name: &str,
    lifetime: Option<TokenLifetime>,
    digest: stockflow_domain::TokenDigest,
) -> Result<(), CommandError> {
    use diesel::Connection;
    conn.transaction(|conn| {
        let org = organizations::find_or_create(conn, slug)?;
        let user = users::find_or_create(conn, org.id, email, role)?;
        if user.role != role.as_str() {
            return Err(CommandError::RoleMismatch { email: user.email, existing: user.role, requested: role });
        }
        let expires_at = lifetime.map(|l| Utc::now() + l.as_duration());
        api_tokens::insert(conn, &api_tokens::NewApiToken { user_id: user.id, name, digest, expires_at })?;
        Ok(())
    })
}

fn generate_secret() -> ApiTokenSecret {
    let mut rng = rand::rng();
    loop {
        let mut bytes = [0u8; 96];
        rng.fill_bytes(&mut bytes);
        if let Some(secret) = ApiTokenSecret::from_random_bytes(bytes) {
            return secret;
        }
    }
}
