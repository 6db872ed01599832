//! Documents already parsed and validated, for the next request that sends
//! the same text. A front end sends the same few documents over and over;
//! parsing one and checking it against every validation rule cost about a
//! tenth of a 50-batch page's time. What is kept is bounded, and only
//! ever what the engine itself produced or accepted: a document kept is the
//! parse of exactly its text (compared in full), and a document that passed
//! every rule with an operation name and variables is only let through again
//! with the same name and variables (SHA-256 of all three), and then still
//! checked for depth, complexity and fragment cycles.

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

/// Texts of kept documents, in all: a front end's documents are a few KiB
/// each, and a parsed document takes some times its text, so a few MiB of
/// the api's memory at most.
const MAX_KEPT_TEXT_BYTES: usize = 256 * 1024;
/// Validated (document, operation, variables) kept: 32 bytes each.
const MAX_VALIDATED: usize = 50_000;

#[derive(Default)]
pub(crate) struct Documents(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    parsed: HashMap<String, Arc<ExecutableDocument>>,
    parsed_text_bytes: usize,
    validated: HashSet<[u8; 32]>,
}

/// Which (document, operation, variables) a request is.
pub(crate) struct Fingerprint([u8; 32]);

impl Documents {
    /// Gives the request its parsed document, kept from an earlier request
    /// with the same text or parsed now (and kept). A document that does
    /// not parse is left for the engine's screen to report.
    pub(crate) fn parse(&self, request: &mut Request) {
        let kept = self.kept().parsed.get(&request.query).cloned();
        if let Some(document) = kept {
            request.set_parsed_query(ExecutableDocument::clone(&document));
            return;
        }
        let Ok(document) = async_graphql::parser::parse_query(&request.query) else { return };
        let shared = Arc::new(document.clone());
        request.set_parsed_query(document);
        let mut kept = self.kept();
        if kept.parsed_text_bytes + request.query.len() > MAX_KEPT_TEXT_BYTES {
            kept.parsed.clear();
            kept.parsed_text_bytes = 0;
        }
        kept.parsed_text_bytes += request.query.len();
        kept.parsed.insert(request.query.clone(), shared);
    }

    pub(crate) fn fingerprint(request: &Request) -> Fingerprint {
        let mut digest = Sha256::new();
        for part in [request.query.as_bytes(), request.operation_name.as_deref().unwrap_or_default().as_bytes()] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        // Variables were parsed from JSON, so they write back as JSON.
        let variables = serde_json::to_vec(&request.variables).unwrap_or_default();
        digest.update(&variables);
        Fingerprint(digest.finalize().into())
    }

    pub(crate) fn passed_every_rule(&self, request: &Fingerprint) -> bool {
        self.kept().validated.contains(&request.0)
    }

    /// Called after the engine ran the request with every rule and reported
    /// no error of the document itself (those have no path).
    pub(crate) fn remember_passed(&self, request: Fingerprint, errors: &[ServerError]) {
        if errors.iter().any(|error| error.path.is_empty()) {
            return;
        }
        let mut kept = self.kept();
        if kept.validated.len() >= MAX_VALIDATED {
            kept.validated.clear();
        }
        kept.validated.insert(request.0);
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // What is kept stays consistent whatever panicked while holding it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
