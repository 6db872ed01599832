//! Writes a page of records as JSON in one pass over its selection. The
//! engine resolves every field of every record as a boxed future of its
//! own, about 700 for a page of 50 batches with their products, and then
//! builds, writes and drops a tree of values (a map per object, a string per
//! value). A page whose every selected field is at hand (read with the page:
//! no loader, no argument, no directive) is written here straight from its
//! rows instead, its selection planned once per type rather than per
//! record; any other selection, and anything this writer does not know, is
//! the engine's, so what a client sees never depends on which one answered
//! (tests/graphql.rs compares the two).
//!
//! async-graphql's `Value` has no variant for JSON written elsewhere: a
//! written page (and a stored JSON object, as REST writes it) travels to
//! the response as `Value::Binary`, which nothing else in this schema
//! produces, and [`WrittenPages`] puts it in the body as it is.

use async_graphql::connection::{Connection, Edge, EmptyFields, PageInfo};
use async_graphql::parser::types::{Field, FragmentDefinition, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::io;

/// A record whose fields this writer can write.
pub(crate) trait AtHand: OutputType {
    /// Writes the value of `field` (never `__typename`); None when only the
    /// engine can resolve it, and then the whole page is the engine's.
    fn write_field<'a>(&self, writer: &Writer<'a>, field: &Planned<'a>, out: &mut Json) -> Option<()>;
}

/// A selection as the engine executes it on one type: fragments that apply
/// to the type inlined, fields of the same response key merged into one
/// whose sub-selections are all of theirs, in order of first appearance.
pub(crate) struct Plan<'a>(Vec<Planned<'a>>);

pub(crate) struct Planned<'a> {
    key: &'a str,
    pub(crate) name: &'a str,
    selections: Vec<&'a SelectionSet>,
    /// The sub-selection planned for the field's type, once for every
    /// record of the page.
    nested: OnceCell<Option<Plan<'a>>>,
}

/// What a selection may refer to: the document's fragments, and which
/// interfaces each type implements (for `... on Node`).
pub(crate) struct Writer<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    registry: &'a Registry,
}

impl<'a> Writer<'a> {
    /// The page of `records` as JSON, or None if some selected field is
    /// not at hand.
    fn page<T: AtHand>(&self, page: &T, records: usize, selection: &'a SelectionSet) -> Option<Vec<u8>> {
        let plan = self.plan::<T>(&[selection])?;
        // A batch with its product is about 500 bytes of JSON: one
        // allocation for most pages, and no more than a page needs, since
        // the response holds every nested page until it is written.
        let mut out = Json(Vec::with_capacity(512 * (records + 1)));
        self.object(page, &plan, &mut out)?;
        Some(out.0)
    }

    /// `record` as the field's object.
    pub(crate) fn nested<T: AtHand>(&self, field: &Planned<'a>, record: &T, out: &mut Json) -> Option<()> {
        let plan = field.nested.get_or_init(|| self.plan::<T>(&field.selections)).as_ref()?;
        self.object(record, plan, out)
    }

    /// `records` as the field's list of objects.
    pub(crate) fn list<'r, T: AtHand + 'r>(
        &self,
        field: &Planned<'a>,
        records: impl IntoIterator<Item = &'r T>,
        out: &mut Json,
    ) -> Option<()> {
        out.raw(b"[");
        for (index, record) in records.into_iter().enumerate() {
            if index > 0 {
                out.raw(b",");
            }
            self.nested(field, record, out)?;
        }
        out.raw(b"]");
        Some(())
    }

    fn object<T: AtHand>(&self, record: &T, plan: &Plan<'a>, out: &mut Json) -> Option<()> {
        // As the engine: an object of no fields (all skipped) is null.
        if plan.0.is_empty() {
            out.raw(b"null");
            return Some(());
        }
        for (index, field) in plan.0.iter().enumerate() {
            out.raw(if index == 0 { b"{" } else { b"," });
            out.value(field.key)?;
            out.raw(b":");
            if field.name == "__typename" {
                out.value(T::type_name().as_ref())?;
            } else {
                record.write_field(self, field, out)?;
            }
        }
        out.raw(b"}");
        Some(())
    }

    fn plan<T: OutputType>(&self, selections: &[&'a SelectionSet]) -> Option<Plan<'a>> {
        let mut fields = Vec::new();
        for selection in selections {
            self.collect::<T>(selection, &mut fields)?;
        }
        Some(Plan(fields))
    }

    fn collect<T: OutputType>(&self, selection: &'a SelectionSet, fields: &mut Vec<Planned<'a>>) -> Option<()> {
        for item in &selection.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    // @skip and @include are gone before execution; any other
                    // directive, and any argument, is the engine's to apply.
                    if !field.directives.is_empty() || !field.arguments.is_empty() {
                        return None;
                    }
                    let key = field.response_key().node.as_str();
                    let sub_selection = &field.selection_set.node;
                    match fields.iter_mut().find(|planned| planned.key == key) {
                        Some(planned) => planned.selections.push(sub_selection),
                        None => fields.push(Planned {
                            key,
                            name: field.name.node.as_str(),
                            selections: vec![sub_selection],
                            nested: OnceCell::new(),
                        }),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let fragment = &self.fragments.get(&spread.node.fragment_name.node)?.node;
                    if self.applies::<T>(Some(fragment.type_condition.node.on.node.as_str())) {
                        self.collect::<T>(&fragment.selection_set.node, fields)?;
                    }
                }
                Selection::InlineFragment(inline) => {
                    let condition =
                        inline.node.type_condition.as_ref().map(|condition| condition.node.on.node.as_str());
                    if self.applies::<T>(condition) {
                        self.collect::<T>(&inline.node.selection_set.node, fields)?;
                    }
                }
            }
        }
        Some(())
    }

