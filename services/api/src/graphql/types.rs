//! The records as GraphQL objects: the same ids, values and texts as
//! REST's bodies, so a client moves between the two without translating.

use super::at_hand::{AtHand, Json as WrittenJson, Page, Planned, Writer};
use super::loaders::{ChildPages, PageOf, ProductsOfOrg};
use super::query::{connection, page_cost, page_request};
use crate::attachments::AttachmentView;
use crate::exports::ExportView;
use crate::problem::ApiError;
use crate::schedules::ScheduleView;
use async_graphql::dataloader::DataLoader;
use async_graphql::{
    Context, ErrorExtensions, ID, InputValueError, InputValueResult, Interface, Object, Scalar, ScalarType, Value,
};
use chrono::{DateTime, Utc};
use stockflow_db::attachments::Attachment;
use stockflow_db::batches::BatchRow;
use stockflow_db::page::After;
use stockflow_db::products::Product;

/// An exact decimal as text ("12.5"), never a float that would round it.
pub(crate) struct Decimal(pub(crate) String);

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(text) => Ok(Self(text)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// RFC 3339 in UTC, written exactly as REST writes it.
pub(crate) struct Timestamp(DateTime<Utc>);

#[Scalar(name = "DateTime", specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339")]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => DateTime::parse_from_rfc3339(text)
                .map(|at| Self(at.with_timezone(&Utc)))
                .map_err(|_| InputValueError::custom("an RFC 3339 timestamp such as 2026-11-23T08:00:00Z")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(crate::rfc3339::format(&self.0))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at)
    }
}

/// A JSON object (`customFields`, `metadata`): when read, the text
/// PostgreSQL keeps, as REST writes it (numbers exactly as stored, never
/// through a float); as given when written (REST's rules then check that
/// it is an object).
pub(crate) enum Json {
    Stored(stockflow_db::JsonText),
    Given(serde_json::Value),
}

#[Scalar(name = "JSON")]
impl ScalarType for Json {
    fn parse(value: Value) -> InputValueResult<Self> {
        value.into_json().map(Self::Given).map_err(InputValueError::custom)
    }

    fn to_value(&self) -> Value {
        match self {
            Self::Stored(stored) => stored_json(stored),
            Self::Given(given) => Value::from_json(given.clone()).unwrap_or(Value::Null),
        }
    }
}

/// Stored JSON as a GraphQL value: its text, which the response writes as
/// it is (`at_hand::WrittenPages`).
fn stored_json(stored: &stockflow_db::JsonText) -> Value {
    Value::Binary(stored.as_str().as_bytes().to_vec().into())
}

impl Json {
    pub(crate) fn into_json(self) -> serde_json::Value {
        match self {
            Self::Stored(stored) => serde_json::to_value(&stored).unwrap_or_default(),
            Self::Given(given) => given,
        }
    }
}

/// REST's error as a GraphQL one: its message, and its code in
/// `extensions.code`; a validation's fields in `extensions.fields`.
pub(crate) fn error(error: &ApiError) -> async_graphql::Error {
    let fields = match error {
        ApiError::Validation(fields) => {
            let renamed: Vec<_> = fields
                .iter()
                .map(|field| crate::problem::FieldError { field: camel_case(&field.field), ..field.clone() })
                .collect();
            Some(serde_json::to_value(renamed).unwrap_or_default())
        }
        _ => None,
    };
    async_graphql::Error::new(error.to_string()).extend_with(|_, extensions| {
        extensions.set("code", error.code());
        if let Some(fields) = fields.and_then(|fields| Value::from_json(fields).ok()) {
            extensions.set("fields", fields);
        }
    })
}

/// An id that is not a UUID names nothing, as a bad id in a REST path.
pub(crate) fn uuid(id: &ID) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse(id.as_str()).ok()
}

/// REST's field names as GraphQL spells its arguments: `product_id` is
/// `productId`.
pub(crate) fn camel_case(snake: &str) -> String {
    let mut camel = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                camel.extend(c.to_uppercase());
                upper = false;
            }
            c => camel.push(c),
        }
    }
    camel
}

#[derive(Clone)]
pub(crate) struct ProductNode(pub(crate) Product);

/// The fields without arguments, as the #[Object] below writes them.
impl AtHand for ProductNode {
    fn write_field<'a>(&self, _: &Writer<'a>, field: &Planned<'a>, out: &mut WrittenJson) -> Option<()> {
        let product = &self.0;
        match field.name {
            "id" => out.uuid(product.id),
            "sku" => out.value(&product.sku),
            "name" => out.value(&product.name),
            "unit" => out.value(&product.unit),
            "customFields" => out.stored(&product.custom_fields),
            "createdAt" => out.timestamp(&product.created_at),
            "updatedAt" => out.timestamp(&product.updated_at),
            _ => None,
        }
    }
}

