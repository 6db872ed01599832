//! The root query: the caller, and each organization-scoped list as a Relay
//! connection over REST's keyset cursors and filters.

use super::at_hand::Page;
use super::limits::MAX_PAGE_SIZE;
use super::types::{BatchNode, ExportNode, Node, ProductNode, ScheduleNode, Timestamp, error, uuid};
use crate::auth::Caller;
use crate::pagination::{DEFAULT_LIMIT, PageRequest};
use crate::problem::ApiError;
use crate::validation::Fields;
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ErrorExtensions, ID, Object, SimpleObject};
use stockflow_db::batches::BatchRow;
use stockflow_db::page::After;
use stockflow_db::{Database, batches, exports, org_schedules, products};
use stockflow_domain::Role;
use uuid::Uuid;

pub(crate) struct Query;

/// Who the token belongs to, as `GET /v1/me` tells.
#[derive(SimpleObject)]
struct Me {
    organization: Organization,
    user: User,
    token: Token,
}

#[derive(SimpleObject)]
struct Organization {
    id: ID,
    slug: String,
    name: String,
}

#[derive(SimpleObject)]
struct User {
    id: ID,
    email: String,
    /// viewer, member or admin.
    role: String,
}

/// Which token it is; never the token itself.
#[derive(SimpleObject)]
struct Token {
    id: ID,
    name: String,
    expires_at: Option<Timestamp>,
}

#[Object]
impl Query {
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let caller = ctx.data::<Caller>()?;
        Ok(Me {
            organization: Organization {
                id: ID(caller.org.id.to_string()),
                slug: caller.org.slug.clone(),
                name: caller.org.name.clone(),
            },
            user: User {
                id: ID(caller.user.id.to_string()),
                email: caller.user.email.clone(),
                role: caller.role.to_string(),
            },
            token: Token {
                id: ID(caller.token.id.to_string()),
                name: caller.token.name.clone(),
                expires_at: caller.token.expires_at.map(Timestamp::from),
            },
        })
    }

    /// Newest first. `skuPrefix` and `q` filter as REST's do.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Products per page, 1 to 200; 50 when left out.")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
        sku_prefix: Option<String>,
        #[graphql(desc = "A case-insensitive part of the name.")] q: Option<String>,
    ) -> async_graphql::Result<Page<ProductNode>> {
        let (org, database) = scope(ctx)?;
        let page = page_request(first, after.as_deref())?;
        let mut fields = Fields::default();
        let filter = crate::products::parse_filters(&mut fields, "", sku_prefix.as_deref(), q.as_deref());
        fields.finish().map_err(|failed| error(&failed))?;
        let (after_row, fetch) = (page.after, page.fetch());
        let rows = database
            .run(move |conn| products::list(conn, org, &filter, after_row.as_ref(), fetch).map_err(ApiError::from))
            .await
            .map_err(|failed| error(&failed))?;
        Ok(Page(connection(&page, rows, |p| After { at: p.created_at, id: p.id }, ProductNode)))
    }

    /// Most recently produced first. The filters are REST's.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn batches(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Batches per page, 1 to 200; 50 when left out.")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
        product_id: Option<ID>,
        #[graphql(desc = "planned, in_progress, completed or cancelled.")] status: Option<String>,
        #[graphql(desc = "Produced at or after this time.")] produced_from: Option<String>,
        #[graphql(desc = "Produced before this time.")] produced_to: Option<String>,
    ) -> async_graphql::Result<Page<BatchNode>> {
        let (org, database) = scope(ctx)?;
        let page = page_request(first, after.as_deref())?;
        let mut fields = Fields::default();
        let raw = crate::batches::RawFilters {
            product_id: product_id.as_ref().map(|id| id.as_str()),
            status: status.as_deref(),
            produced_from: produced_from.as_deref(),
            produced_to: produced_to.as_deref(),
        };
        let filter = crate::batches::parse_filters(&mut fields, "", &raw);
        fields.finish().map_err(|failed| error(&failed))?;
        let (after_row, fetch) = (page.after, page.fetch());
        let key = |b: &BatchRow| After { at: b.produced_at, id: b.id };
        // Products asked for with the page are joined to it: one statement,
        // where a loader would add a second, a task and a wait.
        if ctx.look_ahead().field("edges").field("node").field("product").exists() {
            let rows = database
                .run(move |conn| {
                    batches::list_with_products(conn, org, &filter, after_row.as_ref(), fetch).map_err(ApiError::from)
                })
                .await
                .map_err(|failed| error(&failed))?;
            return Ok(Page(connection(&page, rows, |(b, _)| key(b), |(b, p)| BatchNode::with_product(b, p))));
        }
        let rows = database
            .run(move |conn| batches::list(conn, org, &filter, after_row.as_ref(), fetch).map_err(ApiError::from))
            .await
            .map_err(|failed| error(&failed))?;
        Ok(Page(connection(&page, rows, key, BatchNode::from)))
    }

    /// Newest first.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn exports(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Exports per page, 1 to 200; 50 when left out.")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ExportNode>> {
        let (org, database) = scope(ctx)?;
        let page = page_request(first, after.as_deref())?;
        let (after_row, fetch) = (page.after, page.fetch());
        let rows = database
            .run(move |conn| exports::list(conn, org, after_row.as_ref(), fetch).map_err(ApiError::from))
            .await
            .map_err(|failed| error(&failed))?;
        Ok(connection(&page, rows, |e| After { at: e.created_at, id: e.id }, ExportNode::from))
    }

    /// The organization's schedules and the installation's, newest first.
    /// Needs the admin role, as REST's.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn schedules(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Schedules per page, 1 to 200; 50 when left out.")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ScheduleNode>> {
        ctx.data::<Caller>()?.require(Role::Admin).map_err(|refused| error(&refused))?;
        let (org, database) = scope(ctx)?;
        let page = page_request(first, after.as_deref())?;
        let (after_row, fetch) = (page.after, page.fetch());
        let rows = database
            .run(move |conn| org_schedules::list_visible(conn, org, after_row.as_ref(), fetch).map_err(ApiError::from))
            .await
            .map_err(|failed| error(&failed))?;
        Ok(connection(&page, rows, |s| After { at: s.created_at, id: s.id }, |row| ScheduleNode(row.into())))
    }

    /// Needs the admin role. Null when there is no such schedule for the organization.
    async fn schedule(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<ScheduleNode>> {
        ctx.data::<Caller>()?.require(Role::Admin).map_err(|refused| error(&refused))?;
        let (org, database) = scope(ctx)?;
        let Some(id) = uuid(&id) else { return Ok(None) };
        let found = database
            .run(move |conn| org_schedules::find_visible(conn, org, id, false).map_err(ApiError::from))
            .await
            .map_err(|failed| error(&failed))?;
        Ok(found.map(|row| ScheduleNode(row.into())))
    }

    /// Null when the organization has no such export, whoever else may.
    async fn export(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<ExportNode>> {
        let (org, database) = scope(ctx)?;
        let Some(id) = uuid(&id) else { return Ok(None) };
        let found = database
            .run(move |conn| exports::find(conn, org, id).map_err(ApiError::from))
            .await
            .map_err(|failed| error(&failed))?;
        Ok(found.map(ExportNode::from))
    }

    /// The organization's product, batch or export with this id (REST's
    /// UUIDs are unique across records); null when it has none.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        let (org, database) = scope(ctx)?;
        let Some(id) = uuid(&id) else { return Ok(None) };
        let found = database
            .run(move |conn| {
                if let Some(product) = products::find(conn, org, id)? {
                    return Ok(Some(Node::Product(ProductNode(product))));
                }
                if let Some(batch) = batches::find(conn, org, id)? {
                    return Ok(Some(Node::Batch(BatchNode::from(batch))));
                }
                Ok(exports::find(conn, org, id)?.map(|export| Node::Export(ExportNode::from(export))))
            })
            .await
            .map_err(|failed: ApiError| error(&failed))?;
        Ok(found)
    }

    /// Null when the organization has no such product, whoever else may.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<ProductNode>> {
        let (org, database) = scope(ctx)?;
        let Some(id) = uuid(&id) else { return Ok(None) };
        let found = database
            .run(move |conn| products::find(conn, org, id).map_err(ApiError::from))
            .await
            .map_err(|failed| error(&failed))?;
        Ok(found.map(ProductNode))
    }

    /// Null when the organization has no such batch, whoever else may.
    async fn batch(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<BatchNode>> {
        let (org, database) = scope(ctx)?;
        let Some(id) = uuid(&id) else { return Ok(None) };
        let found = database
            .run(move |conn| batches::find(conn, org, id).map_err(ApiError::from))
            .await
            .map_err(|failed| error(&failed))?;
        Ok(found.map(BatchNode::from))
    }
}

