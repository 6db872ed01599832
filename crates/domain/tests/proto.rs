//! Every message type of `src/jobs.rs` against its JSON Schema in `proto/`,
//! both ways: what Rust writes passes the schema, what the schema shows as an
//! example Rust reads, what Rust refuses the schema refuses too, and no schema
//! or message type is left without the other.
//!
//! A new message type is one line in `messages!` below and one
//! `proto/<TYPE>.schema.json`.
#![allow(clippy::expect_used)]

use std::collections::BTreeSet;
use std::error::Error;
use std::fmt::Debug;
use std::fs;
use std::path::{Path, PathBuf};

use boon::{Compiler, Draft, SchemaIndex, Schemas, UrlLoader};
use serde_json::{Value, json};
use stockflow_domain::{
    BackupDatabase, BackupMedia, BackupRunRef, BackupTrigger, BackupVerify, CleanupUploads, Envelope, ExpireExports,
    ExportRequested, Job, Ping, ReconcileStorage,
};
use uuid::Uuid;

/// `test_name: PayloadType = a sample payload;`, one line per message type.
macro_rules! messages {
    ($($test:ident: $payload:ty = $sample:expr;)+) => {
        $(
            #[test]
            fn $test() {
                check_message::<$payload>($sample);
            }
        )+

        /// `(Job::TYPE, Rust type name)` of every message type listed above.
        fn listed() -> Vec<(&'static str, &'static str)> {
            vec![$((<$payload as Job>::TYPE, stringify!($payload))),+]
        }
    };
}

messages! {
    export_requested: ExportRequested = ExportRequested { export_id: Uuid::new_v4(), org_id: Uuid::new_v4() };
    maintenance_ping: Ping = Ping { note: "proto test".to_owned() };
    backup_database: BackupDatabase = BackupDatabase { trigger: BackupTrigger::Scheduled };
    backup_media: BackupMedia = BackupMedia { trigger: BackupTrigger::Manual };
    backup_verify: BackupVerify = BackupVerify { run: BackupRunRef::Id(Uuid::new_v4()) };
    maintenance_cleanup_uploads: CleanupUploads = CleanupUploads {};
    maintenance_expire_exports: ExpireExports = ExpireExports {};
    maintenance_reconcile_storage: ReconcileStorage = ReconcileStorage { dry_run: true };
}

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
const ID_BASE: &str = "https://stockflow.example/proto/";
const SUFFIX: &str = ".schema.json";
const ENVELOPE_FIELDS: [&str; 6] = ["id", "type", "version", "occurred_at", "correlation_id", "payload"];

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

/// Refuses every URL: a schema in `proto/` must be whole by itself, so
/// compiling it reads no other file and nothing from the network. (The
/// draft's own meta-schemas are built into boon and need no loader.)
struct NoLoader;

impl UrlLoader for NoLoader {
    fn load(&self, url: &str) -> Result<Value, Box<dyn Error>> {
        Err(format!("a schema in proto/ must be self-contained; refused to load {url}").into())
    }
}

fn compiler() -> Compiler {
    let mut compiler = Compiler::new();
    compiler.set_default_draft(Draft::V2020_12);
    // In 2020-12 `format` only annotates unless asked: ask, so `uuid` and
    // `date-time` are checked.
    compiler.enable_format_assertions();
    compiler.use_loader(Box::new(NoLoader));
    compiler
}

/// One compiled schema of `proto/` and the JSON it was compiled from.
struct Proto {
    /// `proto/<type>.schema.json`, for messages.
    file: String,
    doc: Value,
    schemas: Schemas,
    index: SchemaIndex,
}

impl Proto {
    /// Reads `proto/<message_type>.schema.json`, checks it is a draft 2020-12
    /// schema (against the draft's meta-schema) and compiles it.
    fn load(message_type: &str) -> Self {
        let name = format!("{message_type}{SUFFIX}");
        let file = format!("proto/{name}");
        let text = fs::read_to_string(proto_dir().join(&name))
            .unwrap_or_else(|e| panic!("{message_type} has no schema {file}: {e}"));
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));

        assert_eq!(doc["$schema"], DRAFT_2020_12, "{file}: `$schema` must name draft 2020-12");
        let id = format!("{ID_BASE}{name}");
        assert_eq!(doc["$id"], id.as_str(), "{file}: `$id`");

        let mut schemas = Schemas::new();
        let mut compiler = compiler();
        let meta = compiler.compile(DRAFT_2020_12, &mut schemas).expect("the draft 2020-12 meta-schema compiles");
        if let Err(e) = schemas.validate(&doc, meta) {
            panic!("{file} is not a valid draft 2020-12 schema: {e:#}");
        }
        compiler.add_resource(&id, doc.clone()).expect("the schema's `$id` is an absolute URL");
        let index = compiler.compile(&id, &mut schemas).unwrap_or_else(|e| panic!("{file} does not compile: {e:#}"));
        Self { file, doc, schemas, index }
    }

    fn check(&self, instance: &Value) -> Result<(), String> {
        self.schemas.validate(instance, self.index).map_err(|e| format!("{e:#}"))
    }
}

