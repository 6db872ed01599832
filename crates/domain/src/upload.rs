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

    /// File extensions that name this type, the usual one first.
    pub fn extensions(self) -> &'static [&'static str] {
        match self.0 {
            "image/png" => &["png"],
            "image/jpeg" => &["jpg", "jpeg", "jpe"],
            "image/gif" => &["gif"],
            "image/webp" => &["webp"],
            "application/pdf" => &["pdf"],
            "application/zip" => &["zip", "docx", "xlsx", "pptx", "odt", "ods", "odp", "epub"],
            "text/csv" => &["csv"],
            _ => &["txt", "text", "log"],
        }
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
/// NUL or other binary control bytes, and no markup anywhere in it.
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
    !holds_markup(text)
}

/// Declarations and comments that open an HTML or XML document.
const MARKUP_OPENERS: &[&str] = &["<!doctype", "<?xml", "<!--", "<![cdata[", "<!entity", "<!element", "<!attlist"];

/// Elements a browser renders or runs, or that make a page of a document:
/// `<name` followed by a space, `>`, `/` or the end of the sniffed bytes.
const MARKUP_TAGS: &[&str] = &[
    "a",
    "applet",
    "audio",
    "base",
    "body",
    "button",
    "canvas",
    "details",
    "dialog",
    "div",
    "embed",
    "form",
    "frame",
    "frameset",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "html",
    "iframe",
    "img",
    "image",
    "input",
    "isindex",
    "keygen",
    "link",
    "marquee",
    "math",
    "meta",
    "noscript",
    "object",
    "option",
    "p",
    "param",
    "plaintext",
    "portal",
    "script",
    "select",
    "source",
    "span",
    "style",
    "svg",
    "table",
    "template",
    "textarea",
    "title",
    "video",
    "xml",
    "xmp",
    "xsl:stylesheet",
];

/// Any markup tag or declaration anywhere in `text`, in any case.
fn holds_markup(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.match_indices('<').any(|(at, _)| {
        let rest = &lower[at..];
        if MARKUP_OPENERS.iter().any(|opener| rest.starts_with(opener)) {
            return true;
        }
        let name = rest.strip_prefix('<').unwrap_or_default();
        MARKUP_TAGS.iter().any(|tag| {
            name.strip_prefix(tag).is_some_and(|after| {
                after.is_empty() || after.starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/')
            })
        })
    })
}

/// A client's filename made safe to show and to put in Content-Disposition:
/// the last path segment only, no control or invisible format characters
/// (a right-to-left override turns `invoice\u{202e}fdp.js` into what reads
/// as `invoicesj.pdf`), at most 255 bytes. Never used as a storage key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayFilename(String);

const MAX_FILENAME_BYTES: usize = 255;

impl DisplayFilename {
    pub fn sanitize(raw: &str) -> Self {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let cleaned: String = last.chars().filter(|c| !c.is_control() && !is_invisible(*c)).collect();
        let trimmed = cleaned.trim().trim_start_matches('.').trim();
        let name = if trimmed.is_empty() { "upload" } else { trimmed };
        Self(cut(name, MAX_FILENAME_BYTES).to_owned())
    }

    /// The name with an extension that says what the bytes are: kept when
    /// its own extension already does (`scan.JPG` for a JPEG), else the
    /// type's extension is added (`invoice.exe` sniffed as a PDF becomes
    /// `invoice.exe.pdf`), so what a desktop opens it with always matches
    /// the content, and what the client called it stays readable.
    pub fn for_type(&self, mime: MimeType) -> Self {
        let extensions = mime.extensions();
        let own = self.0.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase());
        if own.is_some_and(|own| extensions.contains(&own.as_str())) {
            return self.clone();
        }
        let extension = extensions.first().copied().unwrap_or("bin");
        let stem = cut(&self.0, MAX_FILENAME_BYTES - extension.len() - 1);
        Self(format!("{stem}.{extension}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `name` cut to at most `max` bytes at a character boundary.
fn cut(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Unicode's format characters (general category Cf, Unicode 15.1), which
/// draw nothing but can reorder or hide what is shown around them, and the
/// line and paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
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
    fn markup_anywhere_in_the_sniffed_bytes_is_never_text() {
        for hostile in [
            "Dear customer,\n<h1>Invoice</h1><script>fetch('/x')</script>",
            "quarterly figures\n\n<FORM action=https://evil.example>",
            "notes <IfRaMe src=x>",
            "a\n<svg/onload=alert(1)>",
            "x <h6>",
            "plain, then <a href=x>link</a>",
            "text <!-- comment -->",
            "the end <script",
        ] {
            assert_eq!(sniffed(hostile.as_bytes(), "notes.txt"), None, "{hostile:?}");
        }
        for harmless in ["a < b and c > d", "x<y", "<3 from us", "use <ctrl>+c", "email <ann@example.com>"] {
            assert_eq!(sniffed(harmless.as_bytes(), "notes.txt"), Some("text/plain"), "{harmless:?}");
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
    fn filenames_lose_invisible_format_characters() {
        assert_eq!(DisplayFilename::sanitize("invoice\u{202e}fdp.js").as_str(), "invoicefdp.js");
        assert_eq!(DisplayFilename::sanitize("\u{feff}a\u{200b}b\u{2066}c\u{ad}.txt\u{e0041}").as_str(), "abc.txt");
        assert_eq!(DisplayFilename::sanitize("\u{202e}\u{200f}").as_str(), "upload");
        assert_eq!(DisplayFilename::sanitize("Grüße – 日本.pdf").as_str(), "Grüße – 日本.pdf");
    }

    #[test]
    fn the_display_name_ends_with_an_extension_of_the_sniffed_type() {
        let named = |raw: &str, mime: &str| {
            DisplayFilename::sanitize(raw).for_type(MimeType::parse(mime).unwrap()).as_str().to_owned()
        };
        assert_eq!(named("invoice.exe", "application/pdf"), "invoice.exe.pdf");
        assert_eq!(named("a.jpg.php", "image/jpeg"), "a.jpg.php.jpg");
        assert_eq!(named("scan.JPEG", "image/jpeg"), "scan.JPEG");
        assert_eq!(named("report.pdf", "application/pdf"), "report.pdf");
        assert_eq!(named("book.xlsx", "application/zip"), "book.xlsx");
        assert_eq!(named("notes", "text/plain"), "notes.txt");
        assert_eq!(named("invoice\u{202e}fdp.js", "text/plain"), "invoicefdp.js.txt");
        let long = named(&format!("{}.exe", "é".repeat(200)), "application/pdf");
        assert!(long.len() <= 255 && long.ends_with(".pdf"), "{long}");
    }

    #[test]
    fn allowed_types_must_be_sniffable() {
        assert_eq!(MimeType::parse(" Image/PNG ").unwrap().as_str(), "image/png");
        assert!(MimeType::parse("text/html").is_err());
    }
}
