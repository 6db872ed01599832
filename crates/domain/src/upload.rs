//! What an upload is, judged by its bytes and never by what the client says:
//! the sniffed content type, and a filename safe to show.

use crate::ParseError;

/// How many leading bytes `sniff` needs to decide.
pub const SNIFF_BYTES: usize = 512;

/// Media types Stockflow can recognise from content. Anything else is
/// refused, whatever the client's Content-Type or the filename claim.
pub const SNIFFABLE: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "application/zip",
    "text/plain",
    "text/csv",
];

/// A media type from `SNIFFABLE`, as named in `ALLOWED_MIME_TYPES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MimeType(&'static str);

impl MimeType {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let raw = raw.trim().to_ascii_lowercase();
        SNIFFABLE.iter().find(|known| **known == raw).map(|known| Self(known)).ok_or(ParseError::new(
            "mime_type",
            "one of image/png, image/jpeg, image/gif, image/webp, application/pdf, application/zip, text/plain, text/csv",
        ))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// The type of a body from its first bytes (at least `SNIFF_BYTES` of them
/// unless the body is shorter), or `None` when it is nothing we recognise.
/// Text that looks like HTML, XML or script is never text: a browser could
/// be made to run it.
pub fn sniff(head: &[u8], filename: &DisplayFilename) -> Option<MimeType> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
    ];
    if let Some((_, mime)) = MAGIC.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Some(MimeType(mime));
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return Some(MimeType("image/webp"));
    }
    if is_plain_text(head) {
        let csv = filename.as_str().to_ascii_lowercase().ends_with(".csv");
        return Some(MimeType(if csv { "text/csv" } else { "text/plain" }));
    }
    None
}

/// UTF-8 (a multi-byte character cut at the end of `head` is fine) with no
/// NUL or other binary control bytes, not starting like markup.
fn is_plain_text(head: &[u8]) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(error) if error.error_len().is_none() => {
            // Only an incomplete character at the very end.
            std::str::from_utf8(&head[..error.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}')) {
        return false;
    }
    let start = text.trim_start_matches('\u{feff}').trim_start().to_ascii_lowercase();
    const MARKUP: &[&str] = &[
        "<!doctype",
        "<html",
        "<head",
        "<body",
        "<script",
        "<iframe",
        "<svg",
        "<?xml",
        "<!--",
        "<style",
        "<img",
        "<a ",
        "<div",
        "<p>",
        "<meta",
        "<title",
    ];
    !MARKUP.iter().any(|tag| start.starts_with(tag))
}

/// A client's filename made safe to show and to put in Content-Disposition:
/// the last path segment only, no control characters, at most 255 bytes.
/// Never used as a storage key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayFilename(String);

impl DisplayFilename {
    pub fn sanitize(raw: &str) -> Self {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
        let trimmed = cleaned.trim().trim_start_matches('.').trim();
        let mut name = if trimmed.is_empty() { "upload".to_owned() } else { trimmed.to_owned() };
        if name.len() > 255 {
            let mut cut = 255;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
        }
        Self(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniffed(head: &[u8], name: &str) -> Option<&'static str> {
        sniff(head, &DisplayFilename::sanitize(name)).map(MimeType::as_str)
    }

    #[test]
    fn types_come_from_the_bytes_not_the_name() {
        assert_eq!(sniffed(b"\x89PNG\r\n\x1a\n....", "x.txt"), Some("image/png"));
        assert_eq!(sniffed(b"\xff\xd8\xff\xe0", "a.jpg.php"), Some("image/jpeg"));
        assert_eq!(sniffed(b"%PDF-1.7", "x"), Some("application/pdf"));
        assert_eq!(sniffed(b"RIFF\x00\x00\x00\x00WEBPVP8 ", "x"), Some("image/webp"));
        assert_eq!(sniffed(b"sku,qty\nA,1\n", "stock.CSV"), Some("text/csv"));
        assert_eq!(sniffed("Grüße\n".as_bytes(), "notes"), Some("text/plain"));
        assert_eq!(sniffed(b"", "empty.txt"), Some("text/plain"));
    }

    #[test]
    fn markup_and_binary_are_never_text() {
        for hostile in [
            &b"<!DOCTYPE html><script>alert(1)</script>"[..],
            b"  <html>",
            b"\xef\xbb\xbf<svg onload=x>",
            b"<?xml version='1.0'?>",
            b"MZ\x90\x00\x03",
            b"a\x00b",
            b"\xff\xfe\x00",
        ] {
            assert_eq!(sniffed(hostile, "photo.png"), None, "{hostile:?}");
        }
    }

    #[test]
    fn a_character_cut_by_the_sniff_window_is_still_text() {
        let mut head = "é".repeat(300).into_bytes();
        head.truncate(SNIFF_BYTES - 1);
        assert_eq!(sniffed(&head, "x.txt"), Some("text/plain"));
    }

    #[test]
    fn filenames_lose_paths_controls_and_excess() {
        assert_eq!(DisplayFilename::sanitize("../../etc/passwd").as_str(), "passwd");
        assert_eq!(DisplayFilename::sanitize("C:\\Users\\me\\report.pdf").as_str(), "report.pdf");
        assert_eq!(DisplayFilename::sanitize("a\0b\r\n.txt").as_str(), "ab.txt");
        assert_eq!(DisplayFilename::sanitize("..").as_str(), "upload");
        assert_eq!(DisplayFilename::sanitize(".htaccess").as_str(), "htaccess");
        assert_eq!(DisplayFilename::sanitize("").as_str(), "upload");
        let long = DisplayFilename::sanitize(&"é".repeat(200));
        assert!(long.as_str().len() <= 255 && long.as_str().len() >= 254);
    }

    #[test]
    fn allowed_types_must_be_sniffable() {
        assert_eq!(MimeType::parse(" Image/PNG ").unwrap().as_str(), "image/png");
        assert!(MimeType::parse("text/html").is_err());
    }
}
