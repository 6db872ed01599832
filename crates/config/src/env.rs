use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

/// A snapshot of the environment. Services read it once at start; tests build
/// one from pairs instead of mutating the process environment.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    /// Every name looked up, when made by [`Env::recording`] (shared by clones),
    /// so a test can tell which variables the services read.
    looked_up: Option<Arc<Mutex<BTreeSet<String>>>>,
}

/// One bad variable: which one, what it should look like, what it held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: required, expected {expected}, but it is not set")]
    Missing { var: String, expected: &'static str },
    #[error("{var}: expected {expected}, got \"{got}\"")]
    Invalid { var: String, expected: &'static str, got: String },
    /// Like `Invalid`, for secrets: the value is never echoed.
    #[error("{var}: expected {expected}, got a value that does not match (not shown: it is a secret)")]
    InvalidSecret { var: String, expected: &'static str },
}

impl ConfigError {
    pub fn var(&self) -> &str {
        match self {
            Self::Missing { var, .. } | Self::Invalid { var, .. } | Self::InvalidSecret { var, .. } => var,
        }
    }
}

/// A value that can be read from one environment variable.
pub trait FromEnvValue: Sized {
    /// What a valid value looks like, for the error line.
    const EXPECTED: &'static str;
    /// Secrets are never echoed back in errors.
    const SECRET: bool = false;
    fn from_env_value(raw: &str) -> Option<Self>;
}

impl Env {
    pub fn from_process() -> Self {
        // Variables that are not valid UTF-8 cannot be ours; skipping them keeps
        // an unrelated odd variable from stopping the service.
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            looked_up: None,
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(), looked_up: None }
    }

    pub fn with(mut self, var: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(var.into(), value.into());
        self
    }

    pub fn without(mut self, var: &str) -> Self {
        self.vars.remove(var);
        self
    }

    /// From now on, remember every name looked up (through this value or its
    /// clones); [`Env::looked_up`] lists them.
    pub fn recording(mut self) -> Self {
        self.looked_up = Some(Arc::default());
        self
    }

    /// The names looked up since [`Env::recording`], set or not; empty when
    /// not recording.
    pub fn looked_up(&self) -> BTreeSet<String> {
        self.looked_up
            .as_ref()
            .map(|names| names.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_default()
    }

    pub fn get(&self, var: &str) -> Option<&str> {
        if let Some(names) = &self.looked_up {
            names.lock().unwrap_or_else(PoisonError::into_inner).insert(var.to_owned());
        }
        self.vars.get(var).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// An empty value counts as unset: `FOO=` in an env file means "no value".
    fn raw(&self, var: &str) -> Option<&str> {
        self.get(var).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn required<T: FromEnvValue>(&self, var: &str) -> Result<T, ConfigError> {
        match self.raw(var) {
            None => Err(ConfigError::Missing { var: var.to_owned(), expected: T::EXPECTED }),
            Some(raw) => parse(var, raw),
        }
    }

    pub fn optional<T: FromEnvValue>(&self, var: &str) -> Result<Option<T>, ConfigError> {
        self.raw(var).map(|raw| parse(var, raw)).transpose()
    }

    pub fn or<T: FromEnvValue>(&self, var: &str, default: T) -> Result<T, ConfigError> {
        Ok(self.optional(var)?.unwrap_or(default))
    }
}

fn parse<T: FromEnvValue>(var: &str, raw: &str) -> Result<T, ConfigError> {
    T::from_env_value(raw).ok_or_else(|| {
        if T::SECRET {
            ConfigError::InvalidSecret { var: var.to_owned(), expected: T::EXPECTED }
        } else {
            ConfigError::Invalid { var: var.to_owned(), expected: T::EXPECTED, got: raw.to_owned() }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU64;

    #[test]
    fn malformed_value_names_the_variable_and_echoes_the_value() {
        let env = Env::from_pairs([("MAX_UPLOAD_BYTES", "ten")]);
        let err = env.required::<NonZeroU64>("MAX_UPLOAD_BYTES").unwrap_err();
        assert_eq!(err.to_string(), r#"MAX_UPLOAD_BYTES: expected a positive integer, got "ten""#);
    }

    #[test]
    fn missing_and_empty_values_are_reported_as_missing() {
        let env = Env::from_pairs([("EMPTY", "  ")]);
        for var in ["EMPTY", "ABSENT"] {
            let err = env.required::<NonZeroU64>(var).unwrap_err();
            assert_eq!(err, ConfigError::Missing { var: var.into(), expected: "a positive integer" });
        }
        assert_eq!(env.or("EMPTY", NonZeroU64::MIN).unwrap(), NonZeroU64::MIN);
    }

    #[test]
    fn a_recording_env_lists_every_name_looked_up_set_or_not_by_it_and_its_clones() {
        let plain = Env::from_pairs([("SET", "1")]);
        let _ = plain.get("SET");
        assert!(plain.looked_up().is_empty());

        let env = Env::from_pairs([("SET", "1"), ("NOT_READ", "2")]).recording();
        let _ = env.or("SET", NonZeroU64::MIN);
        let _ = env.clone().optional::<NonZeroU64>("UNSET");
        let _ = env.required::<NonZeroU64>("EMPTY_OR_MISSING");
        let names: Vec<_> = env.looked_up().into_iter().collect();
        assert_eq!(names, ["EMPTY_OR_MISSING", "SET", "UNSET"]);
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        let env = Env::from_pairs([("N", " 42 ")]);
        assert_eq!(env.required::<NonZeroU64>("N").unwrap().get(), 42);
    }
}
