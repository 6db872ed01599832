//! Encryption at rest for backup storage, in the age format (X25519
//! recipients, ChaCha20-Poly1305 in 64 KiB chunks), as a [`Storage`] that
//! wraps the backup store: the dump, the manifests and the media objects
//! are encrypted on their way in and decrypted on their way out, and no
//! other part of the backup code knows. Objects stream both ways; a chunk
//! never waits for the whole object.
//!
//! `put` reports the plaintext's size and sha256, and `head` and `get` the
//! plaintext's size, so what runs record and compare is the content, not
//! its encryption (which differs at every put). `list` reports sizes as
//! stored.

use crate::manifest::ChunkReader;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use sha2::{Digest, Sha256};
use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;
use std::time::Duration;
use stockflow_config::{ConfigError, Env, FromEnvValue, Secret};
use stockflow_storage::{
    ByteRange, ByteStream, Key, Object, ObjectMeta, Prefix, PutMode, Storage, StorageError, Stored,
};
use tokio::sync::mpsc;

/// Plaintext per age chunk, and its tag.
const CHUNK: u64 = 64 * 1024;
const TAG: u64 = 16;
const NONCE: u64 = 16;
/// More than the header of a few X25519 recipients needs.
const HEADER_PROBE: u64 = 4096;
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// `BACKUP_ENCRYPTION_*`.
#[derive(Clone)]
pub struct EncryptionSettings {
    pub recipients: Vec<age::x25519::Recipient>,
    /// None when the service only writes (and `BACKUP_VERIFY_AFTER_RUN` is
    /// false): it then cannot verify or restore, which is the point.
    pub identities: Option<Secret<Vec<age::x25519::Identity>>>,
}

impl std::fmt::Debug for EncryptionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let recipients: Vec<String> = self.recipients.iter().map(ToString::to_string).collect();
        f.debug_struct("EncryptionSettings")
            .field("recipients", &recipients)
            .field("identities", &self.identities.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

struct Recipients(Vec<age::x25519::Recipient>);

impl FromEnvValue for Recipients {
    const EXPECTED: &'static str = "age X25519 recipients (age1...) separated by commas";
    fn from_env_value(raw: &str) -> Option<Self> {
        let list = raw.split(',').map(|one| one.trim().parse().ok()).collect::<Option<Vec<_>>>()?;
        (!list.is_empty()).then_some(Self(list))
    }
}

struct Identities(Vec<age::x25519::Identity>);

impl Identities {
    /// `AGE-SECRET-KEY-1...` lines; blank lines and `#` comments (as
    /// age-keygen writes them) are skipped.
    fn parse(text: &str) -> Option<Self> {
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| line.parse().ok())
            .collect::<Option<Vec<_>>>()?;
        (!keys.is_empty()).then_some(Self(keys))
    }
}

impl FromEnvValue for Identities {
    const EXPECTED: &'static str = "age X25519 identities (AGE-SECRET-KEY-1...)";
    const SECRET: bool = true;
    fn from_env_value(raw: &str) -> Option<Self> {
        Self::parse(&raw.replace(',', "\n"))
    }
}

impl EncryptionSettings {
    /// Off unless `BACKUP_ENCRYPTION_RECIPIENT` is set. The identity comes
    /// from `BACKUP_ENCRYPTION_IDENTITY` or the file
    /// `BACKUP_ENCRYPTION_IDENTITY_FILE`; one of them must decrypt what the
    /// recipients can read, and is required unless `verify_needed` is false.
    pub fn from_env(env: &Env, verify_needed: bool) -> Result<Option<Self>, ConfigError> {
        let Some(Recipients(recipients)) = env.optional("BACKUP_ENCRYPTION_RECIPIENT")? else {
            return Ok(None);
        };
        let identities = match (
            env.optional::<Identities>("BACKUP_ENCRYPTION_IDENTITY")?,
            env.get("BACKUP_ENCRYPTION_IDENTITY_FILE").map(str::trim).filter(|path| !path.is_empty()),
        ) {
            (Some(Identities(keys)), _) => Some(keys),
            (None, Some(path)) => {
                let invalid = |expected| ConfigError::Invalid {
                    var: "BACKUP_ENCRYPTION_IDENTITY_FILE".to_owned(),
                    expected,
                    got: path.to_owned(),
                };
                let text = std::fs::read_to_string(path).map_err(|_| invalid("a readable file"))?;
                Some(Identities::parse(&text).ok_or_else(|| invalid("a file of AGE-SECRET-KEY-1... lines"))?.0)
            }
            (None, None) if verify_needed => {
                return Err(ConfigError::Missing {
                    var: "BACKUP_ENCRYPTION_IDENTITY_FILE".to_owned(),
                    expected: "the age identity that decrypts backups (or BACKUP_ENCRYPTION_IDENTITY), \
                               needed to verify them; or set BACKUP_VERIFY_AFTER_RUN=false",
                });
            }
            (None, None) => None,
        };
        if let Some(keys) = &identities {
            let public: Vec<String> = keys.iter().map(|key| key.to_public().to_string()).collect();
            if !recipients.iter().any(|recipient| public.contains(&recipient.to_string())) {
                return Err(ConfigError::InvalidSecret {
                    var: "BACKUP_ENCRYPTION_IDENTITY".to_owned(),
                    expected: "an identity of one of BACKUP_ENCRYPTION_RECIPIENT's recipients",
                });
            }
        }
        Ok(Some(Self { recipients, identities: identities.map(Secret::new) }))
    }
}

