//! stockflow-api: the HTTP API, and the admin commands that ship with it.

mod attachments;
mod auth;
mod backups;
mod batches;
pub mod commands;
mod delivery;
mod exports;
mod extract;
mod graphql;
mod health;
mod last_used;
mod me;
mod observability;
mod openapi;
mod pagination;
mod problem;
mod products;
mod rfc3339;
mod routes;
mod schedules;
mod settings;
mod startup;
mod tokens;
mod validation;

pub use exports::ExportSettings;
pub use graphql::sdl as graphql_sdl;
pub use problem::ApiError;
pub use routes::served as served_routes;
pub use settings::{AdminSettings, ApiSettings, BIND_VAR, DEFAULT_BIND, Settings};
pub use startup::Application;
