//! Schemas for values the code keeps as strings or JSON but whose allowed
//! values live in one list elsewhere: built from that list, so the document
//! cannot drift from it.

use crate::problem::CODES;
use stockflow_domain::{BatchStatus, Role};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values))
}

/// `code` of a problem: every value [`crate::ApiError`] produces.
pub(crate) fn error_code() -> Object {
    let table: Vec<String> = CODES.iter().map(|(code, status, _)| format!("`{code}` ({status})")).collect();
    strings(CODES.iter().map(|(code, _, _)| *code))
        .description(Some(format!("Stable; match on it. {}.", table.join(", "))))
        .examples([serde_json::json!("not_found")])
        .build()
}

pub(crate) fn role() -> Object {
    strings(Role::ALL.map(Role::as_str)).description(Some("viewer < member < admin")).build()
}

pub(crate) fn batch_status() -> Object {
    strings(BatchStatus::ALL.map(BatchStatus::as_str)).build()
}

/// `quantity` as a client may send it.
pub(crate) fn decimal_input() -> Schema {
    let text = ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[0-9]+(\.[0-9]+)?$"));
    let number = ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0));
    OneOfBuilder::new()
        .item(text)
        .item(number)
        .description(Some(
            "A non-negative decimal, at most 14 digits before the point and 6 after: a string such as \"12.5\" or a number.",
        ))
        .into()
}

/// `custom_fields` and `metadata`: any JSON object up to 16 KiB.
pub(crate) fn json_object() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Any JSON object, at most 16 KiB as JSON."))
        .examples([serde_json::json!({"mill": "North"})])
        .build()
}

/// A file's bytes, of whatever type it has.
pub(crate) struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}
