//! Every route the api serves, in one table. The app is mounted from it and
//! the OpenAPI test compares it with the document both ways, so a route
//! cannot be served without being documented. `clippy.toml` forbids
//! registering routes anywhere else.

use crate::problem::ApiError;
use actix_web::http::Method;
use actix_web::{FromRequest, Handler, HttpResponse, Responder, Route, guard, web};

/// A path and the handler of each method it serves.
pub(crate) struct Endpoint {
    path: &'static str,
    routes: Vec<(Method, Route)>,
}

impl Endpoint {
    pub(crate) fn new(path: &'static str) -> Self {
        Self { path, routes: Vec::new() }
    }

    pub(crate) fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::GET, handler)
    }

    pub(crate) fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::POST, handler)
    }

    pub(crate) fn patch<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::PATCH, handler)
    }

    pub(crate) fn delete<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::DELETE, handler)
    }

    fn on<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.routes.push((method.clone(), web::method(method).to(handler)));
        self
    }
}

fn table() -> Vec<Endpoint> {
    let mut table = vec![
        Endpoint::new("/healthz").get(crate::health::healthz),
        Endpoint::new("/readyz").get(crate::health::readyz),
        Endpoint::new("/metrics").get(crate::observability::scrape),
        Endpoint::new("/openapi.json").get(crate::openapi::serve),
        Endpoint::new("/v1/me").get(crate::me::me),
    ];
    table.extend(crate::products::endpoints());
    table.extend(crate::batches::endpoints());
    table.extend(crate::tokens::endpoints());
    table.extend(crate::attachments::endpoints());
    table.extend(crate::exports::endpoints());
    table.extend(crate::schedules::endpoints());
    table.extend(crate::backups::endpoints());
    table
}

/// One resource per path, so a method the path lacks answers 405, not 404,
/// with the `Allow` header RFC 9110 requires: the methods the path serves.
#[expect(clippy::disallowed_methods, reason = "the one place routes are registered")]
pub(crate) fn configure(cfg: &mut web::ServiceConfig, graphiql: bool) {
    for endpoint in table() {
        let allow = allow(&endpoint);
        let resource = endpoint
            .routes
            .into_iter()
            .fold(web::resource(endpoint.path), |resource, (_, route)| resource.route(route));
        let refuse = move || {
            let allow = allow.clone();
            async move { HttpResponse::from_error(ApiError::MethodNotAllowed { allow }) }
        };
        cfg.service(resource.default_service(web::to(refuse)));
    }
    // GraphQL's contract is its schema (docs/schema.graphql), not the
    // OpenAPI document, so it is not in the table.
    let refuse = || async { HttpResponse::from_error(ApiError::MethodNotAllowed { allow: "GET, POST".to_owned() }) };
    let mut graphql = web::resource("/graphql");
    // GRAPHQL_GRAPHIQL: a browser's GET answers the GraphiQL page, without a
    // token, ahead of the API's GET, which every other request still reaches
    // (a route whose guard refuses passes the request on); and the page's
    // files. Off, neither exists and `/graphql` is as it was.
    if graphiql {
        let page = guard::fn_guard(crate::graphql::graphiql::wants_page);
        graphql = graphql.route(web::get().guard(page).to(crate::graphql::graphiql::page));
        let refuse = || async { HttpResponse::from_error(ApiError::MethodNotAllowed { allow: "GET".to_owned() }) };
        cfg.service(
            web::resource("/graphql/assets/{file}")
                .route(web::get().to(crate::graphql::graphiql::asset))
                .default_service(web::to(refuse)),
        );
    }
    cfg.service(
        graphql
            .route(web::get().to(crate::graphql::get))
            .route(web::post().to(crate::graphql::post))
            .default_service(web::to(refuse)),
    );
}

/// `GET, PATCH, DELETE`: the methods of `endpoint`, in the table's order.
fn allow(endpoint: &Endpoint) -> String {
    endpoint.routes.iter().map(|(method, _)| method.as_str()).collect::<Vec<_>>().join(", ")
}

/// Every method and path the api serves, from the table it is mounted from.
pub fn served() -> Vec<(Method, &'static str)> {
    table()
        .into_iter()
        .flat_map(|endpoint| endpoint.routes.into_iter().map(move |(method, _)| (method, endpoint.path)))
        .collect()
}

/// Any path no route serves.
pub(crate) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("resource"))
}
