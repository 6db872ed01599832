//! Object keys. The system generates every key, so the rules can be strict:
//! a key that passes is a safe relative path on any filesystem and a valid
//! S3 key, and no key can reach outside the storage root.

use std::fmt;
use uuid::Uuid;

/// S3's limit, and far below PATH_MAX once joined to a root.
pub const MAX_KEY_BYTES: usize = 1024;
/// NAME_MAX of common filesystems: a longer segment could not be a LocalFs file.
const MAX_SEGMENT_BYTES: usize = 255;

/// A validated object key such as `<org>/attachments/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

/// A key prefix that names a "directory": empty (everything) or segments each
/// followed by `/`. Only whole segments match, so `a/` never matches `ab/x`,
/// and both backends mean the same by it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(String);

/// The file type of an export, which is also its key's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExportExt {
    Csv,
    Jsonl,
}

/// Why a string is not a key; the offending value is shown escaped and cut
/// short, since it may come from a hostile listing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {value}: {reason}")]
pub struct InvalidKey {
    value: String,
    reason: &'static str,
}

impl InvalidKey {
    fn new(raw: &str, reason: &'static str) -> Self {
        let cut = raw.char_indices().nth(64).map_or(raw, |(at, _)| &raw[..at]);
        let ellipsis = if cut.len() < raw.len() { "..." } else { "" };
        Self { value: format!("{cut:?}{ellipsis}"), reason }
    }

    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl Key {
    pub fn attachment(org: Uuid, id: Uuid) -> Self {
        Self(format!("{org}/attachments/{id}"))
    }

    pub fn export(org: Uuid, id: Uuid, ext: ExportExt) -> Self {
        Self(format!("{org}/exports/{id}.{}", ext.as_str()))
    }

    /// For keys read back from the database or a listing.
    pub fn parse(raw: &str) -> Result<Self, InvalidKey> {
        check_path(raw).map_err(|reason| InvalidKey::new(raw, reason))?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Prefix {
    /// Every object.
    pub fn all() -> Self {
        Self::default()
    }

    pub fn org(org: Uuid) -> Self {
        Self(format!("{org}/"))
    }

    pub fn attachments(org: Uuid) -> Self {
        Self(format!("{org}/attachments/"))
    }

    pub fn exports(org: Uuid) -> Self {
        Self(format!("{org}/exports/"))
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidKey> {
        if raw.is_empty() {
            return Ok(Self::all());
        }
        let Some(path) = raw.strip_suffix('/') else {
            return Err(InvalidKey::new(raw, "a prefix must be empty or end with '/'"));
        };
        check_path(path).map_err(|reason| InvalidKey::new(raw, reason))?;
        if raw.len() > MAX_KEY_BYTES {
            return Err(InvalidKey::new(raw, "longer than 1024 bytes"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn contains(&self, key: &Key) -> bool {
        key.as_str().starts_with(&self.0)
    }
}

impl ExportExt {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }
}

/// One path segment as LocalFs may meet it in a directory: the same rules as
/// for a segment of a key.
pub(crate) fn is_valid_segment(segment: &str) -> bool {
    check_path(segment).is_ok() && !segment.contains('/')
}

fn check_path(raw: &str) -> Result<(), &'static str> {
    if raw.is_empty() {
        return Err("empty");
    }
    if raw.len() > MAX_KEY_BYTES {
        return Err("longer than 1024 bytes");
    }
    if raw.contains('\\') {
        return Err("contains a backslash");
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("contains a space, a control character or a non-ASCII character");
    }
    if raw.starts_with('/') {
        return Err("starts with '/'");
    }
    for segment in raw.split('/') {
        match segment {
            "" => return Err("has an empty segment"),
            ".." => return Err("has a '..' segment"),
            // Rules out `.` (an alias of its directory) and keeps names
            // starting with a dot free for LocalFs's temp files.
            s if s.starts_with('.') => return Err("has a segment starting with '.'"),
            s if s.len() > MAX_SEGMENT_BYTES => return Err("has a segment longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Key {
    type Err = InvalidKey;
    fn from_str(raw: &str) -> Result<Self, InvalidKey> {
        Self::parse(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    const ID: Uuid = Uuid::from_u128(1);

    #[test]
    fn generated_keys_have_the_documented_shape_and_parse_back() {
        let attachment = Key::attachment(ORG, ID);
        assert_eq!(attachment.as_str(), format!("{ORG}/attachments/00000000-0000-0000-0000-000000000001"));
        let csv = Key::export(ORG, ID, ExportExt::Csv);
        assert_eq!(csv.as_str(), format!("{ORG}/exports/{ID}.csv"));
        let jsonl = Key::export(ORG, ID, ExportExt::Jsonl);
        assert!(jsonl.as_str().ends_with(".jsonl"));
        for key in [attachment, csv, jsonl] {
            assert_eq!(Key::parse(key.as_str()), Ok(key.clone()));
            assert!(Prefix::org(ORG).contains(&key));
        }
        assert!(Prefix::attachments(ORG).contains(&Key::attachment(ORG, ID)));
        assert!(!Prefix::exports(ORG).contains(&Key::attachment(ORG, ID)));
    }

    #[test]
    fn ordinary_keys_are_accepted() {
        for good in ["a", "a/b", "backups/db/2024-01-01T00:00:00Z.dump", "x/y_z-1~(2)!.tar.gz", &"k".repeat(255)] {
            assert!(Key::parse(good).is_ok(), "{good}");
        }
        let long = ["s"; 512].join("/");
        assert_eq!(long.len(), 1023);
        assert!(Key::parse(&long).is_ok());
    }

    #[test]
    fn hostile_keys_are_refused_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("..", "has a '..' segment"),
            ("../etc/passwd", "has a '..' segment"),
            ("a/../../etc/passwd", "has a '..' segment"),
            ("a/..", "has a '..' segment"),
            ("/etc/passwd", "starts with '/'"),
            ("a//b", "has an empty segment"),
            ("a/", "has an empty segment"),
            ("./a", "has a segment starting with '.'"),
            ("a/./b", "has a segment starting with '.'"),
            ("a/.tmp-1234", "has a segment starting with '.'"),
            ("a\\..\\b", "contains a backslash"),
            ("a\0b", "contains a space, a control character or a non-ASCII character"),
            ("a\nb", "contains a space, a control character or a non-ASCII character"),
            ("a\x7fb", "contains a space, a control character or a non-ASCII character"),
            ("a b", "contains a space, a control character or a non-ASCII character"),
            ("caf\u{e9}", "contains a space, a control character or a non-ASCII character"),
            ("a/\u{2215}..", "contains a space, a control character or a non-ASCII character"),
        ];
        for (raw, reason) in cases {
            let err = Key::parse(raw).unwrap_err();
            assert_eq!(err.reason(), reason, "{raw:?}");
        }
        let too_long = ["s"; 513].join("/");
        assert_eq!(Key::parse(&too_long).unwrap_err().reason(), "longer than 1024 bytes");
        assert_eq!(Key::parse(&"k".repeat(256)).unwrap_err().reason(), "has a segment longer than 255 bytes");
    }

    #[test]
    fn errors_escape_and_shorten_what_they_echo() {
        let err = Key::parse(&format!("\x1b[31m{}", "x".repeat(5000))).unwrap_err().to_string();
        assert!(err.starts_with(r#"invalid object key "\u{1b}[31mxxx"#), "{err}");
        assert!(err.len() < 200, "{err}");
        assert!(!err.contains('\x1b'));
    }

    #[test]
    fn prefixes_are_empty_or_whole_segments() {
        assert_eq!(Prefix::parse("").unwrap(), Prefix::all());
        for good in ["a/", "a/b/", &format!("{ORG}/exports/")] {
            assert_eq!(Prefix::parse(good).unwrap().as_str(), good);
        }
        for bad in ["a", "/", "/a/", "a//", "../", "a/../", "./", "a b/", "a\\b/", "\0/"] {
            assert!(Prefix::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Prefix::parse(&format!("{}kk/", "k/".repeat(511))).unwrap_err().reason(), "longer than 1024 bytes");
        let a = Prefix::parse("a/").unwrap();
        assert!(a.contains(&Key::parse("a/x").unwrap()));
        assert!(a.contains(&Key::parse("a/b/x").unwrap()));
        assert!(!a.contains(&Key::parse("ab/x").unwrap()));
        assert!(!a.contains(&Key::parse("a").unwrap()));
        assert!(Prefix::all().contains(&Key::parse("anything").unwrap()));
    }
}
