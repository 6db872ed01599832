//! Just enough SMTP (RFC 5321) to hand a plain-text alert to a relay:
//! EHLO, MAIL, RCPT for each recipient, DATA, QUIT. No AUTH and no TLS:
//! the relay is one that accepts this host's mail as it is, such as the
//! host's own MTA or a relay inside the private network, which then
//! carries it on with whatever credentials and TLS it has.

use super::{Alert, EmailSettings};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One attempt, all of it within `timeout`.
pub(super) async fn send(email: &EmailSettings, alert: &Alert, timeout: Duration) -> Result<(), String> {
    let address = format!("{}:{}", email.host.as_str(), email.port);
    tokio::time::timeout(timeout, conversation(&address, email, alert))
        .await
        .map_err(|_| format!("{address}: no answer within {} s", timeout.as_secs()))?
}

async fn conversation(address: &str, email: &EmailSettings, alert: &Alert) -> Result<(), String> {
    let stream = TcpStream::connect(address).await.map_err(|error| format!("{address}: {error}"))?;
    let mut session = Session { stream: BufReader::new(stream), address };
    session.expect(220, "greeting").await?;
    session.command("EHLO stockflow-backup", 250).await?;
    session.command(&format!("MAIL FROM:<{}>", email.from.as_str()), 250).await?;
    for to in &email.to {
        session.command(&format!("RCPT TO:<{}>", to.as_str()), 250).await?;
    }
    session.command("DATA", 354).await?;
    session.send(&message(email, alert)).await?;
    session.command(".", 250).await?;
    // The relay has the message: a QUIT it does not answer changes nothing.
    let _ = session.command("QUIT", 221).await;
    Ok(())
}

struct Session<'a> {
    stream: BufReader<TcpStream>,
    address: &'a str,
}

impl Session<'_> {
    async fn send(&mut self, text: &str) -> Result<(), String> {
        self.stream.get_mut().write_all(text.as_bytes()).await.map_err(|error| format!("{}: {error}", self.address))
    }

    async fn command(&mut self, line: &str, code: u16) -> Result<(), String> {
        self.send(&format!("{line}\r\n")).await?;
        let verb = line.split([' ', ':']).next().unwrap_or(line);
        self.expect(code, verb).await
    }

    /// Reads a reply (its continuation lines too) and checks its code.
    async fn expect(&mut self, code: u16, after: &str) -> Result<(), String> {
        loop {
            let mut line = String::new();
            let read = self.stream.read_line(&mut line).await.map_err(|error| format!("{}: {error}", self.address))?;
            if read == 0 {
                return Err(format!("{}: closed the connection after {after}", self.address));
            }
            let got: Option<u16> = line.get(..3).and_then(|digits| digits.parse().ok());
            if got != Some(code) {
                return Err(format!("{} answered {after} with {:?}", self.address, line.trim_end()));
            }
            // "250-..." continues, "250 ..." ends the reply.
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }
}

/// The message, headers and body, with CRLF line ends and dot-stuffing.
fn message(email: &EmailSettings, alert: &Alert) -> String {
    let to: Vec<&str> = email.to.iter().map(|to| to.as_str()).collect();
    let subject: String = format!("[stockflow] {}", alert.summary).chars().filter(|c| !c.is_control()).collect();
    let mut body = format!(
        "{}\n\nkind: {}\nrun: {}\nat: {}\nalert: {}\n\n{}\n",
        alert.summary,
        alert.kind.as_str(),
        alert.run_id.map(|id| id.to_string()).unwrap_or_else(|| "-".to_owned()),
        alert.occurred_at.to_rfc3339(),
        alert.id,
        alert.detail,
    );
    body = body.replace("\r\n", "\n").replace('\r', "\n");
    let mut text = format!(
        "From: <{}>\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{}@stockflow-backup>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        email.from.as_str(),
        to.iter().map(|to| format!("<{to}>")).collect::<Vec<_>>().join(", "),
        subject,
        alert.occurred_at.to_rfc2822(),
        alert.id,
    );
    for line in body.lines() {
        // A line of one "." would end DATA early.
        if line.starts_with('.') {
            text.push('.');
        }
        text.push_str(line);
        text.push_str("\r\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertKind, EmailAddress, SmtpHost};
    use std::num::NonZeroU16;

    #[test]
    fn a_body_line_starting_with_a_dot_is_stuffed_and_lines_end_in_crlf() {
        let email = EmailSettings {
            host: SmtpHost::from_env_value_for_tests("127.0.0.1"),
            port: NonZeroU16::MIN,
            from: EmailAddress::parse("stockflow@example.com").expect("valid"),
            to: vec![EmailAddress::parse("ops@example.com").expect("valid")],
        };
        let alert = Alert::new(
            AlertKind::VerifyFailed,
            None,
            "verify failed\r\nBcc: x@y".to_owned(),
            "first\n.\nlast\r".to_owned(),
            chrono::Utc::now(),
        );
        let text = message(&email, &alert);
        assert!(text.contains("\r\n..\r\n"), "{text}");
        assert!(text.contains("Subject: [stockflow] verify failedBcc: x@y\r\n"), "{text}");
        assert!(!text.replace("\r\n", "").contains('\n') && !text.replace("\r\n", "").contains('\r'), "{text}");
    }
}
