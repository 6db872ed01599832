//! Parsers for the kinds of value our variables hold.

use crate::{FromEnvValue, Secret};
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::str::FromStr;

macro_rules! positive_integer {
    ($($ty:ty),*) => {$(
        impl FromEnvValue for $ty {
            const EXPECTED: &'static str = "a positive integer";
            fn from_env_value(raw: &str) -> Option<Self> {
                raw.parse().ok()
            }
        }
    )*};
}
positive_integer!(NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize);

impl FromEnvValue for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_env_value(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        }
    }
}

impl FromEnvValue for SocketAddr {
    const EXPECTED: &'static str = "a socket address such as 127.0.0.1:8000";
    fn from_env_value(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

/// A PostgreSQL connection URL; it carries the password, so it is a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseUrl(Secret<String>);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl FromEnvValue for DatabaseUrl {
    const EXPECTED: &'static str = "a postgres://user:password@host:port/database URL";
    const SECRET: bool = true;
    fn from_env_value(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix("postgres://").or_else(|| raw.strip_prefix("postgresql://"))?;
        (!rest.is_empty()).then(|| Self(Secret::new(raw.to_owned())))
    }
}

/// One or more AMQP 0-9-1 URLs, comma-separated: the nodes of a cluster,
/// tried in turn. It carries passwords, so it is a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpUrl(Secret<String>);

impl AmqpUrl {
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// Each node's URL, in the order given.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.0.expose().split(',').map(str::trim)
    }
}

impl FromEnvValue for AmqpUrl {
    const EXPECTED: &'static str = "an amqp://user:password@host:port/vhost URL, or several separated by commas";
    const SECRET: bool = true;
    fn from_env_value(raw: &str) -> Option<Self> {
        // Parsed with the AMQP client's own URI rules, so a value accepted
        // here is one the broker connection can use.
        let valid_node = |node: &str| {
            (node.starts_with("amqp://") || node.starts_with("amqps://"))
                && node.parse::<amq_protocol_uri::AMQPUri>().is_ok()
        };
        raw.split(',').map(str::trim).all(valid_node).then(|| Self(Secret::new(raw.to_owned())))
    }
}

/// Prefix of every exchange and queue name, so that tests and tenants sharing
/// one broker never see each other's messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpNamespace(String);

impl AmqpNamespace {
    pub const DEFAULT: &'static str = "stockflow";

    pub fn parse(raw: &str) -> Option<Self> {
        let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        let starts_well = raw.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        (starts_well && raw.len() <= 48 && raw.chars().all(valid_char)).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for AmqpNamespace {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl FromEnvValue for AmqpNamespace {
    const EXPECTED: &'static str = "1 to 48 lowercase letters, digits, '-' or '_', starting with a letter or digit";
    fn from_env_value(raw: &str) -> Option<Self> {
        Self::parse(raw)
    }
}

/// A tracing env-filter directive such as `info,stockflow_api=debug`,
/// checked at start so a typo does not silently drop logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFilter(String);

impl LogFilter {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LogFilter {
    fn default() -> Self {
        Self("info".to_owned())
    }
}

impl FromEnvValue for LogFilter {
    const EXPECTED: &'static str = "a log filter such as info or warn,stockflow_api=debug";
    fn from_env_value(raw: &str) -> Option<Self> {
        tracing_subscriber::EnvFilter::from_str(raw).ok().map(|_| Self(raw.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Env;

    #[test]
    fn amqp_url_takes_a_cluster_of_nodes_in_order() {
        let env = Env::from_pairs([(
            "AMQP_URL",
            "amqp://u:p@rabbit-1:5672/%2f, amqp://u:p@rabbit-2:5672/%2f,amqp://u:p@rabbit-3:5673/%2f",
        )]);
        let url = env.required::<AmqpUrl>("AMQP_URL").unwrap();
        let nodes: Vec<_> = url.nodes().collect();
        assert_eq!(
            nodes,
            ["amqp://u:p@rabbit-1:5672/%2f", "amqp://u:p@rabbit-2:5672/%2f", "amqp://u:p@rabbit-3:5673/%2f"]
        );
        for bad in ["amqp://u:p@rabbit-1/%2f,", "amqp://u:p@rabbit-1/%2f,http://rabbit-2/"] {
            let err = Env::from_pairs([("AMQP_URL", bad)]).required::<AmqpUrl>("AMQP_URL").unwrap_err();
            assert_eq!(err.var(), "AMQP_URL", "{bad}");
        }
    }

    #[test]
    fn secrets_are_never_echoed() {
        let env = Env::from_pairs([("DATABASE_URL", "mysql://root:hunter2@db/x")]);
        let err = env.required::<DatabaseUrl>("DATABASE_URL").unwrap_err().to_string();
        assert!(err.starts_with("DATABASE_URL: expected a postgres://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let url = Env::from_pairs([("AMQP_URL", "amqp://guest:hunter2@127.0.0.1:5672/%2f")])
            .required::<AmqpUrl>("AMQP_URL")
            .unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(url.expose(), "amqp://guest:hunter2@127.0.0.1:5672/%2f");
    }

    #[test]
    fn amqp_urls_must_parse_as_amqp_uris() {
        assert!(AmqpUrl::from_env_value("amqp://guest:guest@127.0.0.1:5672/%2f").is_some());
        for bad in ["http://127.0.0.1", "amqp://h:99999/x", "amqp://h:notaport/x"] {
            assert!(AmqpUrl::from_env_value(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn namespaces_are_restricted_to_safe_names() {
        for good in ["stockflow", "t_0a1b", "tenant-7"] {
            assert!(AmqpNamespace::parse(good).is_some(), "{good}");
        }
        for bad in ["", "Stockflow", "a.b", "-x", "a b", &"x".repeat(49)] {
            assert!(AmqpNamespace::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn booleans_accept_common_spellings_only() {
        assert_eq!(bool::from_env_value("TRUE"), Some(true));
        assert_eq!(bool::from_env_value("0"), Some(false));
        assert_eq!(bool::from_env_value("maybe"), None);
    }

    #[test]
    fn log_filters_are_validated() {
        assert!(LogFilter::from_env_value("info,stockflow_api=debug").is_some());
        assert!(LogFilter::from_env_value("info,=[").is_none());
    }
}
