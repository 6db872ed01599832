//! The writes: each takes one `input` and answers a payload with the record
//! and `userErrors`. They run REST's own commands, so the rules, the role
//! checks and the codes are REST's: what REST answers 422, 404 or 409 is a
//! user error here; a missing role or an unavailable database is a
//! top-level error.

use super::types::{BatchNode, Decimal, ExportNode, Json, ProductNode, camel_case, error, uuid};
use crate::auth::Caller;
use crate::batches::{CreateBatch, UpdateBatch};
use crate::exports::{CreateExport, ExportSettings, IDEMPOTENCY_KEY_RULE, well_formed_idempotency_key};
use crate::problem::ApiError;
use crate::products::{CreateProduct, UpdateProduct};
use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, SimpleObject};
use stockflow_db::Database;
use stockflow_runtime::OutboxRelay;

pub(crate) struct Mutation;

/// Why a write was refused: `field` names the input field (null when the
/// refusal is the record's, not a field's), `code` is REST's.
#[derive(SimpleObject)]
struct UserError {
    field: Option<String>,
    code: String,
    message: String,
}

#[derive(InputObject)]
struct CreateProductInput {
    sku: String,
    name: String,
    unit: String,
    /// `{}` when left out; never null.
    custom_fields: MaybeUndefined<Json>,
}

/// Fields left out keep their value; null is refused for every field.
#[derive(InputObject)]
struct UpdateProductInput {
    id: ID,
    sku: MaybeUndefined<String>,
    name: MaybeUndefined<String>,
    unit: MaybeUndefined<String>,
    /// Replaced whole.
    custom_fields: MaybeUndefined<Json>,
}

#[derive(InputObject)]
struct DeleteInput {
    id: ID,
}

#[derive(InputObject)]
struct CreateBatchInput {
    /// A product of the caller's organization.
    product_id: ID,
    code: String,
    quantity: Decimal,
    /// RFC 3339; returned in UTC.
    produced_at: String,
    /// `planned` when left out; never null.
    status: MaybeUndefined<String>,
    notes: Option<String>,
    /// `{}` when left out; never null.
    metadata: MaybeUndefined<Json>,
}

/// Fields left out keep their value; `notes: null` clears the notes, and
/// null for any other field is refused.
#[derive(InputObject)]
struct UpdateBatchInput {
    id: ID,
    product_id: MaybeUndefined<ID>,
    code: MaybeUndefined<String>,
    quantity: MaybeUndefined<Decimal>,
    produced_at: MaybeUndefined<String>,
    status: MaybeUndefined<String>,
    notes: MaybeUndefined<String>,
    metadata: MaybeUndefined<Json>,
}

#[derive(InputObject)]
struct RequestExportInput {
    /// batches or products.
    kind: String,
    /// csv (with a header row) or jsonl (one JSON object per line).
    format: String,
    /// The filters of REST's matching list, with REST's names: batches take
    /// product_id, status, produced_from, produced_to; products sku_prefix, q.
    filters: Option<Json>,
    /// REST's Idempotency-Key: a repeat with the same key and the same
    /// request answers the export the first one made; with another
    /// request, the user error idempotency_key_reused.
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
struct ExportPayload {
    export: Option<ExportNode>,
    user_errors: Vec<UserError>,
}

/// The request's id, as REST's requests carry it into the job.
pub(crate) struct CorrelationId(pub(crate) String);

#[derive(SimpleObject)]
struct ProductPayload {
    product: Option<ProductNode>,
    user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
struct BatchPayload {
    batch: Option<BatchNode>,
    user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
struct DeletePayload {
    /// The id deleted; null when nothing was.
    deleted_id: Option<ID>,
    user_errors: Vec<UserError>,
}

#[Object]
impl Mutation {
    /// Needs the member role.
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> async_graphql::Result<ProductPayload> {
        let (caller, database) = scope(ctx)?;
        let body = CreateProduct {
            sku: input.sku,
            name: input.name,
            unit: input.unit,
            custom_fields: json(input.custom_fields),
        };
        let (product, user_errors) = split(crate::products::create_product(caller, database, body).await)?;
        Ok(ProductPayload { product: product.map(ProductNode), user_errors })
    }

