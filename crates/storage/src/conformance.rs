//! The checks every backend passes, so callers never need to know which one
//! holds their bytes. A backend's test file implements [`Fixture`] and calls
//! [`storage_conformance_tests!`](crate::storage_conformance_tests), which
//! expands to one `#[tokio::test]` per check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{ByteRange, ByteStream, Key, Prefix, PutMode, Storage, StorageError, Stored};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// One fresh, empty store per test, and what the checks must ask of the
/// backend behind it.
#[async_trait::async_trait]
pub trait Fixture: Send + Sync {
    fn storage(&self) -> Arc<dyn Storage>;

    /// What interrupted puts could leave behind: temp files on disk,
    /// unfinished multipart uploads in a bucket. Must be empty after every
    /// failed or cancelled put.
    async fn leftovers(&self) -> Vec<String>;

    /// A store of the same backend that cannot take writes (an unusable
    /// root, a missing bucket): its health check must fail.
    async fn broken(&self) -> Arc<dyn Storage>;

    /// Whether the backend hands out presigned URLs.
    fn presigns(&self) -> bool;

    /// Whether `discard_incomplete` can find what a crashed put left: a
    /// store that does not implement ListMultipartUploads (s3s-fs) cannot,
    /// and relies on the bucket's lifecycle rule instead.
    fn finds_crashed_puts(&self) -> bool {
        true
    }
}

/// Expands to the whole suite for a backend; `$fixture` is an async function
/// returning a value that implements [`Fixture`].
#[macro_export]
macro_rules! storage_conformance_tests {
    ($fixture:path) => {
        $crate::storage_conformance_tests!(@each $fixture;
            round_trips_keep_every_byte,
            range_reads_return_the_asked_bytes,
            create_new_never_overwrites,
            overwrite_replaces_the_whole_object,
            missing_keys_are_not_found,
            delete_is_idempotent,
            listing_follows_whole_segment_prefixes,
            listing_pages_through_many_keys,
            a_failing_body_leaves_nothing,
            a_cancelled_put_leaves_nothing,
            an_interrupted_overwrite_keeps_the_old_object,
            what_a_crashed_put_left_is_discarded,
            concurrent_puts_to_different_keys_all_land,
            presigned_urls_work_until_they_expire,
            health_check_tells_a_broken_store,
        );
    };
    (@each $fixture:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture().await;
                $crate::conformance::$check(&fixture).await;
            }
        )*
    };
}

const MIB: usize = 1024 * 1024;

/// Deterministic bytes that differ at every offset, so a shifted or
/// repeated chunk shows in the hash.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9e37_79b9_u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// `data` as a body arriving in uneven chunks, like a network would send it.
pub fn body_of(data: Vec<u8>) -> ByteStream {
    let data = Bytes::from(data);
    let sizes = [1, 7919, 65_536, 3, 1_048_573, 130_000];
    let mut chunks = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < data.len() {
        let end = (at + sizes[i % sizes.len()]).min(data.len());
        chunks.push(Ok(data.slice(at..end)));
        at = end;
        i += 1;
    }
    stream::iter(chunks).boxed()
}

