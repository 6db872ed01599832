use crate::ParseError;
use crate::rules::{TextRule, controls, spaces};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The URL-safe, unique name of an organization, e.g. `acme-foods`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct OrgSlug(String);

impl OrgSlug {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let starts_well = raw.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        if starts_well && raw.len() <= 63 && raw.chars().all(ok_char) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseError::new("slug", "1 to 63 lowercase letters, digits or '-', starting with a letter or digit"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a user may do. Ordered: each role can do everything the ones below it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads records.
    Viewer,
    /// Also writes records and uploads files.
    Member,
    /// Also manages tokens, users, schedules and backups.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Member, Role::Admin];

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == raw)
            .ok_or(ParseError::new("role", "admin, member or viewer"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }

    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An email address, checked for shape only (delivery is not our business):
/// a local part, `@`, and a domain holding a dot but not starting or ending
/// with one; at most 320 characters, no spaces, controls or second `@`.
/// Stored as given, compared case-insensitively by the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// Neither `@`, a space nor a control character.
macro_rules! email_char {
    () => {
        concat!("[^@", controls!(), spaces!(), "]")
    };
}
/// As `email_char!`, and not a dot either.
macro_rules! email_edge {
    () => {
        concat!("[^@.", controls!(), spaces!(), "]")
    };
}

impl Email {
    pub const RULE: TextRule = TextRule {
        pattern: concat!(
            "^",
            email_char!(),
            "+@",
            email_edge!(),
            email_char!(),
            r"*\.",
            email_char!(),
            "*",
            email_edge!(),
            "$"
        ),
        max_chars: 320,
    };

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let plain = |c: char| c != '@' && !c.is_whitespace() && !c.is_control();
        let well_formed = match raw.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.chars().all(plain)
                    && domain.chars().all(plain)
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
        if well_formed && raw.chars().count() <= Self::RULE.max_chars {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseError::new("email", "an address such as name@example.com"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(OrgSlug::parse("acme-2").unwrap().as_str(), "acme-2");
        for bad in ["", "-acme", "Acme", "a_b", "a b", "../x", &"a".repeat(64)] {
            assert!(OrgSlug::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Admin.allows(Role::Member) && Role::Member.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Member) && !Role::Member.allows(Role::Admin));
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn emails() {
        assert!(Email::parse("ann@example.com").is_ok());
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@localhost",
            "a nn@example.com",
            "ann@.com",
            "a@b@c.com",
            " ann@example.com",
            "ann@example.com.",
            "ann@exa\u{0}mple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