    /// Needs the member role.
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        input: UpdateProductInput,
    ) -> async_graphql::Result<ProductPayload> {
        let (caller, database) = scope(ctx)?;
        let Some(id) = uuid(&input.id) else {
            return Ok(ProductPayload { product: None, user_errors: vec![missing()] });
        };
        let body = UpdateProduct {
            sku: patch(input.sku),
            name: patch(input.name),
            unit: patch(input.unit),
            custom_fields: json(input.custom_fields),
        };
        let (product, user_errors) = split(crate::products::update_product(caller, database, id, body).await)?;
        Ok(ProductPayload { product: product.map(ProductNode), user_errors })
    }

    /// Needs the member role. A product that batches refer to is not deleted (`in_use`).
    async fn delete_product(&self, ctx: &Context<'_>, input: DeleteInput) -> async_graphql::Result<DeletePayload> {
        let (caller, database) = scope(ctx)?;
        let Some(id) = uuid(&input.id) else {
            return Ok(DeletePayload { deleted_id: None, user_errors: vec![missing()] });
        };
        let (deleted, user_errors) = split(crate::products::delete_product(caller, database, id).await)?;
        Ok(DeletePayload { deleted_id: deleted.map(|()| input.id), user_errors })
    }

    /// Needs the member role.
    async fn create_batch(&self, ctx: &Context<'_>, input: CreateBatchInput) -> async_graphql::Result<BatchPayload> {
        let (caller, database) = scope(ctx)?;
        let Some(product_id) = uuid(&input.product_id) else {
            let refused = ApiError::MissingReference { field: "product_id" };
            return Ok(BatchPayload { batch: None, user_errors: vec![user_error(&refused)] });
        };
        let body = CreateBatch {
            product_id,
            code: input.code,
            quantity: serde_json::Value::String(input.quantity.0),
            produced_at: input.produced_at,
            status: patch(input.status),
            notes: input.notes,
            metadata: json(input.metadata),
        };
        let (batch, user_errors) = split(crate::batches::create_batch(caller, database, body).await)?;
        Ok(BatchPayload { batch: batch.map(BatchNode::from), user_errors })
    }

    /// Needs the member role.
    async fn update_batch(&self, ctx: &Context<'_>, input: UpdateBatchInput) -> async_graphql::Result<BatchPayload> {
        let (caller, database) = scope(ctx)?;
        let Some(id) = uuid(&input.id) else { return Ok(BatchPayload { batch: None, user_errors: vec![missing()] }) };
        let product_id = match patch(input.product_id) {
            Some(Some(raw)) => match uuid(&raw) {
                Some(product) => Some(Some(product)),
                None => {
                    let refused = ApiError::MissingReference { field: "product_id" };
                    return Ok(BatchPayload { batch: None, user_errors: vec![user_error(&refused)] });
                }
            },
            Some(None) => Some(None),
            None => None,
        };
        let body = UpdateBatch {
            product_id,
            code: patch(input.code),
            quantity: patch(input.quantity).map(|given| given.map(|decimal| serde_json::Value::String(decimal.0))),
            produced_at: patch(input.produced_at),
            status: patch(input.status),
            notes: patch(input.notes),
            metadata: json(input.metadata),
        };
        let (batch, user_errors) = split(crate::batches::update_batch(caller, database, id, body).await)?;
        Ok(BatchPayload { batch: batch.map(BatchNode::from), user_errors })
    }

