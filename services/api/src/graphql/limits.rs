//! What one operation may cost, and a stable `extensions.code` on every
//! error the engine itself reports (async-graphql gives them none).

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Request, Response, ServerError};

/// Nesting deep enough for `batches { edges { node { product { ... } } } }`
/// with room, not for a cycle walked ten times.
pub(crate) const MAX_DEPTH: usize = 10;
/// Every field costs 1, a connection's fields `first` times over: a full
/// page of 200 batches with their products is about 4,200.
pub(crate) const MAX_COMPLEXITY: usize = 5_000;
/// REST's largest page.
pub(crate) const MAX_PAGE_SIZE: i32 = crate::pagination::MAX_LIMIT as i32;

/// Refuses what must not run before the engine sees it: a document that
/// does not parse, and introspection while it is switched off (async-graphql
/// alone answers `__schema: null` without a word). Done here and not in an
/// async-graphql extension: with any extension registered the engine routes
/// every field of a response through it, a registry lookup and a boxed
/// future per field, which cost half of a 50-batch page's time.
pub(crate) fn screen(request: &mut Request, introspection: bool) -> Result<(), ServerError> {
    let document = request.parsed_query().map_err(|mut error| {
        code(&mut error, "graphql_parse_failed");
        error
    })?;
    if !introspection && introspects(document) {
        let mut refused =
            ServerError::new("introspection is switched off here; the schema is published as schema.graphql", None);
        code(&mut refused, "introspection_disabled");
        return Err(refused);
    }
    Ok(())
}

/// A code on each error the engine itself reported (it gives them none).
/// Those are the ones without a path: an error of a resolver always has
/// one, and its code from REST's error.
pub(crate) fn with_codes(mut response: Response) -> Response {
    for error in response.errors.iter_mut().filter(|error| error.path.is_empty()) {
        let engine_code = match error.message.as_str() {
            "Query is too complex." => "query_too_complex",
            "Query is nested too deep." => "query_too_deep",
            message if message.starts_with("The recursion depth of the query") => "query_too_deep",
            _ => "graphql_validation_failed",
        };
        code(error, engine_code);
    }
    response
}

/// Whether any operation or fragment asks for `__schema` or `__type`.
fn introspects(document: &ExecutableDocument) -> bool {
    let operations = document.operations.iter().map(|(_, operation)| &operation.node.selection_set.node);
    let fragments = document.fragments.values().map(|fragment| &fragment.node.selection_set.node);
    operations.chain(fragments).any(selects_introspection)
}

fn selects_introspection(set: &SelectionSet) -> bool {
    set.items.iter().any(|selection| match &selection.node {
        Selection::Field(field) => {
            matches!(field.node.name.node.as_str(), "__schema" | "__type")
                || selects_introspection(&field.node.selection_set.node)
        }
        Selection::InlineFragment(inline) => selects_introspection(&inline.node.selection_set.node),
        Selection::FragmentSpread(_) => false,
    })
}

fn code(error: &mut ServerError, code: &str) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
}
