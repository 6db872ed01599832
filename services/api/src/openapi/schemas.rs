//! Schemas for values the code keeps as strings or JSON but whose rules
//! live elsewhere: built from the domain's rules and lists, so the document
//! cannot drift from what the server enforces.

use crate::problem::CODES;
use stockflow_domain::{
    BatchCode, BatchStatus, Email, ExportFormat, ExportKind, JsonObject, MisfirePolicy, NameSearch, Notes,
    OverlapPolicy, PauseNote, ProductName, Quantity, Role, RunOutcome, RunTrigger, ScheduleError, ScheduleName, Sku,
    SkuPrefix, TextRule, Timezone, TokenLifetime, TokenName, Unit,
};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, KnownFormat, Object, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values))
}

/// A string following `rule`.
fn text(rule: TextRule) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(rule.pattern)).max_length(Some(rule.max_chars))
}

/// The same, or `null`.
fn nullable(builder: ObjectBuilder) -> ObjectBuilder {
    builder.schema_type(SchemaType::from_iter([Type::String, Type::Null]))
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

fn export_format() -> Object {
    strings([ExportFormat::Csv, ExportFormat::Jsonl].map(ExportFormat::as_str))
        .description(Some("`csv` (with a header row) or `jsonl` (one JSON object per line)"))
        .examples(["csv"])
        .build()
}

pub(crate) fn sku() -> Object {
    text(Sku::RULE)
        .description(Some(
            "Letters, digits, `.`, `_`, `/` or `-`, starting with a letter or digit; unique in the organization.",
        ))
        .examples(["FL-00"])
        .build()
}

pub(crate) fn sku_prefix() -> Object {
    text(SkuPrefix::RULE).description(Some("Only SKUs starting with this.")).build()
}

pub(crate) fn batch_code() -> Object {
    text(BatchCode::RULE)
        .description(Some("The same characters as a SKU; unique in the organization."))
        .examples(["B-2026-001"])
        .build()
}

pub(crate) fn product_name() -> Object {
    text(ProductName::RULE)
        .description(Some("Not blank, no control characters; stored trimmed."))
        .examples(["Rye flour"])
        .build()
}

pub(crate) fn unit() -> Object {
    text(Unit::RULE).description(Some("Not blank, no control characters; stored trimmed.")).examples(["kg"]).build()
}

pub(crate) fn name_search() -> Object {
    text(NameSearch::RULE)
        .description(Some("Only names containing this, case-insensitively; blank searches nothing."))
        .build()
}

const NOTES: &str = "Newlines and tabs but no other control characters; stored trimmed.";

pub(crate) fn notes() -> Object {
    nullable(text(Notes::RULE)).description(Some(format!("{NOTES} Empty when left out or null."))).build()
}

/// In a PATCH, `null` clears the notes.
pub(crate) fn notes_patch() -> Object {
    nullable(text(Notes::RULE)).description(Some(format!("{NOTES} `null` or `\"\"` clears them."))).build()
}

pub(crate) fn token_name() -> Object {
    text(TokenName::RULE)
        .description(Some("Not blank, no control characters; stored trimmed."))
        .examples(["ci"])
        .build()
}

pub(crate) fn email() -> Object {
    nullable(text(Email::RULE))
        .description(Some(
            "The user to issue for, created if new; without it (or null), the organization's user for the role.",
        ))
        .examples(["ann@example.com"])
        .build()
}

pub(crate) fn expires_in() -> Object {
    nullable(ObjectBuilder::new().schema_type(Type::String).pattern(Some(TokenLifetime::PATTERN)))
        .description(Some(
            "Days (up to 4 digits), hours (5) or minutes (7), such as 30d, 12h or 90m; without it (or null) the token does not expire.",
        ))
        .examples(["30d"])
        .build()
}

/// `quantity` as a client may send it.
pub(crate) fn decimal_input() -> Schema {
    let text = ObjectBuilder::new().schema_type(Type::String).pattern(Some(Quantity::PATTERN));
    let number = ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(0))
        .exclusive_maximum(Some(100_000_000_000_000_i64))
        .multiple_of(Some(0.000_001));
    OneOfBuilder::new()
        .item(text)
        .item(number)
        .description(Some(
            "A non-negative decimal, at most 14 digits before the point and 6 after: a string such as \"12.5\" or a number.",
        ))
        .into()
}

/// `custom_fields` and `metadata`: any JSON object up to 16 KiB, with no
/// NUL character anywhere (`JsonValue`).
pub(crate) fn json_object() -> Object {
    json_object_builder()
        .description(Some("Any JSON object, at most 16 KiB as JSON; no NUL character (\\u0000) in any key or string."))
        .examples([serde_json::json!({"mill": "North"})])
        .build()
}

fn json_object_builder() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some(JsonObject::STRING_PATTERN))))
        .additional_properties(Some(RefOr::Ref(Ref::from_schema_name(JsonValue::name()))))
}

