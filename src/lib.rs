//! Berth: a self-hostable model registry whose webhooks never lose an event.
//!
//! See ARCHITECTURE.md for the map. The binary (`src/main.rs`) is a thin shell over
//! [`app::serve`].

pub mod api;
pub mod app;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod store;
pub mod web;

/// Selects the TLS crypto provider (ring, shared with sqlx) for every HTTP client in the
/// process. Idempotent; called at start-up and by tests before building a client.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
