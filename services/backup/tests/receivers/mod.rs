//! An HTTP webhook receiver and an SMTP receiver on 127.0.0.1, written
//! here so the tests see every byte a client sends.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub(crate) const SECRET: &str = "a-shared-secret-of-32-characters";

/// Every request a webhook receiver got: its head and body.
pub(crate) type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A webhook receiver that answers the first `failures` requests with 500
/// and the rest with 200, keeping every request (headers, body).
pub(crate) async fn webhook_receiver(failures: usize) -> (String, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let url = format!("http://{}/hooks/backups", listener.local_addr().expect("bound"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let length: usize = head
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await.expect("the whole body");
            let count = {
                let mut seen = kept.lock().expect("not poisoned");
                seen.push((head, body));
                seen.len()
            };
            let status = if count <= failures { "500 Internal Server Error" } else { "200 OK" };
            let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            reader.get_mut().write_all(reply.as_bytes()).await.expect("reply written");
        }
    });
    (url, seen)
}

/// An SMTP receiver that refuses the first `refusals` conversations at
/// RCPT (451, try later) and accepts the rest, keeping each whole
/// conversation as the client wrote it.
pub(crate) async fn smtp_receiver(refusals: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        let mut conversations = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            conversations += 1;
            let refuse = conversations <= refusals;
            let mut reader = BufReader::new(stream);
            let mut transcript = String::new();
            reader.get_mut().write_all(b"220 test ESMTP\r\n").await.expect("greeting");
            let mut in_data = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                transcript.push_str(&line);
                let reply: &[u8] = if in_data {
                    if line != ".\r\n" {
                        continue;
                    }
                    in_data = false;
                    b"250 queued\r\n"
                } else if line.starts_with("EHLO") {
                    b"250-test\r\n250 8BITMIME\r\n"
                } else if line.starts_with("RCPT") && refuse {
                    b"451 try again later\r\n"
                } else if line.starts_with("DATA") {
                    in_data = true;
                    b"354 go ahead\r\n"
                } else if line.starts_with("QUIT") {
                    reader.get_mut().write_all(b"221 bye\r\n").await.expect("reply");
                    break;
                } else {
                    b"250 ok\r\n"
                };
                if reader.get_mut().write_all(reply).await.is_err() {
                    break;
                }
            }
            kept.lock().expect("not poisoned").push(transcript);
        }
    });
    (port, seen)
}
