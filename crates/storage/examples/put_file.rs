//! Streams a file into a LocalFs store; the `storage-put` benchmark runs it.
//!
//! ```text
//! put_file <root> <key> <source-path> [--bytes N]
//! ```
//!
//! Reads `source-path` (at most `N` bytes of it, so an endless source such as
//! `/dev/zero` can be used), puts it under `key` with `PutMode::CreateNew`
//! and prints one JSON line: `{"bytes":..,"sha256":"..","seconds":..}`. The
//! body streams in fixed-size chunks; it is never held in memory whole.

use bytes::Bytes;
use futures_util::StreamExt;
use std::error::Error;
use std::io::Read;
use std::time::Instant;
use stockflow_storage::{ByteStream, Key, LocalFs, PutMode, Storage};

/// Bytes read from the source per chunk of the body stream: 128 to 512 KiB
/// were equally fast on the 2-CPU bench machine, 64 KiB slower, and 1 to
/// 2 MiB no faster for more peak RSS.
const CHUNK_BYTES: usize = 256 * 1024;

const USAGE: &str = "usage: put_file <root> <key> <source-path> [--bytes N]";

struct Args {
    root: String,
    key: Key,
    source: String,
    limit: Option<u64>,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut positional = Vec::new();
    let mut limit = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--bytes" {
            let value = args.next().ok_or(USAGE)?;
            limit = Some(value.parse::<u64>().map_err(|error| format!("--bytes {value}: {error}"))?);
        } else if arg.starts_with("--") {
            return Err(format!("unknown option {arg}\n{USAGE}").into());
        } else {
            positional.push(arg);
        }
    }
    let [root, key, source] = <[String; 3]>::try_from(positional).map_err(|_| USAGE)?;
    Ok(Args { root, key: Key::parse(&key)?, source, limit })
}

// The source is read on a thread of its own, as a network would deliver a
// body while the put hashes and writes the previous chunks.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let storage = LocalFs::new(&args.root)?;
    let file = std::fs::File::open(&args.source).map_err(|error| format!("{}: {error}", args.source))?;
    let started = Instant::now();
    let stored = storage.put(&args.key, read_on_a_thread(file, args.limit), PutMode::CreateNew).await?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(limit) = args.limit
        && stored.size != limit
    {
        return Err(format!("{} ended after {} of {limit} bytes", args.source, stored.size).into());
    }
    println!(r#"{{"bytes":{},"sha256":"{}","seconds":{seconds:.6}}}"#, stored.size, stored.sha256_hex());
    Ok(())
}

/// At most `limit` bytes of `file`, in chunks of `CHUNK_BYTES`, read by a
/// plain thread and handed over through a short queue.
fn read_on_a_thread(file: std::fs::File, limit: Option<u64>) -> ByteStream {
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    std::thread::spawn(move || {
        let mut reader = file.take(limit.unwrap_or(u64::MAX));
        loop {
            let mut chunk = vec![0; CHUNK_BYTES];
            let mut filled = 0;
            while filled < CHUNK_BYTES {
                match reader.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        let _ = sender.blocking_send(Err(error));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            chunk.truncate(filled);
            if sender.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                return;
            }
        }
    });
    futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    )
    .boxed()
}