#[Object(name = "Product")]
impl ProductNode {
    /// The id REST uses.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn unit(&self) -> &str {
        &self.0.unit
    }
    async fn custom_fields(&self) -> Json {
        Json::Stored(self.0.custom_fields.clone())
    }
    /// Most recently produced first, as `batches(productId:)`, whose
    /// `after` takes this connection's cursors too. Loaded with every other
    /// product's of the response.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn batches(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Batches per page, 1 to 200; 50 when left out.")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Page<BatchNode>> {
        let page = page_request(first, after.as_deref())?;
        let loader = ctx.data::<DataLoader<ChildPages<BatchRow>>>()?;
        let wanted = PageOf { parent: self.0.id, fetch: page.fetch(), after: page.after };
        let rows = loader.load_one(wanted).await.map_err(|failed| error(&failed))?.unwrap_or_default();
        Ok(Page(connection(&page, rows, |b| After { at: b.produced_at, id: b.id }, BatchNode::from)))
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
    async fn updated_at(&self) -> Timestamp {
        Timestamp(self.0.updated_at)
    }
}

pub(crate) struct BatchNode {
    row: BatchRow,
    /// Read with the batch when the list knew it would be asked for.
    product: Option<ProductNode>,
}

impl BatchNode {
    pub(crate) fn with_product(row: BatchRow, product: Product) -> Self {
        Self { row, product: Some(ProductNode(product)) }
    }
}

/// The fields without arguments, as the #[Object] below writes them; the
/// product when it was read with the page.
impl AtHand for BatchNode {
    fn write_field<'a>(&self, writer: &Writer<'a>, field: &Planned<'a>, out: &mut WrittenJson) -> Option<()> {
        let batch = &self.row;
        match field.name {
            "id" => out.uuid(batch.id),
            "productId" => out.uuid(batch.product_id),
            "product" => writer.nested(field, self.product.as_ref()?, out),
            "code" => out.value(&batch.code),
            "quantity" => out.value(batch.quantity.as_str()),
            "producedAt" => out.timestamp(&batch.produced_at),
            "status" => out.value(&batch.status),
            "notes" => out.value(&batch.notes),
            "metadata" => out.stored(&batch.metadata),
            "createdAt" => out.timestamp(&batch.created_at),
            "updatedAt" => out.timestamp(&batch.updated_at),
            _ => None,
        }
    }
}

impl From<BatchRow> for BatchNode {
    fn from(row: BatchRow) -> Self {
        Self { row, product: None }
    }
}

#[Object(name = "Batch")]
impl BatchNode {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    async fn product_id(&self) -> ID {
        ID(self.row.product_id.to_string())
    }
    /// Read with the page when a list asks for it, else loaded with the
    /// products of every other batch of the response.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<ProductNode> {
        if let Some(product) = &self.product {
            return Ok(product.clone());
        }
        let loader = ctx.data::<DataLoader<ProductsOfOrg>>()?;
        let product = loader.load_one(self.row.product_id).await.map_err(|failed| error(&failed))?;
        // A batch's product is of its organization, and cannot be deleted
        // while the batch exists.
        product.map(ProductNode).ok_or_else(|| error(&ApiError::NotFound("product")))
    }
    /// Stored files, newest first, as REST's `GET /v1/batches/{id}/attachments`.
    /// Loaded with every other batch's of the response.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn attachments(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Attachments per page, 1 to 200; 50 when left out.")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Page<AttachmentNode>> {
        let page = page_request(first, after.as_deref())?;
        let loader = ctx.data::<DataLoader<ChildPages<Attachment>>>()?;
        let wanted = PageOf { parent: self.row.id, fetch: page.fetch(), after: page.after };
        let rows = loader.load_one(wanted).await.map_err(|failed| error(&failed))?.unwrap_or_default();
        Ok(Page(connection(&page, rows, |a| After { at: a.created_at, id: a.id }, |a| AttachmentNode(a.into()))))
    }
    async fn code(&self) -> &str {
        &self.row.code
    }
    async fn quantity(&self) -> Decimal {
        Decimal(self.row.quantity.as_str().to_owned())
    }
    async fn produced_at(&self) -> Timestamp {
        Timestamp(self.row.produced_at)
    }
    /// planned, in_progress, completed or cancelled, as REST writes it.
    async fn status(&self) -> &str {
        &self.row.status
    }
    async fn notes(&self) -> &str {
        &self.row.notes
    }
    async fn metadata(&self) -> Json {
        Json::Stored(self.row.metadata.clone())
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.row.created_at)
    }
    async fn updated_at(&self) -> Timestamp {
        Timestamp(self.row.updated_at)
    }
}

/// REST's view of an attachment, field for field; the file itself is
/// downloaded from `contentUrl`, with the token.
pub(crate) struct AttachmentNode(pub(crate) AttachmentView);

