//! Berth's one integration-test binary. Every test starts a real server on `127.0.0.1:0`;
//! `conformance!` tests run against SQLite and PostgreSQL alike.

mod helpers;

mod access;
mod audit;
mod auth_matrix;
mod browser;
mod cli;
mod connections;
mod constraints;
mod delivery;
mod errors;
mod feed;
mod fuzz;
mod hardening_hooks;
mod limits;
mod names;
mod nodes;
mod openapi;
mod ops;
mod ops_disable;
mod process;
mod readme;
mod registry;
mod scale;
mod secrets;
mod smoke;
mod store_story;
mod web_security;
mod webhook_config;
mod webhooks;