/// The backup store, encrypted.
#[derive(Debug)]
pub struct Encrypted {
    inner: Arc<dyn Storage>,
    settings: EncryptionSettings,
}

impl Encrypted {
    pub fn new(inner: Arc<dyn Storage>, settings: EncryptionSettings) -> Self {
        Self { inner, settings }
    }

    fn identities(&self) -> Result<Vec<age::x25519::Identity>, StorageError> {
        self.settings.identities.as_ref().map(|keys| keys.expose().clone()).ok_or_else(|| {
            StorageError::Unavailable(
                "backups are encrypted and no identity is configured (BACKUP_ENCRYPTION_IDENTITY_FILE)".to_owned(),
            )
        })
    }

    /// The length of an object's age header, read from its first bytes;
    /// None when the object is not an age file (stored before encryption
    /// was switched on).
    async fn header_len(&self, key: &Key, stored: u64) -> Result<Option<u64>, StorageError> {
        let probe = ByteRange::inclusive(0, HEADER_PROBE.min(stored).saturating_sub(1));
        let object = self.inner.get(key, Some(probe)).await?;
        let head: Vec<u8> = collect(object.body).await.map_err(|e| StorageError::io("get", Some(key), e))?;
        if !head.starts_with(AGE_MAGIC) {
            return Ok(None);
        }
        header_end(&head).map(Some).ok_or_else(|| not_age(key))
    }
}

/// Where the age header in `head` ends: after "--- <MAC>\n", the only line
/// that starts so; None while `head` does not hold all of it.
fn header_end(head: &[u8]) -> Option<u64> {
    let mac_line = head.windows(5).position(|window| window == b"\n--- ")? + 1;
    let end = mac_line + head[mac_line..].iter().position(|b| *b == b'\n')? + 1;
    u64::try_from(end).ok()
}

/// Reads the first chunks of an object's body until its header is whole;
/// returns the header's length and the body, those chunks included.
async fn peek_header(key: &Key, mut body: ByteStream) -> Result<(u64, ByteStream), StorageError> {
    let mut seen: Vec<Bytes> = Vec::new();
    let mut head: Vec<u8> = Vec::new();
    let end = loop {
        if let Some(end) = header_end(&head) {
            break end;
        }
        if head.len() as u64 >= HEADER_PROBE {
            return Err(not_age(key));
        }
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| StorageError::io("get", Some(key), e))?;
                head.extend_from_slice(&chunk);
                seen.push(chunk);
            }
            None => return Err(not_age(key)),
        }
    };
    if !head.starts_with(AGE_MAGIC) {
        return Err(not_age(key));
    }
    Ok((end, futures_util::stream::iter(seen.into_iter().map(Ok)).chain(body).boxed()))
}

fn not_age(key: &Key) -> StorageError {
    StorageError::io("decrypt", Some(key), io::Error::new(io::ErrorKind::InvalidData, "not an age-encrypted object"))
}

