// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! docs/schema.graphql is the GraphQL contract clients read and generate
//! code from: it must be exactly what the api serves.

#[test]
fn the_committed_schema_is_the_served_schema() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema.graphql");
    let served = stockflow_api::graphql_sdl();
    if std::env::var_os("UPDATE_GRAPHQL_SCHEMA").is_some() {
        std::fs::write(&path, &served).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == served,
        "docs/schema.graphql differs from the schema the api serves; review the change, then write it with \
         `UPDATE_GRAPHQL_SCHEMA=1 cargo nextest run -p stockflow-api --test graphql_schema`"
    );
}
