//! Admin commands: `stockflow-api migrate` and `stockflow-api token
//! create|list|revoke`; token issuing is shared with `POST /v1/tokens`.

use chrono::Utc;
use rand::RngCore;
use stockflow_db::{DbError, PgConnection, api_tokens, organizations, users};
use stockflow_domain::{ApiTokenSecret, Email, OrgSlug, ParseError, Role, TokenLifetime, TokenName};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("invalid {0}")]
    Invalid(#[from] ParseError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("user {email} already exists with role {existing}, not {requested}")]
    RoleMismatch { email: String, existing: String, requested: Role },
    #[error("no organization {0}")]
    NoSuchOrganization(String),
    #[error("no token {0}")]
    NoSuchToken(uuid::Uuid),
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
    /// The token may also see installation-wide operations (backups).
    pub operator: bool,
}

/// Creates a token for a user of the organization, creating the
/// organization and the user if needed, and returns the token: the only
/// time it exists outside the client's hands.
pub fn create_token(conn: &mut PgConnection, request: TokenRequest) -> Result<ApiTokenSecret, CommandError> {
    let slug = OrgSlug::parse(&request.org)?;
    let role = Role::parse(&request.role)?;
    let name = TokenName::parse(&request.name)?;
    let lifetime = request.expires_in.as_deref().map(TokenLifetime::parse).transpose()?;
    use diesel::Connection;
    conn.transaction(|conn| {
        let org = organizations::find_or_create(conn, &slug)?;
        let email = default_email(request.email.as_deref(), role, &slug)?;
        let (_, secret) = issue_token(conn, org.id, &email, role, &name, lifetime, request.operator)?;
        Ok(secret)
    })
}

/// The user a token acts as: the given email, or one user per role, so
/// `--role viewer` gives a viewer token even when an admin token was made
/// for the organization before.
pub fn default_email(email: Option<&str>, role: Role, slug: &OrgSlug) -> Result<Email, ParseError> {
    match email {
        Some(email) => Email::parse(email),
        None => Email::parse(&format!("{role}@{slug}.stockflow.invalid")),
    }
}

/// Creates a token for the user `email` of the organization (creating the
/// user with `role` if needed) and returns it with its secret: the only time
/// the secret exists outside the client's hands. Run it in a transaction.
pub fn issue_token(
    conn: &mut PgConnection,
    org_id: uuid::Uuid,
    email: &Email,
    role: Role,
    name: &TokenName,
    lifetime: Option<TokenLifetime>,
    operator: bool,
) -> Result<(api_tokens::ApiToken, ApiTokenSecret), CommandError> {
    let user = users::find_or_create(conn, org_id, email, role)?;
    if user.role != role.as_str() {
        return Err(CommandError::RoleMismatch { email: user.email, existing: user.role, requested: role });
    }
    let secret = generate_secret();
    let expires_at = lifetime.map(|l| Utc::now() + l.as_duration());
    let token = api_tokens::insert(
        conn,
        &api_tokens::NewApiToken {
            user_id: user.id,
            name: name.as_str(),
            digest: secret.digest(),
            expires_at,
            operator,
        },
    )?;
    Ok((token, secret))
}

/// One line per token of the organization, newest first; never the secret.
pub fn list_tokens(conn: &mut PgConnection, org: &str) -> Result<Vec<String>, CommandError> {
    let slug = OrgSlug::parse(org)?;
    let org =
        organizations::find_by_slug(conn, &slug)?.ok_or_else(|| CommandError::NoSuchOrganization(slug.to_string()))?;
    let when = |at: Option<chrono::DateTime<Utc>>| {
        at.map_or_else(|| "-".to_owned(), |at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    };
    let mut lines = vec!["ID\tNAME\tEMAIL\tROLE\tCREATED\tLAST_USED\tEXPIRES\tREVOKED".to_owned()];
    for (token, user) in api_tokens::list_for_org(conn, org.id)? {
        lines.push(format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            token.id,
            token.name,
            user.email,
            user.role,
            when(Some(token.created_at)),
            when(token.last_used_at),
            when(token.expires_at),
            when(token.revoked_at),
        ));
    }
    Ok(lines)
}

/// Revokes a token by id, whatever its organization (the CLI is trusted).
pub fn revoke_token(conn: &mut PgConnection, id: &str) -> Result<(), CommandError> {
    let id = uuid::Uuid::parse_str(id).map_err(|_| ParseError { field: "id", reason: "a token id (UUID)" })?;
    let org = api_tokens::org_of(conn, id)?.ok_or(CommandError::NoSuchToken(id))?;
    api_tokens::revoke(conn, org, id, Utc::now())?;
    Ok(())
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