/// The fields, as the #[Object] below writes them.
impl AtHand for AttachmentNode {
    fn write_field<'a>(&self, _: &Writer<'a>, field: &Planned<'a>, out: &mut WrittenJson) -> Option<()> {
        let attachment = &self.0;
        match field.name {
            "id" => out.uuid(attachment.id),
            "batchId" => out.uuid(attachment.batch_id),
            "filename" => out.value(&attachment.filename),
            "contentType" => out.value(&attachment.content_type),
            "sizeBytes" => out.value(&attachment.size_bytes),
            "sha256" => out.value(&attachment.sha256),
            "createdAt" => out.timestamp(&attachment.created_at),
            "contentUrl" => out.value(&attachment.content_url),
            _ => None,
        }
    }
}

#[Object(name = "Attachment")]
impl AttachmentNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn batch_id(&self) -> ID {
        ID(self.0.batch_id.to_string())
    }
    /// Sanitized for display; never a path.
    async fn filename(&self) -> &str {
        &self.0.filename
    }
    /// Sniffed from the content, not taken from the client.
    async fn content_type(&self) -> &str {
        &self.0.content_type
    }
    async fn size_bytes(&self) -> i64 {
        self.0.size_bytes
    }
    /// Hex digest of the content.
    async fn sha256(&self) -> Option<&str> {
        self.0.sha256.as_deref()
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
    async fn content_url(&self) -> &str {
        &self.0.content_url
    }
}

/// REST's view of an export, field for field.
pub(crate) struct ExportNode(pub(crate) ExportView);

impl From<stockflow_db::exports::ExportRow> for ExportNode {
    fn from(row: stockflow_db::exports::ExportRow) -> Self {
        Self(ExportView::from(row))
    }
}

#[Object(name = "Export")]
impl ExportNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// batches or products.
    async fn kind(&self) -> &str {
        self.0.kind.as_str()
    }
    /// csv or jsonl.
    async fn format(&self) -> &str {
        self.0.format.as_str()
    }
    /// The filters as given, after validation, with REST's names.
    async fn filters(&self) -> Json {
        Json::Given(self.0.filters.clone())
    }
    /// queued, running, succeeded, failed, expired or missing.
    async fn status(&self) -> &str {
        self.0.status.as_str()
    }
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    async fn row_count(&self) -> Option<i64> {
        self.0.row_count
    }
    async fn size_bytes(&self) -> Option<i64> {
        self.0.size_bytes
    }
    async fn sha256(&self) -> Option<&str> {
        self.0.sha256.as_deref()
    }
    /// storage_error, database_error, invalid_export or internal_error.
    async fn error(&self) -> Option<&str> {
        self.0.error
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
    async fn started_at(&self) -> Option<Timestamp> {
        self.0.started_at.map(Timestamp)
    }
    async fn finished_at(&self) -> Option<Timestamp> {
        self.0.finished_at.map(Timestamp)
    }
    async fn expires_at(&self) -> Option<Timestamp> {
        self.0.expires_at.map(Timestamp)
    }
    /// Where a GET with the token downloads the file once it succeeded.
    async fn content_url(&self) -> &str {
        &self.0.content_url
    }
}

/// Any record by the id REST uses, as Relay's `node(id:)` fetches it.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub(crate) enum Node {
    Product(ProductNode),
    Batch(BatchNode),
    Export(ExportNode),
}

/// REST's view of a schedule, field for field.
pub(crate) struct ScheduleNode(pub(crate) ScheduleView);

#[Object(name = "Schedule")]
impl ScheduleNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The installation's own schedule: read-only, set by the scheduler's settings.
    async fn system(&self) -> bool {
        self.0.system
    }
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    async fn cron(&self) -> &str {
        &self.0.cron
    }
    async fn timezone(&self) -> &str {
        &self.0.timezone
    }
    async fn job(&self) -> &str {
        &self.0.job
    }
    /// What each run exports, as REST's body of POST /v1/exports; null for a system schedule.
    async fn export(&self) -> Option<Json> {
        self.0.export.clone().map(Json::Given)
    }
    async fn paused(&self) -> bool {
        self.0.paused
    }
    async fn pause_note(&self) -> Option<&str> {
        self.0.pause_note.as_deref()
    }
    async fn misfire_policy(&self) -> &str {
        &self.0.misfire_policy
    }
    async fn catchup_window_secs(&self) -> i32 {
        self.0.catchup_window_secs
    }
    async fn overlap_policy(&self) -> &str {
        &self.0.overlap_policy
    }
    async fn jitter_secs(&self) -> i32 {
        self.0.jitter_secs
    }
    async fn run_timeout_secs(&self) -> i32 {
        self.0.run_timeout_secs
    }
    /// The next fire times on the schedule's clock (RFC 3339 with the zone's offset).
    async fn next_runs(&self) -> &[String] {
        &self.0.next_runs
    }
    async fn last_run_at(&self) -> Option<Timestamp> {
        self.0.last_run_at.map(Timestamp)
    }
    async fn last_status(&self) -> Option<&str> {
        self.0.last_status.as_deref()
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
    async fn updated_at(&self) -> Timestamp {
        Timestamp(self.0.updated_at)
    }
}
