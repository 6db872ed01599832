//! stockflow-api: the HTTP API, and the admin commands that ship with it.

mod attachments;
mod auth;
mod batches;
pub mod commands;
mod extract;
mod last_used;
mod observability;
mod pagination;
mod problem;
mod products;
mod routes;
mod settings;
mod startup;
mod tokens;

pub use problem::ApiError;
pub use settings::{AdminSettings, ApiSettings, Settings};
pub use startup::Application;
