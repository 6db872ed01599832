//! GraphiQL, for humans, with `GRAPHQL_GRAPHIQL=true`: a browser opening
//! `/graphql` gets the page, and its scripts and styles come from this api
//! (`/graphql/assets/<file>`, embedded in the binary), never from a CDN, so
//! it works on a closed network. The page is static and needs no token: the
//! human types one into GraphiQL's headers editor, and every operation it
//! runs is authenticated as any other. The files and their origin are
//! listed in assets/graphiql/README.md.

use crate::problem::ApiError;
use actix_web::guard::GuardContext;
use actix_web::http::header;
use actix_web::{HttpResponse, web};

const PAGE: &str = include_str!("../../assets/graphiql/index.html");

/// Scripts, styles and connections from this api only. Styles may also be
/// inline: GraphiQL's dialogs (Radix) add `<style>` elements as they open.
/// Fonts and icons are `data:` URIs in GraphiQL's stylesheet.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                        img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                        form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    /// The vendored files carry their version in their name, so a cached
    /// copy is never stale; ours is revalidated.
    cache_control: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const VERSIONED: &str = "public, max-age=31536000, immutable";

const ASSETS: &[Asset] = &[
    Asset {
        name: "graphiql-4.1.2.min.js",
        content_type: JS,
        cache_control: VERSIONED,
        body: include_bytes!("../../assets/graphiql/graphiql-4.1.2.min.js"),
    },
    Asset {
        name: "graphiql-4.1.2.min.css",
        content_type: CSS,
        cache_control: VERSIONED,
        body: include_bytes!("../../assets/graphiql/graphiql-4.1.2.min.css"),
    },
    Asset {
        name: "react-18.3.1.production.min.js",
        content_type: JS,
        cache_control: VERSIONED,
        body: include_bytes!("../../assets/graphiql/react-18.3.1.production.min.js"),
    },
    Asset {
        name: "react-dom-18.3.1.production.min.js",
        content_type: JS,
        cache_control: VERSIONED,
        body: include_bytes!("../../assets/graphiql/react-dom-18.3.1.production.min.js"),
    },
    Asset {
        name: "stockflow-graphiql.js",
        content_type: JS,
        cache_control: "no-cache",
        body: include_bytes!("../../assets/graphiql/stockflow-graphiql.js"),
    },
];

/// A browser opening `/graphql`: it asks for HTML and sends no `query`.
/// Anything else, a GET with a query above all, is the API's, with its
/// bearer token.
pub(crate) fn wants_page(ctx: &GuardContext<'_>) -> bool {
    let head = ctx.head();
    let html = head
        .headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.to_ascii_lowercase().contains("text/html"));
    // A query string that does not parse is left to the API's handler,
    // which answers it as it always has.
    let operation = web::Query::<Vec<(String, String)>>::from_query(head.uri.query().unwrap_or_default())
        .map_or(true, |pairs| pairs.iter().any(|(name, _)| name == "query"));
    html && !operation
}

pub(crate) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // The same URL answers the API's 401 to a client that is not a
        // browser asking for a page.
        .insert_header((header::VARY, "Accept"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(PAGE)
}

pub(crate) async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let asset = ASSETS.iter().find(|asset| asset.name == file.as_str()).ok_or(ApiError::NotFound("asset"))?;
    Ok(HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, asset.cache_control))
        .body(asset.body))
}
