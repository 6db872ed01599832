// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! Backups encrypted at rest with age: nothing in backup storage is
//! readable without the identity, a run still verifies, unchanged media
//! are still not copied again, the dump restores to the snapshot's counts,
//! and a tampered object is refused, never decrypted into garbage.

mod common;

use age::secrecy::ExposeSecret;
use common::*;
use std::sync::Arc;
use stockflow_backup::encrypted::{Encrypted, EncryptionSettings};
use stockflow_backup::media::object_key;
use stockflow_config::Env;
use stockflow_db::backup_runs;
use stockflow_storage::{Key, LocalFs, Storage};

const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Switches the fixture's backup store to encryption to a fresh key pair,
/// the identity read from a file as an operator would keep it.
fn encrypt(fixture: &mut Fixture) -> tempfile::NamedTempFile {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!("# created: by the test\n# public key: {recipient}\n{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    let env = Env::from_pairs([
        ("BACKUP_ENCRYPTION_RECIPIENT", recipient.as_str()),
        ("BACKUP_ENCRYPTION_IDENTITY_FILE", file.path().to_str().unwrap()),
    ]);
    let settings = EncryptionSettings::from_env(&env, true).unwrap().expect("encryption on");
    let plain: Arc<dyn Storage> = Arc::new(LocalFs::new(fixture.backup_root.clone()).unwrap());
    fixture.backup.backups = Arc::new(Encrypted::new(plain, settings));
    file
}

fn encrypted_fixture() -> (Fixture, tempfile::NamedTempFile) {
    let mut fixture = fixture();
    let identity = encrypt(&mut fixture);
    (fixture, identity)
}

fn on_disk(fixture: &Fixture, key: &str) -> Vec<u8> {
    std::fs::read(fixture.backup_root.join(key)).unwrap()
}

#[tokio::test]
async fn an_encrypted_backup_verifies_restores_and_shows_nothing_at_rest() {
    let (fixture, _identity) = encrypted_fixture();
    let tenant = seed(&mut fixture.env.database.connect(), 40);
    let body = b"batch certificate: lot 42, moisture 11.2 %".to_vec();
    let (_, sha) = attach(&fixture, &tenant, &body).await;

    let run = fixture.backup.run("manual").await.unwrap();
    assert_eq!(run.status, backup_runs::SUCCEEDED, "{:?}", run.error);
    assert_eq!(run.verify_method.as_deref(), Some("restore"), "verified by restore through the decryption");

    // At rest: age files, none holding the plaintext.
    let dump = on_disk(&fixture, run.db_key.as_deref().unwrap());
    assert!(dump.starts_with(AGE_MAGIC));
    assert!(!dump.windows(5).any(|w| w == b"PGDMP"), "pg_dump's magic is not visible");
    let manifest = on_disk(&fixture, run.media_manifest_key.as_deref().unwrap());
    assert!(manifest.starts_with(AGE_MAGIC));
    let object = object_key(&hex(&sha)).unwrap();
    let stored = on_disk(&fixture, object.as_str());
    assert!(stored.starts_with(AGE_MAGIC) && !stored.windows(body.len()).any(|w| w == body.as_slice()));
    // Recorded: the plaintext's size and sha256, which verify compared.
    assert_eq!(
        fixture.backup.backups.head(&object).await.unwrap().unwrap().size,
        body.len() as u64,
        "head reports the plaintext's size"
    );

    // Unchanged media are recognised through the encryption.
    let second = fixture.backup.run("scheduled").await.unwrap();
    assert_eq!((second.status.as_str(), second.media_new_bytes), (backup_runs::SUCCEEDED, Some(0)));

    // The dump, decrypted, restores to exactly the snapshot's counts.
    let dump = sha256_and_bytes(fixture.backup.backups.as_ref(), run.db_key.as_deref().unwrap()).await;
    assert_eq!(hex(&dump.0), hex(run.db_sha256.as_deref().unwrap()));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &dump.1).unwrap();
    let target = EmptyDatabase::create(fixture.env.database.url());
    pg_restore(file.path(), &target.url);
    assert_eq!(target.counts(), recorded_counts(&run));
}

async fn sha256_and_bytes(storage: &dyn Storage, key: &str) -> ([u8; 32], Vec<u8>) {
    use futures_util::StreamExt;
    use sha2::{Digest, Sha256};
    let mut body = storage.get(&Key::parse(key).unwrap(), None).await.unwrap().body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    (Sha256::digest(&bytes).into(), bytes)
}

#[tokio::test]
async fn a_tampered_encrypted_dump_fails_verify() {
    let (fixture, _identity) = encrypted_fixture();
    seed(&mut fixture.env.database.connect(), 10);
    let run = fixture.backup.run("manual").await.unwrap();
    assert_eq!(run.status, backup_runs::SUCCEEDED, "{:?}", run.error);
    let path = fixture.backup_root.join(run.db_key.as_deref().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    let verified = fixture.backup.verify(stockflow_domain::BackupRunRef::Id(run.id)).await.unwrap();

    assert_eq!(verified.status, backup_runs::FAILED);
    assert!(verified.error.as_deref().unwrap().starts_with("verification failed"), "{:?}", verified.error);
}

#[tokio::test]
async fn switching_encryption_on_writes_media_again_encrypted() {
    let plain = fixture();
    let tenant = seed(&mut plain.env.database.connect(), 3);
    let (_, sha) = attach(&plain, &tenant, b"stored before encryption").await;
    let before = plain.backup.run("manual").await.unwrap();
    assert_eq!(before.status, backup_runs::SUCCEEDED, "{:?}", before.error);
    let object = object_key(&hex(&sha)).unwrap();
    assert!(!std::fs::read(plain.backup_root.join(object.as_str())).unwrap().starts_with(AGE_MAGIC));

    // The same installation, encryption switched on.
    let mut encrypted = plain;
    let _identity = encrypt(&mut encrypted);
    let after = encrypted.backup.run("manual").await.unwrap();
    assert_eq!(after.status, backup_runs::SUCCEEDED, "{:?}", after.error);
    assert_eq!(after.media_new_bytes, Some(24), "the object in the clear was written again");
    assert!(std::fs::read(encrypted.backup_root.join(object.as_str())).unwrap().starts_with(AGE_MAGIC));
}