    /// Whether a fragment on `condition` selects from a `T`: its own type,
    /// or an interface the type implements.
    fn applies<T: OutputType>(&self, condition: Option<&str>) -> bool {
        let Some(condition) = condition else { return true };
        let type_name = T::type_name();
        type_name == condition
            || self.registry.implements.get(type_name.as_ref()).is_some_and(|interfaces| interfaces.contains(condition))
    }
}

/// A page's JSON text, as it is written.
pub(crate) struct Json(Vec<u8>);

impl Json {
    pub(crate) fn value<V: Serialize + ?Sized>(&mut self, value: &V) -> Option<()> {
        serde_json::to_writer(&mut self.0, value).ok()
    }

    pub(crate) fn uuid(&mut self, id: uuid::Uuid) -> Option<()> {
        self.value(id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()))
    }

    /// As GraphQL's `DateTime` writes it.
    pub(crate) fn timestamp(&mut self, at: &DateTime<Utc>) -> Option<()> {
        crate::rfc3339::serialize(at, &mut serde_json::Serializer::new(&mut self.0)).ok()
    }

    /// Stored JSON as GraphQL's `JSON` writes it: the text as stored.
    pub(crate) fn stored(&mut self, stored: &stockflow_db::JsonText) -> Option<()> {
        self.raw(stored.as_str().as_bytes());
        Some(())
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
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
        if selected_once(ctx, &field.node) {
            let writer = Writer { fragments: &ctx.query_env.fragments, registry: &ctx.schema_env.registry };
            if let Some(written) = writer.page(&self.0, self.0.edges.len(), &ctx.item.node) {
                return Ok(Value::Binary(written.into()));
            }
        }
        self.0.resolve(ctx, field).await
    }
}

/// Whether no other field of the document has this field's response key.
/// The engine resolves each field of a key selected twice on its own and
/// merges the two objects; a written page is not an object it can merge.
fn selected_once(ctx: &ContextSelectionSet<'_>, field: &Field) -> bool {
    fn count(selection: &SelectionSet, key: &str) -> usize {
        selection
            .items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(field) => {
                    usize::from(field.node.response_key().node == key) + count(&field.node.selection_set.node, key)
                }
                Selection::FragmentSpread(_) => 0,
                Selection::InlineFragment(inline) => count(&inline.node.selection_set.node, key),
            })
            .sum()
    }
    let key = field.response_key().node.as_str();
    let env = &ctx.query_env;
    let in_fragments: usize =
        env.fragments.values().map(|fragment| count(&fragment.node.selection_set.node, key)).sum();
    count(&env.operation.node.selection_set.node, key) + in_fragments == 1
}

/// Serializes a response with its written pages put in as they are: the
/// only `Value::Binary` in this schema's responses is JSON text already
/// written (a page, a stored JSON object).
pub(crate) struct WrittenPages;

impl serde_json::ser::Formatter for WrittenPages {
    fn write_byte_array<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: &[u8]) -> io::Result<()> {
        writer.write_all(value)
    }
}

impl<N: AtHand> AtHand for Connection<String, N> {
    fn write_field<'a>(&self, writer: &Writer<'a>, field: &Planned<'a>, out: &mut Json) -> Option<()> {
        match field.name {
            "edges" => writer.list(field, &self.edges, out),
            "nodes" => writer.list(field, self.edges.iter().map(|edge| &edge.node), out),
            "pageInfo" => {
                let info = PageInfo {
                    has_previous_page: self.has_previous_page,
                    has_next_page: self.has_next_page,
                    start_cursor: self.edges.first().map(|edge| edge.cursor.clone()),
                    end_cursor: self.edges.last().map(|edge| edge.cursor.clone()),
                };
                writer.nested(field, &info, out)
            }
            _ => None,
        }
    }
}

impl<N: AtHand> AtHand for Edge<String, N, EmptyFields> {
    fn write_field<'a>(&self, writer: &Writer<'a>, field: &Planned<'a>, out: &mut Json) -> Option<()> {
        match field.name {
            "cursor" => out.value(&self.cursor),
            "node" => writer.nested(field, &self.node, out),
            _ => None,
        }
    }
}

impl AtHand for PageInfo {
    fn write_field<'a>(&self, _: &Writer<'a>, field: &Planned<'a>, out: &mut Json) -> Option<()> {
        match field.name {
            "hasPreviousPage" => out.value(&self.has_previous_page),
            "hasNextPage" => out.value(&self.has_next_page),
            "startCursor" => out.value(&self.start_cursor),
            "endCursor" => out.value(&self.end_cursor),
            _ => None,
        }
    }
}