/// What the Rust side makes of a document the schema refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rust {
    /// Deserializing it into `Envelope<P>` fails.
    Refuses,
    /// It deserializes, but `matches_payload()` says it is not a `P`.
    Mismatch,
    /// It deserializes and matches: the schema is the stricter of the two
    /// here, which is fine as long as Rust never writes such a document.
    Reads,
}

fn rust_reading<P: Job>(doc: &Value) -> Rust {
    match serde_json::from_value::<Envelope<P>>(doc.clone()) {
        Err(_) => Rust::Refuses,
        Ok(envelope) if !envelope.matches_payload() => Rust::Mismatch,
        Ok(_) => Rust::Reads,
    }
}

/// The documents the schema of `P` must refuse, made from a valid one.
fn bad_documents<P: Job>(valid: &Value) -> Vec<(&'static str, Value, Rust)> {
    let edit = |change: &dyn Fn(&mut Value)| {
        let mut doc = valid.clone();
        change(&mut doc);
        doc
    };
    let uppercase_id = valid["id"].as_str().expect("the id is a string").to_uppercase();
    vec![
        ("an unknown envelope field", edit(&|d| d["priority"] = json!(5)), Rust::Refuses),
        ("an unknown payload field", edit(&|d| d["payload"]["unexpected"] = json!(true)), Rust::Refuses),
        ("another message type", edit(&|d| d["type"] = json!(format!("{}.other", P::TYPE))), Rust::Mismatch),
        ("another version", edit(&|d| d["version"] = json!(P::VERSION + 1)), Rust::Mismatch),
        ("a version as a string", edit(&|d| d["version"] = json!(P::VERSION.to_string())), Rust::Refuses),
        ("no payload", edit(&|d| remove(d, "payload")), Rust::Refuses),
        ("a null payload", edit(&|d| d["payload"] = Value::Null), Rust::Refuses),
        ("no id", edit(&|d| remove(d, "id")), Rust::Refuses),
        ("a non-uuid id", edit(&|d| d["id"] = json!("not-a-uuid")), Rust::Refuses),
        ("an uppercase id", edit(&|d| d["id"] = json!(uppercase_id)), Rust::Reads),
        ("an occurred_at that is no date-time", edit(&|d| d["occurred_at"] = json!("yesterday")), Rust::Refuses),
        ("an occurred_at not in UTC", edit(&|d| d["occurred_at"] = json!("2025-06-03T16:07:21+02:00")), Rust::Reads),
        ("an empty correlation_id", edit(&|d| d["correlation_id"] = json!("")), Rust::Reads),
        ("a 256-character correlation_id", edit(&|d| d["correlation_id"] = json!("c".repeat(256))), Rust::Reads),
    ]
}

fn remove(doc: &mut Value, field: &str) {
    doc.as_object_mut().expect("an envelope is an object").remove(field);
}

/// `properties` and `required` of an object schema name the same fields,
/// and it allows no others: the Rust types deny unknown fields and have no
/// optional ones.
fn closed_object_fields(schema: &Value, at: &str, problems: &mut Vec<String>) -> BTreeSet<String> {
    let properties: BTreeSet<String> =
        schema["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if properties != required {
        problems.push(format!("{at}: `required` {required:?} must list every property {properties:?}"));
    }
    if schema["additionalProperties"] != json!(false) {
        problems.push(format!("{at}: `additionalProperties` must be false"));
    }
    properties
}