/// The plaintext size of an age object of `stored` bytes whose header has
/// `header` bytes: the nonce, then 64 KiB chunks each with its tag (the
/// last one shorter, and present even for an empty plaintext).
fn plaintext_size(stored: u64, header: u64) -> Option<u64> {
    let chunks_with_tags = stored.checked_sub(header)?.checked_sub(NONCE)?;
    let chunks = chunks_with_tags.div_ceil(CHUNK + TAG);
    chunks_with_tags.checked_sub(chunks.max(1) * TAG)
}

async fn collect(mut body: ByteStream) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    while let Some(chunk) = body.next().await {
        all.extend_from_slice(&chunk?);
    }
    Ok(all)
}

/// A stream of what a channel receives, ending when every sender is gone.
fn receiver_stream(rx: mpsc::Receiver<io::Result<Bytes>>) -> ByteStream {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

/// Sends what the encryptor writes on to the store, 64 KiB at a time.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK as usize {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        // The store stopped reading: its put failed and says why.
        self.tx.blocking_send(Ok(chunk)).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// Encrypts what `plain` brings into `cipher`; returns the plaintext's size
/// and sha256. An error from the plaintext is passed on, so the store's put
/// fails instead of keeping a well-formed but truncated object.
fn encrypt(
    recipients: &[age::x25519::Recipient],
    mut plain: mpsc::Receiver<io::Result<Bytes>>,
    cipher: mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<(u64, [u8; 32])> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|error| io::Error::other(error.to_string()))?;
    let writer = ChannelWriter { tx: cipher.clone(), buffer: Vec::with_capacity(CHUNK as usize * 2) };
    let mut stream = encryptor.wrap_output(writer)?;
    let (mut size, mut hasher) = (0_u64, Sha256::new());
    while let Some(chunk) = plain.blocking_recv() {
        match chunk {
            Ok(bytes) => {
                size += bytes.len() as u64;
                hasher.update(&bytes);
                stream.write_all(&bytes)?;
            }
            Err(error) => {
                let _ = cipher.blocking_send(Err(io::Error::new(error.kind(), error.to_string())));
                return Err(error);
            }
        }
    }
    stream.finish()?.flush()?;
    Ok((size, hasher.finalize().into()))
}

/// Decrypts what `cipher` brings into `plain`, chunk by chunk: a chunk
/// whose tag does not match (a flipped bit, a truncated object) is an
/// error, never plaintext.
fn decrypt(
    identities: &[age::x25519::Identity],
    cipher: mpsc::Receiver<io::Result<Bytes>>,
    plain: &mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let reader = BufReader::with_capacity(CHUNK as usize, ChunkReader::new(cipher));
    let invalid = |error: age::DecryptError| io::Error::new(io::ErrorKind::InvalidData, error.to_string());
    let decryptor = age::Decryptor::new_buffered(reader).map_err(invalid)?;
    let mut stream = decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)).map_err(invalid)?;
    let mut buffer = vec![0; CHUNK as usize];
    loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        plain
            .blocking_send(Ok(Bytes::copy_from_slice(&buffer[..n])))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
    }
}

/// The part of a plaintext stream a range selects.
fn select(body: ByteStream, range: std::ops::RangeInclusive<u64>) -> ByteStream {
    let (start, end) = (*range.start(), *range.end());
    body.scan(0_u64, move |offset, chunk| {
        let item = chunk.map(|bytes| {
            let (from, to) = (*offset, *offset + bytes.len() as u64);
            *offset = to;
            let lo = start.clamp(from, to) - from;
            let hi = (end + 1).clamp(from, to) - from;
            bytes.slice(lo as usize..hi as usize)
        });
        futures_util::future::ready(Some(item))
    })
    .filter(|item| futures_util::future::ready(!matches!(item, Ok(bytes) if bytes.is_empty())))
    .boxed()
}