/// Any JSON value without a NUL character in a key or string, at any depth.
pub(crate) struct JsonValue;

impl PartialSchema for JsonValue {
    fn schema() -> RefOr<Schema> {
        let string = ObjectBuilder::new().schema_type(Type::String).pattern(Some(JsonObject::STRING_PATTERN));
        let array = ArrayBuilder::new().items(RefOr::<Schema>::Ref(Ref::from_schema_name(JsonValue::name())));
        AnyOfBuilder::new()
            .item(string)
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(array)
            .item(json_object_builder())
            .description(Some("A JSON value with no NUL character (\\u0000) in any key or string."))
            .into()
    }
}

impl ToSchema for JsonValue {}

/// The body of `POST /v1/exports`: the filters allowed depend on `kind`,
/// so each kind is a choice of its own, with exactly its list's filters.
pub(crate) struct ExportRequest;

impl PartialSchema for ExportRequest {
    fn schema() -> RefOr<Schema> {
        let timestamp = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        };
        let batches = ObjectBuilder::new()
            .property(
                "product_id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            )
            .property("status", batch_status())
            .property("produced_from", timestamp().description(Some("Inclusive.")))
            .property("produced_to", timestamp().description(Some("Exclusive.")));
        let products = ObjectBuilder::new().property("sku_prefix", sku_prefix()).property("q", name_search());
        let request = |kind: ExportKind, filters: ObjectBuilder| {
            let filters = filters
                .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                .description(Some(format!("The filters of `GET /v1/{}`; none when left out or null.", kind.as_str())));
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("kind", strings([kind.as_str()]))
                .required("kind")
                .property("format", export_format())
                .required("format")
                .property("filters", filters)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .item(request(ExportKind::Batches, batches))
            .item(request(ExportKind::Products, products))
            .description(Some(
                "What to export, in which format, filtered how. Unknown fields and filters are refused (422).",
            ))
            .examples([serde_json::json!({"kind": "batches", "format": "csv", "filters": {"status": "completed"}})])
            .into()
    }
}

impl ToSchema for ExportRequest {
    fn name() -> std::borrow::Cow<'static, str> {
        "CreateExport".into()
    }
}

pub(crate) fn schedule_name() -> Object {
    text(ScheduleName::RULE)
        .description(Some("Not blank, no control characters; stored trimmed; unique in the organization."))
        .examples(["nightly batches"])
        .build()
}

pub(crate) fn cron() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(200))
        .description(Some(
            "5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field, or an alias \
             such as `@daily`; read on the wall clock of `timezone`. A pattern the parser refuses, or one that \
             matches no date, is a 422 whose error has `code` `invalid_cron` and the parser's reason.",
        ))
        .examples(["0 2 * * *"])
        .build()
}

pub(crate) fn timezone() -> Object {
    strings(Timezone::names())
        .description(Some("An IANA time zone name; any other is a 422 whose error has `code` `unknown_timezone`."))
        .examples(["Europe/Berlin"])
        .build()
}

pub(crate) fn misfire_policy() -> Object {
    strings(MisfirePolicy::ALL.iter().map(|policy| policy.as_str()))
        .description(Some(
            "Slots missed while no scheduler ran: `coalesce` fires the latest once, `skip` none, `fire_all` each \
             one within `catchup_window_secs`.",
        ))
        .build()
}

pub(crate) fn overlap_policy() -> Object {
    strings(OverlapPolicy::ALL.iter().map(|policy| policy.as_str()))
        .description(Some(
            "A slot while the previous run's export has not finished: `skip` records it as skipped, `allow` fires it.",
        ))
        .build()
}

pub(crate) fn run_trigger() -> Object {
    strings(RunTrigger::ALL.iter().map(|trigger| trigger.as_str())).build()
}

pub(crate) fn run_outcome() -> Object {
    strings(RunOutcome::ALL.iter().map(|outcome| outcome.as_str())).build()
}

/// The outcome of the latest run, or null before the first.
pub(crate) fn last_status() -> Object {
    let values = RunOutcome::ALL.iter().map(|outcome| serde_json::Value::from(outcome.as_str()));
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(values.chain([serde_json::Value::Null])))
        .build()
}

pub(crate) fn pause_note() -> Object {
    nullable(text(PauseNote::RULE)).description(Some("Not blank, no control characters; stored trimmed.")).build()
}

/// `code` of a field error, where it has one.
pub(crate) fn field_error_code() -> Object {
    let invalid_cron = ScheduleError::InvalidCron(String::new()).code();
    let unknown_timezone = ScheduleError::UnknownTimezone(String::new()).code();
    strings([invalid_cron, unknown_timezone]).build()
}

/// `export` of a schedule: the body of `POST /v1/exports`.
pub(crate) fn schedule_export() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(ExportRequest::name()))
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