/// `head` bytes, then the body fails, as when a client disconnects midway.
pub fn failing_body(head: usize) -> ByteStream {
    let ok = stream::iter([Ok(Bytes::from(pattern(head, 9)))]);
    let fail = stream::iter([Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away"))]);
    ok.chain(fail).boxed()
}

/// `head` bytes, then nothing ever again: the put can only end by being
/// cancelled.
pub fn stalled_body(head: usize) -> ByteStream {
    stream::iter([Ok(Bytes::from(pattern(head, 10)))]).chain(stream::pending()).boxed()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub async fn read_all(storage: &dyn Storage, key: &Key, range: Option<ByteRange>) -> Vec<u8> {
    let object = storage.get(key, range).await.unwrap_or_else(|error| panic!("get {key}: {error}"));
    object
        .body
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .unwrap_or_else(|error| panic!("read {key}: {error}"))
}

async fn put(storage: &dyn Storage, key: &Key, data: Vec<u8>, mode: PutMode) -> Result<Stored, StorageError> {
    storage.put(key, body_of(data), mode).await
}

fn key(raw: &str) -> Key {
    Key::parse(raw).unwrap()
}

async fn keys_under(storage: &dyn Storage, prefix: &str) -> BTreeSet<String> {
    storage
        .list(&Prefix::parse(prefix).unwrap())
        .map_ok(|meta| meta.key.as_str().to_owned())
        .try_collect()
        .await
        .unwrap()
}

/// Cleanup that runs as a task of its own (an S3 abort after a cancelled
/// put) gets a few seconds to finish.
async fn assert_no_leftovers(fixture: &dyn Fixture) {
    let mut leftovers = fixture.leftovers().await;
    for _ in 0..50 {
        if leftovers.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        leftovers = fixture.leftovers().await;
    }
    panic!("an interrupted put left {leftovers:?}");
}

pub async fn round_trips_keep_every_byte(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    for (len, seed) in [(0, 1), (1, 2), (5 * MIB + 1, 3), (64 * MIB, 4)] {
        let data = pattern(len, seed);
        let expected = sha256(&data);
        let key = key(&format!("round-trip/{len}.bin"));
        let stored = put(&*storage, &key, data, PutMode::CreateNew).await.unwrap();
        assert_eq!(stored, Stored { size: len as u64, sha256: expected }, "{len} bytes");
        let head = storage.head(&key).await.unwrap().expect("head after put");
        assert_eq!((head.key.clone(), head.size), (key.clone(), len as u64));
        let object = storage.get(&key, None).await.unwrap();
        assert_eq!(object.meta.size, len as u64);
        let mut hasher = Sha256::new();
        let mut read = 0;
        let mut body = object.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap();
            read += chunk.len();
            hasher.update(&chunk);
        }
        assert_eq!(read, len);
        assert_eq!(<[u8; 32]>::from(hasher.finalize()), expected, "{len} bytes came back different");
    }
}

pub async fn range_reads_return_the_asked_bytes(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let data = pattern(1000, 5);
    let key = key("ranges/object");
    put(&*storage, &key, data.clone(), PutMode::CreateNew).await.unwrap();
    let cases = [
        (ByteRange::inclusive(0, 0), &data[0..1]),
        (ByteRange::inclusive(10, 19), &data[10..20]),
        (ByteRange::starting_at(990), &data[990..]),
        (ByteRange::inclusive(995, 5000), &data[995..]),
        (ByteRange::inclusive(0, 999), &data[..]),
    ];
    for (range, expected) in cases {
        assert_eq!(read_all(&*storage, &key, Some(range)).await, expected, "{range:?}");
        assert_eq!(storage.get(&key, Some(range)).await.unwrap().meta.size, 1000, "size of the whole object");
    }
    for bad in [ByteRange::starting_at(1000), ByteRange::inclusive(20, 10)] {
        match storage.get(&key, Some(bad)).await {
            Err(StorageError::InvalidRange { size: 1000 }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let missing = self::key("ranges/missing");
    assert!(
        matches!(storage.get(&missing, Some(ByteRange::starting_at(0))).await, Err(StorageError::NotFound(k)) if k == missing)
    );
}

pub async fn create_new_never_overwrites(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let key = key("exclusive/object");
    let first = pattern(3000, 6);
    put(&*storage, &key, first.clone(), PutMode::CreateNew).await.unwrap();
    for len in [10, 6 * MIB] {
        match put(&*storage, &key, pattern(len, 7), PutMode::CreateNew).await {
            Err(StorageError::AlreadyExists(existing)) => assert_eq!(existing, key),
            other => panic!("second CreateNew of {len} bytes: {other:?}"),
        }
    }
    assert_eq!(read_all(&*storage, &key, None).await, first, "the refused put changed the object");
    assert_no_leftovers(fixture).await;
}

pub async fn overwrite_replaces_the_whole_object(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let key = key("overwrite/object");
    put(&*storage, &key, pattern(6 * MIB, 8), PutMode::Overwrite).await.unwrap();
    let second = pattern(100, 9);
    let stored = put(&*storage, &key, second.clone(), PutMode::Overwrite).await.unwrap();
    assert_eq!(stored.size, 100);
    assert_eq!(read_all(&*storage, &key, None).await, second);
    assert_eq!(storage.head(&key).await.unwrap().unwrap().size, 100);
}

pub async fn missing_keys_are_not_found(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let missing = key("nowhere/object");
    assert!(matches!(storage.get(&missing, None).await, Err(StorageError::NotFound(k)) if k == missing));
    assert_eq!(storage.head(&missing).await.unwrap(), None);
}

pub async fn delete_is_idempotent(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let key = key("delete/object");
    put(&*storage, &key, pattern(10, 11), PutMode::CreateNew).await.unwrap();
    storage.delete(&key).await.unwrap();
    assert_eq!(storage.head(&key).await.unwrap(), None);
    assert!(matches!(storage.get(&key, None).await, Err(StorageError::NotFound(_))));
    storage.delete(&key).await.unwrap();
    storage.delete(&self::key("delete/never-existed")).await.unwrap();
    put(&*storage, &key, pattern(10, 12), PutMode::CreateNew).await.expect("a deleted key can be created again");
}

pub async fn listing_follows_whole_segment_prefixes(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let names = ["a/1", "a/2", "a/b/3", "ab/4", "c"];
    for (i, name) in names.iter().enumerate() {
        put(&*storage, &key(name), pattern(i + 1, 13), PutMode::CreateNew).await.unwrap();
    }
    let set = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(keys_under(&*storage, "a/").await, set(&["a/1", "a/2", "a/b/3"]));
    assert_eq!(keys_under(&*storage, "a/b/").await, set(&["a/b/3"]));
    assert_eq!(keys_under(&*storage, "").await, set(&names));
    assert_eq!(keys_under(&*storage, "zz/").await, set(&[]));
    let sizes: Vec<(String, u64)> = storage
        .list(&Prefix::parse("a/").unwrap())
        .map_ok(|meta| (meta.key.as_str().to_owned(), meta.size))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(sizes, vec![("a/1".to_owned(), 1), ("a/2".to_owned(), 2), ("a/b/3".to_owned(), 3)]);
}

/// More keys than S3 returns in one page (1,000).
pub async fn listing_pages_through_many_keys(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let expected: BTreeSet<String> = (0..1_050).map(|i| format!("many/{}/{i:04}", i % 7)).collect();
    stream::iter(expected.iter().cloned())
        .map(|name| {
            let storage = Arc::clone(&storage);
            async move { put(&*storage, &key(&name), vec![b'x'], PutMode::CreateNew).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    put(&*storage, &key("many-not/0"), vec![b'y'], PutMode::CreateNew).await.unwrap();
    assert_eq!(keys_under(&*storage, "many/").await, expected);
}

pub async fn a_failing_body_leaves_nothing(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    // Below one S3 part and past several, so both kinds of upload fail.
    for head in [1000, 12 * MIB] {
        let key = key(&format!("failing/{head}"));
        match storage.put(&key, failing_body(head), PutMode::CreateNew).await {
            Err(StorageError::Body(_)) => {}
            other => panic!("a put whose body fails after {head} bytes: {other:?}"),
        }
        assert_eq!(storage.head(&key).await.unwrap(), None, "a failed put left an object");
        assert_no_leftovers(fixture).await;
        assert_eq!(keys_under(&*storage, "").await, BTreeSet::new());
    }
}

pub async fn a_cancelled_put_leaves_nothing(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    for head in [1000, 12 * MIB] {
        let key = key(&format!("cancelled/{head}"));
        let put = storage.put(&key, stalled_body(head), PutMode::CreateNew);
        assert!(tokio::time::timeout(Duration::from_secs(2), put).await.is_err(), "a stalled put finished");
        assert_eq!(storage.head(&key).await.unwrap(), None, "a cancelled put left an object");
        assert_no_leftovers(fixture).await;
        assert_eq!(keys_under(&*storage, "").await, BTreeSet::new());
    }
}

pub async fn an_interrupted_overwrite_keeps_the_old_object(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let key = key("kept/object");
    let old = pattern(4096, 14);
    put(&*storage, &key, old.clone(), PutMode::CreateNew).await.unwrap();
    assert!(storage.put(&key, failing_body(6 * MIB), PutMode::Overwrite).await.is_err());
    let stalled = storage.put(&key, stalled_body(6 * MIB), PutMode::Overwrite);
    assert!(tokio::time::timeout(Duration::from_secs(2), stalled).await.is_err());
    assert_eq!(read_all(&*storage, &key, None).await, old);
    assert_no_leftovers(fixture).await;
}

/// A process killed mid-put runs no cleanup. Holding the stalled put (not
/// dropping it, which would clean up) while discarding looks the same to
/// the store.
pub async fn what_a_crashed_put_left_is_discarded(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let neighbour = key("crashed/other.csv");
    let key = key("crashed/export.csv");
    put(&*storage, &neighbour, pattern(100, 15), PutMode::CreateNew).await.unwrap();
    assert_eq!(storage.discard_incomplete(&key).await.unwrap(), 0, "nothing was left yet");
    let mut crashed = storage.put(&key, stalled_body(12 * MIB), PutMode::Overwrite);
    let mut left = Vec::new();
    for _ in 0..50 {
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut crashed).await.is_err(),
            "a stalled put finished"
        );
        left = fixture.leftovers().await;
        if !left.is_empty() {
            break;
        }
    }
    assert!(!left.is_empty(), "the interrupted put left nothing to discard");
    let discarded = storage.discard_incomplete(&key).await.unwrap();
    if fixture.finds_crashed_puts() {
        assert!(discarded >= 1);
        assert!(fixture.leftovers().await.is_empty(), "discard left {:?}", fixture.leftovers().await);
    }
    assert_eq!(storage.head(&key).await.unwrap(), None);
    assert_eq!(read_all(&*storage, &neighbour, None).await, pattern(100, 15), "discard touched another key");
    drop(crashed);
}

pub async fn concurrent_puts_to_different_keys_all_land(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let puts = (0..16_u8).map(|i| {
        let storage = Arc::clone(&storage);
        tokio::spawn(async move {
            let data = pattern(256 * 1024 + usize::from(i), i);
            let key = key(&format!("concurrent/{i}"));
            let stored = put(&*storage, &key, data.clone(), PutMode::CreateNew).await.unwrap();
            assert_eq!(stored.sha256, sha256(&data));
            (key, data)
        })
    });
    for landed in futures_util::future::join_all(puts).await {
        let (key, data) = landed.unwrap();
        assert_eq!(read_all(&*storage, &key, None).await, data, "{key}");
    }
}

pub async fn presigned_urls_work_until_they_expire(fixture: &dyn Fixture) {
    let storage = fixture.storage();
    let key = key("presign/report.csv");
    let data = pattern(70_000, 15);
    put(&*storage, &key, data.clone(), PutMode::CreateNew).await.unwrap();
    let ttl = Duration::from_secs(2);
    let url = storage.presign_get(&key, ttl, "Q3 report \"final\".csv").await.unwrap();
    if !fixture.presigns() {
        assert_eq!(url, None, "this backend should leave downloads to the API");
        return;
    }
    let url = url.expect("this backend should presign");
    let signed_at = std::time::Instant::now();
    let client = reqwest::Client::new();
    let fresh = client.get(url.clone()).send().await.unwrap();
    assert_eq!(fresh.status(), 200, "a fresh presigned URL was refused");
    let disposition = fresh.headers().get("content-disposition").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(disposition.as_deref(), Some(crate::content_disposition("Q3 report \"final\".csv").as_str()));
    assert_eq!(fresh.bytes().await.unwrap(), data);
    let mut tampered = url.clone();
    tampered.set_path(&format!("{}-other", url.path()));
    assert_eq!(client.get(tampered).send().await.unwrap().status(), 403, "a URL for another key was accepted");
    tokio::time::sleep((ttl + Duration::from_millis(1500)).saturating_sub(signed_at.elapsed())).await;
    let expired = client.get(url).send().await.unwrap();
    assert_eq!(expired.status(), 403, "an expired presigned URL still works");
}

pub async fn health_check_tells_a_broken_store(fixture: &dyn Fixture) {
    fixture.storage().health_check().await.expect("a working store is healthy");
    let broken = fixture.broken().await;
    let error = broken.health_check().await.expect_err("a broken store passed its health check");
    assert!(!error.to_string().is_empty());
}
