//! One query per level of a response, never one per row: a batch's
//! product is loaded with every other batch's of the page, a product's
//! batches and a batch's attachments with every other parent's.

use async_graphql::dataloader::{DataLoader, Loader};
use diesel::{PgConnection, QueryResult};
use std::collections::HashMap;
use std::sync::Arc;
use stockflow_db::attachments::{self, Attachment};
use stockflow_db::batches::{self, BatchRow};
use stockflow_db::page::After;
use stockflow_db::{Database, products};
use uuid::Uuid;

type Failure = Arc<crate::problem::ApiError>;

/// The products of one organization, by id: made per request, for the
/// caller's organization, so it can never load another's.
pub(crate) struct ProductsOfOrg {
    database: Database,
    org: Uuid,
}

pub(crate) fn products(database: Database, org: Uuid) -> DataLoader<ProductsOfOrg> {
    DataLoader::new(ProductsOfOrg { database, org }, tokio::spawn)
}

impl Loader<Uuid> for ProductsOfOrg {
    type Value = products::Product;
    type Error = Failure;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let (org, ids) = (self.org, ids.to_vec());
        let found = self
            .database
            .run(move |conn| products::find_many(conn, org, &ids).map_err(crate::problem::ApiError::from))
            .await
            .map_err(Arc::new)?;
        Ok(found.into_iter().map(|product| (product.id, product)).collect())
    }
}

/// One page of a record's children: `fetch` rows after `after`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PageOf {
    pub(crate) parent: Uuid,
    pub(crate) fetch: i64,
    pub(crate) after: Option<After>,
}

/// The children of one organization's records, a page per parent (a
/// product's batches, a batch's attachments), for the caller's
/// organization only. The parents of one response level ask for the same
/// page, so a level is one statement.
pub(crate) struct ChildPages<R> {
    database: Database,
    org: Uuid,
    query: ChildQuery<R>,
    parent: fn(&R) -> Uuid,
    key: fn(&R) -> After,
}

type ChildQuery<R> = fn(&mut PgConnection, Uuid, &[Uuid], Option<&After>, i64) -> QueryResult<Vec<R>>;

pub(crate) fn batches_of_products(database: Database, org: Uuid) -> DataLoader<ChildPages<BatchRow>> {
    let pages = ChildPages {
        database,
        org,
        query: batches::list_for_products,
        parent: |batch| batch.product_id,
        key: |batch| After { at: batch.produced_at, id: batch.id },
    };
    DataLoader::new(pages, tokio::spawn)
}

pub(crate) fn attachments_of_batches(database: Database, org: Uuid) -> DataLoader<ChildPages<Attachment>> {
    let pages = ChildPages {
        database,
        org,
        query: attachments::list_for_batches,
        parent: |attachment| attachment.batch_id,
        key: |attachment| After { at: attachment.created_at, id: attachment.id },
    };
    DataLoader::new(pages, tokio::spawn)
}

impl<R: Clone + Send + Sync + 'static> Loader<PageOf> for ChildPages<R> {
    type Value = Vec<R>;
    type Error = Failure;

    async fn load(&self, pages: &[PageOf]) -> Result<HashMap<PageOf, Self::Value>, Self::Error> {
        // Parents asking for the same page are read together; different
        // `first` or `after` on one level is rare and costs a statement each.
        let mut wanted: HashMap<(i64, Option<After>), Vec<Uuid>> = HashMap::new();
        for page in pages {
            wanted.entry((page.fetch, page.after)).or_default().push(page.parent);
        }
        let (org, query, parent, key) = (self.org, self.query, self.parent, self.key);
        self.database
            .run(move |conn| {
                let mut found = HashMap::new();
                for ((fetch, after), parents) in wanted {
                    let mut rows: HashMap<Uuid, Vec<R>> = parents.iter().map(|id| (*id, Vec::new())).collect();
                    for row in query(conn, org, &parents, after.as_ref(), fetch)? {
                        rows.entry(parent(&row)).or_default().push(row);
                    }
                    for (id, mut page) in rows {
                        // The order a list promises, whatever order the join
                        // returned its groups' rows in.
                        page.sort_by_key(|row| std::cmp::Reverse(key(row)));
                        found.insert(PageOf { parent: id, fetch, after }, page);
                    }
                }
                Ok(found)
            })
            .await
            .map_err(|failed: crate::problem::ApiError| Arc::new(failed))
    }
}
