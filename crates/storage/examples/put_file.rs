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

use futures_util::StreamExt;
use std::error::Error;
use std::time::Instant;
use stockflow_storage::{Key, LocalFs, PutMode, Storage};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

/// Bytes read from the source per chunk of the body stream. On the 2-CPU
/// bench machine 128 to 512 KiB were equally fast, 64 KiB slower (more
/// blocking-pool round trips per GiB), and 1 to 2 MiB no faster for up to
/// 9 MiB of peak RSS instead of 4.
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

// multi_thread was no faster (1.30 s against 1.31 s, median of 12 puts of
// 1 GiB): the body is one task, and tokio's File does its reads and writes on
// the blocking pool under either flavour. current_thread starts no workers.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let storage = LocalFs::new(&args.root)?;
    let file = tokio::fs::File::open(&args.source).await.map_err(|error| format!("{}: {error}", args.source))?;
    let started = Instant::now();
    let stored = match args.limit {
        Some(limit) => {
            let body = ReaderStream::with_capacity(file.take(limit), CHUNK_BYTES).boxed();
            storage.put(&args.key, body, PutMode::CreateNew).await?
        }
        None => {
            let body = ReaderStream::with_capacity(file, CHUNK_BYTES).boxed();
            storage.put(&args.key, body, PutMode::CreateNew).await?
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Some(limit) = args.limit
        && stored.size != limit
    {
        return Err(format!("{} ended after {} of {limit} bytes", args.source, stored.size).into());
    }
    println!(r#"{{"bytes":{},"sha256":"{}","seconds":{seconds:.6}}}"#, stored.size, stored.sha256_hex());
    Ok(())
}