#[async_trait]
impl Storage for Encrypted {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn put(&self, key: &Key, mut body: ByteStream, mode: PutMode) -> Result<Stored, StorageError> {
        let (plain_tx, plain_rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let (cipher_tx, cipher_rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let recipients = self.settings.recipients.clone();
        let encrypting = tokio::task::spawn_blocking(move || encrypt(&recipients, plain_rx, cipher_tx));
        let feed = async move {
            while let Some(chunk) = body.next().await {
                let failed = chunk.is_err();
                if plain_tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        };
        let ((), stored) = tokio::join!(feed, self.inner.put(key, receiver_stream(cipher_rx), mode));
        let encrypted = encrypting.await.map_err(|error| StorageError::Unavailable(error.to_string()))?;
        stored?;
        let (size, sha256) = encrypted.map_err(StorageError::Body)?;
        Ok(Stored { size, sha256 })
    }

    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<Object, StorageError> {
        let identities = self.identities()?;
        // One request: the plaintext's size follows from the stored size and
        // the header at the start of the body.
        let object = self.inner.get(key, None).await?;
        let (header, mut cipher) = peek_header(key, object.body).await?;
        let size = plaintext_size(object.meta.size, header).ok_or_else(|| not_age(key))?;
        let meta = ObjectMeta { size, ..object.meta };
        let selected = range.map(|range| range.resolve(meta.size)).transpose()?;
        let (cipher_tx, cipher_rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let (plain_tx, plain_rx) = mpsc::channel::<io::Result<Bytes>>(4);
        tokio::spawn(async move {
            while let Some(chunk) = cipher.next().await {
                if cipher_tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        tokio::task::spawn_blocking(move || {
            if let Err(error) = decrypt(&identities, cipher_rx, &plain_tx) {
                let _ = plain_tx.blocking_send(Err(error));
            }
        });
        let body = receiver_stream(plain_rx);
        let body: BoxStream<'static, io::Result<Bytes>> = match selected {
            Some(range) => select(body, range),
            None => body,
        };
        Ok(Object { meta, body })
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StorageError> {
        let Some(meta) = self.inner.head(key).await? else { return Ok(None) };
        // An object stored in the clear, before encryption was switched on,
        // counts as absent: a media backup then writes it again, encrypted.
        let Some(header) = self.header_len(key, meta.size).await? else { return Ok(None) };
        let size = plaintext_size(meta.size, header).ok_or_else(|| not_age(key))?;
        Ok(Some(ObjectMeta { size, ..meta }))
    }

    async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }

    async fn discard_incomplete(&self, key: &Key) -> Result<u64, StorageError> {
        self.inner.discard_incomplete(key).await
    }

    fn list(&self, prefix: &Prefix) -> BoxStream<'static, Result<ObjectMeta, StorageError>> {
        self.inner.list(prefix)
    }

    async fn presign_get(&self, _: &Key, _: Duration, _: &str) -> Result<Option<url::Url>, StorageError> {
        // A presigned URL would hand out ciphertext.
        Ok(None)
    }

    async fn health_check(&self) -> Result<(), StorageError> {
        self.inner.health_check().await
    }

    async fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
        self.inner.available_bytes().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn plaintext_sizes_follow_the_chunking() {
        let header = 120;
        let stored = |plain: u64| header + NONCE + plain + plain.div_ceil(CHUNK).max(1) * TAG;
        for plain in [0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7] {
            assert_eq!(plaintext_size(stored(plain), header), Some(plain), "{plain}");
        }
        assert_eq!(plaintext_size(10, header), None);
    }

    fn key_pair() -> (age::x25519::Identity, String) {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        (identity, recipient)
    }

    #[test]
    fn the_identity_must_open_what_the_recipients_can_read() {
        let (identity, recipient) = key_pair();
        let (_, stranger) = key_pair();
        let secret = identity.to_string().expose_secret().to_owned();
        let env = Env::from_pairs([("BACKUP_ENCRYPTION_RECIPIENT", recipient.as_str())]);
        assert_eq!(
            EncryptionSettings::from_env(&env, true).expect_err("no identity").var(),
            "BACKUP_ENCRYPTION_IDENTITY_FILE"
        );
        assert!(EncryptionSettings::from_env(&env, false).expect("write-only").is_some_and(|s| s.identities.is_none()));
        let good = env.clone().with("BACKUP_ENCRYPTION_IDENTITY", secret.as_str());
        assert!(EncryptionSettings::from_env(&good, true).expect("valid").is_some());
        let wrong = Env::from_pairs([
            ("BACKUP_ENCRYPTION_RECIPIENT", stranger.as_str()),
            ("BACKUP_ENCRYPTION_IDENTITY", secret.as_str()),
        ]);
        let error = EncryptionSettings::from_env(&wrong, true).expect_err("another key pair");
        assert_eq!(error.var(), "BACKUP_ENCRYPTION_IDENTITY");
        assert!(!error.to_string().contains(&secret), "{error}");
        assert!(EncryptionSettings::from_env(&Env::from_pairs::<&str, &str>([]), true).expect("off").is_none());
    }
}
