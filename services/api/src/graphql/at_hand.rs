//! Writes a page of records in one pass over its selection. The engine
//! resolves every field of every record as a boxed future of its own, about
//! 700 for a page of 50 batches with their products, which made a GraphQL
//! page cost three times REST's. A page whose every selected field is at
//! hand (read with the page: no loader, no argument, no directive) is
//! written here instead; any other selection, and anything this writer does
//! not know, is the engine's, so what a client sees never depends on which
//! one answered (tests/graphql.rs compares the two).

use async_graphql::connection::{Connection, Edge, EmptyFields, PageInfo};
use async_graphql::indexmap::{IndexMap, map::Entry};
use async_graphql::parser::types::{Field, FragmentDefinition, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// A record whose fields this writer can write.
pub(crate) trait AtHand: OutputType {
    /// The value of `field` (never `__typename`) when it is at hand; None
    /// when only the engine can resolve it.
    fn field(&self, writer: &Writer<'_>, field: &Field) -> Option<Value>;
}

/// What a selection may refer to: the document's fragments, and which
/// interfaces each type implements (for `... on Node`).
pub(crate) struct Writer<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    registry: &'a Registry,
}

impl Writer<'_> {
    /// `record` with `selection`, or None if some field is not at hand.
    pub(crate) fn object<T: AtHand + ?Sized>(&self, record: &T, selection: &SelectionSet) -> Option<Value> {
        let mut fields = IndexMap::with_capacity(selection.items.len());
        self.collect(record, selection, &mut fields)?;
        // As the engine: an object of no fields (all skipped) is null.
        Some(if fields.is_empty() { Value::Null } else { Value::Object(fields) })
    }

    pub(crate) fn list<'r, T: AtHand + 'r>(
        &self,
        records: impl IntoIterator<Item = &'r T>,
        selection: &SelectionSet,
    ) -> Option<Value> {
        records.into_iter().map(|record| self.object(record, selection)).collect::<Option<Vec<_>>>().map(Value::List)
    }

    fn collect<T: AtHand + ?Sized>(
        &self,
        record: &T,
        selection: &SelectionSet,
        fields: &mut IndexMap<Name, Value>,
    ) -> Option<()> {
        for item in &selection.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    // @skip and @include are gone before execution; any other
                    // directive, and any argument, is the engine's to apply.
                    if !field.directives.is_empty() || !field.arguments.is_empty() {
                        return None;
                    }
                    let value = if field.name.node == "__typename" {
                        Value::String(record.introspection_type_name().into_owned())
                    } else {
                        record.field(self, field)?
                    };
                    merge(fields, field.response_key().node.clone(), value);
                }
                Selection::FragmentSpread(spread) => {
                    let fragment = &self.fragments.get(&spread.node.fragment_name.node)?.node;
                    if self.applies(record, Some(fragment.type_condition.node.on.node.as_str())) {
                        self.collect(record, &fragment.selection_set.node, fields)?;
                    }
                }
                Selection::InlineFragment(inline) => {
                    let condition =
                        inline.node.type_condition.as_ref().map(|condition| condition.node.on.node.as_str());
                    if self.applies(record, condition) {
                        self.collect(record, &inline.node.selection_set.node, fields)?;
                    }
                }
            }
        }
        Some(())
    }

    /// Whether a fragment on `condition` selects from `record`: its own
    /// type, or an interface the type implements.
    fn applies<T: OutputType + ?Sized>(&self, record: &T, condition: Option<&str>) -> bool {
        let Some(condition) = condition else { return true };
        let concrete = record.introspection_type_name();
        concrete == condition
            || T::type_name() == condition
            || self.registry.implements.get(concrete.as_ref()).is_some_and(|interfaces| interfaces.contains(condition))
    }
}

/// The engine's rule for a response key selected twice: objects (and the
/// objects of lists) merge, anything else keeps its first value.
fn merge(fields: &mut IndexMap<Name, Value>, key: Name, value: Value) {
    let first = match fields.entry(key) {
        Entry::Vacant(vacant) => {
            vacant.insert(value);
            return;
        }
        Entry::Occupied(occupied) => occupied.into_mut(),
    };
    match (first, value) {
        (Value::Object(target), Value::Object(more)) => {
            for (key, value) in more {
                merge(target, key, value);
            }
        }
        (Value::List(target), Value::List(more)) => {
            for (target, more) in target.iter_mut().zip(more) {
                if let (Value::Object(target), Value::Object(more)) = (target, more) {
                    for (key, value) in more {
                        merge(target, key, value);
                    }
                }
            }
        }
        _ => {}
    }
}

/// A Relay connection, written in one pass when its selection is at hand
/// and by the engine otherwise. The schema sees async-graphql's own
/// `Connection`: the same types, fields and SDL.
pub(crate) struct Page<N: OutputType>(pub(crate) Connection<String, N>);

impl<N: AtHand> OutputType for Page<N> {
    fn type_name() -> Cow<'static, str> {
        <Connection<String, N> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Connection<String, N> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let writer = Writer { fragments: &ctx.query_env.fragments, registry: &ctx.schema_env.registry };
        match writer.object(&self.0, &ctx.item.node) {
            Some(written) => Ok(written),
            None => self.0.resolve(ctx, field).await,
        }
    }
}

impl<N: AtHand> AtHand for Connection<String, N> {
    fn field(&self, writer: &Writer<'_>, field: &Field) -> Option<Value> {
        let selection = &field.selection_set.node;
        match field.name.node.as_str() {
            "edges" => writer.list(&self.edges, selection),
            "nodes" => writer.list(self.edges.iter().map(|edge| &edge.node), selection),
            "pageInfo" => {
                let info = PageInfo {
                    has_previous_page: self.has_previous_page,
                    has_next_page: self.has_next_page,
                    start_cursor: self.edges.first().map(|edge| edge.cursor.clone()),
                    end_cursor: self.edges.last().map(|edge| edge.cursor.clone()),
                };
                writer.object(&info, selection)
            }
            _ => None,
        }
    }
}

impl<N: AtHand> AtHand for Edge<String, N, EmptyFields> {
    fn field(&self, writer: &Writer<'_>, field: &Field) -> Option<Value> {
        match field.name.node.as_str() {
            "cursor" => Some(Value::String(self.cursor.clone())),
            "node" => writer.object(&self.node, &field.selection_set.node),
            _ => None,
        }
    }
}

impl AtHand for PageInfo {
    fn field(&self, _: &Writer<'_>, field: &Field) -> Option<Value> {
        let cursor = |cursor: &Option<String>| cursor.clone().map_or(Value::Null, Value::String);
        match field.name.node.as_str() {
            "hasPreviousPage" => Some(Value::Boolean(self.has_previous_page)),
            "hasNextPage" => Some(Value::Boolean(self.has_next_page)),
            "startCursor" => Some(cursor(&self.start_cursor)),
            "endCursor" => Some(cursor(&self.end_cursor)),
            _ => None,
        }
    }
}
