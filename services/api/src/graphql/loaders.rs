//! One query per level of a response, never one per row: a batch's
//! product is loaded with every other batch's of the page.

use async_graphql::dataloader::{DataLoader, Loader};
use std::collections::HashMap;
use std::sync::Arc;
use stockflow_db::{Database, products};
use uuid::Uuid;

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
    type Error = Arc<crate::problem::ApiError>;

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
