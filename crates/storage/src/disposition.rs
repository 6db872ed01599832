//! The `Content-Disposition` a download is served with, whoever serves it
//! (the API, nginx, or S3 through a presigned URL).

use std::fmt::Write;

/// `attachment` with the filename as a plain ASCII fallback and, per RFC
/// 6266/8187, in full as UTF-8. Quotes, backslashes, path separators and
/// control characters never reach the header.
pub fn content_disposition(filename: &str) -> String {
    let cleaned: String =
        filename.chars().map(|c| if c.is_control() || matches!(c, '/' | '\\') { '_' } else { c }).collect();
    let cleaned = cleaned.trim();
    let cleaned = if cleaned.is_empty() { "download" } else { cleaned };
    let fallback: String =
        cleaned.chars().map(|c| if c.is_ascii_graphic() && c != '"' || c == ' ' { c } else { '_' }).collect();
    let mut header = format!("attachment; filename=\"{fallback}\"");
    if fallback != cleaned {
        header.push_str("; filename*=UTF-8''");
        for byte in cleaned.bytes() {
            if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
                header.push(char::from(byte));
            } else {
                let _ = write!(header, "%{byte:02X}");
            }
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn plain_names_are_quoted_as_they_are() {
        assert_eq!(content_disposition("report 2024.csv"), r#"attachment; filename="report 2024.csv""#);
    }

    #[test]
    fn hostile_and_non_ascii_names_are_neutralised() {
        assert_eq!(content_disposition("a\"b.csv"), r#"attachment; filename="a_b.csv"; filename*=UTF-8''a%22b.csv"#);
        assert_eq!(content_disposition("../../etc/passwd"), r#"attachment; filename=".._.._etc_passwd""#);
        assert_eq!(content_disposition("x\r\nSet-Cookie: y"), r#"attachment; filename="x__Set-Cookie: y""#);
        assert_eq!(
            content_disposition("résumé.pdf"),
            r#"attachment; filename="r_sum_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"#
        );
        assert_eq!(content_disposition("  "), r#"attachment; filename="download""#);
    }
}
