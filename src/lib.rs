//! Berth: a self-hostable model registry whose webhooks never lose an event.
//!
//! See ARCHITECTURE.md for the map. The binary (`src/main.rs`) is a thin shell over
//! [`app::serve`].

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod store;
