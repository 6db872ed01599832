//! What one operation may cost, and a stable `extensions.code` on every
//! error the engine itself reports (async-graphql gives them none).

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation};
use async_graphql::parser::types::ExecutableDocument;
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

pub(crate) struct StableCodes;

impl ExtensionFactory for StableCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StableCodes)
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
        next.run(ctx, query, variables).await.map_err(|error| coded(error, "graphql_parse_failed"))
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

fn coded(mut error: ServerError, code: &str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
    error
}