    /// Needs the member role. A batch with attachments is not deleted (`in_use`).
    async fn delete_batch(&self, ctx: &Context<'_>, input: DeleteInput) -> async_graphql::Result<DeletePayload> {
        let (caller, database) = scope(ctx)?;
        let Some(id) = uuid(&input.id) else {
            return Ok(DeletePayload { deleted_id: None, user_errors: vec![missing()] });
        };
        let (deleted, user_errors) = split(crate::batches::delete_batch(caller, database, id).await)?;
        Ok(DeletePayload { deleted_id: deleted.map(|()| input.id), user_errors })
    }

    /// Needs the member role. Queues an export as `POST /v1/exports` does.
    async fn request_export(
        &self,
        ctx: &Context<'_>,
        input: RequestExportInput,
    ) -> async_graphql::Result<ExportPayload> {
        let (caller, database) = scope(ctx)?;
        if input.idempotency_key.as_deref().is_some_and(|key| !well_formed_idempotency_key(key)) {
            let refused = UserError {
                field: Some("idempotencyKey".to_owned()),
                code: "validation_failed".to_owned(),
                message: IDEMPOTENCY_KEY_RULE.to_owned(),
            };
            return Ok(ExportPayload { export: None, user_errors: vec![refused] });
        }
        let relay = ctx.data::<actix_web::web::Data<OutboxRelay>>()?;
        let settings = ctx.data::<actix_web::web::Data<ExportSettings>>()?;
        let correlation_id = ctx.data::<CorrelationId>()?;
        let body = CreateExport { kind: input.kind, format: input.format, filters: input.filters.map(Json::into_json) };
        let requested = crate::exports::request_export(
            caller,
            database,
            relay,
            settings,
            &correlation_id.0,
            input.idempotency_key,
            body,
        )
        .await;
        let (export, user_errors) = split(requested)?;
        Ok(ExportPayload { export: export.map(ExportNode::from), user_errors })
    }
}

fn scope<'c>(ctx: &Context<'c>) -> async_graphql::Result<(&'c Caller, &'c Database)> {
    Ok((ctx.data::<Caller>()?, ctx.data::<Database>()?))
}

/// An id that names nothing of the organization, as REST's 404.
fn missing() -> UserError {
    user_error(&ApiError::NotFound("record"))
}

/// GraphQL's left out / null / value, as REST's bodies tell them apart.
fn patch<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(value) => Some(Some(value)),
    }
}

fn json(value: MaybeUndefined<Json>) -> Option<Option<serde_json::Value>> {
    patch(value).map(|given| given.map(Json::into_json))
}

/// What the client can fix goes into `userErrors`; the rest is an error.
fn split<T>(result: Result<T, ApiError>) -> async_graphql::Result<(Option<T>, Vec<UserError>)> {
    match result {
        Ok(value) => Ok((Some(value), Vec::new())),
        Err(ApiError::Validation(fields)) => Ok((
            None,
            fields
                .into_iter()
                .map(|field| UserError {
                    field: Some(camel_case(&field.field)),
                    code: field.code.unwrap_or("validation_failed").to_owned(),
                    message: field.message,
                })
                .collect(),
        )),
        Err(
            refused @ (ApiError::Conflict { .. }
            | ApiError::MissingReference { .. }
            | ApiError::InUse(_)
            | ApiError::NotFound(_)
            | ApiError::IdempotencyKeyReused
            | ApiError::TooManyExports(_)),
        ) => Ok((None, vec![user_error(&refused)])),
        Err(other) => Err(error(&other)),
    }
}

fn user_error(refused: &ApiError) -> UserError {
    let mut message = refused.to_string();
    let field = match refused {
        ApiError::Conflict { field } | ApiError::MissingReference { field } => {
            // REST's message names the field as REST spells it.
            let renamed = camel_case(field);
            message = message.replacen(field, &renamed, 1);
            Some(renamed)
        }
        ApiError::NotFound(_) => Some("id".to_owned()),
        ApiError::IdempotencyKeyReused => Some("idempotencyKey".to_owned()),
        _ => None,
    };
    UserError { field, code: refused.code().to_owned(), message }
}