fn check_message<P: Job + Debug + PartialEq>(sample: P) {
    let proto = Proto::load(P::TYPE);
    let mut problems = Vec::new();

    // The shape: the envelope's fields, constants naming `P`, closed objects.
    let envelope_fields = closed_object_fields(&proto.doc, "the envelope", &mut problems);
    let expected: BTreeSet<String> = ENVELOPE_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    if envelope_fields != expected {
        problems.push(format!("the envelope has fields {envelope_fields:?}, Rust's {expected:?}"));
    }
    closed_object_fields(&proto.doc["properties"]["payload"], "the payload", &mut problems);
    if proto.doc["properties"]["type"]["const"] != P::TYPE {
        problems.push(format!("`type` must be the const {:?}", P::TYPE));
    }
    if proto.doc["properties"]["version"]["const"] != P::VERSION {
        problems.push(format!("`version` must be the const {}", P::VERSION));
    }
    for key in ["title", "description"] {
        if proto.doc[key].as_str().is_none_or(str::is_empty) {
            problems.push(format!("the schema needs a `{key}`"));
        }
    }

    // Rust -> schema: what a producer writes passes, and reads back the same.
    let envelope = Envelope::new(sample, "corr");
    let written = serde_json::to_value(&envelope).expect("an envelope serializes");
    if let Err(e) = proto.check(&written) {
        problems.push(format!("what Rust writes fails the schema: {written}\n{e}"));
    }
    match serde_json::from_value::<Envelope<P>>(written.clone()) {
        Ok(back) if back == envelope => {}
        other => problems.push(format!("what Rust writes does not read back the same: {other:?}")),
    }

    // Schema -> Rust: every example passes the schema, is read by Rust as a
    // `P`, and is written back unchanged (so examples are in the form
    // producers write).
    let examples = proto.doc["examples"].as_array().cloned().unwrap_or_default();
    if examples.is_empty() {
        problems.push("the schema needs at least one entry in `examples`".to_owned());
    }
    for (i, example) in examples.iter().enumerate() {
        if let Err(e) = proto.check(example) {
            problems.push(format!("examples[{i}] fails its own schema: {e}"));
        }
        match serde_json::from_value::<Envelope<P>>(example.clone()) {
            Err(e) => problems.push(format!("examples[{i}] is not an Envelope<{}>: {e}", P::TYPE)),
            Ok(read) => {
                if !read.matches_payload() {
                    problems.push(format!("examples[{i}] does not match {} v{}", P::TYPE, P::VERSION));
                }
                let rewritten = serde_json::to_value(&read).expect("an envelope serializes");
                if &rewritten != example {
                    problems.push(format!("examples[{i}] is written back as {rewritten}"));
                }
            }
        }
    }

    // What the schema refuses, and what Rust makes of the same document.
    for (what, doc, rust) in bad_documents::<P>(&written) {
        if proto.check(&doc).is_ok() {
            problems.push(format!("the schema accepts {what}: {doc}"));
        }
        let read = rust_reading::<P>(&doc);
        if read != rust {
            problems.push(format!("Rust on {what}: expected {rust:?}, got {read:?}"));
        }
    }

    assert!(problems.is_empty(), "{} against {}:\n- {}", proto.file, P::TYPE, problems.join("\n- "));
}

#[test]
fn every_schema_in_proto_has_a_rust_type() {
    let listed: BTreeSet<&str> = listed().into_iter().map(|(message_type, _)| message_type).collect();
    let mut orphans = Vec::new();
    let mut schemas = 0;
    for entry in fs::read_dir(proto_dir()).expect("proto/ is readable") {
        let name = entry.expect("a directory entry").file_name().into_string().expect("a UTF-8 file name");
        match name.strip_suffix(SUFFIX) {
            Some(message_type) if listed.contains(message_type) => schemas += 1,
            Some(_) => orphans.push(format!("{name}: no Rust message type in tests/proto.rs has this TYPE")),
            None if name == "README.md" || name == "topology.md" => {}
            None => orphans.push(format!("{name}: only README.md, topology.md and <type>{SUFFIX} belong in proto/")),
        }
    }
    assert!(orphans.is_empty(), "proto/:\n- {}", orphans.join("\n- "));
    assert_eq!(schemas, listed.len(), "every listed message type has a schema");
}

#[test]
fn every_job_in_jobs_rs_is_listed_once() {
    let source =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/jobs.rs")).expect("src/jobs.rs is readable");
    let implemented: BTreeSet<&str> = source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("impl Job for "))
        .filter_map(|rest| rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next())
        .collect();
    assert!(!implemented.is_empty(), "found no `impl Job for` in src/jobs.rs");

    let listed = listed();
    let names: BTreeSet<&str> = listed.iter().map(|(_, name)| *name).collect();
    assert_eq!(names, implemented, "the `messages!` list in tests/proto.rs against the Job impls in src/jobs.rs");

    let types: BTreeSet<&str> = listed.iter().map(|(message_type, _)| *message_type).collect();
    assert_eq!(types.len(), listed.len(), "two message types share a TYPE: {listed:?}");
}