fn scope<'c>(ctx: &Context<'c>) -> async_graphql::Result<(Uuid, &'c Database)> {
    Ok((ctx.data::<Caller>()?.org.id, ctx.data::<Database>()?))
}

/// A connection's fields count once per node it may return.
pub(super) fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let nodes = first.map_or(DEFAULT_LIMIT as usize, |n| usize::try_from(n.clamp(1, MAX_PAGE_SIZE)).unwrap_or(1));
    nodes.saturating_mul(child_complexity)
}

pub(super) fn page_request(first: Option<i32>, after: Option<&str>) -> async_graphql::Result<PageRequest> {
    if let Some(first) = first {
        if first > MAX_PAGE_SIZE {
            return Err(async_graphql::Error::new(format!("first: at most {MAX_PAGE_SIZE} per page"))
                .extend_with(|_, e| e.set("code", "page_too_large")));
        }
        if first < 1 {
            return Err(error(&ApiError::invalid("first", format!("an integer from 1 to {MAX_PAGE_SIZE}"))));
        }
    }
    let limit = first.map(|n| n.to_string());
    PageRequest::parse(limit.as_deref(), after).map_err(|failed| match failed {
        // REST names the cursor parameter `cursor`; here it is `after`.
        ApiError::BadRequest(_) => {
            error(&ApiError::BadRequest("after: not a cursor returned by this field".to_owned()))
        }
        other => error(&other),
    })
}

pub(super) fn connection<R, N>(
    page: &PageRequest,
    mut rows: Vec<R>,
    key: impl Fn(&R) -> After,
    node: impl Fn(R) -> N,
) -> Connection<String, N>
where
    N: async_graphql::OutputType,
{
    let more = rows.len() as i64 > page.limit;
    rows.truncate(usize::try_from(page.limit).unwrap_or(usize::MAX));
    let mut connection = Connection::new(page.after.is_some(), more);
    connection.edges.extend(rows.into_iter().map(|row| Edge::new(crate::pagination::encode(&key(&row)), node(row))));
    connection
}
