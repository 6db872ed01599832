//! What one operation may cost, and a stable `extensions.code` on every
//! error the engine itself reports (async-graphql gives them none).

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};
use std::sync::Arc;

/// Nesting deep enough for `batches { edges { node { product { ... } } } }`
/// with room, not for a cycle walked ten times.
pub(crate) const MAX_DEPTH: usize = 10;
/// Every field costs 1, a connection's fields `first` times over: a full
/// page of 200 batches with their products is about 4,200.
pub(crate) const MAX_COMPLEXITY: usize = 5_000;
/// REST's largest page.
pub(crate) const MAX_PAGE_SIZE: i32 = crate::pagination::MAX_LIMIT as i32;

pub(crate) struct StableCodes {
    /// Off, a query of `__schema` or `__type` is refused as
    /// `introspection_disabled` rather than as an unknown field.
    pub(crate) introspection: bool,
}

impl ExtensionFactory for StableCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StableCodes { introspection: self.introspection })
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for StableCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await.map_err(|error| coded(error, "graphql_parse_failed"))?;
        // Switched off, async-graphql answers `__schema: null` without a
        // word: the client is told instead.
        if !self.introspection && introspects(&document) {
            let refused =
                ServerError::new("introspection is switched off here; the schema is published as schema.graphql", None);
            return Err(coded(refused, "introspection_disabled"));
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|error| {
                    let code = match error.message.as_str() {
                        "Query is too complex." => "query_too_complex",
                        "Query is nested too deep." => "query_too_deep",
                        _ => "graphql_validation_failed",
                    };
                    coded(error, code)
                })
                .collect()
        })
    }
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

fn coded(mut error: ServerError, code: &str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
    error
}
