//! `/graphql`: the same records as REST, read through the same db queries,
//! filters, cursors and errors. POST for every operation, GET for queries;
//! the caller is authenticated as REST's are (a bearer token, 401 problem
//! without one). The schema's text is committed as docs/schema.graphql.

mod at_hand;
mod documents;
pub(crate) mod graphiql;
mod limits;
mod loaders;
mod mutation;
mod query;
mod types;

use crate::auth::Caller;
use crate::exports::ExportSettings;
use crate::observability::{Metrics, RequestId};
use crate::problem::ApiError;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use async_graphql::parser::types::OperationType;
use async_graphql::{EmptySubscription, Request, Response, Schema, ValidationMode};
use serde::Deserialize;
use stockflow_db::Database;
use stockflow_runtime::OutboxRelay;

type Engine = Schema<query::Query, mutation::Mutation, EmptySubscription>;

/// Built once at start; each request brings its caller and loaders.
pub(crate) struct StockflowSchema {
    /// Every validation rule: a document, operation and variables as first seen.
    strict: Engine,
    /// The same schema checking only what bounds an operation's cost (depth,
    /// complexity, fragment cycles): for what passed every rule before.
    checked: Engine,
    documents: documents::Documents,
    introspection: bool,
}

pub(crate) fn schema(introspection: bool) -> StockflowSchema {
    let engine = |mode| {
        let builder = Schema::build(query::Query, mutation::Mutation, EmptySubscription)
            .validation_mode(mode)
            .limit_depth(limits::MAX_DEPTH)
            .limit_complexity(limits::MAX_COMPLEXITY);
        if introspection { builder.finish() } else { builder.disable_introspection().finish() }
    };
    StockflowSchema {
        strict: engine(ValidationMode::Strict),
        checked: engine(ValidationMode::Fast),
        documents: documents::Documents::default(),
        introspection,
    }
}

/// The schema as SDL: what docs/schema.graphql must hold.
pub fn sdl() -> String {
    schema(true).strict.sdl()
}

#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn post(
    http: HttpRequest,
    caller: Caller,
    services: Services,
    schema: web::Data<StockflowSchema>,
    metrics: web::Data<Metrics>,
    request: web::Json<Request>,
) -> Result<HttpResponse, ApiError> {
    let mut request = request.into_inner();
    schema.documents.parse(&mut request);
    Ok(answer(execute(&schema, &metrics, with_context(request, &http, caller, services)).await))
}

/// GET's parameters, as the GraphQL-over-HTTP convention names them.
#[derive(Debug, Deserialize)]
pub(crate) struct GetQuery {
    query: String,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    /// JSON text.
    variables: Option<String>,
}

/// Queries only: a mutation changes state and must not be a GET, which
/// caches, prefetches and logs its URL.
#[tracing::instrument(skip_all, fields(org = %caller.org.slug), err(level = "info"))]
pub(crate) async fn get(
    http: HttpRequest,
    caller: Caller,
    services: Services,
    schema: web::Data<StockflowSchema>,
    metrics: web::Data<Metrics>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    if query.query.len() > crate::extract::MAX_JSON_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "the query is larger than {} KiB",
            crate::extract::MAX_JSON_BYTES / 1024
        )));
    }
    let mut request = Request::new(query.query);
    if let Some(name) = query.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = query.variables {
        let variables = serde_json::from_str(&variables)
            .map_err(|error| ApiError::BadRequest(format!("variables: not a JSON object: {error}")))?;
        request = request.variables(async_graphql::Variables::from_json(variables));
    }
    schema.documents.parse(&mut request);
    let wanted = request.operation_name.clone();
    let mutates = match request.parsed_query() {
        Ok(document) => document.operations.iter().any(|(name, operation)| {
            operation.node.ty != OperationType::Query
                && wanted.as_deref().is_none_or(|wanted| name.is_some_and(|name| name.as_str() == wanted))
        }),
        // The execution reports the syntax error, with its code.
        Err(_) => false,
    };
    if mutates {
        return Err(ApiError::MethodNotAllowed { allow: "POST".to_owned() });
    }
    Ok(answer(execute(&schema, &metrics, with_context(request, &http, caller, services)).await))
}

/// Runs the operation, its document given by `Documents::parse`, and counts
/// it by name and outcome.
async fn execute(schema: &StockflowSchema, metrics: &Metrics, mut request: Request) -> Response {
    let started = std::time::Instant::now();
    let operation = operation_name(&mut request);
    let response = match limits::screen(&mut request, schema.introspection) {
        Ok(()) => {
            let fingerprint = documents::Documents::fingerprint(&request);
            if schema.documents.passed_every_rule(&fingerprint) {
                schema.checked.execute(request).await
            } else {
                let response = schema.strict.execute(request).await;
                schema.documents.remember_passed(fingerprint, &response.errors);
                response
            }
        }
        Err(refused) => Response::from_errors(vec![refused]),
    };
    let response = limits::with_codes(response);
    let outcome = response.errors.first().map_or("ok", |error| {
        match error.extensions.as_ref().and_then(|extensions| extensions.get("code")) {
            Some(async_graphql::Value::String(code)) => code.as_str(),
            _ => "error",
        }
    });
    metrics.observe_graphql(operation.as_deref(), outcome, started.elapsed());
    response
}

/// The name of the operation that will run, as the document spells it:
/// never a client's `operationName` that names nothing.
fn operation_name(request: &mut Request) -> Option<String> {
    let wanted = request.operation_name.clone();
    let document = request.parsed_query().ok()?;
    let mut names = document.operations.iter().map(|(name, _)| name.map(|name| name.to_string()));
    match wanted {
        Some(wanted) => names.flatten().find(|name| *name == wanted),
        None => names.next().flatten().filter(|_| document.operations.iter().count() == 1),
    }
}

/// What the resolvers may use, for this request only.
pub(crate) struct Services {
    database: web::Data<Database>,
    relay: web::Data<OutboxRelay>,
    exports: web::Data<ExportSettings>,
}

/// Each part as actix's own `web::Data` extractor takes it, with its error.
impl FromRequest for Services {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready((|| {
            Ok(Self {
                database: web::Data::extract(request).into_inner()?,
                relay: web::Data::extract(request).into_inner()?,
                exports: web::Data::extract(request).into_inner()?,
            })
        })())
    }
}

fn with_context(request: Request, http: &HttpRequest, caller: Caller, services: Services) -> Request {
    let (database, org) = (services.database.get_ref(), caller.org.id);
    let products = loaders::products(database.clone(), org);
    let batches = loaders::batches_of_products(database.clone(), org);
    let attachments = loaders::attachments_of_batches(database.clone(), org);
    let correlation_id = http.extensions().get::<RequestId>().map(ToString::to_string).unwrap_or_default();
    request
        .data(caller)
        .data(services.database.get_ref().clone())
        .data(services.relay)
        .data(services.exports)
        .data(mutation::CorrelationId(correlation_id))
        .data(products)
        .data(batches)
        .data(attachments)
}

/// 200 with the GraphQL response, errors included: they are the client's
/// to read in `errors[].extensions.code`, as every GraphQL client expects.
fn answer(response: Response) -> HttpResponse {
    let mut body = Vec::with_capacity(64 * 1024);
    let written = serde::Serialize::serialize(
        &response,
        &mut serde_json::Serializer::with_formatter(&mut body, at_hand::WrittenPages),
    );
    match written {
        Ok(()) => HttpResponse::Ok().content_type("application/graphql-response+json").body(body),
        Err(error) => HttpResponse::from_error(actix_web::error::JsonPayloadError::Serialize(error)),
    }
}
