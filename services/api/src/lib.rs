//! stockflow-api: the HTTP API, and the admin commands that ship with it.

pub mod commands;
mod settings;
mod startup;

pub use settings::{AdminSettings, ApiSettings, Settings};
pub use startup::Application;
